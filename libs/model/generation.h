// Greedy decoding with LlamaForCausalLM and a KV cache: one prompt at a time
// (GreedyGenerate) or many prompts in left-padded batches
// (GreedyGenerateBatch), which give the same tokens up to floating-point
// rounding.
//
//   std::vector<int64_t> tokens =
//       GreedyGenerate(model, prompt, /*max_new_tokens=*/200, stop_ids);
//   ASSIGN_OR_RETURN(std::vector<std::vector<int64_t>> all,
//                    GreedyGenerateBatch(model, prompts, 200, stop_ids,
//                                        pad_id, /*batch_size=*/32));
//
// Both run without gradients and leave the model's mode (train/eval) alone.
#ifndef LETHE_LIBS_MODEL_GENERATION_H_
#define LETHE_LIBS_MODEL_GENERATION_H_

#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "libs/model/llama_model.h"

namespace lethe {

// Greedy decoding with a KV cache: appends up to `max_new_tokens` argmax
// tokens to `prompt`, stopping after any of `stop_ids`. Returns only the new
// tokens (the stop token included when reached). Throws c10::Error for an
// empty prompt, like the model's methods (wrap with CallTorch).
std::vector<int64_t> GreedyGenerate(LlamaForCausalLM& model,
                                    const std::vector<int64_t>& prompt,
                                    int64_t max_new_tokens,
                                    const std::vector<int64_t>& stop_ids);

// Greedy decoding of many prompts: up to `max_new_tokens` argmax tokens each,
// stopping after any of `stop_ids` (kept in the output). Prompts of similar
// length are batched `batch_size` at a time (LongestFirst), left-padded with
// `pad_id` (positions from PositionIdsFromMask), and decoded with one KV
// cache per batch; rows that have stopped leave the batch. Returns the new
// tokens per prompt, in order: the same tokens GreedyGenerate returns one
// prompt at a time, up to floating-point rounding. INVALID_ARGUMENT for an
// empty prompt or a batch size below 1; INTERNAL for LibTorch's errors.
absl::StatusOr<std::vector<std::vector<int64_t>>> GreedyGenerateBatch(
    LlamaForCausalLM& model, const std::vector<std::vector<int64_t>>& prompts,
    int64_t max_new_tokens, const std::vector<int64_t>& stop_ids,
    int64_t pad_id, int batch_size);

// The indices of `sizes` ordered longest first, equal sizes in index order
// (a stable sort), so that consecutive batches of them hold sequences of
// similar length and little padding. GreedyGenerateBatch and the answer
// scorer (libs/eval/answer_scoring.h) batch in this order.
std::vector<size_t> LongestFirst(const std::vector<size_t>& sizes);

}  // namespace lethe

#endif  // LETHE_LIBS_MODEL_GENERATION_H_
