#include "libs/model/lora.h"

#include <torch/nn/modules/linear.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <regex>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "libs/files/file_io.h"
#include "libs/model/safetensors.h"
#include "libs/status/status_macros.h"
#include "libs/status/torch_status.h"
#include "nlohmann/json.hpp"

namespace lethe {
namespace {

constexpr char kConfigFile[] = "adapter_config.json";
constexpr char kWeightsFile[] = "adapter_model.safetensors";
constexpr char kPeftPrefix[] = "base_model.model.";

// fp32 adapters, except on fp64 models (PEFT's autocast_adapter_dtype casts
// only fp16 and bf16 adapters up).
at::ScalarType AdapterDtype(at::ScalarType base) {
  return base == at::kDouble ? at::kDouble : at::kFloat;
}

std::string ShapeString(at::IntArrayRef shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

// One projection's adapter.
class LoraAdapter : public LinearAdapter {
 public:
  LoraAdapter(torch::nn::Linear lora_a, torch::nn::Linear lora_b,
              const LoraConfig& config)
      : lora_a_(std::move(lora_a)),
        lora_b_(std::move(lora_b)),
        config_(config),
        scaling_(config.Scaling()) {}

  at::Tensor Delta(const at::Tensor& x) override {
    if (!enabled_) return {};
    at::Tensor input = x.to(lora_a_->weight.scalar_type());
    if (config_.dropout > 0) {
      input = torch::dropout(input, config_.dropout, lora_a_->is_training());
    }
    // PEFT: lora_B(lora_A(dropout(x))) * scaling.
    return lora_b_->forward(lora_a_->forward(input)) * scaling_;
  }

  torch::nn::Linear& lora_a() { return lora_a_; }
  torch::nn::Linear& lora_b() { return lora_b_; }
  const LoraConfig& config() const { return config_; }
  double scaling() const { return scaling_; }
  bool enabled() const { return enabled_; }
  void set_enabled(bool enabled) { enabled_ = enabled; }

 private:
  torch::nn::Linear lora_a_;
  torch::nn::Linear lora_b_;
  LoraConfig config_;
  double scaling_;
  bool enabled_ = true;
};

LoraAdapter* AdapterOf(const NamedProjection& projection) {
  return dynamic_cast<LoraAdapter*>(projection.projection->adapter.get());
}

// The projections that carry a LoRA adapter, with it.
std::vector<std::pair<NamedProjection, LoraAdapter*>> Adapted(
    LlamaForCausalLM& model) {
  std::vector<std::pair<NamedProjection, LoraAdapter*>> adapted;
  for (const NamedProjection& projection : model.Projections()) {
    if (LoraAdapter* adapter = AdapterOf(projection)) {
      adapted.emplace_back(projection, adapter);
    }
  }
  return adapted;
}

void Detach(const NamedProjection& projection) {
  torch::nn::Linear& linear = projection.projection->linear;
  linear->unregister_module("lora_A");
  linear->unregister_module("lora_B");
  projection.projection->adapter = nullptr;
}

// PEFT's module matching for a list of target names: the module path equals
// a target or ends with "." + target.
bool MatchesTarget(const std::string& path, const std::string& target) {
  return path == target || absl::EndsWith(path, absl::StrCat(".", target));
}

// Attaches fresh adapters to the projections `targeted` selects.
absl::Status AttachWhere(
    LlamaForCausalLM& model, const LoraConfig& config,
    const std::function<bool(const NamedProjection&)>& targeted) {
  if (HasLora(model)) {
    return absl::FailedPreconditionError(
        "the model already has LoRA adapters; merge or remove them first");
  }
  return CallTorch("attaching LoRA adapters", [&] {
    for (const NamedProjection& projection : model.Projections()) {
      if (!targeted(projection)) continue;
      torch::nn::Linear& linear = projection.projection->linear;
      const at::Tensor& weight = linear->weight;
      const int64_t in = weight.size(1), out = weight.size(0);
      const at::ScalarType dtype = AdapterDtype(weight.scalar_type());
      // nn.Linear's initialisation is PEFT's for lora_A: kaiming_uniform_
      // with a = sqrt(5). lora_B starts at zero.
      torch::nn::Linear lora_a(
          torch::nn::LinearOptions(in, config.rank).bias(false));
      torch::nn::Linear lora_b(
          torch::nn::LinearOptions(config.rank, out).bias(false));
      {
        torch::NoGradGuard no_grad;
        lora_b->weight.zero_();
      }
      lora_a->to(weight.device(), dtype);
      lora_b->to(weight.device(), dtype);
      lora_a->train(linear->is_training());
      lora_b->train(linear->is_training());
      linear->register_module("lora_A", lora_a);
      linear->register_module("lora_B", lora_b);
      projection.projection->adapter =
          std::make_shared<LoraAdapter>(lora_a, lora_b, config);
    }
  });
}

// Every adapted projection path, and whether they are all layers' `names`.
bool CoversEveryLayer(LlamaForCausalLM& model,
                      const std::set<std::string>& names,
                      const std::set<std::string>& paths) {
  size_t expected = 0;
  for (const NamedProjection& projection : model.Projections()) {
    if (names.count(projection.name) == 0) continue;
    ++expected;
    if (paths.count(projection.path) == 0) return false;
  }
  return expected == paths.size();
}

std::string RegexEscape(const std::string& text) {
  std::string escaped;
  for (const char c : text) {
    if (std::string("\\^$.|?*+()[]{}").find(c) != std::string::npos) {
      escaped += '\\';
    }
    escaped += c;
  }
  return escaped;
}

// JSON helpers for adapter_config.json.
absl::Status FieldError(const std::string& path, const std::string& field,
                        const std::string& problem) {
  return absl::InvalidArgumentError(
      absl::StrCat(path, ": field '", field, "' ", problem));
}

// OK when `field` is absent, null, false, or an empty list/object; else
// UNIMPLEMENTED naming it.
absl::Status RequireUnset(const nlohmann::json& config, const std::string& path,
                          const std::string& field, const std::string& what) {
  if (!config.contains(field)) return absl::OkStatus();
  const nlohmann::json& value = config[field];
  if (value.is_null() || (value.is_boolean() && !value.get<bool>()) ||
      ((value.is_array() || value.is_object()) && value.empty())) {
    return absl::OkStatus();
  }
  return absl::UnimplementedError(
      absl::StrCat(path, ": field '", field, "' is ", value.dump(), ": ", what,
                   " is not supported by Lethe's LoRA"));
}

}  // namespace

double LoraConfig::Scaling() const {
  return use_rslora ? alpha / std::sqrt(static_cast<double>(rank))
                    : alpha / static_cast<double>(rank);
}

std::vector<std::string> LoraConfig::TargetModules() const {
  std::set<std::string> names(target_modules.begin(), target_modules.end());
  if (names.empty()) names = {"q_proj", "v_proj"};
  return {names.begin(), names.end()};
}

const std::vector<std::string>& LoraTargetableModules() {
  static const auto* const names =
      new std::vector<std::string>{"q_proj",    "k_proj",  "v_proj",   "o_proj",
                                   "gate_proj", "up_proj", "down_proj"};
  return *names;
}

absl::Status ValidateLoraConfig(const LoraConfig& config) {
  if (config.rank < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("lora rank must be at least 1, got ", config.rank));
  }
  if (!std::isfinite(config.alpha) || config.alpha <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("lora alpha must be positive, got ", config.alpha));
  }
  if (!(config.dropout >= 0 && config.dropout < 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("lora dropout must be in [0, 1), got ", config.dropout));
  }
  std::set<std::string> seen;
  const std::vector<std::string>& known = LoraTargetableModules();
  for (const std::string& name : config.target_modules) {
    if (std::find(known.begin(), known.end(), name) == known.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("lora target module '", name, "' is not one of ",
                       absl::StrJoin(known, ", ")));
    }
    if (!seen.insert(name).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("lora target module '", name, "' is listed twice"));
    }
  }
  return absl::OkStatus();
}

absl::Status AttachLora(LlamaForCausalLM& model, const LoraConfig& config) {
  RETURN_IF_ERROR(ValidateLoraConfig(config));
  const std::vector<std::string> names = config.TargetModules();
  const std::set<std::string> targets(names.begin(), names.end());
  LoraConfig resolved = config;
  resolved.target_modules = names;
  return AttachWhere(model, resolved, [&](const NamedProjection& projection) {
    return targets.count(projection.name) > 0;
  });
}

bool HasLora(LlamaForCausalLM& model) { return !Adapted(model).empty(); }

absl::StatusOr<LoraConfig> AttachedLoraConfig(LlamaForCausalLM& model) {
  const auto adapted = Adapted(model);
  if (adapted.empty()) {
    return absl::FailedPreconditionError("the model has no LoRA adapters");
  }
  LoraConfig config = adapted.front().second->config();
  std::set<std::string> names;
  for (const auto& [projection, adapter] : adapted) {
    names.insert(projection.name);
  }
  config.target_modules.assign(names.begin(), names.end());
  return config;
}

std::vector<std::string> LoraAdaptedModules(LlamaForCausalLM& model) {
  std::vector<std::string> paths;
  for (const auto& [projection, adapter] : Adapted(model)) {
    paths.push_back(projection.path);
  }
  return paths;
}

std::vector<std::pair<std::string, at::Tensor>> LoraParameters(
    LlamaForCausalLM& model) {
  std::vector<std::pair<std::string, at::Tensor>> parameters;
  for (const auto& [projection, adapter] : Adapted(model)) {
    parameters.emplace_back(projection.path + ".lora_A.weight",
                            adapter->lora_a()->weight);
    parameters.emplace_back(projection.path + ".lora_B.weight",
                            adapter->lora_b()->weight);
  }
  return parameters;
}

void SetLoraEnabled(LlamaForCausalLM& model, bool enabled) {
  for (const auto& [projection, adapter] : Adapted(model)) {
    adapter->set_enabled(enabled);
  }
}

bool LoraEnabled(LlamaForCausalLM& model) {
  const auto adapted = Adapted(model);
  return !adapted.empty() && adapted.front().second->enabled();
}

ScopedLoraDisabled::ScopedLoraDisabled(LlamaForCausalLM& model)
    : model_(model), was_enabled_(LoraEnabled(model)) {
  SetLoraEnabled(model_, false);
}

ScopedLoraDisabled::~ScopedLoraDisabled() {
  if (was_enabled_) SetLoraEnabled(model_, true);
}

std::vector<at::Tensor> FreezeAllButLora(LlamaForCausalLM& model) {
  std::vector<at::Tensor> adapters;
  std::set<const void*> adapter_impls;
  for (const auto& [name, tensor] : LoraParameters(model)) {
    adapters.push_back(tensor);
    adapter_impls.insert(tensor.unsafeGetTensorImpl());
  }
  for (at::Tensor& parameter : model.parameters()) {
    parameter.requires_grad_(
        adapter_impls.count(parameter.unsafeGetTensorImpl()) > 0);
  }
  return adapters;
}

std::string PeftAdapterKey(const std::string& parameter_name) {
  return absl::StrCat(kPeftPrefix, parameter_name);
}

absl::Status SaveLoraAdapter(LlamaForCausalLM& model, const std::string& dir,
                             const LoraSaveOptions& options) {
  ASSIGN_OR_RETURN(LoraConfig config, AttachedLoraConfig(model));
  if (model.config().HasFusedCheckpointProjections()) {
    return absl::UnimplementedError(
        "PEFT adapters of models with fused projections (Phi-3's qkv_proj, "
        "gate_up_proj) are not supported; merge the adapters instead");
  }
  std::error_code error;
  std::filesystem::create_directories(dir, error);
  if (error) {
    return absl::PermissionDeniedError(
        absl::StrCat(dir, ": cannot create: ", error.message()));
  }
  const std::vector<std::string> paths = LoraAdaptedModules(model);
  const std::set<std::string> names(config.target_modules.begin(),
                                    config.target_modules.end());
  nlohmann::json target_modules;
  if (CoversEveryLayer(model, names, {paths.begin(), paths.end()})) {
    target_modules = config.target_modules;
  } else {
    // Not the same projections in every layer (an adapter loaded with a
    // pattern): PEFT's regular expression, fully matched, naming each one.
    std::vector<std::string> escaped;
    for (const std::string& path : paths) escaped.push_back(RegexEscape(path));
    target_modules = absl::StrCat("(", absl::StrJoin(escaped, "|"), ")");
  }

  // LoraConfig's fields as PEFT 0.10-0.13 save them (see lora.h).
  nlohmann::json json = nlohmann::json::object();
  json["alpha_pattern"] = nlohmann::json::object();
  json["auto_mapping"] = nullptr;
  json["base_model_name_or_path"] = options.base_model.empty()
                                        ? nlohmann::json(nullptr)
                                        : nlohmann::json(options.base_model);
  json["bias"] = "none";
  json["fan_in_fan_out"] = false;
  json["inference_mode"] = true;
  json["init_lora_weights"] = true;
  json["layer_replication"] = nullptr;
  json["layers_pattern"] = nullptr;
  json["layers_to_transform"] = nullptr;
  json["loftq_config"] = nlohmann::json::object();
  if (config.alpha == std::floor(config.alpha) && config.alpha < 1e15) {
    json["lora_alpha"] = static_cast<int64_t>(config.alpha);
  } else {
    json["lora_alpha"] = config.alpha;
  }
  json["lora_dropout"] = config.dropout;
  json["megatron_config"] = nullptr;
  json["megatron_core"] = "megatron.core";
  json["modules_to_save"] = nullptr;
  json["peft_type"] = "LORA";
  json["r"] = config.rank;
  json["rank_pattern"] = nlohmann::json::object();
  json["revision"] = nullptr;
  json["target_modules"] = target_modules;
  json["task_type"] = "CAUSAL_LM";
  json["use_dora"] = false;
  json["use_rslora"] = config.use_rslora;

  std::vector<std::pair<std::string, at::Tensor>> tensors;
  for (const auto& [name, tensor] : LoraParameters(model)) {
    tensors.emplace_back(PeftAdapterKey(name), tensor.detach());
  }
  RETURN_IF_ERROR(WriteSafetensors(absl::StrCat(dir, "/", kWeightsFile),
                                   tensors, {{"format", "pt"}}));
  return WriteFileAtomically(absl::StrCat(dir, "/", kConfigFile),
                             json.dump(2) + "\n");
}

absl::StatusOr<PeftLoraAdapterConfig> ReadLoraAdapterConfig(
    const std::string& dir) {
  const std::string path = absl::StrCat(dir, "/", kConfigFile);
  ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  nlohmann::json json = nlohmann::json::parse(text, nullptr,
                                              /*allow_exceptions=*/false);
  if (json.is_discarded() || !json.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": not a JSON object"));
  }
  for (const char* field : {"peft_type", "r", "lora_alpha", "target_modules"}) {
    if (!json.contains(field) || json[field].is_null()) {
      return FieldError(path, field, "is required");
    }
  }
  if (!json["peft_type"].is_string() ||
      json["peft_type"].get<std::string>() != "LORA") {
    return FieldError(path, "peft_type",
                      absl::StrCat("is ", json["peft_type"].dump(),
                                   "; only \"LORA\" adapters are supported"));
  }
  PeftLoraAdapterConfig result;
  LoraConfig& lora = result.lora;
  if (!json["r"].is_number_integer() || json["r"].get<int64_t>() < 1) {
    return FieldError(path, "r", "must be a positive integer");
  }
  lora.rank = json["r"].get<int64_t>();
  if (!json["lora_alpha"].is_number() ||
      json["lora_alpha"].get<double>() <= 0) {
    return FieldError(path, "lora_alpha", "must be a positive number");
  }
  lora.alpha = json["lora_alpha"].get<double>();
  if (json.contains("lora_dropout") && !json["lora_dropout"].is_null()) {
    if (!json["lora_dropout"].is_number()) {
      return FieldError(path, "lora_dropout", "must be a number");
    }
    lora.dropout = json["lora_dropout"].get<double>();
  }
  if (json.contains("use_rslora") && !json["use_rslora"].is_null()) {
    if (!json["use_rslora"].is_boolean()) {
      return FieldError(path, "use_rslora", "must be true or false");
    }
    lora.use_rslora = json["use_rslora"].get<bool>();
  }
  if (json.contains("bias") && !json["bias"].is_null() &&
      json["bias"] != "none") {
    return absl::UnimplementedError(
        absl::StrCat(path, ": field 'bias' is ", json["bias"].dump(),
                     ": only \"none\" is supported by Lethe's LoRA"));
  }
  if (json.contains("task_type") && !json["task_type"].is_null() &&
      json["task_type"] != "CAUSAL_LM") {
    return FieldError(path, "task_type",
                      absl::StrCat("is ", json["task_type"].dump(),
                                   "; a causal LM adapter needs CAUSAL_LM"));
  }
  const std::vector<std::pair<std::string, std::string>> unsupported = {
      {"use_dora", "DoRA"},
      {"fan_in_fan_out", "fan_in_fan_out (Conv1D layers)"},
      {"lora_bias", "a LoRA bias"},
      {"modules_to_save", "training whole modules besides the adapters"},
      {"layers_to_transform", "adapting only some layers"},
      {"rank_pattern", "per-module ranks"},
      {"alpha_pattern", "per-module alphas"},
      {"exclude_modules", "excluding modules"},
      {"layer_replication", "layer replication"},
      {"trainable_token_indices", "trainable tokens"},
      {"target_parameters", "targeting parameters"}};
  for (const auto& [field, what] : unsupported) {
    RETURN_IF_ERROR(RequireUnset(json, path, field, what));
  }
  const nlohmann::json& targets = json["target_modules"];
  if (targets.is_string()) {
    const std::string target = targets.get<std::string>();
    if (target == "all-linear") {
      lora.target_modules = LoraTargetableModules();
    } else {
      result.pattern = target;
    }
  } else if (targets.is_array() && !targets.empty()) {
    for (const nlohmann::json& target : targets) {
      if (!target.is_string() || target.get<std::string>().empty()) {
        return FieldError(path, "target_modules",
                          "must be a list of module names or a string");
      }
      lora.target_modules.push_back(target.get<std::string>());
    }
    std::sort(lora.target_modules.begin(), lora.target_modules.end());
    lora.target_modules.erase(
        std::unique(lora.target_modules.begin(), lora.target_modules.end()),
        lora.target_modules.end());
  } else {
    return FieldError(path, "target_modules",
                      "must be a non-empty list of module names or a string");
  }
  if (!(lora.dropout >= 0 && lora.dropout < 1)) {
    return FieldError(path, "lora_dropout", "must be in [0, 1)");
  }
  if (json.contains("base_model_name_or_path") &&
      json["base_model_name_or_path"].is_string()) {
    result.base_model = json["base_model_name_or_path"].get<std::string>();
  }
  return result;
}

absl::Status LoadLoraAdapter(const std::string& dir, LlamaForCausalLM& model) {
  if (HasLora(model)) {
    return absl::FailedPreconditionError(
        "the model already has LoRA adapters; merge or remove them first");
  }
  if (model.config().HasFusedCheckpointProjections()) {
    return absl::UnimplementedError(
        "PEFT adapters of models with fused projections (Phi-3's qkv_proj, "
        "gate_up_proj) are not supported");
  }
  ASSIGN_OR_RETURN(PeftLoraAdapterConfig config, ReadLoraAdapterConfig(dir));
  const std::string config_path = absl::StrCat(dir, "/", kConfigFile);
  const std::vector<NamedProjection> projections = model.Projections();

  std::function<bool(const NamedProjection&)> targeted;
  if (!config.pattern.empty()) {
    std::regex pattern;
    try {
      pattern = std::regex(config.pattern, std::regex::ECMAScript);
    } catch (const std::regex_error& error) {
      return FieldError(
          config_path, "target_modules",
          absl::StrCat("is not a regular expression: ", error.what()));
    }
    targeted = [pattern](const NamedProjection& projection) {
      return std::regex_match(projection.path, pattern);
    };
  } else {
    // Every listed name must select some projection (lm_head, embed_tokens
    // and other modules cannot carry Lethe's adapters).
    for (const std::string& target : config.lora.target_modules) {
      const bool found = std::any_of(projections.begin(), projections.end(),
                                     [&](const NamedProjection& p) {
                                       return MatchesTarget(p.path, target);
                                     });
      if (!found) {
        return absl::UnimplementedError(
            absl::StrCat(config_path, ": target module '", target,
                         "' is not a decoder-layer projection (",
                         absl::StrJoin(LoraTargetableModules(), ", "),
                         "); LoRA on other modules is not supported"));
      }
    }
    const std::vector<std::string> targets = config.lora.target_modules;
    targeted = [targets](const NamedProjection& projection) {
      return std::any_of(targets.begin(), targets.end(),
                         [&](const std::string& target) {
                           return MatchesTarget(projection.path, target);
                         });
    };
  }

  const std::string weights_path = absl::StrCat(dir, "/", kWeightsFile);
  if (!std::filesystem::exists(weights_path)) {
    if (std::filesystem::exists(absl::StrCat(dir, "/adapter_model.bin"))) {
      return absl::UnimplementedError(absl::StrCat(
          dir,
          ": adapter_model.bin (pickle) is not supported; save the "
          "adapter with safe_serialization=True"));
    }
    return absl::NotFoundError(absl::StrCat(weights_path, ": no such file"));
  }
  ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> file,
                   SafetensorsFile::Open(weights_path));

  RETURN_IF_ERROR(AttachWhere(model, config.lora, targeted));
  auto fail = [&](absl::Status status) {
    (void)RemoveLora(model);
    return status;
  };
  std::map<std::string, at::Tensor> expected;
  for (const auto& [name, tensor] : LoraParameters(model)) {
    expected[PeftAdapterKey(name)] = tensor;
  }
  if (expected.empty()) {
    return fail(FieldError(
        config_path, "target_modules",
        absl::StrCat("is ", config.pattern, ", which matches no projection")));
  }
  for (const std::string& key : file->names()) {
    if (expected.count(key) == 0) {
      return fail(absl::InvalidArgumentError(absl::StrCat(
          weights_path, ": tensor '", key,
          "' is not an adapter weight of this model for the targets in ",
          config_path)));
    }
  }
  std::vector<std::string> missing;
  for (const auto& [key, tensor] : expected) {
    if (!file->Contains(key)) missing.push_back(key);
  }
  if (!missing.empty()) {
    const size_t shown = std::min<size_t>(missing.size(), 3);
    return fail(absl::InvalidArgumentError(absl::StrCat(
        weights_path, ": ", missing.size(), " adapter tensor(s) that ",
        config_path, " implies are missing, e.g. '",
        absl::StrJoin(missing.begin(), missing.begin() + shown, "', '"), "'")));
  }
  for (const auto& [key, target] : expected) {
    absl::StatusOr<SafetensorsEntry> entry = file->Entry(key);
    if (!entry.ok()) return fail(entry.status());
    if (entry->shape != target.sizes().vec()) {
      return fail(absl::InvalidArgumentError(
          absl::StrCat(weights_path, ": tensor '", key, "' has shape ",
                       ShapeString(entry->shape), " but r = ", config.lora.rank,
                       " and the model imply ", ShapeString(target.sizes()))));
    }
    if (!at::isFloatingType(entry->dtype)) {
      return fail(absl::InvalidArgumentError(
          absl::StrCat(weights_path, ": tensor '", key, "' is ",
                       c10::toString(entry->dtype), ", not floating point")));
    }
    absl::StatusOr<at::Tensor> stored = file->Get(key);
    if (!stored.ok()) return fail(stored.status());
    const absl::Status copied =
        CallTorch("loading LoRA weights", [&, target = target] {
          torch::NoGradGuard no_grad;
          at::Tensor destination = target;
          destination.copy_(*stored);
        });
    if (!copied.ok()) return fail(copied);
  }
  return absl::OkStatus();
}

absl::Status MergeLora(LlamaForCausalLM& model) {
  const auto adapted = Adapted(model);
  if (adapted.empty()) {
    return absl::FailedPreconditionError("the model has no LoRA adapters");
  }
  RETURN_IF_ERROR(CallTorch("merging LoRA adapters", [&] {
    torch::NoGradGuard no_grad;
    for (const auto& [projection, adapter] : adapted) {
      at::Tensor weight = projection.projection->linear->weight;
      const at::ScalarType wide = AdapterDtype(weight.scalar_type());
      const at::Tensor delta = adapter->lora_b()->weight.to(wide).mm(
                                   adapter->lora_a()->weight.to(wide)) *
                               adapter->scaling();
      weight.copy_((weight.to(wide) + delta.to(weight.device()))
                       .to(weight.scalar_type()));
    }
  }));
  return RemoveLora(model);
}

absl::Status RemoveLora(LlamaForCausalLM& model) {
  const auto adapted = Adapted(model);
  if (adapted.empty()) {
    return absl::FailedPreconditionError("the model has no LoRA adapters");
  }
  for (const auto& [projection, adapter] : adapted) Detach(projection);
  return absl::OkStatus();
}

}  // namespace lethe
