#include "libs/eval/numpy_reduction.h"

#include <cmath>
#include <vector>

#include "absl/status/status.h"
#include "gtest/gtest.h"

namespace lethe {
namespace {

double LeftToRightSum(const std::vector<double>& values) {
  double sum = 0.0;
  for (const double v : values) sum += v;
  return sum;
}

TEST(NumpySumTest, ShortArraysAddLeftToRight) {
  const std::vector<double> values = {0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7};
  EXPECT_EQ(NumpySum(values), LeftToRightSum(values));
  EXPECT_EQ(NumpySum({}), 0.0);
}

TEST(NumpySumTest, EightPartialSumsCombineAsATree) {
  std::vector<double> values(9, 1e-16);
  values[0] = 1.0;
  const double tree = ((values[0] + values[1]) + (values[2] + values[3])) +
                      ((values[4] + values[5]) + (values[6] + values[7])) +
                      values[8];
  EXPECT_EQ(NumpySum(values), tree);
  // np.sum([1.0] + [1e-16] * 8) with NumPy 1.24.
  EXPECT_EQ(NumpySum(values), 1.0000000000000007);
  EXPECT_NE(NumpySum(values), LeftToRightSum(values));
}

TEST(NumpySumTest, LongArraysSplitInHalves) {
  std::vector<double> values;
  for (int i = 0; i < 300; ++i) values.push_back(0.1 * (i % 7) + 1e-3 * i);
  // np.sum / np.mean of the same array with NumPy 1.24.
  EXPECT_EQ(NumpySum(values), 134.55);
  EXPECT_EQ(NumpyMean(values), 0.44850000000000007);
  EXPECT_EQ(LeftToRightSum(values), 134.55000000000007);

  std::vector<double> harmonic;
  for (int i = 1; i <= 1000; ++i) harmonic.push_back(1.0 / i);
  EXPECT_EQ(NumpySum(harmonic), 7.485470860550345);
  EXPECT_EQ(LeftToRightSum(harmonic), 7.485470860550343);
}

TEST(NumpyMeanTest, EmptyIsNan) { EXPECT_TRUE(std::isnan(NumpyMean({}))); }

TEST(ScipyHarmonicMeanTest, MatchesScipy) {
  absl::StatusOr<double> two = ScipyHarmonicMean({1.0, 4.0});
  ASSERT_TRUE(two.ok()) << two.status();
  EXPECT_EQ(*two, 1.6);
  // scipy.stats.hmean([1, 2, 3, 4, 5, 6, 7]).
  absl::StatusOr<double> seven = ScipyHarmonicMean({1, 2, 3, 4, 5, 6, 7});
  ASSERT_TRUE(seven.ok()) << seven.status();
  EXPECT_EQ(*seven, 2.6997245179063363);
}

TEST(ScipyHarmonicMeanTest, ZeroGivesZero) {
  absl::StatusOr<double> mean = ScipyHarmonicMean({0.5, 0.0, 0.25});
  ASSERT_TRUE(mean.ok()) << mean.status();
  EXPECT_EQ(*mean, 0.0);
}

TEST(ScipyHarmonicMeanTest, RejectsNegativeNanAndEmpty) {
  EXPECT_EQ(ScipyHarmonicMean({0.5, -0.1}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ScipyHarmonicMean({NAN}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ScipyHarmonicMean({}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace lethe
