// PGA's memorisation probe (arXiv 2605.01699; DESIGN.md "Methods", PGA): a
// logistic regression on standardised last-token hidden states that tells
// memorised sequences (label 1) from clean ones (label 0), and its
// leave-one-pair-out accuracy, the paper's measure of the memorisation
// signature (chance is 0.5; unlearning should bring it down to chance).
//
//   ASSIGN_OR_RETURN(double accuracy,
//                    LeaveOnePairOutAccuracy(memorised, clean));
//   ASSIGN_OR_RETURN(LogisticProbe probe, FitLogisticProbe(x, labels));
//   at::Tensor w = ProbeDirection(probe);  // unit, in the input space
//
// The probe is the paper's: scikit-learn's StandardScaler (mean and
// population standard deviation of the training rows; a constant feature
// keeps scale 1), then LogisticRegression(C) with an L2 penalty on the
// weights, not on the intercept. sklearn is not available to a C++ service,
// so this solves the same strictly convex problem itself, in fp64, to a
// much tighter tolerance than lbfgs' default: the weights lie in the span of
// the standardised rows, so with the eigendecomposition K = Z Z^T = U L U^T
// the problem becomes a small one in r + 1 unknowns (r = rank of K <= rows),
// solved by Newton's method with a backtracking line search. Cost per fit:
// O(n^2 d + n^3) for n rows of d features, so the leave-one-pair-out
// accuracy over N pairs of d-wide states takes O(N^3 d) (TOFU forget10,
// N = 400 pairs at d = 4096: about a teraflop).
#ifndef LETHE_LIBS_EVAL_MEMORIZATION_PROBE_H_
#define LETHE_LIBS_EVAL_MEMORIZATION_PROBE_H_

#include <torch/types.h>

#include "absl/status/statusor.h"

namespace lethe {

struct ProbeOptions {
  double c = 1.0;  // Inverse L2 strength, as scikit-learn's C.
  int max_newton_steps = 100;
  // Stop when the Newton decrement (squared) falls below this.
  double tolerance = 1e-20;
};

// A fitted probe; every tensor fp64, on the CPU.
struct LogisticProbe {
  at::Tensor mean;    // [d] of the training rows.
  at::Tensor scale;   // [d] their standard deviations (1 where constant).
  at::Tensor weight;  // [d] in the standardised space.
  double bias = 0;
  int newton_steps = 0;
};

// rows: [n, d] (any floating dtype, any device); labels: [n] of 0 and 1,
// both classes present. INVALID_ARGUMENT otherwise.
absl::StatusOr<LogisticProbe> FitLogisticProbe(
    const at::Tensor& rows, const at::Tensor& labels,
    const ProbeOptions& options = {});

// P(label 1) for each row of `rows` [m, d], fp64 [m].
at::Tensor ProbeProbabilities(const LogisticProbe& probe,
                              const at::Tensor& rows);

// The probe's direction in the input (unstandardised) space: weight / scale,
// normalised to unit length, fp64 [d] (PGA's w_d; a zero weight stays
// zero).
at::Tensor ProbeDirection(const LogisticProbe& probe);

// memorised and clean: [N, d] each, row i of one paired with row i of the
// other (N >= 2). For each i the probe is fitted on the other 2(N - 1) rows
// and scores pair i (a row is right when its probability is on its label's
// side of 0.5; a tie counts as label 0, as sklearn's predict); the result is
// the mean accuracy over the N pairs.
absl::StatusOr<double> LeaveOnePairOutAccuracy(
    const at::Tensor& memorised, const at::Tensor& clean,
    const ProbeOptions& options = {});

}  // namespace lethe

#endif  // LETHE_LIBS_EVAL_MEMORIZATION_PROBE_H_
