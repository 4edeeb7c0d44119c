#include "services/coordinator/grpc_services.h"

#include <google/protobuf/util/message_differencer.h>

#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

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
  for (int i = 0; i < kMaxEvaluationKeys + 10; ++i) {
    summary[absl::StrCat("metric_", i)] = i;
  }
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
  BoundProgressReport(report);
  EXPECT_EQ(report.evaluation_summary_size(), kMaxEvaluationKeys);
  for (const auto& [name, value] : report.evaluation_summary()) {
    EXPECT_TRUE(absl::StartsWith(name, "metric_")) << name;
  }
  EXPECT_EQ(report.progress().loss_components_size(), kMaxLossTerms);
  ASSERT_EQ(report.log_lines_size(), kMaxReportedLogLines + 1);
  EXPECT_EQ(report.log_lines(kMaxReportedLogLines - 1),
            absl::StrCat("line ", kMaxReportedLogLines - 1));
  EXPECT_EQ(report.log_lines(kMaxReportedLogLines),
            "the coordinator dropped from this report: 13 evaluation key(s), "
            "3 loss term(s), 5 log line(s) (bad names or over the limits)");
}

}  // namespace
}  // namespace lethe
