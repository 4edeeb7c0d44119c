// Tail probabilities of the one-sample Kolmogorov-Smirnov statistics for n
// values: the two-sided D_n = sup |F_n - F| and the one-sided
// D+_n = sup (F_n - F), as SciPy evaluates them (scipy.stats.kstwo.sf and
// scipy.special.smirnov). ks_test.h uses the two-sided tail at the
// effective size mn / (m + n) for samples too large for its exact method.
//
//   double p = KolmogorovSmirnovSf(/*n=*/5000, /*d=*/0.03);
//
// KolmogorovSmirnovSf picks its method as Simard & L'Ecuyer (2011) and SciPy
// do: the Ruben-Gambino closed forms at the ends of the range, twice the
// one-sided tail where the two tails cannot overlap or the tail is small,
// Durbin's matrix method (Marsaglia-Tsang-Wang), Pomeranz's recursion, or
// the Pelz-Good expansion. It agrees with SciPy to about 1e-12 relative,
// not bit for bit (matrix products and the one-sided sum are evaluated
// differently).
#ifndef LETHE_LIBS_EVAL_KOLMOGOROV_DISTRIBUTION_H_
#define LETHE_LIBS_EVAL_KOLMOGOROV_DISTRIBUTION_H_

#include <cstdint>

namespace lethe {

// P(D_n >= d), n >= 1.
double KolmogorovSmirnovSf(int64_t n, double d);

// P(D+_n >= d), n >= 1, by the Smirnov / Birnbaum-Tingey sum.
double SmirnovSf(int64_t n, double d);

}  // namespace lethe

#endif  // LETHE_LIBS_EVAL_KOLMOGOROV_DISTRIBUTION_H_
