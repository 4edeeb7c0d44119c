#include "libs/model/llama_config.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "libs/files/file_io.h"
#include "libs/status/status_macros.h"
#include "nlohmann/json.hpp"

namespace lethe {
namespace {

using Json = nlohmann::json;
using OrderedJson = nlohmann::ordered_json;

constexpr int kMaxJsonDepth = 64;
constexpr char kFullAttention[] = "full_attention";
constexpr char kSlidingAttention[] = "sliding_attention";

const std::vector<std::string>& SupportedModelTypes() {
  static const auto* types = new std::vector<std::string>{
      "llama", "mistral", "qwen2", "phi3", "gemma", "gemma2"};
  return *types;
}

absl::Status FieldError(const std::string& source, const std::string& field,
                        const std::string& problem) {
  return absl::InvalidArgumentError(
      absl::StrCat(source, ": field '", field, "' ", problem));
}

absl::Status Unsupported(const std::string& source, const std::string& field,
                         const Json& value, const std::string& why) {
  return absl::UnimplementedError(absl::StrCat(
      source, ": ", field, " ", value.dump(), " is not supported", why));
}

bool Present(const Json& json, const std::string& field) {
  return json.contains(field) && !json[field].is_null();
}

// Reads an optional integer field into `out`.
absl::Status ReadInt(const Json& json, const std::string& source,
                     const std::string& field, int64_t* out) {
  if (!Present(json, field)) return absl::OkStatus();
  if (!json[field].is_number_integer()) {
    return FieldError(source, field, "must be an integer");
  }
  *out = json[field].get<int64_t>();
  return absl::OkStatus();
}

absl::Status ReadDouble(const Json& json, const std::string& source,
                        const std::string& field, double* out) {
  if (!Present(json, field)) return absl::OkStatus();
  if (!json[field].is_number()) {
    return FieldError(source, field, "must be a number");
  }
  *out = json[field].get<double>();
  return absl::OkStatus();
}

// An optional number whose JSON null means "none" (the soft-capping fields).
absl::Status ReadOptionalDouble(const Json& json, const std::string& source,
                                const std::string& field,
                                std::optional<double>* out) {
  if (!json.contains(field)) return absl::OkStatus();
  if (json[field].is_null()) {
    out->reset();
    return absl::OkStatus();
  }
  if (!json[field].is_number()) {
    return FieldError(source, field, "must be a number or null");
  }
  *out = json[field].get<double>();
  return absl::OkStatus();
}

absl::Status ReadBool(const Json& json, const std::string& source,
                      const std::string& field, bool* out) {
  if (!Present(json, field)) return absl::OkStatus();
  if (!json[field].is_boolean()) {
    return FieldError(source, field, "must be a boolean");
  }
  *out = json[field].get<bool>();
  return absl::OkStatus();
}

// partial_rotary_factor (top level, or inside rope_parameters in
// transformers 5): only 1 (rotate the whole head) is implemented.
absl::Status CheckPartialRotaryFactor(const Json& json,
                                      const std::string& source,
                                      const std::string& field) {
  if (!Present(json, "partial_rotary_factor")) return absl::OkStatus();
  const Json& value = json["partial_rotary_factor"];
  if (!value.is_number()) {
    return FieldError(source, field, "must be a number");
  }
  if (value.get<double>() != 1.0) {
    return Unsupported(source, field, value,
                       " (only 1: rotary embeddings on the whole head)");
  }
  return absl::OkStatus();
}

// Parses one rope_scaling / rope_parameters object (`field` names it).
// Reads rope_theta into `rope_theta` when the object has one.
absl::StatusOr<RopeScaling> ParseRope(const Json& rope,
                                      const std::string& source,
                                      const std::string& field,
                                      double* rope_theta) {
  if (!rope.is_object()) {
    return FieldError(source, field, "must be an object or null");
  }
  RopeScaling scaling;
  // transformers 4.x wrote "type" before "rope_type".
  const char* type_key = rope.contains("rope_type") ? "rope_type" : "type";
  if (rope.contains(type_key)) {
    if (!rope[type_key].is_string()) {
      return FieldError(source, absl::StrCat(field, ".", type_key),
                        "must be a string");
    }
    scaling.rope_type = rope[type_key].get<std::string>();
  }
  if (scaling.rope_type != "default" && scaling.rope_type != "llama3") {
    // Phi-3's "su" and "yarn" are transformers' "longrope".
    return Unsupported(
        source, absl::StrCat(field, ".", type_key), rope[type_key],
        " (Lethe implements rope_type \"default\" and \"llama3\")");
  }
  const std::vector<std::string> llama3_keys = {
      "factor", "low_freq_factor", "high_freq_factor",
      "original_max_position_embeddings"};
  for (const auto& [key, value] : rope.items()) {
    if (key == "rope_type" || key == "type") continue;
    if (key == "rope_theta") {
      if (!value.is_number()) {
        return FieldError(source, absl::StrCat(field, ".rope_theta"),
                          "must be a number");
      }
      *rope_theta = value.get<double>();
      continue;
    }
    if (key == "partial_rotary_factor") {
      RETURN_IF_ERROR(CheckPartialRotaryFactor(
          rope, source, absl::StrCat(field, ".partial_rotary_factor")));
      continue;
    }
    const bool llama3_key = std::find(llama3_keys.begin(), llama3_keys.end(),
                                      key) != llama3_keys.end();
    if (scaling.rope_type == "llama3" && llama3_key) continue;
    return Unsupported(
        source, absl::StrCat(field, ".", key), value,
        absl::StrCat(" for rope_type \"", scaling.rope_type, "\""));
  }
  if (scaling.rope_type == "llama3") {
    for (const std::string& key : llama3_keys) {
      if (!Present(rope, key)) {
        return FieldError(source, absl::StrCat(field, ".", key),
                          "is required for rope_type \"llama3\"");
      }
    }
    RETURN_IF_ERROR(ReadDouble(rope, source, "factor", &scaling.factor));
    RETURN_IF_ERROR(
        ReadDouble(rope, source, "low_freq_factor", &scaling.low_freq_factor));
    RETURN_IF_ERROR(ReadDouble(rope, source, "high_freq_factor",
                               &scaling.high_freq_factor));
    RETURN_IF_ERROR(ReadInt(rope, source, "original_max_position_embeddings",
                            &scaling.original_max_position_embeddings));
  }
  return scaling;
}

bool SameRope(const RopeScaling& a, const RopeScaling& b) {
  return a.rope_type == b.rope_type && a.factor == b.factor &&
         a.low_freq_factor == b.low_freq_factor &&
         a.high_freq_factor == b.high_freq_factor &&
         a.original_max_position_embeddings ==
             b.original_max_position_embeddings;
}

// rope_scaling (transformers 4.x) and rope_parameters (transformers 5).
absl::Status ParseRopeFields(const Json& json, const std::string& source,
                             LlamaConfig* config) {
  std::optional<RopeScaling> from_scaling, from_parameters;
  double unused_theta = 0;
  if (Present(json, "rope_scaling")) {
    ASSIGN_OR_RETURN(from_scaling, ParseRope(json["rope_scaling"], source,
                                             "rope_scaling", &unused_theta));
  }
  if (Present(json, "rope_parameters")) {
    const Json& rope = json["rope_parameters"];
    // Gemma 3 style: one object per layer type.
    if (rope.is_object() &&
        (rope.contains(kFullAttention) || rope.contains(kSlidingAttention))) {
      return Unsupported(source, "rope_parameters", rope,
                         " (per-layer-type rotary parameters)");
    }
    ASSIGN_OR_RETURN(from_parameters, ParseRope(rope, source, "rope_parameters",
                                                &config->rope_theta));
  }
  if (from_scaling.has_value() && from_parameters.has_value() &&
      from_scaling->rope_type != "default" &&
      from_parameters->rope_type != "default" &&
      !SameRope(*from_scaling, *from_parameters)) {
    return absl::InvalidArgumentError(absl::StrCat(
        source, ": rope_scaling and rope_parameters disagree: ",
        json["rope_scaling"].dump(), " vs ", json["rope_parameters"].dump()));
  }
  if (from_parameters.has_value() && from_parameters->rope_type != "default") {
    config->rope_scaling = *from_parameters;
  } else if (from_scaling.has_value()) {
    config->rope_scaling = *from_scaling;
  }
  return absl::OkStatus();
}

absl::Status ParseActivation(const Json& json, const std::string& source,
                             LlamaConfig* config) {
  const auto supported = [](const std::string& name) {
    return name == "silu" || name == "gelu" || name == "gelu_pytorch_tanh";
  };
  std::string field = "hidden_act";
  if (config->IsGemmaFamily()) {
    // Gemma's MLP reads hidden_activation; transformers 4.x ignored
    // hidden_act ("gelu" in the first Gemma configs) and used the tanh
    // approximation the checkpoints were trained with.
    if (Present(json, "hidden_activation")) {
      field = "hidden_activation";
    } else if (Present(json, "hidden_act") && json["hidden_act"] != "gelu" &&
               json["hidden_act"] != "gelu_pytorch_tanh") {
      return Unsupported(source, "hidden_act", json["hidden_act"],
                         " without hidden_activation for Gemma (which "
                         "transformers versions disagree on)");
    } else {
      config->hidden_act = "gelu_pytorch_tanh";
      return absl::OkStatus();
    }
  }
  if (!Present(json, field)) return absl::OkStatus();
  if (!json[field].is_string() || !supported(json[field].get<std::string>())) {
    return Unsupported(
        source, field, json[field],
        "; Lethe implements \"silu\", \"gelu\" and \"gelu_pytorch_tanh\"");
  }
  config->hidden_act = json[field].get<std::string>();
  return absl::OkStatus();
}

absl::Status ParseSlidingWindow(const Json& json, const std::string& source,
                                LlamaConfig* config) {
  const std::string& type = config->model_type;
  if (type == "llama" || type == "gemma") return absl::OkStatus();
  if (json.contains("sliding_window")) {
    if (json["sliding_window"].is_null()) {
      config->sliding_window.reset();
    } else if (!json["sliding_window"].is_number_integer()) {
      return FieldError(source, "sliding_window", "must be an integer or null");
    } else {
      config->sliding_window = json["sliding_window"].get<int64_t>();
    }
  }
  if (type == "qwen2") {
    bool use_sliding_window = false;
    RETURN_IF_ERROR(
        ReadBool(json, source, "use_sliding_window", &use_sliding_window));
    // Qwen2Config drops the window unless use_sliding_window is set.
    if (!use_sliding_window) config->sliding_window.reset();
    RETURN_IF_ERROR(
        ReadInt(json, source, "max_window_layers", &config->max_window_layers));
  }
  // MistralModel ignores layer_types; Phi3Config has none.
  if ((type == "qwen2" || type == "gemma2") && Present(json, "layer_types")) {
    const Json& types = json["layer_types"];
    if (!types.is_array()) {
      return FieldError(source, "layer_types", "must be a list of strings");
    }
    config->layer_types.clear();
    for (const Json& entry : types) {
      if (!entry.is_string() ||
          (entry != kFullAttention && entry != kSlidingAttention)) {
        return Unsupported(source, "layer_types entry", entry,
                           " (only \"full_attention\" and "
                           "\"sliding_attention\")");
      }
      config->layer_types.push_back(entry.get<std::string>());
    }
  }
  return absl::OkStatus();
}

}  // namespace

bool LlamaConfig::QkvBias() const {
  return model_type == "qwen2" || attention_bias;
}

bool LlamaConfig::OutputProjectionBias() const {
  return model_type != "qwen2" && attention_bias;
}

bool LlamaConfig::IsGemmaFamily() const {
  return model_type == "gemma" || model_type == "gemma2";
}

bool LlamaConfig::HasSandwichNorms() const { return model_type == "gemma2"; }

bool LlamaConfig::HasFusedCheckpointProjections() const {
  return model_type == "phi3";
}

bool LlamaConfig::IsSlidingLayer(int64_t layer) const {
  if (!sliding_window.has_value()) return false;
  if (!layer_types.empty()) {
    return layer >= 0 && layer < static_cast<int64_t>(layer_types.size()) &&
           layer_types[layer] == kSlidingAttention;
  }
  if (model_type == "mistral" || model_type == "phi3") return true;
  if (model_type == "qwen2") return layer >= max_window_layers;
  if (model_type == "gemma2") return layer % 2 == 0;
  return false;
}

std::string LlamaConfig::Architecture() const {
  if (model_type == "mistral") return "MistralForCausalLM";
  if (model_type == "qwen2") return "Qwen2ForCausalLM";
  if (model_type == "phi3") return "Phi3ForCausalLM";
  if (model_type == "gemma") return "GemmaForCausalLM";
  if (model_type == "gemma2") return "Gemma2ForCausalLM";
  return "LlamaForCausalLM";
}

absl::Status LlamaConfig::Validate() const {
  auto positive = [](int64_t value) { return value > 0; };
  if (std::find(SupportedModelTypes().begin(), SupportedModelTypes().end(),
                model_type) == SupportedModelTypes().end()) {
    return absl::InvalidArgumentError(
        absl::StrCat("model_type '", model_type, "' is not one of ",
                     absl::StrJoin(SupportedModelTypes(), ", ")));
  }
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
  if (!positive(num_attention_heads)) {
    return absl::InvalidArgumentError("num_attention_heads must be positive");
  }
  if (explicit_head_dim.has_value()) {
    if (!positive(*explicit_head_dim)) {
      return absl::InvalidArgumentError("head_dim must be positive");
    }
  } else if (hidden_size % num_attention_heads != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("num_attention_heads (", num_attention_heads,
                     ") must be positive and divide hidden_size (", hidden_size,
                     ") when config.json has no head_dim"));
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
  if (rope_scaling.rope_type == "llama3") {
    if (!(rope_scaling.factor > 0)) {
      return absl::InvalidArgumentError("rope_scaling.factor must be positive");
    }
    if (!(rope_scaling.high_freq_factor > rope_scaling.low_freq_factor) ||
        !(rope_scaling.low_freq_factor > 0)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "rope_scaling needs 0 < low_freq_factor < high_freq_factor, got ",
          rope_scaling.low_freq_factor, " and ",
          rope_scaling.high_freq_factor));
    }
    if (!positive(rope_scaling.original_max_position_embeddings)) {
      return absl::InvalidArgumentError(
          "rope_scaling.original_max_position_embeddings must be positive");
    }
  } else if (rope_scaling.rope_type != "default") {
    return absl::InvalidArgumentError(
        absl::StrCat("rope_type '", rope_scaling.rope_type,
                     "' is not one of default, llama3"));
  }
  if (hidden_act != "silu" && hidden_act != "gelu" &&
      hidden_act != "gelu_pytorch_tanh") {
    return absl::InvalidArgumentError(
        absl::StrCat("hidden_act '", hidden_act,
                     "' is not one of silu, gelu, gelu_pytorch_tanh"));
  }
  if (sliding_window.has_value() && !positive(*sliding_window)) {
    return absl::InvalidArgumentError("sliding_window must be positive");
  }
  if (!layer_types.empty()) {
    if (static_cast<int64_t>(layer_types.size()) != num_hidden_layers) {
      return absl::InvalidArgumentError(
          absl::StrCat("layer_types has ", layer_types.size(), " entries for ",
                       num_hidden_layers, " layers"));
    }
    for (const std::string& type : layer_types) {
      if (type != kFullAttention && type != kSlidingAttention) {
        return absl::InvalidArgumentError(
            absl::StrCat("layer_types entry '", type,
                         "' is not full_attention or sliding_attention"));
      }
      if (type == kSlidingAttention && !sliding_window.has_value()) {
        return absl::InvalidArgumentError(
            "layer_types names sliding_attention but sliding_window is null");
      }
    }
  }
  if (query_pre_attn_scalar.has_value() && !(*query_pre_attn_scalar > 0)) {
    return absl::InvalidArgumentError("query_pre_attn_scalar must be positive");
  }
  for (const auto& [name, cap] :
       {std::pair<const char*, std::optional<double>>{"attn_logit_softcapping",
                                                      attn_logit_softcapping},
        {"final_logit_softcapping", final_logit_softcapping}}) {
    if (cap.has_value() && !(*cap > 0)) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, " must be positive or null"));
    }
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
  if (bos_token_id.has_value() &&
      (*bos_token_id < 0 || *bos_token_id >= vocab_size)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "bos_token_id ", *bos_token_id, " is outside the vocabulary"));
  }
  return absl::OkStatus();
}

absl::StatusOr<LlamaConfig> DefaultConfigFor(const std::string& model_type) {
  LlamaConfig config;  // LlamaConfig's defaults.
  config.model_type = model_type;
  if (model_type == "llama") return config;
  if (model_type == "mistral") {
    config.intermediate_size = 14336;
    config.num_key_value_heads = 8;
    config.max_position_embeddings = 4096 * 32;
    config.sliding_window = 4096;
    return config;
  }
  if (model_type == "qwen2") {
    config.vocab_size = 151936;
    config.intermediate_size = 22016;
    config.max_position_embeddings = 32768;
    config.max_window_layers = 28;
    config.bos_token_id.reset();
    config.eos_token_ids.clear();
    return config;
  }
  if (model_type == "phi3") {
    config.vocab_size = 32064;
    config.hidden_size = 3072;
    config.intermediate_size = 8192;
    config.max_position_embeddings = 4096;
    config.original_max_position_embeddings = 4096;
    config.rms_norm_eps = 1e-5;
    config.eos_token_ids = {32000};
    config.pad_token_id = 32000;
    return config;
  }
  if (model_type == "gemma" || model_type == "gemma2") {
    const bool two = model_type == "gemma2";
    config.vocab_size = 256000;
    config.hidden_size = two ? 2304 : 3072;
    config.intermediate_size = two ? 9216 : 24576;
    config.num_hidden_layers = two ? 26 : 28;
    config.num_attention_heads = two ? 8 : 16;
    config.num_key_value_heads = two ? 4 : 16;
    config.explicit_head_dim = 256;
    config.hidden_act = "gelu_pytorch_tanh";
    config.max_position_embeddings = 8192;
    config.pad_token_id = 0;
    config.eos_token_ids = {1};
    config.bos_token_id = 2;
    config.tie_word_embeddings = true;
    if (two) {
      config.query_pre_attn_scalar = 256;
      config.sliding_window = 4096;
      config.final_logit_softcapping = 30.0;
      config.attn_logit_softcapping = 50.0;
    }
    return config;
  }
  return absl::UnimplementedError(absl::StrCat(
      "model_type \"", model_type, "\" is not supported; Lethe implements \"",
      absl::StrJoin(SupportedModelTypes(), "\", \""), "\""));
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
  // Error messages print the values they reject, and nlohmann's dump()
  // recurses once per level: a config.json nested a million levels deep
  // (2 MB) overflowed the stack. Real ones nest three levels.
  bool too_deep = false;
  const Json json = Json::parse(
      json_text,
      [&too_deep](int depth, Json::parse_event_t, Json&) {
        if (depth > kMaxJsonDepth) too_deep = true;
        return true;
      },
      /*allow_exceptions=*/false);
  if (too_deep) {
    return absl::InvalidArgumentError(absl::StrCat(
        source, ": JSON nested deeper than ", kMaxJsonDepth, " levels"));
  }
  if (json.is_discarded() || !json.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": not a JSON object"));
  }
  std::string model_type = "llama";
  if (Present(json, "model_type")) {
    if (!json["model_type"].is_string()) {
      return FieldError(source, "model_type", "must be a string");
    }
    model_type = json["model_type"].get<std::string>();
  }
  absl::StatusOr<LlamaConfig> defaults = DefaultConfigFor(model_type);
  if (!defaults.ok()) {
    return absl::Status(
        defaults.status().code(),
        absl::StrCat(source, ": ", defaults.status().message()));
  }
  LlamaConfig config = *std::move(defaults);

  for (const auto& [field, target] :
       std::vector<std::pair<std::string, int64_t*>>{
           {"vocab_size", &config.vocab_size},
           {"hidden_size", &config.hidden_size},
           {"intermediate_size", &config.intermediate_size},
           {"num_hidden_layers", &config.num_hidden_layers},
           {"num_attention_heads", &config.num_attention_heads},
           {"max_position_embeddings", &config.max_position_embeddings},
       }) {
    RETURN_IF_ERROR(ReadInt(json, source, field, target));
  }
  // LlamaConfig and Phi3Config default the key/value heads to the attention
  // heads; the others have a number of their own unless the field is null.
  if (model_type == "llama" || model_type == "phi3" ||
      (json.contains("num_key_value_heads") &&
       json["num_key_value_heads"].is_null())) {
    config.num_key_value_heads = config.num_attention_heads;
  }
  RETURN_IF_ERROR(ReadInt(json, source, "num_key_value_heads",
                          &config.num_key_value_heads));
  if (json.contains("head_dim")) {
    if (json["head_dim"].is_null()) {
      config.explicit_head_dim.reset();
    } else {
      int64_t head_dim = 0;
      RETURN_IF_ERROR(ReadInt(json, source, "head_dim", &head_dim));
      config.explicit_head_dim = head_dim;
    }
  }
  RETURN_IF_ERROR(
      ReadDouble(json, source, "rms_norm_eps", &config.rms_norm_eps));
  RETURN_IF_ERROR(ReadDouble(json, source, "rope_theta", &config.rope_theta));
  RETURN_IF_ERROR(ParseRopeFields(json, source, &config));
  RETURN_IF_ERROR(
      CheckPartialRotaryFactor(json, source, "partial_rotary_factor"));
  RETURN_IF_ERROR(ParseActivation(json, source, &config));

  if (model_type == "llama" || config.IsGemmaFamily()) {
    RETURN_IF_ERROR(
        ReadBool(json, source, "attention_bias", &config.attention_bias));
  }
  if (model_type == "llama") {
    RETURN_IF_ERROR(ReadBool(json, source, "mlp_bias", &config.mlp_bias));
  }
  if (model_type == "gemma") {
    bool bidirectional = false;
    RETURN_IF_ERROR(
        ReadBool(json, source, "use_bidirectional_attention", &bidirectional));
    if (bidirectional) {
      return Unsupported(source, "use_bidirectional_attention", true,
                         " (Lethe's models are causal)");
    }
  }
  RETURN_IF_ERROR(ParseSlidingWindow(json, source, &config));
  if (model_type == "gemma2") {
    RETURN_IF_ERROR(ReadOptionalDouble(json, source, "query_pre_attn_scalar",
                                       &config.query_pre_attn_scalar));
    RETURN_IF_ERROR(ReadOptionalDouble(json, source, "attn_logit_softcapping",
                                       &config.attn_logit_softcapping));
    RETURN_IF_ERROR(ReadOptionalDouble(json, source, "final_logit_softcapping",
                                       &config.final_logit_softcapping));
  }
  if (model_type == "phi3" &&
      json.contains("original_max_position_embeddings")) {
    if (json["original_max_position_embeddings"].is_null()) {
      config.original_max_position_embeddings.reset();
    } else {
      int64_t original = 0;
      RETURN_IF_ERROR(
          ReadInt(json, source, "original_max_position_embeddings", &original));
      config.original_max_position_embeddings = original;
    }
  }

  RETURN_IF_ERROR(ReadBool(json, source, "tie_word_embeddings",
                           &config.tie_word_embeddings));
  if (json.contains("bos_token_id")) {
    if (json["bos_token_id"].is_null()) {
      config.bos_token_id.reset();
    } else {
      int64_t bos = 0;
      RETURN_IF_ERROR(ReadInt(json, source, "bos_token_id", &bos));
      config.bos_token_id = bos;
    }
  }
  if (json.contains("eos_token_id")) {
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
    } else if (!eos.is_null()) {
      return FieldError(source, "eos_token_id",
                        "must be an integer or a list of integers");
    }
  }
  if (json.contains("pad_token_id")) {
    if (json["pad_token_id"].is_null()) {
      config.pad_token_id.reset();
    } else if (!json["pad_token_id"].is_number_integer()) {
      return FieldError(source, "pad_token_id", "must be an integer");
    } else {
      config.pad_token_id = json["pad_token_id"].get<int64_t>();
    }
  }
  // transformers 5 writes "dtype" where 4.x wrote "torch_dtype".
  for (const char* key : {"torch_dtype", "dtype"}) {
    if (!Present(json, key)) continue;
    if (!json[key].is_string()) {
      return FieldError(source, key, "must be a string");
    }
    config.torch_dtype = json[key].get<std::string>();
  }
  const absl::Status status = config.Validate();
  if (!status.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": ", status.message()));
  }
  return config;
}

absl::StatusOr<LlamaConfig> ReadLlamaConfig(const std::string& path) {
  ASSIGN_OR_RETURN(const std::string text, ReadFileToString(path));
  return ParseLlamaConfig(text, path);
}

std::string LlamaConfigToJson(const LlamaConfig& config) {
  const std::string& type = config.model_type;
  OrderedJson json;
  json["architectures"] = {config.Architecture()};
  json["model_type"] = type;
  json["hidden_act"] = config.hidden_act;
  if (config.IsGemmaFamily()) json["hidden_activation"] = config.hidden_act;
  json["vocab_size"] = config.vocab_size;
  json["hidden_size"] = config.hidden_size;
  json["intermediate_size"] = config.intermediate_size;
  json["num_hidden_layers"] = config.num_hidden_layers;
  json["num_attention_heads"] = config.num_attention_heads;
  json["num_key_value_heads"] = config.num_key_value_heads;
  // Without head_dim, a family whose config class has a head_dim default
  // of its own (Gemma's 256) would read that back instead of hidden_size /
  // num_attention_heads: a different model.
  const absl::StatusOr<LlamaConfig> defaults = DefaultConfigFor(type);
  if (config.explicit_head_dim.has_value() ||
      (defaults.ok() && defaults->explicit_head_dim.has_value())) {
    json["head_dim"] = config.head_dim();
  }
  json["max_position_embeddings"] = config.max_position_embeddings;
  if (type == "phi3") {
    json["original_max_position_embeddings"] =
        config.original_max_position_embeddings.has_value()
            ? OrderedJson(*config.original_max_position_embeddings)
            : OrderedJson(nullptr);
  }
  json["rms_norm_eps"] = config.rms_norm_eps;
  json["rope_theta"] = config.rope_theta;
  // The legacy key: transformers 4.43+ reads it, and 5 converts it to
  // rope_parameters.
  if (config.rope_scaling.rope_type == "llama3") {
    const RopeScaling& rope = config.rope_scaling;
    json["rope_scaling"] = {{"rope_type", "llama3"},
                            {"factor", rope.factor},
                            {"low_freq_factor", rope.low_freq_factor},
                            {"high_freq_factor", rope.high_freq_factor},
                            {"original_max_position_embeddings",
                             rope.original_max_position_embeddings}};
  } else {
    json["rope_scaling"] = nullptr;
  }
  if (type == "llama" || config.IsGemmaFamily()) {
    json["attention_bias"] = config.attention_bias;
  }
  if (type == "llama") json["mlp_bias"] = config.mlp_bias;
  const OrderedJson window = config.sliding_window.has_value()
                                 ? OrderedJson(*config.sliding_window)
                                 : OrderedJson(nullptr);
  if (type == "qwen2") {
    json["use_sliding_window"] = config.sliding_window.has_value();
    json["sliding_window"] = window;
    json["max_window_layers"] = config.max_window_layers;
  } else if (type == "mistral" || type == "phi3" || type == "gemma2") {
    json["sliding_window"] = window;
  }
  if (!config.layer_types.empty() && (type == "qwen2" || type == "gemma2")) {
    json["layer_types"] = config.layer_types;
  }
  if (type == "gemma2") {
    auto optional_number = [](const std::optional<double>& value) {
      return value.has_value() ? OrderedJson(*value) : OrderedJson(nullptr);
    };
    json["query_pre_attn_scalar"] =
        optional_number(config.query_pre_attn_scalar);
    json["attn_logit_softcapping"] =
        optional_number(config.attn_logit_softcapping);
    json["final_logit_softcapping"] =
        optional_number(config.final_logit_softcapping);
  }
  json["tie_word_embeddings"] = config.tie_word_embeddings;
  json["bos_token_id"] = config.bos_token_id.has_value()
                             ? OrderedJson(*config.bos_token_id)
                             : OrderedJson(nullptr);
  if (config.eos_token_ids.empty()) {
    json["eos_token_id"] = nullptr;
  } else if (config.eos_token_ids.size() == 1) {
    json["eos_token_id"] = config.eos_token_ids.front();
  } else {
    json["eos_token_id"] = config.eos_token_ids;
  }
  json["pad_token_id"] = config.pad_token_id.has_value()
                             ? OrderedJson(*config.pad_token_id)
                             : OrderedJson(nullptr);
  json["torch_dtype"] = config.torch_dtype;
  return json.dump(2) + "\n";
}

absl::Status WriteLlamaConfig(const LlamaConfig& config,
                              const std::string& path) {
  return WriteFileAtomically(path, LlamaConfigToJson(config));
}

}  // namespace lethe
