// LoRA (Hu et al. 2021) on a LlamaForCausalLM, as PEFT does it, and PEFT's
// adapter directory format.
//
//   LoraConfig lora{.rank = 16, .alpha = 32, .dropout = 0.05,
//                   .target_modules = {"q_proj", "v_proj"}};
//   RETURN_IF_ERROR(AttachLora(*model, lora));
//   std::vector<at::Tensor> trainable = FreezeAllButLora(*model);  // A, B
//   ... train `trainable` ...
//   {
//     ScopedLoraDisabled reference(*model);  // the frozen base, no copy
//     reference_logits = model->Forward(ids);
//   }
//   RETURN_IF_ERROR(SaveLoraAdapter(*model, "/out/adapter", {.base_model =
//                                   "/models/target"}));
//   RETURN_IF_ERROR(MergeLora(*model));  // W += scaling * B A; unloaded
//   RETURN_IF_ERROR(SaveLlamaCheckpoint(*model, "/out/merged", {}));
//
//   // Later, onto a freshly loaded base:
//   RETURN_IF_ERROR(LoadLoraAdapter("/out/adapter", *base));
//
// The computation is PEFT's LoraLayer (Linear) forward: each targeted
// projection W of every decoder layer gets lora_A [rank, in_features] and
// lora_B [out_features, rank] (nn.Linear without bias each) and computes
// y = W x + b + scaling * lora_B(lora_A(dropout(x))), scaling = alpha / rank
// (alpha / sqrt(rank) with use_rslora). lora_A starts as nn.Linear's default
// (kaiming_uniform_ with a = sqrt(5): uniform in +-1/sqrt(in_features)),
// lora_B at zero, so a new adapter leaves the model's output unchanged.
// Dropout acts only in training mode (model->train(), LibTorch's default;
// model->eval() turns it off). Adapters are kept in fp32 whatever the base
// dtype (fp64 for an fp64 model): the input is cast to the adapter's dtype
// and the sum back to the layer's, as PEFT's autocast_adapter_dtype does.
// Attach adapters after moving the model to its device and dtype
// (model->to(dtype) would cast them too).
//
// Parameter names: lora_A and lora_B are registered under the projection's
// Linear, so named_parameters() lists e.g.
// "model.layers.0.self_attn.q_proj.lora_A.weight"; the base weights keep
// their names ("...q_proj.weight"). PEFT's adapter_model.safetensors holds
// the same names prefixed with "base_model.model." (PeftModel wraps
// LoraModel wraps the transformers model) and without the adapter name
// ("default"), which save_pretrained strips.
//
// Files follow PEFT's checkpoint format (PEFT's
// docs/source/developer_guides/checkpoint.md and
// src/peft/tuners/lora/config.py, PEFT 0.10 to 0.13, whose LoraConfig
// fields adapter_config.json lists; later PEFT versions read it, filling
// newer fields with their defaults): adapter_config.json (keys sorted, as
// PEFT writes them) and adapter_model.safetensors (metadata
// {"format": "pt"}, tensors in the adapters' dtype).
//
// Not supported (refused with UNIMPLEMENTED naming the field when loading):
// DoRA, biases other than "none", fan_in_fan_out, modules_to_save,
// layers_to_transform, rank/alpha patterns, LoRA on embeddings or lm_head,
// and PEFT files for Phi-3 (whose PEFT module names are the fused
// qkv_proj/gate_up_proj: attaching, training and merging work on Phi-3
// models, saving and loading PEFT adapters do not).
//
// Activation checkpointing (llama_model.h) recomputes adapters too; keep the
// adapters' on/off switch and train/eval mode unchanged between a forward
// pass and its backward pass.
#ifndef LETHE_LIBS_MODEL_LORA_H_
#define LETHE_LIBS_MODEL_LORA_H_

#include <torch/types.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "libs/model/llama_model.h"

namespace lethe {

struct LoraConfig {
  int64_t rank = 8;    // PEFT's r.
  double alpha = 8;    // PEFT's lora_alpha (default 8).
  double dropout = 0;  // PEFT's lora_dropout, in [0, 1).
  // PEFT module names among q_proj, k_proj, v_proj, o_proj, gate_proj,
  // up_proj, down_proj; empty: q_proj and v_proj (PEFT's default for
  // Llama-family models).
  std::vector<std::string> target_modules;
  bool use_rslora = false;  // scaling alpha / sqrt(rank) instead.

  double Scaling() const;
  // target_modules, or PEFT's default when empty; sorted, unique.
  std::vector<std::string> TargetModules() const;
};

// The projection names LoRA can target, in module order.
const std::vector<std::string>& LoraTargetableModules();

// INVALID_ARGUMENT naming the field: rank < 1, alpha <= 0 or not finite,
// dropout outside [0, 1), an unknown or repeated target module.
absl::Status ValidateLoraConfig(const LoraConfig& config);

// Adds fresh adapters (A random, B zero) to every decoder layer's targeted
// projections. FAILED_PRECONDITION when the model already has adapters.
absl::Status AttachLora(LlamaForCausalLM& model, const LoraConfig& config);

bool HasLora(LlamaForCausalLM& model);

// The attached adapters' settings (target_modules: the targeted projection
// names). FAILED_PRECONDITION without adapters.
absl::StatusOr<LoraConfig> AttachedLoraConfig(LlamaForCausalLM& model);

// Module paths of the projections that carry an adapter, in model order.
std::vector<std::string> LoraAdaptedModules(LlamaForCausalLM& model);

// The adapters' parameters (lora_A and lora_B of each adapted projection),
// named as in model.named_parameters(), in model order.
std::vector<std::pair<std::string, at::Tensor>> LoraParameters(
    LlamaForCausalLM& model);

// Turns every adapter on or off. Off, the model computes exactly its base
// (the frozen reference of reference-based methods, without a second copy).
void SetLoraEnabled(LlamaForCausalLM& model, bool enabled);
// False when the model has no adapters or they are switched off.
bool LoraEnabled(LlamaForCausalLM& model);

// Switches the adapters off for its lifetime, then back to what they were.
class ScopedLoraDisabled {
 public:
  explicit ScopedLoraDisabled(LlamaForCausalLM& model);
  ~ScopedLoraDisabled();
  ScopedLoraDisabled(const ScopedLoraDisabled&) = delete;
  ScopedLoraDisabled& operator=(const ScopedLoraDisabled&) = delete;

 private:
  LlamaForCausalLM& model_;
  bool was_enabled_;
};

// Sets requires_grad false on every parameter that is not an adapter's and
// true on the adapters'; returns the adapters' parameters (LoraParameters'
// tensors, in that order), for the optimizer.
std::vector<at::Tensor> FreezeAllButLora(LlamaForCausalLM& model);

// The key of a model parameter in adapter_model.safetensors:
// "base_model.model." + name.
std::string PeftAdapterKey(const std::string& parameter_name);

struct LoraSaveOptions {
  // adapter_config.json's base_model_name_or_path (null when empty).
  std::string base_model;
};

// Writes <dir>/adapter_config.json and <dir>/adapter_model.safetensors
// (creating dir), each atomically. FAILED_PRECONDITION without adapters;
// UNIMPLEMENTED for models whose checkpoints fuse projections (Phi-3).
absl::Status SaveLoraAdapter(LlamaForCausalLM& model, const std::string& dir,
                             const LoraSaveOptions& options = {});

// Reads the LoRA settings of a PEFT adapter_config.json (what
// LoadLoraAdapter checks first). peft_type, r, lora_alpha and
// target_modules are required; "all-linear" targets every projection;
// another string is PEFT's regular expression over module paths, which
// ReadLoraAdapterConfig cannot turn into names (target_modules is then
// empty and `pattern` set).
struct PeftLoraAdapterConfig {
  LoraConfig lora;
  std::string pattern;  // A target_modules regular expression, or "".
  std::string base_model;
};
absl::StatusOr<PeftLoraAdapterConfig> ReadLoraAdapterConfig(
    const std::string& dir);

// Attaches the adapter saved in `dir` (by PEFT or SaveLoraAdapter) to a
// model without adapters, checking it against the model: every key must be
// an adapter of a targeted projection, every targeted projection must have
// both, with shapes [r, in] and [out, r]. Errors name the file and the key
// (INVALID_ARGUMENT; NOT_FOUND for missing files; UNIMPLEMENTED for
// unsupported options). On error the model is left without adapters.
absl::Status LoadLoraAdapter(const std::string& dir, LlamaForCausalLM& model);

// PEFT's merge_and_unload: W <- W + scaling * B A for every adapter
// (computed in at least fp32, then cast to W's dtype), then the adapters are
// removed, so SaveLlamaCheckpoint writes a plain model. A disabled adapter
// is merged too. FAILED_PRECONDITION without adapters.
absl::Status MergeLora(LlamaForCausalLM& model);

// PEFT's unload: removes the adapters without merging them.
absl::Status RemoveLora(LlamaForCausalLM& model);

}  // namespace lethe

#endif  // LETHE_LIBS_MODEL_LORA_H_
