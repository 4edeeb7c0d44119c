#include "libs/unlearn/unlearning_run.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "libs/data/qa_batch.h"
#include "libs/loss/sequence_loss.h"
#include "libs/model/lora.h"
#include "libs/model/tiny_llama.h"
#include "libs/unlearn/checkpoint.h"
#include "libs/unlearn/two_rank_mean_test_util.h"

namespace lethe {
namespace {

std::vector<QaExample> Examples(int first, int count) {
  std::vector<QaExample> examples;
  for (int i = first; i < first + count; ++i) {
    const int b = 10 + (i * 7) % 29, c = 10 + (i * 11 + 3) % 29;
    examples.push_back({.input_ids = {1, 3 + i % 7, b, c, 2},
                        .labels = {kIgnoreIndex, kIgnoreIndex, b, c, 2}});
  }
  return examples;
}

double MeanNll(LlamaForCausalLM& model, const std::vector<QaExample>& set) {
  torch::NoGradGuard no_grad;
  std::vector<const QaExample*> all;
  for (const QaExample& example : set) all.push_back(&example);
  const QaBatch batch = CollateQaBatch(all, 0);
  return TokenMeanNll(model.Forward(batch.input_ids, batch.attention_mask),
                      batch.labels)
      .item<double>();
}

// A copy of `model` in `dtype` to train: gradients on, train mode.
absl::StatusOr<std::shared_ptr<LlamaForCausalLM>> TrainableCopy(
    LlamaForCausalLM& model, at::ScalarType dtype) {
  absl::StatusOr<std::shared_ptr<LlamaForCausalLM>> copy =
      FrozenCopy(model, dtype);
  if (!copy.ok()) return copy;
  for (auto& parameter : (*copy)->parameters()) {
    parameter.set_requires_grad(true);
  }
  (*copy)->train();
  return copy;
}

// Hooks that stop a run with ABORTED ("simulated crash") when it reaches
// `step`, as a killed process would (the checkpoints before it stay).
UnlearningHooks CrashAtStep(int64_t step) {
  return {.training = {.on_step = [step](const StepRecord& record) {
            return record.step == step ? absl::AbortedError("simulated crash")
                                       : absl::OkStatus();
          }}};
}

class UnlearningRunTest : public testing::Test {
 protected:
  void SetUp() override {
    torch::manual_seed(0);
    model_ =
        std::make_shared<LlamaForCausalLM>(LlamaConfigOf({.vocab_size = 40}));
    data_.forget = Examples(0, 8);
    data_.retain = Examples(8, 16);
    data_.alternate = Examples(30, 8);
    std::vector<QaExample> everything = data_.forget;
    everything.insert(everything.end(), data_.retain.begin(),
                      data_.retain.end());
    ASSERT_TRUE(FinetuneOnQa(*model_, everything, 0,
                             {.learning_rate = 2e-2,
                              .weight_decay = 0,
                              .warmup_epochs = 0,
                              .num_epochs = 30,
                              .per_device_batch_size = 8,
                              .threads = 1})
                    .ok());
  }

  UnlearningOptions Options(UnlearningMethod method) {
    UnlearningOptions options{.method = method,
                              .params = DefaultObjectiveParams(method)};
    options.params.ofmu_inner_learning_rate = 1e-2;
    options.training = {.learning_rate = 1e-2,
                        .weight_decay = 0,
                        .warmup_epochs = 0,
                        .num_epochs = 3,
                        .per_device_batch_size = 4,
                        .seed = 3,
                        .threads = 1};
    return options;
  }

  std::shared_ptr<LlamaForCausalLM> model_;
  UnlearningData data_;
};

TEST_F(UnlearningRunTest, EveryMethodRaisesTheForgetLoss) {
  const double before = MeanNll(*model_, data_.forget);
  ASSERT_LT(before, 1.0) << "fine-tuning should have memorised the set";
  auto original = FrozenCopy(*model_, at::kFloat);
  ASSERT_TRUE(original.ok());
  for (UnlearningMethod method :
       {UnlearningMethod::kGa, UnlearningMethod::kGradDiff,
        UnlearningMethod::kNpo, UnlearningMethod::kNpoRt,
        UnlearningMethod::kNpoKl, UnlearningMethod::kSimNpo,
        UnlearningMethod::kIdkDpo, UnlearningMethod::kLlmu,
        UnlearningMethod::kOfmu, UnlearningMethod::kIhl}) {
    auto model = TrainableCopy(**original, at::kFloat);
    ASSERT_TRUE(model.ok());
    int steps = 0;
    absl::StatusOr<TrainingSummary> summary =
        RunUnlearning(**model, data_, Options(method),
                      {.training = {.on_step = [&](const StepRecord&) {
                         ++steps;
                         return absl::OkStatus();
                       }}});
    ASSERT_TRUE(summary.ok())
        << UnlearningMethodName(method) << ": " << summary.status();
    EXPECT_EQ(steps, 6) << UnlearningMethodName(method);
    EXPECT_GT(MeanNll(**model, data_.forget), before + 0.1)
        << UnlearningMethodName(method) << " did not move away from the "
        << "forget answers";
  }
}

// loss_chunk_tokens moves only rounding: with the chunked log-probs (3
// answer tokens a chunk, 12 in a micro-batch) every objective family ends
// with the plain run's weights. In fp64, where rounding is far below the
// tolerance. OFMU differentiates the chunked backward pass again (its exact
// Hessian-vector products), in both of its modes.
TEST_F(UnlearningRunTest, ChunkedLossEndsWithThePlainWeights) {
  auto original = FrozenCopy(*model_, at::kDouble);
  ASSERT_TRUE(original.ok());
  const std::vector<at::Tensor> start = (*original)->parameters();
  for (int variant = 0; variant < 7; ++variant) {
    const UnlearningMethod method = std::vector<UnlearningMethod>{
        UnlearningMethod::kNpoRt,  UnlearningMethod::kGradDiff,
        UnlearningMethod::kSimNpo, UnlearningMethod::kIdkDpo,
        UnlearningMethod::kLlmu,   UnlearningMethod::kOfmu,
        UnlearningMethod::kOfmu}[variant];
    const std::string name =
        UnlearningMethodName(method) + (variant == 6 ? " first-order" : "");
    std::vector<at::Tensor> weights[2];
    for (int chunked = 0; chunked < 2; ++chunked) {
      auto model = TrainableCopy(**original, at::kDouble);
      ASSERT_TRUE(model.ok());
      UnlearningOptions options = Options(method);
      options.params.ofmu_first_order = variant == 6;
      options.training.num_epochs = 2;
      options.training.loss_chunk_tokens = chunked ? 3 : 0;
      absl::StatusOr<TrainingSummary> summary =
          RunUnlearning(**model, data_, options);
      ASSERT_TRUE(summary.ok()) << name << ": " << summary.status();
      for (const at::Tensor& parameter : (*model)->parameters()) {
        weights[chunked].push_back(parameter.detach().clone());
      }
    }
    EXPECT_GT(MaxAbsDifference(weights[0], start), 1e-3)
        << name << " must move the weights";
    const double difference = MaxAbsDifference(weights[0], weights[1]);
    EXPECT_LT(difference, 1e-9) << name;
    // Rounding falls elsewhere: proof that the chunked path ran at all.
    EXPECT_GT(difference, 0.0) << name << ": loss_chunk_tokens was ignored";
  }
}

TEST_F(UnlearningRunTest, PackedBatchesEndWithThePaddedWeights) {
  auto original = FrozenCopy(*model_, at::kDouble);
  ASSERT_TRUE(original.ok());
  for (const UnlearningMethod method :
       {UnlearningMethod::kNpoRt, UnlearningMethod::kGradDiff,
        UnlearningMethod::kSimNpo, UnlearningMethod::kIdkDpo,
        UnlearningMethod::kLlmu, UnlearningMethod::kIhl}) {
    const std::string name = UnlearningMethodName(method);
    std::vector<at::Tensor> weights[2];
    for (int packed = 0; packed < 2; ++packed) {
      auto model = TrainableCopy(**original, at::kDouble);
      ASSERT_TRUE(model.ok());
      UnlearningOptions options = Options(method);
      options.training.num_epochs = 2;
      options.pack_row_length = packed ? 12 : 0;
      absl::StatusOr<TrainingSummary> summary =
          RunUnlearning(**model, data_, options);
      ASSERT_TRUE(summary.ok()) << name << ": " << summary.status();
      for (const at::Tensor& parameter : (*model)->parameters()) {
        weights[packed].push_back(parameter.detach().clone());
      }
    }
    EXPECT_GT(MaxAbsDifference(weights[0], (*original)->parameters()), 1e-3)
        << name << " must move the weights";
    EXPECT_LT(MaxAbsDifference(weights[0], weights[1]), 1e-9) << name;
  }
}

TEST_F(UnlearningRunTest, SameSeedSameResultAndTheReferenceCacheIsReused) {
  const std::string cache = testing::TempDir() + "/npo_reference.json";
  std::filesystem::remove(cache);
  auto original = FrozenCopy(*model_, at::kFloat);
  ASSERT_TRUE(original.ok());
  std::vector<double> losses[2];
  for (int run = 0; run < 2; ++run) {
    auto model = TrainableCopy(**original, at::kFloat);
    ASSERT_TRUE(model.ok());
    UnlearningOptions options = Options(UnlearningMethod::kNpoRt);
    options.reference_cache_path = cache;
    absl::StatusOr<TrainingSummary> summary =
        RunUnlearning(**model, data_, options);
    ASSERT_TRUE(summary.ok()) << summary.status();
    for (const StepRecord& step : summary->steps) {
      losses[run].push_back(step.loss);
    }
    EXPECT_TRUE(std::filesystem::exists(cache));
  }
  EXPECT_EQ(losses[0], losses[1]);

  data_.forget.pop_back();
  absl::Status stale = RunUnlearning(*model_, data_,
                                     [&] {
                                       UnlearningOptions options =
                                           Options(UnlearningMethod::kNpo);
                                       options.reference_cache_path = cache;
                                       return options;
                                     }())
                           .status();
  EXPECT_EQ(stale.code(), absl::StatusCode::kFailedPrecondition) << stale;
}

TEST_F(UnlearningRunTest, InterruptedAndResumedRunEndsWithTheSameWeights) {
  auto original = FrozenCopy(*model_, at::kFloat);
  ASSERT_TRUE(original.ok());
  auto fresh_model = [&] {
    auto model = TrainableCopy(**original, at::kFloat);
    EXPECT_TRUE(model.ok());
    return *model;
  };
  // NPO_RT draws retain batches; 8 forget examples, batch 4: two steps per
  // epoch, so the checkpoint of step 2 ends epoch 0 and retain batches of
  // epoch 1 must come out the same without the first run's history. Batch
  // 3 puts it mid-epoch (micro-batches of 3, 3, 2).
  for (int batch : {4, 3}) {
    SCOPED_TRACE(testing::Message() << "batch " << batch);
    UnlearningOptions options = Options(UnlearningMethod::kNpoRt);
    options.training.per_device_batch_size = batch;
    options.training.max_steps = 6;
    auto whole_model = fresh_model();
    absl::StatusOr<TrainingSummary> whole =
        RunUnlearning(*whole_model, data_, options);
    ASSERT_TRUE(whole.ok()) << whole.status();
    ASSERT_EQ(whole->steps.size(), 6u);

    const std::string dir = testing::TempDir() + "/unlearning_resume";
    std::filesystem::remove_all(dir);
    options.training.checkpoint = {.dir = dir, .every_steps = 2};
    auto interrupted = fresh_model();
    absl::Status stopped =
        RunUnlearning(*interrupted, data_, options, CrashAtStep(3)).status();
    ASSERT_EQ(stopped.code(), absl::StatusCode::kAborted) << stopped;
    ASSERT_EQ(ListCheckpointSteps(dir), (std::vector<int64_t>{2}));

    auto resumed = fresh_model();
    absl::StatusOr<TrainingSummary> rest =
        RunUnlearning(*resumed, data_, options);
    ASSERT_TRUE(rest.ok()) << rest.status();
    EXPECT_EQ(rest->resumed_from_step, 2);
    ASSERT_EQ(rest->steps.size(), 4u);
    for (size_t i = 0; i < rest->steps.size(); ++i) {
      EXPECT_EQ(rest->steps[i].loss, whole->steps[i + 2].loss) << i;
      EXPECT_EQ(rest->steps[i].components, whole->steps[i + 2].components) << i;
    }
    auto expected = whole_model->named_parameters();
    for (const auto& parameter : resumed->named_parameters()) {
      EXPECT_TRUE(torch::equal(parameter.value(), expected[parameter.key()]))
          << parameter.key();
    }
  }
}

TEST_F(UnlearningRunTest, Bf16ReferenceCopyServesKlTerms) {
  auto reference = FrozenCopy(*model_, at::kBFloat16);
  ASSERT_TRUE(reference.ok()) << reference.status();
  for (const at::Tensor& parameter : (*reference)->parameters()) {
    EXPECT_EQ(parameter.scalar_type(), at::kBFloat16);
    EXPECT_FALSE(parameter.requires_grad());
  }
  std::vector<const QaExample*> batch_examples;
  for (const QaExample& example : data_.retain) {
    batch_examples.push_back(&example);
  }
  const QaBatch batch = CollateQaBatch(batch_examples, 0);
  {
    torch::NoGradGuard no_grad;
    const at::Tensor full =
        model_->Forward(batch.input_ids, batch.attention_mask);
    const at::Tensor half =
        (*reference)->Forward(batch.input_ids, batch.attention_mask);
    EXPECT_EQ(half.scalar_type(), at::kBFloat16);
    const double kl = RetainKl(full, half, batch.labels).item<double>();
    EXPECT_LT(std::abs(kl), 1e-2) << "bf16 rounding only";
  }

  auto model = TrainableCopy(*model_, at::kFloat);
  ASSERT_TRUE(model.ok());
  const double before = MeanNll(**model, data_.forget);
  UnlearningOptions options = Options(UnlearningMethod::kNpoKl);
  options.bf16_reference = true;
  ASSERT_TRUE(RunUnlearning(**model, data_, options).ok());
  EXPECT_GT(MeanNll(**model, data_.forget), before + 0.1);
}

TEST_F(UnlearningRunTest, IhlLowersTheForgetAnswersProbability) {
  // The same run with the forget term switched off (gamma 0: retain NLL
  // only) is the control: the forget answers' probability exp(-mean NLL)
  // must fall below it and below the start, while the retain set's stays
  // close to the control's.
  auto original = FrozenCopy(*model_, at::kFloat);
  ASSERT_TRUE(original.ok());
  const double forget_before = MeanNll(*model_, data_.forget);
  double forget_after[2], retain_after[2];
  for (int with_forget_term : {0, 1}) {
    auto model = TrainableCopy(**original, at::kFloat);
    ASSERT_TRUE(model.ok());
    UnlearningOptions options = Options(UnlearningMethod::kIhl);
    options.params.gamma = with_forget_term;
    absl::StatusOr<TrainingSummary> summary =
        RunUnlearning(**model, data_, options);
    ASSERT_TRUE(summary.ok()) << summary.status();
    ASSERT_TRUE(summary->steps.front().components.count("forget_ihl"));
    forget_after[with_forget_term] = MeanNll(**model, data_.forget);
    retain_after[with_forget_term] = MeanNll(**model, data_.retain);
  }
  const auto probability = [](double nll) { return std::exp(-nll); };
  EXPECT_LT(probability(forget_after[1]), 0.8 * probability(forget_before));
  EXPECT_LT(probability(forget_after[1]), 0.8 * probability(forget_after[0]));
  EXPECT_LT(retain_after[1], retain_after[0] + 0.2);
}

// A copy of `model` with LoRA adapters (rank 4, alpha 8) on every
// projection, seeded; only they train.
std::shared_ptr<LlamaForCausalLM> LoraCopy(LlamaForCausalLM& model) {
  auto copy = FrozenCopy(model, at::kFloat);
  EXPECT_TRUE(copy.ok());
  torch::manual_seed(5);
  EXPECT_TRUE(AttachLora(**copy, {.rank = 4,
                                  .alpha = 8,
                                  .target_modules = LoraTargetableModules()})
                  .ok());
  FreezeAllButLora(**copy);
  (*copy)->train();
  return *copy;
}

TEST_F(UnlearningRunTest, RegluTrainsOnlyTheAdaptersAndForgets) {
  auto model = LoraCopy(*model_);
  std::map<std::string, at::Tensor> before;
  for (const auto& parameter : model->named_parameters()) {
    before[parameter.key()] = parameter.value().detach().clone();
  }
  const double forget_before = MeanNll(*model, data_.forget);
  const double retain_before = MeanNll(*model, data_.retain);
  UnlearningOptions options = Options(UnlearningMethod::kReglu);
  options.params.reglu_retain_rank = 4;
  absl::StatusOr<TrainingSummary> summary =
      RunUnlearning(*model, data_, options);
  ASSERT_TRUE(summary.ok()) << summary.status();
  for (const char* component : {"rol", "forget_ihl", "retain_nll"}) {
    EXPECT_TRUE(summary->steps.front().components.count(component))
        << component;
  }
  EXPECT_GT(summary->steps.front().components.at("rol"), 0);
  // Returned unfolded: the original base (to rounding) with rank-8
  // adapters; everything that carries no adapter is untouched.
  absl::StatusOr<LoraConfig> config = AttachedLoraConfig(*model);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->rank, 8);
  int adapted = 0;
  for (const auto& parameter : model->named_parameters()) {
    const std::string& name = parameter.key();
    if (name.find("lora_") != std::string::npos) continue;
    const at::Tensor& old = before.at(name);
    if (name.find("_proj.") != std::string::npos) {
      ++adapted;
      EXPECT_TRUE(torch::allclose(parameter.value(), old, 0, 1e-5)) << name;
    } else {
      EXPECT_TRUE(torch::equal(parameter.value(), old)) << name;
    }
  }
  EXPECT_EQ(adapted, 7);
  EXPECT_GT(MeanNll(*model, data_.forget), forget_before + 0.1);
  EXPECT_LT(MeanNll(*model, data_.retain), retain_before + 1.0);

  // Without adapters REGLU has nothing to train.
  auto plain = FrozenCopy(*model_, at::kFloat);
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(RunUnlearning(**plain, data_, options).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(UnlearningRunTest, RegluResumedRunEndsWithTheUninterruptedWeights) {
  // A checkpoint under LoRA holds the adapters, not the base weights RILA
  // changed: the resumed run redoes RILA, then loads the adapters.
  UnlearningOptions options = Options(UnlearningMethod::kReglu);
  options.params.reglu_retain_rank = 4;
  options.training.per_device_batch_size = 3;
  options.training.max_steps = 6;
  auto whole_model = LoraCopy(*model_);
  absl::StatusOr<TrainingSummary> whole =
      RunUnlearning(*whole_model, data_, options);
  ASSERT_TRUE(whole.ok()) << whole.status();
  ASSERT_EQ(whole->steps.size(), 6u);

  const std::string dir = testing::TempDir() + "/reglu_resume";
  std::filesystem::remove_all(dir);
  options.training.checkpoint = {.dir = dir, .every_steps = 2};
  auto interrupted = LoraCopy(*model_);
  absl::Status stopped =
      RunUnlearning(*interrupted, data_, options, CrashAtStep(3)).status();
  ASSERT_EQ(stopped.code(), absl::StatusCode::kAborted) << stopped;
  ASSERT_EQ(ListCheckpointSteps(dir), (std::vector<int64_t>{2}));

  auto resumed = LoraCopy(*model_);
  absl::StatusOr<TrainingSummary> rest =
      RunUnlearning(*resumed, data_, options);
  ASSERT_TRUE(rest.ok()) << rest.status();
  EXPECT_EQ(rest->resumed_from_step, 2);
  ASSERT_EQ(rest->steps.size(), 4u);
  for (size_t i = 0; i < rest->steps.size(); ++i) {
    EXPECT_EQ(rest->steps[i].loss, whole->steps[i + 2].loss) << i;
    EXPECT_EQ(rest->steps[i].components, whole->steps[i + 2].components) << i;
  }
  auto expected = whole_model->named_parameters();
  for (const auto& parameter : resumed->named_parameters()) {
    EXPECT_TRUE(torch::equal(parameter.value(), expected[parameter.key()]))
        << parameter.key();
  }
}

// PGA's probes are fitted on the weights at the start of each K-epoch
// block; a run resumed inside a block reads them from the checkpoint
// directory and ends with the uninterrupted run's weights. Without that
// file it refits on the restored weights and ends elsewhere (so the file is
// what makes the resume exact).
TEST_F(UnlearningRunTest,
       PgaResumedInsideABlockEndsWithTheUninterruptedWeights) {
  data_.holdout = Examples(24, 8);  // Never seen in fine-tuning.
  UnlearningOptions options = Options(UnlearningMethod::kPga);
  options.params.pga_refit_every_epochs = 2;
  options.training.num_epochs = 4;  // 2 steps an epoch: blocks at steps 1, 5.
  auto original = FrozenCopy(*model_, at::kFloat);
  ASSERT_TRUE(original.ok());
  auto fresh = [&] {
    auto model = TrainableCopy(**original, at::kFloat);
    EXPECT_TRUE(model.ok());
    return *model;
  };
  auto whole_model = fresh();
  absl::StatusOr<TrainingSummary> whole =
      RunUnlearning(*whole_model, data_, options);
  ASSERT_TRUE(whole.ok()) << whole.status();
  ASSERT_EQ(whole->steps.size(), 8u);
  EXPECT_TRUE(whole->steps[0].components.count("align") == 1);
  EXPECT_TRUE(whole->steps[0].components.count("ce") == 1);

  const std::string dir = testing::TempDir() + "/pga_resume";
  auto run_interrupted = [&] {
    std::filesystem::remove_all(dir);
    options.training.checkpoint = {.dir = dir, .every_steps = 5};
    auto model = fresh();
    absl::Status stopped =
        RunUnlearning(*model, data_, options, CrashAtStep(7)).status();
    ASSERT_EQ(stopped.code(), absl::StatusCode::kAborted) << stopped;
    ASSERT_EQ(ListCheckpointSteps(dir), (std::vector<int64_t>{5}));
    ASSERT_TRUE(
        std::filesystem::exists(dir + "/pga-probes-epoch-2.safetensors"));
  };
  auto differs = [&](LlamaForCausalLM& model) {
    auto expected = whole_model->named_parameters();
    for (const auto& parameter : model.named_parameters()) {
      if (!torch::equal(parameter.value(), expected[parameter.key()])) {
        return true;
      }
    }
    return false;
  };

  run_interrupted();
  auto resumed = fresh();
  absl::StatusOr<TrainingSummary> rest =
      RunUnlearning(*resumed, data_, options);
  ASSERT_TRUE(rest.ok()) << rest.status();
  EXPECT_EQ(rest->resumed_from_step, 5);
  ASSERT_EQ(rest->steps.size(), 3u);
  for (size_t i = 0; i < rest->steps.size(); ++i) {
    EXPECT_EQ(rest->steps[i].loss, whole->steps[i + 5].loss) << i;
  }
  EXPECT_FALSE(differs(*resumed));

  run_interrupted();
  std::filesystem::remove(dir + "/pga-probes-epoch-2.safetensors");
  auto refitted = fresh();
  ASSERT_TRUE(RunUnlearning(*refitted, data_, options).ok());
  EXPECT_TRUE(differs(*refitted))
      << "probes refit on step 5's weights should move the run";
}

// Data-parallel PGA: two ranks (threads) with half the batch each end
// bit-identical, with the weights of one process taking the whole batch (up
// to rounding): the probes every rank refits are averaged, the gradients
// too.
TEST_F(UnlearningRunTest, PgaRanksAgreeWithOneProcess) {
  data_.holdout = Examples(24, 8);
  UnlearningOptions options = Options(UnlearningMethod::kPga);
  options.params.pga_refit_every_epochs = 2;
  options.training.num_epochs = 3;
  options.training.per_device_batch_size = 4;
  auto original = FrozenCopy(*model_, at::kDouble);
  ASSERT_TRUE(original.ok());
  auto fresh = [&] {
    auto model = TrainableCopy(**original, at::kDouble);
    EXPECT_TRUE(model.ok());
    return *model;
  };
  auto single = fresh();
  ASSERT_TRUE(RunUnlearning(*single, data_, options).ok());

  TwoRankMean mean;
  std::shared_ptr<LlamaForCausalLM> ranks[2] = {fresh(), fresh()};
  absl::Status statuses[2];
  std::vector<std::thread> threads;
  for (int rank = 0; rank < 2; ++rank) {
    threads.emplace_back([&, rank] {
      UnlearningOptions rank_options = options;
      rank_options.training.rank = rank;
      rank_options.training.world_size = 2;
      rank_options.training.per_device_batch_size = 2;
      auto average = [&mean, rank](std::vector<at::Tensor>& tensors) {
        return mean.Average(rank, tensors);
      };
      statuses[rank] = RunUnlearning(*ranks[rank], data_, rank_options,
                                     {.training = {.reduce_gradients = average},
                                      .averager = average})
                           .status();
    });
  }
  for (std::thread& thread : threads) thread.join();
  ASSERT_TRUE(statuses[0].ok()) << statuses[0];
  ASSERT_TRUE(statuses[1].ok()) << statuses[1];
  auto rank1 = ranks[1]->named_parameters();
  auto one = single->named_parameters();
  double largest = 0;
  for (const auto& parameter : ranks[0]->named_parameters()) {
    EXPECT_TRUE(torch::equal(parameter.value(), rank1[parameter.key()]))
        << parameter.key();
    largest = std::max(
        largest,
        (parameter.value() - one[parameter.key()]).abs().max().item<double>());
  }
  EXPECT_LT(largest, 1e-9);
  EXPECT_GT(MaxAbsDifference(single->parameters(), (*original)->parameters()),
            1e-3)
      << "nothing trained";
}

TEST_F(UnlearningRunTest, PgaNeedsHoldoutExamples) {
  const absl::Status status =
      RunUnlearning(*model_, data_, Options(UnlearningMethod::kPga)).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("holdout"), std::string::npos) << status;
}

TEST(PgaPairsTest, PairsByIndexUpToTheShorterSet) {
  UnlearningData data{.forget = Examples(0, 5), .holdout = Examples(10, 3)};
  auto [memorised, clean] = PgaPairs(data);
  ASSERT_EQ(memorised.size(), 3u);
  ASSERT_EQ(clean.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(memorised[i].input_ids, data.forget[i].input_ids);
    EXPECT_EQ(clean[i].input_ids, data.holdout[i].input_ids);
  }
}

TEST_F(UnlearningRunTest, MissingDataIsAClearError) {
  data_.alternate.pop_back();
  absl::Status status =
      RunUnlearning(*model_, data_, Options(UnlearningMethod::kIdkDpo))
          .status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("alternate"), std::string::npos) << status;
  data_.retain.clear();
  EXPECT_EQ(RunUnlearning(*model_, data_, Options(UnlearningMethod::kNpoRt))
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(AlternateAnswersTest, SeededAndParallelToTheForgetSet) {
  const std::vector<TofuRecord> forget = {{.question = "Q1", .answer = "A1"},
                                          {.question = "Q2", .answer = "A2"}};
  const std::vector<TofuRecord> retain = {{.question = "R1", .answer = "B1"},
                                          {.question = "R2", .answer = "B2"},
                                          {.question = "R3", .answer = "B3"}};
  const std::vector<TofuRecord> refusals = RefusalAlternates(forget, 1);
  ASSERT_EQ(refusals.size(), 2u);
  EXPECT_EQ(refusals[1].question, "Q2");
  EXPECT_EQ(RefusalAlternates(forget, 1)[0].answer, refusals[0].answer);
  const std::vector<TofuRecord> random =
      RandomAnswerAlternates(forget, retain, 4);
  ASSERT_EQ(random.size(), 2u);
  EXPECT_EQ(random[0].question, "Q1");
  EXPECT_EQ(random[0].answer[0], 'B');
}

}  // namespace
}  // namespace lethe
