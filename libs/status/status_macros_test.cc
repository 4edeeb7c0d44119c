#include "libs/status/status_macros.h"

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gtest/gtest.h"

namespace lethe {
namespace {

absl::Status FailIf(bool fail) {
  return fail ? absl::InvalidArgumentError("asked to fail") : absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<int>> MakeInt(bool fail, int value) {
  if (fail) return absl::NotFoundError("no int");
  return std::make_unique<int>(value);
}

absl::Status ChainReturnIfError(bool fail, int* reached) {
  RETURN_IF_ERROR(FailIf(fail));
  *reached = 1;
  return absl::OkStatus();
}

absl::StatusOr<int> DoubleOf(bool fail, int value) {
  ASSIGN_OR_RETURN(std::unique_ptr<int> owned, MakeInt(fail, value));
  return *owned * 2;
}

absl::StatusOr<int> SumTwice(int a, int b) {
  int total = 0;
  ASSIGN_OR_RETURN(total, DoubleOf(false, a));
  ASSIGN_OR_RETURN(int second, DoubleOf(false, b));
  return total + second;
}

TEST(StatusMacrosTest, ReturnIfErrorPropagatesFailure) {
  int reached = 0;
  absl::Status status = ChainReturnIfError(true, &reached);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message(), "asked to fail");
  EXPECT_EQ(reached, 0);
}

TEST(StatusMacrosTest, ReturnIfErrorContinuesOnOk) {
  int reached = 0;
  EXPECT_TRUE(ChainReturnIfError(false, &reached).ok());
  EXPECT_EQ(reached, 1);
}

TEST(StatusMacrosTest, AssignOrReturnMovesValueAndPropagatesError) {
  absl::StatusOr<int> ok = DoubleOf(false, 21);
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(*ok, 42);

  absl::StatusOr<int> failed = DoubleOf(true, 21);
  EXPECT_EQ(failed.status().code(), absl::StatusCode::kNotFound);
}

TEST(StatusMacrosTest, AssignOrReturnWorksTwiceInOneScope) {
  absl::StatusOr<int> sum = SumTwice(1, 2);
  ASSERT_TRUE(sum.ok());
  EXPECT_EQ(*sum, 6);
}

}  // namespace
}  // namespace lethe
