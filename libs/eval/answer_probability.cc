#include "libs/eval/answer_probability.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "libs/data/qa_batch.h"
#include "libs/loss/sequence_loss.h"
#include "libs/status/torch_status.h"

namespace lethe {

absl::StatusOr<std::vector<AnswerProbability>> ScoreAnswers(
    LlamaForCausalLM& model, const std::vector<QaExample>& examples, int pad_id,
    const ScoringOptions& options) {
  if (options.batch_size < 1) {
    return absl::InvalidArgumentError("batch_size must be >= 1");
  }
  std::vector<AnswerProbability> scores;
  scores.reserve(examples.size());
  const bool was_training = model.is_training();
  model.eval();
  absl::Status status = CallTorch("scoring answers", [&] {
    torch::NoGradGuard no_grad;
    for (size_t begin = 0; begin < examples.size();
         begin += options.batch_size) {
      const size_t end = std::min(examples.size(), begin + options.batch_size);
      std::vector<const QaExample*> batch_examples;
      for (size_t i = begin; i < end; ++i)
        batch_examples.push_back(&examples[i]);
      const QaBatch batch =
          CollateQaBatch(batch_examples, pad_id).To(model.device());
      CpuBf16AutocastGuard autocast(options.bf16_autocast);
      const AnswerLogProbs log_probs = SequenceAnswerLogProbs(
          model.Forward(batch.input_ids, batch.attention_mask), batch.labels);
      const at::Tensor summed = log_probs.summed.to(at::kDouble).cpu();
      const at::Tensor token_counts = log_probs.token_counts.cpu();
      for (int64_t row = 0; row < summed.size(0); ++row) {
        AnswerProbability score;
        score.answer_tokens =
            static_cast<int>(token_counts[row].item<int64_t>());
        score.avg_loss = score.answer_tokens > 0
                             ? -summed[row].item<double>() / score.answer_tokens
                             : 0.0;
        score.probability = std::exp(-score.avg_loss);
        scores.push_back(score);
      }
    }
  });
  if (was_training) model.train();
  if (!status.ok()) return status;
  return scores;
}

double MeanProbability(const std::vector<AnswerProbability>& scores) {
  if (scores.empty()) return 0;
  double total = 0;
  for (const AnswerProbability& score : scores) total += score.probability;
  return total / scores.size();
}

}  // namespace lethe
