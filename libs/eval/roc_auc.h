// Area under the ROC curve of a binary score, computed as scikit-learn's
// roc_auc_score(labels, scores), which open-unlearning uses for its
// membership-inference (MIA) metrics.
//
//   // open-unlearning labels forget examples 0 and holdout examples 1.
//   ASSIGN_OR_RETURN(double auc, RocAuc(forget_scores, holdout_scores));
//
// The curve has one point per distinct score (highest first), collinear
// points dropped, and (0, 0) prepended; the area is the trapezoidal rule as
// np.trapz evaluates it (NumPy's pairwise sum), so results agree to the
// bit. Tied scores of the two classes count one half.
#ifndef LETHE_LIBS_EVAL_ROC_AUC_H_
#define LETHE_LIBS_EVAL_ROC_AUC_H_

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace lethe {

// INVALID_ARGUMENT when a class has no scores or a score is not finite.
absl::StatusOr<double> RocAuc(absl::Span<const double> negative_scores,
                              absl::Span<const double> positive_scores);

}  // namespace lethe

#endif  // LETHE_LIBS_EVAL_ROC_AUC_H_
