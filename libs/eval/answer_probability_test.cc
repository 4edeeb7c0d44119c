#include "libs/eval/answer_probability.h"

#include <cmath>

#include "gtest/gtest.h"
#include "libs/model/tiny_llama.h"

namespace lethe {
namespace {

TEST(ScoreAnswersTest, EqualsExpOfMinusMeanAnswerNllComputedByHand) {
  torch::manual_seed(3);
  LlamaForCausalLM model(LlamaConfigOf({.vocab_size = 20, .kv_heads = 2}));
  const std::vector<QaExample> examples = {
      {.input_ids = {1, 5, 6, 7, 2},
       .labels = {kIgnoreIndex, kIgnoreIndex, 6, 7, 2}},
      {.input_ids = {1, 9, 3, 2}, .labels = {kIgnoreIndex, kIgnoreIndex, 3, 2}},
      {.input_ids = {1, 4, 4, 4, 4, 8, 2},
       .labels = {kIgnoreIndex, kIgnoreIndex, kIgnoreIndex, kIgnoreIndex,
                  kIgnoreIndex, 8, 2}},
  };
  // Batches of 2 pad the second batch differently from the unbatched run.
  absl::StatusOr<std::vector<AnswerProbability>> scores =
      ScoreAnswers(model, examples, 0, {.batch_size = 2});
  ASSERT_TRUE(scores.ok()) << scores.status();
  ASSERT_EQ(scores->size(), 3u);
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < examples.size(); ++i) {
    const QaExample& example = examples[i];
    const at::Tensor logits = model.Forward(
        torch::tensor(std::vector<int64_t>(example.input_ids.begin(),
                                           example.input_ids.end()))
            .unsqueeze(0));
    const at::Tensor log_probs = logits[0].log_softmax(-1);
    double nll = 0;
    int count = 0;
    for (size_t t = 1; t < example.labels.size(); ++t) {
      if (example.labels[t] == kIgnoreIndex) continue;
      nll -= log_probs[t - 1][example.labels[t]].item<double>();
      ++count;
    }
    EXPECT_EQ((*scores)[i].answer_tokens, count);
    EXPECT_NEAR((*scores)[i].avg_loss, nll / count, 1e-5);
    EXPECT_NEAR((*scores)[i].probability, std::exp(-nll / count), 1e-5);
  }
  EXPECT_NEAR(MeanProbability(*scores),
              ((*scores)[0].probability + (*scores)[1].probability +
               (*scores)[2].probability) /
                  3,
              1e-12);
}

}  // namespace
}  // namespace lethe
