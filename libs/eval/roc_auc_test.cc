#include "libs/eval/roc_auc.h"

#include <algorithm>
#include <cmath>
#include <iostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "libs/eval/open_unlearning_logs.h"
#include "nlohmann/json.hpp"

namespace lethe {
namespace {

double AucOrDie(const std::vector<double>& negative,
                const std::vector<double>& positive) {
  absl::StatusOr<double> auc = RocAuc(negative, positive);
  EXPECT_TRUE(auc.ok()) << auc.status();
  return auc.value_or(NAN);
}

TEST(RocAucTest, FractionOfCorrectlyOrderedPairs) {
  // Positive 0.35 beats 0.1 only; 0.8 beats both.
  EXPECT_EQ(AucOrDie({0.1, 0.4}, {0.35, 0.8}), 0.75);
  EXPECT_EQ(AucOrDie({0.1, 0.2}, {0.3, 0.4}), 1.0);
  EXPECT_EQ(AucOrDie({0.3, 0.4}, {0.1, 0.2}), 0.0);
}

TEST(RocAucTest, TiesCountHalf) {
  EXPECT_EQ(AucOrDie({0.5}, {0.5}), 0.5);
  EXPECT_EQ(AucOrDie({1, 2}, {2, 3}), 0.875);
}

TEST(RocAucTest, RoundsAsScikitLearn) {
  // roc_auc_score from scikit-learn 1.2.1; the exact fraction 39/56 would
  // be 0.6964285714285714.
  EXPECT_EQ(AucOrDie({0.4, 0.5, 0.7, 0.1, 0.6, 0.3, 0.9},
                     {0.3, 0.9, 1.1, 0.4, 1.1, 1.1, 0.2, 0.9}),
            0.6964285714285715);
}

TEST(RocAucTest, RejectsMissingClassAndNonFiniteScores) {
  EXPECT_EQ(RocAuc({}, {1.0}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(RocAuc({1.0}, {}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(RocAuc({1.0}, {NAN}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

std::vector<double> Scores(const nlohmann::ordered_json& side) {
  std::vector<double> scores;
  for (const auto& [index, entry] : side.at("value_by_index").items()) {
    scores.push_back(entry.at("score").get<double>());
  }
  return scores;
}

// Every MIA AUC of open-unlearning's published TOFU logs.
TEST(RocAucTest, AgreesWithOpenUnlearningMiaAucs) {
  const std::string dir = OpenUnlearningLogDir();
  if (dir.empty()) LETHE_SKIP_WITHOUT_SHARED_DATA(kOpenUnlearningLogsMissing);
  int checked = 0;
  double max_error = 0;
  for (const std::string& path : EvalLogPaths(dir)) {
    const nlohmann::ordered_json log = ReadLogOrFail(path);
    for (const auto& [metric, result] : log.items()) {
      if (!absl::StartsWith(metric, "mia_")) continue;
      const double auc =
          AucOrDie(Scores(result.at("forget")), Scores(result.at("holdout")));
      const double expected = result.at("auc").get<double>();
      EXPECT_EQ(auc, expected) << path << " " << metric;
      EXPECT_EQ(auc, result.at("agg_value").get<double>())
          << path << " " << metric;
      max_error = std::max(max_error, std::abs(auc - expected));
      ++checked;
    }
  }
  EXPECT_GT(checked, 50);
  std::cout << "checked " << checked << " MIA AUCs; max abs error " << max_error
            << "\n";
}

}  // namespace
}  // namespace lethe
