#include "libs/loss/sequence_loss.h"

#include <torch/nn/functional/loss.h>

#include "libs/data/qa_example.h"

namespace lethe {

at::Tensor TokenNll(const at::Tensor& logits, const at::Tensor& labels) {
  const int64_t length = logits.size(1);
  const at::ScalarType dtype =
      logits.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  const at::Tensor shifted_logits =
      logits.narrow(1, 0, length - 1).to(dtype).reshape({-1, logits.size(2)});
  const at::Tensor shifted_labels =
      labels.narrow(1, 1, length - 1).reshape({-1}).to(logits.device());
  const at::Tensor nll = torch::nn::functional::cross_entropy(
      shifted_logits, shifted_labels,
      torch::nn::functional::CrossEntropyFuncOptions()
          .ignore_index(kIgnoreIndex)
          .reduction(torch::kNone));
  return nll.view({logits.size(0), length - 1});
}

at::Tensor TokenMeanNll(const at::Tensor& logits, const at::Tensor& labels) {
  const at::Tensor nll = TokenNll(logits, labels);
  const at::Tensor count =
      (labels.narrow(1, 1, labels.size(1) - 1) != kIgnoreIndex).sum();
  return nll.sum() / count.clamp_min(1).to(nll.scalar_type());
}

AnswerLogProbs SequenceAnswerLogProbs(const at::Tensor& logits,
                                      const at::Tensor& labels) {
  const at::Tensor nll = TokenNll(logits, labels);
  return {.summed = -nll.sum(1),
          .token_counts =
              (labels.narrow(1, 1, labels.size(1) - 1) != kIgnoreIndex).sum(1)};
}

at::Tensor TokenInvertedHinge(const at::Tensor& logits,
                              const at::Tensor& labels) {
  const int64_t length = logits.size(1);
  const at::ScalarType dtype =
      logits.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  const at::Tensor shifted_logits = logits.narrow(1, 0, length - 1).to(dtype);
  const at::Tensor shifted_labels =
      labels.narrow(1, 1, length - 1).to(logits.device());
  const at::Tensor answer = shifted_labels != kIgnoreIndex;
  const at::Tensor target =
      shifted_labels.masked_fill(answer.logical_not(), 0).unsqueeze(-1);
  // p(v) = exp(z_v - logsumexp(z)); softmax is monotone, so the largest
  // other probability belongs to the largest other logit: of the top two
  // logits, the first that is not the label's.
  const at::Tensor log_normaliser = at::logsumexp(shifted_logits, -1);
  const at::Tensor target_logit = shifted_logits.gather(-1, target).squeeze(-1);
  const auto [top_logits, top_tokens] = shifted_logits.topk(2, -1);
  const at::Tensor other_logit =
      at::where(top_tokens.select(-1, 0) == target.squeeze(-1),
                top_logits.select(-1, 1), top_logits.select(-1, 0));
  const at::Tensor margin = at::exp(target_logit - log_normaliser) -
                            at::exp(other_logit - log_normaliser);
  return (1 + margin).clamp_min(0) * answer.to(dtype);
}

at::Tensor InvertedHingeLoss(const at::Tensor& logits,
                             const at::Tensor& labels) {
  const at::Tensor hinge = TokenInvertedHinge(logits, labels);
  const at::Tensor count =
      (labels.narrow(1, 1, labels.size(1) - 1) != kIgnoreIndex).sum();
  return hinge.sum() / count.clamp_min(1).to(hinge.scalar_type());
}

}  // namespace lethe
