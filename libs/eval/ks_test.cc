#include "libs/eval/ks_test.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "libs/eval/kolmogorov_distribution.h"

namespace lethe {
namespace {

// SciPy computes the exact distribution when neither sample is larger.
constexpr int64_t kMaxExactSampleSize = 10000;

// P(D >= h / n) for two samples of n values: twice the alternating series
// sum_k (-1)^k C(2n, n - (k+1)h) / C(2n, n), each term a product of h
// ratios, nested as A0 (1 - A1 (1 - A2 (...))) to avoid cancellation.
double ProbabilityOutsideSquare(int64_t n, int64_t h) {
  double probability = 0.0;
  for (int64_t k = n / h; k >= 0; --k) {
    double term = 1.0;
    for (int64_t j = 0; j < h; ++j) {
      term = static_cast<double>(n - k * h - j) * term /
             static_cast<double>(n + k * h + j + 1);
    }
    probability = term * (1.0 - probability);
  }
  return 2 * probability;
}

// P(D >= h / lcm(m, n)) for samples of m and n values with gcd g: walks the
// lattice paths from (0, 0) to (m, n) column by column, keeping for the
// points inside the band |x/m - y/n| < h / lcm the probability that a
// random path reaching them has already left the band (points outside
// count 1). Only a sliding window of one column is kept.
double ProbabilityOutsideBand(int64_t m, int64_t n, int64_t g, int64_t h) {
  if (m < n) std::swap(m, n);
  const int64_t mg = m / g;
  const int64_t ng = n / g;
  int64_t min_j = 0;
  int64_t max_j = std::min(
      static_cast<int64_t>(std::ceil(static_cast<double>(h) / mg)), n + 1);
  int64_t window = max_j - min_j;
  const int64_t length = std::min(2 * max_j + 2, n + 1);
  std::vector<double> column(length, 1.0);
  std::fill(column.begin(), column.begin() + std::min(max_j, length), 0.0);
  for (int64_t i = 1; i <= m; ++i) {
    const int64_t last_min_j = min_j;
    const int64_t last_window = window;
    min_j = std::max(
        static_cast<int64_t>(std::floor(static_cast<double>(ng * i - h) / mg)) +
            1,
        int64_t{0});
    min_j = std::min(min_j, n);
    max_j = std::min(
        static_cast<int64_t>(std::ceil(static_cast<double>(ng * i + h) / mg)),
        n + 1);
    if (max_j <= min_j) return 1.0;
    double value = min_j == 0 ? 0.0 : 1.0;
    for (int64_t jj = 0; jj < max_j - min_j; ++jj) {
      const int64_t j = jj + min_j;
      value = (column[jj + min_j - last_min_j] * static_cast<double>(i) +
               value * static_cast<double>(j)) /
              static_cast<double>(i + j);
      column[jj] = value;
    }
    window = max_j - min_j;
    if (last_window > window) {
      std::fill(column.begin() + std::min(window, length),
                column.begin() + std::min(last_window, length), 1.0);
    }
  }
  return column[max_j - min_j - 1];
}

}  // namespace

absl::StatusOr<KsTestResult> KsTwoSampleTest(absl::Span<const double> x,
                                             absl::Span<const double> y) {
  if (x.empty() || y.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("KS test needs two non-empty samples; got ", x.size(),
                     " and ", y.size(), " values"));
  }
  std::vector<double> first(x.begin(), x.end());
  std::vector<double> second(y.begin(), y.end());
  for (const std::vector<double>* sample : {&first, &second}) {
    if (std::any_of(sample->begin(), sample->end(),
                    [](double v) { return std::isnan(v); })) {
      return absl::InvalidArgumentError("KS test sample holds NaN");
    }
  }
  std::sort(first.begin(), first.end());
  std::sort(second.begin(), second.end());
  const auto n1 = static_cast<int64_t>(first.size());
  const auto n2 = static_cast<int64_t>(second.size());

  // Differences of the empirical CDFs at every observed value.
  double max_difference = -INFINITY;
  double min_difference = INFINITY;
  for (const std::vector<double>* sample : {&first, &second}) {
    for (const double value : *sample) {
      const auto below1 =
          std::upper_bound(first.begin(), first.end(), value) - first.begin();
      const auto below2 =
          std::upper_bound(second.begin(), second.end(), value) -
          second.begin();
      const double difference =
          static_cast<double>(below1) / static_cast<double>(n1) -
          static_cast<double>(below2) / static_cast<double>(n2);
      max_difference = std::max(max_difference, difference);
      min_difference = std::min(min_difference, difference);
    }
  }
  const double below = std::clamp(-min_difference, 0.0, 1.0);
  KsTestResult result;
  result.statistic = below > max_difference ? below : max_difference;

  if (std::max(n1, n2) <= kMaxExactSampleSize) {
    const int64_t g = std::gcd(n1, n2);
    const int64_t lcm = (n1 / g) * n2;
    const auto h = static_cast<int64_t>(
        std::nearbyint(result.statistic * static_cast<double>(lcm)));
    result.statistic = static_cast<double>(h) / static_cast<double>(lcm);
    if (h == 0) {
      result.pvalue = 1.0;
      return result;
    }
    result.pvalue = n1 == n2 ? ProbabilityOutsideSquare(n1, h)
                             : ProbabilityOutsideBand(n1, n2, g, h);
    if (result.pvalue >= 0 && result.pvalue <= 1) return result;
  }
  const double m = static_cast<double>(std::max(n1, n2));
  const double n = static_cast<double>(std::min(n1, n2));
  const auto effective_size =
      static_cast<int64_t>(std::nearbyint(m * n / (m + n)));
  result.exact = false;
  result.pvalue = std::clamp(
      KolmogorovSmirnovSf(effective_size, result.statistic), 0.0, 1.0);
  return result;
}

}  // namespace lethe
