// TOFU's per-question formulas and their aggregates, as open-unlearning
// evaluates them (its small epsilons included), for numbers that agree with
// its TOFU_EVAL.json / TOFU_SUMMARY.json to the last bit.
//
//   double tr = TruthRatio(paraphrased_loss, perturbed_losses);
//   double forget_tr = MeanTruthRatioCloserToOne(forget_truth_ratios);
//   double leak = PrivLeak(mia_min_k_auc, retain_mia_min_k_auc);
//
// Probabilities are exp(-mean answer-token NLL); means are NumPy's
// (numpy_reduction.h).
#ifndef LETHE_LIBS_EVAL_TOFU_METRICS_H_
#define LETHE_LIBS_EVAL_TOFU_METRICS_H_

#include "absl/types/span.h"

namespace lethe {

// open-unlearning's guard against division by zero in these formulas.
inline constexpr double kTofuEpsilon = 1e-10;

// P(perturbed) / P(paraphrased) for one question: the perturbed answers'
// mean NLLs are averaged first, so P(perturbed) is their geometric mean
// probability. exp(-mean(perturbed)) / (exp(-paraphrased) + 1e-10).
double TruthRatio(double paraphrased_avg_loss,
                  absl::Span<const double> perturbed_avg_losses);

// The forget set's truth-ratio score, mean(min(tr, 1 / (tr + 1e-10))): 1
// when the model cannot tell true answers from false ones.
double MeanTruthRatioCloserToOne(absl::Span<const double> truth_ratios);

// The truth-ratio score of the retain, real-author and world-fact sets,
// mean(max(0, 1 - tr)): high when true answers are likelier.
double MeanOneMinusTruthRatio(absl::Span<const double> truth_ratios);

// P(correct) / (P(correct) + sum P(perturbed) + 1e-10) for one question
// (open-unlearning's "*_Q_A_Prob_normalised").
double NormalisedProbability(double correct_probability,
                             absl::Span<const double> perturbed_probabilities);

// Relative MIA leak in percent against a reference (retain) model, both
// AUCs flipped to MUSE's convention: ((1 - auc) - (1 - ref)) /
// ((1 - ref) + 1e-10) * 100. open-unlearning uses ref = 0.5 without a
// retain log.
double PrivLeak(double mia_auc, double reference_auc);

}  // namespace lethe

#endif  // LETHE_LIBS_EVAL_TOFU_METRICS_H_
