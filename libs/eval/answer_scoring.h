// Scores of (question, answer) pairs under a model, as open-unlearning's TOFU
// metrics compute them: the answer's mean token NLL and probability, and per
// answer token the log-probabilities behind mia_min_k and
// mia_min_k_plus_plus, exact_memorization and extraction_strength; and the
// gradient norms of mia_gradnorm.
//
//   ASSIGN_OR_RETURN(std::vector<AnswerScore> scores,
//                    ScoreExamples(model, examples, pad_id,
//                                  /*batch_size=*/32, /*detailed=*/true));
//   double min_k = MinKScore(scores[0].token_log_probs, 0.4);
//
// The per-token statistics cover the answer tokens but the last (EOS), as
// open-unlearning's tokenwise_logprobs selects them (PerTokenSpan).
#ifndef LETHE_LIBS_EVAL_ANSWER_SCORING_H_
#define LETHE_LIBS_EVAL_ANSWER_SCORING_H_

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "libs/data/qa_example.h"

namespace lethe {

// libs/model/llama_model.h. Declared, not included, so that AnswerScore's
// users (the share format, the metric assembly) compile without LibTorch's
// headers.
class LlamaForCausalLM;

// One (question, answer) pair under the model.
struct AnswerScore {
  float avg_loss = 0;  // Mean NLL over the answer tokens, EOS included.
  float prob = 0;      // exp(-avg_loss).
  // Detailed scores, over PerTokenSpan's tokens:
  std::vector<float> token_log_probs;
  std::vector<float> standardized_log_probs;  // (log p - mu) / sigma
  // Share of the tokens that are the argmax prediction; null without tokens.
  std::optional<double> exact_memorization;
  // 1 - k/n for the first k from which every prediction matches (k at most
  // n - 1); 0 without tokens.
  double extraction_strength = 0;
};

// The answer tokens that open-unlearning's per-token metrics look at: the
// labelled positions but the last, as [start, start + count).
struct AnswerSpan {
  int64_t start = 0;
  int64_t count = 0;
};

// `example`'s span: empty for an answer of at most one token; `start` is at
// least 1 (each token is predicted from the position before it).
AnswerSpan PerTokenSpan(const QaExample& example);

// Scores every example, in order, `batch_size` at a time (longest first, so
// that batches hold little padding; `pad_id` pads them), without gradients.
// avg_loss and prob in float32, as open-unlearning's evaluate_probability
// computes them; the detailed scores only when `detailed`. INTERNAL for
// LibTorch's errors.
absl::StatusOr<std::vector<AnswerScore>> ScoreExamples(
    LlamaForCausalLM& model, const std::vector<QaExample>& examples, int pad_id,
    int batch_size, bool detailed);

// open-unlearning's mia_gradnorm statistic for each example, one at a time:
// the mean over parameters of ||d loss / d parameter||_2, loss = -mean
// log-prob of PerTokenSpan's tokens; 0 for an empty span. Leaves the
// parameters' .grad untouched (autograd::grad). FAILED_PRECONDITION when no
// parameter requires gradients; INTERNAL for LibTorch's errors.
absl::StatusOr<std::vector<double>> GradientNorms(
    LlamaForCausalLM& model, const std::vector<QaExample>& examples);

// mia_min_k's statistic: -mean of the lowest max(1, int(n * fraction)) of
// `values` (0 without values).
double MinKScore(std::vector<float> values, double fraction);

}  // namespace lethe

#endif  // LETHE_LIBS_EVAL_ANSWER_SCORING_H_
