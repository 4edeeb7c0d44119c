#include "libs/eval/tofu_summary.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "libs/eval/open_unlearning_logs.h"
#include "libs/files/file_io.h"

namespace lethe {
namespace {

using Json = nlohmann::ordered_json;

// Two or three questions per metric, with numbers whose aggregates are
// easy to follow.
Json SmallEvalLog() {
  return Json::parse(R"({
    "forget_Q_A_Prob": {"agg_value": 0.6, "value_by_index": {
        "0": {"prob": 0.5, "avg_loss": 0.69}, "1": {"prob": 0.7},
        "2": null}},
    "forget_Q_A_ROUGE": {"value_by_index": {
        "0": {"rougeL_recall": 1.0}, "1": {"rougeL_recall": 0.5}}},
    "forget_truth_ratio": {"value_by_index": {
        "0": {"score": 0.5}, "1": {"score": 2.0}, "2": {"score": 1.0}}},
    "forget_quality": {"agg_value": null},
    "mia_min_k": {
        "forget": {"value_by_index": {"0": {"score": 0.1},
                                      "1": {"score": 0.4}}},
        "holdout": {"value_by_index": {"0": {"score": 0.35},
                                       "1": {"score": 0.8}}}},
    "privleak": {"agg_value": 0},
    "model_utility": {"agg_value": 0},
    "retain_Q_A_Prob": {"value_by_index": {
        "0": {"prob": 0.5}, "1": {"prob": 1.0}}},
    "retain_Q_A_ROUGE": {"value_by_index": {"0": {"rougeL_recall": 0.5}}},
    "retain_Truth_Ratio": {"value_by_index": {"0": {"score": 0.5}}},
    "ra_Q_A_Prob": {"value_by_index": {"0": {"prob": 0.5}}},
    "ra_Q_A_PERT_Prob": {"value_by_index": {"0": {"prob": [0.25, 0.25]}}},
    "ra_Q_A_ROUGE": {"value_by_index": {"0": {"rougeL_recall": 0.5}}},
    "ra_Truth_Ratio": {"value_by_index": {"0": {"score": 0.5}}},
    "wf_Q_A_Prob": {"value_by_index": {"0": {"prob": 0.5}}},
    "wf_Q_A_PERT_Prob": {"value_by_index": {"0": {"prob": [0.5]}}},
    "wf_Q_A_ROUGE": {"value_by_index": {"0": {"rougeL_recall": 0.5}}},
    "wf_Truth_Ratio": {"value_by_index": {"0": {"score": 0.5}}}
  })");
}

Json SmallRetainLog() {
  return Json::parse(R"({
    "forget_truth_ratio": {"value_by_index": {
        "0": {"score": 1.0}, "1": {"score": 0.5}, "2": {"score": 2.0}}},
    "mia_min_k": {"agg_value": 0.6}
  })");
}

std::vector<std::string> Keys(const nlohmann::json& summary) {
  std::vector<std::string> keys;
  for (const auto& [key, value] : summary.items()) keys.push_back(key);
  return keys;
}

TEST(SummarizeTofuEvalTest, RecomputesEachSummaryMetric) {
  const Json log = SmallEvalLog();
  absl::StatusOr<nlohmann::json> summary = SummarizeTofuEval(log, nullptr);
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_EQ(Keys(*summary), (std::vector<std::string>{
                                "forget_Q_A_Prob", "forget_Q_A_ROUGE",
                                "mia_min_k", "model_utility", "privleak"}));
  // The null question is skipped.
  EXPECT_DOUBLE_EQ((*summary)["forget_Q_A_Prob"].get<double>(), 0.6);
  EXPECT_DOUBLE_EQ((*summary)["forget_Q_A_ROUGE"].get<double>(), 0.75);
  EXPECT_DOUBLE_EQ((*summary)["mia_min_k"].get<double>(), 0.75);
  // Harmonic mean of 0.75 and eight values of 1/2 (the normalised
  // probabilities 0.5 / (1 + 1e-10) are 1/2 to 1e-10).
  EXPECT_NEAR((*summary)["model_utility"].get<double>(),
              9 / (1 / 0.75 + 8 * 2.0), 1e-9);
  // (1 - 0.75) against the default reference 1 - 0.5.
  EXPECT_NEAR((*summary)["privleak"].get<double>(), -50.0, 1e-7);
}

TEST(SummarizeTofuEvalTest, UsesTheRetainLogForForgetQualityAndPrivleak) {
  const Json log = SmallEvalLog();
  const Json retain = SmallRetainLog();
  absl::StatusOr<nlohmann::json> summary = SummarizeTofuEval(log, &retain);
  ASSERT_TRUE(summary.ok()) << summary.status();
  // The same three truth ratios in another order: D = 0.
  EXPECT_EQ((*summary)["forget_quality"].get<double>(), 1.0);
  // (1 - 0.75) against 1 - 0.6.
  EXPECT_NEAR((*summary)["privleak"].get<double>(), -37.5, 1e-7);
}

TEST(SummarizeTofuEvalTest, LeavesOutMetricsTheLogDoesNotHold) {
  Json log = SmallEvalLog();
  log.erase("model_utility");
  log.erase("privleak");
  log.erase("mia_min_k");
  absl::StatusOr<nlohmann::json> summary = SummarizeTofuEval(log, nullptr);
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_EQ(Keys(*summary),
            (std::vector<std::string>{"forget_Q_A_Prob", "forget_Q_A_ROUGE"}));
}

TEST(SummarizeTofuEvalTest, ErrorsNameTheMissingOrMalformedKey) {
  Json log = SmallEvalLog();
  log.erase("ra_Q_A_PERT_Prob");
  absl::Status missing = SummarizeTofuEval(log, nullptr).status();
  EXPECT_EQ(missing.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(missing.message(), "'ra_Q_A_PERT_Prob'"))
      << missing;

  log = SmallEvalLog();
  log["ra_Q_A_PERT_Prob"]["value_by_index"]["0"]["prob"] = "high";
  absl::Status malformed = SummarizeTofuEval(log, nullptr).status();
  EXPECT_EQ(malformed.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(malformed.message(),
                                "'ra_Q_A_PERT_Prob.value_by_index.0.prob'"))
      << malformed;

  log = SmallEvalLog();
  Json retain = SmallRetainLog();
  retain.erase("forget_truth_ratio");
  absl::Status retain_missing = SummarizeTofuEval(log, &retain).status();
  EXPECT_TRUE(absl::StrContains(retain_missing.message(), "retain log"))
      << retain_missing;
  EXPECT_TRUE(
      absl::StrContains(retain_missing.message(), "'forget_truth_ratio'"))
      << retain_missing;
}

TEST(ReadTofuEvalLogTest, ReadsAndRejectsFiles) {
  const std::string dir = testing::TempDir();
  const std::string good = dir + "/good_eval.json";
  ASSERT_TRUE(WriteFileAtomically(good, SmallEvalLog().dump()).ok());
  absl::StatusOr<Json> log = ReadTofuEvalLog(good);
  ASSERT_TRUE(log.ok()) << log.status();
  // Key order is kept.
  EXPECT_EQ(log->begin().key(), "forget_Q_A_Prob");

  EXPECT_EQ(ReadTofuEvalLog(dir + "/absent.json").status().code(),
            absl::StatusCode::kNotFound);
  const std::string bad = dir + "/bad_eval.json";
  ASSERT_TRUE(WriteFileAtomically(bad, "{\"forget\": ").ok());
  absl::Status invalid = ReadTofuEvalLog(bad).status();
  EXPECT_EQ(invalid.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(invalid.message(), bad)) << invalid;
}

// open-unlearning's published summaries, recomputed from their logs: with
// the retain log where it is present, byte for byte as json.dump(indent=4)
// wrote them.
TEST(SummarizeTofuEvalTest, ReproducesOpenUnlearningSummaries) {
  const std::string dir = OpenUnlearningLogDir();
  if (dir.empty()) LETHE_SKIP_WITHOUT_SHARED_DATA(kOpenUnlearningLogsMissing);
  std::map<std::string, std::string> retain_of;
  for (const ForgetRetainPair& pair : ForgetRetainPairs(dir)) {
    retain_of[pair.eval_dir] = pair.retain_dir;
  }
  int summaries = 0;
  int values = 0;
  double max_relative_error = 0;
  for (const std::string& path : EvalLogPaths(dir)) {
    const std::string eval_dir =
        std::filesystem::path(path).parent_path().string();
    SCOPED_TRACE(eval_dir);
    const Json log = ReadLogOrFail(path);
    Json retain;
    const auto it = retain_of.find(eval_dir);
    if (it != retain_of.end()) {
      retain = ReadLogOrFail(it->second + "/TOFU_EVAL.json");
    }
    absl::StatusOr<nlohmann::json> summary =
        SummarizeTofuEval(log, retain.is_null() ? nullptr : &retain);
    ASSERT_TRUE(summary.ok()) << summary.status();
    absl::StatusOr<std::string> stored_text =
        ReadFileToString(eval_dir + "/TOFU_SUMMARY.json");
    ASSERT_TRUE(stored_text.ok()) << stored_text.status();
    const nlohmann::json stored = nlohmann::json::parse(*stored_text);
    // An unlearned model whose retain log is not in the data set: its
    // forget_quality and privleak need that log.
    const bool retain_missing =
        retain.is_null() && stored.contains("forget_quality");
    if (!retain_missing) {
      EXPECT_EQ(summary->dump(4), *stored_text);
    }
    for (const auto& [key, value] : stored.items()) {
      if (retain_missing && (key == "forget_quality" || key == "privleak")) {
        continue;
      }
      ASSERT_TRUE(summary->contains(key)) << key;
      const double actual = (*summary)[key].get<double>();
      const double expected = value.get<double>();
      EXPECT_EQ(actual, expected) << key;
      if (expected != 0) {
        max_relative_error =
            std::max(max_relative_error,
                     std::abs(actual - expected) / std::abs(expected));
      }
      ++values;
    }
    if (retain_missing) {
      EXPECT_FALSE(summary->contains("forget_quality"));
    }
    ++summaries;
  }
  EXPECT_GE(summaries, 10);
  std::cout << "checked " << values << " values of " << summaries
            << " summaries; max relative error " << max_relative_error << "\n";
}

}  // namespace
}  // namespace lethe
