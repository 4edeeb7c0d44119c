// TOFU evaluation of a model, as open-unlearning's TOFUEvaluator runs it:
// every per-question metric of its TOFU_EVAL.json under the same key names and
// JSON layout, and the TOFU_SUMMARY.json computed from them
// (tofu_summary.h).
//
//   ASSIGN_OR_RETURN(TofuEvalData data,
//                    ReadTofuEvalData(data_dir, "forget10"));
//   TofuEvaluator evaluator(*model, *tokenizer, prompt_template,
//                           {.batch_size = 32});
//   ASSIGN_OR_RETURN(TofuEvalResult result,
//                    evaluator.Evaluate(data, &retain_log));  // or nullptr
//   RETURN_IF_ERROR(WriteTofuEvalFiles(result, output_dir));
//
// The sets (open-unlearning's TOFU dataset names, files in `data_dir`):
//   forget   <split>_perturbed     forget_Q_A_Prob / _PARA_Prob / _PERT_Prob,
//                                  forget_Q_A_ROUGE, forget_truth_ratio,
//                                  exact_memorization, extraction_strength,
//                                  and the members of every mia_* attack
//   holdout  holdout<NN>           the non-members of every mia_* attack
//   retain   retain_perturbed      retain_Q_A_Prob / _PARA_Prob / _PERT_Prob,
//                                  retain_Q_A_ROUGE, retain_Truth_Ratio
//   ra, wf   real_authors_perturbed, world_facts_perturbed:
//                                  *_Q_A_Prob, *_Q_A_PERT_Prob,
//                                  *_Q_A_Prob_normalised, *_Q_A_ROUGE,
//                                  *_Truth_Ratio (the answer plays the
//                                  paraphrase)
// plus forget_quality, model_utility and privleak (agg_value only; the
// summary's numbers). mia_reference is computed when a reference model is
// given; forget_Q_A_gibberish (a classifier model) is not computed.
//
// Per question, as open-unlearning computes it:
//   *_Prob          avg_loss = mean answer-token NLL (EOS included), prob =
//                   exp(-avg_loss), both in float32 as its tensors hold them
//   *_ROUGE         one greedy generation of up to max_new_tokens from the
//                   prompt; "input" (decoded prompt), "ground_truth" (decoded
//                   question + answer with the input removed) and
//                   "generation" (decoded, cut at EOS), all with Hugging Face's
//                   clean_up_tokenization_spaces and stripped; rouge1_recall,
//                   rougeL_f1, rougeL_recall (rouge.h)
//   truth ratio     P(perturbed) / P(paraphrased) (TruthRatio, tofu_metrics.h)
//   exact_memorization  share of answer tokens (EOS excluded) that are the
//                   argmax prediction; null for an answer without tokens
//   extraction_strength 1 - k/n for the first k from which every prediction
//                   matches (k at most n - 1, as its loop leaves it)
//   mia_loss        avg_loss; mia_zlib avg_loss / zlib-compressed bytes of the
//                   decoded answer; mia_min_k -mean of the lowest 40% of the
//                   answer-token log-probs (EOS excluded); mia_min_k_plus_plus
//                   the same over (log p - mu) / sigma of the vocabulary
//                   distribution; mia_gradnorm mean over parameters of the
//                   L2 norm of d(-mean answer log-prob)/d(parameter), one
//                   question at a time; mia_reference avg_loss minus the
//                   reference model's. AUC of forget (label 0) against holdout
//                   (label 1) (roc_auc.h).
// The model runs without gradients except for mia_gradnorm, which leaves the
// parameters' .grad untouched (it uses autograd::grad).
//
// Sharded across the ranks of a group (TofuEvalOptions::sharding), every rank
// calls Evaluate with the same data, options and weights; each computes the
// expensive values (answer scores, mia_gradnorm, the reference's scores, the
// generations) of its share of the examples and prompts, the ranks exchange
// them with one all_gather, and every rank computes the same metrics and
// summary from the whole set: the unsharded result up to floating-point
// rounding (batches hold other examples).
//
// Its parts: the evaluation sets (tofu_eval_data.h), answer scores
// (answer_scoring.h), generations (libs/model/generation.h), the bytes in
// which ranks exchange their shares (eval_share_format.h) and the metrics'
// JSON (tofu_eval_metrics.h).
#ifndef LETHE_LIBS_EVAL_TOFU_EVALUATOR_H_
#define LETHE_LIBS_EVAL_TOFU_EVALUATOR_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "libs/data/qa_example.h"
#include "libs/eval/tofu_eval_data.h"
#include "libs/model/llama_model.h"
#include "libs/tokenizer/tokenizer.h"
#include "nlohmann/json.hpp"

namespace lethe {

// How an evaluation is split between the ranks of a group: rank r computes
// the examples and prompts whose index % world_size == r.
struct TofuEvalSharding {
  int rank = 0;
  int world_size = 1;
  // Returns every rank's `mine`, in rank order (e.g.
  // CollectiveGroup::AllGatherBytes). Required when world_size > 1; then
  // Evaluate calls it exactly once, after computing its share (an empty share
  // included), unless it fails before (the peers' calls must then fail, e.g.
  // by a timeout); with world_size 1 it is never called.
  std::function<absl::StatusOr<std::vector<std::string>>(
      const std::string& mine)>
      all_gather;
};

struct TofuEvalOptions {
  // Questions per forward pass and per generation batch (open-unlearning's
  // eval batch size).
  int batch_size = 32;
  int max_new_tokens = 200;
  // Tokens of prompt + answer; longer ones are cut as in training.
  int max_length = 512;
  // false: generate one question at a time (GreedyGenerate), for comparison.
  bool batched_generation = true;
  // The fraction of lowest-scoring tokens of mia_min_k and
  // mia_min_k_plus_plus.
  double min_k_fraction = 0.4;
  // For mia_reference (typically the retain model); none: left out.
  LlamaForCausalLM* reference_model = nullptr;
  // Progress lines ("forget10: generating 400 answers ..."); counts are this
  // rank's share when sharded.
  std::function<void(const std::string&)> progress;
  // Unsharded by default.
  TofuEvalSharding sharding;
};

struct TofuEvalResult {
  nlohmann::ordered_json eval_log;  // TOFU_EVAL.json
  nlohmann::json summary;           // TOFU_SUMMARY.json
};

class TofuEvaluator {
 public:
  // `model`, `tokenizer` and `options.reference_model` must outlive the
  // evaluator.
  TofuEvaluator(LlamaForCausalLM& model, const Tokenizer& tokenizer,
                PromptTemplate prompt_template, TofuEvalOptions options = {});

  // Evaluates every metric; `retain_log` is the retain model's
  // TOFU_EVAL.json for forget_quality and privleak (null: forget_quality is
  // null and privleak compares with an AUC of 0.5, as open-unlearning does).
  // INVALID_ARGUMENT for bad options (sharding included); with sharding, the
  // all_gather's error, or FAILED_PRECONDITION / DATA_LOSS for a peer's share
  // that does not fit (other data, another version).
  absl::StatusOr<TofuEvalResult> Evaluate(
      const TofuEvalData& data, const nlohmann::ordered_json* retain_log);

 private:
  LlamaForCausalLM& model_;
  const Tokenizer& tokenizer_;
  PromptTemplate prompt_template_;
  TofuEvalOptions options_;
};

// Writes `dir`/TOFU_EVAL.json and `dir`/TOFU_SUMMARY.json (creating `dir`),
// each atomically, laid out as open-unlearning's json.dump(indent=4)
// (non-ASCII characters escaped).
absl::Status WriteTofuEvalFiles(const TofuEvalResult& result,
                                const std::string& dir);

}  // namespace lethe

#endif  // LETHE_LIBS_EVAL_TOFU_EVALUATOR_H_
