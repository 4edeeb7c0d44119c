// The Hugging Face LlamaConfig subset Lethe's model implements, read from and
// written to `config.json`.
//
//   ASSIGN_OR_RETURN(LlamaConfig config, ReadLlamaConfig(dir +
//   "/config.json")); RETURN_IF_ERROR(WriteLlamaConfig(config, out_dir +
//   "/config.json"));
//
// Absent fields take Hugging Face's LlamaConfig defaults. Fields that would
// change the architecture in ways Lethe does not implement (rope_scaling,
// attention or MLP biases, an activation other than SiLU, a model_type other
// than "llama") are rejected with UNIMPLEMENTED naming the field, never
// silently ignored.
#ifndef LETHE_LIBS_MODEL_LLAMA_CONFIG_H_
#define LETHE_LIBS_MODEL_LLAMA_CONFIG_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace lethe {

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
  bool tie_word_embeddings = false;
  int64_t bos_token_id = 1;
  // Generation stops at any of these.
  std::vector<int64_t> eos_token_ids = {2};
  std::optional<int64_t> pad_token_id;
  // "float32", "bfloat16" or "float16": the dtype of the stored weights.
  std::string torch_dtype = "float32";

  int64_t head_dim() const { return hidden_size / num_attention_heads; }
  // INVALID_ARGUMENT naming the first inconsistent field.
  absl::Status Validate() const;
};

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

// config.json text that Hugging Face's LlamaConfig loads.
std::string LlamaConfigToJson(const LlamaConfig& config);
// Writes config.json atomically.
absl::Status WriteLlamaConfig(const LlamaConfig& config,
                              const std::string& path);

}  // namespace lethe

#endif  // LETHE_LIBS_MODEL_LLAMA_CONFIG_H_
