#include "libs/model/llama_config.h"

#include "absl/strings/str_cat.h"
#include "libs/files/file_io.h"
#include "libs/status/status_macros.h"
#include "nlohmann/json.hpp"

namespace lethe {
namespace {

using Json = nlohmann::json;

absl::Status FieldError(const std::string& source, const std::string& field,
                        const std::string& problem) {
  return absl::InvalidArgumentError(
      absl::StrCat(source, ": field '", field, "' ", problem));
}

// Reads an optional integer field into `out`.
absl::Status ReadInt(const Json& json, const std::string& source,
                     const std::string& field, int64_t* out) {
  if (!json.contains(field) || json[field].is_null()) return absl::OkStatus();
  if (!json[field].is_number_integer()) {
    return FieldError(source, field, "must be an integer");
  }
  *out = json[field].get<int64_t>();
  return absl::OkStatus();
}

absl::Status ReadDouble(const Json& json, const std::string& source,
                        const std::string& field, double* out) {
  if (!json.contains(field) || json[field].is_null()) return absl::OkStatus();
  if (!json[field].is_number()) {
    return FieldError(source, field, "must be a number");
  }
  *out = json[field].get<double>();
  return absl::OkStatus();
}

}  // namespace

absl::Status LlamaConfig::Validate() const {
  auto positive = [](int64_t value) { return value > 0; };
  if (!positive(vocab_size)) {
    return absl::InvalidArgumentError("vocab_size must be positive");
  }
  if (!positive(hidden_size)) {
    return absl::InvalidArgumentError("hidden_size must be positive");
  }
  if (!positive(intermediate_size)) {
    return absl::InvalidArgumentError("intermediate_size must be positive");
  }
  if (!positive(num_hidden_layers)) {
    return absl::InvalidArgumentError("num_hidden_layers must be positive");
  }
  if (!positive(num_attention_heads) ||
      hidden_size % num_attention_heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "num_attention_heads (", num_attention_heads,
        ") must be positive and divide hidden_size (", hidden_size, ")"));
  }
  if (head_dim() % 2 != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "head dimension ", head_dim(), " must be even for rotary embeddings"));
  }
  if (!positive(num_key_value_heads) ||
      num_attention_heads % num_key_value_heads != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("num_key_value_heads (", num_key_value_heads,
                     ") must be positive and divide num_attention_heads (",
                     num_attention_heads, ")"));
  }
  if (!positive(max_position_embeddings)) {
    return absl::InvalidArgumentError(
        "max_position_embeddings must be positive");
  }
  if (!(rms_norm_eps > 0)) {
    return absl::InvalidArgumentError("rms_norm_eps must be positive");
  }
  if (!(rope_theta > 0)) {
    return absl::InvalidArgumentError("rope_theta must be positive");
  }
  if (torch_dtype != "float32" && torch_dtype != "bfloat16" &&
      torch_dtype != "float16") {
    return absl::InvalidArgumentError(
        absl::StrCat("torch_dtype '", torch_dtype,
                     "' is not one of float32, bfloat16, float16"));
  }
  for (int64_t id : eos_token_ids) {
    if (id < 0 || id >= vocab_size) {
      return absl::InvalidArgumentError(
          absl::StrCat("eos_token_id ", id, " is outside the vocabulary"));
    }
  }
  if (bos_token_id < 0 || bos_token_id >= vocab_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        "bos_token_id ", bos_token_id, " is outside the vocabulary"));
  }
  return absl::OkStatus();
}

LlamaConfig MiniBenchmarkLlamaConfig(int64_t vocab_size) {
  LlamaConfig config;
  config.vocab_size = vocab_size;
  config.hidden_size = 192;
  config.intermediate_size = 512;
  config.num_hidden_layers = 4;
  config.num_attention_heads = 4;
  config.num_key_value_heads = 2;
  config.max_position_embeddings = 256;
  config.rms_norm_eps = 1e-5;
  return config;
}

LlamaConfig Benchmark100MLlamaConfig() {
  LlamaConfig config;
  config.vocab_size = 8000;
  config.hidden_size = 768;
  config.intermediate_size = 2048;
  config.num_hidden_layers = 12;
  config.num_attention_heads = 12;
  config.num_key_value_heads = 12;
  config.max_position_embeddings = 512;
  return config;
}

absl::StatusOr<LlamaConfig> ParseLlamaConfig(const std::string& json_text,
                                             const std::string& source) {
  const Json json = Json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded() || !json.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": not a JSON object"));
  }
  if (json.contains("model_type") && json["model_type"] != "llama") {
    return absl::UnimplementedError(
        absl::StrCat(source, ": model_type ", json["model_type"].dump(),
                     " is not supported; Lethe implements \"llama\""));
  }
  if (json.contains("hidden_act") && json["hidden_act"] != "silu") {
    return absl::UnimplementedError(
        absl::StrCat(source, ": hidden_act ", json["hidden_act"].dump(),
                     " is not supported; Lethe implements \"silu\""));
  }
  for (const char* field : {"attention_bias", "mlp_bias"}) {
    if (json.contains(field) && json[field].is_boolean() &&
        json[field].get<bool>()) {
      return absl::UnimplementedError(absl::StrCat(
          source, ": ", field, "=true is not supported (no biases)"));
    }
  }
  if (json.contains("rope_scaling") && !json["rope_scaling"].is_null()) {
    return absl::UnimplementedError(absl::StrCat(source, ": rope_scaling ",
                                                 json["rope_scaling"].dump(),
                                                 " is not supported"));
  }

  LlamaConfig config;
  absl::Status status;
  for (const auto& [field, target] :
       std::vector<std::pair<std::string, int64_t*>>{
           {"vocab_size", &config.vocab_size},
           {"hidden_size", &config.hidden_size},
           {"intermediate_size", &config.intermediate_size},
           {"num_hidden_layers", &config.num_hidden_layers},
           {"num_attention_heads", &config.num_attention_heads},
           {"max_position_embeddings", &config.max_position_embeddings},
           {"bos_token_id", &config.bos_token_id},
       }) {
    status = ReadInt(json, source, field, target);
    if (!status.ok()) return status;
  }
  config.num_key_value_heads = config.num_attention_heads;
  status =
      ReadInt(json, source, "num_key_value_heads", &config.num_key_value_heads);
  if (!status.ok()) return status;
  status = ReadDouble(json, source, "rms_norm_eps", &config.rms_norm_eps);
  if (!status.ok()) return status;
  status = ReadDouble(json, source, "rope_theta", &config.rope_theta);
  if (!status.ok()) return status;
  // transformers 5 writes rope_theta inside rope_parameters.
  if (json.contains("rope_parameters") && !json["rope_parameters"].is_null()) {
    const Json& rope = json["rope_parameters"];
    if (!rope.is_object()) {
      return FieldError(source, "rope_parameters", "must be an object");
    }
    for (const auto& [key, value] : rope.items()) {
      if (key == "rope_theta") continue;
      if (key == "rope_type" && value == "default") continue;
      return absl::UnimplementedError(
          absl::StrCat(source, ": rope_parameters ", rope.dump(),
                       " is not supported (only rope_type \"default\")"));
    }
    status = ReadDouble(rope, source, "rope_theta", &config.rope_theta);
    if (!status.ok()) return status;
  }
  if (json.contains("tie_word_embeddings")) {
    if (!json["tie_word_embeddings"].is_boolean()) {
      return FieldError(source, "tie_word_embeddings", "must be a boolean");
    }
    config.tie_word_embeddings = json["tie_word_embeddings"].get<bool>();
  }
  if (json.contains("eos_token_id") && !json["eos_token_id"].is_null()) {
    const Json& eos = json["eos_token_id"];
    config.eos_token_ids.clear();
    if (eos.is_number_integer()) {
      config.eos_token_ids.push_back(eos.get<int64_t>());
    } else if (eos.is_array()) {
      for (const Json& id : eos) {
        if (!id.is_number_integer()) {
          return FieldError(source, "eos_token_id",
                            "must be an integer or a list of integers");
        }
        config.eos_token_ids.push_back(id.get<int64_t>());
      }
    } else {
      return FieldError(source, "eos_token_id",
                        "must be an integer or a list of integers");
    }
  }
  if (json.contains("pad_token_id") && !json["pad_token_id"].is_null()) {
    if (!json["pad_token_id"].is_number_integer()) {
      return FieldError(source, "pad_token_id", "must be an integer");
    }
    config.pad_token_id = json["pad_token_id"].get<int64_t>();
  }
  // transformers 5 writes "dtype" where 4.x wrote "torch_dtype".
  for (const char* key : {"torch_dtype", "dtype"}) {
    if (!json.contains(key) || json[key].is_null()) continue;
    if (!json[key].is_string()) {
      return FieldError(source, key, "must be a string");
    }
    config.torch_dtype = json[key].get<std::string>();
  }
  // Validated first: head_dim() divides by num_attention_heads.
  status = config.Validate();
  if (!status.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": ", status.message()));
  }
  if (json.contains("head_dim") && !json["head_dim"].is_null() &&
      json["head_dim"] != config.head_dim()) {
    return absl::UnimplementedError(
        absl::StrCat(source, ": head_dim ", json["head_dim"].dump(),
                     " differs from hidden_size / num_attention_heads = ",
                     config.head_dim()));
  }
  return config;
}

absl::StatusOr<LlamaConfig> ReadLlamaConfig(const std::string& path) {
  ASSIGN_OR_RETURN(const std::string text, ReadFileToString(path));
  return ParseLlamaConfig(text, path);
}

std::string LlamaConfigToJson(const LlamaConfig& config) {
  nlohmann::ordered_json json;
  json["architectures"] = {"LlamaForCausalLM"};
  json["model_type"] = "llama";
  json["hidden_act"] = "silu";
  json["vocab_size"] = config.vocab_size;
  json["hidden_size"] = config.hidden_size;
  json["intermediate_size"] = config.intermediate_size;
  json["num_hidden_layers"] = config.num_hidden_layers;
  json["num_attention_heads"] = config.num_attention_heads;
  json["num_key_value_heads"] = config.num_key_value_heads;
  json["max_position_embeddings"] = config.max_position_embeddings;
  json["rms_norm_eps"] = config.rms_norm_eps;
  json["rope_theta"] = config.rope_theta;
  json["rope_scaling"] = nullptr;
  json["attention_bias"] = false;
  json["tie_word_embeddings"] = config.tie_word_embeddings;
  json["bos_token_id"] = config.bos_token_id;
  if (config.eos_token_ids.size() == 1) {
    json["eos_token_id"] = config.eos_token_ids.front();
  } else {
    json["eos_token_id"] = config.eos_token_ids;
  }
  json["pad_token_id"] = config.pad_token_id.has_value()
                             ? nlohmann::ordered_json(*config.pad_token_id)
                             : nlohmann::ordered_json(nullptr);
  json["torch_dtype"] = config.torch_dtype;
  return json.dump(2) + "\n";
}

absl::Status WriteLlamaConfig(const LlamaConfig& config,
                              const std::string& path) {
  return WriteFileAtomically(path, LlamaConfigToJson(config));
}

}  // namespace lethe
