// Next-token losses over answer tokens, the quantities every objective and
// metric in Lethe is built from. Logits at position t predict the token at
// t+1 (labels are shifted inside, as in Hugging Face); positions whose label
// is kIgnoreIndex (prompt, padding) contribute nothing.
//
//   at::Tensor nll = TokenMeanNll(logits, batch.labels);        // scalar
//   AnswerLogProbs lp = SequenceAnswerLogProbs(logits, batch.labels);
//   // lp.summed[b]: sum over b's answer tokens of log p(token)
#ifndef LETHE_LIBS_LOSS_SEQUENCE_LOSS_H_
#define LETHE_LIBS_LOSS_SEQUENCE_LOSS_H_

#include <torch/types.h>

namespace lethe {

// Per-position negative log-likelihood of the next label, [B, T-1], zero
// where the label is ignored. Computed in fp32 (fp64 for fp64 logits).
at::Tensor TokenNll(const at::Tensor& logits, const at::Tensor& labels);

// Mean NLL over every answer token of the batch (Hugging Face's causal-LM
// loss). Zero when the batch has no answer token.
at::Tensor TokenMeanNll(const at::Tensor& logits, const at::Tensor& labels);

struct AnswerLogProbs {
  at::Tensor summed;        // [B] summed answer-token log-probabilities.
  at::Tensor token_counts;  // [B] answer tokens per sequence.
};

AnswerLogProbs SequenceAnswerLogProbs(const at::Tensor& logits,
                                      const at::Tensor& labels);

}  // namespace lethe

#endif  // LETHE_LIBS_LOSS_SEQUENCE_LOSS_H_
