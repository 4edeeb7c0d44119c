// Answer-token log-probabilities of a packed batch (libs/data/packed_batch.h)
// from one forward pass of the model over its rows: the final hidden states
// are gathered at the positions that predict an answer token before the
// output projection, so lm_head and the softmax run on answer positions only.
//
//   ASSIGN_OR_RETURN(PackedBatch packed, PackQaBatches({&forget, &retain},
//   256)); at::Tensor token_log_probs =
//       PackedTokenLogProbs(model, packed, /*chunk_tokens=*/0);  // [N]
//   AnswerLogProbs forget_lp = PackedPartLogProbs(packed, token_log_probs, 0);
//   at::Tensor retain_nll = PackedPartTokenMeanNll(packed, token_log_probs, 1);
//
// Equal, up to the order of summation, to SequenceAnswerLogProbs and
// TokenMeanNll (libs/loss/sequence_loss.h) of each part's padded batch:
// math in fp32 (fp64 for fp64 models); chunk_tokens > 0 projects that many
// answer positions at a time with ChunkedTargetLogProbs
// (libs/loss/chunked_log_probs.h), 0 all of them at once with the model's
// Logits(). Differentiable (twice, as the pieces are). Throws c10::Error on
// misuse, like LibTorch.
#ifndef LETHE_LIBS_LOSS_PACKED_LOG_PROBS_H_
#define LETHE_LIBS_LOSS_PACKED_LOG_PROBS_H_

#include <torch/types.h>

#include <cstdint>

#include "libs/data/packed_batch.h"
#include "libs/loss/sequence_loss.h"
#include "libs/model/llama_model.h"

namespace lethe {

// log p(answer token n), [N], in the batch's answer order; `packed` must be
// on the model's device.
at::Tensor PackedTokenLogProbs(LlamaForCausalLM& model,
                               const PackedBatch& packed, int64_t chunk_tokens);

// The same from final hidden states [R, W, H] of the packed rows.
at::Tensor PackedTokenLogProbsFromHidden(LlamaForCausalLM& model,
                                         const at::Tensor& hidden,
                                         const PackedBatch& packed,
                                         int64_t chunk_tokens);

// Part `part`'s summed answer log-probs and answer-token counts per
// sequence, [B_part] each (as SequenceAnswerLogProbs).
AnswerLogProbs PackedPartLogProbs(const PackedBatch& packed,
                                  const at::Tensor& token_log_probs,
                                  int64_t part);

// Part `part`'s mean NLL over its answer tokens (as TokenMeanNll; 0 when it
// has none).
at::Tensor PackedPartTokenMeanNll(const PackedBatch& packed,
                                  const at::Tensor& token_log_probs,
                                  int64_t part);

}  // namespace lethe

#endif  // LETHE_LIBS_LOSS_PACKED_LOG_PROBS_H_
