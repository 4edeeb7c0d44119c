// Hugging Face checkpoint directories for Lethe's model (every family of
// llama_config.h): config.json plus model.safetensors, or shards
// model-0000i-of-0000N.safetensors with model.safetensors.index.json.
//
//   ASSIGN_OR_RETURN(std::shared_ptr<LlamaForCausalLM> model,
//                    LoadLlamaCheckpoint("/models/target"));
//   RETURN_IF_ERROR(SaveLlamaCheckpoint(*model, "/models/unlearned", {}));
//
// Loading checks the checkpoint against config.json: every parameter the
// config implies must be present with the implied shape, and no other
// tensor may be (rotary inv_freq buffers that old checkpoints carry are
// ignored, as is lm_head.weight when embeddings are tied). Each error names
// the file and the tensor. Saving writes every file atomically and removes
// weight files of an earlier save that the new one does not use; with tied
// embeddings it writes no lm_head.weight.
//
// Tensor names are the family's own: Phi-3 checkpoints hold
// self_attn.qkv_proj (q, k and v stacked along dimension 0) and
// mlp.gate_up_proj (gate, then up), which loading splits into the model's
// q/k/v_proj and gate/up_proj and saving fuses again, byte for byte.
#ifndef LETHE_LIBS_MODEL_HF_CHECKPOINT_H_
#define LETHE_LIBS_MODEL_HF_CHECKPOINT_H_

#include <torch/types.h>

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "libs/model/llama_model.h"

namespace lethe {

// Loads the model with parameters in `dtype` (the stored dtype is converted).
absl::StatusOr<std::shared_ptr<LlamaForCausalLM>> LoadLlamaCheckpoint(
    const std::string& dir, at::ScalarType dtype = at::kFloat);

// Copies the weights stored in `dir` into an existing model whose config
// matches; used to reset a model or load into one on another device.
absl::Status LoadLlamaWeights(const std::string& dir, LlamaForCausalLM& model);

struct SaveOptions {
  // Storage dtype of the weights (config.json's torch_dtype follows it).
  at::ScalarType dtype = at::kFloat;
  // Shards hold at most this many bytes (a larger tensor gets its own); one
  // file model.safetensors when everything fits.
  int64_t max_shard_bytes = int64_t{5} << 30;
};

// Creates `dir` if needed and writes config.json and the weights.
absl::Status SaveLlamaCheckpoint(LlamaForCausalLM& model,
                                 const std::string& dir,
                                 const SaveOptions& options);

}  // namespace lethe

#endif  // LETHE_LIBS_MODEL_HF_CHECKPOINT_H_
