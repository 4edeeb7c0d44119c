// Checks Lethe's model against an independent implementation: Hugging
// Face transformers' LlamaForCausalLM (and, where recorded, its Llama 3,
// Qwen2, Mistral, Phi-3, Gemma and Gemma 2 classes).
//
// testdata/hf_tiny_llama/ holds a tiny random model that transformers made
// and saved (config.json, model.safetensors: fp32, 2 layers, 4 query and 2
// key/value heads, rope_theta 500) and the logits transformers computed for
// fixed inputs with eager attention (reference_logits.safetensors, whose
// metadata records the transformers version). tools/device/hf_reference.py
// regenerates them; it needs PyTorch and transformers, which CI lacks. The
// same script writes testdata/hf_tiny_<family>/ for the other families
// (llama3: rope_scaling llama3 and tied embeddings; qwen2: q/k/v biases;
// mistral and phi3: a sliding window shorter than the inputs, phi3's fused
// projections; gemma, gemma2); HfFamilyReferenceTest compares each one that
// is present and skips the others, naming what is missing.
//
// The reverse direction (a checkpoint Lethe writes, loaded by transformers)
// runs on a machine with transformers: WriteLetheCheckpointsForTransformers
// writes the checkpoints (every family) and Lethe's logits when
// LETHE_HF_REVERSE_OUT names a folder, and tools/device/hf_reference_check.sh
// compares them there.
#include <torch/types.h>

#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "libs/files/source_path_test_util.h"
#include "libs/model/hf_checkpoint.h"
#include "libs/model/llama_config.h"
#include "libs/model/llama_model.h"
#include "libs/model/safetensors.h"

namespace lethe {
namespace {

// transformers' fp32 logits and Lethe's agree to 2.4e-6 (5e-6 left-padded)
// here; 1e-4 still catches any real difference in the architecture (reading
// rope_theta as 10000 instead of 500 moves them by 0.55 to 1.6).
constexpr double kTolerance = 1e-4;

std::string DataDir(const std::string& name = "hf_tiny_llama") {
  const std::string relative = "libs/model/testdata/" + name;
  return SourcePath(relative);
}

class HfReferenceTest : public testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<SafetensorsFile>> file =
        SafetensorsFile::Open(DataDir() + "/reference_logits.safetensors");
    ASSERT_TRUE(file.ok()) << file.status();
    reference_ = std::move(*file);
  }

  at::Tensor Reference(const std::string& name) {
    absl::StatusOr<at::Tensor> tensor = reference_->Get(name);
    EXPECT_TRUE(tensor.ok()) << tensor.status();
    return tensor.ok() ? *tensor : at::Tensor();
  }

  std::string Metadata(const std::string& key) {
    auto it = reference_->metadata().find(key);
    return it == reference_->metadata().end() ? "" : it->second;
  }

  std::shared_ptr<LlamaForCausalLM> LoadModel() {
    absl::StatusOr<std::shared_ptr<LlamaForCausalLM>> model =
        LoadLlamaCheckpoint(DataDir(), at::kFloat);
    EXPECT_TRUE(model.ok()) << model.status();
    return model.ok() ? *model : nullptr;
  }

  std::unique_ptr<SafetensorsFile> reference_;
};

// Max |a - b| over the positions where mask is 1 (all, for an undefined
// mask): what a padded query position yields is implementation-defined.
double MaxAbsDiff(const at::Tensor& a, const at::Tensor& b,
                  const at::Tensor& mask = {}) {
  at::Tensor diff = (a.to(at::kDouble) - b.to(at::kDouble)).abs();
  if (mask.defined()) {
    diff = diff.masked_select(mask.to(at::kBool).unsqueeze(-1).expand_as(diff));
  }
  return diff.max().item<double>();
}

void Report(const std::string& what, double diff) {
  std::cout << "[hf_reference] " << what
            << ": max |Lethe - transformers| = " << diff << "\n";
  testing::Test::RecordProperty(what, std::to_string(diff));
}

TEST_F(HfReferenceTest, ConfigReadsWhatTransformersUsed) {
  std::cout << "[hf_reference] reference made by transformers "
            << Metadata("transformers_version") << ", torch "
            << Metadata("torch_version") << "\n";
  absl::StatusOr<LlamaConfig> config =
      ReadLlamaConfig(DataDir() + "/config.json");
  ASSERT_TRUE(config.ok()) << config.status();
  // The metadata holds what transformers' model really ran with (rope_theta
  // read back from its rotary inv_freq), not what its config.json says.
  double rope_theta = 0, rms_norm_eps = 0;
  ASSERT_TRUE(absl::SimpleAtod(Metadata("rope_theta"), &rope_theta));
  ASSERT_TRUE(absl::SimpleAtod(Metadata("rms_norm_eps"), &rms_norm_eps));
  EXPECT_NEAR(config->rope_theta, rope_theta, 1e-6 * rope_theta)
      << "config.json's rope_theta was not read as transformers reads it";
  EXPECT_DOUBLE_EQ(config->rms_norm_eps, rms_norm_eps);
  for (const auto& [key, value] : std::vector<std::pair<std::string, int64_t>>{
           {"vocab_size", config->vocab_size},
           {"hidden_size", config->hidden_size},
           {"intermediate_size", config->intermediate_size},
           {"num_hidden_layers", config->num_hidden_layers},
           {"num_attention_heads", config->num_attention_heads},
           {"num_key_value_heads", config->num_key_value_heads},
       }) {
    EXPECT_EQ(std::to_string(value), Metadata(key)) << key;
  }
  EXPECT_EQ(config->tie_word_embeddings ? "true" : "false",
            Metadata("tie_word_embeddings"));
  // GQA and a non-default theta are what this fixture is for.
  EXPECT_LT(config->num_key_value_heads, config->num_attention_heads);
  EXPECT_NE(config->rope_theta, LlamaConfig().rope_theta);
}

TEST_F(HfReferenceTest, RightPaddedBatchMatchesTransformers) {
  std::shared_ptr<LlamaForCausalLM> model = LoadModel();
  ASSERT_NE(model, nullptr);
  const at::Tensor ids = Reference("right.input_ids");
  const at::Tensor mask = Reference("right.attention_mask");
  const at::Tensor expected = Reference("right.logits_f32");
  torch::NoGradGuard no_grad;
  const at::Tensor logits = model->Forward(ids, mask);
  ASSERT_EQ(logits.sizes(), expected.sizes());
  // The fixture is only a test if its logits are far from uniform.
  EXPECT_GT(expected.std().item<double>(), 0.5);
  const double diff = MaxAbsDiff(logits, expected, mask);
  Report("right_padded_fp32", diff);
  Report("right_padded_vs_fp64",
         MaxAbsDiff(logits, Reference("right.logits_f64"), mask));
  EXPECT_LE(diff, kTolerance);
}

TEST_F(HfReferenceTest, LeftPaddedBatchWithPositionIdsMatchesTransformers) {
  std::shared_ptr<LlamaForCausalLM> model = LoadModel();
  ASSERT_NE(model, nullptr);
  const at::Tensor ids = Reference("left.input_ids");
  const at::Tensor mask = Reference("left.attention_mask");
  const at::Tensor positions = PositionIdsFromMask(mask);
  // transformers was given the same positions.
  EXPECT_TRUE(torch::equal(positions, Reference("left.position_ids")));
  torch::NoGradGuard no_grad;
  const at::Tensor logits = model->Forward(ids, mask, nullptr, positions);
  const double diff = MaxAbsDiff(logits, Reference("left.logits_f32"), mask);
  Report("left_padded_fp32", diff);
  EXPECT_LE(diff, kTolerance);
}

TEST_F(HfReferenceTest, UnmaskedAndIncrementalDecodingMatchTransformers) {
  std::shared_ptr<LlamaForCausalLM> model = LoadModel();
  ASSERT_NE(model, nullptr);
  const at::Tensor ids = Reference("nomask.input_ids");
  const at::Tensor expected = Reference("nomask.logits_f32");
  torch::NoGradGuard no_grad;
  const double diff = MaxAbsDiff(model->Forward(ids), expected);
  Report("unmasked_fp32", diff);
  EXPECT_LE(diff, kTolerance);

  // A prompt of 5 tokens, then one token at a time through the KV cache.
  KvCache cache;
  std::vector<at::Tensor> steps = {
      model->Forward(ids.narrow(1, 0, 5), {}, &cache)};
  for (int64_t t = 5; t < ids.size(1); ++t) {
    steps.push_back(model->Forward(ids.narrow(1, t, 1), {}, &cache));
  }
  const double cached_diff = MaxAbsDiff(torch::cat(steps, 1), expected);
  Report("kv_cache_fp32", cached_diff);
  EXPECT_LE(cached_diff, kTolerance);
}

// The tiny families hf_reference.py records (testdata/hf_tiny_<family>/).
const std::vector<std::string>& RecordedFamilies() {
  static const auto* families = new std::vector<std::string>{
      "llama3", "qwen2", "mistral", "phi3", "gemma", "gemma2"};
  return *families;
}

class HfFamilyReferenceTest : public testing::TestWithParam<std::string> {};

// Right-padded, left-padded (with positions) and unmasked batches, and the
// unmasked one through the KV cache, against transformers' fp32 logits.
TEST_P(HfFamilyReferenceTest, LogitsMatchTransformers) {
  const std::string dir = DataDir("hf_tiny_" + GetParam());
  if (!std::filesystem::exists(dir + "/reference_logits.safetensors")) {
    GTEST_SKIP() << dir << " is not recorded yet: run "
                 << "tools/device/hf_reference_check.sh on a machine with "
                    "transformers and copy its hf_tiny_"
                 << GetParam() << " here";
  }
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> file =
      SafetensorsFile::Open(dir + "/reference_logits.safetensors");
  ASSERT_TRUE(file.ok()) << file.status();
  auto get = [&](const std::string& name) {
    absl::StatusOr<at::Tensor> tensor = (*file)->Get(name);
    EXPECT_TRUE(tensor.ok()) << tensor.status();
    return tensor.ok() ? *tensor : at::Tensor();
  };
  auto metadata = [&](const std::string& key) {
    auto it = (*file)->metadata().find(key);
    return it == (*file)->metadata().end() ? std::string() : it->second;
  };
  std::cout << "[hf_reference] " << GetParam() << ": made by transformers "
            << metadata("transformers_version") << "\n";
  absl::StatusOr<std::shared_ptr<LlamaForCausalLM>> loaded =
      LoadLlamaCheckpoint(dir, at::kFloat);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  LlamaForCausalLM& model = **loaded;
  EXPECT_EQ(model.config().model_type, metadata("model_type"));
  EXPECT_EQ(model.config().tie_word_embeddings ? "true" : "false",
            metadata("tie_word_embeddings"));

  torch::NoGradGuard no_grad;
  const at::Tensor right_mask = get("right.attention_mask");
  const at::Tensor right = get("right.logits_f32");
  EXPECT_GT(right.std().item<double>(), 0.5);
  double diff = MaxAbsDiff(model.Forward(get("right.input_ids"), right_mask),
                           right, right_mask);
  Report(GetParam() + "_right_padded_fp32", diff);
  EXPECT_LE(diff, kTolerance);

  const at::Tensor left_mask = get("left.attention_mask");
  diff = MaxAbsDiff(model.Forward(get("left.input_ids"), left_mask, nullptr,
                                  PositionIdsFromMask(left_mask)),
                    get("left.logits_f32"), left_mask);
  Report(GetParam() + "_left_padded_fp32", diff);
  EXPECT_LE(diff, kTolerance);

  const at::Tensor ids = get("nomask.input_ids");
  const at::Tensor expected = get("nomask.logits_f32");
  diff = MaxAbsDiff(model.Forward(ids), expected);
  Report(GetParam() + "_unmasked_fp32", diff);
  EXPECT_LE(diff, kTolerance);
  KvCache cache;
  std::vector<at::Tensor> steps = {
      model.Forward(ids.narrow(1, 0, 5), {}, &cache)};
  for (int64_t t = 5; t < ids.size(1); ++t) {
    steps.push_back(model.Forward(ids.narrow(1, t, 1), {}, &cache));
  }
  diff = MaxAbsDiff(torch::cat(steps, 1), expected);
  Report(GetParam() + "_kv_cache_fp32", diff);
  EXPECT_LE(diff, kTolerance);
}

INSTANTIATE_TEST_SUITE_P(Families, HfFamilyReferenceTest,
                         testing::ValuesIn(RecordedFamilies()),
                         [](const testing::TestParamInfo<std::string>& info) {
                           return info.param;
                         });

// The checkpoints WriteLetheCheckpointsForTransformers writes: Llama untied
// and tied (as before), and one tiny model of every other family with the
// features that distinguish it.
std::vector<std::pair<std::string, LlamaConfig>> ReverseConfigs() {
  std::vector<std::pair<std::string, LlamaConfig>> configs;
  for (const bool tied : {false, true}) {
    LlamaConfig config;
    config.vocab_size = 64;
    config.hidden_size = 16;
    config.intermediate_size = 40;
    config.num_hidden_layers = 2;
    config.num_attention_heads = 4;
    config.num_key_value_heads = 2;
    config.max_position_embeddings = 64;
    config.rms_norm_eps = 1e-5;
    config.rope_theta = 500.0;
    config.tie_word_embeddings = tied;
    configs.emplace_back(tied ? "tied" : "untied", config);
  }
  const std::string common = R"("vocab_size": 64, "intermediate_size": 40,
      "num_hidden_layers": 3, "num_attention_heads": 4,
      "num_key_value_heads": 2, "max_position_embeddings": 512,
      "rms_norm_eps": 1e-5, "bos_token_id": 1, "eos_token_id": 2)";
  const std::vector<std::pair<std::string, std::string>> families = {
      {"llama3", R"("model_type": "llama", "hidden_size": 32,
          "tie_word_embeddings": true, "rope_theta": 500.0,
          "rope_scaling": {"rope_type": "llama3", "factor": 8.0,
                           "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                           "original_max_position_embeddings": 256})"},
      {"qwen2", R"("model_type": "qwen2", "hidden_size": 16,
          "tie_word_embeddings": true, "rope_theta": 1000000.0,
          "use_sliding_window": false)"},
      {"mistral", R"("model_type": "mistral", "hidden_size": 16,
          "sliding_window": 5)"},
      {"phi3", R"("model_type": "phi3", "hidden_size": 16,
          "original_max_position_embeddings": 512, "sliding_window": 6,
          "pad_token_id": 0)"},
      {"gemma", R"("model_type": "gemma", "hidden_size": 12, "head_dim": 8,
          "hidden_activation": "gelu_pytorch_tanh", "pad_token_id": 0)"},
      {"gemma2", R"("model_type": "gemma2", "hidden_size": 12, "head_dim": 6,
          "hidden_activation": "gelu_pytorch_tanh", "pad_token_id": 0,
          "query_pre_attn_scalar": 6, "sliding_window": 4,
          "attn_logit_softcapping": 5.0, "final_logit_softcapping": 8.0)"},
  };
  for (const auto& [name, fields] : families) {
    absl::StatusOr<LlamaConfig> config =
        ParseLlamaConfig(absl::StrCat("{", common, ", ", fields, "}"), name);
    EXPECT_TRUE(config.ok()) << config.status();
    if (config.ok()) configs.emplace_back(name, *config);
  }
  return configs;
}

// Not a check by itself: with LETHE_HF_REVERSE_OUT set, writes tiny
// checkpoints with Lethe's writer (ReverseConfigs) and Lethe's logits for
// fixed inputs, for tools/device/hf_reference.py --reverse.
TEST(HfReferenceWriterTest, WriteLetheCheckpointsForTransformers) {
  const char* out = std::getenv("LETHE_HF_REVERSE_OUT");
  if (out == nullptr) {
    GTEST_SKIP() << "LETHE_HF_REVERSE_OUT is unset (used by "
                    "tools/device/hf_reference_check.sh)";
  }
  uint64_t seed = 0;
  for (const auto& [name, config] : ReverseConfigs()) {
    torch::manual_seed(++seed);
    LlamaForCausalLM model(config);
    torch::NoGradGuard no_grad;
    for (auto& parameter : model.named_parameters()) {
      at::Tensor noise = torch::randn_like(parameter.value());
      if (parameter.key().find("norm") != std::string::npos) {
        // Gemma's norms scale by 1 + w.
        parameter.value().copy_((config.IsGemmaFamily() ? 0.0 : 1.0) +
                                0.2 * noise);
      } else {
        parameter.value().copy_(0.3 * noise);
      }
    }
    const std::string dir = absl::StrCat(out, "/lethe_", name);
    std::filesystem::remove_all(dir);
    const absl::Status saved = SaveLlamaCheckpoint(model, dir, {});
    ASSERT_TRUE(saved.ok()) << saved;

    const at::Tensor ids = torch::randint(3, config.vocab_size, {2, 12});
    at::Tensor right_mask = torch::ones({2, 12}, at::kLong);
    right_mask[1].narrow(0, 7, 5).fill_(0);
    const at::Tensor right_ids = ids.masked_fill(right_mask.eq(0), 0);
    at::Tensor left_mask = torch::ones({2, 12}, at::kLong);
    left_mask[1].narrow(0, 0, 5).fill_(0);
    const at::Tensor left_ids = ids.masked_fill(left_mask.eq(0), 0);
    const at::Tensor left_positions = PositionIdsFromMask(left_mask);
    const at::Tensor nomask_ids = ids.narrow(0, 0, 1).contiguous();
    const absl::Status written = WriteSafetensors(
        absl::StrCat(out, "/lethe_", name, "_logits.safetensors"),
        {
            {"right.input_ids", right_ids},
            {"right.attention_mask", right_mask},
            {"right.logits", model.Forward(right_ids, right_mask)},
            {"left.input_ids", left_ids},
            {"left.attention_mask", left_mask},
            {"left.position_ids", left_positions},
            {"left.logits",
             model.Forward(left_ids, left_mask, nullptr, left_positions)},
            {"nomask.input_ids", nomask_ids},
            {"nomask.logits", model.Forward(nomask_ids)},
        },
        {{"made_by", "libs/model/hf_reference_test.cc"},
         {"model_type", config.model_type}});
    ASSERT_TRUE(written.ok()) << written;
    std::cout << "[hf_reference] wrote " << dir << "\n";
  }
}

}  // namespace
}  // namespace lethe
