#include "libs/model/llama_model.h"

#include <torch/csrc/autograd/function.h>

#include <cmath>
#include <cstdint>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <numeric>
#include <set>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "libs/model/tiny_llama.h"
#include "libs/sysinfo/process_memory.h"

namespace lethe {
namespace {

LlamaConfig TinyConfig(int64_t kv_heads = 2, bool tied = false) {
  LlamaConfig config;
  config.vocab_size = 50;
  config.hidden_size = 32;
  config.intermediate_size = 64;
  config.num_hidden_layers = 2;
  config.num_attention_heads = 4;
  config.num_key_value_heads = kv_heads;
  config.max_position_embeddings = 64;
  config.rms_norm_eps = 1e-5;
  config.tie_word_embeddings = tied;
  return config;
}

std::shared_ptr<LlamaForCausalLM> TinyModel(int64_t kv_heads = 2,
                                            bool tied = false) {
  torch::manual_seed(7);
  auto model = std::make_shared<LlamaForCausalLM>(TinyConfig(kv_heads, tied));
  // Larger weights than the 0.02 initialisation, so every check below acts
  // on a model whose outputs depend strongly on its inputs.
  RedrawWeights(*model, 0.2);
  return model;
}

at::Tensor Ids(std::vector<int64_t> ids) {
  return torch::tensor(ids, at::kLong).unsqueeze(0);
}

// The autograd nodes reachable from `tensor`, by name.
std::multiset<std::string> GraphNodes(const at::Tensor& tensor) {
  std::multiset<std::string> names;
  std::set<torch::autograd::Node*> seen;
  std::vector<torch::autograd::Node*> stack = {tensor.grad_fn().get()};
  while (!stack.empty()) {
    torch::autograd::Node* node = stack.back();
    stack.pop_back();
    if (node == nullptr || !seen.insert(node).second) continue;
    names.insert(node->name());
    for (const torch::autograd::Edge& edge : node->next_edges()) {
      stack.push_back(edge.function.get());
    }
  }
  return names;
}

size_t CountContaining(const std::multiset<std::string>& names,
                       const std::string& fragment) {
  size_t count = 0;
  for (const std::string& name : names) {
    count += name.find(fragment) != std::string::npos;
  }
  return count;
}

TEST(RotaryEmbeddingTest, MatchesHandDerivedRotation) {
  // head_dim 4, theta 10000: inverse frequencies [1, 1/100]. rotate_half
  // pairs component i with i + 2, so e0 at position p becomes
  // cos(p) e0 + sin(p) e2, and e1 becomes cos(p/100) e1 + sin(p/100) e3.
  const at::Tensor positions = torch::tensor({0, 1, 5}, at::kLong).unsqueeze(0);
  at::Tensor x = torch::zeros({1, 1, 3, 4});
  x.select(3, 0).fill_(1.0);
  at::Tensor rotated = ApplyRotaryEmbedding(x, positions, 10000.0);
  for (int t = 0; t < 3; ++t) {
    const double p = positions[0][t].item<double>();
    EXPECT_NEAR(rotated[0][0][t][0].item<double>(), std::cos(p), 1e-6);
    EXPECT_NEAR(rotated[0][0][t][1].item<double>(), 0.0, 1e-6);
    EXPECT_NEAR(rotated[0][0][t][2].item<double>(), std::sin(p), 1e-6);
    EXPECT_NEAR(rotated[0][0][t][3].item<double>(), 0.0, 1e-6);
  }
  x = torch::zeros({1, 1, 3, 4});
  x.select(3, 1).fill_(1.0);
  rotated = ApplyRotaryEmbedding(x, positions, 10000.0);
  for (int t = 0; t < 3; ++t) {
    const double p = positions[0][t].item<double>() / 100.0;
    EXPECT_NEAR(rotated[0][0][t][1].item<double>(), std::cos(p), 1e-6);
    EXPECT_NEAR(rotated[0][0][t][3].item<double>(), std::sin(p), 1e-6);
  }
}

TEST(RotaryEmbeddingTest, DotProductsDependOnlyOnRelativePosition) {
  torch::manual_seed(1);
  const at::Tensor q = torch::randn({1, 1, 1, 8}, at::kDouble);
  const at::Tensor k = torch::randn({1, 1, 1, 8}, at::kDouble);
  auto score = [&](int64_t query_position, int64_t key_position) {
    const at::Tensor rq = ApplyRotaryEmbedding(
        q, torch::full({1, 1}, query_position, at::kLong), 500.0);
    const at::Tensor rk = ApplyRotaryEmbedding(
        k, torch::full({1, 1}, key_position, at::kLong), 500.0);
    return (rq * rk).sum().item<double>();
  };
  EXPECT_NEAR(score(7, 3), score(14, 10), 1e-5);
  EXPECT_NEAR(score(2, 2), score(30, 30), 1e-5);
}

TEST(LlamaModelTest, ParameterNamesAndShapesAreHuggingFaces) {
  auto model = TinyModel();
  std::map<std::string, std::vector<int64_t>> shapes;
  for (const auto& parameter : model->named_parameters()) {
    shapes[parameter.key()] = parameter.value().sizes().vec();
  }
  std::map<std::string, std::vector<int64_t>> expected = {
      {"model.embed_tokens.weight", {50, 32}},
      {"model.norm.weight", {32}},
      {"lm_head.weight", {50, 32}},
  };
  for (int i = 0; i < 2; ++i) {
    const std::string prefix = "model.layers." + std::to_string(i) + ".";
    expected[prefix + "self_attn.q_proj.weight"] = {32, 32};
    expected[prefix + "self_attn.k_proj.weight"] = {16, 32};
    expected[prefix + "self_attn.v_proj.weight"] = {16, 32};
    expected[prefix + "self_attn.o_proj.weight"] = {32, 32};
    expected[prefix + "mlp.gate_proj.weight"] = {64, 32};
    expected[prefix + "mlp.up_proj.weight"] = {64, 32};
    expected[prefix + "mlp.down_proj.weight"] = {32, 64};
    expected[prefix + "input_layernorm.weight"] = {32};
    expected[prefix + "post_attention_layernorm.weight"] = {32};
  }
  EXPECT_EQ(shapes, expected);
}

TEST(LlamaModelTest, TiedEmbeddingsHaveNoLmHeadAndReuseTheEmbedding) {
  auto model = TinyModel(2, /*tied=*/true);
  for (const auto& parameter : model->named_parameters()) {
    EXPECT_NE(parameter.key(), "lm_head.weight");
  }
  torch::NoGradGuard no_grad;
  const at::Tensor hidden = torch::randn({1, 3, 32});
  const at::Tensor embedding =
      model->named_parameters()["model.embed_tokens.weight"];
  EXPECT_TRUE(torch::allclose(model->Logits(hidden),
                              torch::matmul(hidden, embedding.t())));
}

TEST(LlamaModelTest, IsCausal) {
  auto model = TinyModel();
  torch::NoGradGuard no_grad;
  const at::Tensor a = model->Forward(Ids({5, 9, 2, 33, 12, 7}));
  const at::Tensor b = model->Forward(Ids({5, 9, 2, 40, 1, 49}));
  EXPECT_TRUE(
      torch::allclose(a.narrow(1, 0, 3), b.narrow(1, 0, 3), 1e-5, 1e-6));
  EXPECT_FALSE(
      torch::allclose(a.narrow(1, 3, 1), b.narrow(1, 3, 1), 1e-3, 1e-3));
}

TEST(LlamaModelTest, RightPaddingDoesNotChangeRealPositions) {
  auto model = TinyModel();
  torch::NoGradGuard no_grad;
  const at::Tensor alone = model->Forward(Ids({4, 8, 15}));
  const at::Tensor batch =
      torch::tensor({{4, 8, 15, 0, 0}, {16, 23, 42, 1, 3}}, at::kLong);
  const at::Tensor mask =
      torch::tensor({{1, 1, 1, 0, 0}, {1, 1, 1, 1, 1}}, at::kLong);
  const at::Tensor batched = model->Forward(batch, mask);
  // Shapes differ, so BLAS sums in another order: equal up to rounding.
  EXPECT_TRUE(
      torch::allclose(batched[0].narrow(0, 0, 3), alone[0], 1e-5, 1e-5));
  const at::Tensor second = model->Forward(batch.narrow(0, 1, 1));
  EXPECT_TRUE(torch::allclose(batched[1], second[0], 1e-5, 1e-5));
}

TEST(LlamaModelTest, LeftPaddingWithMaskPositionsMatchesUnpadded) {
  auto model = TinyModel();
  torch::NoGradGuard no_grad;
  const at::Tensor alone = model->Forward(Ids({4, 8, 15}));
  const at::Tensor padded = torch::tensor({{0, 0, 4, 8, 15}}, at::kLong);
  const at::Tensor mask = torch::tensor({{0, 0, 1, 1, 1}}, at::kLong);
  const at::Tensor logits =
      model->Forward(padded, mask, nullptr, PositionIdsFromMask(mask));
  EXPECT_TRUE(torch::allclose(logits[0].narrow(0, 2, 3), alone[0], 1e-5, 1e-5));
}

TEST(LlamaModelTest, GroupedQueryAttentionEqualsMultiHeadWithRepeatedKv) {
  auto grouped = TinyModel(/*kv_heads=*/2);
  torch::manual_seed(0);
  auto full = std::make_shared<LlamaForCausalLM>(TinyConfig(/*kv_heads=*/4));
  {
    torch::NoGradGuard no_grad;
    auto source = grouped->named_parameters();
    for (auto& parameter : full->named_parameters()) {
      const std::string& name = parameter.key();
      at::Tensor weight = source[name];
      if (name.find("k_proj") != std::string::npos ||
          name.find("v_proj") != std::string::npos) {
        // [kv_heads * d, hidden] -> each head's rows repeated twice.
        weight =
            weight.view({2, 1, 8, 32}).expand({2, 2, 8, 32}).reshape({32, 32});
      }
      parameter.value().copy_(weight);
    }
  }
  torch::NoGradGuard no_grad;
  const at::Tensor ids = Ids({3, 1, 4, 1, 5, 9, 2, 6});
  EXPECT_TRUE(
      torch::allclose(grouped->Forward(ids), full->Forward(ids), 1e-5, 1e-6));
}

TEST(LlamaModelTest, GradientsMatchFiniteDifferences) {
  auto model = TinyModel(/*kv_heads=*/2, /*tied=*/true);
  model->to(at::kDouble);
  torch::manual_seed(11);
  const at::Tensor ids = Ids({7, 3, 22, 41, 9});
  const at::Tensor mask = torch::tensor({{1, 1, 1, 1, 0}}, at::kLong);
  const at::Tensor projection = torch::randn({1, 5, 50}, at::kDouble);
  auto loss = [&] { return (model->Forward(ids, mask) * projection).sum(); };

  model->zero_grad();
  loss().backward();
  auto parameters = model->named_parameters();
  for (const std::string name :
       {"model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight",
        "model.layers.1.self_attn.k_proj.weight",
        "model.layers.0.mlp.gate_proj.weight",
        "model.layers.1.post_attention_layernorm.weight",
        "model.norm.weight"}) {
    at::Tensor parameter = parameters[name];
    const at::Tensor flat = parameter.view({-1});
    for (int64_t index : {int64_t{0}, flat.numel() / 2 + 1, flat.numel() - 1}) {
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
      EXPECT_NEAR(analytic, numeric, 1e-6 + 1e-5 * std::abs(numeric))
          << name << "[" << index << "]";
    }
  }
}

TEST(LlamaModelTest, Bf16AutocastForwardIsCloseToFp32) {
  auto model = TinyModel();
  torch::NoGradGuard no_grad;
  const at::Tensor ids = Ids({5, 10, 15, 20, 25, 30, 35, 40});
  const at::Tensor reference = model->Forward(ids);
  at::Tensor autocast;
  {
    CpuBf16AutocastGuard bf16;
    autocast = model->Forward(ids);
  }
  EXPECT_EQ(autocast.scalar_type(), at::kBFloat16);
  const at::Tensor difference =
      (autocast.to(at::kFloat) - reference).abs().max();
  EXPECT_LT(difference.item<float>(),
            0.05f * reference.abs().max().item<float>());
  const at::Tensor agreement =
      (autocast.argmax(-1) == reference.argmax(-1)).to(at::kFloat).mean();
  EXPECT_GE(agreement.item<float>(), 0.75f);
  // The guard restores fp32 execution.
  EXPECT_EQ(model->Forward(ids).scalar_type(), at::kFloat);
}

TEST(LlamaModelTest, OutOfVocabularyIdsThrow) {
  auto model = TinyModel();
  torch::NoGradGuard no_grad;
  EXPECT_THROW(model->Forward(Ids({1, 50})), c10::Error);
}

TEST(LlamaModelTest, UninitializedModelHasTheShapesButTouchesNoMemory) {
  for (const bool tied : {false, true}) {
    LlamaForCausalLM random(TinyConfig(2, tied));
    LlamaForCausalLM empty(TinyConfig(2, tied), ParameterInit::kUninitialized);
    auto empty_parameters = empty.named_parameters();
    ASSERT_EQ(random.named_parameters().keys(), empty_parameters.keys());
    for (const auto& parameter : random.named_parameters()) {
      const at::Tensor& other = empty_parameters[parameter.key()];
      EXPECT_EQ(parameter.value().sizes(), other.sizes()) << parameter.key();
      EXPECT_EQ(other.scalar_type(), at::kFloat);
      EXPECT_TRUE(other.requires_grad()) << parameter.key();
    }
  }
  // About 400 MB of fp32 parameters, none of it written.
  const int64_t before = ProcessMemoryBytes("RssAnon").value_or(-1);
  ASSERT_GE(before, 0);
  LlamaForCausalLM large(Benchmark100MLlamaConfig(),
                         ParameterInit::kUninitialized);
  EXPECT_GT(large.NumParameters(), 90'000'000);
  EXPECT_LT(ProcessMemoryBytes("RssAnon").value_or(-1) - before, 32 << 20);
}

TEST(LlamaModelTest, Bf16ParametersComputeInBf16) {
  auto model = TinyModel();
  torch::NoGradGuard no_grad;
  const at::Tensor ids = torch::tensor({{1, 5, 9, 13}, {2, 4, 6, 8}});
  const at::Tensor mask = torch::tensor({{1, 1, 1, 1}, {0, 0, 1, 1}});
  KvCache cache;
  const at::Tensor reference = model->Forward(ids, mask);
  model->to(at::kBFloat16);
  const at::Tensor logits = model->Forward(ids, mask, &cache);
  EXPECT_EQ(logits.scalar_type(), at::kBFloat16);
  EXPECT_EQ(cache.keys[0].scalar_type(), at::kBFloat16);
  EXPECT_FALSE(logits.isnan().any().item<bool>());
  // Only the real tokens: padded queries see no key.
  const at::Tensor real = mask.to(at::kBool).unsqueeze(-1).expand_as(logits);
  const at::Tensor difference =
      (logits.to(at::kFloat) - reference).masked_select(real).abs().max();
  EXPECT_LT(difference.item<float>(),
            0.05f * reference.abs().max().item<float>());
}

TEST(LlamaModelTest, ProjectionsAreTheDecoderLayersLinears) {
  auto model = TinyModel();
  const std::vector<NamedProjection> projections = model->Projections();
  ASSERT_EQ(projections.size(), 2u * 7u);
  EXPECT_EQ(projections[0].path, "model.layers.0.self_attn.q_proj");
  EXPECT_EQ(projections[0].name, "q_proj");
  EXPECT_EQ(projections[13].path, "model.layers.1.mlp.down_proj");
  EXPECT_EQ(projections[13].layer, 1);
  auto parameters = model->named_parameters();
  for (const NamedProjection& projection : projections) {
    EXPECT_TRUE(projection.projection->linear->weight.is_same(
        parameters[projection.path + ".weight"]))
        << projection.path;
  }
}

// Logits and every parameter's gradient of `model` for a padded batch.
struct ForwardBackward {
  at::Tensor logits;
  std::map<std::string, at::Tensor> grads;
  std::multiset<std::string> graph;
};

ForwardBackward RunForwardBackward(LlamaForCausalLM& model, bool autocast) {
  torch::manual_seed(5);
  const at::Tensor ids =
      torch::tensor({{3, 14, 15, 9, 2, 6}, {5, 3, 5, 8, 9, 7}});
  // Right padding: every query sees some key (a left-padded query sees none
  // and its row is NaN under bf16 autocast).
  const at::Tensor mask =
      torch::tensor({{1, 1, 1, 1, 1, 1}, {1, 1, 1, 1, 0, 0}});
  const at::Tensor probe = torch::randn({2, 6, 50});
  ForwardBackward result;
  {
    CpuBf16AutocastGuard guard(autocast);
    result.logits = model.Forward(ids, mask);
  }
  result.graph = GraphNodes(result.logits);
  model.zero_grad();
  (result.logits.to(at::kFloat) * probe).sum().backward();
  for (const auto& parameter : model.named_parameters()) {
    result.grads[parameter.key()] = parameter.value().grad();
  }
  return result;
}

TEST(LlamaModelTest, ActivationCheckpointingKeepsLogitsAndGradientsBitwise) {
  for (const bool autocast : {false, true}) {
    auto plain = TinyModel();
    auto checkpointed = TinyModel();
    checkpointed->SetActivationCheckpointing(true);
    EXPECT_TRUE(checkpointed->activation_checkpointing());
    const ForwardBackward expected = RunForwardBackward(*plain, autocast);
    const ForwardBackward actual = RunForwardBackward(*checkpointed, autocast);
    EXPECT_TRUE(torch::equal(expected.logits, actual.logits))
        << "autocast " << autocast;
    ASSERT_EQ(expected.grads.size(), actual.grads.size());
    for (const auto& [name, grad] : expected.grads) {
      ASSERT_TRUE(grad.defined()) << name;
      ASSERT_TRUE(actual.grads.at(name).defined()) << name;
      EXPECT_TRUE(torch::equal(grad, actual.grads.at(name)))
          << name << " autocast " << autocast << ": max difference "
          << (grad - actual.grads.at(name)).abs().max().item<float>();
    }
    // One checkpoint node per layer and none of the layers' own operations
    // in the recorded graph (their activations are not kept).
    EXPECT_EQ(CountContaining(expected.graph, "CheckpointFunction"), 0u);
    EXPECT_EQ(CountContaining(actual.graph, "CheckpointFunction"), 2u);
    EXPECT_LT(actual.graph.size() * 3, expected.graph.size());
  }
}

TEST(LlamaModelTest, ActivationCheckpointingIsOffWithACacheOrWithoutGrad) {
  auto model = TinyModel();
  const at::Tensor ids = Ids({4, 8, 15, 16, 23, 42});
  const at::Tensor expected = model->Forward(ids);
  model->SetActivationCheckpointing(true);
  KvCache cache;
  const at::Tensor cached = model->Forward(ids, {}, &cache);
  EXPECT_TRUE(torch::equal(expected, cached));
  EXPECT_EQ(CountContaining(GraphNodes(cached), "CheckpointFunction"), 0u);
  EXPECT_EQ(cache.length(), 6);
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(torch::equal(expected, model->Forward(ids)));
}

// The edit sees each depth's state where it is formed and what it returns
// flows on: an identity edit changes nothing, an edit of the final state
// alone changes exactly the logits' input, and a position-wise edit inside
// the stack gives the same logits with and without a KV cache.
TEST(LlamaModelTest, HiddenStateEditActsAtEachDepth) {
  auto model = TinyModel();
  torch::NoGradGuard no_grad;
  const at::Tensor ids = Ids({4, 8, 15, 16, 23, 42});
  const std::vector<at::Tensor> plain = model->HiddenStatesByDepth(ids);
  const at::Tensor expected = model->Forward(ids);
  const int64_t depths = static_cast<int64_t>(plain.size());
  std::vector<int64_t> seen;
  model->SetHiddenStateEdit([&](int64_t depth, const at::Tensor& hidden) {
    seen.push_back(depth);
    return hidden;
  });
  EXPECT_TRUE(torch::equal(model->Forward(ids), expected));
  std::vector<int64_t> every(depths);
  std::iota(every.begin(), every.end(), 0);
  EXPECT_EQ(seen, every) << "each depth once per pass, in order";

  model->SetHiddenStateEdit([&](int64_t depth, const at::Tensor& hidden) {
    return depth == depths - 1 ? hidden * 2 : hidden;
  });
  EXPECT_TRUE(torch::allclose(model->Forward(ids),
                              model->Logits(plain.back() * 2), 0, 1e-6));
  const std::vector<at::Tensor> edited = model->HiddenStatesByDepth(ids);
  for (int64_t d = 0; d + 1 < depths; ++d) {
    EXPECT_TRUE(torch::equal(edited[d], plain[d])) << d;
  }
  EXPECT_TRUE(torch::allclose(edited.back(), plain.back() * 2, 0, 1e-6));

  model->SetHiddenStateEdit([](int64_t depth, const at::Tensor& hidden) {
    return depth == 1 ? hidden * 0.5 + 0.25 : hidden;
  });
  const at::Tensor whole = model->Forward(ids);
  EXPECT_GT((whole - expected).abs().max().item<double>(), 1e-4);
  KvCache cache;
  model->Forward(ids.slice(1, 0, 4), {}, &cache);
  const at::Tensor last_two = model->Forward(ids.slice(1, 4, 6), {}, &cache);
  EXPECT_TRUE(torch::allclose(last_two, whole.slice(1, 4, 6), 1e-5, 1e-5));

  model->SetHiddenStateEdit({});
  EXPECT_TRUE(torch::equal(model->Forward(ids), expected));
}

// The model's backbone (transformers' LlamaModel), for checks layer by layer.
std::shared_ptr<LlamaBackbone> Backbone(LlamaForCausalLM& model) {
  return std::dynamic_pointer_cast<LlamaBackbone>(
      model.named_children()["model"]);
}

TEST(LlamaModelTest, HiddenStatesByDepthAreTransformersOutputHiddenStates) {
  auto model = TinyModel();
  torch::NoGradGuard no_grad;
  const at::Tensor ids = Ids({4, 8, 15, 16, 23, 42});
  const std::vector<at::Tensor> states = model->HiddenStatesByDepth(ids);
  ASSERT_EQ(states.size(), 3u);  // Two layers.
  for (const at::Tensor& state : states) {
    EXPECT_EQ(state.sizes().vec(), (std::vector<int64_t>{1, 6, 32}));
  }
  // 0: the embedding rows of the ids.
  const at::Tensor embedding =
      model->named_parameters()["model.embed_tokens.weight"];
  EXPECT_TRUE(
      torch::equal(states[0], embedding.index_select(0, ids[0]).unsqueeze(0)));
  // The last: what Forward feeds lm_head, bit for bit.
  EXPECT_TRUE(torch::equal(states[2], model->ForwardHidden(ids)));

  // 1: decoder layer 0 applied to entry 0, with a causal mask and rotary
  // tables built here; 2 is the final norm of layer 1's output, not the raw
  // output.
  const std::shared_ptr<LlamaBackbone> backbone = Backbone(*model);
  ASSERT_NE(backbone, nullptr);
  const at::Tensor positions = torch::arange(6, at::kLong).unsqueeze(0);
  const RotaryTables rotary =
      ComputeRotaryTables(positions, model->config().head_dim(),
                          model->config().rope_theta, at::kFloat);
  const AttentionPattern causal{
      .mask = torch::full({6, 6}, std::numeric_limits<float>::lowest())
                  .triu(1)
                  .view({1, 1, 6, 6})};
  const at::Tensor layer0 = backbone->layers()[0]->Forward(
      states[0], rotary, causal, nullptr, nullptr);
  EXPECT_TRUE(torch::allclose(states[1], layer0, 1e-5, 1e-6));
  const at::Tensor layer1 = backbone->layers()[1]->Forward(
      states[1], rotary, causal, nullptr, nullptr);
  const at::Tensor norm_weight = model->named_parameters()["model.norm.weight"];
  const at::Tensor normed =
      layer1 * torch::rsqrt(layer1.pow(2).mean(-1, /*keepdim=*/true) + 1e-5) *
      norm_weight;
  EXPECT_TRUE(torch::allclose(states[2], normed, 1e-5, 1e-6));
  EXPECT_FALSE(torch::allclose(states[2], layer1, 1e-2, 1e-2));
}

TEST(LlamaModelTest, HiddenStatesByDepthStartWithGemmasScaledEmbeddings) {
  LlamaConfig config = TinyConfig();
  config.model_type = "gemma";
  config.hidden_act = "gelu_pytorch_tanh";
  torch::manual_seed(3);
  LlamaForCausalLM model(config);
  torch::NoGradGuard no_grad;
  const at::Tensor ids = Ids({1, 2, 3});
  const std::vector<at::Tensor> states = model.HiddenStatesByDepth(ids);
  ASSERT_EQ(states.size(), 3u);
  const at::Tensor rows =
      model.named_parameters()["model.embed_tokens.weight"].index_select(
          0, ids[0]);
  // sqrt(32) = 5.657: every entry scaled, not merely looked up.
  EXPECT_TRUE(
      torch::allclose(states[0][0], rows * std::sqrt(32.0), 1e-6, 1e-7));
  EXPECT_FALSE(torch::allclose(states[0][0], rows, 1e-3, 1e-3));
  EXPECT_TRUE(torch::equal(states[2], model.ForwardHidden(ids)));
}

TEST(LlamaModelTest, HiddenStatesByDepthOfPaddedRowsMatchUnpadded) {
  auto model = TinyModel();
  torch::NoGradGuard no_grad;
  const at::Tensor batch =
      torch::tensor({{4, 8, 15, 0, 0}, {16, 23, 42, 1, 3}}, at::kLong);
  const at::Tensor mask =
      torch::tensor({{1, 1, 1, 0, 0}, {1, 1, 1, 1, 1}}, at::kLong);
  const std::vector<at::Tensor> batched =
      model->HiddenStatesByDepth(batch, mask);
  const std::vector<at::Tensor> short_row =
      model->HiddenStatesByDepth(Ids({4, 8, 15}));
  const std::vector<at::Tensor> long_row =
      model->HiddenStatesByDepth(batch.narrow(0, 1, 1));
  ASSERT_EQ(batched.size(), 3u);
  for (size_t depth = 0; depth < batched.size(); ++depth) {
    SCOPED_TRACE(depth);
    EXPECT_EQ(batched[depth].sizes().vec(), (std::vector<int64_t>{2, 5, 32}));
    // Shapes differ, so BLAS sums in another order: equal up to rounding.
    EXPECT_TRUE(torch::allclose(batched[depth][0].narrow(0, 0, 3),
                                short_row[depth][0], 1e-5, 1e-5));
    EXPECT_TRUE(
        torch::allclose(batched[depth][1], long_row[depth][0], 1e-5, 1e-5));
  }
  // Beyond the embeddings, a real row's states depend on its tokens.
  EXPECT_FALSE(torch::allclose(batched[1][0].narrow(0, 0, 3),
                               batched[1][1].narrow(0, 0, 3), 1e-2, 1e-2));
}

}  // namespace
}  // namespace lethe
