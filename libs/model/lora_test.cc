#include "libs/model/lora.h"

#include <torch/torch.h>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "libs/files/file_io.h"
#include "libs/model/hf_checkpoint.h"
#include "libs/model/llama_model.h"
#include "libs/model/safetensors.h"
#include "libs/model/tiny_llama.h"
#include "nlohmann/json.hpp"

namespace lethe {
namespace {

// Two layers of width 32 (q 4 heads, k/v 2 heads of 8), intermediate 64,
// vocabulary 50, weights redrawn large so outputs depend on them.
std::shared_ptr<LlamaForCausalLM> Base(at::ScalarType dtype = at::kFloat,
                                       uint64_t seed = 7) {
  torch::manual_seed(seed);
  auto model = std::make_shared<LlamaForCausalLM>(TinyLlamaConfig(50));
  RedrawWeights(*model, 0.2);
  model->to(dtype);
  return model;
}

const at::Tensor& Ids() {
  static const at::Tensor* const ids = new at::Tensor(
      torch::tensor({{3, 14, 15, 9, 2, 6}, {5, 3, 5, 8, 9, 7}}, at::kLong));
  return *ids;
}

// Draws every adapter weight (B too) from N(0, stddev), so the adapters
// change the model.
void RandomizeAdapters(LlamaForCausalLM& model, double stddev = 0.3) {
  torch::NoGradGuard no_grad;
  for (auto& [name, tensor] : LoraParameters(model)) {
    tensor.normal_(0.0, stddev);
  }
}

std::string TempDir(const std::string& name) {
  const std::string dir =
      absl::StrCat(std::filesystem::temp_directory_path().string(),
                   "/lora_test_", getpid(), "_", name);
  std::filesystem::remove_all(dir);
  return dir;
}

nlohmann::json ReadJson(const std::string& path) {
  absl::StatusOr<std::string> text = ReadFileToString(path);
  EXPECT_TRUE(text.ok()) << text.status();
  return nlohmann::json::parse(text.ok() ? *text : "{}");
}

void WriteJson(const std::string& path, const nlohmann::json& json) {
  ASSERT_TRUE(WriteFileAtomically(path, json.dump(2)).ok());
}

double MaxDifference(const at::Tensor& a, const at::Tensor& b) {
  return (a.to(at::kDouble) - b.to(at::kDouble)).abs().max().item<double>();
}

TEST(LoraTest, ParametersHavePeftNamesAndShapes) {
  auto model = Base();
  ASSERT_TRUE(AttachLora(*model, {.rank = 4}).ok());
  std::map<std::string, std::vector<int64_t>> adapters;
  for (const auto& parameter : model->named_parameters()) {
    if (parameter.key().find("lora_") != std::string::npos) {
      adapters[parameter.key()] = parameter.value().sizes().vec();
    }
  }
  // PEFT's default targets for Llama: q_proj and v_proj of every layer.
  const std::map<std::string, std::vector<int64_t>> expected = {
      {"model.layers.0.self_attn.q_proj.lora_A.weight", {4, 32}},
      {"model.layers.0.self_attn.q_proj.lora_B.weight", {32, 4}},
      {"model.layers.0.self_attn.v_proj.lora_A.weight", {4, 32}},
      {"model.layers.0.self_attn.v_proj.lora_B.weight", {16, 4}},
      {"model.layers.1.self_attn.q_proj.lora_A.weight", {4, 32}},
      {"model.layers.1.self_attn.q_proj.lora_B.weight", {32, 4}},
      {"model.layers.1.self_attn.v_proj.lora_A.weight", {4, 32}},
      {"model.layers.1.self_attn.v_proj.lora_B.weight", {16, 4}}};
  EXPECT_EQ(adapters, expected);
  // Base weights keep their names.
  EXPECT_EQ(model->named_parameters().contains(
                "model.layers.0.self_attn.q_proj.weight"),
            true);
  EXPECT_EQ(PeftAdapterKey("model.layers.0.self_attn.q_proj.lora_A.weight"),
            "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight");
  const std::vector<std::string> paths = LoraAdaptedModules(*model);
  EXPECT_EQ(paths,
            (std::vector<std::string>{"model.layers.0.self_attn.q_proj",
                                      "model.layers.0.self_attn.v_proj",
                                      "model.layers.1.self_attn.q_proj",
                                      "model.layers.1.self_attn.v_proj"}));
  absl::StatusOr<LoraConfig> attached = AttachedLoraConfig(*model);
  ASSERT_TRUE(attached.ok());
  EXPECT_EQ(attached->rank, 4);
  EXPECT_EQ(attached->alpha, 8);  // PEFT's default.
  EXPECT_DOUBLE_EQ(attached->Scaling(), 2.0);
}

TEST(LoraTest, InitialisationIsPefts) {
  auto model = Base();
  torch::manual_seed(1);
  ASSERT_TRUE(
      AttachLora(*model, {.rank = 64, .target_modules = {"o_proj"}}).ok());
  for (const auto& [name, tensor] : LoraParameters(*model)) {
    if (name.find("lora_B") != std::string::npos) {
      EXPECT_EQ(tensor.abs().max().item<float>(), 0.0f) << name;
      continue;
    }
    // kaiming_uniform_(a = sqrt(5)) over fan_in 32: U(-1/sqrt(32),
    // 1/sqrt(32)), standard deviation bound / sqrt(3).
    const double bound = 1.0 / std::sqrt(32.0);
    EXPECT_LE(tensor.abs().max().item<double>(), bound) << name;
    EXPECT_GT(tensor.abs().max().item<double>(), 0.95 * bound) << name;
    EXPECT_NEAR(tensor.std().item<double>(), bound / std::sqrt(3.0),
                0.1 * bound / std::sqrt(3.0))
        << name;
    EXPECT_EQ(tensor.scalar_type(), at::kFloat);
  }
}

TEST(LoraTest, ZeroBLeavesLogitsExactlyTheBase) {
  auto model = Base();
  torch::NoGradGuard no_grad;
  const at::Tensor base = model->Forward(Ids());
  ASSERT_TRUE(
      AttachLora(*model, {.rank = 4, .target_modules = LoraTargetableModules()})
          .ok());
  EXPECT_TRUE(torch::equal(model->Forward(Ids()), base));
}

TEST(LoraTest, AdaptedLogitsEqualAnIndependentlyMergedModel) {
  auto model = Base(at::kDouble);
  const at::Tensor base = model->Forward(Ids()).detach();
  const LoraConfig config{
      .rank = 3,
      .alpha = 5,
      .target_modules = {"q_proj", "k_proj", "o_proj", "up_proj", "down_proj"}};
  ASSERT_TRUE(AttachLora(*model, config).ok());
  RandomizeAdapters(*model);
  model->eval();
  torch::NoGradGuard no_grad;
  const at::Tensor adapted = model->Forward(Ids());
  EXPECT_GT(MaxDifference(adapted, base), 1e-2);  // The adapters matter.

  // A second base model with W + (alpha / r) B A written in by hand.
  auto merged = Base(at::kDouble);
  auto merged_parameters = merged->named_parameters();
  auto parameters = model->named_parameters();
  for (const std::string& path : LoraAdaptedModules(*model)) {
    const at::Tensor a = parameters[path + ".lora_A.weight"];
    const at::Tensor b = parameters[path + ".lora_B.weight"];
    merged_parameters[path + ".weight"].add_(torch::matmul(b, a) * (5.0 / 3.0));
  }
  EXPECT_LT(MaxDifference(merged->Forward(Ids()), adapted), 1e-12);

  // MergeLora does the same and removes the adapters.
  ASSERT_TRUE(MergeLora(*model).ok());
  EXPECT_FALSE(HasLora(*model));
  EXPECT_LT(MaxDifference(model->Forward(Ids()), adapted), 1e-12);
  for (const auto& parameter : model->named_parameters()) {
    EXPECT_EQ(parameter.key().find("lora"), std::string::npos);
  }
}

TEST(LoraTest, DisabledAdaptersGiveTheBaseLogits) {
  auto model = Base();
  torch::NoGradGuard no_grad;
  const at::Tensor base = model->Forward(Ids());
  ASSERT_TRUE(AttachLora(*model, {.rank = 2}).ok());
  RandomizeAdapters(*model);
  const at::Tensor adapted = model->Forward(Ids());
  ASSERT_GT(MaxDifference(adapted, base), 1e-3);
  {
    ScopedLoraDisabled reference(*model);
    EXPECT_FALSE(LoraEnabled(*model));
    EXPECT_TRUE(torch::equal(model->Forward(Ids()), base));
  }
  EXPECT_TRUE(LoraEnabled(*model));
  EXPECT_TRUE(torch::equal(model->Forward(Ids()), adapted));
  SetLoraEnabled(*model, false);
  EXPECT_TRUE(torch::equal(model->Forward(Ids()), base));
}

TEST(LoraTest, OnlyAdaptersGetGradientsAfterFreezing) {
  auto model = Base();
  ASSERT_TRUE(AttachLora(*model, {.rank = 2}).ok());
  const std::vector<at::Tensor> trainable = FreezeAllButLora(*model);
  const auto named = LoraParameters(*model);
  ASSERT_EQ(trainable.size(), named.size());
  for (size_t i = 0; i < trainable.size(); ++i) {
    EXPECT_TRUE(trainable[i].is_same(named[i].second));
  }
  model->Forward(Ids()).pow(2).sum().backward();
  for (const auto& parameter : model->named_parameters()) {
    const bool adapter = parameter.key().find(".lora_") != std::string::npos;
    EXPECT_EQ(parameter.value().requires_grad(), adapter) << parameter.key();
    EXPECT_EQ(parameter.value().grad().defined(), adapter) << parameter.key();
  }
  // B starts at zero, so A's gradient is zero and B's is not.
  EXPECT_EQ(named[0].second.grad().abs().max().item<float>(), 0.0f);
  EXPECT_GT(named[1].second.grad().abs().max().item<float>(), 0.0f);
}

TEST(LoraTest, AdapterGradientsMatchFiniteDifferences) {
  auto model = Base(at::kDouble);
  ASSERT_TRUE(AttachLora(*model, {.rank = 2,
                                  .alpha = 3,
                                  .target_modules = {"v_proj", "gate_proj"}})
                  .ok());
  RandomizeAdapters(*model);
  FreezeAllButLora(*model);
  torch::manual_seed(2);
  const at::Tensor probe = torch::randn({2, 6, 50}, at::kDouble);
  auto loss = [&] { return (model->Forward(Ids()) * probe).sum(); };
  loss().backward();
  for (const auto& [name, parameter] : LoraParameters(*model)) {
    const at::Tensor flat = parameter.view({-1});
    for (int64_t index : {int64_t{0}, flat.numel() / 2, flat.numel() - 1}) {
      const double analytic = parameter.grad().view({-1})[index].item<double>();
      torch::NoGradGuard no_grad;
      const double original = flat[index].item<double>();
      constexpr double kStep = 1e-6;
      flat[index] = original + kStep;
      const double plus = loss().item<double>();
      flat[index] = original - kStep;
      const double minus = loss().item<double>();
      flat[index] = original;
      const double numeric = (plus - minus) / (2 * kStep);
      EXPECT_NEAR(analytic, numeric, 1e-7 + 1e-6 * std::abs(numeric))
          << name << "[" << index << "]";
    }
  }
}

TEST(LoraTest, Bf16BaseKeepsFp32AdaptersAndMergesIntoBf16) {
  auto model = Base(at::kBFloat16);
  ASSERT_TRUE(AttachLora(*model, {.rank = 4}).ok());
  RandomizeAdapters(*model, 0.05);
  for (const auto& [name, tensor] : LoraParameters(*model)) {
    EXPECT_EQ(tensor.scalar_type(), at::kFloat) << name;
  }
  torch::NoGradGuard no_grad;
  const at::Tensor adapted = model->Forward(Ids());
  EXPECT_EQ(adapted.scalar_type(), at::kBFloat16);
  ASSERT_TRUE(MergeLora(*model).ok());
  EXPECT_EQ(model->named_parameters()["model.layers.0.self_attn.q_proj.weight"]
                .scalar_type(),
            at::kBFloat16);
  // Rounding W + s B A to bf16 moves the logits by bf16's precision only.
  EXPECT_LT(MaxDifference(model->Forward(Ids()), adapted),
            0.05 * adapted.abs().max().item<float>());
}

TEST(LoraTest, SaveWritesPeftsFilesAndLoadRestoresTheAdapter) {
  auto model = Base();
  ASSERT_TRUE(
      AttachLora(*model, {.rank = 4,
                          .alpha = 16,
                          .dropout = 0.05,
                          .target_modules = {"v_proj", "q_proj", "down_proj"}})
          .ok());
  RandomizeAdapters(*model);
  model->eval();
  const std::string dir = TempDir("round_trip");
  ASSERT_TRUE(
      SaveLoraAdapter(*model, dir, {.base_model = "/models/tiny"}).ok());

  const nlohmann::json config = ReadJson(dir + "/adapter_config.json");
  EXPECT_EQ(config["peft_type"], "LORA");
  EXPECT_EQ(config["task_type"], "CAUSAL_LM");
  EXPECT_EQ(config["r"], 4);
  EXPECT_TRUE(config["lora_alpha"].is_number_integer());
  EXPECT_EQ(config["lora_alpha"], 16);
  EXPECT_DOUBLE_EQ(config["lora_dropout"].get<double>(), 0.05);
  EXPECT_EQ(config["target_modules"],
            nlohmann::json({"down_proj", "q_proj", "v_proj"}));
  EXPECT_EQ(config["bias"], "none");
  EXPECT_EQ(config["fan_in_fan_out"], false);
  EXPECT_EQ(config["inference_mode"], true);
  EXPECT_EQ(config["use_dora"], false);
  EXPECT_EQ(config["use_rslora"], false);
  EXPECT_TRUE(config["modules_to_save"].is_null());
  EXPECT_EQ(config["base_model_name_or_path"], "/models/tiny");

  absl::StatusOr<std::unique_ptr<SafetensorsFile>> file =
      SafetensorsFile::Open(dir + "/adapter_model.safetensors");
  ASSERT_TRUE(file.ok()) << file.status();
  const std::vector<std::string>& names = (*file)->names();
  const std::set<std::string> keys(names.begin(), names.end());
  EXPECT_EQ(keys.size(), 2u * 3u * 2u);
  for (const std::string key :
       {"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight",
        "base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight",
        "base_model.model.model.layers.1.mlp.down_proj.lora_A.weight"}) {
    EXPECT_EQ(keys.count(key), 1u) << key;
  }
  EXPECT_EQ((*file)->metadata().at("format"), "pt");

  torch::NoGradGuard no_grad;
  const at::Tensor expected = model->Forward(Ids());
  auto loaded = Base();
  ASSERT_TRUE(LoadLoraAdapter(dir, *loaded).ok());
  loaded->eval();
  EXPECT_TRUE(torch::equal(loaded->Forward(Ids()), expected));
  absl::StatusOr<LoraConfig> attached = AttachedLoraConfig(*loaded);
  ASSERT_TRUE(attached.ok());
  EXPECT_EQ(attached->rank, 4);
  EXPECT_EQ(attached->alpha, 16);
  EXPECT_DOUBLE_EQ(attached->dropout, 0.05);
  std::filesystem::remove_all(dir);
}

// An adapter written by hand in PEFT's layout (not by SaveLoraAdapter):
// the keys and fields PEFT's checkpoint-format guide documents.
TEST(LoraTest, LoadsAHandWrittenPeftAdapter) {
  const std::string dir = TempDir("hand_written");
  std::filesystem::create_directories(dir);
  torch::manual_seed(4);
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  std::map<std::string, std::pair<at::Tensor, at::Tensor>> factors;
  for (int layer = 0; layer < 2; ++layer) {
    const std::string path =
        absl::StrCat("model.layers.", layer, ".mlp.up_proj");
    const at::Tensor a = torch::randn({2, 32}) * 0.3;
    const at::Tensor b = torch::randn({64, 2}) * 0.3;
    factors[path] = {a, b};
    tensors.push_back({"base_model.model." + path + ".lora_A.weight", a});
    tensors.push_back({"base_model.model." + path + ".lora_B.weight",
                       b.to(at::kBFloat16)});  // Any float dtype loads.
  }
  ASSERT_TRUE(WriteSafetensors(dir + "/adapter_model.safetensors", tensors,
                               {{"format", "pt"}})
                  .ok());
  WriteJson(dir + "/adapter_config.json", {{"peft_type", "LORA"},
                                           {"r", 2},
                                           {"lora_alpha", 6},
                                           {"target_modules", {"up_proj"}},
                                           {"task_type", "CAUSAL_LM"}});
  auto model = Base();
  ASSERT_TRUE(LoadLoraAdapter(dir, *model).ok());
  torch::NoGradGuard no_grad;
  const at::Tensor adapted = model->Forward(Ids());
  auto merged = Base();
  auto parameters = merged->named_parameters();
  for (const auto& [path, ab] : factors) {
    parameters[path + ".weight"].add_(
        torch::matmul(ab.second.to(at::kBFloat16).to(at::kFloat), ab.first) *
        3.0);
  }
  EXPECT_LT(MaxDifference(merged->Forward(Ids()), adapted), 1e-4);
  std::filesystem::remove_all(dir);
}

TEST(LoraTest, RegexAndAllLinearTargetsLoadAndSaveBack) {
  auto model = Base();
  ASSERT_TRUE(
      AttachLora(*model, {.rank = 2, .target_modules = LoraTargetableModules()})
          .ok());
  RandomizeAdapters(*model);
  const std::string dir = TempDir("all_linear");
  ASSERT_TRUE(SaveLoraAdapter(*model, dir).ok());
  nlohmann::json config = ReadJson(dir + "/adapter_config.json");
  config["target_modules"] = "all-linear";
  WriteJson(dir + "/adapter_config.json", config);
  auto all_linear = Base();
  ASSERT_TRUE(LoadLoraAdapter(dir, *all_linear).ok());
  EXPECT_EQ(LoraAdaptedModules(*all_linear).size(), 14u);

  // A pattern selecting layer 1's attention output only: the file may then
  // hold only those two tensors.
  auto one = Base();
  ASSERT_TRUE(AttachLora(*one, {.rank = 2, .target_modules = {"o_proj"}}).ok());
  RandomizeAdapters(*one);
  const std::string layer_dir = TempDir("pattern");
  ASSERT_TRUE(SaveLoraAdapter(*one, layer_dir).ok());
  std::vector<std::pair<std::string, at::Tensor>> kept;
  for (const auto& [name, tensor] : LoraParameters(*one)) {
    if (name.find("layers.1.") != std::string::npos) {
      kept.push_back({PeftAdapterKey(name), tensor.detach()});
    }
  }
  ASSERT_TRUE(WriteSafetensors(layer_dir + "/adapter_model.safetensors", kept,
                               {{"format", "pt"}})
                  .ok());
  config = ReadJson(layer_dir + "/adapter_config.json");
  config["target_modules"] = R"(.*layers\.1\.self_attn\.o_proj)";
  WriteJson(layer_dir + "/adapter_config.json", config);
  auto pattern = Base();
  ASSERT_TRUE(LoadLoraAdapter(layer_dir, *pattern).ok());
  EXPECT_EQ(LoraAdaptedModules(*pattern),
            std::vector<std::string>{"model.layers.1.self_attn.o_proj"});
  // Saved back as a pattern naming exactly that projection.
  const std::string again = TempDir("pattern_again");
  ASSERT_TRUE(SaveLoraAdapter(*pattern, again).ok());
  EXPECT_TRUE(
      ReadJson(again + "/adapter_config.json")["target_modules"].is_string());
  auto reloaded = Base();
  ASSERT_TRUE(LoadLoraAdapter(again, *reloaded).ok());
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(torch::equal(reloaded->Forward(Ids()), pattern->Forward(Ids())));
  for (const std::string& d : {dir, layer_dir, again}) {
    std::filesystem::remove_all(d);
  }
}

// Saves a valid adapter (q_proj, v_proj, rank 2) and returns its directory.
std::string SavedAdapter(const std::string& name) {
  auto model = Base();
  EXPECT_TRUE(AttachLora(*model, {.rank = 2}).ok());
  const std::string dir = TempDir(name);
  EXPECT_TRUE(SaveLoraAdapter(*model, dir).ok());
  return dir;
}

absl::Status LoadInto(const std::string& dir, LlamaForCausalLM& model) {
  const absl::Status status = LoadLoraAdapter(dir, model);
  EXPECT_FALSE(HasLora(model)) << "a failed load leaves no adapters";
  return status;
}

void ExpectError(const absl::Status& status, absl::StatusCode code,
                 const std::vector<std::string>& fragments) {
  EXPECT_EQ(status.code(), code) << status;
  for (const std::string& fragment : fragments) {
    EXPECT_NE(std::string(status.message()).find(fragment), std::string::npos)
        << status << " should mention " << fragment;
  }
}

TEST(LoraTest, MalformedAdaptersAreRefusedNamingTheProblem) {
  const std::string weights_key =
      "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight";
  {  // A tensor of the wrong shape.
    const std::string dir = SavedAdapter("wrong_shape");
    std::vector<std::pair<std::string, at::Tensor>> tensors;
    auto file = SafetensorsFile::Open(dir + "/adapter_model.safetensors");
    ASSERT_TRUE(file.ok());
    for (const std::string& name : (*file)->names()) {
      at::Tensor tensor = *(*file)->Get(name);
      if (name == weights_key) tensor = torch::zeros({3, 32});
      tensors.push_back({name, tensor.clone()});
    }
    file->reset();
    ASSERT_TRUE(
        WriteSafetensors(dir + "/adapter_model.safetensors", tensors).ok());
    auto model = Base();
    ExpectError(
        LoadInto(dir, *model), absl::StatusCode::kInvalidArgument,
        {weights_key, "[3, 32]", "[2, 32]", "adapter_model.safetensors"});
    std::filesystem::remove_all(dir);
  }
  {  // A key that is no adapter of the configured targets.
    const std::string dir = SavedAdapter("unknown_key");
    std::vector<std::pair<std::string, at::Tensor>> tensors;
    auto file = SafetensorsFile::Open(dir + "/adapter_model.safetensors");
    ASSERT_TRUE(file.ok());
    for (const std::string& name : (*file)->names()) {
      tensors.push_back({name, (*file)->Get(name)->clone()});
    }
    file->reset();
    const std::string extra =
        "base_model.model.model.layers.0.self_attn.k_proj.lora_A.weight";
    tensors.push_back({extra, torch::zeros({2, 32})});
    ASSERT_TRUE(
        WriteSafetensors(dir + "/adapter_model.safetensors", tensors).ok());
    auto model = Base();
    ExpectError(LoadInto(dir, *model), absl::StatusCode::kInvalidArgument,
                {extra});
    std::filesystem::remove_all(dir);
  }
  {  // A missing tensor.
    const std::string dir = SavedAdapter("missing_key");
    std::vector<std::pair<std::string, at::Tensor>> tensors;
    auto file = SafetensorsFile::Open(dir + "/adapter_model.safetensors");
    ASSERT_TRUE(file.ok());
    for (const std::string& name : (*file)->names()) {
      if (name != weights_key) {
        tensors.push_back({name, (*file)->Get(name)->clone()});
      }
    }
    file->reset();
    ASSERT_TRUE(
        WriteSafetensors(dir + "/adapter_model.safetensors", tensors).ok());
    auto model = Base();
    ExpectError(LoadInto(dir, *model), absl::StatusCode::kInvalidArgument,
                {weights_key, "missing"});
    std::filesystem::remove_all(dir);
  }
  {  // Config fields: missing, wrong, unsupported.
    const std::string dir = SavedAdapter("config");
    const nlohmann::json good = ReadJson(dir + "/adapter_config.json");
    struct Case {
      std::function<void(nlohmann::json&)> edit;
      absl::StatusCode code;
      std::vector<std::string> fragments;
    };
    const std::vector<Case> cases = {
        {[](nlohmann::json& c) { c.erase("r"); },
         absl::StatusCode::kInvalidArgument,
         {"'r'", "required"}},
        {[](nlohmann::json& c) { c.erase("target_modules"); },
         absl::StatusCode::kInvalidArgument,
         {"'target_modules'"}},
        {[](nlohmann::json& c) { c.erase("lora_alpha"); },
         absl::StatusCode::kInvalidArgument,
         {"'lora_alpha'"}},
        {[](nlohmann::json& c) { c["peft_type"] = "IA3"; },
         absl::StatusCode::kInvalidArgument,
         {"'peft_type'", "IA3"}},
        {[](nlohmann::json& c) { c["r"] = 3; },
         absl::StatusCode::kInvalidArgument,
         {"r = 3", "[3, 32]"}},
        {[](nlohmann::json& c) { c["use_dora"] = true; },
         absl::StatusCode::kUnimplemented,
         {"'use_dora'", "DoRA"}},
        {[](nlohmann::json& c) { c["bias"] = "all"; },
         absl::StatusCode::kUnimplemented,
         {"'bias'"}},
        {[](nlohmann::json& c) { c["modules_to_save"] = {"lm_head"}; },
         absl::StatusCode::kUnimplemented,
         {"'modules_to_save'"}},
        {[](nlohmann::json& c) {
           c["target_modules"] = {"q_proj", "lm_head"};
         },
         absl::StatusCode::kUnimplemented,
         {"'lm_head'"}},
        {[](nlohmann::json& c) { c["target_modules"] = {"q_proj"}; },
         absl::StatusCode::kInvalidArgument,
         {"v_proj.lora_A.weight"}},
    };
    for (size_t i = 0; i < cases.size(); ++i) {
      nlohmann::json edited = good;
      cases[i].edit(edited);
      WriteJson(dir + "/adapter_config.json", edited);
      auto model = Base();
      SCOPED_TRACE(absl::StrCat("case ", i, ": ", edited.dump()));
      ExpectError(LoadInto(dir, *model), cases[i].code, cases[i].fragments);
    }
    ASSERT_TRUE(
        WriteFileAtomically(dir + "/adapter_config.json", "{ not json").ok());
    auto model = Base();
    ExpectError(LoadInto(dir, *model), absl::StatusCode::kInvalidArgument,
                {"adapter_config.json"});
    std::filesystem::remove(dir + "/adapter_config.json");
    ExpectError(LoadInto(dir, *model), absl::StatusCode::kNotFound,
                {"adapter_config.json"});
    std::filesystem::remove_all(dir);
  }
}

TEST(LoraTest, ConfigValidationAndPreconditions) {
  EXPECT_FALSE(ValidateLoraConfig({.rank = 0}).ok());
  EXPECT_FALSE(ValidateLoraConfig({.rank = 4, .alpha = 0}).ok());
  EXPECT_FALSE(ValidateLoraConfig({.rank = 4, .dropout = 1.0}).ok());
  EXPECT_FALSE(
      ValidateLoraConfig({.rank = 4, .target_modules = {"lm_head"}}).ok());
  EXPECT_FALSE(
      ValidateLoraConfig({.rank = 4, .target_modules = {"q_proj", "q_proj"}})
          .ok());
  EXPECT_TRUE(ValidateLoraConfig({.rank = 4}).ok());
  EXPECT_DOUBLE_EQ((LoraConfig{.rank = 16, .alpha = 32}).Scaling(), 2.0);
  EXPECT_DOUBLE_EQ(
      (LoraConfig{.rank = 16, .alpha = 32, .use_rslora = true}).Scaling(), 8.0);

  auto model = Base();
  EXPECT_EQ(MergeLora(*model).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(SaveLoraAdapter(*model, TempDir("none")).code(),
            absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(AttachLora(*model, {.rank = 2}).ok());
  EXPECT_EQ(AttachLora(*model, {.rank = 2}).code(),
            absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(RemoveLora(*model).ok());
  EXPECT_FALSE(HasLora(*model));
  EXPECT_TRUE(AttachLora(*model, {.rank = 2}).ok());
}

TEST(LoraTest, MergedModelSavesAsAPlainCheckpoint) {
  auto model = Base();
  ASSERT_TRUE(AttachLora(*model, {.rank = 2}).ok());
  RandomizeAdapters(*model);
  const std::string dir = TempDir("merged");
  const absl::Status refused = SaveLlamaCheckpoint(*model, dir, {});
  ExpectError(refused, absl::StatusCode::kFailedPrecondition,
              {"LoRA", "MergeLora"});
  at::Tensor adapted;
  {
    torch::NoGradGuard no_grad;
    adapted = model->Forward(Ids());
  }
  // Base weights load into an adapted model, leaving the adapters.
  auto base = Base();
  ASSERT_TRUE(SaveLlamaCheckpoint(*base, dir, {}).ok());
  ASSERT_TRUE(LoadLlamaWeights(dir, *model).ok());
  EXPECT_TRUE(HasLora(*model));

  ASSERT_TRUE(MergeLora(*model).ok());
  ASSERT_TRUE(SaveLlamaCheckpoint(*model, dir, {}).ok());
  absl::StatusOr<std::shared_ptr<LlamaForCausalLM>> loaded =
      LoadLlamaCheckpoint(dir);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  torch::NoGradGuard no_grad;
  EXPECT_LT(MaxDifference((*loaded)->Forward(Ids()), adapted), 1e-5);
  std::filesystem::remove_all(dir);
}

// Phi-3 checkpoints fuse q/k/v and gate/up: adapters attach, train and
// merge on the model's split projections, and the merged model saves fused;
// PEFT files (whose names would be the fused modules') are refused.
TEST(LoraTest, Phi3MergesButRefusesPeftFiles) {
  LlamaConfig config = TinyLlamaConfig(50);
  config.model_type = "phi3";
  torch::manual_seed(3);
  auto model = std::make_shared<LlamaForCausalLM>(config);
  RedrawWeights(*model, 0.2);
  ASSERT_TRUE(
      AttachLora(*model, {.rank = 2, .target_modules = {"k_proj"}}).ok());
  RandomizeAdapters(*model);
  const std::string dir = TempDir("phi3");
  EXPECT_EQ(SaveLoraAdapter(*model, dir).code(),
            absl::StatusCode::kUnimplemented);
  at::Tensor adapted;
  {
    torch::NoGradGuard no_grad;
    adapted = model->Forward(Ids());
  }
  ASSERT_TRUE(MergeLora(*model).ok());
  ASSERT_TRUE(SaveLlamaCheckpoint(*model, dir, {}).ok());
  auto file = SafetensorsFile::Open(dir + "/model.safetensors");
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_TRUE((*file)->Contains("model.layers.0.self_attn.qkv_proj.weight"));
  absl::StatusOr<std::shared_ptr<LlamaForCausalLM>> loaded =
      LoadLlamaCheckpoint(dir);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  torch::NoGradGuard no_grad;
  EXPECT_LT(MaxDifference((*loaded)->Forward(Ids()), adapted), 1e-5);
  std::filesystem::remove_all(dir);
}

// Activation checkpointing with adapters (and their dropout, in training
// mode): the same logits and gradients as without it, bit for bit.
TEST(LoraTest, ActivationCheckpointingKeepsAdapterGradientsBitwise) {
  auto run = [](bool checkpointing) {
    auto model = Base();
    torch::manual_seed(9);
    EXPECT_TRUE(AttachLora(*model, {.rank = 4,
                                    .alpha = 16,
                                    .dropout = 0.3,
                                    .target_modules = LoraTargetableModules()})
                    .ok());
    RandomizeAdapters(*model, 0.1);
    FreezeAllButLora(*model);
    model->SetActivationCheckpointing(checkpointing);
    torch::manual_seed(21);
    at::Tensor logits = model->Forward(Ids());
    (logits * logits).sum().backward();
    const at::Tensor after = torch::rand({4});  // The RNG stream after it.
    std::map<std::string, at::Tensor> grads;
    for (const auto& [name, tensor] : LoraParameters(*model)) {
      grads[name] = tensor.grad();
    }
    return std::make_tuple(logits.detach(), grads, after);
  };
  const auto [plain_logits, plain_grads, plain_after] = run(false);
  const auto [logits, grads, after] = run(true);
  EXPECT_TRUE(torch::equal(plain_logits, logits));
  EXPECT_TRUE(torch::equal(plain_after, after));
  ASSERT_EQ(plain_grads.size(), 2u * 7u * 2u);
  for (const auto& [name, grad] : plain_grads) {
    ASSERT_TRUE(grad.defined()) << name;
    EXPECT_TRUE(torch::equal(grad, grads.at(name))) << name;
  }
}

}  // namespace
}  // namespace lethe
