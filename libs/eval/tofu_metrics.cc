#include "libs/eval/tofu_metrics.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "libs/eval/numpy_reduction.h"

namespace lethe {

double TruthRatio(double paraphrased_avg_loss,
                  absl::Span<const double> perturbed_avg_losses) {
  const double perturbed = std::exp(-NumpyMean(perturbed_avg_losses));
  const double paraphrased = std::exp(-paraphrased_avg_loss);
  return perturbed / (paraphrased + kTofuEpsilon);
}

double MeanTruthRatioCloserToOne(absl::Span<const double> truth_ratios) {
  std::vector<double> scores;
  scores.reserve(truth_ratios.size());
  for (const double tr : truth_ratios) {
    scores.push_back(std::min(tr, 1 / (tr + kTofuEpsilon)));
  }
  return NumpyMean(scores);
}

double MeanOneMinusTruthRatio(absl::Span<const double> truth_ratios) {
  std::vector<double> scores;
  scores.reserve(truth_ratios.size());
  for (const double tr : truth_ratios) {
    scores.push_back(std::max(0.0, 1 - tr));
  }
  return NumpyMean(scores);
}

double NormalisedProbability(double correct_probability,
                             absl::Span<const double> perturbed_probabilities) {
  return correct_probability /
         (correct_probability + NumpySum(perturbed_probabilities) +
          kTofuEpsilon);
}

double PrivLeak(double mia_auc, double reference_auc) {
  const double score = 1 - mia_auc;
  const double reference = 1 - reference_auc;
  return (score - reference) / (reference + kTofuEpsilon) * 100;
}

}  // namespace lethe
