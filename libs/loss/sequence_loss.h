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

// Inverted hinge loss per position, [B, T-1]:
// max(0, 1 + p(y) - max_{v != y} p(v)), p the softmax of the logits that
// predict label y; zero where the label is ignored. Computed in fp32 (fp64
// for fp64 logits). When several other tokens tie for the max, the gradient
// goes to one of them (a subgradient). With softmax probabilities the hinge
// never clips (p(y) >= 0 and max p(v) < 1), but the max(0, .) is kept as
// defined. Needs a vocabulary of at least 2 tokens.
at::Tensor TokenInvertedHinge(const at::Tensor& logits,
                              const at::Tensor& labels);

// IHL (DESIGN.md "Methods"): the mean of TokenInvertedHinge over every answer
// token of the batch (not a mean of per-sequence means), as ReGLU's code
// (sustech-nlp/ReGLU, multiclass_hinge_loss on the masked, flattened
// positions). Zero when the batch has no answer token.
at::Tensor InvertedHingeLoss(const at::Tensor& logits,
                             const at::Tensor& labels);

}  // namespace lethe

#endif  // LETHE_LIBS_LOSS_SEQUENCE_LOSS_H_
