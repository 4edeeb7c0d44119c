// Two-sided two-sample Kolmogorov-Smirnov test, computed as SciPy's
// scipy.stats.ks_2samp(x, y) (method="auto", alternative="two-sided"), which
// open-unlearning uses for TOFU's forget quality.
//
//   ASSIGN_OR_RETURN(KsTestResult ks, KsTwoSampleTest(forget_tr, retain_tr));
//   double forget_quality = ks.pvalue;
//
// The statistic D is the largest gap between the two empirical CDFs. When
// both samples have at most 10000 values the p-value P(D >= d) is exact:
// for equal sizes n, the alternating reflection series for paths outside
// the band |x - y| < h, evaluated Horner-style; otherwise the lattice-path
// recursion over the band |x/m - y/n| < h / lcm(m, n) that accumulates the
// probability of having left it (Viehmann 2021), with h = round(d * lcm).
// Larger samples, or an exact result outside [0, 1], use the one-sample
// Kolmogorov distribution of size round(mn / (m + n)) at d
// (kolmogorov_distribution.h), as SciPy does.
#ifndef LETHE_LIBS_EVAL_KS_TEST_H_
#define LETHE_LIBS_EVAL_KS_TEST_H_

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace lethe {

struct KsTestResult {
  double statistic = 0;  // D; for the exact method, h / lcm(m, n).
  double pvalue = 1;
  bool exact = true;  // False when the asymptotic distribution was used.
};

// INVALID_ARGUMENT when a sample is empty or holds NaN.
absl::StatusOr<KsTestResult> KsTwoSampleTest(absl::Span<const double> x,
                                             absl::Span<const double> y);

}  // namespace lethe

#endif  // LETHE_LIBS_EVAL_KS_TEST_H_
