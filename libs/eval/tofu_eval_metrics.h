// The pieces of open-unlearning's TOFU_EVAL.json (tofu_evaluator.h) built
// from per-question scores (answer_scoring.h): each metric is
//   {"agg_value": <aggregate>, "value_by_index": {"0": <entry>, ...}}
// (mia_* attacks: {"forget": <metric>, "holdout": <metric>, "auc",
// "agg_value"}) with open-unlearning's entry fields, in its order, and its
// aggregates (numpy means, tofu_metrics.h); and the text helpers the metrics
// use as open-unlearning does: Hugging Face's decoding clean-up and zlib sizes.
//
//   log["forget_Q_A_Prob"] = ProbabilityMetric(forget_scores);
//   ASSIGN_OR_RETURN(log["mia_loss"], MiaMetric("mia_loss", forget, holdout));
#ifndef LETHE_LIBS_EVAL_TOFU_EVAL_METRICS_H_
#define LETHE_LIBS_EVAL_TOFU_EVAL_METRICS_H_

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "libs/eval/answer_scoring.h"
#include "libs/tokenizer/tokenizer.h"
#include "nlohmann/json.hpp"

namespace lethe {

// {"agg_value": agg_value, "value_by_index": {"0": entries[0], ...}}.
nlohmann::ordered_json Metric(
    double agg_value, const std::vector<nlohmann::ordered_json>& entries);

// open-unlearning's "probability" metric, one answer per question: entries
// {"prob", "avg_loss"}, aggregated as the mean prob.
nlohmann::ordered_json ProbabilityMetric(
    const std::vector<AnswerScore>& scores);

// The same with several answers per question (perturbed ones): entries hold
// lists, aggregated as the mean of the per-question mean probs.
nlohmann::ordered_json MultiProbabilityMetric(
    const std::vector<std::vector<AnswerScore>>& scores);

// How a truth-ratio metric aggregates its per-question ratios (tofu_metrics.h).
enum class TruthRatioAggregate { kCloserToOne, kOneMinus };

// Entries {"score": TruthRatio(correct[i], perturbed[i])} from avg_loss.
nlohmann::ordered_json TruthRatioMetric(
    const std::vector<AnswerScore>& correct,
    const std::vector<std::vector<AnswerScore>>& perturbed,
    TruthRatioAggregate aggregate);

// Entries {"prob": NormalisedProbability(correct[i], perturbed[i])}, mean.
nlohmann::ordered_json NormalisedProbabilityMetric(
    const std::vector<AnswerScore>& correct,
    const std::vector<std::vector<AnswerScore>>& perturbed);

// Entries {"score": score or null}; the mean of the present scores.
nlohmann::ordered_json ScoreMetric(
    const std::vector<std::optional<double>>& scores);

// A membership-inference attack `name`: forget (members, label 0) and holdout
// (non-members, label 1) score metrics and their ROC AUC (roc_auc.h) as
// "auc" and "agg_value". RocAuc's error, prefixed with `name`.
absl::StatusOr<nlohmann::ordered_json> MiaMetric(
    const std::string& name, const std::vector<double>& forget,
    const std::vector<double>& holdout);

// One question of a ROUGE metric, texts as DecodeForRouge gives them.
struct RougeSample {
  std::string input;         // The prompt.
  std::string ground_truth;  // The answer.
  std::string generation;    // The model's answer.
};

// Entries {"rouge1_recall", "rougeL_f1", "rougeL_recall", "input",
// "ground_truth", "generation"} (ScoreRouge of the ground truth against the
// generation), aggregated as the mean rougeL_recall.
nlohmann::ordered_json RougeMetric(const std::vector<RougeSample>& samples);

// Hugging Face transformers' clean_up_tokenization (what batch_decode's
// clean_up_tokenization_spaces=True applies): " ." -> ".", " ?" -> "?",
// " !" -> "!", " ," -> ",", " ' " -> "'", " n't" -> "n't", " 'm" -> "'m",
// " 's" -> "'s", " 've" -> "'ve", " 're" -> "'re", in that order, each
// replacing every occurrence as Python's str.replace does.
std::string CleanUpTokenizationSpaces(std::string text);

// `ids` decoded and cleaned up as open-unlearning decodes generations.
absl::StatusOr<std::string> DecodeForRouge(const Tokenizer& tokenizer,
                                           const std::vector<int>& ids);

// Python's len(zlib.compress(text.encode())): zlib format, default level.
// INTERNAL if zlib fails.
absl::StatusOr<size_t> ZlibCompressedSize(const std::string& text);

}  // namespace lethe

#endif  // LETHE_LIBS_EVAL_TOFU_EVAL_METRICS_H_
