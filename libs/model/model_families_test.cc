// Checks the Hugging Face families beyond Llama 2 (llama3 rotary scaling,
// Qwen2, Mistral, Phi-3, Gemma, Gemma 2) against computations written here
// independently of llama_model.cc: a plain-ops forward pass (loops over heads,
// cos/sin from std::cos, masks from explicit index comparisons, every
// family's switch set by hand from transformers' modeling code rather than
// read from LlamaConfig's accessors), literal rotary frequencies derived by
// hand from transformers' _compute_llama3_parameters, and checkpoints whose
// tensors the test builds itself. Models run in fp64 here, so any difference
// in semantics shows far above rounding.
//
// What this cannot catch is a misreading of transformers shared by the test
// and the model; tools/device/hf_reference.py records transformers' own
// logits for tiny models of each family when a machine with transformers is
// available (hf_reference_test reads them).
#include <torch/types.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "libs/model/hf_checkpoint.h"
#include "libs/model/llama_config.h"
#include "libs/model/llama_model.h"
#include "libs/model/safetensors.h"
#include "nlohmann/json.hpp"

namespace lethe {
namespace {

using Weights = std::map<std::string, at::Tensor>;

LlamaConfig Parse(const std::string& json) {
  absl::StatusOr<LlamaConfig> config = ParseLlamaConfig(json, "test.json");
  EXPECT_TRUE(config.ok()) << config.status();
  return config.ok() ? *config : LlamaConfig();
}

// A model of `config` in fp64 with every weight redrawn: matrices and biases
// from N(0, 0.3), norm weights near their neutral value (1, or 0 for Gemma's
// 1 + w) but not at it, so a norm applied the wrong way shows.
std::shared_ptr<LlamaForCausalLM> RandomModel(const LlamaConfig& config,
                                              uint64_t seed) {
  torch::manual_seed(seed);
  auto model = std::make_shared<LlamaForCausalLM>(config);
  model->to(at::kDouble);
  torch::NoGradGuard no_grad;
  for (auto& parameter : model->named_parameters()) {
    at::Tensor noise = torch::randn_like(parameter.value());
    if (parameter.key().find("norm") != std::string::npos) {
      parameter.value().copy_((config.IsGemmaFamily() ? 0.0 : 1.0) +
                              0.2 * noise);
    } else {
      parameter.value().copy_(0.3 * noise);
    }
  }
  return model;
}

Weights WeightsOf(LlamaForCausalLM& model) {
  Weights weights;
  for (const auto& parameter : model.named_parameters()) {
    weights[parameter.key()] = parameter.value().detach().clone();
  }
  return weights;
}

// ---------------------------------------------------------------------------
// The plain-ops reference.

// What transformers' modeling code does for one family, written out by each
// test.
struct Reference {
  int64_t layers = 0;
  int64_t heads = 0;
  int64_t kv_heads = 0;
  int64_t head_dim = 0;
  double eps = 1e-6;
  std::vector<double> inverse_frequencies;
  std::string activation = "silu";
  // GemmaRMSNorm (x_normalized * (1 + w)) and the sqrt(hidden) embedding
  // scale.
  bool gemma = false;
  // Gemma 2's post-attention and pre/post-feedforward norms.
  bool sandwich = false;
  // Attention scores are multiplied by this.
  double score_scale = 0;
  std::optional<double> attention_softcap;
  std::optional<double> final_softcap;
  // Per layer: keys within this many positions (0: no window).
  std::vector<int64_t> windows;
  bool tied = false;
};

std::vector<double> DefaultFrequencies(int64_t head_dim, double theta) {
  std::vector<double> frequencies;
  for (int64_t i = 0; i < head_dim; i += 2) {
    frequencies.push_back(1.0 /
                          std::pow(theta, static_cast<double>(i) / head_dim));
  }
  return frequencies;
}

at::Tensor Norm(const at::Tensor& x, const at::Tensor& weight, double eps,
                bool gemma) {
  const at::Tensor normalized = x / torch::sqrt((x * x).mean(-1, true) + eps);
  return gemma ? normalized * (weight + 1.0) : normalized * weight;
}

at::Tensor Linear(const Weights& weights, const std::string& name,
                  const at::Tensor& x) {
  at::Tensor y = torch::matmul(x, weights.at(name + ".weight").t());
  auto bias = weights.find(name + ".bias");
  if (bias != weights.end()) y = y + bias->second;
  return y;
}

at::Tensor Activation(const std::string& name, const at::Tensor& x) {
  if (name == "silu") return x / (1.0 + torch::exp(-x));
  if (name == "gelu") return 0.5 * x * (1.0 + torch::erf(x / std::sqrt(2.0)));
  EXPECT_EQ(name, "gelu_pytorch_tanh");
  return 0.5 * x *
         (1.0 +
          torch::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
}

// Rotates v [T, d] at positions 0..T-1: pairs (i, i + d/2) rotated by
// position * frequency[i] (transformers' rotate_half convention).
at::Tensor Rotate(const at::Tensor& v, const std::vector<double>& frequencies) {
  const int64_t length = v.size(0), half = v.size(1) / 2;
  at::Tensor out = v.clone();
  for (int64_t t = 0; t < length; ++t) {
    for (int64_t i = 0; i < half; ++i) {
      const double angle = t * frequencies[i];
      const double a = v[t][i].item<double>(),
                   b = v[t][i + half].item<double>();
      out[t][i] = a * std::cos(angle) - b * std::sin(angle);
      out[t][i + half] = b * std::cos(angle) + a * std::sin(angle);
    }
  }
  return out;
}

at::Tensor Softcap(const at::Tensor& x, std::optional<double> cap) {
  return cap.has_value() ? torch::tanh(x / *cap) * *cap : x;
}

at::Tensor ReferenceAttention(const Weights& weights, const Reference& ref,
                              const std::string& prefix, const at::Tensor& x,
                              int64_t window) {
  const int64_t length = x.size(0), d = ref.head_dim;
  const at::Tensor q = Linear(weights, prefix + "q_proj", x);
  const at::Tensor k = Linear(weights, prefix + "k_proj", x);
  const at::Tensor v = Linear(weights, prefix + "v_proj", x);
  std::vector<at::Tensor> outputs;
  for (int64_t h = 0; h < ref.heads; ++h) {
    const int64_t g = h / (ref.heads / ref.kv_heads);  // Its key/value head.
    const at::Tensor qh =
        Rotate(q.narrow(1, h * d, d), ref.inverse_frequencies);
    const at::Tensor kh =
        Rotate(k.narrow(1, g * d, d), ref.inverse_frequencies);
    const at::Tensor vh = v.narrow(1, g * d, d);
    at::Tensor scores = Softcap(torch::matmul(qh, kh.t()) * ref.score_scale,
                                ref.attention_softcap);
    at::Tensor probabilities = torch::zeros_like(scores);
    for (int64_t t = 0; t < length; ++t) {
      double max = -1e300;
      for (int64_t s = 0; s <= t; ++s) {
        if (window > 0 && t - s >= window) continue;
        max = std::max(max, scores[t][s].item<double>());
      }
      double total = 0;
      for (int64_t s = 0; s <= t; ++s) {
        if (window > 0 && t - s >= window) continue;
        total += std::exp(scores[t][s].item<double>() - max);
      }
      for (int64_t s = 0; s <= t; ++s) {
        if (window > 0 && t - s >= window) continue;
        probabilities[t][s] =
            std::exp(scores[t][s].item<double>() - max) / total;
      }
    }
    outputs.push_back(torch::matmul(probabilities, vh));
  }
  return Linear(weights, prefix + "o_proj", torch::cat(outputs, 1));
}

// Logits [T, vocab] for one unpadded sequence.
at::Tensor ReferenceLogits(const Weights& weights, const Reference& ref,
                           const std::vector<int64_t>& ids) {
  const at::Tensor embedding = weights.at("model.embed_tokens.weight");
  at::Tensor x = embedding.index_select(0, torch::tensor(ids, at::kLong));
  if (ref.gemma) x = x * std::sqrt(static_cast<double>(embedding.size(1)));
  for (int64_t layer = 0; layer < ref.layers; ++layer) {
    const std::string p = absl::StrCat("model.layers.", layer, ".");
    auto norm = [&](const std::string& name, const at::Tensor& input) {
      return Norm(input, weights.at(p + name + ".weight"), ref.eps, ref.gemma);
    };
    const at::Tensor attended =
        ReferenceAttention(weights, ref, p + "self_attn.",
                           norm("input_layernorm", x), ref.windows[layer]);
    auto mlp = [&](const at::Tensor& input) {
      return Linear(weights, p + "mlp.down_proj",
                    Activation(ref.activation,
                               Linear(weights, p + "mlp.gate_proj", input)) *
                        Linear(weights, p + "mlp.up_proj", input));
    };
    if (ref.sandwich) {
      x = x + norm("post_attention_layernorm", attended);
      x = x + norm("post_feedforward_layernorm",
                   mlp(norm("pre_feedforward_layernorm", x)));
    } else {
      x = x + attended;
      x = x + mlp(norm("post_attention_layernorm", x));
    }
  }
  x = Norm(x, weights.at("model.norm.weight"), ref.eps, ref.gemma);
  const at::Tensor head = ref.tied ? embedding : weights.at("lm_head.weight");
  return Softcap(torch::matmul(x, head.t()), ref.final_softcap);
}

double MaxAbsDiff(const at::Tensor& a, const at::Tensor& b) {
  return (a.to(at::kDouble) - b.to(at::kDouble)).abs().max().item<double>();
}

// The model's logits for `ids` against the reference's; also checks the
// logits are far from uniform (so the comparison means something) and that
// incremental decoding through the KV cache gives the same.
void ExpectMatchesReference(LlamaForCausalLM& model, const Reference& ref,
                            const std::vector<int64_t>& ids) {
  torch::NoGradGuard no_grad;
  const at::Tensor expected = ReferenceLogits(WeightsOf(model), ref, ids);
  const at::Tensor input = torch::tensor(ids, at::kLong).unsqueeze(0);
  const at::Tensor logits = model.Forward(input)[0];
  ASSERT_EQ(logits.sizes(), expected.sizes());
  EXPECT_GT(expected.std().item<double>(), 0.3);
  EXPECT_LT(MaxAbsDiff(logits, expected), 1e-9);

  KvCache cache;
  std::vector<at::Tensor> steps = {
      model.Forward(input.narrow(1, 0, 3), {}, &cache)[0]};
  for (int64_t t = 3; t < input.size(1); ++t) {
    steps.push_back(model.Forward(input.narrow(1, t, 1), {}, &cache)[0]);
  }
  EXPECT_LT(MaxAbsDiff(torch::cat(steps, 0), expected), 1e-9);
}

const std::vector<int64_t> kIds = {3, 17, 5, 29, 11, 2, 23, 8, 31, 14, 6, 19};

// ---------------------------------------------------------------------------
// Llama 3: rotary frequency scaling.

TEST(Llama3RopeTest, SmallConfigMatchesHandDerivedFrequencies) {
  // head_dim 8, theta 10000: frequencies 1, 0.1, 0.01, 0.001; wavelengths
  // 2*pi/f = 6.28, 62.8, 628.3, 6283. With original 1024, low 1, high 4, the
  // bands are < 256 (kept), > 1024 (divided by 8), and between: 628.3 blends
  // with smooth = (1024 / 628.3185 - 1) / 3 = 0.2099153 into
  // 0.01 * (0.125 + 0.875 * 0.2099153) = 0.0030867610.
  RopeScaling scaling;
  scaling.rope_type = "llama3";
  scaling.factor = 8;
  scaling.low_freq_factor = 1;
  scaling.high_freq_factor = 4;
  scaling.original_max_position_embeddings = 1024;
  const at::Tensor frequencies =
      RotaryInverseFrequencies(8, 10000.0, scaling, at::kFloat, at::kCPU);
  const std::vector<double> expected = {1.0, 0.1, 0.003086760967011274,
                                        0.000125};
  ASSERT_EQ(frequencies.numel(), 4);
  EXPECT_EQ(frequencies.scalar_type(), at::kFloat);
  for (int i = 0; i < 4; ++i) {
    EXPECT_NEAR(frequencies[i].item<double>(), expected[i], 2e-7 * expected[i])
        << i;
  }
  // "default" leaves them alone.
  const at::Tensor plain = RotaryInverseFrequencies(8, 10000.0, RopeScaling(),
                                                    at::kDouble, at::kCPU);
  EXPECT_NEAR(plain[2].item<double>(), 0.01, 1e-15);
}

TEST(Llama3RopeTest, Llama31ConfigScalesTheLowFrequencies) {
  // Llama 3.1's published rope_scaling on head_dim 128, theta 500000. By the
  // formula: the 29 highest frequencies (wavelength < 8192 / 4 = 2048) stay,
  // the 29 lowest (wavelength > 8192) are divided by 8, and indices 29..34
  // keep these hand-computed fractions of themselves.
  const LlamaConfig config = Parse(R"({
      "model_type": "llama", "hidden_size": 4096, "num_attention_heads": 32,
      "rope_theta": 500000.0,
      "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0,
                       "high_freq_factor": 4.0,
                       "original_max_position_embeddings": 8192,
                       "rope_type": "llama3"}})");
  const at::Tensor frequencies =
      RotaryInverseFrequencies(config.head_dim(), config.rope_theta,
                               config.rope_scaling, at::kDouble, at::kCPU);
  const std::map<int, double> blended = {
      {29, 0.8281684118371798}, {30, 0.6437431331275951},
      {31, 0.4935071227319711}, {32, 0.3711222795178447},
      {33, 0.2714254770727862}, {34, 0.19021074364065016}};
  ASSERT_EQ(frequencies.numel(), 64);
  for (int i = 0; i < 64; ++i) {
    const double base = 1.0 / std::pow(500000.0, 2.0 * i / 128.0);
    const double fraction = i < 29 ? 1.0 : (i > 34 ? 0.125 : blended.at(i));
    EXPECT_NEAR(frequencies[i].item<double>(), base * fraction, 1e-12 * base)
        << i;
  }
}

TEST(ModelFamiliesTest, Llama3TiedWithExplicitHeadDimMatchesReference) {
  // hidden 24 with 4 heads of 8 (not 24 / 4): explicit head_dim.
  const LlamaConfig config = Parse(R"({
      "model_type": "llama", "vocab_size": 40, "hidden_size": 24,
      "intermediate_size": 40, "num_hidden_layers": 2,
      "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 8,
      "rms_norm_eps": 1e-5, "tie_word_embeddings": true,
      "rope_parameters": {"rope_type": "llama3", "rope_theta": 10000.0,
                          "factor": 8.0, "low_freq_factor": 1.0,
                          "high_freq_factor": 4.0,
                          "original_max_position_embeddings": 1024}})");
  EXPECT_EQ(config.head_dim(), 8);
  auto model = RandomModel(config, 1);
  Reference ref;
  ref.layers = 2;
  ref.heads = 4;
  ref.kv_heads = 2;
  ref.head_dim = 8;
  ref.eps = 1e-5;
  // The hand-derived values of SmallConfigMatchesHandDerivedFrequencies.
  ref.inverse_frequencies = {1.0, 0.1, 0.003086760967011274, 0.000125};
  ref.score_scale = 1 / std::sqrt(8.0);
  ref.windows = {0, 0};
  ref.tied = true;
  ExpectMatchesReference(*model, ref, kIds);

  // The scaling matters for these positions: unscaled frequencies miss.
  ref.inverse_frequencies = DefaultFrequencies(8, 10000.0);
  torch::NoGradGuard no_grad;
  const at::Tensor unscaled = ReferenceLogits(WeightsOf(*model), ref, kIds);
  EXPECT_GT(
      MaxAbsDiff(model->Forward(torch::tensor(kIds).unsqueeze(0))[0], unscaled),
      1e-3);
}

TEST(ModelFamiliesTest, LlamaWithBiasesAndGeluMatchesReference) {
  const LlamaConfig config = Parse(R"({
      "model_type": "llama", "vocab_size": 40, "hidden_size": 16,
      "intermediate_size": 24, "num_hidden_layers": 1,
      "num_attention_heads": 2, "num_key_value_heads": 2,
      "attention_bias": true, "mlp_bias": true, "hidden_act": "gelu"})");
  auto model = RandomModel(config, 2);
  const Weights weights = WeightsOf(*model);
  for (const char* name : {"q_proj", "k_proj", "v_proj", "o_proj"}) {
    EXPECT_EQ(
        weights.count(absl::StrCat("model.layers.0.self_attn.", name, ".bias")),
        1u)
        << name;
  }
  EXPECT_EQ(weights.count("model.layers.0.mlp.down_proj.bias"), 1u);
  Reference ref;
  ref.layers = 1;
  ref.heads = ref.kv_heads = 2;
  ref.head_dim = 8;
  ref.inverse_frequencies = DefaultFrequencies(8, 10000.0);
  ref.activation = "gelu";
  ref.score_scale = 1 / std::sqrt(8.0);
  ref.windows = {0};
  ExpectMatchesReference(*model, ref, kIds);
}

// ---------------------------------------------------------------------------
// Qwen2.

constexpr char kTinyQwen2[] = R"({
    "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2",
    "vocab_size": 40, "hidden_size": 16, "intermediate_size": 24,
    "num_hidden_layers": 2, "num_attention_heads": 4,
    "num_key_value_heads": 2, "max_position_embeddings": 64,
    "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
    "tie_word_embeddings": true, "use_sliding_window": false,
    "sliding_window": 32768, "max_window_layers": 1,
    "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "bfloat16"})";

TEST(ModelFamiliesTest, Qwen2HasQkvBiasesOnlyAndMatchesReference) {
  const LlamaConfig config = Parse(kTinyQwen2);
  // use_sliding_window false: the window is dropped, as Qwen2Config does.
  EXPECT_FALSE(config.sliding_window.has_value());
  {
    torch::manual_seed(3);
    LlamaForCausalLM fresh(config);
    const Weights weights = WeightsOf(fresh);
    // transformers initialises biases at zero.
    EXPECT_EQ(weights.at("model.layers.0.self_attn.q_proj.bias")
                  .abs()
                  .max()
                  .item<double>(),
              0.0);
    EXPECT_EQ(weights.count("model.layers.0.self_attn.o_proj.bias"), 0u);
    EXPECT_EQ(weights.count("model.layers.0.mlp.up_proj.bias"), 0u);
    EXPECT_EQ(weights.count("lm_head.weight"), 0u);  // Tied.
  }
  auto model = RandomModel(config, 3);
  Reference ref;
  ref.layers = 2;
  ref.heads = 4;
  ref.kv_heads = 2;
  ref.head_dim = 4;
  ref.inverse_frequencies = DefaultFrequencies(4, 1e6);
  ref.score_scale = 0.5;
  ref.windows = {0, 0};
  ref.tied = true;
  ExpectMatchesReference(*model, ref, kIds);
}

TEST(ModelFamiliesTest, Qwen2BiasesAreTheOnlyDifferenceFromLlama) {
  // The same weights in a Llama model (no biases) give the same logits once
  // Qwen2's biases are zero, and different ones with them: the biases are
  // applied, and nothing else differs.
  LlamaConfig qwen_config = Parse(kTinyQwen2);
  LlamaConfig llama_config = qwen_config;
  llama_config.model_type = "llama";
  auto qwen = RandomModel(qwen_config, 4);
  auto llama = RandomModel(llama_config, 5);
  torch::NoGradGuard no_grad;
  auto qwen_parameters = qwen->named_parameters();
  for (auto& parameter : llama->named_parameters()) {
    parameter.value().copy_(qwen_parameters[parameter.key()]);
  }
  const at::Tensor ids = torch::tensor(kIds).unsqueeze(0);
  EXPECT_GT(MaxAbsDiff(qwen->Forward(ids), llama->Forward(ids)), 1e-2);
  for (auto& parameter : qwen->named_parameters()) {
    if (absl::EndsWith(parameter.key(), ".bias")) parameter.value().zero_();
  }
  EXPECT_LT(MaxAbsDiff(qwen->Forward(ids), llama->Forward(ids)), 1e-12);
}

TEST(ModelFamiliesTest, TiedEmbeddingsAreOneParameterThroughTrainingAndSaving) {
  LlamaConfig config = Parse(kTinyQwen2);
  torch::manual_seed(6);
  auto model = std::make_shared<LlamaForCausalLM>(config);
  int embeddings = 0;
  for (const auto& parameter : model->named_parameters()) {
    EXPECT_NE(parameter.key(), "lm_head.weight");
    embeddings += parameter.key() == "model.embed_tokens.weight";
  }
  EXPECT_EQ(embeddings, 1);
  // A training step: the embedding's gradient has both uses (input rows and
  // output projection), and the logits keep using the updated matrix.
  const at::Tensor ids = torch::tensor(kIds).unsqueeze(0);
  const at::Tensor loss = model->Forward(ids).logsumexp(-1).mean();
  loss.backward();
  at::Tensor embedding = model->named_parameters()["model.embed_tokens.weight"];
  const at::Tensor grad = embedding.grad().clone();
  // Rows of tokens never in the input get gradient only through the output
  // projection; it is not zero.
  EXPECT_GT(grad[39].abs().sum().item<double>(), 0.0);
  {
    torch::NoGradGuard no_grad;
    embedding.sub_(0.5 * grad);
    const at::Tensor hidden = torch::randn({1, 2, 16});
    EXPECT_TRUE(torch::allclose(model->Logits(hidden),
                                torch::matmul(hidden, embedding.t())));
  }
  const std::string dir = absl::StrCat(testing::TempDir(), "/tied_qwen2");
  std::filesystem::remove_all(dir);
  ASSERT_TRUE(SaveLlamaCheckpoint(*model, dir, {}).ok());
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> file =
      SafetensorsFile::Open(dir + "/model.safetensors");
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_FALSE((*file)->Contains("lm_head.weight"));
  absl::StatusOr<LlamaConfig> saved = ReadLlamaConfig(dir + "/config.json");
  ASSERT_TRUE(saved.ok()) << saved.status();
  EXPECT_TRUE(saved->tie_word_embeddings);
  absl::StatusOr<std::shared_ptr<LlamaForCausalLM>> loaded =
      LoadLlamaCheckpoint(dir);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(torch::equal((*loaded)->Forward(ids), model->Forward(ids)));
}

// ---------------------------------------------------------------------------
// Mistral: sliding window.

constexpr char kTinyMistral[] = R"({
    "architectures": ["MistralForCausalLM"], "model_type": "mistral",
    "vocab_size": 40, "hidden_size": 16, "intermediate_size": 24,
    "num_hidden_layers": 2, "num_attention_heads": 4,
    "num_key_value_heads": 1, "max_position_embeddings": 64,
    "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "sliding_window": 3,
    "tie_word_embeddings": false})";

TEST(ModelFamiliesTest, MistralSlidingWindowMatchesReference) {
  const LlamaConfig config = Parse(kTinyMistral);
  ASSERT_EQ(config.sliding_window, 3);
  auto model = RandomModel(config, 7);
  Reference ref;
  ref.layers = 2;
  ref.heads = 4;
  ref.kv_heads = 1;
  ref.head_dim = 4;
  ref.eps = 1e-5;
  ref.inverse_frequencies = DefaultFrequencies(4, 10000.0);
  ref.score_scale = 0.5;
  ref.windows = {3, 3};
  ExpectMatchesReference(*model, ref, kIds);
}

TEST(ModelFamiliesTest, MistralWindowLimitsWhatAPositionSees) {
  // One layer, window 3: position t sees tokens t-2..t only, so changing
  // token 0 changes positions 0..2 and nothing after.
  LlamaConfig config = Parse(kTinyMistral);
  config.num_hidden_layers = 1;
  auto model = RandomModel(config, 8);
  torch::NoGradGuard no_grad;
  at::Tensor ids = torch::tensor(kIds).unsqueeze(0);
  const at::Tensor before = model->Forward(ids)[0];
  ids[0][0] = 37;
  const at::Tensor after = model->Forward(ids)[0];
  for (int64_t t = 0; t < 12; ++t) {
    const double diff = MaxAbsDiff(before[t], after[t]);
    if (t < 3) {
      EXPECT_GT(diff, 1e-6) << t;
    } else {
      EXPECT_EQ(diff, 0.0) << t;
    }
  }
}

TEST(ModelFamiliesTest, MistralWithinTheWindowIsLlamaAndNullMeansNone) {
  // Sequences no longer than the window: same logits as the Llama model with
  // the same weights. sliding_window null (Mistral 7B v0.2 on): no window.
  LlamaConfig config = Parse(kTinyMistral);
  LlamaConfig llama_config = config;
  llama_config.model_type = "llama";
  llama_config.sliding_window.reset();
  auto mistral = RandomModel(config, 9);
  auto llama = RandomModel(llama_config, 9);
  torch::NoGradGuard no_grad;
  const at::Tensor short_ids =
      torch::tensor({5, 9, 13}, at::kLong).unsqueeze(0);
  EXPECT_LT(MaxAbsDiff(mistral->Forward(short_ids), llama->Forward(short_ids)),
            1e-12);
  const at::Tensor ids = torch::tensor(kIds).unsqueeze(0);
  EXPECT_GT(MaxAbsDiff(mistral->Forward(ids), llama->Forward(ids)), 1e-3);

  const LlamaConfig unbounded = Parse(absl::StrCat(
      std::string(kTinyMistral).substr(0, std::string(kTinyMistral).size() - 1),
      R"(, "sliding_window": null})"));
  EXPECT_FALSE(unbounded.sliding_window.has_value());
  auto no_window = RandomModel(unbounded, 9);
  EXPECT_LT(MaxAbsDiff(no_window->Forward(ids), llama->Forward(ids)), 1e-12);
  // And an absent sliding_window is MistralConfig's default, 4096.
  EXPECT_EQ(Parse(R"({"model_type": "mistral"})").sliding_window, 4096);
}

TEST(ModelFamiliesTest, SlidingWindowWithPaddingMatchesUnpaddedSequences) {
  // Right-padded batch: real positions equal each sequence run alone.
  auto model = RandomModel(Parse(kTinyMistral), 10);
  torch::NoGradGuard no_grad;
  const at::Tensor ids = torch::tensor(kIds).view({2, 6});
  at::Tensor mask = torch::ones({2, 6}, at::kLong);
  mask[1].narrow(0, 4, 2).fill_(0);
  const at::Tensor batched = model->Forward(ids, mask);
  EXPECT_LT(MaxAbsDiff(batched[0], model->Forward(ids.narrow(0, 0, 1))[0]),
            1e-12);
  EXPECT_LT(MaxAbsDiff(batched[1].narrow(0, 0, 4),
                       model->Forward(ids[1].narrow(0, 0, 4).unsqueeze(0))[0]),
            1e-12);
}

// ---------------------------------------------------------------------------
// Phi-3: fused projections in the checkpoint.

constexpr char kTinyPhi3[] = R"({
    "architectures": ["Phi3ForCausalLM"], "model_type": "phi3",
    "vocab_size": 40, "hidden_size": 16, "intermediate_size": 24,
    "num_hidden_layers": 2, "num_attention_heads": 4,
    "num_key_value_heads": 2, "max_position_embeddings": 64,
    "original_max_position_embeddings": 64, "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0, "rope_scaling": null, "sliding_window": null,
    "tie_word_embeddings": false, "bos_token_id": 1, "eos_token_id": 32,
    "pad_token_id": 32, "torch_dtype": "float32"})";

// The checkpoint transformers' Phi3ForCausalLM holds for `llama`'s weights:
// qkv_proj = [q; k; v], gate_up_proj = [gate; up], everything else as is.
std::vector<std::pair<std::string, at::Tensor>> Phi3Tensors(
    const Weights& llama) {
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  for (const auto& [name, tensor] : llama) {
    if (absl::StrContains(name, "self_attn.q_proj")) {
      const std::string prefix = name.substr(0, name.find("q_proj"));
      tensors.emplace_back(
          prefix + "qkv_proj.weight",
          torch::cat({tensor, llama.at(prefix + "k_proj.weight"),
                      llama.at(prefix + "v_proj.weight")},
                     0));
    } else if (absl::StrContains(name, "mlp.gate_proj")) {
      const std::string prefix = name.substr(0, name.find("gate_proj"));
      tensors.emplace_back(
          prefix + "gate_up_proj.weight",
          torch::cat({tensor, llama.at(prefix + "up_proj.weight")}, 0));
    } else if (!absl::StrContains(name, "k_proj") &&
               !absl::StrContains(name, "v_proj") &&
               !absl::StrContains(name, "up_proj.")) {
      tensors.emplace_back(name, tensor);
    }
  }
  return tensors;
}

TEST(ModelFamiliesTest, Phi3FusedCheckpointLoadsAsTheUnfusedModelAndResaves) {
  const LlamaConfig phi3_config = Parse(kTinyPhi3);
  LlamaConfig llama_config = phi3_config;
  llama_config.model_type = "llama";
  torch::manual_seed(11);
  LlamaForCausalLM llama(llama_config);
  {
    torch::NoGradGuard no_grad;
    for (auto& parameter : llama.named_parameters()) {
      parameter.value().normal_(0.0, 0.3);
    }
  }
  const Weights llama_weights = WeightsOf(llama);
  const auto fused = Phi3Tensors(llama_weights);
  EXPECT_EQ(fused.size() + 6, llama_weights.size());  // 3 + 3 fewer tensors.

  const std::string dir = absl::StrCat(testing::TempDir(), "/phi3_in");
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  { std::ofstream(dir + "/config.json") << kTinyPhi3; }
  ASSERT_TRUE(WriteSafetensors(dir + "/model.safetensors", fused).ok());
  absl::StatusOr<std::shared_ptr<LlamaForCausalLM>> phi3 =
      LoadLlamaCheckpoint(dir);
  ASSERT_TRUE(phi3.ok()) << phi3.status();
  {
    torch::NoGradGuard no_grad;
    const at::Tensor ids = torch::tensor(kIds).unsqueeze(0);
    EXPECT_TRUE(torch::equal((*phi3)->Forward(ids), llama.Forward(ids)));
  }

  // Saved again: the same tensor names and bytes as the input checkpoint.
  const std::string out = absl::StrCat(testing::TempDir(), "/phi3_out");
  std::filesystem::remove_all(out);
  ASSERT_TRUE(SaveLlamaCheckpoint(**phi3, out, {}).ok());
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> file =
      SafetensorsFile::Open(out + "/model.safetensors");
  ASSERT_TRUE(file.ok()) << file.status();
  std::set<std::string> expected_names, names;
  for (const auto& [name, tensor] : fused) {
    expected_names.insert(name);
    absl::StatusOr<at::Tensor> stored = (*file)->Get(name);
    ASSERT_TRUE(stored.ok()) << name << ": " << stored.status();
    EXPECT_TRUE(torch::equal(*stored, tensor)) << name;
  }
  for (const std::string& name : (*file)->names()) names.insert(name);
  EXPECT_EQ(names, expected_names);
  EXPECT_TRUE(names.count("model.layers.1.self_attn.qkv_proj.weight"));
  EXPECT_FALSE(names.count("model.layers.1.self_attn.q_proj.weight"));

  const nlohmann::json written = nlohmann::json::parse(
      std::ifstream(out + "/config.json"), nullptr, false);
  EXPECT_EQ(written["model_type"], "phi3");
  EXPECT_EQ(written["architectures"][0], "Phi3ForCausalLM");
  EXPECT_EQ(written["original_max_position_embeddings"], 64);
}

TEST(ModelFamiliesTest, Phi3FusedTensorOfTheWrongShapeIsNamed) {
  torch::manual_seed(12);
  LlamaConfig llama_config = Parse(kTinyPhi3);
  llama_config.model_type = "llama";
  LlamaForCausalLM llama(llama_config);
  auto tensors = Phi3Tensors(WeightsOf(llama));
  for (auto& [name, tensor] : tensors) {
    if (name == "model.layers.0.self_attn.qkv_proj.weight") {
      tensor = tensor.narrow(0, 0, 24);  // q and k only.
    }
  }
  const std::string dir = absl::StrCat(testing::TempDir(), "/phi3_bad");
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  { std::ofstream(dir + "/config.json") << kTinyPhi3; }
  ASSERT_TRUE(WriteSafetensors(dir + "/model.safetensors", tensors).ok());
  const absl::Status status = LoadLlamaCheckpoint(dir).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(
      status.message(),
      "'model.layers.0.self_attn.qkv_proj.weight' has shape [24, 16]"))
      << status;
  EXPECT_TRUE(absl::StrContains(status.message(), "implies [32, 16]"))
      << status;
}

TEST(ModelFamiliesTest, Phi3MiniSlidingWindowMatchesReference) {
  // Phi-3-mini-4k's config has sliding_window 2047; transformers applies it
  // to every layer.
  const std::string json = absl::StrCat(
      std::string(kTinyPhi3).substr(0, std::string(kTinyPhi3).size() - 1),
      R"(, "sliding_window": 4})");
  const LlamaConfig config = Parse(json);
  auto model = RandomModel(config, 13);
  Reference ref;
  ref.layers = 2;
  ref.heads = 4;
  ref.kv_heads = 2;
  ref.head_dim = 4;
  ref.eps = 1e-5;
  ref.inverse_frequencies = DefaultFrequencies(4, 10000.0);
  ref.score_scale = 0.5;
  ref.windows = {4, 4};
  ExpectMatchesReference(*model, ref, kIds);
}

// ---------------------------------------------------------------------------
// Gemma and Gemma 2.

constexpr char kTinyGemma[] = R"({
    "architectures": ["GemmaForCausalLM"], "model_type": "gemma",
    "vocab_size": 40, "hidden_size": 12, "intermediate_size": 20,
    "num_hidden_layers": 2, "num_attention_heads": 2,
    "num_key_value_heads": 1, "head_dim": 8, "hidden_act": "gelu",
    "hidden_activation": "gelu_pytorch_tanh",
    "max_position_embeddings": 64, "rms_norm_eps": 1e-6,
    "rope_theta": 10000.0, "attention_bias": false,
    "bos_token_id": 2, "eos_token_id": 1, "pad_token_id": 0})";

TEST(ModelFamiliesTest, GemmaMatchesReference) {
  const LlamaConfig config = Parse(kTinyGemma);
  EXPECT_TRUE(config.tie_word_embeddings);  // GemmaConfig's default.
  EXPECT_EQ(config.hidden_act, "gelu_pytorch_tanh");
  {
    torch::manual_seed(14);
    LlamaForCausalLM fresh(config);
    // GemmaRMSNorm's weights start at 0 (a scale of 1).
    EXPECT_EQ(
        WeightsOf(fresh).at("model.norm.weight").abs().max().item<double>(),
        0.0);
  }
  auto model = RandomModel(config, 14);
  Reference ref;
  ref.layers = 2;
  ref.heads = 2;
  ref.kv_heads = 1;
  ref.head_dim = 8;
  ref.inverse_frequencies = DefaultFrequencies(8, 10000.0);
  ref.activation = "gelu_pytorch_tanh";
  ref.gemma = true;
  ref.score_scale = 1 / std::sqrt(8.0);
  ref.windows = {0, 0};
  ref.tied = true;
  ExpectMatchesReference(*model, ref, kIds);
  // The exact GELU would be a different model.
  ref.activation = "gelu";
  torch::NoGradGuard no_grad;
  EXPECT_GT(MaxAbsDiff(model->Forward(torch::tensor(kIds).unsqueeze(0))[0],
                       ReferenceLogits(WeightsOf(*model), ref, kIds)),
            1e-6);
}

TEST(ModelFamiliesTest, GemmaEmbeddingScaleIsRoundedToTheHiddenDtype) {
  // transformers multiplies by torch.tensor(hidden_size**0.5, dtype): for
  // hidden 3072 in bfloat16 that is 55.5, not 55.4256.
  LlamaConfig config = Parse(R"({"model_type": "gemma", "vocab_size": 4,
      "hidden_size": 3072, "intermediate_size": 2, "num_hidden_layers": 1,
      "num_attention_heads": 1, "num_key_value_heads": 1, "head_dim": 2})");
  LlamaBackbone backbone(config);
  backbone.to(at::kBFloat16);
  torch::NoGradGuard no_grad;
  torch::manual_seed(18);
  backbone.embed_tokens()->weight.copy_(torch::randn({4, 3072}));
  const at::Tensor embedded =
      backbone.Embed(torch::tensor({1, 3}, at::kLong).unsqueeze(0));
  EXPECT_EQ(embedded.scalar_type(), at::kBFloat16);
  // Each entry is bf16(w * 55.5); with 55.4256 many would round elsewhere.
  const at::Tensor weight = backbone.embed_tokens()->weight;
  for (int64_t row = 0; row < 2; ++row) {
    const at::Tensor expected =
        (weight[row == 0 ? 1 : 3].to(at::kFloat) * 55.5f).to(at::kBFloat16);
    EXPECT_TRUE(torch::equal(embedded[0][row], expected)) << row;
  }
  // In fp32 the factor is float(sqrt(3072)).
  backbone.to(at::kFloat);
  const at::Tensor wide =
      backbone.Embed(torch::tensor({1}, at::kLong).unsqueeze(0));
  EXPECT_TRUE(
      torch::equal(wide[0][0], backbone.embed_tokens()->weight[1] *
                                   static_cast<float>(std::sqrt(3072.0))));
}

TEST(ModelFamiliesTest, GemmaNormScalesInFloatBeforeRounding) {
  // GemmaRMSNorm: (x_normalized * (1 + w)) in fp32, then cast; Llama casts
  // x_normalized first and scales in the low-precision dtype.
  torch::manual_seed(19);
  LlamaRmsNorm gemma_norm(64, 1e-6, /*offset=*/true);
  {
    torch::NoGradGuard no_grad;
    gemma_norm.named_parameters()["weight"].copy_(torch::randn({64}));
  }
  gemma_norm.to(at::kBFloat16);
  const at::Tensor x = torch::randn({8, 64}).to(at::kBFloat16);
  const at::Tensor w = gemma_norm.named_parameters()["weight"].detach();
  const at::Tensor wide = x.to(at::kFloat);
  const at::Tensor normalized =
      wide * torch::rsqrt(wide.pow(2).mean(-1, true) + 1e-6);
  const at::Tensor expected =
      (normalized * (1.0 + w.to(at::kFloat))).to(at::kBFloat16);
  torch::NoGradGuard no_grad;
  const at::Tensor output = gemma_norm.Forward(x);
  EXPECT_EQ(output.scalar_type(), at::kBFloat16);
  EXPECT_TRUE(torch::equal(output, expected));
  // The other order rounds differently somewhere in these 512 values.
  EXPECT_FALSE(
      torch::equal((1.0 + w) * normalized.to(at::kBFloat16), expected));
}

constexpr char kTinyGemma2[] = R"({
    "architectures": ["Gemma2ForCausalLM"], "model_type": "gemma2",
    "vocab_size": 40, "hidden_size": 12, "intermediate_size": 20,
    "num_hidden_layers": 3, "num_attention_heads": 4,
    "num_key_value_heads": 2, "head_dim": 6, "hidden_act": "gelu_pytorch_tanh",
    "hidden_activation": "gelu_pytorch_tanh", "max_position_embeddings": 64,
    "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "query_pre_attn_scalar": 5,
    "sliding_window": 3, "attn_logit_softcapping": 2.0,
    "final_logit_softcapping": 3.0, "cache_implementation": "hybrid",
    "bos_token_id": 2, "eos_token_id": 1, "pad_token_id": 0})";

TEST(ModelFamiliesTest, Gemma2MatchesReference) {
  const LlamaConfig config = Parse(kTinyGemma2);
  auto model = RandomModel(config, 15);
  const Weights weights = WeightsOf(*model);
  EXPECT_EQ(weights.count("model.layers.2.pre_feedforward_layernorm.weight"),
            1u);
  EXPECT_EQ(weights.count("model.layers.2.post_feedforward_layernorm.weight"),
            1u);
  Reference ref;
  ref.layers = 3;
  ref.heads = 4;
  ref.kv_heads = 2;
  ref.head_dim = 6;
  ref.inverse_frequencies = DefaultFrequencies(6, 10000.0);
  ref.activation = "gelu_pytorch_tanh";
  ref.gemma = true;
  ref.sandwich = true;
  ref.score_scale = 1 / std::sqrt(5.0);  // query_pre_attn_scalar^-0.5
  ref.attention_softcap = 2.0;
  ref.final_softcap = 3.0;
  ref.windows = {3, 0, 3};  // Even layers slide.
  ref.tied = true;
  ExpectMatchesReference(*model, ref, kIds);
  // Logits stay inside the soft cap.
  torch::NoGradGuard no_grad;
  EXPECT_LT(model->Forward(torch::tensor(kIds).unsqueeze(0))
                .abs()
                .max()
                .item<double>(),
            3.0);
}

TEST(ModelFamiliesTest, Gemma2LayerTypesOverrideTheAlternation) {
  const std::string json = absl::StrCat(
      std::string(kTinyGemma2).substr(0, std::string(kTinyGemma2).size() - 1),
      R"(, "layer_types": ["full_attention", "sliding_attention",
                           "full_attention"]})");
  const LlamaConfig config = Parse(json);
  EXPECT_FALSE(config.IsSlidingLayer(0));
  EXPECT_TRUE(config.IsSlidingLayer(1));
  auto model = RandomModel(config, 16);
  Reference ref;
  ref.layers = 3;
  ref.heads = 4;
  ref.kv_heads = 2;
  ref.head_dim = 6;
  ref.inverse_frequencies = DefaultFrequencies(6, 10000.0);
  ref.activation = "gelu_pytorch_tanh";
  ref.gemma = true;
  ref.sandwich = true;
  ref.score_scale = 1 / std::sqrt(5.0);
  ref.attention_softcap = 2.0;
  ref.final_softcap = 3.0;
  ref.windows = {0, 3, 0};
  ref.tied = true;
  ExpectMatchesReference(*model, ref, kIds);
}

// ---------------------------------------------------------------------------
// Saving and reloading every family.

TEST(ModelFamiliesTest, EveryFamilyRoundTripsThroughItsOwnCheckpointForm) {
  const std::map<std::string, std::string> configs = {{"qwen2", kTinyQwen2},
                                                      {"mistral", kTinyMistral},
                                                      {"phi3", kTinyPhi3},
                                                      {"gemma", kTinyGemma},
                                                      {"gemma2", kTinyGemma2}};
  const std::map<std::string, std::string> architectures = {
      {"qwen2", "Qwen2ForCausalLM"},
      {"mistral", "MistralForCausalLM"},
      {"phi3", "Phi3ForCausalLM"},
      {"gemma", "GemmaForCausalLM"},
      {"gemma2", "Gemma2ForCausalLM"}};
  for (const auto& [family, json] : configs) {
    SCOPED_TRACE(family);
    const LlamaConfig config = Parse(json);
    torch::manual_seed(17);
    LlamaForCausalLM model(config);
    const std::string dir =
        absl::StrCat(testing::TempDir(), "/round_trip_", family);
    std::filesystem::remove_all(dir);
    ASSERT_TRUE(
        SaveLlamaCheckpoint(model, dir, {.max_shard_bytes = 3000}).ok());
    const nlohmann::json written = nlohmann::json::parse(
        std::ifstream(dir + "/config.json"), nullptr, false);
    EXPECT_EQ(written["model_type"], family);
    EXPECT_EQ(written["architectures"][0], architectures.at(family));
    absl::StatusOr<LlamaConfig> reread = ReadLlamaConfig(dir + "/config.json");
    ASSERT_TRUE(reread.ok()) << reread.status();
    LlamaConfig as_saved = config;
    as_saved.torch_dtype = "float32";  // SaveOptions' default dtype.
    EXPECT_EQ(LlamaConfigToJson(*reread), LlamaConfigToJson(as_saved));
    absl::StatusOr<std::shared_ptr<LlamaForCausalLM>> loaded =
        LoadLlamaCheckpoint(dir);
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    auto loaded_parameters = (*loaded)->named_parameters();
    for (const auto& parameter : model.named_parameters()) {
      EXPECT_TRUE(
          torch::equal(parameter.value(), loaded_parameters[parameter.key()]))
          << parameter.key();
    }
  }
}

// ---------------------------------------------------------------------------
// Config files of published checkpoints.

TEST(FamilyConfigTest, ReadsPublishedConfigs) {
  // Abridged from the checkpoints' config.json files.
  const LlamaConfig llama31 = Parse(R"({
      "architectures": ["LlamaForCausalLM"], "attention_bias": false,
      "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009],
      "hidden_act": "silu", "hidden_size": 2048, "intermediate_size": 8192,
      "max_position_embeddings": 131072, "mlp_bias": false,
      "model_type": "llama", "num_attention_heads": 32,
      "num_hidden_layers": 16, "num_key_value_heads": 8, "head_dim": 64,
      "pretraining_tp": 1, "rms_norm_eps": 1e-05,
      "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0,
                       "low_freq_factor": 1.0,
                       "original_max_position_embeddings": 8192,
                       "rope_type": "llama3"},
      "rope_theta": 500000.0, "tie_word_embeddings": true,
      "torch_dtype": "bfloat16", "vocab_size": 128256})");
  EXPECT_EQ(llama31.rope_scaling.rope_type, "llama3");
  EXPECT_EQ(llama31.rope_scaling.factor, 32.0);
  EXPECT_EQ(llama31.rope_scaling.original_max_position_embeddings, 8192);
  EXPECT_TRUE(llama31.tie_word_embeddings);
  EXPECT_EQ(llama31.Architecture(), "LlamaForCausalLM");

  const LlamaConfig qwen25 = Parse(R"({
      "architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0,
      "bos_token_id": 151643, "eos_token_id": 151643, "hidden_act": "silu",
      "hidden_size": 896, "intermediate_size": 4864,
      "max_position_embeddings": 32768, "max_window_layers": 24,
      "model_type": "qwen2", "num_attention_heads": 14,
      "num_hidden_layers": 24, "num_key_value_heads": 2,
      "rms_norm_eps": 1e-06, "rope_theta": 1000000.0,
      "sliding_window": 32768, "tie_word_embeddings": true,
      "torch_dtype": "bfloat16", "use_cache": true,
      "use_sliding_window": false, "vocab_size": 151936})");
  EXPECT_TRUE(qwen25.QkvBias());
  EXPECT_FALSE(qwen25.OutputProjectionBias());
  EXPECT_EQ(qwen25.head_dim(), 64);
  EXPECT_FALSE(qwen25.IsSlidingLayer(23));
  EXPECT_EQ(qwen25.rope_theta, 1e6);

  const LlamaConfig mistral = Parse(R"({
      "architectures": ["MistralForCausalLM"], "bos_token_id": 1,
      "eos_token_id": 2, "hidden_act": "silu", "hidden_size": 4096,
      "intermediate_size": 14336, "max_position_embeddings": 32768,
      "model_type": "mistral", "num_attention_heads": 32,
      "num_hidden_layers": 32, "num_key_value_heads": 8,
      "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "sliding_window": 4096,
      "tie_word_embeddings": false, "torch_dtype": "bfloat16",
      "vocab_size": 32000})");
  EXPECT_EQ(mistral.sliding_window, 4096);
  EXPECT_TRUE(mistral.IsSlidingLayer(0));
  EXPECT_TRUE(mistral.IsSlidingLayer(31));

  const LlamaConfig phi3 = Parse(R"({
      "architectures": ["Phi3ForCausalLM"], "attention_bias": false,
      "attention_dropout": 0.0, "bos_token_id": 1, "embd_pdrop": 0.0,
      "eos_token_id": 32000, "hidden_act": "silu", "hidden_size": 3072,
      "initializer_range": 0.02, "intermediate_size": 8192,
      "max_position_embeddings": 4096, "model_type": "phi3",
      "num_attention_heads": 32, "num_hidden_layers": 32,
      "num_key_value_heads": 32, "original_max_position_embeddings": 4096,
      "pad_token_id": 32000, "resid_pdrop": 0.0, "rms_norm_eps": 1e-05,
      "rope_scaling": null, "rope_theta": 10000.0, "sliding_window": 2047,
      "tie_word_embeddings": false, "torch_dtype": "bfloat16",
      "vocab_size": 32064})");
  EXPECT_TRUE(phi3.HasFusedCheckpointProjections());
  EXPECT_EQ(phi3.sliding_window, 2047);
  EXPECT_EQ(phi3.pad_token_id, 32000);

  // The first gemma-2b config: hidden_act "gelu" and no hidden_activation,
  // which transformers 4.x ran with the tanh approximation.
  const LlamaConfig gemma = Parse(R"({
      "architectures": ["GemmaForCausalLM"], "attention_bias": false,
      "bos_token_id": 2, "eos_token_id": 1, "head_dim": 256,
      "hidden_act": "gelu", "hidden_size": 2048, "intermediate_size": 16384,
      "max_position_embeddings": 8192, "model_type": "gemma",
      "num_attention_heads": 8, "num_hidden_layers": 18,
      "num_key_value_heads": 1, "pad_token_id": 0, "rms_norm_eps": 1e-06,
      "rope_scaling": null, "rope_theta": 10000.0,
      "torch_dtype": "bfloat16", "vocab_size": 256000})");
  EXPECT_EQ(gemma.hidden_act, "gelu_pytorch_tanh");
  EXPECT_EQ(gemma.head_dim(), 256);
  EXPECT_TRUE(gemma.tie_word_embeddings);
  EXPECT_TRUE(gemma.IsGemmaFamily());

  const LlamaConfig gemma2 = Parse(R"({
      "architectures": ["Gemma2ForCausalLM"], "attention_bias": false,
      "attn_logit_softcapping": 50.0, "bos_token_id": 2,
      "cache_implementation": "hybrid", "eos_token_id": 1,
      "final_logit_softcapping": 30.0, "head_dim": 256,
      "hidden_act": "gelu_pytorch_tanh",
      "hidden_activation": "gelu_pytorch_tanh", "hidden_size": 2304,
      "intermediate_size": 9216, "max_position_embeddings": 8192,
      "model_type": "gemma2", "num_attention_heads": 8,
      "num_hidden_layers": 26, "num_key_value_heads": 4, "pad_token_id": 0,
      "query_pre_attn_scalar": 256, "rms_norm_eps": 1e-06,
      "rope_theta": 10000.0, "sliding_window": 4096,
      "torch_dtype": "float32", "vocab_size": 256000})");
  EXPECT_TRUE(gemma2.HasSandwichNorms());
  EXPECT_TRUE(gemma2.IsSlidingLayer(0));
  EXPECT_FALSE(gemma2.IsSlidingLayer(1));
  EXPECT_EQ(gemma2.attn_logit_softcapping, 50.0);
  EXPECT_EQ(gemma2.final_logit_softcapping, 30.0);
  EXPECT_EQ(gemma2.query_pre_attn_scalar, 256.0);

  // Each written back in its own form reads back the same.
  for (const LlamaConfig* config :
       {&llama31, &qwen25, &mistral, &phi3, &gemma, &gemma2}) {
    const std::string json = LlamaConfigToJson(*config);
    absl::StatusOr<LlamaConfig> reread = ParseLlamaConfig(json, "written");
    ASSERT_TRUE(reread.ok()) << reread.status() << "\n" << json;
    EXPECT_EQ(LlamaConfigToJson(*reread), json);
    EXPECT_TRUE(absl::StrContains(
        json, absl::StrCat("\"model_type\": \"", config->model_type, "\"")));
  }
}

TEST(FamilyConfigTest, Qwen2SlidingWindowLayersFollowMaxWindowLayers) {
  const LlamaConfig config = Parse(R"({"model_type": "qwen2",
      "num_hidden_layers": 4, "use_sliding_window": true,
      "sliding_window": 8, "max_window_layers": 2})");
  EXPECT_FALSE(config.IsSlidingLayer(1));
  EXPECT_TRUE(config.IsSlidingLayer(2));
  EXPECT_TRUE(config.IsSlidingLayer(3));
  const nlohmann::json written =
      nlohmann::json::parse(LlamaConfigToJson(config));
  EXPECT_EQ(written["use_sliding_window"], true);
  EXPECT_EQ(written["sliding_window"], 8);
  EXPECT_EQ(written["max_window_layers"], 2);
}

struct Rejected {
  std::string json;
  absl::StatusCode code;
  std::string fragment;
};

TEST(FamilyConfigTest, RejectsWhatItCannotRunNamingTheFieldAndValue) {
  const std::vector<Rejected> cases = {
      {R"({"model_type": "gemma3_text"})", absl::StatusCode::kUnimplemented,
       "model_type \"gemma3_text\""},
      {R"({"model_type": "gpt2"})", absl::StatusCode::kUnimplemented,
       "model_type \"gpt2\""},
      {R"({"model_type": 7})", absl::StatusCode::kInvalidArgument,
       "model_type"},
      {R"({"rope_scaling": {"type": "linear", "factor": 2.0}})",
       absl::StatusCode::kUnimplemented, "rope_scaling.type \"linear\""},
      {R"({"rope_scaling": {"rope_type": "dynamic", "factor": 2.0}})",
       absl::StatusCode::kUnimplemented, "\"dynamic\""},
      {R"({"rope_parameters": {"rope_type": "yarn", "factor": 4.0,
                               "rope_theta": 10000.0}})",
       absl::StatusCode::kUnimplemented, "\"yarn\""},
      {R"({"model_type": "phi3", "rope_scaling": {"type": "longrope",
           "long_factor": [1.0], "short_factor": [1.0]}})",
       absl::StatusCode::kUnimplemented, "\"longrope\""},
      {R"({"model_type": "phi3", "rope_scaling": {"type": "su",
           "long_factor": [1.0], "short_factor": [1.0]}})",
       absl::StatusCode::kUnimplemented, "\"su\""},
      {R"({"model_type": "phi3", "partial_rotary_factor": 0.75})",
       absl::StatusCode::kUnimplemented, "partial_rotary_factor 0.75"},
      {R"({"model_type": "phi3", "rope_parameters": {"rope_type": "default",
           "rope_theta": 10000.0, "partial_rotary_factor": 0.5}})",
       absl::StatusCode::kUnimplemented,
       "rope_parameters.partial_rotary_factor 0.5"},
      {R"({"rope_scaling": {"rope_type": "llama3", "factor": 8.0,
           "low_freq_factor": 1.0, "high_freq_factor": 4.0,
           "original_max_position_embeddings": 8192, "beta_fast": 32}})",
       absl::StatusCode::kUnimplemented, "rope_scaling.beta_fast"},
      {R"({"rope_scaling": {"rope_type": "llama3", "factor": 8.0,
           "low_freq_factor": 4.0, "high_freq_factor": 1.0,
           "original_max_position_embeddings": 8192}})",
       absl::StatusCode::kInvalidArgument, "low_freq_factor"},
      {R"({"model_type": "gemma", "hidden_act": "relu"})",
       absl::StatusCode::kUnimplemented, "hidden_act \"relu\""},
      {R"({"model_type": "gemma2", "hidden_activation": "relu"})",
       absl::StatusCode::kUnimplemented, "hidden_activation \"relu\""},
      {R"({"model_type": "gemma", "rope_parameters": {
           "full_attention": {"rope_type": "default"},
           "sliding_attention": {"rope_type": "default"}}})",
       absl::StatusCode::kUnimplemented, "per-layer-type"},
      {R"({"model_type": "qwen2", "num_hidden_layers": 2,
           "use_sliding_window": true, "sliding_window": 4,
           "layer_types": ["full_attention"]})",
       absl::StatusCode::kInvalidArgument, "layer_types"},
      {R"({"model_type": "qwen2", "num_hidden_layers": 1,
           "layer_types": ["chunked_attention"]})",
       absl::StatusCode::kUnimplemented, "\"chunked_attention\""},
      {R"({"model_type": "mistral", "sliding_window": 0})",
       absl::StatusCode::kInvalidArgument, "sliding_window"},
  };
  for (const Rejected& bad : cases) {
    absl::StatusOr<LlamaConfig> config = ParseLlamaConfig(bad.json, "x.json");
    EXPECT_EQ(config.status().code(), bad.code)
        << bad.json << " -> " << config.status();
    EXPECT_TRUE(absl::StrContains(config.status().message(), bad.fragment))
        << bad.json << " -> " << config.status();
    EXPECT_TRUE(absl::StrContains(config.status().message(), "x.json"))
        << config.status();
  }
}

}  // namespace
}  // namespace lethe
