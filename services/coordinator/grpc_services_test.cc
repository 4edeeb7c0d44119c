#include "services/coordinator/grpc_services.h"

#include <google/protobuf/util/message_differencer.h>

#include <filesystem>
#include <iterator>
#include <map>
#include <set>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "libs/eval/open_unlearning_logs.h"
#include "libs/eval/tofu_summary.h"
#include "libs/files/file_io.h"
#include "nlohmann/json.hpp"

namespace lethe {
namespace {

TEST(BoundProgressReportTest, KeepsAnOrdinaryReportAsItIs) {
  v1::ReportProgressRequest report;
  (*report.mutable_evaluation_summary())["forget_quality"] = 0.5;
  (*report.mutable_evaluation_summary())["forget_Q_A_Prob"] = 0.1;
  (*report.mutable_progress()->mutable_loss_components())["npo"] = 1.0;
  report.add_log_lines("epoch 1");
  const v1::ReportProgressRequest before = report;
  BoundProgressReport(report);
  EXPECT_TRUE(
      google::protobuf::util::MessageDifferencer::Equals(report, before));
}

TEST(BoundProgressReportTest, DropsBadNamesAndWhatIsOverTheLimits) {
  v1::ReportProgressRequest report;
  auto& summary = *report.mutable_evaluation_summary();
  for (const char* key : kEvaluationSummaryKeys) summary[key] = 0.5;
  for (int i = 0; i < 10; ++i) summary[absl::StrCat("metric_", i)] = i;
  summary["bad name"] = 1;
  summary[std::string(65, 'k')] = 1;
  summary["target\"} 1\nfake_metric{a=\"b"] = 1;
  auto& losses = *report.mutable_progress()->mutable_loss_components();
  for (int i = 0; i < kMaxLossTerms + 3; ++i) {
    losses[absl::StrCat("term", i)] = i;
  }
  for (int i = 0; i < kMaxReportedLogLines + 5; ++i) {
    report.add_log_lines(absl::StrCat("line ", i));
  }
  EXPECT_EQ(BoundProgressReport(report), 13 + 3 + 5);
  EXPECT_EQ(report.evaluation_summary_size(),
            static_cast<int>(std::size(kEvaluationSummaryKeys)));
  for (const auto& [name, value] : report.evaluation_summary()) {
    EXPECT_TRUE(IsEvaluationSummaryKey(name)) << name;
    EXPECT_EQ(value, 0.5) << name;
  }
  EXPECT_EQ(report.progress().loss_components_size(), kMaxLossTerms);
  ASSERT_EQ(report.log_lines_size(), kMaxReportedLogLines + 1);
  EXPECT_EQ(report.log_lines(kMaxReportedLogLines - 1),
            absl::StrCat("line ", kMaxReportedLogLines - 1));
  // The count, and the first 8 unknown keys in order, printable and cut.
  EXPECT_EQ(report.log_lines(kMaxReportedLogLines),
            absl::StrCat("the coordinator dropped from this report: 13 "
                         "evaluation key(s) not of the evaluator's summary "
                         "(\"bad name\", \"",
                         std::string(64, 'k'),
                         "...\", \"metric_0\", \"metric_1\", \"metric_2\", "
                         "\"metric_3\", \"metric_4\", \"metric_5\", ...), "
                         "3 loss term(s), 5 log line(s) (bad names or over "
                         "the limits)"));
}

TEST(BoundProgressReportTest, UnknownEvaluationKeysAreDroppedNotRefused) {
  v1::ReportProgressRequest report;
  (*report.mutable_evaluation_summary())["forget_quality"] = 0.25;
  (*report.mutable_evaluation_summary())["accuracy"] = 1;
  (*report.mutable_evaluation_summary())["Forget_Quality"] = 1;
  report.mutable_progress()->set_step(3);
  EXPECT_EQ(BoundProgressReport(report), 2);
  ASSERT_EQ(report.evaluation_summary_size(), 1);
  EXPECT_EQ(report.evaluation_summary().at("forget_quality"), 0.25);
  EXPECT_EQ(report.progress().step(), 3);
  ASSERT_EQ(report.log_lines_size(), 1);
  EXPECT_TRUE(absl::StrContains(report.log_lines(0),
                                "2 evaluation key(s) not of the evaluator's "
                                "summary (\"Forget_Quality\", \"accuracy\")"))
      << report.log_lines(0);
}

// kEvaluationSummaryKeys is exactly what the evaluator's summary
// (SummarizeTofuEval, which TofuEvaluator and the worker's report use)
// makes of open-unlearning's published logs, and what those logs' own
// TOFU_SUMMARY.json files hold: a key the evaluator adds or renames fails
// here rather than being dropped from every job.
TEST(EvaluationSummaryKeysTest, AreTheEvaluatorsSummaryKeys) {
  const std::string dir = OpenUnlearningLogDir();
  if (dir.empty()) LETHE_SKIP_WITHOUT_SHARED_DATA(kOpenUnlearningLogsMissing);
  std::map<std::string, std::string> retain_of;
  for (const ForgetRetainPair& pair : ForgetRetainPairs(dir)) {
    retain_of[pair.eval_dir] = pair.retain_dir;
  }
  std::set<std::string> produced;
  for (const std::string& path : EvalLogPaths(dir)) {
    const std::string eval_dir =
        std::filesystem::path(path).parent_path().string();
    SCOPED_TRACE(eval_dir);
    const nlohmann::ordered_json log = ReadLogOrFail(path);
    nlohmann::ordered_json retain;
    if (const auto it = retain_of.find(eval_dir); it != retain_of.end()) {
      retain = ReadLogOrFail(it->second + "/TOFU_EVAL.json");
    }
    absl::StatusOr<nlohmann::json> summary =
        SummarizeTofuEval(log, retain.is_null() ? nullptr : &retain);
    ASSERT_TRUE(summary.ok()) << summary.status();
    for (const auto& [key, value] : summary->items()) {
      EXPECT_TRUE(IsEvaluationSummaryKey(key)) << key;
      produced.insert(key);
    }
    const absl::StatusOr<std::string> stored =
        ReadFileToString(eval_dir + "/TOFU_SUMMARY.json");
    ASSERT_TRUE(stored.ok()) << stored.status();
    const nlohmann::json stored_summary = nlohmann::json::parse(*stored);
    for (const auto& [key, value] : stored_summary.items()) {
      EXPECT_TRUE(IsEvaluationSummaryKey(key)) << key;
    }
  }
  const std::set<std::string> known(std::begin(kEvaluationSummaryKeys),
                                    std::end(kEvaluationSummaryKeys));
  EXPECT_EQ(produced, known);
}

}  // namespace
}  // namespace lethe
