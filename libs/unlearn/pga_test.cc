#include "libs/unlearn/pga.h"

#include <torch/torch.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "libs/data/qa_example.h"
#include "libs/eval/memorization_probe.h"
#include "libs/eval/memorization_signature.h"
#include "libs/model/llama_model.h"
#include "libs/model/lora.h"
#include "libs/model/tiny_llama.h"

namespace lethe {
namespace {

constexpr int kPad = 0;

QaExample Example(std::vector<int> ids, int prompt_tokens) {
  QaExample example;
  example.input_ids = ids;
  example.labels = ids;
  for (int t = 0; t < prompt_tokens; ++t) example.labels[t] = kIgnoreIndex;
  return example;
}

// Two layers (depths 0..2), fp64, LoRA on q, v and down with non-zero B.
std::unique_ptr<LlamaForCausalLM> TinyLoraModel() {
  torch::manual_seed(11);
  auto model =
      std::make_unique<LlamaForCausalLM>(LlamaConfigOf({.vocab_size = 32,
                                                        .hidden_size = 16,
                                                        .intermediate_size = 32,
                                                        .layers = 2}));
  RedrawWeights(*model, 0.3);
  model->to(torch::kDouble);
  EXPECT_TRUE(
      AttachLora(*model, {.rank = 4,
                          .alpha = 8,
                          .target_modules = {"q_proj", "v_proj", "down_proj"}})
          .ok());
  torch::NoGradGuard no_grad;
  for (auto& parameter : model->named_parameters()) {
    if (parameter.key().find("lora_B") != std::string::npos) {
      parameter.value().normal_(0, 0.3);
    }
  }
  model->eval();  // No dropout anyway; fixes the mode.
  return model;
}

std::vector<QaExample> Memorised() {
  return {Example({1, 5, 7, 9, 3}, 2), Example({4, 8, 2}, 1),
          Example({6, 6, 11, 13, 17, 19}, 3)};
}
std::vector<QaExample> Clean() {
  return {Example({2, 6, 8}, 1), Example({9, 3, 14, 15, 21}, 2),
          Example({12, 30, 7, 25}, 2)};
}

std::vector<const QaExample*> Pointers(const std::vector<QaExample>& v) {
  std::vector<const QaExample*> out;
  for (const QaExample& e : v) out.push_back(&e);
  return out;
}

at::Tensor Ids(const QaExample& e) {
  return torch::tensor(
             std::vector<int64_t>(e.input_ids.begin(), e.input_ids.end()))
      .unsqueeze(0);
}

// Each sequence alone (no padding), in plain fp64 loops: the loss above.
double ReferenceLoss(LlamaForCausalLM& model,
                     const std::vector<QaExample>& memorised,
                     const std::vector<QaExample>& clean,
                     const std::vector<int>& depths,
                     const std::vector<at::Tensor>& directions, double align_w,
                     double ce_w, double* align_out = nullptr,
                     double* ce_out = nullptr) {
  torch::NoGradGuard no_grad;
  double squares = 0, ce = 0;
  for (size_t i = 0; i < memorised.size(); ++i) {
    const auto hm = model.HiddenStatesByDepth(Ids(memorised[i]));
    const auto hc = model.HiddenStatesByDepth(Ids(clean[i]));
    for (size_t j = 0; j < depths.size(); ++j) {
      const at::Tensor a = hm[depths[j]][0][-1];
      const at::Tensor b = hc[depths[j]][0][-1];
      double dot = 0;
      for (int64_t k = 0; k < a.size(0); ++k) {
        dot += (a[k].item<double>() - b[k].item<double>()) *
               directions[j][k].item<double>();
      }
      squares += dot * dot;
    }
    const at::Tensor logits = model.Forward(Ids(clean[i]))[0];
    double nll = 0;
    int count = 0;
    for (size_t t = 1; t < clean[i].labels.size(); ++t) {
      if (clean[i].labels[t] == kIgnoreIndex) continue;
      const at::Tensor row = logits[t - 1];
      double max = row.max().item<double>(), sum = 0;
      for (int64_t v = 0; v < row.size(0); ++v) {
        sum += std::exp(row[v].item<double>() - max);
      }
      nll += -(row[clean[i].labels[t]].item<double>() - max - std::log(sum));
      ++count;
    }
    ce += nll / count;
  }
  const double align = squares / (memorised.size() * depths.size());
  ce /= memorised.size();
  if (align_out != nullptr) *align_out = align;
  if (ce_out != nullptr) *ce_out = ce;
  return align_w * align + ce_w * ce;
}

PgaProbes RandomProbes(const std::vector<int>& depths, int64_t hidden) {
  PgaProbes probes;
  probes.depths = depths;
  for (size_t j = 0; j < depths.size(); ++j) {
    at::Tensor w = torch::randn({hidden}, torch::kDouble);
    probes.directions.push_back(w / w.norm());
  }
  return probes;
}

TEST(PgaLossTest, MatchesIndependentComputationAndFiniteDifferences) {
  std::unique_ptr<LlamaForCausalLM> model = TinyLoraModel();
  const std::vector<QaExample> memorised = Memorised(), clean = Clean();
  const PgaProbes probes = RandomProbes({1, 2}, 16);
  const PgaParams params{.align_weight = 0.7, .ce_weight = 1.3};
  absl::StatusOr<MicroBatchLoss> loss = PgaLoss(
      *model, Pointers(memorised), Pointers(clean), probes, params, kPad);
  ASSERT_TRUE(loss.ok()) << loss.status();
  double align = 0, ce = 0;
  const double reference =
      ReferenceLoss(*model, memorised, clean, probes.depths, probes.directions,
                    0.7, 1.3, &align, &ce);
  EXPECT_GT(align, 1e-3);  // Not trivially zero.
  EXPECT_NEAR(loss->loss.item<double>(), reference, 1e-11 * reference);
  EXPECT_NEAR(loss->components.at("align"), align, 1e-11 * align);
  EXPECT_NEAR(loss->components.at("ce"), ce, 1e-11 * ce);
  EXPECT_EQ(loss->tokens, 2 + 3 + 2);  // Clean label tokens.

  // Gradient through the adapters against central differences.
  std::vector<at::Tensor> lora;
  for (auto& parameter : model->named_parameters()) {
    if (parameter.key().find("lora_") != std::string::npos) {
      lora.push_back(parameter.value());
    }
  }
  ASSERT_EQ(lora.size(), 2u * 3 * 2);
  loss->loss.backward();
  const double eps = 1e-6;
  int checked = 0;
  for (const at::Tensor& p : {lora[0], lora[1], lora[5], lora[10]}) {
    const at::Tensor flat = p.view(-1);
    const at::Tensor grad = p.grad().view(-1);
    for (int64_t k : {int64_t{0}, flat.numel() / 2, flat.numel() - 1}) {
      const double saved = flat[k].item<double>();
      {
        torch::NoGradGuard no_grad;
        flat[k].fill_(saved + eps);
      }
      const double plus = ReferenceLoss(*model, memorised, clean, probes.depths,
                                        probes.directions, 0.7, 1.3);
      {
        torch::NoGradGuard no_grad;
        flat[k].fill_(saved - eps);
      }
      const double minus = ReferenceLoss(
          *model, memorised, clean, probes.depths, probes.directions, 0.7, 1.3);
      {
        torch::NoGradGuard no_grad;
        flat[k].fill_(saved);
      }
      const double numeric = (plus - minus) / (2 * eps);
      const double analytic = grad[k].item<double>();
      EXPECT_NEAR(analytic, numeric, 1e-6 * std::max(1.0, std::abs(numeric)))
          << "parameter element " << k;
      ++checked;
    }
  }
  EXPECT_EQ(checked, 12);
}

TEST(PgaLossTest, AlignmentIsZeroForEqualStates) {
  std::unique_ptr<LlamaForCausalLM> model = TinyLoraModel();
  const std::vector<QaExample> same = Clean();
  const PgaProbes probes = RandomProbes({0, 1, 2}, 16);
  absl::StatusOr<MicroBatchLoss> loss =
      PgaLoss(*model, Pointers(same), Pointers(same), probes,
              {.align_weight = 1, .ce_weight = 0}, kPad);
  ASSERT_TRUE(loss.ok()) << loss.status();
  EXPECT_LT(std::abs(loss->components.at("align")), 1e-28);
  EXPECT_GT(loss->components.at("ce"), 0);
  EXPECT_LT(std::abs(loss->loss.item<double>()), 1e-28);
}

TEST(PgaLossTest, AlignmentIsZeroForDifferencesOrthogonalToTheProbe) {
  std::unique_ptr<LlamaForCausalLM> model = TinyLoraModel();
  const std::vector<QaExample> memorised = {Memorised()[0]};
  const std::vector<QaExample> clean = {Clean()[0]};
  PgaProbes probes;
  probes.depths = {1, 2};
  {
    torch::NoGradGuard no_grad;
    const auto hm = model->HiddenStatesByDepth(Ids(memorised[0]));
    const auto hc = model->HiddenStatesByDepth(Ids(clean[0]));
    for (const int d : probes.depths) {
      const at::Tensor diff = hm[d][0][-1] - hc[d][0][-1];
      const at::Tensor unit = diff / diff.norm();
      at::Tensor w = torch::randn({16}, torch::kDouble);
      w = w - unit * torch::dot(unit, w);
      probes.directions.push_back(w / w.norm());
    }
  }
  absl::StatusOr<MicroBatchLoss> loss =
      PgaLoss(*model, Pointers(memorised), Pointers(clean), probes,
              {.align_weight = 1, .ce_weight = 1}, kPad);
  ASSERT_TRUE(loss.ok()) << loss.status();
  EXPECT_LT(loss->components.at("align"), 1e-25);
  EXPECT_NEAR(loss->loss.item<double>(), loss->components.at("ce"), 1e-12);
}

// One pair of two features: standardised, the rows are (+1, +1) and
// (-1, -1) whatever the raw values, so the probe's coefficients point along
// (1, 1) and w = normalise(coef / scale) with scale = |mem - clean| / 2.
TEST(PgaProbeTest, DirectionMatchesTheClosedForm) {
  const std::vector<at::Tensor> memorised = {
      torch::zeros({1, 2}, torch::kDouble),
      torch::tensor({{3.0, 10.0}}, torch::kDouble)};
  const std::vector<at::Tensor> clean = {
      torch::zeros({1, 2}, torch::kDouble),
      torch::tensor({{1.0, 2.0}}, torch::kDouble)};
  absl::StatusOr<PgaProbes> probes = FitPgaProbes(memorised, clean, {1});
  ASSERT_TRUE(probes.ok()) << probes.status();
  // scale = (1, 4): w = (1, 1/4) / |(1, 1/4)|.
  const double norm = std::sqrt(1 + 1.0 / 16);
  EXPECT_NEAR(probes->directions[0][0].item<double>(), 1 / norm, 1e-12);
  EXPECT_NEAR(probes->directions[0][1].item<double>(), 0.25 / norm, 1e-12);
  EXPECT_NEAR(probes->probes[0].weight[0].item<double>(),
              probes->probes[0].weight[1].item<double>(), 1e-12);

  absl::StatusOr<ActivationProjection> projection =
      FitActivationProjection(memorised, clean, {1}, 1);
  ASSERT_TRUE(projection.ok()) << projection.status();
  EXPECT_NEAR(projection->basis[0][0][0].item<double>(), std::sqrt(0.5), 1e-12);
  EXPECT_NEAR(projection->basis[0][1][0].item<double>(), std::sqrt(0.5), 1e-12);
  // The memorised and clean rows both map to the mean (2, 6).
  const at::Tensor projected =
      ApplyActivationProjection(*projection, 1, memorised[1]);
  EXPECT_NEAR(projected[0][0].item<double>(), 2, 1e-12);
  EXPECT_NEAR(projected[0][1].item<double>(), 6, 1e-12);
}

struct States {
  std::vector<at::Tensor> memorised, clean;
};

// 12 pairs of 8 features at two depths; memorised rows shifted along a
// few features, every feature on its own scale.
States RandomStates() {
  torch::manual_seed(3);
  const at::Tensor scales =
      torch::tensor({1.0, 5.0, 0.2, 3.0, 1.0, 7.0, 0.5, 2.0}, torch::kDouble);
  States s;
  for (int d = 0; d < 2; ++d) {
    const at::Tensor shift = torch::tensor(
        {1.5, 0.0, -1.0, 0.0, 0.8, 0.0, 0.0, 0.3}, torch::kDouble);
    s.memorised.push_back(
        (torch::randn({12, 8}, torch::kDouble) + shift) * scales + 10);
    s.clean.push_back(torch::randn({12, 8}, torch::kDouble) * scales + 10);
  }
  return s;
}

TEST(PgaProjectionTest, RemovesExactlyTheProbeSubspace) {
  const States s = RandomStates();
  absl::StatusOr<ActivationProjection> projection =
      FitActivationProjection(s.memorised, s.clean, {1}, 3);
  ASSERT_TRUE(projection.ok()) << projection.status();
  const at::Tensor u = projection->basis[0];
  const at::Tensor mu = projection->mean[0];
  const at::Tensor sigma = projection->scale[0];
  ASSERT_EQ(u.size(0), 8);
  ASSERT_EQ(u.size(1), 3);
  EXPECT_LT((torch::matmul(u.t(), u) - torch::eye(3, torch::kDouble))
                .abs()
                .max()
                .item<double>(),
            1e-12);
  // Column 0: the probe's coefficients (standardised space), normalised.
  absl::StatusOr<LogisticProbe> probe =
      FitLogisticProbe(torch::cat({s.memorised[1], s.clean[1]}),
                       torch::cat({torch::ones({12}), torch::zeros({12})}));
  ASSERT_TRUE(probe.ok());
  EXPECT_LT((u.select(1, 0) - probe->weight / probe->weight.norm())
                .abs()
                .max()
                .item<double>(),
            1e-12);
  EXPECT_LT((mu - probe->mean).abs().max().item<double>(), 1e-12);

  const at::Tensor x = torch::randn({5, 8}, torch::kDouble) * 4 + 3;
  const at::Tensor once = ApplyActivationProjection(*projection, 1, x);
  const at::Tensor twice = ApplyActivationProjection(*projection, 1, once);
  EXPECT_LT((twice - once).abs().max().item<double>(), 1e-12);  // Idempotent.
  // Nothing of the subspace is left in the standardised result.
  EXPECT_LT(torch::matmul((once - mu) / sigma, u).abs().max().item<double>(),
            1e-12);
  // The orthogonal complement is untouched.
  const at::Tensor r = torch::randn({5, 8}, torch::kDouble);
  const at::Tensor complement =
      mu + sigma * (r - torch::matmul(torch::matmul(r, u), u.t()));
  EXPECT_LT((ApplyActivationProjection(*projection, 1, complement) - complement)
                .abs()
                .max()
                .item<double>(),
            1e-12);
  // The subspace itself goes to the mean.
  const at::Tensor inside =
      mu + sigma * torch::matmul(torch::randn({5, 3}, torch::kDouble), u.t());
  EXPECT_LT((ApplyActivationProjection(*projection, 1, inside) - mu)
                .abs()
                .max()
                .item<double>(),
            1e-12);
  // Other depths pass through; fp32 stays fp32.
  EXPECT_TRUE(ApplyActivationProjection(*projection, 0, x).is_same(x));
  EXPECT_EQ(ApplyActivationProjection(*projection, 1, x.to(torch::kFloat))
                .scalar_type(),
            torch::kFloat);
}

// Installed on a model, the projection acts inside the forward pass: the
// states the model carries at the projected depth hold nothing of the
// subspace, the other depths before it are untouched, and a model directory
// without a projection installs nothing.
TEST(PgaProjectionTest, InstalledOnAModelItEditsThatDepthsStates) {
  auto model = TinyLoraModel();
  torch::NoGradGuard no_grad;
  const at::Tensor ids = torch::tensor({{1, 5, 7, 9, 3}, {4, 8, 2, 6, 6}});
  const std::vector<at::Tensor> plain = model->HiddenStatesByDepth(ids);
  const at::Tensor logits = model->Forward(ids);
  const States s = RandomStates();  // Width 8: not this model's 16.
  absl::StatusOr<ActivationProjection> narrow =
      FitActivationProjection(s.memorised, s.clean, {1}, 2);
  ASSERT_TRUE(narrow.ok());
  EXPECT_EQ(InstallActivationProjection(*model, *narrow).code(),
            absl::StatusCode::kInvalidArgument);

  auto last_states = [&](const std::vector<QaExample>& examples) {
    auto states = LastTokenHiddenStates(*model, examples, 0, 8);
    EXPECT_TRUE(states.ok()) << states.status();
    return *states;
  };
  absl::StatusOr<ActivationProjection> projection = FitActivationProjection(
      last_states(Memorised()), last_states(Clean()), {1}, 2);
  ASSERT_TRUE(projection.ok()) << projection.status();
  const ActivationProjection kept = *projection;
  ASSERT_TRUE(InstallActivationProjection(*model, *projection).ok());
  const std::vector<at::Tensor> edited = model->HiddenStatesByDepth(ids);
  EXPECT_TRUE(torch::equal(edited[0], plain[0]));
  EXPECT_LT(
      torch::matmul((edited[1] - kept.mean[0]) / kept.scale[0], kept.basis[0])
          .abs()
          .max()
          .item<double>(),
      1e-10);
  EXPECT_LT((edited[1] - ApplyActivationProjection(kept, 1, plain[1]))
                .abs()
                .max()
                .item<double>(),
            1e-12);
  EXPECT_GT((model->Forward(ids) - logits).abs().max().item<double>(), 1e-6);

  const std::string dir = testing::TempDir() + "/pga_install";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  model->SetHiddenStateEdit({});
  absl::StatusOr<bool> none = InstallSavedActivationProjection(*model, dir);
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_FALSE(*none);
  EXPECT_TRUE(torch::equal(model->Forward(ids), logits));
  ASSERT_TRUE(SaveActivationProjection(kept, dir).ok());
  absl::StatusOr<bool> saved = InstallSavedActivationProjection(*model, dir);
  ASSERT_TRUE(saved.ok()) << saved.status();
  EXPECT_TRUE(*saved);
  EXPECT_TRUE(torch::equal(model->HiddenStatesByDepth(ids)[1], edited[1]));
}

TEST(PgaProjectionTest, SaveLoadRoundTripsBitExactly) {
  const States s = RandomStates();
  absl::StatusOr<ActivationProjection> projection =
      FitActivationProjection(s.memorised, s.clean, {0, 1}, 2);
  ASSERT_TRUE(projection.ok()) << projection.status();
  const std::string dir = testing::TempDir() + "/pga_projection_roundtrip";
  std::filesystem::remove_all(dir);
  ASSERT_TRUE(SaveActivationProjection(*projection, dir).ok());
  absl::StatusOr<ActivationProjection> loaded = LoadActivationProjection(dir);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->depths, projection->depths);
  for (size_t j = 0; j < projection->depths.size(); ++j) {
    EXPECT_TRUE(torch::equal(loaded->mean[j], projection->mean[j]));
    EXPECT_TRUE(torch::equal(loaded->scale[j], projection->scale[j]));
    EXPECT_TRUE(torch::equal(loaded->basis[j], projection->basis[j]));
  }
  const at::Tensor x = torch::randn({3, 8}, torch::kDouble);
  EXPECT_TRUE(torch::equal(ApplyActivationProjection(*loaded, 1, x),
                           ApplyActivationProjection(*projection, 1, x)));

  // A config that disagrees with the tensors is refused.
  {
    std::ofstream out(dir + "/" + kPgaProjectionConfig);
    out << R"({"format": "lethe-pga-projection", "version": 1,
              "hidden_size": 8, "depths": [0, 1], "ranks": [2, 3]})";
  }
  absl::StatusOr<ActivationProjection> bad = LoadActivationProjection(dir);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kDataLoss) << bad.status();
  EXPECT_EQ(LoadActivationProjection(dir + "/absent").status().code(),
            absl::StatusCode::kNotFound);
}

TEST(PgaObjectiveTest, RefitsTheProbesEveryKEpochs) {
  std::unique_ptr<LlamaForCausalLM> model = TinyLoraModel();
  absl::StatusOr<std::unique_ptr<PgaObjective>> pga = PgaObjective::Create(
      *model, Memorised(), Clean(), kPad, {.refit_every_epochs = 2});
  ASSERT_TRUE(pga.ok()) << pga.status();
  EXPECT_EQ((*pga)->fitted_epoch(), -1);
  MicroBatchLossFn fn = (*pga)->LossFn();
  for (const auto& [epoch, fitted] :
       std::vector<std::pair<int, int>>{{0, 0}, {1, 0}, {2, 2}, {3, 2}}) {
    absl::StatusOr<MicroBatchLoss> loss = fn({0, 2}, {.epoch = epoch});
    ASSERT_TRUE(loss.ok()) << loss.status();
    EXPECT_TRUE(std::isfinite(loss->loss.item<double>()));
    EXPECT_EQ((*pga)->fitted_epoch(), fitted) << "epoch " << epoch;
  }
  // Default depths: 1..L; unit directions.
  EXPECT_EQ((*pga)->probes().depths, (std::vector<int>{1, 2}));
  for (const at::Tensor& w : (*pga)->probes().directions) {
    EXPECT_NEAR(w.norm().item<double>(), 1, 1e-12);
  }
  // The probes are those of the model's current states.
  absl::StatusOr<PgaProbes> direct =
      FitPgaProbesFromModel(*model, Memorised(), Clean(), kPad, {1, 2});
  ASSERT_TRUE(direct.ok());
  EXPECT_TRUE(torch::allclose(direct->directions[1],
                              (*pga)->probes().directions[1], 0, 1e-12));
}

TEST(PgaInputsTest, MalformedInputsAreRefusedClearly) {
  std::unique_ptr<LlamaForCausalLM> model = TinyLoraModel();
  std::vector<QaExample> two_clean = Clean();
  two_clean.pop_back();
  absl::StatusOr<std::unique_ptr<PgaObjective>> mismatched =
      PgaObjective::Create(*model, Memorised(), two_clean, kPad, {});
  EXPECT_EQ(mismatched.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(mismatched.status().message().find("3 memorised and 2 clean"),
            std::string::npos)
      << mismatched.status();

  absl::StatusOr<std::unique_ptr<PgaObjective>> deep = PgaObjective::Create(
      *model, Memorised(), Clean(), kPad, {.depths = {1, 5}});
  EXPECT_EQ(deep.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(deep.status().message().find("PGA depth 5 is out of range"),
            std::string::npos)
      << deep.status();
  EXPECT_NE(deep.status().message().find("to 2 (the final norm)"),
            std::string::npos);

  EXPECT_FALSE(PgaObjective::Create(*model, Memorised(), Clean(), kPad,
                                    {.depths = {1, 1}})
                   .ok());
  EXPECT_FALSE(PgaObjective::Create(*model, Memorised(), Clean(), kPad,
                                    {.refit_every_epochs = 0})
                   .ok());
  EXPECT_FALSE(PgaObjective::Create(*model, Memorised(), Clean(), kPad,
                                    {.align_weight = -1})
                   .ok());
  std::vector<QaExample> unlabelled = Clean();
  unlabelled[1] = Example({3, 4, 5}, 3);
  absl::StatusOr<std::unique_ptr<PgaObjective>> no_labels =
      PgaObjective::Create(*model, Memorised(), unlabelled, kPad, {});
  EXPECT_NE(no_labels.status().message().find("clean sequence 1 has no label"),
            std::string::npos)
      << no_labels.status();

  absl::StatusOr<std::unique_ptr<PgaObjective>> pga =
      PgaObjective::Create(*model, Memorised(), Clean(), kPad, {});
  ASSERT_TRUE(pga.ok());
  EXPECT_NE((*pga)
                ->Loss({0, 3}, {})
                .status()
                .message()
                .find("pair index 3 is out of range"),
            std::string::npos);

  // Probes of another width, states of mismatched depths, bad ranks.
  EXPECT_FALSE(PgaLoss(*model, Pointers(Memorised()), Pointers(Clean()),
                       RandomProbes({1}, 8), {}, kPad)
                   .ok());
  const States s = RandomStates();
  EXPECT_EQ(FitPgaProbes(s.memorised, {s.clean[0]}, {0}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_NE(FitPgaProbes(s.memorised, s.clean, {2})
                .status()
                .message()
                .find("PGA depth 2 is out of range"),
            std::string::npos);
  EXPECT_FALSE(FitActivationProjection(s.memorised, s.clean, {1}, 0).ok());
  EXPECT_FALSE(FitActivationProjection(s.memorised, s.clean, {1}, 9).ok());
}

}  // namespace
}  // namespace lethe
