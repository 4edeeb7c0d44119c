// Padding-free ("packed") batches: the sequences of one or more right-padded
// QaBatches laid out whole, several to a row, for one forward pass with a
// block-diagonal causal mask (LlamaForCausalLM::ForwardHiddenPacked).
//
//   ASSIGN_OR_RETURN(PackedBatch packed,
//                    PackQaBatches({&forget, &retain}, /*row_length=*/256));
//   at::Tensor hidden = model.ForwardHiddenPacked(
//       packed.input_ids, packed.position_ids, packed.segment_ids);
//   // Answer tokens of part 1 (retain): answer_begin[1] .. answer_begin[2].
//
// Contract:
//  - Every sequence is kept whole (never split across rows) and starts at
//    position 0. Rows are at most max(row_length, longest sequence) wide: a
//    sequence longer than row_length gets a row of its own, that wide.
//    The tensors are as wide as the fullest row; the rest is padding
//    (pad_id, segment 0, which no real position attends to).
//  - Rows are balanced (longest sequence first, into the emptiest row of the
//    fewest rows that hold them), so the fullest row is about
//    total / rows tokens long.
//  - Answers are listed part by part, sequence by sequence in the part's
//    batch order, token by token: entry n is the label of a position t >= 1
//    whose label is not kIgnoreIndex (the token at t, predicted by the hidden
//    state at t - 1, as libs/loss/sequence_loss.h shifts), so per-sequence
//    sums and per-part means recover the padded computation's exactly (up
//    to the order of summation).
//  - Input batches are right-padded (attention_mask a prefix of ones per
//    row, as CollateQaBatch builds them) and may live on any device; the
//    packing is done on the CPU and the result lives there (To() moves it).
// PackQaBatches returns INVALID_ARGUMENT on bad input (row_length < 1,
// a mask that is not right padding, mismatched shapes).
#ifndef LETHE_LIBS_DATA_PACKED_BATCH_H_
#define LETHE_LIBS_DATA_PACKED_BATCH_H_

#include <torch/types.h>

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "libs/data/qa_batch.h"

namespace lethe {

struct PackedBatch {
  at::Tensor input_ids;     // [R, W] int64, pad_id after each row's end.
  at::Tensor position_ids;  // [R, W] int64, 0, 1, ... per sequence.
  at::Tensor segment_ids;   // [R, W] int64, 1, 2, ... per row; 0 = padding.
  // One entry per answer token, in the order described above.
  at::Tensor answer_rows;      // [N] index into the [R * W] flattened rows
                               // of the position that predicts the token.
  at::Tensor answer_targets;   // [N] the token (label).
  at::Tensor answer_sequence;  // [N] its sequence's index within its part.
  at::Tensor token_counts;     // [S] answer tokens per sequence, all parts.
  // Part p: sequences [sequence_begin[p], sequence_begin[p + 1]) of S and
  // answers [answer_begin[p], answer_begin[p + 1]) of N.
  std::vector<int64_t> sequence_begin;
  std::vector<int64_t> answer_begin;
  int64_t real_tokens = 0;  // Non-padding positions.

  int64_t num_parts() const {
    return static_cast<int64_t>(sequence_begin.size()) - 1;
  }
  int64_t num_answers(int64_t part) const {
    return answer_begin[part + 1] - answer_begin[part];
  }
  // The same batch on `device`.
  PackedBatch To(const at::Device& device) const;
};

absl::StatusOr<PackedBatch> PackQaBatches(
    const std::vector<const QaBatch*>& parts, int64_t row_length,
    int pad_id = 0);

}  // namespace lethe

#endif  // LETHE_LIBS_DATA_PACKED_BATCH_H_
