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

}  // namespace lethe
