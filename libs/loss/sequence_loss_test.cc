#include "libs/loss/sequence_loss.h"

#include <algorithm>
#include <cmath>
#include <vector>

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

// IHL by hand, in double, from a plain copy of the logits: positions t of
// row b with labels[b][t + 1] != kIgnoreIndex, each contributing
// max(0, 1 + p(y) - max_{v != y} p(v)); the mean over all those positions.
using Logits3 = std::vector<std::vector<std::vector<double>>>;
using Labels2 = std::vector<std::vector<int64_t>>;

std::vector<double> HandSoftmax(const std::vector<double>& z) {
  double max = z[0];
  for (double value : z) max = std::max(max, value);
  double sum = 0;
  for (double value : z) sum += std::exp(value - max);
  std::vector<double> p;
  for (double value : z) p.push_back(std::exp(value - max) / sum);
  return p;
}

double HandIhl(const Logits3& z, const Labels2& labels) {
  double total = 0;
  int count = 0;
  for (size_t b = 0; b < z.size(); ++b) {
    for (size_t t = 0; t + 1 < labels[b].size(); ++t) {
      const int64_t y = labels[b][t + 1];
      if (y == kIgnoreIndex) continue;
      const std::vector<double> p = HandSoftmax(z[b][t]);
      double other = -1;
      for (size_t v = 0; v < p.size(); ++v) {
        if (static_cast<int64_t>(v) != y) other = std::max(other, p[v]);
      }
      total += std::max(0.0, 1 + p[y] - other);
      ++count;
    }
  }
  return count == 0 ? 0 : total / count;
}

Logits3 ToNested(const at::Tensor& logits) {
  Logits3 z(logits.size(0),
            std::vector<std::vector<double>>(
                logits.size(1), std::vector<double>(logits.size(2))));
  for (int64_t b = 0; b < logits.size(0); ++b) {
    for (int64_t t = 0; t < logits.size(1); ++t) {
      for (int64_t v = 0; v < logits.size(2); ++v) {
        z[b][t][v] = logits[b][t][v].item<double>();
      }
    }
  }
  return z;
}

class InvertedHingeTest : public testing::Test {
 protected:
  InvertedHingeTest() {
    torch::manual_seed(5);
    logits_ = torch::randn({2, 5, kVocab}, at::kDouble) * 2;
    // Row 0 has three answer tokens, row 1 one, so a mean of per-sequence
    // means would differ from the per-token mean.
    labels_ = {{kIgnoreIndex, kIgnoreIndex, 3, 1, 4},
               {kIgnoreIndex, 2, kIgnoreIndex, kIgnoreIndex, kIgnoreIndex}};
    // Ties. Row 0, t=1 (label 3): two other tokens share the largest logit.
    logits_[0][1].fill_(-1);
    logits_[0][1][0] = 2.5;
    logits_[0][1][5] = 2.5;
    logits_[0][1][3] = 0.5;
    // Row 0, t=2 (label 1): the label ties with the best other token, so the
    // margin is exactly 0 and the hinge 1 (differentiable: the max runs over
    // the other tokens only).
    logits_[0][2][1] = 3.0;
    logits_[0][2][4] = 3.0;
    // Row 1, t=0 (label 2): every logit equal.
    logits_[1][0].fill_(0.25);
  }

  at::Tensor LabelTensor() const {
    std::vector<int64_t> flat;
    for (const auto& row : labels_)
      flat.insert(flat.end(), row.begin(), row.end());
    return torch::tensor(flat, at::kLong).view({2, 5});
  }

  static constexpr int kVocab = 6;
  at::Tensor logits_;
  Labels2 labels_;
};

TEST_F(InvertedHingeTest, MatchesALoopOverAnswerTokensWithTies) {
  const at::Tensor labels = LabelTensor();
  const double expected = HandIhl(ToNested(logits_), labels_);
  EXPECT_NEAR(InvertedHingeLoss(logits_, labels).item<double>(), expected,
              1e-12);
  const at::Tensor per_token = TokenInvertedHinge(logits_, labels);
  EXPECT_NEAR(per_token[0][2].item<double>(), 1.0, 1e-12)
      << "label tied with the best other token: margin 0";
  EXPECT_NEAR(per_token[1][0].item<double>(), 1.0, 1e-12)
      << "uniform distribution: p(y) = max p(v)";
  EXPECT_EQ(per_token[0][0].item<double>(), 0.0) << "ignored label";
  EXPECT_EQ(per_token[1][3].item<double>(), 0.0) << "ignored label";
  // Per-token, not per-sequence: (h1 + h2 + h3 + h4) / 4.
  const double per_sequence =
      (per_token[0].sum().item<double>() / 3 + per_token[1][0].item<double>()) /
      2;
  EXPECT_GT(std::abs(expected - per_sequence), 1e-3);
  // fp32 logits are computed in fp32 and agree.
  EXPECT_NEAR(InvertedHingeLoss(logits_.to(at::kFloat), labels).item<float>(),
              expected, 1e-6);
  // No answer token: zero, not NaN.
  EXPECT_EQ(
      InvertedHingeLoss(logits_, torch::full({2, 5}, kIgnoreIndex, at::kLong))
          .item<double>(),
      0.0);
}

TEST_F(InvertedHingeTest, GradientMatchesFiniteDifferencesAndSubgradients) {
  const at::Tensor labels = LabelTensor();
  const at::Tensor logits = logits_.clone().requires_grad_();
  InvertedHingeLoss(logits, labels).backward();
  const at::Tensor grad = logits.grad();
  const Logits3 z = ToNested(logits_);
  const double count = 4;
  for (int64_t b = 0; b < 2; ++b) {
    for (int64_t t = 0; t < 5; ++t) {
      const int64_t y = t + 1 < 5 ? labels_[b][t + 1] : kIgnoreIndex;
      if (y == kIgnoreIndex) {
        EXPECT_EQ(grad[b][t].abs().sum().item<double>(), 0.0)
            << "no gradient into logits that predict no answer, " << b << ","
            << t;
        continue;
      }
      const std::vector<double> p = HandSoftmax(z[b][t]);
      double best = -1;
      for (int v = 0; v < kVocab; ++v) {
        if (v != y) best = std::max(best, p[v]);
      }
      std::vector<int> tied;
      for (int v = 0; v < kVocab; ++v) {
        if (v != y && p[v] == best) tied.push_back(v);
      }
      if (tied.size() == 1) {
        // Differentiable here: central finite differences of the loop.
        for (int v = 0; v < kVocab; ++v) {
          const double h = 1e-6;
          Logits3 up = z, down = z;
          up[b][t][v] += h;
          down[b][t][v] -= h;
          const double numeric =
              (HandIhl(up, labels_) - HandIhl(down, labels_)) / (2 * h);
          EXPECT_NEAR(grad[b][t][v].item<double>(), numeric, 1e-8)
              << b << "," << t << "," << v;
        }
        continue;
      }
      // A tie among the other tokens: the max is not differentiable; the
      // gradient must be the derivative with one of the tied tokens as the
      // max, d/dz_j (p_y - p_m) / count.
      bool matched = false;
      for (int m : tied) {
        double error = 0;
        for (int j = 0; j < kVocab; ++j) {
          const double d =
              (p[y] * ((j == y) - p[j]) - p[m] * ((j == m) - p[j])) / count;
          error = std::max(error, std::abs(grad[b][t][j].item<double>() - d));
        }
        matched = matched || error < 1e-12;
      }
      EXPECT_TRUE(matched) << "tie at " << b << "," << t << ": " << grad[b][t];
      EXPECT_GE(tied.size(), 2u);
    }
  }
}

}  // namespace
}  // namespace lethe
