#include "libs/model/generation.h"

#include <torch/types.h>

#include <memory>
#include <set>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "libs/model/llama_model.h"
#include "libs/model/tiny_llama.h"

namespace lethe {
namespace {

// A TinyLlamaConfig model with larger weights than the 0.02 initialisation,
// so that its generations depend strongly on its inputs.
std::shared_ptr<LlamaForCausalLM> TinyModel() {
  torch::manual_seed(7);
  auto model = std::make_shared<LlamaForCausalLM>(TinyLlamaConfig(50));
  RedrawWeights(*model, 0.2);
  return model;
}

at::Tensor Ids(std::vector<int64_t> ids) {
  return torch::tensor(ids, at::kLong).unsqueeze(0);
}

TEST(GreedyGenerateTest, KvCacheGenerationEqualsFullForwardArgmax) {
  auto model = TinyModel();
  const std::vector<int64_t> prompt = {1, 17, 29, 3};
  const std::vector<int64_t> cached = GreedyGenerate(*model, prompt, 20, {});
  ASSERT_EQ(cached.size(), 20u);

  torch::NoGradGuard no_grad;
  std::vector<int64_t> sequence = prompt;
  std::vector<int64_t> uncached;
  for (int step = 0; step < 20; ++step) {
    const at::Tensor logits = model->Forward(Ids(sequence));
    const int64_t next = logits[0][-1].argmax().item<int64_t>();
    uncached.push_back(next);
    sequence.push_back(next);
  }
  EXPECT_EQ(cached, uncached);
  // The cached logits themselves agree with the full forward pass.
  KvCache cache;
  model->Forward(Ids(prompt), {}, &cache);
  const at::Tensor step_logits = model->Forward(Ids({cached[0]}), {}, &cache);
  std::vector<int64_t> extended = prompt;
  extended.push_back(cached[0]);
  EXPECT_TRUE(torch::allclose(
      step_logits[0][0], model->Forward(Ids(extended))[0][-1], 1e-4, 1e-5));
}

TEST(GreedyGenerateTest, GenerationStopsAtAStopToken) {
  auto model = TinyModel();
  const std::vector<int64_t> free_run =
      GreedyGenerate(*model, {1, 2, 3}, 8, {});
  const int64_t stop = free_run[2];
  const std::vector<int64_t> stopped =
      GreedyGenerate(*model, {1, 2, 3}, 8, {stop});
  ASSERT_LE(stopped.size(), 3u);
  EXPECT_EQ(stopped.back(), stop);
}

TEST(GreedyGenerateBatchTest, MatchesOneAtATimeTokenForToken) {
  torch::manual_seed(7);
  LlamaConfig config = TinyLlamaConfig(50);
  LlamaForCausalLM model(config);
  model.to(at::kDouble);  // No argmax ties flipped by rounding.
  model.eval();
  const std::vector<std::vector<int64_t>> prompts = {
      {1, 5, 9}, {1, 7}, {1, 3, 4, 20, 11, 6}, {1, 30, 31, 32}, {1}};
  // Stop on tokens that some prompts produce early, so that rows leave their
  // batch at different steps.
  std::vector<std::vector<int64_t>> free_running;
  for (const auto& prompt : prompts) {
    free_running.push_back(GreedyGenerate(model, prompt, 12, {}));
  }
  const std::vector<int64_t> stop_ids = {free_running[0][3],
                                         free_running[2][1]};
  std::vector<std::vector<int64_t>> expected;
  for (const auto& prompt : prompts) {
    expected.push_back(GreedyGenerate(model, prompt, 12, stop_ids));
  }
  std::set<size_t> lengths;
  for (const auto& tokens : expected) lengths.insert(tokens.size());
  EXPECT_GE(lengths.size(), 2u) << "every prompt stopped at the same step";

  for (int batch_size : {1, 2, 5}) {
    absl::StatusOr<std::vector<std::vector<int64_t>>> batched =
        GreedyGenerateBatch(model, prompts, 12, stop_ids, /*pad_id=*/0,
                            batch_size);
    ASSERT_TRUE(batched.ok()) << batched.status();
    EXPECT_EQ(*batched, expected) << "batch size " << batch_size;
  }
}

TEST(GreedyGenerateBatchTest, RejectsEmptyPromptsAndBatches) {
  torch::manual_seed(1);
  LlamaForCausalLM model(TinyLlamaConfig(20));
  EXPECT_EQ(GreedyGenerateBatch(model, {{1}, {}}, 4, {2}, 0, 2).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(GreedyGenerateBatch(model, {{1}}, 4, {2}, 0, 0).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(GreedyGenerateBatchTest, NoNewTokensGivesOneEmptyListPerPrompt) {
  torch::manual_seed(1);
  LlamaForCausalLM model(TinyLlamaConfig(20));
  absl::StatusOr<std::vector<std::vector<int64_t>>> generated =
      GreedyGenerateBatch(model, {{1, 2}, {3}}, 0, {2}, 0, 2);
  ASSERT_TRUE(generated.ok()) << generated.status();
  EXPECT_EQ(*generated, std::vector<std::vector<int64_t>>(2));
}

TEST(GreedyGenerateBatchTest, TokensOutsideTheVocabularyAreAnError) {
  torch::manual_seed(1);
  LlamaForCausalLM model(TinyLlamaConfig(20));
  EXPECT_EQ(GreedyGenerateBatch(model, {{1, 20}}, 4, {2}, 0, 1).status().code(),
            absl::StatusCode::kInternal);
}

TEST(LongestFirstTest, OrdersLongestFirstAndKeepsTiesInIndexOrder) {
  EXPECT_EQ(LongestFirst({3, 5, 3, 1, 5}),
            (std::vector<size_t>{1, 4, 0, 2, 3}));
  EXPECT_EQ(LongestFirst({}), std::vector<size_t>{});
  EXPECT_EQ(LongestFirst({2, 2, 2}), (std::vector<size_t>{0, 1, 2}));
}

}  // namespace
}  // namespace lethe
