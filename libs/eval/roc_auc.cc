#include "libs/eval/roc_auc.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "libs/eval/numpy_reduction.h"

namespace lethe {

absl::StatusOr<double> RocAuc(absl::Span<const double> negative_scores,
                              absl::Span<const double> positive_scores) {
  if (negative_scores.empty() || positive_scores.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ROC AUC needs scores of both classes; got ", negative_scores.size(),
        " negative and ", positive_scores.size(), " positive"));
  }
  // (score, is_positive), highest score first.
  std::vector<std::pair<double, bool>> scored;
  scored.reserve(negative_scores.size() + positive_scores.size());
  for (const double score : negative_scores) scored.emplace_back(score, false);
  for (const double score : positive_scores) scored.emplace_back(score, true);
  for (const auto& [score, positive] : scored) {
    if (!std::isfinite(score)) {
      return absl::InvalidArgumentError(
          absl::StrCat("ROC AUC score is not finite: ", score));
    }
  }
  std::sort(scored.begin(), scored.end(),
            [](const auto& a, const auto& b) { return a.first > b.first; });

  // Cumulative true and false positives at the last index of each distinct
  // score.
  std::vector<double> true_positives;
  std::vector<double> false_positives;
  double positives_so_far = 0;
  for (size_t i = 0; i < scored.size(); ++i) {
    if (scored[i].second) positives_so_far += 1;
    if (i + 1 == scored.size() || scored[i].first != scored[i + 1].first) {
      true_positives.push_back(positives_so_far);
      false_positives.push_back(static_cast<double>(i + 1) - positives_so_far);
    }
  }

  // roc_curve(drop_intermediate=True): keep the ends and every point where
  // the curve bends; then prepend (0, 0).
  std::vector<double> fpr = {0.0};
  std::vector<double> tpr = {0.0};
  const size_t points = true_positives.size();
  for (size_t i = 0; i < points; ++i) {
    const bool keep = points <= 2 || i == 0 || i + 1 == points ||
                      (false_positives[i + 1] - false_positives[i]) -
                              (false_positives[i] - false_positives[i - 1]) !=
                          0 ||
                      (true_positives[i + 1] - true_positives[i]) -
                              (true_positives[i] - true_positives[i - 1]) !=
                          0;
    if (keep) {
      fpr.push_back(false_positives[i]);
      tpr.push_back(true_positives[i]);
    }
  }
  const double total_false = fpr.back();
  const double total_true = tpr.back();
  for (double& v : fpr) v /= total_false;
  for (double& v : tpr) v /= total_true;

  // np.trapz(tpr, fpr) = sum(diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0).
  std::vector<double> areas;
  areas.reserve(fpr.size() - 1);
  for (size_t i = 1; i < fpr.size(); ++i) {
    areas.push_back((fpr[i] - fpr[i - 1]) * (tpr[i] + tpr[i - 1]) / 2.0);
  }
  return NumpySum(areas);
}

}  // namespace lethe
