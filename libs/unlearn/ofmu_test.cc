#include "libs/unlearn/ofmu.h"

#include <cmath>
#include <vector>

#include "gtest/gtest.h"
#include "libs/data/qa_batch.h"
#include "libs/loss/sequence_loss.h"
#include "libs/model/tiny_llama.h"

namespace lethe {
namespace {

using Vectors = std::vector<at::Tensor>;

QaBatch Batch(int offset) {
  std::vector<QaExample> examples;
  for (int i = 0; i < 2; ++i) {
    const int a = 3 + offset + i, b = 9 + offset + 2 * i, c = 17 + i;
    examples.push_back({.input_ids = {1, a, b, c},
                        .labels = {kIgnoreIndex, kIgnoreIndex, b, c}});
  }
  return CollateQaBatch({&examples[0], &examples[1]}, 0);
}

// Plain first-order gradient by backward(), independent of ofmu.cc.
Vectors BackwardGradient(const ScalarLossFn& loss, const Vectors& parameters) {
  for (const at::Tensor& parameter : parameters) {
    if (parameter.grad().defined()) parameter.mutable_grad().zero_();
  }
  loss().backward();
  Vectors gradients;
  for (const at::Tensor& parameter : parameters) {
    gradients.push_back(parameter.grad().defined() ? parameter.grad().clone()
                                                   : at::zeros_like(parameter));
  }
  return gradients;
}

void Shift(const Vectors& parameters, const Vectors& direction, double by) {
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < parameters.size(); ++i) {
    parameters[i].add_(direction[i], by);
  }
}

double Dot(const Vectors& x, const Vectors& y) {
  double sum = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    sum += (x[i] * y[i]).sum().item<double>();
  }
  return sum;
}

Vectors RandomDirection(const Vectors& parameters) {
  Vectors direction;
  for (const at::Tensor& parameter : parameters) {
    direction.push_back(at::randn_like(parameter));
  }
  return direction;
}

class OfmuTest : public testing::Test {
 protected:
  OfmuTest() {
    torch::manual_seed(11);
    model_ = std::make_shared<LlamaForCausalLM>(LlamaConfigOf(
        {.vocab_size = 24, .hidden_size = 8, .intermediate_size = 16}));
    model_->to(at::kDouble);
    parameters_ = TrainableParameters(*model_);
    forget_ = Batch(0);
    retain_ = Batch(4);
    forget_loss_ = [this] { return Nll(forget_); };
    retain_loss_ = [this] { return Nll(retain_); };
  }

  at::Tensor Nll(const QaBatch& batch) {
    return TokenMeanNll(model_->Forward(batch.input_ids, batch.attention_mask),
                        batch.labels);
  }

  // Phi = L_f - beta cos(grad L_f, grad L_r), from backward() gradients.
  double Phi(double beta) {
    const Vectors f = BackwardGradient(forget_loss_, parameters_);
    const Vectors r = BackwardGradient(retain_loss_, parameters_);
    const double cosine = Dot(f, r) / std::sqrt(Dot(f, f) * Dot(r, r));
    torch::NoGradGuard no_grad;
    return forget_loss_().item<double>() - beta * cosine;
  }

  // OFMU's loss for `params` on the fixture's batches, and its gradient.
  std::pair<MicroBatchLoss, Vectors> OfmuLossAndGradient(
      const ObjectiveParams& params) {
    absl::StatusOr<std::unique_ptr<UnlearningObjective>> objective =
        MakeObjective(UnlearningMethod::kOfmu, params, nullptr);
    EXPECT_TRUE(objective.ok()) << objective.status();
    UnlearningBatch batch{.forget = forget_, .retain = retain_};
    absl::StatusOr<MicroBatchLoss> loss = (*objective)->Loss(*model_, batch);
    EXPECT_TRUE(loss.ok()) << loss.status();
    for (const at::Tensor& parameter : parameters_) {
      if (parameter.grad().defined()) parameter.mutable_grad().zero_();
    }
    loss->loss.backward();
    Vectors gradient;
    for (const at::Tensor& parameter : parameters_) {
      gradient.push_back(parameter.grad().clone());
    }
    return {*loss, gradient};
  }

  std::shared_ptr<LlamaForCausalLM> model_;
  Vectors parameters_;
  QaBatch forget_, retain_;
  ScalarLossFn forget_loss_, retain_loss_;
};

TEST_F(OfmuTest, HessianVectorProductMatchesFiniteDifferences) {
  const Vectors v = RandomDirection(parameters_);
  const Vectors exact = HessianVectorProduct(forget_loss_, parameters_, v);
  const double h = 1e-5;
  Shift(parameters_, v, h);
  const Vectors plus = BackwardGradient(forget_loss_, parameters_);
  Shift(parameters_, v, -2 * h);
  const Vectors minus = BackwardGradient(forget_loss_, parameters_);
  Shift(parameters_, v, h);
  double max_error = 0, max_value = 0;
  for (size_t i = 0; i < exact.size(); ++i) {
    const at::Tensor difference = (plus[i] - minus[i]) / (2 * h);
    max_error =
        std::max(max_error, (exact[i] - difference).abs().max().item<double>());
    max_value = std::max(max_value, exact[i].abs().max().item<double>());
  }
  EXPECT_GT(max_value, 1e-3) << "a vanishing Hessian would prove nothing";
  EXPECT_LT(max_error, 1e-6 * std::max(1.0, max_value));

  const Vectors approximate =
      FiniteDifferenceHvp(forget_loss_, parameters_, v, 1e-4);
  for (size_t i = 0; i < exact.size(); ++i) {
    EXPECT_TRUE(at::allclose(approximate[i], exact[i], 1e-4, 1e-6)) << i;
  }
}

TEST_F(OfmuTest, GradientOfPhiMatchesFiniteDifferencesOfPhi) {
  const double beta = 0.8;
  absl::StatusOr<PhiGradient> gradient = ComputePhiGradient(
      forget_loss_, retain_loss_, parameters_, {.beta = beta});
  ASSERT_TRUE(gradient.ok()) << gradient.status();
  EXPECT_GT(std::abs(gradient->cosine), 1e-6);
  for (int trial = 0; trial < 3; ++trial) {
    const Vectors u = RandomDirection(parameters_);
    const double h = 1e-5;
    Shift(parameters_, u, h);
    const double plus = Phi(beta);
    Shift(parameters_, u, -2 * h);
    const double minus = Phi(beta);
    Shift(parameters_, u, h);
    const double numeric = (plus - minus) / (2 * h);
    const double analytic = Dot(gradient->averaged, u);
    EXPECT_NEAR(analytic, numeric, 1e-6 * std::max(1.0, std::abs(numeric)))
        << "trial " << trial;
  }
  // The first-order mode approximates the same vector.
  absl::StatusOr<PhiGradient> approximate =
      ComputePhiGradient(forget_loss_, retain_loss_, parameters_,
                         {.beta = beta, .first_order = true});
  ASSERT_TRUE(approximate.ok());
  for (size_t i = 0; i < parameters_.size(); ++i) {
    EXPECT_TRUE(at::allclose(approximate->averaged[i], gradient->averaged[i],
                             1e-3, 1e-5))
        << i;
  }
}

TEST_F(OfmuTest, WithoutCosineInnerStepsOrPenaltyItIsRetainDescent) {
  ObjectiveParams params = DefaultObjectiveParams(UnlearningMethod::kOfmu);
  params.beta = 0;
  params.ofmu_inner_steps = 0;
  params.ofmu_rho = 0;
  const Vectors ofmu = OfmuLossAndGradient(params).second;
  const Vectors retain = BackwardGradient(retain_loss_, parameters_);
  for (size_t i = 0; i < ofmu.size(); ++i) {
    EXPECT_TRUE(at::allclose(ofmu[i], retain[i], 1e-12, 1e-14)) << i;
  }
}

TEST_F(OfmuTest, OuterGradientIsRetainPlusPenaltyGradient) {
  // beta = 0, T = 0: Phi = L_f, so the outer loss L_r + rho ||grad L_f||^2
  // has gradient grad L_r + 2 rho H_f grad L_f; compare with finite
  // differences of that scalar, in both modes.
  for (bool first_order : {false, true}) {
    ObjectiveParams params = DefaultObjectiveParams(UnlearningMethod::kOfmu);
    params.beta = 0;
    params.ofmu_inner_steps = 0;
    params.ofmu_rho = 0.3;
    params.ofmu_first_order = first_order;
    const auto [loss, gradient] = OfmuLossAndGradient(params);
    auto outer = [&] {
      const Vectors f = BackwardGradient(forget_loss_, parameters_);
      torch::NoGradGuard no_grad;
      return retain_loss_().item<double>() + 0.3 * Dot(f, f);
    };
    EXPECT_NEAR(loss.loss.item<double>(), outer(), 1e-10);
    const Vectors u = RandomDirection(parameters_);
    const double h = 1e-5;
    Shift(parameters_, u, h);
    const double plus = outer();
    Shift(parameters_, u, -2 * h);
    const double minus = outer();
    Shift(parameters_, u, h);
    EXPECT_NEAR(Dot(gradient, u), (plus - minus) / (2 * h),
                (first_order ? 1e-4 : 1e-6) *
                    std::max(1.0, std::abs((plus - minus) / (2 * h))))
        << (first_order ? "first-order" : "exact");
  }
}

TEST_F(OfmuTest, InnerStepsAscendTheForgetLoss) {
  ObjectiveParams params = DefaultObjectiveParams(UnlearningMethod::kOfmu);
  params.ofmu_inner_steps = 3;
  params.ofmu_inner_learning_rate = 0.05;
  params.beta = 0.1;
  absl::StatusOr<std::unique_ptr<UnlearningObjective>> objective =
      MakeObjective(UnlearningMethod::kOfmu, params, nullptr);
  ASSERT_TRUE(objective.ok());
  double before;
  {
    torch::NoGradGuard no_grad;
    before = forget_loss_().item<double>();
  }
  UnlearningBatch batch{.forget = forget_, .retain = retain_};
  ASSERT_TRUE((*objective)->Loss(*model_, batch).ok());
  torch::NoGradGuard no_grad;
  EXPECT_GT(forget_loss_().item<double>(), before + 1e-3);
}

}  // namespace
}  // namespace lethe
