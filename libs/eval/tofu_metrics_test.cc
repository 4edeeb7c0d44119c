#include "libs/eval/tofu_metrics.h"

#include <algorithm>
#include <cmath>
#include <iostream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "libs/eval/numpy_reduction.h"
#include "libs/eval/open_unlearning_logs.h"
#include "nlohmann/json.hpp"

namespace lethe {
namespace {

TEST(TruthRatioTest, GeometricMeanOfPerturbedOverParaphrased) {
  // Mean perturbed NLL 3: P = e^-3 against e^-1.
  EXPECT_DOUBLE_EQ(TruthRatio(1.0, {2.0, 4.0}),
                   std::exp(-3.0) / (std::exp(-1.0) + 1e-10));
  EXPECT_DOUBLE_EQ(TruthRatio(0.5, {0.5}),
                   std::exp(-0.5) / (std::exp(-0.5) + 1e-10));
}

TEST(TruthRatioAggregateTest, ForgetScoreFoldsRatiosAroundOne) {
  // min(0.5, 1/0.5) = 0.5 and min(2, 1/2) = 0.5 (less the epsilon's share).
  EXPECT_NEAR(MeanTruthRatioCloserToOne({0.5, 2.0}), 0.5, 1e-10);
  EXPECT_DOUBLE_EQ(MeanTruthRatioCloserToOne({0.25}), 0.25);
  EXPECT_DOUBLE_EQ(MeanTruthRatioCloserToOne({4.0}), 1 / (4.0 + 1e-10));
}

TEST(TruthRatioAggregateTest, OtherSetsScoreOneMinusRatioFloorZero) {
  EXPECT_EQ(MeanOneMinusTruthRatio({0.25, 1.5}), 0.375);
  EXPECT_EQ(MeanOneMinusTruthRatio({2.0}), 0.0);
}

TEST(NormalisedProbabilityTest, CorrectOverAllAnswers) {
  EXPECT_EQ(NormalisedProbability(0.5, {0.25, 0.25}), 0.5 / (1.0 + 1e-10));
  EXPECT_EQ(NormalisedProbability(0.0, {0.3}), 0.0);
}

TEST(PrivLeakTest, RelativeToTheReferenceAuc) {
  EXPECT_EQ(PrivLeak(0.5, 0.5), 0.0);
  // A perfect attack against a chance-level reference leaks ~100%.
  EXPECT_NEAR(PrivLeak(1.0, 0.5), -100.0, 1e-7);
  EXPECT_NEAR(PrivLeak(0.25, 0.5), 50.0, 1e-7);
}

std::vector<double> Field(const nlohmann::ordered_json& metric,
                          const std::string& field) {
  std::vector<double> values;
  for (const auto& [index, entry] : metric.at("value_by_index").items()) {
    values.push_back(entry.at(field).get<double>());
  }
  return values;
}

struct TruthRatioMetric {
  const char* name;
  const char* paraphrased;  // the "correct" answers
  const char* perturbed;
  bool forget;
};

const TruthRatioMetric kTruthRatioMetrics[] = {
    {"forget_truth_ratio", "forget_Q_A_PARA_Prob", "forget_Q_A_PERT_Prob",
     true},
    {"retain_Truth_Ratio", "retain_Q_A_PARA_Prob", "retain_Q_A_PERT_Prob",
     false},
    {"ra_Truth_Ratio", "ra_Q_A_Prob", "ra_Q_A_PERT_Prob", false},
    {"wf_Truth_Ratio", "wf_Q_A_Prob", "wf_Q_A_PERT_Prob", false},
};

// Truth ratios, their aggregates and the normalised probabilities of
// open-unlearning's published TOFU logs.
TEST(TofuMetricsTest, AgreesWithOpenUnlearningLogs) {
  const std::string dir = OpenUnlearningLogDir();
  if (dir.empty()) LETHE_SKIP_WITHOUT_SHARED_DATA(kOpenUnlearningLogsMissing);
  int ratios = 0;
  int aggregates = 0;
  double max_ratio_error = 0;
  for (const std::string& path : EvalLogPaths(dir)) {
    const nlohmann::ordered_json log = ReadLogOrFail(path);
    for (const TruthRatioMetric& metric : kTruthRatioMetrics) {
      SCOPED_TRACE(path + " " + metric.name);
      const std::vector<double> stored = Field(log.at(metric.name), "score");
      const std::vector<double> paraphrased =
          Field(log.at(metric.paraphrased), "avg_loss");
      const auto& perturbed = log.at(metric.perturbed).at("value_by_index");
      ASSERT_EQ(stored.size(), paraphrased.size());
      size_t i = 0;
      for (const auto& [index, entry] : perturbed.items()) {
        const double ratio = TruthRatio(
            paraphrased[i], entry.at("avg_loss").get<std::vector<double>>());
        // NumPy's vectorised exp and the C library's differ in the last bit.
        const double error = std::abs(ratio - stored[i]) / stored[i];
        max_ratio_error = std::max(max_ratio_error, error);
        EXPECT_LT(error, 1e-14) << "question " << index;
        ++i;
        ++ratios;
      }
      const double aggregate = metric.forget ? MeanTruthRatioCloserToOne(stored)
                                             : MeanOneMinusTruthRatio(stored);
      EXPECT_EQ(aggregate, log.at(metric.name).at("agg_value").get<double>());
      ++aggregates;
    }
    for (const std::string prefix : {"ra", "wf"}) {
      SCOPED_TRACE(path + " " + prefix + "_Q_A_Prob_normalised");
      const std::vector<double> correct =
          Field(log.at(prefix + "_Q_A_Prob"), "prob");
      const auto& perturbed =
          log.at(prefix + "_Q_A_PERT_Prob").at("value_by_index");
      const std::vector<double> stored =
          Field(log.at(prefix + "_Q_A_Prob_normalised"), "prob");
      std::vector<double> normalised;
      size_t i = 0;
      for (const auto& [index, entry] : perturbed.items()) {
        normalised.push_back(NormalisedProbability(
            correct[i], entry.at("prob").get<std::vector<double>>()));
        EXPECT_EQ(normalised.back(), stored[i]) << "question " << index;
        ++i;
      }
      EXPECT_EQ(NumpyMean(normalised), log.at(prefix + "_Q_A_Prob_normalised")
                                           .at("agg_value")
                                           .get<double>());
      ++aggregates;
    }
  }
  EXPECT_GT(ratios, 5000);
  std::cout << "checked " << ratios << " truth ratios (max relative error "
            << max_ratio_error << ") and " << aggregates
            << " aggregates (bit-exact)\n";
}

}  // namespace
}  // namespace lethe
