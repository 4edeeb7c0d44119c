// Hugging Face checkpoint directories for Lethe's model (every family of
// llama_config.h): config.json plus model.safetensors, or shards
// model-0000i-of-0000N.safetensors with model.safetensors.index.json.
//
//   ASSIGN_OR_RETURN(std::shared_ptr<LlamaForCausalLM> model,
//                    LoadLlamaCheckpoint("/models/target"));  // fp32
//   ASSIGN_OR_RETURN(WeightsDtype dtype, ParseWeightsDtype("auto"));
//   ASSIGN_OR_RETURN(model, LoadLlamaCheckpoint("/models/target",
//                                               {.weights_dtype = dtype}));
//   RETURN_IF_ERROR(SaveLlamaCheckpoint(*model, "/models/unlearned", {}));
//
// What is mapped and what is copied. LoadLlamaCheckpoint maps the weight
// files (safetensors.h: MAP_PRIVATE, copy-on-write) and builds the model
// without initialising it (ParameterInit::kUninitialized). A tensor stored
// in the requested dtype becomes its parameter's data in place (set_data
// on a view of the mapping): nothing is read or copied at load, pages are
// faulted in from the page cache on first use, count as the process's
// RssFile and are shared with every process using the same file (a frozen
// reference model, another worker). Writing to such a parameter (training,
// an optimizer step) copies the written pages into the process's anonymous
// memory (RssAnon); the file never changes. A tensor stored in another
// dtype is converted on its own (SafetensorsFile::GetConverted) into new
// memory, so a conversion's peak is the converted model plus one tensor.
// The default dtype is float32 (a float32 checkpoint is then mapped, a
// bf16/f16 one converted); WeightsDtype::kAsStored keeps what the files
// hold. Weight files must be replaced by rename, never rewritten in place,
// while a model maps them (SaveLlamaCheckpoint renames). LoadLlamaWeights,
// into an existing model, always copies.
//
// Loading checks the checkpoint against config.json: every parameter the
// config implies must be present with the implied shape, and no other
// tensor may be (rotary inv_freq buffers that old checkpoints carry are
// ignored, as is lm_head.weight when embeddings are tied). Each error names
// the file and the tensor. Saving writes every file atomically and removes
// weight files of an earlier save that the new one does not use; with tied
// embeddings it writes no lm_head.weight. Saving keeps the model's dtype
// unless told otherwise, converting (or moving off a GPU) one tensor at a
// time while it writes.
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
#include <optional>
#include <string>
#include <type_traits>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "libs/model/llama_model.h"

namespace lethe {

// The dtype of a loaded model's parameters; the model computes in it.
enum class WeightsDtype {
  kFloat32,  // The default (Lethe's behaviour before these options).
  kBFloat16,
  kFloat16,
  // What the weight files hold when all tensors agree on float32, bfloat16
  // or float16; otherwise config.json's torch_dtype (float32 when it names
  // none of the three).
  kAsStored,
};

// For a job spec field or a --weights_dtype flag: "fp32" (or "float32"),
// "bf16" ("bfloat16"), "fp16" ("float16"), "auto" (kAsStored); "" is the
// default, kFloat32. INVALID_ARGUMENT naming the accepted values otherwise.
absl::StatusOr<WeightsDtype> ParseWeightsDtype(absl::string_view text);
// "fp32", "bf16", "fp16" or "auto".
std::string WeightsDtypeName(WeightsDtype dtype);

struct LoadOptions {
  WeightsDtype weights_dtype = WeightsDtype::kFloat32;
};

// Loads the model in `options.weights_dtype`, mapping tensors stored in
// that dtype and converting the others (see the top of this file).
absl::StatusOr<std::shared_ptr<LlamaForCausalLM>> LoadLlamaCheckpoint(
    const std::string& dir, const LoadOptions& options = {});

// Loads with parameters in any floating `dtype` (at::kDouble too), mapped
// or converted as above.
absl::StatusOr<std::shared_ptr<LlamaForCausalLM>> LoadLlamaCheckpointAs(
    const std::string& dir, at::ScalarType dtype);
// The older spelling, LoadLlamaCheckpoint(dir, at::kFloat); a template so
// that LoadLlamaCheckpoint(dir, {}) still means LoadOptions (a braced list
// would otherwise prefer the enum, as 0: at::kByte).
template <typename Dtype,
          typename = std::enable_if_t<std::is_same_v<Dtype, at::ScalarType>>>
absl::StatusOr<std::shared_ptr<LlamaForCausalLM>> LoadLlamaCheckpoint(
    const std::string& dir, Dtype dtype) {
  return LoadLlamaCheckpointAs(dir, dtype);
}

// Copies the weights stored in `dir` into an existing model whose config
// matches; used to reset a model or load into one on another device.
absl::Status LoadLlamaWeights(const std::string& dir, LlamaForCausalLM& model);

struct SaveOptions {
  // Storage dtype of the weights (config.json's torch_dtype follows it).
  // Unset: the model's, i.e. model.embed_tokens.weight's dtype when it is
  // float32, bfloat16 or float16, else float32.
  std::optional<at::ScalarType> dtype;
  // Shards hold at most this many bytes (a larger tensor gets its own); one
  // file model.safetensors when everything fits.
  int64_t max_shard_bytes = int64_t{5} << 30;
};

// Creates `dir` if needed and writes config.json and the weights.
// FAILED_PRECONDITION for a model with LoRA adapters (lora.h): merge them
// (MergeLora) or save them alone (SaveLoraAdapter). LoadLlamaWeights into a
// model with adapters loads the base weights and leaves the adapters alone.
absl::Status SaveLlamaCheckpoint(LlamaForCausalLM& model,
                                 const std::string& dir,
                                 const SaveOptions& options);

}  // namespace lethe

#endif  // LETHE_LIBS_MODEL_HF_CHECKPOINT_H_
