// The Hugging Face decoder-only configurations Lethe's model implements, read
// from and written to `config.json`: model_type "llama" (Llama 1/2/3.x),
// "mistral", "qwen2" (Qwen2, Qwen2.5), "phi3" (Phi-3, Phi-3.5 without
// longrope), "gemma" and "gemma2". One struct covers them all: the families
// differ only in the fields below and in the rules the accessors encode.
//
//   ASSIGN_OR_RETURN(LlamaConfig config, ReadLlamaConfig(dir +
//   "/config.json")); RETURN_IF_ERROR(WriteLlamaConfig(config, out_dir +
//   "/config.json"));
//
// Absent fields take the defaults of the family's transformers config class
// (MistralConfig, Qwen2Config, ...). Fields that would change the
// architecture in ways Lethe does not implement (another model_type, a
// rope_type other than "default" and "llama3", partial rotary embeddings, an
// unknown activation, Gemma's bidirectional attention) are rejected with
// UNIMPLEMENTED naming the field and its value, never silently ignored.
// config.json is written back in the family's own form (model_type,
// architectures such as "Qwen2ForCausalLM", the family's own field names) so
// that transformers loads what Lethe saves.
#ifndef LETHE_LIBS_MODEL_LLAMA_CONFIG_H_
#define LETHE_LIBS_MODEL_LLAMA_CONFIG_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace lethe {

// Rotary-embedding frequency scaling (transformers' rope_scaling, or
// rope_parameters from transformers 5 on).
struct RopeScaling {
  // "default" (none) or "llama3" (Llama 3.1 and later: low frequencies
  // divided by `factor`, high ones kept, a smooth blend between).
  std::string rope_type = "default";
  // The llama3 parameters; unused for "default".
  double factor = 8.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 8192;
};

struct LlamaConfig {
  int64_t vocab_size = 32000;
  int64_t hidden_size = 4096;
  int64_t intermediate_size = 11008;
  int64_t num_hidden_layers = 32;
  int64_t num_attention_heads = 32;
  int64_t num_key_value_heads = 32;
  int64_t max_position_embeddings = 2048;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  // One parameter (model.embed_tokens.weight) serves as the input embedding
  // and the output projection; checkpoints hold no lm_head.weight.
  bool tie_word_embeddings = false;
  // Unset when config.json has none (Qwen2's default).
  std::optional<int64_t> bos_token_id = 1;
  // Generation stops at any of these.
  std::vector<int64_t> eos_token_ids = {2};
  std::optional<int64_t> pad_token_id;
  // "float32", "bfloat16" or "float16": the dtype of the stored weights.
  std::string torch_dtype = "float32";

  // "llama", "mistral", "qwen2", "phi3", "gemma" or "gemma2".
  std::string model_type = "llama";
  // config.json's head_dim when it has one (Gemma: 256, Mistral-Nemo: 128);
  // otherwise hidden_size / num_attention_heads.
  std::optional<int64_t> explicit_head_dim;
  RopeScaling rope_scaling;
  // The MLP's gate activation: "silu", "gelu" (erf) or "gelu_pytorch_tanh".
  std::string hidden_act = "silu";
  // Llama and Gemma: biases on q/k/v/o_proj. (Qwen2 always has q/k/v biases
  // and no o_proj bias, whatever this says.)
  bool attention_bias = false;
  // Llama: biases on gate/up/down_proj.
  bool mlp_bias = false;
  // Keys more than this many positions back are not attended to, on the
  // layers IsSlidingLayer names; unset: no window anywhere.
  std::optional<int64_t> sliding_window;
  // Per layer "full_attention" or "sliding_attention" (transformers'
  // layer_types); empty: the family's rule (see IsSlidingLayer).
  std::vector<std::string> layer_types;
  // Qwen2: with a sliding window, layers from this index on use it.
  int64_t max_window_layers = 28;
  // Phi-3: the context it was pretrained with (kept for config.json).
  std::optional<int64_t> original_max_position_embeddings;
  // Gemma 2: attention scores scaled by query_pre_attn_scalar^-0.5 instead
  // of head_dim^-0.5; tanh soft-capping of attention scores and logits.
  std::optional<double> query_pre_attn_scalar;
  std::optional<double> attn_logit_softcapping;
  std::optional<double> final_logit_softcapping;

  int64_t head_dim() const {
    return explicit_head_dim.has_value() ? *explicit_head_dim
                                         : hidden_size / num_attention_heads;
  }
  // q_proj, k_proj and v_proj have biases (Qwen2; Llama/Gemma with
  // attention_bias).
  bool QkvBias() const;
  // o_proj has a bias (Llama/Gemma with attention_bias).
  bool OutputProjectionBias() const;
  // Gemma: RMSNorm computes x_normalized * (1 + weight) in float, weights
  // start at 0; embeddings are multiplied by sqrt(hidden_size) in the hidden
  // dtype.
  bool IsGemmaFamily() const;
  // Gemma 2: also post_attention_layernorm on the attention output and
  // pre/post_feedforward_layernorm around the MLP.
  bool HasSandwichNorms() const;
  // Phi-3: checkpoints fuse q/k/v into qkv_proj and gate/up into
  // gate_up_proj.
  bool HasFusedCheckpointProjections() const;
  // Whether layer `layer` attends within sliding_window only: layer_types
  // when given; otherwise Mistral and Phi-3 every layer, Qwen2 layers from
  // max_window_layers on, Gemma 2 the even layers; never without a window.
  bool IsSlidingLayer(int64_t layer) const;
  // transformers' class for the family, e.g. "Qwen2ForCausalLM".
  std::string Architecture() const;

  // INVALID_ARGUMENT naming the first inconsistent field.
  absl::Status Validate() const;
};

// A configuration with the defaults of `model_type`'s transformers config
// class; UNIMPLEMENTED for a family Lethe does not implement.
absl::StatusOr<LlamaConfig> DefaultConfigFor(const std::string& model_type);

// The small architecture of Lethe's embedded mini-TOFU benchmark: about 2M
// parameters (hidden 192, 4 layers, 4 query and 2 key/value heads), small
// enough to train in minutes on two CPU cores.
LlamaConfig MiniBenchmarkLlamaConfig(int64_t vocab_size);

// A GPT-2-small-sized model (hidden 768, 12 layers, 12 heads, vocabulary
// 8000): about 100M parameters, the benchmarks' larger size.
LlamaConfig Benchmark100MLlamaConfig();

// Parses config.json text; `source` names it in errors.
absl::StatusOr<LlamaConfig> ParseLlamaConfig(const std::string& json_text,
                                             const std::string& source);
absl::StatusOr<LlamaConfig> ReadLlamaConfig(const std::string& path);

// config.json text that transformers' config class for the family loads.
std::string LlamaConfigToJson(const LlamaConfig& config);
// Writes config.json atomically.
absl::Status WriteLlamaConfig(const LlamaConfig& config,
                              const std::string& path);

}  // namespace lethe

#endif  // LETHE_LIBS_MODEL_LLAMA_CONFIG_H_
