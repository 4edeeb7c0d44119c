// Answer-token log-probabilities from final hidden states without the
// batch's [B, T, V] logits: only the positions whose shifted label is an
// answer token are projected onto the vocabulary, `chunk_tokens` of them at a
// time, and the backward pass recomputes each chunk's logits, so peak memory
// is O(chunk_tokens x V) instead of O(B x T x V) (Llama 3's 128,256-entry
// vocabulary makes 8 x 512 tokens 2 GB of fp32 logits).
//
//   ASSIGN_OR_RETURN(OutputProjection head, ModelOutputProjection(model));
//   at::Tensor hidden = model.ForwardHidden(batch.input_ids,
//   batch.attention_mask); AnswerLogProbs lp = ChunkedAnswerLogProbs(hidden,
//   head, batch.labels, 256);
//   // Equal, up to rounding, to SequenceAnswerLogProbs(model.Forward(...),
//   // batch.labels); gradients reach `hidden` and head.weight.
//
//   // Or in one call, with 0 meaning today's plain computation (bit for bit):
//   at::Tensor nll = ModelTokenMeanNll(model, batch, /*chunk_tokens=*/256);
//
// Semantics are those of libs/loss/sequence_loss.h: logits at t predict the
// label at t+1, kIgnoreIndex labels contribute nothing. Logits are
// weight-projected hidden states, then Gemma 2's final soft-capping
// cap * tanh(logits / cap) when set. Math is in fp32 (fp64 when the hidden
// states or the weight are fp64): bf16/f16 inputs are upcast (the weight once
// per pass, the hidden states per chunk), so bf16 models get fp32 logits
// where the plain path rounds them to bf16. Under autocast (CPU bf16 or
// CUDA) the projection matmul runs in the autocast dtype, as the plain path's
// does, in the forward and in the recomputation alike; the softmax stays
// fp32.
//
// The backward pass is written with differentiable LibTorch operations, so
// higher derivatives work (OFMU's Hessian-vector products differentiate
// twice); while creating a graph (create_graph) that backward keeps every
// chunk's logits alive for the next differentiation, so second-order use
// saves no memory.
//
// Functions throw c10::Error on misuse (shapes, labels outside the
// vocabulary), like LibTorch; ModelOutputProjection returns a Status.
#ifndef LETHE_LIBS_LOSS_CHUNKED_LOG_PROBS_H_
#define LETHE_LIBS_LOSS_CHUNKED_LOG_PROBS_H_

#include <torch/types.h>

#include <cstdint>
#include <optional>

#include "absl/status/statusor.h"
#include "libs/data/qa_batch.h"
#include "libs/loss/sequence_loss.h"
#include "libs/model/llama_model.h"

namespace lethe {

// What turns final hidden states into logits.
struct OutputProjection {
  at::Tensor weight;              // [V, H]; may be frozen (no requires_grad).
  std::optional<double> softcap;  // Gemma 2's final_logit_softcapping.
};

// log p(targets[n] | hidden[n]) for rows hidden [N, H], targets [N] (all
// valid token ids): [N] in the compute dtype, `chunk_tokens` (>= 1) rows at a
// time.
at::Tensor ChunkedTargetLogProbs(const at::Tensor& hidden,
                                 const OutputProjection& projection,
                                 const at::Tensor& targets,
                                 int64_t chunk_tokens);

// Per-position log-probability of the next label, [B, T-1], zero where the
// label is ignored, from hidden [B, T, H] and labels [B, T]; the negative of
// TokenNll of the full logits.
at::Tensor ChunkedTokenLogProbs(const at::Tensor& hidden,
                                const OutputProjection& projection,
                                const at::Tensor& labels, int64_t chunk_tokens);

// As SequenceAnswerLogProbs.
AnswerLogProbs ChunkedAnswerLogProbs(const at::Tensor& hidden,
                                     const OutputProjection& projection,
                                     const at::Tensor& labels,
                                     int64_t chunk_tokens);

// As TokenMeanNll: the mean NLL over every answer token, 0 when none.
at::Tensor ChunkedTokenMeanNll(const at::Tensor& hidden,
                               const OutputProjection& projection,
                               const at::Tensor& labels, int64_t chunk_tokens);

// `model`'s projection: the parameter "lm_head.weight", or
// "model.embed_tokens.weight" when the embeddings are tied, with the
// config's final_logit_softcapping. NOT_FOUND when the parameter is missing.
absl::StatusOr<OutputProjection> ModelOutputProjection(LlamaForCausalLM& model);

// The model-level entry points the trainers use. chunk_tokens 0:
// SequenceAnswerLogProbs / TokenMeanNll of model.Forward(...), exactly the
// plain computation; > 0: ForwardHidden and the chunked functions above.
AnswerLogProbs ModelAnswerLogProbs(LlamaForCausalLM& model,
                                   const QaBatch& batch, int64_t chunk_tokens);
at::Tensor ModelTokenMeanNll(LlamaForCausalLM& model, const QaBatch& batch,
                             int64_t chunk_tokens);

}  // namespace lethe

#endif  // LETHE_LIBS_LOSS_CHUNKED_LOG_PROBS_H_
