// ShardedAdamW (ZeRO stage 1 and 2) against the replicated
// torch::optim::AdamW: in a group of one against LibTorch's optimizer
// directly, and in real multi-process Gloo groups of 2 and 3 ranks through
// RunTraining (replicated vs ZeRO-1 vs ZeRO-2, and an interrupted and
// resumed ZeRO run vs an uninterrupted one). The test binary re-executes
// itself as the ranks (LETHE_ZERO_TEST_ROLE) over a TCPStore that the test
// process hosts on a free port.
#include "libs/dist/sharded_optimizer.h"

#include <torch/nn/utils/clip_grad.h>
#include <torch/optim/adamw.h>

#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "libs/data/qa_example.h"
#include "libs/dist/collective_group.h"
#include "libs/dist/multi_process_test_util.h"
#include "libs/dist/overlapped_reducer.h"
#include "libs/dist/zero_training.h"
#include "libs/loss/sequence_loss.h"
#include "libs/model/llama_model.h"
#include "libs/model/tiny_llama.h"
#include "libs/status/status_macros.h"
#include "libs/unlearn/checkpoint.h"
#include "libs/unlearn/trainer.h"

namespace lethe {
namespace {

constexpr char kRoleVariable[] = "LETHE_ZERO_TEST_ROLE";

std::vector<QaExample> Examples() {
  std::vector<QaExample> examples;
  for (int i = 0; i < 18; ++i) {
    const int a = 3 + i, b = 11 + (i * 3) % 17, c = 4 + (i * 5) % 23;
    QaExample example{.input_ids = {1, a, b, c, 2},
                      .labels = {kIgnoreIndex, kIgnoreIndex, b, c, 2}};
    for (int extra = 0; extra < i % 3; ++extra) {
      example.input_ids.push_back(5 + extra);
      example.labels.push_back(5 + extra);
    }
    examples.push_back(std::move(example));
  }
  return examples;
}

std::vector<at::Tensor> Weights(LlamaForCausalLM& model) {
  std::vector<at::Tensor> weights;
  for (const at::Tensor& parameter : model.parameters()) {
    weights.push_back(parameter.detach().clone());
  }
  return weights;
}

// Clipping active (max_grad_norm small), decay on, accumulation of 2.
TrainingOptions BaseOptions(int rank, int world_size) {
  return {.learning_rate = 1e-2,
          .weight_decay = 0.1,
          .warmup_epochs = 0,
          .max_grad_norm = 0.5,
          .num_epochs = 2,
          .per_device_batch_size = 2,
          .gradient_accumulation_steps = 2,
          .seed = 4,
          .threads = 1,
          .rank = rank,
          .world_size = world_size};
}

// Trains the tiny model; zero_stage 0 is the replicated run. Stage 1 runs
// with the overlapped reducer, as job_run wires it.
absl::StatusOr<std::vector<at::Tensor>> Train(
    CollectiveGroup& group, TrainingOptions options, int zero_stage,
    TrainingSummary* summary = nullptr,
    std::function<absl::Status(const StepRecord&)> on_step = nullptr) {
  torch::manual_seed(9);
  LlamaForCausalLM model(LlamaConfigOf({.vocab_size = 32, .layers = 2}));
  options.zero_stage = zero_stage;
  TrainingHooks hooks{.reduce_gradients =
                          [&](std::vector<at::Tensor>& gradients) {
                            return group.AllReduceMean(gradients);
                          },
                      .on_step = std::move(on_step)};
  if (zero_stage > 0) {
    // Small buckets, so that buckets and shards cut parameters apart.
    hooks.sharded_optimizer =
        ZeroOptimizerFactory(group, /*bucket_bytes=*/4096);
  }
  if (zero_stage == 1) {
    hooks.overlapped_reducer = [&](const std::vector<at::Tensor>& parameters)
        -> absl::StatusOr<std::unique_ptr<BackwardGradientReducer>> {
      ASSIGN_OR_RETURN(std::unique_ptr<OverlappedReducer> reducer,
                       OverlappedReducer::Create(group, parameters));
      class Wrapped : public BackwardGradientReducer {
       public:
        explicit Wrapped(std::unique_ptr<OverlappedReducer> reducer)
            : reducer_(std::move(reducer)) {}
        absl::Status PrepareForBackward(const at::Tensor& loss) override {
          return reducer_->PrepareForBackward(loss);
        }
        absl::Status FinishBackward() override {
          return reducer_->FinishBackward();
        }

       private:
        std::unique_ptr<OverlappedReducer> reducer_;
      };
      return std::make_unique<Wrapped>(std::move(reducer));
    };
  }
  ASSIGN_OR_RETURN(TrainingSummary result,
                   FinetuneOnQa(model, Examples(), 0, options, hooks));
  if (summary != nullptr) *summary = result;
  return Weights(model);
}

// Rank body: replicated, ZeRO-1 and ZeRO-2 end with the same weights, on
// every rank.
int RunEqualRank() {
  std::unique_ptr<CollectiveGroup> group = JoinFromEnvironment();
  const TrainingOptions options =
      BaseOptions(group->rank(), group->world_size());
  TrainingSummary replicated_summary;
  absl::StatusOr<std::vector<at::Tensor>> replicated =
      Train(*group, options, 0, &replicated_summary);
  LETHE_RANK_CHECK(replicated.ok(), replicated.status());
  for (int stage : {1, 2}) {
    TrainingSummary summary;
    absl::StatusOr<std::vector<at::Tensor>> zero =
        Train(*group, options, stage, &summary);
    LETHE_RANK_CHECK(zero.ok(), zero.status());
    const double difference = MaxAbsDifference(*replicated, *zero);
    std::vector<at::Tensor> mean = *zero;
    const absl::Status status = group->AllReduceMean(mean);
    LETHE_RANK_CHECK(status.ok(), status);
    const double spread = MaxAbsDifference(mean, *zero);
    double norm_difference = 0;
    for (size_t i = 0; i < summary.steps.size(); ++i) {
      norm_difference = std::max(
          norm_difference, std::abs(summary.steps[i].grad_norm -
                                    replicated_summary.steps[i].grad_norm));
    }
    std::cerr << "rank " << group->rank() << " ZeRO-" << stage << ": "
              << summary.steps.size() << " steps, max weight difference "
              << difference << ", grad-norm difference " << norm_difference
              << ", spread across ranks " << spread << "\n";
    LETHE_RANK_CHECK(summary.steps.size() == replicated_summary.steps.size() &&
                         summary.steps.size() >= 4,
                     summary.steps.size() << " steps");
    LETHE_RANK_CHECK(difference <= 1e-6, "weights differ by " << difference);
    LETHE_RANK_CHECK(norm_difference <= 1e-5,
                     "norms differ by " << norm_difference);
    LETHE_RANK_CHECK(spread == 0, "ranks' weights differ by " << spread);
  }
  return 0;
}

// Rank body: a ZeRO run interrupted after step 3 (checkpoint at step 2)
// and resumed ends with the weights of an uninterrupted one; every rank's
// shard is in the checkpoint.
int RunResumeRank() {
  std::unique_ptr<CollectiveGroup> group = JoinFromEnvironment();
  const int stage = EnvInt("LETHE_TEST_STAGE");
  const std::string dir = std::getenv("LETHE_TEST_DIR");
  TrainingOptions options = BaseOptions(group->rank(), group->world_size());
  absl::StatusOr<std::vector<at::Tensor>> uninterrupted =
      Train(*group, options, stage);
  LETHE_RANK_CHECK(uninterrupted.ok(), uninterrupted.status());

  options.checkpoint = {.dir = dir + "/checkpoints",
                        .every_steps = 2,
                        .write = group->rank() == 0};
  absl::StatusOr<std::vector<at::Tensor>> interrupted =
      Train(*group, options, stage, nullptr,
            [](const StepRecord& step) -> absl::Status {
              return step.step == 3 ? absl::CancelledError("interrupted")
                                    : absl::OkStatus();
            });
  LETHE_RANK_CHECK(absl::IsCancelled(interrupted.status()),
                   interrupted.status());
  const std::string first = CheckpointDirectory(options.checkpoint.dir, 2);
  for (int rank = 0; rank < group->world_size(); ++rank) {
    LETHE_RANK_CHECK(
        std::filesystem::exists(absl::StrCat(
            first, "/", OptimizerShardFileName(rank, group->world_size()))),
        "no shard of rank " << rank << " in " << first);
  }
  LETHE_RANK_CHECK(VerifyCheckpoint(first).ok(),
                   VerifyCheckpoint(first).status());

  TrainingSummary summary;
  absl::StatusOr<std::vector<at::Tensor>> resumed =
      Train(*group, options, stage, &summary);
  LETHE_RANK_CHECK(resumed.ok(), resumed.status());
  LETHE_RANK_CHECK(summary.resumed_from_step == 2,
                   "resumed from step " << summary.resumed_from_step);
  const double difference = MaxAbsDifference(*uninterrupted, *resumed);
  std::cerr << "rank " << group->rank() << " ZeRO-" << stage
            << " resumed at step 2: max weight difference " << difference
            << "\n";
  LETHE_RANK_CHECK(difference == 0, "weights differ by " << difference);
  return 0;
}

// Rank body: ZeRO-2 with two micro-batches. The first backward pass (not
// armed) accumulates full local gradients; the armed second one reduces
// every bucket from the hooks and leaves every .grad() released; the step
// then equals a replicated AllReduceMean + clip_grad_norm_ + AdamW.
int RunReleaseRank() {
  std::unique_ptr<CollectiveGroup> group = JoinFromEnvironment();
  const int rank = group->rank();
  torch::manual_seed(3);  // The same initial values on every rank.
  const std::vector<at::Tensor> initial = {
      torch::randn({40, 30}), torch::randn({30}), torch::randn({25, 20}),
      torch::randn({7}), torch::randn({33, 16})};
  std::vector<at::Tensor> ours, theirs;
  std::vector<ShardedParameter> sharded;
  for (size_t i = 0; i < initial.size(); ++i) {
    ours.push_back(initial[i].clone().requires_grad_());
    theirs.push_back(initial[i].clone().requires_grad_());
    sharded.push_back({absl::StrCat("p", i), ours.back(), i % 2 ? 0.0 : 0.1});
  }
  // Rank-dependent micro-batch losses.
  const auto loss = [rank](const std::vector<at::Tensor>& parameters,
                           int micro) {
    at::Tensor total = torch::zeros({});
    for (size_t i = 0; i < parameters.size(); ++i) {
      total =
          total +
          (parameters[i] * (1.0 + rank + 0.5 * micro + 0.1 * i)).sin().sum();
    }
    return total;
  };
  absl::StatusOr<std::unique_ptr<ShardedAdamW>> optimizer =
      ShardedAdamW::Create(*group, sharded, {.stage = 2, .bucket_bytes = 2048});
  LETHE_RANK_CHECK(optimizer.ok(), optimizer.status());
  ShardedAdamW& zero = **optimizer;

  loss(ours, 0).backward();
  for (const at::Tensor& parameter : ours) {
    LETHE_RANK_CHECK(parameter.grad().defined(),
                     "an unarmed backward pass released a gradient");
  }
  absl::Status status = zero.PrepareForBackward();
  LETHE_RANK_CHECK(status.ok(), status);
  loss(ours, 1).backward();
  for (size_t i = 0; i < ours.size(); ++i) {
    LETHE_RANK_CHECK(
        !ours[i].grad().defined(),
        "parameter " << i << " still holds a gradient after backward");
  }
  const ShardedAdamWStats stats = zero.stats();
  LETHE_RANK_CHECK(stats.buckets >= 3, stats.buckets << " buckets");
  LETHE_RANK_CHECK(stats.started_during_backward == stats.buckets,
                   stats.started_during_backward
                       << " of " << stats.buckets
                       << " buckets started in backward");
  // Some bucket straddles the shard boundary: one reduce per owner.
  LETHE_RANK_CHECK(stats.reduces > stats.buckets, stats.reduces << " reduces");
  const int64_t shard = zero.shard_end() - zero.shard_begin();
  LETHE_RANK_CHECK(zero.StateBytes() == 3 * 4 * shard,
                   zero.StateBytes() << " state bytes for " << shard);
  status = zero.ReduceGradients();
  LETHE_RANK_CHECK(status.ok(), status);
  absl::StatusOr<double> norm = zero.Step(0.1, /*max_grad_norm=*/1.0);
  LETHE_RANK_CHECK(norm.ok(), norm.status());
  LETHE_RANK_CHECK(zero.StateBytes() == 2 * 4 * shard,
                   "the gradient shard stayed");

  // The replicated step.
  (loss(theirs, 0) + loss(theirs, 1)).backward();
  std::vector<at::Tensor> gradients;
  for (const at::Tensor& parameter : theirs) {
    gradients.push_back(parameter.grad());
  }
  status = group->AllReduceMean(gradients);
  LETHE_RANK_CHECK(status.ok(), status);
  const double expected_norm = torch::nn::utils::clip_grad_norm_(theirs, 1.0);
  std::vector<torch::optim::OptimizerParamGroup> groups;
  for (size_t i = 0; i < theirs.size(); ++i) {
    groups.emplace_back(
        std::vector<at::Tensor>{theirs[i]},
        std::make_unique<torch::optim::AdamWOptions>(
            torch::optim::AdamWOptions(0.1).weight_decay(i % 2 ? 0.0 : 0.1)));
  }
  torch::optim::AdamW adamw(groups, torch::optim::AdamWOptions(0.1));
  adamw.step();
  const double difference = MaxAbsDifference(ours, theirs);
  std::cerr << "rank " << rank << " ZeRO-2 release: " << stats.buckets
            << " buckets, " << stats.reduces << " reduces, norm " << *norm
            << " vs " << expected_norm << ", max weight difference "
            << difference << "\n";
  LETHE_RANK_CHECK(std::abs(*norm - expected_norm) <= 1e-4 * expected_norm,
                   "norm " << *norm << " vs " << expected_norm);
  LETHE_RANK_CHECK(difference <= 1e-6, "weights differ by " << difference);
  return 0;
}

class ShardedOptimizerTest : public MultiProcessTest {
 protected:
  ShardedOptimizerTest()
      : MultiProcessTest(kRoleVariable, absl::Seconds(240)) {}

  std::string TempDir(const std::string& name) {
    const char* root = std::getenv("TEST_TMPDIR");
    const std::string dir =
        absl::StrCat(root != nullptr ? root : "/tmp", "/zero-", name);
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    return dir;
  }
};

TEST(ShardBoundsTest, BalancedByElementCount) {
  EXPECT_EQ(ShardBounds(10, 3), (std::vector<int64_t>{0, 4, 7, 10}));
  EXPECT_EQ(ShardBounds(2, 3), (std::vector<int64_t>{0, 1, 2, 2}));
  EXPECT_EQ(ShardBounds(9, 1), (std::vector<int64_t>{0, 9}));
}

// In a group of one the shard is everything: each step equals LibTorch's
// AdamW after clip_grad_norm_, with a decayed and an undecayed group.
TEST_F(ShardedOptimizerTest, MatchesLibTorchAdamWAlone) {
  std::unique_ptr<CollectiveGroup> group = SoloGroup("alone");
  ASSERT_NE(group, nullptr);
  for (int stage : {1, 2}) {
    torch::manual_seed(1);
    const std::vector<at::Tensor> initial = {
        torch::randn({7, 5}), torch::randn({5}), torch::randn({3, 4})};
    std::vector<at::Tensor> ours, theirs;
    for (const at::Tensor& tensor : initial) {
      ours.push_back(tensor.clone().requires_grad_());
      theirs.push_back(tensor.clone().requires_grad_());
    }
    std::vector<torch::optim::OptimizerParamGroup> groups;
    groups.emplace_back(
        std::vector<at::Tensor>{theirs[0], theirs[2]},
        std::make_unique<torch::optim::AdamWOptions>(
            torch::optim::AdamWOptions(0.05).weight_decay(0.1)));
    groups.emplace_back(std::vector<at::Tensor>{theirs[1]},
                        std::make_unique<torch::optim::AdamWOptions>(
                            torch::optim::AdamWOptions(0.05).weight_decay(0)));
    torch::optim::AdamW reference(groups, torch::optim::AdamWOptions(0.05));
    absl::StatusOr<std::unique_ptr<ShardedAdamW>> sharded =
        ShardedAdamW::Create(
            *group,
            {{"a", ours[0], 0.1}, {"norm", ours[1], 0}, {"c", ours[2], 0.1}},
            {.stage = stage, .bucket_bytes = 64});
    ASSERT_TRUE(sharded.ok()) << sharded.status();
    for (int step = 0; step < 5; ++step) {
      const double lr = 0.05 * (1 + step);
      for (std::vector<at::Tensor>* parameters : {&ours, &theirs}) {
        torch::manual_seed(100 + step);
        at::Tensor loss = torch::zeros({});
        for (const at::Tensor& p : *parameters) {
          loss = loss + (p * torch::randn(p.sizes())).sum() * 3 + (p * p).sum();
        }
        loss.backward();
      }
      const double expected_norm =
          torch::nn::utils::clip_grad_norm_(theirs, 1.0);
      for (auto& g : reference.param_groups()) {
        static_cast<torch::optim::AdamWOptions&>(g.options()).lr(lr);
      }
      reference.step();
      reference.zero_grad();
      ASSERT_TRUE((*sharded)->ReduceGradients().ok());
      absl::StatusOr<double> norm = (*sharded)->Step(lr, 1.0);
      ASSERT_TRUE(norm.ok()) << norm.status();
      for (at::Tensor& p : ours) p.mutable_grad() = at::Tensor();
      EXPECT_NEAR(*norm, expected_norm, 1e-5 * expected_norm);
      EXPECT_LE(MaxAbsDifference(ours, theirs), 1e-6)
          << "stage " << stage << " step " << step;
    }
  }
}

TEST_F(ShardedOptimizerTest, RejectsMisuse) {
  std::unique_ptr<CollectiveGroup> group = SoloGroup("misuse");
  ASSERT_NE(group, nullptr);
  const at::Tensor weight = torch::ones({3}).requires_grad_();
  EXPECT_EQ(ShardedAdamW::Create(*group, {{"w", weight, 0}}, {.stage = 3})
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ShardedAdamW::Create(*group, {{"w", weight, 0}, {"v", weight, 0}})
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ShardedAdamW::Create(*group, {{"x", torch::ones({3}), 0}})
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  absl::StatusOr<std::unique_ptr<ShardedAdamW>> stage2 =
      ShardedAdamW::Create(*group, {{"w", weight, 0}}, {.stage = 2});
  ASSERT_TRUE(stage2.ok()) << stage2.status();
  EXPECT_EQ((*stage2)->Step(0.1, 1.0).status().code(),
            absl::StatusCode::kFailedPrecondition);
  // A shard written by stage 2 does not load into stage 1.
  const std::string path = TempDir("misuse") + "/shard";
  ASSERT_TRUE((*stage2)->Save(path).ok());
  absl::StatusOr<std::unique_ptr<ShardedAdamW>> stage1 =
      ShardedAdamW::Create(*group, {{"w", weight, 0}}, {.stage = 1});
  ASSERT_TRUE(stage1.ok());
  EXPECT_EQ((*stage1)->Load(path).code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(ShardedOptimizerTest, TwoProcessesMatchReplicated) {
  RunRanks("equal", 2);
}

TEST_F(ShardedOptimizerTest, Zero2ReleasesGradientsDuringBackward) {
  RunRanks("release", 2);
}

TEST_F(ShardedOptimizerTest, ThreeProcessesMatchReplicated) {
  RunRanks("equal", 3);
}

TEST_F(ShardedOptimizerTest, ResumedZero2EqualsUninterruptedTwoProcesses) {
  const std::string dir = TempDir("resume2");
  RunRanks("resume", 2, {{"LETHE_TEST_STAGE", "2"}, {"LETHE_TEST_DIR", dir}});
  // The same checkpoints at another world size: refused, naming both.
  std::unique_ptr<CollectiveGroup> group = SoloGroup("other-world");
  ASSERT_NE(group, nullptr);
  TrainingOptions options = BaseOptions(0, 1);
  options.checkpoint.dir = dir + "/checkpoints";
  absl::StatusOr<std::vector<at::Tensor>> refused = Train(*group, options, 2);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition)
      << refused.status();
  EXPECT_NE(refused.status().message().find(
                "shards of a 2-rank ZeRO run; this run has 1 ranks"),
            std::string::npos)
      << refused.status();
}

TEST_F(ShardedOptimizerTest, ResumedZero1EqualsUninterruptedThreeProcesses) {
  RunRanks("resume", 3,
           {{"LETHE_TEST_STAGE", "1"}, {"LETHE_TEST_DIR", TempDir("resume1")}});
}

}  // namespace
}  // namespace lethe

int main(int argc, char** argv) {
  return lethe::MultiProcessTestMain(argc, argv, lethe::kRoleVariable,
                                     {{"equal", lethe::RunEqualRank},
                                      {"resume", lethe::RunResumeRank},
                                      {"release", lethe::RunReleaseRank}},
                                     /*rank_threads=*/1);
}
