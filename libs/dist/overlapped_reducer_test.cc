// OverlappedReducer against the reduce-after-backward path
// (CollectiveGroup::AllReduceMean) in real multi-process Gloo groups: the
// test binary re-executes itself as the ranks (LETHE_OVERLAP_TEST_ROLE),
// over a TCPStore that the test process hosts on a free port. Single-process
// checks (bucket layout, hook lifetime, misuse) run in a group of one.
#include "libs/dist/overlapped_reducer.h"

#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/variable.h>

#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "libs/data/qa_example.h"
#include "libs/dist/collective_group.h"
#include "libs/dist/multi_process_test_util.h"
#include "libs/loss/sequence_loss.h"
#include "libs/model/llama_model.h"
#include "libs/model/tiny_llama.h"
#include "libs/status/status_macros.h"
#include "libs/unlearn/trainer.h"

namespace lethe {
namespace {

constexpr char kRoleVariable[] = "LETHE_OVERLAP_TEST_ROLE";

std::vector<at::Tensor> Gradients(const std::vector<at::Tensor>& parameters) {
  std::vector<at::Tensor> gradients;
  for (const at::Tensor& parameter : parameters) {
    gradients.push_back(parameter.grad().defined()
                            ? parameter.grad().clone()
                            : torch::zeros_like(parameter));
  }
  return gradients;
}

void ClearGradients(const std::vector<at::Tensor>& parameters) {
  for (at::Tensor parameter : parameters) {
    parameter.mutable_grad() = at::Tensor();
  }
}

// A tiny Llama (the same weights on every rank) and, after its parameters,
// three more: one no loss uses, one only rank 0's loss uses, one frozen.
// Listed last, the first two land in bucket 0, the first to start.
struct Setup {
  std::unique_ptr<LlamaForCausalLM> model;
  at::Tensor unused;
  at::Tensor rank0_only;
  at::Tensor frozen;
  std::vector<at::Tensor> parameters;  // All four kinds.
  std::vector<at::Tensor> trainable;   // Without the frozen one.
};

Setup MakeSetup() {
  Setup setup;
  torch::manual_seed(3);
  setup.model = std::make_unique<LlamaForCausalLM>(
      LlamaConfigOf({.vocab_size = 40, .hidden_size = 16, .layers = 3}));
  RedrawWeights(*setup.model, 0.3);
  setup.unused = torch::randn({7}).requires_grad_();
  setup.rank0_only = torch::randn({5}).requires_grad_();
  setup.frozen = torch::randn({9});
  setup.parameters = setup.model->parameters();
  for (const at::Tensor& extra :
       {setup.frozen, setup.unused, setup.rank0_only}) {
    setup.parameters.push_back(extra);
  }
  for (const at::Tensor& parameter : setup.parameters) {
    if (parameter.requires_grad()) setup.trainable.push_back(parameter);
  }
  return setup;
}

// This rank's loss on its own tokens (draw `batch` of them).
at::Tensor RankLoss(Setup& setup, int rank, int batch) {
  torch::manual_seed(100 + 10 * rank + batch);
  const at::Tensor ids = torch::randint(0, 40, {2, 6}, at::kLong);
  at::Tensor loss = TokenMeanNll(setup.model->Forward(ids), ids);
  if (rank == 0)
    loss = loss + 0.1 * (setup.rank0_only * setup.rank0_only).sum();
  return loss;
}

// The reference: backward passes, then AllReduceMean of the gradients.
absl::StatusOr<std::vector<at::Tensor>> ReferenceGradients(
    Setup& setup, CollectiveGroup& group, int micro_batches) {
  ClearGradients(setup.trainable);
  for (int micro = 0; micro < micro_batches; ++micro) {
    RankLoss(setup, group.rank(), micro).backward();
  }
  std::vector<at::Tensor> gradients = Gradients(setup.trainable);
  RETURN_IF_ERROR(group.AllReduceMean(gradients));
  return gradients;
}

// Rank body: overlapped results equal the reference, with and without
// accumulation, with and without the graph walk, over two reuses of one
// reducer; buckets start during the backward pass.
int RunEqualRank() {
  std::unique_ptr<CollectiveGroup> group = JoinFromEnvironment();
  const int rank = group->rank();
  Setup setup = MakeSetup();
  for (bool find_unused : {true, false}) {
    absl::StatusOr<std::unique_ptr<OverlappedReducer>> reducer =
        OverlappedReducer::Create(*group, setup.parameters,
                                  {.bucket_bytes = 4096,
                                   .first_bucket_bytes = 512,
                                   .find_unused_parameters = find_unused});
    LETHE_RANK_CHECK(reducer.ok(), reducer.status());
    LETHE_RANK_CHECK((*reducer)->stats().buckets >= 4,
                     (*reducer)->stats().buckets << " buckets");
    for (int micro_batches : {1, 3}) {
      absl::StatusOr<std::vector<at::Tensor>> expected =
          ReferenceGradients(setup, *group, micro_batches);
      LETHE_RANK_CHECK(expected.ok(), expected.status());

      ClearGradients(setup.trainable);
      for (int micro = 0; micro + 1 < micro_batches; ++micro) {
        RankLoss(setup, rank, micro).backward();  // No traffic: not armed.
      }
      const at::Tensor last = RankLoss(setup, rank, micro_batches - 1);
      absl::Status status = (*reducer)->PrepareForBackward(last);
      LETHE_RANK_CHECK(status.ok(), status);
      last.backward();
      const OverlappedReducerStats stats = (*reducer)->stats();
      status = (*reducer)->FinishBackward();
      LETHE_RANK_CHECK(status.ok(), status);

      const double difference =
          MaxAbsDifference(Gradients(setup.trainable), *expected);
      std::cerr << "rank " << rank << " find_unused " << find_unused
                << " micro-batches " << micro_batches << ": "
                << stats.started_during_backward << " of " << stats.buckets
                << " buckets started during backward, max difference "
                << difference << "\n";
      LETHE_RANK_CHECK(difference <= 1e-6,
                       "gradients differ by " << difference);
      LETHE_RANK_CHECK(setup.frozen.grad().defined() == false,
                       "the frozen parameter got a gradient");
      LETHE_RANK_CHECK(torch::equal(setup.unused.grad(), torch::zeros({7})),
                       "the unused parameter's gradient is not zero");
      if (find_unused) {
        // Bucket 0 holds the unused parameter: only the walk lets it start
        // before the end, and the others follow it.
        LETHE_RANK_CHECK(stats.unreachable_parameters == (rank == 0 ? 1 : 2),
                         stats.unreachable_parameters << " unreachable");
        LETHE_RANK_CHECK(stats.started_during_backward > stats.buckets / 2,
                         stats.started_during_backward << " started early");
      } else {
        LETHE_RANK_CHECK(stats.started_during_backward == 0,
                         stats.started_during_backward << " started early");
      }
    }
  }
  return 0;
}

// Rank body: Hessian-vector products and a double-backward outer loss, as
// OFMU builds them. torch::autograd::grad passes inside the armed window
// start nothing, and the outer backward pass averages like the reference.
int RunSecondOrderRank() {
  std::unique_ptr<CollectiveGroup> group = JoinFromEnvironment();
  const int rank = group->rank();
  Setup setup = MakeSetup();
  const std::vector<at::Tensor> weights = setup.model->parameters();
  // L + 0.5 ||grad L||^2: its backward pass differentiates a gradient.
  auto outer_loss = [&]() {
    const at::Tensor inner = RankLoss(setup, rank, 0);
    const std::vector<at::Tensor> gradient = torch::autograd::grad(
        {inner}, weights, {}, /*retain_graph=*/true, /*create_graph=*/true);
    at::Tensor penalty = torch::zeros({});
    for (const at::Tensor& g : gradient) penalty = penalty + (g * g).sum();
    return inner + 0.5 * penalty;
  };
  ClearGradients(setup.trainable);
  outer_loss().backward();
  std::vector<at::Tensor> expected = Gradients(setup.trainable);
  absl::Status status = group->AllReduceMean(expected);
  LETHE_RANK_CHECK(status.ok(), status);

  absl::StatusOr<std::unique_ptr<OverlappedReducer>> reducer =
      OverlappedReducer::Create(
          *group, setup.parameters,
          {.bucket_bytes = 4096, .first_bucket_bytes = 512});
  LETHE_RANK_CHECK(reducer.ok(), reducer.status());
  ClearGradients(setup.trainable);
  const at::Tensor loss = outer_loss();
  status = (*reducer)->PrepareForBackward(loss);
  LETHE_RANK_CHECK(status.ok(), status);
  const int64_t started_at_prepare =
      (*reducer)->stats().started_during_backward;
  // A Hessian-vector product while armed: no AccumulateGrad runs.
  {
    const at::Tensor inner = RankLoss(setup, rank, 1);
    const std::vector<at::Tensor> gradient = torch::autograd::grad(
        {inner}, weights, {}, /*retain_graph=*/true, /*create_graph=*/true);
    at::Tensor dot = torch::zeros({});
    for (const at::Tensor& g : gradient) dot = dot + g.sum();
    const std::vector<at::Tensor> hvp =
        torch::autograd::grad({dot}, weights, {}, /*retain_graph=*/false,
                              /*create_graph=*/false, /*allow_unused=*/true);
    LETHE_RANK_CHECK(hvp.size() == weights.size(), "no Hessian-vector product");
  }
  LETHE_RANK_CHECK(
      (*reducer)->stats().started_during_backward == started_at_prepare,
      "torch::autograd::grad started a bucket");
  for (const at::Tensor& weight : weights) {
    LETHE_RANK_CHECK(!weight.grad().defined(),
                     "autograd::grad wrote a .grad()");
  }
  loss.backward();
  LETHE_RANK_CHECK(
      (*reducer)->stats().started_during_backward > started_at_prepare,
      "nothing started during the outer backward pass");
  status = (*reducer)->FinishBackward();
  LETHE_RANK_CHECK(status.ok(), status);
  const double difference =
      MaxAbsDifference(Gradients(setup.trainable), expected);
  std::cerr << "rank " << rank << " second order: max difference " << difference
            << "\n";
  LETHE_RANK_CHECK(difference <= 1e-6, "gradients differ by " << difference);
  return 0;
}

std::vector<QaExample> Examples() {
  std::vector<QaExample> examples;
  for (int i = 0; i < 18; ++i) {
    const int a = 3 + i, b = 11 + (i * 3) % 17, c = 4 + (i * 5) % 23;
    QaExample example{.input_ids = {1, a, b, c, 2},
                      .labels = {kIgnoreIndex, kIgnoreIndex, b, c, 2}};
    for (int extra = 0; extra < i % 3; ++extra) {  // Some padding.
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

// Rank body: RunTraining with 3 micro-batches per step ends with the same
// weights whether gradients are averaged after the backward pass or
// overlapped with it, and every rank holds the same weights.
int RunAccumulationRank() {
  std::unique_ptr<CollectiveGroup> group = JoinFromEnvironment();
  const int rank = group->rank();
  const int world_size = group->world_size();
  TrainingOptions options{.learning_rate = 1e-2,
                          .warmup_epochs = 0,
                          .num_epochs = 2,
                          .per_device_batch_size = 1,
                          .gradient_accumulation_steps = 3,
                          .seed = 4,
                          .threads = 1,
                          .rank = rank,
                          .world_size = world_size};
  GradientReducer after_backward = [&](std::vector<at::Tensor>& gradients) {
    return group->AllReduceMean(gradients);
  };
  auto train =
      [&](bool overlapped, int64_t* started,
          int64_t* prepared) -> absl::StatusOr<std::vector<at::Tensor>> {
    torch::manual_seed(9);
    LlamaForCausalLM model(LlamaConfigOf({.vocab_size = 32, .layers = 2}));
    TrainingHooks hooks{.reduce_gradients = after_backward};
    if (overlapped) {
      hooks.overlapped_reducer = [&](const std::vector<at::Tensor>& parameters)
          -> absl::StatusOr<std::unique_ptr<BackwardGradientReducer>> {
        ASSIGN_OR_RETURN(
            std::unique_ptr<OverlappedReducer> reducer,
            OverlappedReducer::Create(
                *group, parameters,
                {.bucket_bytes = 2048, .first_bucket_bytes = 256}));
        // Counts what the reducer did across the run.
        class Counting : public BackwardGradientReducer {
         public:
          Counting(std::unique_ptr<OverlappedReducer> reducer, int64_t* started,
                   int64_t* prepared)
              : reducer_(std::move(reducer)),
                started_(started),
                prepared_(prepared) {}
          absl::Status PrepareForBackward(const at::Tensor& loss) override {
            ++*prepared_;
            return reducer_->PrepareForBackward(loss);
          }
          absl::Status FinishBackward() override {
            *started_ += reducer_->stats().started_during_backward;
            return reducer_->FinishBackward();
          }

         private:
          std::unique_ptr<OverlappedReducer> reducer_;
          int64_t* started_;
          int64_t* prepared_;
        };
        return std::make_unique<Counting>(std::move(reducer), started,
                                          prepared);
      };
    }
    ASSIGN_OR_RETURN(TrainingSummary summary,
                     FinetuneOnQa(model, Examples(), 0, options, hooks));
    if (summary.steps.empty()) return absl::InternalError("no steps");
    return Weights(model);
  };
  int64_t started = 0, prepared = 0;
  absl::StatusOr<std::vector<at::Tensor>> plain =
      train(false, &started, &prepared);
  LETHE_RANK_CHECK(plain.ok(), plain.status());
  absl::StatusOr<std::vector<at::Tensor>> overlapped =
      train(true, &started, &prepared);
  LETHE_RANK_CHECK(overlapped.ok(), overlapped.status());
  const int64_t steps = 2 * ((18 / world_size + 2) / 3);
  LETHE_RANK_CHECK(prepared == steps, prepared << " armed backward passes for "
                                               << steps << " steps");
  LETHE_RANK_CHECK(started > 0, "no bucket started during a backward pass");
  const double difference = MaxAbsDifference(*plain, *overlapped);
  // Every rank holds the mean of the ranks' weights.
  std::vector<at::Tensor> mean = *overlapped;
  const absl::Status status = group->AllReduceMean(mean);
  LETHE_RANK_CHECK(status.ok(), status);
  const double spread = MaxAbsDifference(mean, *overlapped);
  std::cerr << "rank " << rank << " accumulation: max weight difference "
            << difference << ", spread across ranks " << spread << "\n";
  LETHE_RANK_CHECK(difference <= 1e-5, "weights differ by " << difference);
  LETHE_RANK_CHECK(spread <= 1e-6, "ranks' weights differ by " << spread);
  return 0;
}

class OverlappedReducerTest : public MultiProcessTest {
 protected:
  OverlappedReducerTest()
      : MultiProcessTest(kRoleVariable, absl::Seconds(240)) {}
};

TEST_F(OverlappedReducerTest, TwoProcessesMatchReduceAfterBackward) {
  RunRanks("equal", 2);
}

TEST_F(OverlappedReducerTest, ThreeProcessesMatchReduceAfterBackward) {
  RunRanks("equal", 3);
}

TEST_F(OverlappedReducerTest, SecondOrderPassesStartNothing) {
  RunRanks("second_order", 2);
}

TEST_F(OverlappedReducerTest, AccumulationMatchesReduceAfterBackwardTwoRanks) {
  RunRanks("accumulation", 2);
}

TEST_F(OverlappedReducerTest,
       AccumulationMatchesReduceAfterBackwardThreeRanks) {
  RunRanks("accumulation", 3);
}

TEST_F(OverlappedReducerTest, BucketsFollowReverseOrderAndSizes) {
  std::unique_ptr<CollectiveGroup> group = SoloGroup("layout");
  ASSERT_NE(group, nullptr);
  // 100 floats = 400 bytes each; the fourth is frozen, the sixth is double.
  std::vector<at::Tensor> parameters;
  for (int i = 0; i < 8; ++i) {
    parameters.push_back(torch::zeros({100}, i == 5 ? at::kDouble : at::kFloat)
                             .requires_grad_(i != 3));
  }
  absl::StatusOr<std::unique_ptr<OverlappedReducer>> reducer =
      OverlappedReducer::Create(
          *group, parameters,
          {.bucket_bytes = 1000, .first_bucket_bytes = 400});
  ASSERT_TRUE(reducer.ok()) << reducer.status();
  // Kept: 0 1 2 4 5(double) 6 7 -> indices 0..6, index 4 the double.
  const std::vector<std::vector<size_t>> expected = {
      {6}, {5}, {4}, {3, 2}, {1, 0}};
  EXPECT_EQ((*reducer)->BucketLayout(), expected);
}

TEST_F(OverlappedReducerTest, RejectsMisuse) {
  std::unique_ptr<CollectiveGroup> group = SoloGroup("misuse");
  ASSERT_NE(group, nullptr);
  const at::Tensor weight = torch::ones({3}).requires_grad_();
  EXPECT_EQ(OverlappedReducer::Create(*group, {weight, weight}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(OverlappedReducer::Create(*group, {weight * 2}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(OverlappedReducer::Create(*group, {weight}, {.bucket_bytes = 0})
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  absl::StatusOr<std::unique_ptr<OverlappedReducer>> reducer =
      OverlappedReducer::Create(*group, {weight});
  ASSERT_TRUE(reducer.ok()) << reducer.status();
  EXPECT_EQ((*reducer)->FinishBackward().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(OverlappedReducerTest, AGradientAfterItsBucketStartedIsAnError) {
  std::unique_ptr<CollectiveGroup> group = SoloGroup("twice");
  ASSERT_NE(group, nullptr);
  const at::Tensor weight = torch::ones({3}).requires_grad_();
  absl::StatusOr<std::unique_ptr<OverlappedReducer>> reducer =
      OverlappedReducer::Create(*group, {weight});
  ASSERT_TRUE(reducer.ok()) << reducer.status();
  const at::Tensor loss = (weight * weight).sum();
  ASSERT_TRUE((*reducer)->PrepareForBackward(loss).ok());
  loss.backward({}, /*retain_graph=*/true);
  loss.backward();  // The bucket started after the first one.
  EXPECT_EQ((*reducer)->FinishBackward().code(),
            absl::StatusCode::kFailedPrecondition);
  // The next backward pass starts clean.
  weight.mutable_grad() = at::Tensor();
  const at::Tensor again = (3 * weight).sum();
  ASSERT_TRUE((*reducer)->PrepareForBackward(again).ok());
  again.backward();
  ASSERT_TRUE((*reducer)->FinishBackward().ok());
  EXPECT_TRUE(torch::equal(weight.grad(), torch::full({3}, 3.0)));
}

TEST_F(OverlappedReducerTest, DestroyingRemovesTheHooks) {
  std::unique_ptr<CollectiveGroup> group = SoloGroup("hooks");
  ASSERT_NE(group, nullptr);
  const at::Tensor weight = torch::ones({3}).requires_grad_();
  {
    absl::StatusOr<std::unique_ptr<OverlappedReducer>> reducer =
        OverlappedReducer::Create(*group, {weight});
    ASSERT_TRUE(reducer.ok()) << reducer.status();
    // Armed, then destroyed with the backward pass never run.
    ASSERT_TRUE((*reducer)->PrepareForBackward((2 * weight).sum()).ok());
  }
  const std::shared_ptr<torch::autograd::Node> accumulator =
      torch::autograd::impl::grad_accumulator(weight);
  EXPECT_TRUE(accumulator->post_hooks().empty());
  (2 * weight).sum().backward();
  EXPECT_TRUE(torch::equal(weight.grad(), torch::full({3}, 2.0)));
}

}  // namespace
}  // namespace lethe

int main(int argc, char** argv) {
  return lethe::MultiProcessTestMain(
      argc, argv, lethe::kRoleVariable,
      {{"equal", lethe::RunEqualRank},
       {"second_order", lethe::RunSecondOrderRank},
       {"accumulation", lethe::RunAccumulationRank}},
      /*rank_threads=*/1);
}
