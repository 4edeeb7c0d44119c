#include "libs/loss/sequence_loss.h"

#include <cmath>

#include "gtest/gtest.h"
#include "libs/data/qa_example.h"

namespace lethe {
namespace {

// log p(label) by hand: logit - logsumexp(logits), one position at a time.
double HandLogProb(const at::Tensor& logits_row, int64_t label) {
  double max = -1e300;
  for (int64_t v = 0; v < logits_row.size(0); ++v) {
    max = std::max(max, logits_row[v].item<double>());
  }
  double sum = 0;
  for (int64_t v = 0; v < logits_row.size(0); ++v) {
    sum += std::exp(logits_row[v].item<double>() - max);
  }
  return logits_row[label].item<double>() - max - std::log(sum);
}

TEST(SequenceLossTest, MatchesHandComputationWithShiftAndMasking) {
  torch::manual_seed(0);
  const at::Tensor logits = torch::randn({2, 4, 5}, at::kDouble);
  const at::Tensor labels = torch::tensor(
      {{kIgnoreIndex, kIgnoreIndex, 3, 1}, {kIgnoreIndex, 4, 0, kIgnoreIndex}},
      at::kLong);
  // Label at t is predicted by logits at t-1.
  const double row0 =
      HandLogProb(logits[0][1], 3) + HandLogProb(logits[0][2], 1);
  const double row1 =
      HandLogProb(logits[1][0], 4) + HandLogProb(logits[1][1], 0);

  const AnswerLogProbs log_probs = SequenceAnswerLogProbs(logits, labels);
  EXPECT_NEAR(log_probs.summed[0].item<double>(), row0, 1e-12);
  EXPECT_NEAR(log_probs.summed[1].item<double>(), row1, 1e-12);
  EXPECT_EQ(log_probs.token_counts[0].item<int64_t>(), 2);
  EXPECT_EQ(log_probs.token_counts[1].item<int64_t>(), 2);
  EXPECT_NEAR(TokenMeanNll(logits, labels).item<double>(), -(row0 + row1) / 4,
              1e-12);
}

TEST(SequenceLossTest, NoAnswerTokensGivesZeroNotNan) {
  const at::Tensor logits = torch::randn({1, 3, 4});
  const at::Tensor labels = torch::full({1, 3}, kIgnoreIndex, at::kLong);
  EXPECT_EQ(TokenMeanNll(logits, labels).item<float>(), 0.0f);
}

TEST(SequenceLossTest, GradientFlowsOnlyThroughAnswerPositions) {
  const at::Tensor logits =
      torch::randn({1, 4, 6}, at::kDouble).requires_grad_();
  const at::Tensor labels =
      torch::tensor({{kIgnoreIndex, kIgnoreIndex, 2, kIgnoreIndex}}, at::kLong);
  SequenceAnswerLogProbs(logits, labels).summed.sum().backward();
  const at::Tensor grad_norms = logits.grad().abs().sum(-1)[0];
  EXPECT_EQ(grad_norms[0].item<double>(), 0.0);
  EXPECT_GT(grad_norms[1].item<double>(), 0.0);  // Predicts position 2.
  EXPECT_EQ(grad_norms[2].item<double>(), 0.0);
  EXPECT_EQ(grad_norms[3].item<double>(), 0.0);
}

}  // namespace
}  // namespace lethe
