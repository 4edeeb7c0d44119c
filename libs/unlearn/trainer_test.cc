#include "libs/unlearn/trainer.h"

#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "libs/data/qa_batch.h"
#include "libs/data/sharding.h"
#include "libs/loss/sequence_loss.h"
#include "libs/model/llama_model.h"
#include "libs/model/tiny_llama.h"
#include "libs/unlearn/checkpoint.h"

namespace lethe {
namespace {

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

void ExpectSameParameters(torch::nn::Module& expected,
                          torch::nn::Module& actual) {
  auto actual_parameters = actual.named_parameters();
  for (const auto& parameter : expected.named_parameters()) {
    EXPECT_TRUE(
        torch::equal(parameter.value(), actual_parameters[parameter.key()]))
        << parameter.key();
  }
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
  LlamaForCausalLM model(LlamaConfigOf({}));
  std::vector<StepRecord> steps;
  absl::StatusOr<TrainingSummary> summary =
      FinetuneOnQa(model, Examples(), 0,
                   {.learning_rate = 3e-2,
                    .weight_decay = 0.0,
                    .warmup_epochs = 0,
                    .num_epochs = 60,
                    .per_device_batch_size = 4,
                    .seed = 1,
                    .threads = 1},
                   {.on_step = [&](const StepRecord& step) {
                     steps.push_back(step);
                     return absl::OkStatus();
                   }});
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
    LlamaForCausalLM model(LlamaConfigOf({}));
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
    LlamaForCausalLM model(LlamaConfigOf({}));
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
  LlamaForCausalLM model(LlamaConfigOf({}));
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
  LlamaForCausalLM model(LlamaConfigOf({}));
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
  LlamaForCausalLM model(LlamaConfigOf({}));
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

// A BackwardGradientReducer that records when the trainer calls it, checks
// that the loss it is given is the one differentiated next, and leaves
// `scale` times the local gradients (a stand-in for the mean over ranks).
class RecordingReducer : public BackwardGradientReducer {
 public:
  RecordingReducer(std::vector<at::Tensor> parameters,
                   std::vector<std::string>* events, double scale,
                   absl::Status finish_status)
      : parameters_(std::move(parameters)),
        events_(events),
        scale_(scale),
        finish_status_(std::move(finish_status)) {}

  absl::Status PrepareForBackward(const at::Tensor& loss) override {
    events_->push_back("prepare");
    if (!loss.defined() || !loss.requires_grad()) {
      return absl::InternalError("no differentiable loss");
    }
    return absl::OkStatus();
  }
  absl::Status FinishBackward() override {
    events_->push_back("finish");
    torch::NoGradGuard no_grad;
    for (at::Tensor& parameter : parameters_) {
      if (!parameter.grad().defined()) return absl::InternalError("no grad");
      parameter.mutable_grad().mul_(scale_);
    }
    return finish_status_;
  }

 private:
  std::vector<at::Tensor> parameters_;
  std::vector<std::string>* events_;
  double scale_;
  absl::Status finish_status_;
};

TEST(TrainerTest, OverlappedReducerIsArmedForTheLastMicroBatchOnly) {
  torch::manual_seed(4);
  LlamaForCausalLM model(LlamaConfigOf({}));
  // A frozen parameter is not handed to the reducer.
  model.parameters()[1].requires_grad_(false);
  std::vector<std::string> events;
  size_t parameter_count = 0;
  int factory_calls = 0;
  auto loss = [&](const std::vector<int64_t>& indices,
                  const StepContext&) -> absl::StatusOr<MicroBatchLoss> {
    events.push_back("loss");
    return MicroBatchLoss{.loss = model.parameters()[0].sum(), .tokens = 1};
  };
  TrainingHooks hooks{
      .reduce_gradients =
          [&](std::vector<at::Tensor>&) {
            events.push_back("reduce");
            return absl::OkStatus();
          },
      .overlapped_reducer = [&](const std::vector<at::Tensor>& parameters)
          -> absl::StatusOr<std::unique_ptr<BackwardGradientReducer>> {
        ++factory_calls;
        parameter_count = parameters.size();
        for (const at::Tensor& parameter : parameters) {
          if (!parameter.requires_grad()) {
            return absl::InternalError("a frozen parameter");
          }
        }
        return std::make_unique<RecordingReducer>(parameters, &events, 1.0,
                                                  absl::OkStatus());
      }};
  // Rank 1 of 2 gets 8 of the 16 examples: 4 micro-batches, 2 steps (the
  // second of 1 micro-batch).
  ASSERT_TRUE(RunTraining(model, 16,
                          {.num_epochs = 1,
                           .per_device_batch_size = 2,
                           .gradient_accumulation_steps = 3,
                           .rank = 1,
                           .world_size = 2},
                          loss, hooks)
                  .ok());
  EXPECT_EQ(factory_calls, 1);
  EXPECT_EQ(parameter_count, model.parameters().size() - 1);
  const std::vector<std::string> expected = {
      "loss", "loss", "loss", "prepare", "finish", "loss", "prepare", "finish"};
  EXPECT_EQ(events, expected);
}

TEST(TrainerTest, TheOverlappedReducersGradientsAreTheOnesApplied) {
  torch::manual_seed(4);
  LlamaForCausalLM model(LlamaConfigOf({}));
  const std::vector<at::Tensor> before = Snapshot(model);
  std::vector<std::string> events;
  auto identity = [](std::vector<at::Tensor>&) { return absl::OkStatus(); };
  // Zeroed gradients: AdamW without weight decay leaves the weights alone.
  TrainingHooks hooks{
      .reduce_gradients = identity,
      .overlapped_reducer = [&](const std::vector<at::Tensor>& parameters)
          -> absl::StatusOr<std::unique_ptr<BackwardGradientReducer>> {
        return std::make_unique<RecordingReducer>(parameters, &events, 0.0,
                                                  absl::OkStatus());
      }};
  const TrainingOptions options{.learning_rate = 1e-2,
                                .weight_decay = 0,
                                .warmup_epochs = 0,
                                .num_epochs = 1,
                                .per_device_batch_size = 2,
                                .threads = 1};
  ASSERT_TRUE(FinetuneOnQa(model, Examples(), 0, options, hooks).status().ok());
  const std::vector<at::Tensor> after = Snapshot(model);
  for (size_t i = 0; i < before.size(); ++i) {
    EXPECT_TRUE(torch::equal(before[i], after[i])) << i;
  }
  // Its error stops the run.
  hooks.overlapped_reducer = [&](const std::vector<at::Tensor>& parameters)
      -> absl::StatusOr<std::unique_ptr<BackwardGradientReducer>> {
    return std::make_unique<RecordingReducer>(
        parameters, &events, 1.0, absl::UnavailableError("peer gone"));
  };
  EXPECT_EQ(FinetuneOnQa(model, Examples(), 0, options, hooks).status().code(),
            absl::StatusCode::kUnavailable);
  // Data-parallel runs need reduce_gradients too, for the resume check.
  hooks.reduce_gradients = nullptr;
  TrainingOptions two_ranks = options;
  two_ranks.world_size = 2;
  EXPECT_EQ(
      FinetuneOnQa(model, Examples(), 0, two_ranks, hooks).status().code(),
      absl::StatusCode::kInvalidArgument);
}

TEST(TrainerTest, LengthGroupingGivesEachStepOneBlockOfTheGroupedOrder) {
  // 2 ranks x batch 3: each step's two micro-batches together are one block
  // of 6 positions of LengthGroupedPermutation, split as RankShard splits.
  std::vector<int64_t> lengths(24);
  for (int64_t i = 0; i < 24; ++i) lengths[i] = (i * 7) % 24;
  std::vector<std::vector<int64_t>> batches[2];
  for (int rank = 0; rank < 2; ++rank) {
    torch::manual_seed(4);
    LlamaForCausalLM model(LlamaConfigOf({}));
    auto loss = [&](const std::vector<int64_t>& indices,
                    const StepContext&) -> absl::StatusOr<MicroBatchLoss> {
      batches[rank].push_back(indices);
      return MicroBatchLoss{.loss = model.parameters()[0].sum() * 0.0,
                            .tokens = 1};
    };
    ASSERT_TRUE(RunTraining(model, 24,
                            {.num_epochs = 2,
                             .per_device_batch_size = 3,
                             .seed = 8,
                             .rank = rank,
                             .world_size = 2,
                             .example_lengths = lengths,
                             .length_window_batches = 2},
                            loss)
                    .ok());
  }
  ASSERT_EQ(batches[0].size(), 8u);
  ASSERT_EQ(batches[1].size(), 8u);
  for (int epoch = 0; epoch < 2; ++epoch) {
    const std::vector<int64_t> order =
        LengthGroupedPermutation(lengths, 8, epoch, 6, 2);
    for (int step = 0; step < 4; ++step) {
      const std::vector<int64_t> block(order.begin() + 6 * step,
                                       order.begin() + 6 * step + 6);
      const int64_t k = epoch * 4 + step;
      EXPECT_EQ(batches[0][k],
                (std::vector<int64_t>{block[0], block[2], block[4]}));
      EXPECT_EQ(batches[1][k],
                (std::vector<int64_t>{block[1], block[3], block[5]}));
    }
  }
}

// Token-mean NLL of the examples at `indices`, times a factor drawn from
// LibTorch's global generator (as dropout would), so that resuming must
// reproduce the generator's state too.
MicroBatchLossFn NoisyNll(LlamaForCausalLM& model,
                          std::vector<StepContext>* contexts = nullptr) {
  return [&model, contexts](
             const std::vector<int64_t>& indices,
             const StepContext& context) -> absl::StatusOr<MicroBatchLoss> {
    if (contexts != nullptr) contexts->push_back(context);
    static const std::vector<QaExample> all = Examples();
    std::vector<const QaExample*> batch;
    for (int64_t index : indices) batch.push_back(&all[index]);
    const QaBatch collated = CollateQaBatch(batch, 0);
    const at::Tensor nll =
        TokenMeanNll(model.Forward(collated.input_ids, collated.attention_mask),
                     collated.labels);
    return MicroBatchLoss{.loss = nll * (1 + 0.1 * torch::rand({})),
                          .tokens = collated.real_tokens()};
  };
}

std::string FreshDir(const std::string& name) {
  const std::string dir = testing::TempDir() + "/trainer_test_" + name;
  std::filesystem::remove_all(dir);
  return dir;
}

struct ResumeCase {
  int batch, accumulation, epochs;
  int64_t max_steps;
};

TEST(TrainerResumeTest, InterruptedAndResumedRunEndsWithTheSameWeights) {
  // 8 examples. Batch 2, no accumulation: 4 steps per epoch, so the
  // checkpoint of step 2 is mid-epoch. Batch 3 accumulating 2: micro-batches
  // of 3, 3, 2 examples, 2 steps per epoch, so it is at an epoch boundary.
  for (const ResumeCase& test_case :
       {ResumeCase{2, 1, 2, 6}, ResumeCase{3, 2, 3, 0}}) {
    SCOPED_TRACE(testing::Message()
                 << "batch " << test_case.batch << ", accumulation "
                 << test_case.accumulation);
    const std::string dir = FreshDir("resume");
    TrainingOptions options{
        .learning_rate = 1e-2,
        .weight_decay = 0.01,
        .warmup_epochs = 0.5,
        .num_epochs = test_case.epochs,
        .max_steps = test_case.max_steps,
        .per_device_batch_size = test_case.batch,
        .gradient_accumulation_steps = test_case.accumulation,
        .seed = 11,
        .threads = 1};

    torch::manual_seed(7);
    LlamaForCausalLM uninterrupted(LlamaConfigOf({}));
    std::vector<StepContext> contexts;
    absl::StatusOr<TrainingSummary> whole = RunTraining(
        uninterrupted, 8, options, NoisyNll(uninterrupted, &contexts));
    ASSERT_TRUE(whole.ok()) << whole.status();
    ASSERT_EQ(whole->steps.size(), 6u);
    EXPECT_TRUE(whole->last_checkpoint.empty());

    options.checkpoint = {.dir = dir, .every_steps = 2};
    torch::manual_seed(7);
    LlamaForCausalLM interrupted(LlamaConfigOf({}));
    absl::Status stopped =
        RunTraining(interrupted, 8, options, NoisyNll(interrupted),
                    {.on_step =
                         [](const StepRecord& step) {
                           return step.step == 3
                                      ? absl::AbortedError("simulated crash")
                                      : absl::OkStatus();
                         }})
            .status();
    EXPECT_EQ(stopped.code(), absl::StatusCode::kAborted) << stopped;
    EXPECT_EQ(ListCheckpointSteps(dir), (std::vector<int64_t>{2}));

    // A restarted process: other initial weights, same options.
    torch::manual_seed(8);
    LlamaForCausalLM resumed(LlamaConfigOf({}));
    std::vector<StepContext> resumed_contexts;
    absl::StatusOr<TrainingSummary> rest =
        RunTraining(resumed, 8, options, NoisyNll(resumed, &resumed_contexts));
    ASSERT_TRUE(rest.ok()) << rest.status();
    EXPECT_EQ(rest->resumed_from_step, 2);
    EXPECT_EQ(rest->resumed_from, CheckpointDirectory(dir, 2));
    EXPECT_TRUE(rest->checkpoint_warnings.empty());
    ASSERT_EQ(rest->steps.size(), 4u);
    EXPECT_EQ(rest->total_steps, 6);
    EXPECT_EQ(rest->steps.back().total_steps, 6);
    for (size_t i = 0; i < rest->steps.size(); ++i) {
      const StepRecord& expected = whole->steps[i + 2];
      EXPECT_EQ(rest->steps[i].step, expected.step);
      EXPECT_EQ(rest->steps[i].epoch, expected.epoch);
      EXPECT_EQ(rest->steps[i].loss, expected.loss) << expected.step;
      EXPECT_EQ(rest->steps[i].learning_rate, expected.learning_rate);
    }
    EXPECT_EQ(rest->steps[1].checkpoint, CheckpointDirectory(dir, 4));
    EXPECT_EQ(rest->last_checkpoint, CheckpointDirectory(dir, 6));
    EXPECT_EQ(ListCheckpointSteps(dir), (std::vector<int64_t>{4, 6}));
    // The micro-batches the resumed run saw are the uninterrupted run's
    // last ones, with the same contexts.
    ASSERT_LE(resumed_contexts.size(), contexts.size());
    const size_t offset = contexts.size() - resumed_contexts.size();
    for (size_t i = 0; i < resumed_contexts.size(); ++i) {
      EXPECT_EQ(resumed_contexts[i].step, contexts[offset + i].step);
      EXPECT_EQ(resumed_contexts[i].epoch, contexts[offset + i].epoch);
      EXPECT_EQ(resumed_contexts[i].micro_batch,
                contexts[offset + i].micro_batch);
    }
    ExpectSameParameters(uninterrupted, resumed);

    // Restarting a finished run changes nothing.
    absl::StatusOr<TrainingSummary> again =
        RunTraining(resumed, 8, options, NoisyNll(resumed));
    ASSERT_TRUE(again.ok()) << again.status();
    EXPECT_EQ(again->resumed_from_step, 6);
    EXPECT_TRUE(again->steps.empty());
    ExpectSameParameters(uninterrupted, resumed);
  }
}

TEST(TrainerResumeTest, MicroBatchIndexCountsWithinTheEpoch) {
  torch::manual_seed(4);
  LlamaForCausalLM model(LlamaConfigOf({}));
  std::vector<StepContext> contexts;
  ASSERT_TRUE(RunTraining(model, 8,
                          {.num_epochs = 2,
                           .per_device_batch_size = 3,
                           .gradient_accumulation_steps = 2,
                           .threads = 1},
                          NoisyNll(model, &contexts))
                  .ok());
  std::vector<int64_t> micro_batches, steps;
  for (const StepContext& context : contexts) {
    micro_batches.push_back(context.micro_batch);
    steps.push_back(context.step);
  }
  EXPECT_EQ(micro_batches, (std::vector<int64_t>{0, 1, 2, 0, 1, 2}));
  EXPECT_EQ(steps, (std::vector<int64_t>{0, 0, 1, 2, 2, 3}));
}

TEST(TrainerResumeTest, ResumingAnotherModelOrRunFailsClearly) {
  const std::string dir = FreshDir("mismatch");
  const TrainingOptions options{.learning_rate = 1e-2,
                                .num_epochs = 1,
                                .per_device_batch_size = 4,
                                .seed = 1,
                                .threads = 1,
                                .checkpoint = {.dir = dir}};
  torch::manual_seed(4);
  LlamaForCausalLM model(LlamaConfigOf({}));
  ASSERT_TRUE(RunTraining(model, 8, options, NoisyNll(model)).ok());
  ASSERT_EQ(ListCheckpointSteps(dir), (std::vector<int64_t>{2}));

  LlamaConfig wider_config = LlamaConfigOf({});
  wider_config.hidden_size = 32;
  LlamaForCausalLM wider(wider_config);
  absl::Status status =
      RunTraining(wider, 8, options, NoisyNll(wider)).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
  EXPECT_NE(status.message().find("model.safetensors"), std::string::npos)
      << status;
  EXPECT_NE(status.message().find("model.embed_tokens.weight"),
            std::string::npos)
      << status;

  TrainingOptions other_seed = options;
  other_seed.seed = 2;
  status = RunTraining(model, 8, other_seed, NoisyNll(model)).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
  EXPECT_NE(status.message().find("seed"), std::string::npos) << status;
}

TEST(TrainerResumeTest, RanksThatResumedFromDifferentStepsFailClearly) {
  const std::string dir = FreshDir("ranks");
  TrainingOptions options{.num_epochs = 1,
                          .per_device_batch_size = 2,
                          .threads = 1,
                          .rank = 0,
                          .world_size = 2,
                          .checkpoint = {.dir = dir}};
  torch::manual_seed(4);
  LlamaForCausalLM model(LlamaConfigOf({}));
  int calls = 0;
  auto identity = [&](std::vector<at::Tensor>&) {
    ++calls;
    return absl::OkStatus();
  };
  ASSERT_TRUE(RunTraining(model, 8, options, NoisyNll(model),
                          {.reduce_gradients = identity})
                  .ok());
  EXPECT_EQ(calls, 1 + 2);  // The step check, then two steps.
  // This rank starts afresh while the other one resumed from step 2.
  options.checkpoint.dir = FreshDir("ranks_other");
  auto other_rank_at_two = [](std::vector<at::Tensor>& tensors) {
    tensors[0].add_(2).div_(2);
    return absl::OkStatus();
  };
  absl::Status status = RunTraining(model, 8, options, NoisyNll(model),
                                    {.reduce_gradients = other_rank_at_two})
                            .status();
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
  EXPECT_NE(status.message().find("same checkpoints"), std::string::npos)
      << status;
}

TEST(TrainerResumeTest, OnlyWritingRanksWriteCheckpoints) {
  const std::string dir = FreshDir("no_write");
  torch::manual_seed(4);
  LlamaForCausalLM model(LlamaConfigOf({}));
  ASSERT_TRUE(
      RunTraining(
          model, 8,
          {.num_epochs = 1,
           .per_device_batch_size = 2,
           .threads = 1,
           .checkpoint = {.dir = dir, .every_steps = 1, .write = false}},
          NoisyNll(model))
          .ok());
  EXPECT_TRUE(ListCheckpointSteps(dir).empty());
}

// loss_chunk_tokens moves only rounding: fine-tuning with the chunked NLL
// (3 answer tokens a chunk, 12 in a micro-batch) ends with the plain run's
// weights, in fp64 where rounding is far below the tolerance.
TEST(TrainerTest, ChunkedNllEndsWithThePlainWeights) {
  std::vector<at::Tensor> weights[2];
  for (int chunked = 0; chunked < 2; ++chunked) {
    torch::manual_seed(0);
    LlamaForCausalLM model(LlamaConfigOf({}));
    model.to(at::kDouble);
    ASSERT_TRUE(FinetuneOnQa(model, Examples(), 0,
                             {.learning_rate = 3e-2,
                              .weight_decay = 0.0,
                              .warmup_epochs = 0,
                              .num_epochs = 5,
                              .per_device_batch_size = 4,
                              .seed = 1,
                              .threads = 1,
                              .loss_chunk_tokens = chunked ? 3 : 0})
                    .ok());
    for (const at::Tensor& parameter : model.parameters()) {
      weights[chunked].push_back(parameter.detach().clone());
    }
  }
  torch::manual_seed(0);
  LlamaForCausalLM initial(LlamaConfigOf({}));
  initial.to(at::kDouble);
  EXPECT_GT(MaxAbsDifference(weights[0], initial.parameters()), 1e-2)
      << "training must move the weights";
  const double difference = MaxAbsDifference(weights[0], weights[1]);
  EXPECT_LT(difference, 1e-9);
  // Rounding falls elsewhere: proof that the chunked path ran at all.
  EXPECT_GT(difference, 0.0) << "loss_chunk_tokens was ignored";
}

TEST(TrainerTest, RejectsBadOptions) {
  torch::manual_seed(0);
  LlamaForCausalLM model(LlamaConfigOf({}));
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
  EXPECT_EQ(RunTraining(model, 4, {.example_lengths = {3, 4, 5}}, loss)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      RunTraining(model, 4, {.loss_chunk_tokens = -1}, loss).status().code(),
      absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace lethe
