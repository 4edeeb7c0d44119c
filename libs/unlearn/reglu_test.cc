#include "libs/unlearn/reglu.h"

#include <torch/linalg.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "libs/data/qa_batch.h"
#include "libs/loss/sequence_loss.h"
#include "libs/model/lora.h"
#include "libs/model/tiny_llama.h"
#include "libs/unlearn/two_rank_mean_test_util.h"

namespace lethe {
namespace {

// Question/answer examples of different lengths (so batches are padded).
std::vector<QaExample> Examples(int first, int count) {
  std::vector<QaExample> examples;
  for (int i = first; i < first + count; ++i) {
    const int b = 10 + (i * 7) % 29, c = 10 + (i * 11 + 3) % 29;
    QaExample example{.input_ids = {1, 3 + i % 7, b, c},
                      .labels = {kIgnoreIndex, kIgnoreIndex, b, c}};
    for (int extra = 0; extra < i % 3; ++extra) {
      example.input_ids.push_back(5 + (i + extra) % 30);
      example.labels.push_back(example.input_ids.back());
    }
    example.input_ids.push_back(2);
    example.labels.push_back(2);
    examples.push_back(example);
  }
  return examples;
}

// Two layers of width 16 (q_proj 16 outputs, k/v_proj 8, gate/up 32).
std::shared_ptr<LlamaForCausalLM> TinyModel(at::ScalarType dtype) {
  torch::manual_seed(21);
  auto model = std::make_shared<LlamaForCausalLM>(
      LlamaConfigOf({.vocab_size = 40, .layers = 2}));
  RedrawWeights(*model, 0.3);
  model->to(dtype);
  return model;
}

LoraConfig EveryProjection(int64_t rank) {
  return {.rank = rank,
          .alpha = 2.0 * rank,
          .target_modules = LoraTargetableModules()};
}

// The model with adapters on every projection, only they train.
std::shared_ptr<LlamaForCausalLM> AdaptedModel(at::ScalarType dtype,
                                               int64_t rank = 4) {
  auto model = TinyModel(dtype);
  torch::manual_seed(3);
  EXPECT_TRUE(AttachLora(*model, EveryProjection(rank)).ok());
  FreezeAllButLora(*model);
  return model;
}

QaBatch Collated(const std::vector<QaExample>& examples) {
  std::vector<const QaExample*> all;
  for (const QaExample& example : examples) all.push_back(&example);
  return CollateQaBatch(all, 0);
}

at::Tensor Logits(LlamaForCausalLM& model,
                  const std::vector<QaExample>& examples) {
  torch::NoGradGuard no_grad;
  const QaBatch batch = Collated(examples);
  return model.Forward(batch.input_ids, batch.attention_mask);
}

double MaxAbs(const at::Tensor& x) { return x.abs().max().item<double>(); }

RilaOptions Options() {
  return {.beta_r = 0.7,
          .retain_rank = 3,
          .samples = 256,
          .seed = 5,
          .batch_size = 3,
          .pad_id = 0};
}

std::map<std::string, at::Tensor> Snapshot(LlamaForCausalLM& model) {
  std::map<std::string, at::Tensor> snapshot;
  for (const auto& parameter : model.named_parameters()) {
    snapshot[parameter.key()] = parameter.value().detach().clone();
  }
  return snapshot;
}

class RilaTest : public testing::Test {
 protected:
  std::vector<QaExample> forget_ = Examples(0, 10);
  std::vector<QaExample> retain_ = Examples(10, 14);
};

TEST(TopEigenvectorsTest, ClosedFormCases) {
  // R diag(3, 1) R^T with R the rotation by theta: eigenvectors
  // (cos, sin) for 3 and (-sin, cos) for 1; signs make the largest entry
  // positive.
  const double theta = 0.3, c = std::cos(theta), s = std::sin(theta);
  const at::Tensor rotation =
      torch::tensor({c, -s, s, c}, at::kDouble).reshape({2, 2});
  const at::Tensor matrix =
      rotation.mm(torch::diag(torch::tensor({3.0, 1.0}, at::kDouble)))
          .mm(rotation.t());
  const at::Tensor top = TopEigenvectors(matrix, 2);
  const at::Tensor expected =
      torch::tensor({c, -s, s, c}, at::kDouble).reshape({2, 2});
  EXPECT_LT(MaxAbs(top - expected), 1e-14) << top;
  // The negated matrix: the order reverses.
  EXPECT_LT(MaxAbs(TopEigenvectors(-matrix, 1) -
                   torch::tensor({-s, c}, at::kDouble).reshape({2, 1})),
            1e-14);

  // A known spectrum in a random orthonormal basis V, eigenvalues out of
  // order: the top 3 are V's columns 0, 2, 4 (5, 3, 2), up to sign.
  torch::manual_seed(1);
  const at::Tensor v =
      std::get<0>(torch::linalg_qr(torch::randn({5, 5}, at::kDouble)));
  const at::Tensor values =
      torch::tensor({5.0, -1.0, 3.0, 0.5, 2.0}, at::kDouble);
  const at::Tensor spectral = v.mm(torch::diag(values)).mm(v.t());
  const at::Tensor top3 = TopEigenvectors(spectral.to(at::kFloat), 3);
  ASSERT_EQ(top3.scalar_type(), at::kDouble);
  const int64_t columns[] = {0, 2, 4};
  for (int i = 0; i < 3; ++i) {
    const at::Tensor got = top3.select(1, i);
    const at::Tensor want = v.select(1, columns[i]);
    EXPECT_NEAR(std::abs(got.dot(want).item<double>()), 1.0, 1e-6) << i;
    const int64_t pivot = got.abs().argmax().item<int64_t>();
    EXPECT_GT(got[pivot].item<double>(), 0) << "sign rule, column " << i;
  }
  EXPECT_LT(
      MaxAbs(TopEigenvectors(spectral, 3).t().mm(TopEigenvectors(spectral, 3)) -
             torch::eye(3, at::kDouble)),
      1e-12);
}

TEST_F(RilaTest, LeavesTheModelsOutputsUnchanged) {
  // Rank 12 exceeds k_proj/v_proj's 8 outputs: their extra columns are 0.
  for (const int64_t rank : {4, 12}) {
    SCOPED_TRACE(testing::Message() << "rank " << rank);
    auto model = AdaptedModel(at::kDouble, rank);
    const std::vector<QaExample> probe = Examples(40, 6);
    const at::Tensor before = Logits(*model, probe);
    const std::map<std::string, at::Tensor> weights = Snapshot(*model);
    absl::StatusOr<std::shared_ptr<const RilaInit>> init =
        RilaInitialize(*model, forget_, retain_, Options());
    ASSERT_TRUE(init.ok()) << init.status();
    ASSERT_EQ((*init)->layers.size(), 14u);  // 7 projections x 2 layers.
    const at::Tensor after = Logits(*model, probe);
    EXPECT_LT(MaxAbs(after - before), 1e-12 * std::max(1.0, MaxAbs(before)));
    // Not by leaving everything alone: the base moved, B is orthonormal.
    const std::string q = "model.layers.1.self_attn.q_proj";
    EXPECT_GT(MaxAbs(model->named_parameters()[q + ".weight"] -
                     weights.at(q + ".weight")),
              1e-3);
    {
      ScopedLoraDisabled off(*model);
      EXPECT_GT(MaxAbs(Logits(*model, probe) - before), 1e-3);
    }
    for (const RilaLayer& layer : (*init)->layers) {
      const int64_t out = layer.init_b.size(0);
      const at::Tensor gram = layer.init_b.t().mm(layer.init_b);
      at::Tensor expected = torch::zeros({rank, rank}, at::kDouble);
      expected.narrow(0, 0, std::min(rank, out))
          .narrow(1, 0, std::min(rank, out))
          .copy_(torch::eye(std::min(rank, out), at::kDouble));
      EXPECT_LT(MaxAbs(gram - expected), 1e-12) << layer.path;
      EXPECT_TRUE(
          torch::equal(model->named_parameters()[layer.path + ".lora_B.weight"],
                       layer.init_b));
    }
  }
}

TEST_F(RilaTest, Fp32ModelsOutputsAreUnchangedToRounding) {
  auto model = AdaptedModel(at::kFloat);
  const std::vector<QaExample> probe = Examples(40, 6);
  const at::Tensor before = Logits(*model, probe);
  ASSERT_TRUE(RilaInitialize(*model, forget_, retain_, Options()).ok());
  EXPECT_LT(MaxAbs(Logits(*model, probe) - before),
            1e-4 * std::max(1.0, MaxAbs(before)));
}

TEST_F(RilaTest, MatchesAnIndependentComputationOfTheFeatures) {
  // Layer 0's q_proj reads RMSNorm(embedding): its summed outputs, the
  // covariances, Delta and its eigenvectors computed here by loops.
  auto model = AdaptedModel(at::kDouble);
  auto parameters = model->named_parameters();
  const std::string path = "model.layers.0.self_attn.q_proj";
  const at::Tensor w = parameters[path + ".weight"].detach().clone();
  const at::Tensor embedding = parameters["model.embed_tokens.weight"];
  const at::Tensor norm = parameters["model.layers.0.input_layernorm.weight"];
  const double eps = model->config().rms_norm_eps;
  auto features = [&](const std::vector<QaExample>& examples) {
    const int64_t d = w.size(0), n = examples.size();
    at::Tensor h = torch::zeros({n, d}, at::kDouble);
    auto out = h.accessor<double, 2>();
    auto wa = w.accessor<double, 2>();
    for (int64_t s = 0; s < n; ++s) {
      for (const int id : examples[s].input_ids) {
        const at::Tensor x = embedding[id];
        const double rms = 1 / std::sqrt(x.pow(2).mean().item<double>() + eps);
        const at::Tensor normed = x * rms * norm;
        auto xa = normed.accessor<double, 1>();
        for (int64_t i = 0; i < d; ++i) {
          double sum = 0;
          for (int64_t j = 0; j < w.size(1); ++j) sum += wa[i][j] * xa[j];
          out[s][i] += sum;
        }
      }
    }
    return h;
  };
  auto covariance = [](const at::Tensor& h) {
    const int64_t n = h.size(0), d = h.size(1);
    at::Tensor c = torch::zeros({d, d}, at::kDouble);
    auto ca = c.accessor<double, 2>();
    auto ha = h.accessor<double, 2>();
    for (int64_t i = 0; i < d; ++i) {
      for (int64_t j = 0; j < d; ++j) {
        for (int64_t s = 0; s < n; ++s) ca[i][j] += ha[s][i] * ha[s][j];
        ca[i][j] = ca[i][j] / n + (i == j ? 1e-4 : 0);
      }
    }
    return c;
  };
  const at::Tensor forget_h = features(forget_);
  const at::Tensor retain_h = features(retain_);
  const at::Tensor retain_c = covariance(retain_h);
  EXPECT_LT(MaxAbs(RilaCovariance(retain_h) - retain_c), 1e-10);
  const at::Tensor delta = 0.3 * covariance(forget_h) - 0.7 * retain_c;

  // Every sample is measured (256 > both sets): the order does not matter.
  absl::StatusOr<std::shared_ptr<const RilaInit>> init =
      RilaInitialize(*model, forget_, retain_, Options());
  ASSERT_TRUE(init.ok()) << init.status();
  const RilaLayer& layer = (*init)->layers.front();
  ASSERT_EQ(layer.path, path);
  const at::Tensor q = TopEigenvectors(delta, 4);
  EXPECT_LT(MaxAbs(layer.init_b - q), 1e-8) << layer.init_b << q;
  EXPECT_LT(MaxAbs(layer.init_a - q.t().mm(w)), 1e-8);
  EXPECT_LT(MaxAbs(layer.retain_basis - TopEigenvectors(retain_c, 3)), 1e-8);
  EXPECT_LT(MaxAbs(model->named_parameters()[path + ".weight"] -
                   (w - 2.0 * q.mm(q.t()).mm(w))),
            1e-8)
      << "W0 - s B A with s = alpha / r = 2";
}

TEST_F(RilaTest, RolIsZeroForBOrthogonalToTheRetainSubspace) {
  auto model = AdaptedModel(at::kDouble);
  absl::StatusOr<std::shared_ptr<const RilaInit>> init =
      RilaInitialize(*model, forget_, retain_, Options());
  ASSERT_TRUE(init.ok()) << init.status();
  auto parameters = model->named_parameters();
  torch::manual_seed(4);
  {
    torch::NoGradGuard no_grad;
    for (const RilaLayer& layer : (*init)->layers) {
      const at::Tensor& q = layer.retain_basis;
      ASSERT_EQ(q.size(1), 3);
      EXPECT_LT(MaxAbs(q.t().mm(q) - torch::eye(3, at::kDouble)), 1e-12);
      at::Tensor b = parameters[layer.path + ".lora_B.weight"];
      const at::Tensor m = torch::randn_like(b);
      b.copy_(m - q.mm(q.t().mm(m)));
    }
  }
  absl::StatusOr<at::Tensor> rol = RetainOrthogonalLoss(*model, **init);
  ASSERT_TRUE(rol.ok()) << rol.status();
  EXPECT_LT(rol->item<double>(), 1e-24);

  // Any B: the sum of squared entries of B^T Q_R, by loops in double.
  {
    torch::NoGradGuard no_grad;
    for (const RilaLayer& layer : (*init)->layers) {
      parameters[layer.path + ".lora_B.weight"].normal_();
    }
  }
  double expected = 0;
  for (const RilaLayer& layer : (*init)->layers) {
    const at::Tensor b = parameters[layer.path + ".lora_B.weight"];
    auto ba = b.accessor<double, 2>();
    auto qa = layer.retain_basis.accessor<double, 2>();
    for (int64_t i = 0; i < b.size(1); ++i) {
      for (int64_t j = 0; j < layer.retain_basis.size(1); ++j) {
        double dot = 0;
        for (int64_t d = 0; d < b.size(0); ++d) dot += ba[d][i] * qa[d][j];
        expected += dot * dot;
      }
    }
  }
  rol = RetainOrthogonalLoss(*model, **init);
  ASSERT_TRUE(rol.ok()) << rol.status();
  EXPECT_GT(expected, 1.0);
  EXPECT_NEAR(rol->item<double>(), expected, 1e-12 * expected);
}

TEST_F(RilaTest, RegluLossAndGradientMatchIndependentComputations) {
  auto model = AdaptedModel(at::kDouble);
  absl::StatusOr<std::shared_ptr<const RilaInit>> init =
      RilaInitialize(*model, forget_, retain_, Options());
  ASSERT_TRUE(init.ok()) << init.status();
  // Move the adapters off RILA's point, as training would.
  torch::manual_seed(8);
  std::vector<at::Tensor> trainable;
  {
    torch::NoGradGuard no_grad;
    for (auto& [name, tensor] : LoraParameters(*model)) {
      tensor.add_(torch::randn_like(tensor), 0.05);
      trainable.push_back(tensor);
    }
  }
  UnlearningBatch batch;
  batch.forget =
      Collated(std::vector<QaExample>(forget_.begin(), forget_.begin() + 4));
  batch.retain =
      Collated(std::vector<QaExample>(retain_.begin(), retain_.begin() + 4));

  for (const RegluForgetLoss kind :
       {RegluForgetLoss::kIhl, RegluForgetLoss::kGd}) {
    SCOPED_TRACE(RegluForgetLossName(kind));
    ObjectiveParams params = DefaultObjectiveParams(UnlearningMethod::kReglu);
    EXPECT_EQ(params.reglu_rol_weight, 0.5);
    EXPECT_EQ(params.reglu_beta_r, 0.7);
    EXPECT_EQ(params.reglu_retain_rank, 128);
    EXPECT_EQ(params.reglu_samples, 256);
    params.reglu_forget_loss = kind;
    params.alpha = 0.7;
    params.gamma = 1.2;
    auto objective = MakeRegluObjective(params, *init);
    auto data_terms = MakeRegluDataObjective(params);
    ASSERT_TRUE(objective.ok()) << objective.status();
    ASSERT_TRUE(data_terms.ok()) << data_terms.status();

    // The value: data terms + lambda * ROL.
    auto gradients = [&](UnlearningObjective& of) {
      for (at::Tensor& t : trainable) t.mutable_grad() = at::Tensor();
      absl::StatusOr<MicroBatchLoss> loss = of.Loss(*model, batch);
      EXPECT_TRUE(loss.ok()) << loss.status();
      loss->loss.backward();
      std::vector<at::Tensor> grads;
      for (at::Tensor& t : trainable) grads.push_back(t.grad().clone());
      return std::make_pair(*loss, grads);
    };
    const auto [full, full_grads] = gradients(**objective);
    const auto [data, data_grads] = gradients(**data_terms);
    absl::StatusOr<at::Tensor> rol = RetainOrthogonalLoss(*model, **init);
    ASSERT_TRUE(rol.ok());
    EXPECT_GT(rol->item<double>(), 1e-3);
    EXPECT_NEAR(full.components.at("rol"), rol->item<double>(), 1e-12);
    EXPECT_NEAR(full.loss.item<double>(),
                data.loss.item<double>() + 0.5 * rol->item<double>(), 1e-12);
    EXPECT_NEAR(full.loss.item<double>(),
                1.2 * full.components.at("forget_loss") +
                    0.7 * full.components.at("retain_nll") +
                    0.5 * full.components.at("rol"),
                1e-12);

    // ROL's gradient in closed form: 2 lambda Q_R Q_R^T B for each B, 0 for
    // each A (LoraParameters order: A, B per layer).
    for (size_t l = 0; l < (*init)->layers.size(); ++l) {
      const at::Tensor& q = (*init)->layers[l].retain_basis;
      const at::Tensor b = trainable[2 * l + 1].detach();
      EXPECT_LT(MaxAbs(full_grads[2 * l] - data_grads[2 * l]), 1e-12);
      EXPECT_LT(MaxAbs(full_grads[2 * l + 1] - data_grads[2 * l + 1] -
                       2 * 0.5 * q.mm(q.t()).mm(b)),
                1e-12);
    }

    // The whole gradient by central differences along a random direction.
    torch::manual_seed(11);
    std::vector<at::Tensor> directions;
    double projected = 0;
    for (size_t i = 0; i < trainable.size(); ++i) {
      directions.push_back(torch::randn_like(trainable[i]));
      projected += (full_grads[i] * directions.back()).sum().item<double>();
    }
    auto shifted = [&](double h) {
      torch::NoGradGuard no_grad;
      for (size_t i = 0; i < trainable.size(); ++i) {
        trainable[i].add_(directions[i], h);
      }
      const double value =
          (*objective)->Loss(*model, batch)->loss.item<double>();
      for (size_t i = 0; i < trainable.size(); ++i) {
        trainable[i].sub_(directions[i], h);
      }
      return value;
    };
    const double h = 1e-6;
    const double numeric = (shifted(h) - shifted(-h)) / (2 * h);
    EXPECT_NEAR(projected, numeric, 1e-6 * std::max(1.0, std::abs(numeric)));
    EXPECT_GT(std::abs(projected), 1e-3) << "a degenerate direction";
  }
}

TEST_F(RilaTest, TwoDataParallelRanksEndWithTheSameWeights) {
  std::shared_ptr<LlamaForCausalLM> models[2] = {AdaptedModel(at::kDouble),
                                                 AdaptedModel(at::kDouble)};
  auto single = AdaptedModel(at::kDouble);
  TwoRankMean mean;
  absl::Status statuses[2];
  std::shared_ptr<const RilaInit> inits[2];
  std::vector<std::thread> threads;
  for (int rank = 0; rank < 2; ++rank) {
    threads.emplace_back([&, rank] {
      RilaOptions options = Options();
      options.rank = rank;
      options.world_size = 2;
      options.averager = [&mean, rank](std::vector<at::Tensor>& tensors) {
        return mean.Average(rank, tensors);
      };
      absl::StatusOr<std::shared_ptr<const RilaInit>> init =
          RilaInitialize(*models[rank], forget_, retain_, options);
      statuses[rank] = init.status();
      if (init.ok()) inits[rank] = *init;
    });
  }
  for (std::thread& thread : threads) thread.join();
  ASSERT_TRUE(statuses[0].ok()) << statuses[0];
  ASSERT_TRUE(statuses[1].ok()) << statuses[1];
  // Every parameter bit-identical, base weights included, and Q_R too.
  auto rank1 = models[1]->named_parameters();
  for (const auto& parameter : models[0]->named_parameters()) {
    EXPECT_TRUE(torch::equal(parameter.value(), rank1[parameter.key()]))
        << parameter.key();
  }
  for (size_t l = 0; l < inits[0]->layers.size(); ++l) {
    EXPECT_TRUE(torch::equal(inits[0]->layers[l].retain_basis,
                             inits[1]->layers[l].retain_basis));
  }
  // The same initialisation as one process (up to rounding).
  ASSERT_TRUE(RilaInitialize(*single, forget_, retain_, Options()).ok());
  auto one = single->named_parameters();
  for (const auto& parameter : models[0]->named_parameters()) {
    EXPECT_LT(MaxAbs(parameter.value() - one[parameter.key()]), 1e-9)
        << parameter.key();
  }
  // Control: a rank that does not share its features initialises
  // differently (half the samples).
  auto alone = AdaptedModel(at::kDouble);
  RilaOptions unshared = Options();
  unshared.world_size = 2;
  unshared.averager = [](std::vector<at::Tensor>&) { return absl::OkStatus(); };
  ASSERT_TRUE(RilaInitialize(*alone, forget_, retain_, unshared).ok());
  EXPECT_GT(MaxAbs(alone->named_parameters()["model.layers.0.mlp.up_proj."
                                             "lora_B.weight"] -
                   one["model.layers.0.mlp.up_proj.lora_B.weight"]),
            1e-3);
}

TEST_F(RilaTest, UnfoldGivesAPeftAdapterOfTheOriginalBase) {
  auto model = AdaptedModel(at::kDouble);
  const std::map<std::string, at::Tensor> original = Snapshot(*model);
  absl::StatusOr<std::shared_ptr<const RilaInit>> init =
      RilaInitialize(*model, forget_, retain_, Options());
  ASSERT_TRUE(init.ok()) << init.status();
  torch::manual_seed(9);
  {
    torch::NoGradGuard no_grad;  // "Training".
    for (auto& [name, tensor] : LoraParameters(*model)) {
      tensor.add_(torch::randn_like(tensor), 0.1);
    }
  }
  const std::vector<QaExample> probe = Examples(40, 6);
  const at::Tensor trained = Logits(*model, probe);
  const double scale = std::max(1.0, MaxAbs(trained));

  ASSERT_TRUE(UnfoldRila(*model, **init).ok());
  EXPECT_LT(MaxAbs(Logits(*model, probe) - trained), 1e-12 * scale);
  absl::StatusOr<LoraConfig> config = AttachedLoraConfig(*model);
  ASSERT_TRUE(config.ok());
  EXPECT_EQ(config->rank, 8);
  EXPECT_EQ(config->alpha, 16);
  EXPECT_EQ(config->Scaling(), 2);
  // The base is the original again; only adapters differ.
  for (const auto& parameter : model->named_parameters()) {
    if (parameter.key().find("lora_") != std::string::npos) continue;
    EXPECT_LT(MaxAbs(parameter.value() - original.at(parameter.key())), 1e-14)
        << parameter.key();
  }
  {
    // Adapters off: the original model, not RILA's modified base.
    ScopedLoraDisabled off(*model);
    auto fresh = TinyModel(at::kDouble);
    EXPECT_LT(MaxAbs(Logits(*model, probe) - Logits(*fresh, probe)),
              1e-12 * scale);
  }

  // Written in PEFT's format and loaded onto the original base, the adapter
  // reproduces the unlearned model; so does the merged model.
  const std::string dir = testing::TempDir() + "/reglu_adapter";
  std::filesystem::remove_all(dir);
  ASSERT_TRUE(SaveLoraAdapter(*model, dir).ok());
  auto base = TinyModel(at::kDouble);
  ASSERT_TRUE(LoadLoraAdapter(dir, *base).ok());
  EXPECT_LT(MaxAbs(Logits(*base, probe) - trained), 1e-12 * scale);
  ASSERT_TRUE(MergeLora(*model).ok());
  EXPECT_LT(MaxAbs(Logits(*model, probe) - trained), 1e-12 * scale);
}

TEST_F(RilaTest, ClearErrors) {
  auto plain = TinyModel(at::kDouble);
  EXPECT_EQ(RilaInitialize(*plain, forget_, retain_, Options()).status().code(),
            absl::StatusCode::kFailedPrecondition);
  auto model = AdaptedModel(at::kDouble);
  EXPECT_EQ(RilaInitialize(*model, forget_, {}, Options()).status().code(),
            absl::StatusCode::kInvalidArgument);
  RilaOptions options = Options();
  options.world_size = 2;
  absl::Status status =
      RilaInitialize(*model, forget_, retain_, options).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("averager"), std::string::npos) << status;
  EXPECT_EQ(MakeRegluObjective(DefaultObjectiveParams(UnlearningMethod::kReglu),
                               nullptr)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  // ROL on a model whose adapters are not RILA's.
  absl::StatusOr<std::shared_ptr<const RilaInit>> init =
      RilaInitialize(*model, forget_, retain_, Options());
  ASSERT_TRUE(init.ok());
  EXPECT_EQ(RetainOrthogonalLoss(*plain, **init).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(UnfoldRila(*plain, **init).code(),
            absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace lethe
