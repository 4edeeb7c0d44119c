// Recomputes open-unlearning's TOFU summary (TOFU_SUMMARY.json) from the
// per-question values of its TOFU_EVAL.json, with the same keys and, for the
// logs open-unlearning publishes, the same numbers to the last bit.
//
//   ASSIGN_OR_RETURN(nlohmann::ordered_json eval, ReadTofuEvalLog(eval_path));
//   ASSIGN_OR_RETURN(nlohmann::ordered_json retain,
//                    ReadTofuEvalLog(retain_path));
//   ASSIGN_OR_RETURN(nlohmann::json summary, SummarizeTofuEval(eval, &retain));
//   std::cout << summary.dump(4);  // as open-unlearning's json.dump(indent=4)
//
// A summary key is written when the eval log holds that metric:
//   forget_Q_A_Prob, forget_Q_A_ROUGE   mean per-question "prob" and
//                                       "rougeL_recall"
//   exact_memorization,                 mean per-question "score"
//   extraction_strength
//   mia_*                               ROC AUC of the "forget" scores
//                                       (label 0) against the "holdout"
//                                       scores (label 1) (roc_auc.h)
//   model_utility                       harmonic mean of retain_Q_A_Prob,
//                                       retain_Q_A_ROUGE, retain_Truth_Ratio
//                                       and the ra_ / wf_ triples, with
//                                       *_Q_A_Prob_normalised for the ra_
//                                       and wf_ probabilities
//                                       (tofu_metrics.h)
//   forget_quality                      KS p-value (ks_test.h) of the
//                                       forget_truth_ratio scores against
//                                       the retain log's; left out without
//                                       a retain log, as open-unlearning
//                                       leaves out None
//   privleak                            PrivLeak of mia_min_k against the
//                                       retain log's mia_min_k agg_value
//                                       (0.5 without one)
// Everything about the evaluated model is recomputed from per-question
// values; the retain log is read as open-unlearning reads it (its stored
// truth-ratio scores and MIA agg_value). Per-question entries that are null
// are skipped, as open-unlearning skips None. Pre-computed metrics that
// open-unlearning does not summarise (forget_truth_ratio, *_PARA_Prob, ...)
// are inputs only.
#ifndef LETHE_LIBS_EVAL_TOFU_SUMMARY_H_
#define LETHE_LIBS_EVAL_TOFU_SUMMARY_H_

#include <string>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace lethe {

// Parses a TOFU_EVAL.json, keeping its key order (per-question order decides
// the rounding of sums). NOT_FOUND or INVALID_ARGUMENT naming the path.
absl::StatusOr<nlohmann::ordered_json> ReadTofuEvalLog(const std::string& path);

// The summary of `eval_log`; `retain_log` may be null. INVALID_ARGUMENT
// naming the key path (e.g. 'ra_Q_A_PERT_Prob.value_by_index.7.prob', with
// "retain log: " before it for the retain log) when a value the summary
// needs is missing or malformed.
absl::StatusOr<nlohmann::json> SummarizeTofuEval(
    const nlohmann::ordered_json& eval_log,
    const nlohmann::ordered_json* retain_log);

// The keys of a summary SummarizeTofuEval writes (those of open-unlearning's
// TOFU_SUMMARY.json), sorted; the coordinator accepts no other evaluation
// keys from a worker. Pinned to SummarizeTofuEval's output by
// services/coordinator/grpc_services_test.
inline constexpr const char* kTofuSummaryKeys[] = {"exact_memorization",
                                                   "extraction_strength",
                                                   "forget_Q_A_Prob",
                                                   "forget_Q_A_ROUGE",
                                                   "forget_quality",
                                                   "mia_gradnorm",
                                                   "mia_loss",
                                                   "mia_min_k",
                                                   "mia_min_k_plus_plus",
                                                   "mia_reference",
                                                   "mia_zlib",
                                                   "model_utility",
                                                   "privleak"};

}  // namespace lethe

#endif  // LETHE_LIBS_EVAL_TOFU_SUMMARY_H_
