// Float64 reductions evaluated in the order NumPy and SciPy evaluate them, so
// aggregates computed here equal open-unlearning's to the last bit.
//
//   double mean = NumpyMean(values);  // np.mean(values)
//   ASSIGN_OR_RETURN(double utility, ScipyHarmonicMean(values));
//
// NumPy sums a contiguous float64 array pairwise: runs of at most 128
// values go through eight interleaved partial sums, longer arrays are split
// in two (at a multiple of eight) and each half is summed that way. A plain
// left-to-right loop differs from it in the last bits.
#ifndef LETHE_LIBS_EVAL_NUMPY_REDUCTION_H_
#define LETHE_LIBS_EVAL_NUMPY_REDUCTION_H_

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace lethe {

// np.sum(values) (np.add.reduce) of a contiguous float64 array; 0 when empty.
double NumpySum(absl::Span<const double> values);

// np.mean(values): NumpySum(values) / size; NaN when empty, as NumPy.
double NumpyMean(absl::Span<const double> values);

// scipy.stats.hmean(values) = 1 / np.mean(1 / values); 0 when a value is 0.
// INVALID_ARGUMENT when `values` is empty or holds a negative value or NaN.
absl::StatusOr<double> ScipyHarmonicMean(absl::Span<const double> values);

}  // namespace lethe

#endif  // LETHE_LIBS_EVAL_NUMPY_REDUCTION_H_
