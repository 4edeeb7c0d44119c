#include "libs/eval/memorization_probe.h"

#include <torch/torch.h>

#include <cmath>

#include "gtest/gtest.h"

namespace lethe {
namespace {

// The root of w - 2 C sigmoid(-w) by bisection: the optimum of
// 0.5 w^2 + 2 C log(1 + e^-w), the probe of one point each side at +-1.
double SymmetricOptimum(double c) {
  double low = 0, high = 2 * c;
  for (int i = 0; i < 200; ++i) {
    const double mid = (low + high) / 2;
    (mid - 2 * c / (1 + std::exp(mid)) > 0 ? high : low) = mid;
  }
  return (low + high) / 2;
}

TEST(MemorizationProbeTest, TwoPointsMatchTheClosedForm) {
  for (const double c : {0.1, 1.0, 10.0}) {
    // Standardised, both row sets are {+1, -1}: the same optimum.
    for (const at::Tensor& rows :
         {torch::tensor({{1.0}, {-1.0}}), torch::tensor({{5.0}, {3.0}})}) {
      absl::StatusOr<LogisticProbe> probe =
          FitLogisticProbe(rows, torch::tensor({1.0, 0.0}), {.c = c});
      ASSERT_TRUE(probe.ok()) << probe.status();
      EXPECT_NEAR(probe->weight[0].item<double>(), SymmetricOptimum(c), 1e-12)
          << c;
      EXPECT_NEAR(probe->bias, 0, 1e-12);
      EXPECT_NEAR(ProbeDirection(*probe)[0].item<double>(), 1, 1e-12);
    }
  }
}

// At the optimum of 0.5 ||w||^2 + C sum(log(1 + e^f) - y f), f = z w + b,
// the gradient in the full d-dimensional space is zero.
void ExpectOptimal(const at::Tensor& rows, const at::Tensor& labels, double c) {
  absl::StatusOr<LogisticProbe> probe =
      FitLogisticProbe(rows, labels, {.c = c});
  ASSERT_TRUE(probe.ok()) << probe.status();
  const at::Tensor z = (rows.to(at::kDouble) - probe->mean) / probe->scale;
  const at::Tensor p =
      torch::sigmoid(torch::mv(z, probe->weight) + probe->bias);
  const at::Tensor residual = p - labels.to(at::kDouble);
  const at::Tensor gradient_w = probe->weight + c * torch::mv(z.t(), residual);
  EXPECT_LT(gradient_w.abs().max().item<double>(), 1e-9);
  EXPECT_LT(std::abs(c * residual.sum().item<double>()), 1e-9);
  EXPECT_GT(probe->weight.norm().item<double>(), 0);
}

TEST(MemorizationProbeTest, GradientVanishesWithMoreFeaturesThanRows) {
  torch::manual_seed(1);
  const at::Tensor rows = torch::randn({12, 50}, at::kDouble);
  const at::Tensor labels = torch::cat(
      {torch::ones({6}, at::kDouble), torch::zeros({6}, at::kDouble)});
  ExpectOptimal(rows, labels, 1.0);
  ExpectOptimal(rows.to(at::kFloat), labels, 0.01);
}

TEST(MemorizationProbeTest, GradientVanishesWithMoreRowsThanFeatures) {
  torch::manual_seed(2);
  const at::Tensor labels = torch::randint(0, 2, {80}).to(at::kDouble);
  // Overlapping classes and one constant feature (scale 1).
  const at::Tensor rows =
      torch::cat({torch::randn({80, 4}, at::kDouble) + labels.unsqueeze(1),
                  torch::full({80, 1}, 3.0, at::kDouble)},
                 1);
  ExpectOptimal(rows, labels, 1.0);
  absl::StatusOr<LogisticProbe> probe = FitLogisticProbe(rows, labels);
  ASSERT_TRUE(probe.ok());
  EXPECT_EQ(probe->scale[4].item<double>(), 1.0);
  EXPECT_EQ(probe->weight[4].item<double>(), 0.0);
}

TEST(MemorizationProbeTest, SeparatedPairsAreFoundAndNoiseIsNearChance) {
  torch::manual_seed(3);
  // Far apart along one of 4 features. (With more noise features than
  // rows, a regularised probe can miss a held-out pair even then.)
  const at::Tensor shift =
      torch::zeros({4}, at::kDouble).index_fill_(0, torch::tensor({2}), 5.0);
  const at::Tensor memorised = torch::randn({20, 4}, at::kDouble) + shift;
  const at::Tensor clean = torch::randn({20, 4}, at::kDouble) - shift;
  absl::StatusOr<double> separated = LeaveOnePairOutAccuracy(memorised, clean);
  ASSERT_TRUE(separated.ok()) << separated.status();
  EXPECT_EQ(*separated, 1.0);

  absl::StatusOr<double> noise = LeaveOnePairOutAccuracy(
      torch::randn({20, 32}, at::kDouble), torch::randn({20, 32}, at::kDouble));
  ASSERT_TRUE(noise.ok()) << noise.status();
  EXPECT_GT(*noise, 0.2);
  EXPECT_LT(*noise, 0.8);
  // Halves of pairs are scored: the accuracy is a multiple of 1 / 40.
  EXPECT_NEAR(*noise * 40, std::round(*noise * 40), 1e-9);
}

TEST(MemorizationProbeTest, BadInputsAreInvalidArguments) {
  const at::Tensor rows = torch::randn({4, 3});
  EXPECT_EQ(FitLogisticProbe(rows, torch::ones({4})).status().code(),
            absl::StatusCode::kInvalidArgument);  // One class.
  EXPECT_EQ(FitLogisticProbe(rows, torch::tensor({0.0, 1.0, 2.0, 1.0}))
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(FitLogisticProbe(rows, torch::ones({3})).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(LeaveOnePairOutAccuracy(rows, torch::randn({3, 3})).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(LeaveOnePairOutAccuracy(torch::randn({1, 3}), torch::randn({1, 3}))
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  at::Tensor with_nan = torch::randn({4, 3});
  with_nan[0][0] = NAN;
  EXPECT_EQ(FitLogisticProbe(with_nan, torch::tensor({0.0, 1.0, 0.0, 1.0}))
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace lethe
