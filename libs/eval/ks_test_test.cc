#include "libs/eval/ks_test.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "libs/eval/kolmogorov_distribution.h"
#include "libs/eval/open_unlearning_logs.h"
#include "nlohmann/json.hpp"

namespace lethe {
namespace {

// n * m * D for the arrangement of n + m distinct sorted values whose bit i
// of `mask` says value i belongs to the first sample.
int64_t ScaledStatistic(uint32_t mask, int n, int m) {
  int64_t first = 0;
  int64_t largest = 0;
  for (int i = 0; i < n + m; ++i) {
    if (mask & (1u << i)) ++first;
    const int64_t second = i + 1 - first;
    largest = std::max(largest, std::abs(first * m - second * n));
  }
  return largest;
}

// Exact P(D >= d) by enumerating all C(n + m, n) equally likely
// arrangements.
double BruteForcePValue(int n, int m, int64_t scaled_d) {
  int64_t at_least = 0;
  int64_t total = 0;
  for (uint32_t mask = 0; mask < (1u << (n + m)); ++mask) {
    if (__builtin_popcount(mask) != n) continue;
    ++total;
    if (ScaledStatistic(mask, n, m) >= scaled_d) ++at_least;
  }
  return static_cast<double>(at_least) / static_cast<double>(total);
}

TEST(KsTwoSampleTest, ExactPValuesMatchEnumeration) {
  const std::pair<int, int> sizes[] = {{1, 1}, {1, 5}, {2, 6}, {3, 4},
                                       {4, 4}, {5, 3}, {6, 6}, {5, 6}};
  for (const auto& [n, m] : sizes) {
    for (uint32_t mask = 0; mask < (1u << (n + m)); ++mask) {
      if (__builtin_popcount(mask) != n) continue;
      std::vector<double> x;
      std::vector<double> y;
      for (int i = 0; i < n + m; ++i) {
        ((mask & (1u << i)) ? x : y).push_back(0.5 * i - 1.25);
      }
      const int64_t scaled_d = ScaledStatistic(mask, n, m);
      absl::StatusOr<KsTestResult> result = KsTwoSampleTest(x, y);
      ASSERT_TRUE(result.ok()) << result.status();
      EXPECT_TRUE(result->exact);
      EXPECT_NEAR(result->statistic, static_cast<double>(scaled_d) / (n * m),
                  1e-15);
      const double expected = BruteForcePValue(n, m, scaled_d);
      EXPECT_NEAR(result->pvalue, expected, 1e-14 * expected)
          << "n=" << n << " m=" << m << " mask=" << mask;
    }
  }
}

TEST(KsTwoSampleTest, TiesCountOnceInTheStatistic) {
  // ECDF gaps at 1, 2, 3, 4, 5: 1/4, 3/4 - 3/5, 1 - 3/5, 1 - 4/5, 0.
  absl::StatusOr<KsTestResult> result =
      KsTwoSampleTest({1, 2, 2, 3}, {2, 2, 2, 4, 5});
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_DOUBLE_EQ(result->statistic, 0.4);
  const double expected = BruteForcePValue(4, 5, 8);
  EXPECT_NEAR(result->pvalue, expected, 1e-14 * expected);
}

TEST(KsTwoSampleTest, IdenticalSamplesHavePValueOne) {
  absl::StatusOr<KsTestResult> result =
      KsTwoSampleTest({0.3, 0.1, 0.2}, {0.2, 0.3, 0.1});
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->statistic, 0.0);
  EXPECT_EQ(result->pvalue, 1.0);
}

// Unequal sizes too large to enumerate, against SciPy 1.10.1's ks_2samp.
TEST(KsTwoSampleTest, MatchesScipyForUnequalSizes) {
  std::vector<double> x;
  std::vector<double> y;
  for (int i = 0; i < 40; ++i) x.push_back(i / 40.0);
  for (int j = 0; j < 400; ++j) y.push_back(((j * 37) % 400) / 400.0 * 1.25);
  absl::StatusOr<KsTestResult> result = KsTwoSampleTest(x, y);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->statistic, 0.22);
  EXPECT_EQ(result->pvalue, 0.051784721756374136);

  x.clear();
  y.clear();
  for (int i = 0; i < 123; ++i) x.push_back(i / 123.0);
  for (int j = 0; j < 457; ++j) y.push_back(((j * 37) % 457) / 457.0 + 0.05);
  result = KsTwoSampleTest(x, y);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->statistic, 0.05812029673907242);
  EXPECT_EQ(result->pvalue, 0.8756054441385873);
}

TEST(KsTwoSampleTest, LargeSamplesUseTheAsymptoticDistribution) {
  std::vector<double> x;
  for (int i = 0; i <= 10000; ++i) x.push_back(i);
  const std::vector<double> y = {2000.5, 5000.5, 8000.5};
  absl::StatusOr<KsTestResult> result = KsTwoSampleTest(x, y);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_FALSE(result->exact);
  // The gap peaks just below 2000.5: 2001 of 10001 values against none.
  const double d = 2001.0 / 10001.0;
  EXPECT_EQ(result->statistic, d);
  // Effective size round(10001 * 3 / 10004) = 3, where for 1/6 < d <= 1/3
  // P(D_3 < d) = 3!/3^3 (6d - 1)^3 (Ruben-Gambino).
  EXPECT_NEAR(result->pvalue, 1 - 6.0 / 27.0 * std::pow(6 * d - 1, 3), 1e-15);
}

TEST(KsTwoSampleTest, RejectsEmptyAndNan) {
  EXPECT_EQ(KsTwoSampleTest({}, {1.0}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(KsTwoSampleTest({1.0, NAN}, {1.0}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

std::vector<double> ForgetTruthRatios(const nlohmann::ordered_json& log) {
  std::vector<double> scores;
  for (const auto& [index, entry] :
       log.at("forget_truth_ratio").at("value_by_index").items()) {
    scores.push_back(entry.at("score").get<double>());
  }
  return scores;
}

// forget_quality of open-unlearning's published logs, recomputed from the
// per-question truth ratios of the unlearned and the retain model.
TEST(KsTwoSampleTest, AgreesWithOpenUnlearningForgetQuality) {
  const std::string dir = OpenUnlearningLogDir();
  if (dir.empty()) LETHE_SKIP_WITHOUT_SHARED_DATA(kOpenUnlearningLogsMissing);
  const std::vector<ForgetRetainPair> pairs = ForgetRetainPairs(dir);
  EXPECT_GE(pairs.size(), 4u);
  for (const ForgetRetainPair& pair : pairs) {
    const nlohmann::ordered_json log =
        ReadLogOrFail(pair.eval_dir + "/TOFU_EVAL.json");
    const nlohmann::ordered_json retain =
        ReadLogOrFail(pair.retain_dir + "/TOFU_EVAL.json");
    const nlohmann::ordered_json summary =
        ReadLogOrFail(pair.eval_dir + "/TOFU_SUMMARY.json");
    absl::StatusOr<KsTestResult> result =
        KsTwoSampleTest(ForgetTruthRatios(log), ForgetTruthRatios(retain));
    ASSERT_TRUE(result.ok()) << result.status();
    const double expected = summary.at("forget_quality").get<double>();
    EXPECT_EQ(result->pvalue, expected) << pair.eval_dir;
    std::cout << pair.eval_dir << ": forget_quality " << result->pvalue
              << " (stored " << expected << ", relative error "
              << std::abs(result->pvalue - expected) / expected << ")\n";
  }
}

}  // namespace
}  // namespace lethe
