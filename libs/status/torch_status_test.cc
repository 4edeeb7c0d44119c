#include "libs/status/torch_status.h"

#include <torch/types.h>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "gtest/gtest.h"

namespace lethe {
namespace {

TEST(CallTorchTest, ReturnsValueWhenNothingThrows) {
  absl::StatusOr<at::Tensor> sum =
      CallTorch("add", [] { return torch::ones({2}) + torch::ones({2}); });
  ASSERT_TRUE(sum.ok());
  EXPECT_TRUE(torch::equal(*sum, torch::full({2}, 2.0)));
}

TEST(CallTorchTest, TurnsC10ErrorIntoInternalWithFirstLineOnly) {
  absl::Status status = CallTorch("shape-mismatched matmul", [] {
    torch::matmul(torch::ones({2, 3}), torch::ones({2, 3}));
  });
  EXPECT_EQ(status.code(), absl::StatusCode::kInternal);
  EXPECT_TRUE(
      absl::StartsWith(status.message(), "shape-mismatched matmul failed: "))
      << status;
  EXPECT_FALSE(absl::StrContains(status.message(), "\n")) << status;
}

TEST(CallTorchTest, VoidCallbackGivesOk) {
  bool ran = false;
  EXPECT_TRUE(CallTorch("noop", [&] { ran = true; }).ok());
  EXPECT_TRUE(ran);
}

}  // namespace
}  // namespace lethe
