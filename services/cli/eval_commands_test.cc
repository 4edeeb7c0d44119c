#include "services/cli/eval_commands.h"

#include <sstream>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "libs/files/file_io.h"

namespace lethe {
namespace {

std::string WriteLog(const std::string& name, const std::string& text) {
  const std::string path = testing::TempDir() + "/" + name;
  EXPECT_TRUE(WriteFileAtomically(path, text).ok());
  return path;
}

// A log with the forget-set metrics only: two questions each.
constexpr char kEvalLog[] = R"({
  "forget_Q_A_Prob": {"value_by_index": {"0": {"prob": 0.25},
                                         "1": {"prob": 0.75}}},
  "forget_truth_ratio": {"value_by_index": {"0": {"score": 0.5},
                                            "1": {"score": 0.7}}},
  "forget_quality": {"agg_value": 0.9}
})";

constexpr char kRetainLog[] = R"({
  "forget_truth_ratio": {"value_by_index": {"0": {"score": 0.1},
                                            "1": {"score": 0.2}}}
})";

TEST(RunTofuSummaryTest, PrintsTheSummaryAsOpenUnlearningWritesIt) {
  const std::string eval = WriteLog("cli_eval.json", kEvalLog);
  const std::string retain = WriteLog("cli_retain.json", kRetainLog);
  std::ostringstream out;
  ASSERT_TRUE(RunTofuSummary(eval, retain, out).ok());
  // Both forget truth ratios lie above both retain ones: D = 1, and
  // P(D >= 1) = 2 / C(4, 2).
  EXPECT_EQ(out.str(),
            "{\n    \"forget_Q_A_Prob\": 0.5,\n"
            "    \"forget_quality\": 0.3333333333333333\n}\n");
}

TEST(RunTofuSummaryTest, WithoutRetainLogLeavesOutForgetQuality) {
  const std::string eval = WriteLog("cli_eval_alone.json", kEvalLog);
  std::ostringstream out;
  ASSERT_TRUE(RunTofuSummary(eval, "", out).ok());
  EXPECT_EQ(out.str(), "{\n    \"forget_Q_A_Prob\": 0.5\n}\n");
}

TEST(RunTofuSummaryTest, ErrorsNameTheFileAndKey) {
  const std::string eval = WriteLog("cli_eval_bad.json", kEvalLog);
  const std::string retain = WriteLog("cli_retain_bad.json", "{}");
  std::ostringstream out;
  absl::Status status = RunTofuSummary(eval, retain, out);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(status.message(), retain)) << status;
  EXPECT_TRUE(absl::StrContains(status.message(), "'forget_truth_ratio'"))
      << status;
  EXPECT_TRUE(out.str().empty());

  EXPECT_EQ(RunTofuSummary(testing::TempDir() + "/none.json", "", out).code(),
            absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace lethe
