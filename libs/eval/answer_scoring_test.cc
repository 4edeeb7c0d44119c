#include "libs/eval/answer_scoring.h"

#include <torch/types.h>

#include <cmath>
#include <cstdint>
#include <memory>
#include <vector>

#include "gtest/gtest.h"
#include "libs/data/qa_example.h"
#include "libs/model/generation.h"
#include "libs/model/llama_model.h"
#include "libs/model/tiny_llama.h"

namespace lethe {
namespace {

constexpr int kPad = 0;

QaExample Example(const std::vector<int>& prompt,
                  const std::vector<int>& answer) {
  QaExample example;
  example.input_ids = prompt;
  example.input_ids.insert(example.input_ids.end(), answer.begin(),
                           answer.end());
  example.labels.assign(prompt.size(), kIgnoreIndex);
  example.labels.insert(example.labels.end(), answer.begin(), answer.end());
  return example;
}

// log p(input_ids[t] | input_ids[:t]) for every t >= 1, by one forward pass
// of `example` alone in float64.
std::vector<double> HandLogProbs(LlamaForCausalLM& model,
                                 const QaExample& example) {
  torch::NoGradGuard no_grad;
  const at::Tensor ids =
      torch::tensor(std::vector<int64_t>(example.input_ids.begin(),
                                         example.input_ids.end()))
          .unsqueeze(0);
  const at::Tensor log_probs =
      torch::log_softmax(model.Forward(ids)[0].to(at::kDouble), -1);
  std::vector<double> result = {0};
  for (size_t t = 1; t < example.input_ids.size(); ++t) {
    result.push_back(log_probs[t - 1][example.input_ids[t]].item<double>());
  }
  return result;
}

class AnswerScoringTest : public testing::Test {
 protected:
  void SetUp() override {
    torch::manual_seed(3);
    model_ = std::make_unique<LlamaForCausalLM>(TinyLlamaConfig(40));
    model_->eval();
  }
  std::unique_ptr<LlamaForCausalLM> model_;
};

TEST(PerTokenSpanTest, CoversTheAnswerButItsLastToken) {
  const AnswerSpan span = PerTokenSpan(Example({1, 3, 4}, {5, 6, 7, 2}));
  EXPECT_EQ(span.start, 3);
  EXPECT_EQ(span.count, 3);
  const AnswerSpan one_token = PerTokenSpan(Example({1, 3}, {2}));
  EXPECT_EQ(one_token.start, 2);
  EXPECT_EQ(one_token.count, 0);
  const AnswerSpan no_answer = PerTokenSpan(Example({1, 3}, {}));
  EXPECT_EQ(no_answer.start, 0);
  EXPECT_EQ(no_answer.count, 0);
  // A label at position 0 has no position before it to predict it from.
  EXPECT_EQ(PerTokenSpan(Example({}, {5, 6, 2})).start, 1);
}

TEST(MinKScoreTest, NegatedMeanOfTheLowestShare) {
  const std::vector<float> values = {-1, -5, -2, -4, -3};
  EXPECT_DOUBLE_EQ(MinKScore(values, 0.4), 4.5);  // int(5 * 0.4) = 2
  EXPECT_DOUBLE_EQ(MinKScore(values, 1.0), 3.0);
  EXPECT_DOUBLE_EQ(MinKScore(values, 0.1), 5.0);        // At least one value.
  EXPECT_DOUBLE_EQ(MinKScore({-1, -2, -6}, 0.5), 6.0);  // int(1.5) = 1
  EXPECT_DOUBLE_EQ(MinKScore({}, 0.4), 0.0);
}

TEST_F(AnswerScoringTest, LossesEqualAHandRunForwardPassInAnyBatching) {
  const std::vector<QaExample> examples = {
      Example({1, 5, 9, 3}, {7, 8, 2}), Example({1, 4}, {6, 2}),
      Example({1, 3, 3, 3, 3, 3}, {11, 12, 13, 2}), Example({1, 5}, {2})};
  for (int batch_size : {1, 3, 4}) {
    absl::StatusOr<std::vector<AnswerScore>> scores =
        ScoreExamples(*model_, examples, kPad, batch_size, /*detailed=*/true);
    ASSERT_TRUE(scores.ok()) << scores.status();
    ASSERT_EQ(scores->size(), examples.size());
    for (size_t i = 0; i < examples.size(); ++i) {
      const QaExample& example = examples[i];
      const std::vector<double> log_probs = HandLogProbs(*model_, example);
      double total = 0;
      for (size_t t = 1; t < example.labels.size(); ++t) {
        if (example.labels[t] != kIgnoreIndex) total -= log_probs[t];
      }
      const double avg_loss = total / example.answer_tokens();
      const AnswerScore& score = (*scores)[i];
      EXPECT_NEAR(score.avg_loss, avg_loss, 1e-5) << i << " " << batch_size;
      EXPECT_NEAR(score.prob, std::exp(-avg_loss), 1e-5);
      const AnswerSpan span = PerTokenSpan(example);
      ASSERT_EQ(score.token_log_probs.size(), static_cast<size_t>(span.count));
      ASSERT_EQ(score.standardized_log_probs.size(),
                static_cast<size_t>(span.count));
      for (int64_t t = 0; t < span.count; ++t) {
        EXPECT_NEAR(score.token_log_probs[t], log_probs[span.start + t], 1e-5);
      }
    }
    // An answer of one token (EOS) has no per-token statistics.
    EXPECT_FALSE(scores->back().exact_memorization.has_value());
    EXPECT_EQ(scores->back().extraction_strength, 0);
  }
}

TEST_F(AnswerScoringTest, UndetailedScoresHaveOnlyTheLoss) {
  absl::StatusOr<std::vector<AnswerScore>> scores = ScoreExamples(
      *model_, {Example({1, 5}, {6, 7, 2})}, kPad, 2, /*detailed=*/false);
  ASSERT_TRUE(scores.ok()) << scores.status();
  EXPECT_GT((*scores)[0].avg_loss, 0);
  EXPECT_TRUE((*scores)[0].token_log_probs.empty());
  EXPECT_FALSE((*scores)[0].exact_memorization.has_value());
}

TEST_F(AnswerScoringTest, MemorizationCountsArgmaxMatches) {
  const std::vector<int64_t> prompt = {1, 5, 9};
  // The model's own greedy continuation: every prediction matches.
  const std::vector<int64_t> greedy = GreedyGenerate(*model_, prompt, 4, {});
  std::vector<int> answer(greedy.begin(), greedy.end());
  answer.push_back(2);  // EOS: labelled, outside the span.
  const std::vector<int> prompt_ids(prompt.begin(), prompt.end());
  // The same with a wrong first token, then the greedy continuation of that.
  const int wrong = (answer[0] + 1) % 40;
  std::vector<int64_t> wrong_prompt = prompt;
  wrong_prompt.push_back(wrong);
  const std::vector<int64_t> rest =
      GreedyGenerate(*model_, wrong_prompt, 3, {});
  std::vector<int> wrong_answer = {wrong};
  wrong_answer.insert(wrong_answer.end(), rest.begin(), rest.end());
  wrong_answer.push_back(2);

  absl::StatusOr<std::vector<AnswerScore>> scores = ScoreExamples(
      *model_, {Example(prompt_ids, answer), Example(prompt_ids, wrong_answer)},
      kPad, 1, /*detailed=*/true);
  ASSERT_TRUE(scores.ok()) << scores.status();
  EXPECT_EQ((*scores)[0].exact_memorization, 1.0);
  EXPECT_EQ((*scores)[0].extraction_strength, 1.0);
  // Matches [0, 1, 1, 1]: 3 of 4, and every prediction matches from 1 on.
  EXPECT_EQ((*scores)[1].exact_memorization, 0.75);
  EXPECT_EQ((*scores)[1].extraction_strength, 0.75);
}

TEST_F(AnswerScoringTest, GradientNormsMatchBackwardAndLeaveGradsAlone) {
  model_->train();
  const QaExample example = Example({1, 5, 9}, {7, 8, 3, 2});
  absl::StatusOr<std::vector<double>> norms =
      GradientNorms(*model_, {example, Example({1, 5}, {2})});
  ASSERT_TRUE(norms.ok()) << norms.status();
  for (const at::Tensor& parameter : model_->parameters()) {
    EXPECT_FALSE(parameter.grad().defined());
  }
  EXPECT_EQ((*norms)[1], 0) << "no tokens in the span";

  // By hand: backward() of -mean log-prob of the span's tokens.
  const at::Tensor ids = torch::tensor({1, 5, 9, 7, 8, 3, 2}, at::kLong);
  const at::Tensor log_probs =
      torch::log_softmax(model_->Forward(ids.unsqueeze(0))[0], -1);
  const at::Tensor loss =
      -(log_probs[2][7] + log_probs[3][8] + log_probs[4][3]) / 3;
  loss.backward();
  double sum = 0;
  int count = 0;
  for (const at::Tensor& parameter : model_->parameters()) {
    sum += parameter.grad().norm(2).item<double>();
    ++count;
  }
  model_->zero_grad();
  EXPECT_NEAR((*norms)[0], sum / count, 1e-5 * sum / count);
}

TEST_F(AnswerScoringTest, GradientNormsNeedTrainableParameters) {
  for (at::Tensor parameter : model_->parameters()) {
    parameter.set_requires_grad(false);
  }
  EXPECT_EQ(GradientNorms(*model_, {Example({1}, {4, 2})}).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace lethe
