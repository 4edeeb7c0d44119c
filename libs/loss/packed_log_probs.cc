#include "libs/loss/packed_log_probs.h"

#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "libs/loss/chunked_log_probs.h"

namespace lethe {

at::Tensor PackedTokenLogProbsFromHidden(LlamaForCausalLM& model,
                                         const at::Tensor& hidden,
                                         const PackedBatch& packed,
                                         int64_t chunk_tokens) {
  TORCH_CHECK(hidden.dim() == 3, "hidden states must be [R, W, H], got ",
              hidden.sizes());
  const at::Tensor rows =
      hidden.reshape({-1, hidden.size(2)})
          .index_select(0, packed.answer_rows.to(hidden.device()));
  const at::Tensor targets = packed.answer_targets.to(hidden.device());
  if (chunk_tokens > 0) {
    absl::StatusOr<OutputProjection> projection = ModelOutputProjection(model);
    TORCH_CHECK(projection.ok(), projection.status().ToString());
    return ChunkedTargetLogProbs(rows, *projection, targets, chunk_tokens);
  }
  const at::Tensor logits = model.Logits(rows);
  const at::ScalarType dtype =
      logits.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  return at::log_softmax(logits.to(dtype), /*dim=*/-1)
      .gather(1, targets.unsqueeze(1))
      .squeeze(1);
}

at::Tensor PackedTokenLogProbs(LlamaForCausalLM& model,
                               const PackedBatch& packed,
                               int64_t chunk_tokens) {
  return PackedTokenLogProbsFromHidden(
      model,
      model.ForwardHiddenPacked(packed.input_ids, packed.position_ids,
                                packed.segment_ids),
      packed, chunk_tokens);
}

AnswerLogProbs PackedPartLogProbs(const PackedBatch& packed,
                                  const at::Tensor& token_log_probs,
                                  int64_t part) {
  TORCH_CHECK(part >= 0 && part < packed.num_parts(), "no part ", part);
  const int64_t begin = packed.answer_begin[part];
  const int64_t count = packed.num_answers(part);
  const int64_t sequences =
      packed.sequence_begin[part + 1] - packed.sequence_begin[part];
  const at::Tensor summed =
      at::zeros({sequences}, token_log_probs.options())
          .index_add(0,
                     packed.answer_sequence.narrow(0, begin, count)
                         .to(token_log_probs.device()),
                     token_log_probs.narrow(0, begin, count));
  return {.summed = summed,
          .token_counts = packed.token_counts.narrow(
              0, packed.sequence_begin[part], sequences)};
}

at::Tensor PackedPartTokenMeanNll(const PackedBatch& packed,
                                  const at::Tensor& token_log_probs,
                                  int64_t part) {
  TORCH_CHECK(part >= 0 && part < packed.num_parts(), "no part ", part);
  const int64_t count = packed.num_answers(part);
  return -token_log_probs.narrow(0, packed.answer_begin[part], count).sum() /
         static_cast<double>(std::max<int64_t>(count, 1));
}

}  // namespace lethe
