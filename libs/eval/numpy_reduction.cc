#include "libs/eval/numpy_reduction.h"

#include <cmath>
#include <cstddef>
#include <limits>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace lethe {
namespace {

// NumPy's block size for unrolled summation (PW_BLOCKSIZE).
constexpr size_t kPairwiseBlock = 128;
constexpr size_t kUnroll = 8;

double PairwiseSum(const double* values, size_t n) {
  if (n < kUnroll) {
    double sum = 0.0;
    for (size_t i = 0; i < n; ++i) sum += values[i];
    return sum;
  }
  if (n <= kPairwiseBlock) {
    double partial[kUnroll];
    for (size_t j = 0; j < kUnroll; ++j) partial[j] = values[j];
    size_t i = kUnroll;
    for (; i < n - n % kUnroll; i += kUnroll) {
      for (size_t j = 0; j < kUnroll; ++j) partial[j] += values[i + j];
    }
    double sum = ((partial[0] + partial[1]) + (partial[2] + partial[3])) +
                 ((partial[4] + partial[5]) + (partial[6] + partial[7]));
    for (; i < n; ++i) sum += values[i];
    return sum;
  }
  size_t half = n / 2;
  half -= half % kUnroll;
  return PairwiseSum(values, half) + PairwiseSum(values + half, n - half);
}

}  // namespace

double NumpySum(absl::Span<const double> values) {
  // The reduction starts from add's identity, 0.0, and adds the pairwise sum.
  return 0.0 + PairwiseSum(values.data(), values.size());
}

double NumpyMean(absl::Span<const double> values) {
  if (values.empty()) return std::numeric_limits<double>::quiet_NaN();
  return NumpySum(values) / static_cast<double>(values.size());
}

absl::StatusOr<double> ScipyHarmonicMean(absl::Span<const double> values) {
  if (values.empty()) {
    return absl::InvalidArgumentError("harmonic mean of no values");
  }
  std::vector<double> reciprocals;
  reciprocals.reserve(values.size());
  for (size_t i = 0; i < values.size(); ++i) {
    if (!(values[i] >= 0)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "harmonic mean needs values >= 0; value ", i, " is ", values[i]));
    }
    reciprocals.push_back(1.0 / values[i]);
  }
  return 1.0 / NumpyMean(reciprocals);
}

}  // namespace lethe
