#include "libs/unlearn/trainer.h"

#include <cmath>
#include <vector>

#include "gtest/gtest.h"
#include "libs/data/qa_batch.h"
#include "libs/model/llama_model.h"
#include "libs/unlearn/sequence_loss.h"

namespace lethe {
namespace {

LlamaConfig TinyConfig() {
  LlamaConfig config;
  config.vocab_size = 32;
  config.hidden_size = 16;
  config.intermediate_size = 32;
  config.num_hidden_layers = 1;
  config.num_attention_heads = 2;
  config.num_key_value_heads = 1;
  return config;
}

// Eight examples: a two-token prompt and a three-token answer each, so every
// micro-batch has the same number of answer tokens.
std::vector<QaExample> Examples() {
  std::vector<QaExample> examples;
  for (int i = 0; i < 8; ++i) {
    const int a = 3 + i, b = 11 + (i * 3) % 17, c = 4 + (i * 5) % 23;
    examples.push_back({.input_ids = {1, a, b, c, 2},
                        .labels = {kIgnoreIndex, kIgnoreIndex, b, c, 2}});
  }
  return examples;
}

std::vector<at::Tensor> Snapshot(torch::nn::Module& model) {
  std::vector<at::Tensor> values;
  for (const at::Tensor& parameter : model.parameters()) {
    values.push_back(parameter.detach().clone());
  }
  return values;
}

TEST(LinearWarmupDecayTest, FollowsHuggingFacesSchedule) {
  const std::vector<double> expected = {0.0, 0.5, 1.0, 0.75, 0.5, 0.25, 0.0};
  for (int step = 0; step < 7; ++step) {
    EXPECT_DOUBLE_EQ(LinearWarmupDecay(step, 2, 6), expected[step]) << step;
  }
  EXPECT_DOUBLE_EQ(LinearWarmupDecay(0, 0, 4), 1.0);
}

TEST(TrainerTest, FinetuningMemorisesATinyDataset) {
  torch::manual_seed(0);
  LlamaForCausalLM model(TinyConfig());
  std::vector<StepRecord> steps;
  absl::StatusOr<TrainingSummary> summary = FinetuneOnQa(
      model, Examples(), 0,
      {.learning_rate = 3e-2,
       .weight_decay = 0.0,
       .warmup_epochs = 0,
       .num_epochs = 60,
       .per_device_batch_size = 4,
       .seed = 1,
       .threads = 1},
      {.on_step = [&](const StepRecord& step) { steps.push_back(step); }});
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_EQ(summary->total_steps, 120);
  ASSERT_EQ(steps.size(), 120u);
  EXPECT_EQ(steps.back().step, 120);
  EXPECT_EQ(steps.back().epoch, 59);
  EXPECT_EQ(steps.front().tokens, 20);  // 4 examples x 5 tokens.
  EXPECT_LT(steps.back().loss, 0.05 * steps.front().loss)
      << steps.front().loss << " -> " << steps.back().loss;
  EXPECT_NEAR(steps.back().components.at("nll"), steps.back().loss, 1e-9);
}

TEST(TrainerTest, AccumulationMatchesTheLargerBatch) {
  const std::vector<QaExample> examples = Examples();
  auto train = [&](int batch, int accumulation) {
    torch::manual_seed(5);
    LlamaForCausalLM model(TinyConfig());
    model.to(at::kDouble);
    EXPECT_TRUE(FinetuneOnQa(model, examples, 0,
                             {.learning_rate = 1e-2,
                              .warmup_epochs = 0.5,
                              .num_epochs = 2,
                              .per_device_batch_size = batch,
                              .gradient_accumulation_steps = accumulation,
                              .seed = 3})
                    .ok());
    return Snapshot(model);
  };
  const std::vector<at::Tensor> whole = train(4, 1);
  const std::vector<at::Tensor> accumulated = train(2, 2);
  for (size_t i = 0; i < whole.size(); ++i) {
    EXPECT_TRUE(torch::allclose(whole[i], accumulated[i], 1e-9, 1e-11)) << i;
  }
}

TEST(TrainerTest, SameSeedSameWeightsOtherSeedOtherWeights) {
  auto train = [](uint64_t seed) {
    torch::manual_seed(9);
    LlamaForCausalLM model(TinyConfig());
    EXPECT_TRUE(FinetuneOnQa(model, Examples(), 0,
                             {.learning_rate = 1e-2,
                              .num_epochs = 2,
                              .per_device_batch_size = 3,
                              .seed = seed})
                    .ok());
    return Snapshot(model);
  };
  const std::vector<at::Tensor> first = train(1), again = train(1),
                                other = train(2);
  bool any_difference = false;
  for (size_t i = 0; i < first.size(); ++i) {
    EXPECT_TRUE(torch::equal(first[i], again[i]));
    any_difference |= !torch::equal(first[i], other[i]);
  }
  EXPECT_TRUE(any_difference);
}

TEST(TrainerTest, EpochEndHookSeesCompleteEpochsAndCanStopTheRun) {
  torch::manual_seed(4);
  LlamaForCausalLM model(TinyConfig());
  std::vector<int> epochs;
  std::vector<StepContext> contexts;
  auto loss =
      [&](const std::vector<int64_t>& indices,
          const StepContext& context) -> absl::StatusOr<MicroBatchLoss> {
    contexts.push_back(context);
    std::vector<QaExample> all = Examples();
    std::vector<const QaExample*> batch;
    for (int64_t index : indices) batch.push_back(&all[index]);
    const QaBatch collated = CollateQaBatch(batch, 0);
    return MicroBatchLoss{
        .loss = TokenMeanNll(
            model.Forward(collated.input_ids, collated.attention_mask),
            collated.labels)};
  };
  // 8 examples, batch 4: two steps per epoch; max_steps 5 cuts epoch 2.
  const TrainingOptions options{.learning_rate = 1e-2,
                                .warmup_epochs = 0,
                                .num_epochs = 3,
                                .max_steps = 5,
                                .per_device_batch_size = 4};
  ASSERT_TRUE(RunTraining(model, 8, options, loss,
                          {.on_epoch_end =
                               [&](int epoch) {
                                 epochs.push_back(epoch);
                                 return absl::OkStatus();
                               }})
                  .ok());
  EXPECT_EQ(epochs, (std::vector<int>{0, 1}));
  ASSERT_EQ(contexts.size(), 5u);
  EXPECT_EQ(contexts[4].step, 4);
  EXPECT_EQ(contexts[4].epoch, 2);
  EXPECT_NEAR(contexts[4].learning_rate, 1e-2 * LinearWarmupDecay(4, 0, 5),
              1e-15);

  absl::Status stopped =
      RunTraining(model, 8, options, loss,
                  {.on_epoch_end =
                       [](int) { return absl::CancelledError("stop here"); }})
          .status();
  EXPECT_EQ(stopped.code(), absl::StatusCode::kCancelled);
}

TEST(TrainerTest, WeightDecaySparesNormWeights) {
  torch::manual_seed(2);
  LlamaForCausalLM model(TinyConfig());
  const at::Tensor norm_before =
      model.named_parameters()["model.norm.weight"].detach().clone();
  const at::Tensor embed_before =
      model.named_parameters()["model.embed_tokens.weight"].detach().clone();
  // A loss with zero gradient: only weight decay moves parameters.
  auto zero_loss = [&](const std::vector<int64_t>&,
                       const StepContext&) -> absl::StatusOr<MicroBatchLoss> {
    at::Tensor total = torch::zeros({});
    for (const at::Tensor& parameter : model.parameters()) {
      total = total + 0.0 * parameter.sum();
    }
    return MicroBatchLoss{.loss = total, .tokens = 1};
  };
  ASSERT_TRUE(RunTraining(model, 4,
                          {.learning_rate = 0.1,
                           .weight_decay = 0.5,
                           .warmup_epochs = 0,
                           .num_epochs = 1,
                           .per_device_batch_size = 4},
                          zero_loss)
                  .ok());
  EXPECT_TRUE(
      torch::equal(model.named_parameters()["model.norm.weight"], norm_before));
  EXPECT_TRUE(
      torch::allclose(model.named_parameters()["model.embed_tokens.weight"],
                      embed_before * (1 - 0.1 * 0.5)));
}

TEST(TrainerTest, ReducerSeesEveryGradientOncePerStepAndShardingSplitsData) {
  torch::manual_seed(4);
  LlamaForCausalLM model(TinyConfig());
  int calls = 0;
  size_t gradient_count = 0;
  std::vector<int64_t> seen;
  auto loss = [&](const std::vector<int64_t>& indices,
                  const StepContext&) -> absl::StatusOr<MicroBatchLoss> {
    seen.insert(seen.end(), indices.begin(), indices.end());
    return MicroBatchLoss{.loss = model.parameters()[0].sum() * 0.0,
                          .tokens = 1};
  };
  ASSERT_TRUE(RunTraining(model, 10,
                          {.num_epochs = 1,
                           .per_device_batch_size = 2,
                           .rank = 1,
                           .world_size = 2},
                          loss,
                          {.reduce_gradients =
                               [&](std::vector<at::Tensor>& gradients) {
                                 ++calls;
                                 gradient_count = gradients.size();
                                 return absl::OkStatus();
                               }})
                  .ok());
  EXPECT_EQ(calls, 3);  // ceil(5 examples / 2) micro-batches, one each.
  EXPECT_EQ(gradient_count, model.parameters().size());
  EXPECT_EQ(seen.size(), 5u);  // Rank 1 of 2 sees half of the 10 examples.
}

TEST(TrainerTest, RejectsBadOptions) {
  torch::manual_seed(0);
  LlamaForCausalLM model(TinyConfig());
  auto loss = [](const std::vector<int64_t>&,
                 const StepContext&) -> absl::StatusOr<MicroBatchLoss> {
    return MicroBatchLoss{};
  };
  EXPECT_EQ(RunTraining(model, 0, {}, loss).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      RunTraining(model, 4, {.per_device_batch_size = 0}, loss).status().code(),
      absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      RunTraining(model, 4, {.rank = 2, .world_size = 2}, loss).status().code(),
      absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace lethe
