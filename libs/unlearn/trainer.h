// The training loop shared by fine-tuning and unlearning: AdamW, linear
// warm-up then linear decay (Hugging Face's schedule), gradient accumulation
// to an effective batch, clipping on the global gradient norm, seeded data
// order, explicit thread count, optional bf16 autocast, and hooks where
// data-parallel runs average gradients across ranks: after the backward
// passes of a step (reduce_gradients), or overlapped with the last one
// (overlapped_reducer).
//
//   TrainingOptions options{.learning_rate = 1e-3, .num_epochs = 5};
//   ASSIGN_OR_RETURN(TrainingSummary summary,
//                    RunTraining(model, examples.size(), options,
//                                [&](const std::vector<int64_t>& indices,
//                                    const StepContext& step) {
//                                  return MyLoss(indices);
//                                }));
//
// Every rank (options.rank of options.world_size) takes every world_size-th
// example of each epoch's permutation (libs/data/sharding.h), so all ranks
// run the same number of steps.
//
// Checkpoints and resume (options.checkpoint, libs/unlearn/checkpoint.h):
// with a directory set, a run first restores the newest intact checkpoint
// there (weights, AdamW state, step) and continues at that step; the data
// order, the learning rate and the global RNG seed of each step are pure
// functions of (seed, step), so an interrupted and resumed run ends with
// exactly the weights of an uninterrupted one, provided the loss function
// derives anything it draws from its StepContext. It writes a checkpoint
// every `every_steps` steps and after the last step; restarting a finished
// run does nothing. Resuming with other data-order or schedule settings
// (seed, batch sizes, world size, example count, total steps) is
// FAILED_PRECONDITION, and so is a data-parallel run whose ranks resumed
// from different steps (checked with one extra call of
// hooks.reduce_gradients on a one-element tensor, when a checkpoint
// directory is set and world_size > 1).
#ifndef LETHE_LIBS_UNLEARN_TRAINER_H_
#define LETHE_LIBS_UNLEARN_TRAINER_H_

#include <torch/nn/module.h>
#include <torch/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "libs/data/qa_example.h"
#include "libs/model/llama_model.h"

namespace lethe {

struct CheckpointOptions {
  std::string dir;          // Empty: no checkpoints, no resume.
  int64_t every_steps = 0;  // > 0: also every this many steps.
  int keep_last = 2;        // Checkpoints kept (<= 0: all).
  // False on data-parallel ranks other than 0: they resume from rank 0's
  // checkpoints (every rank holds the same weights and optimizer state).
  bool write = true;
  // What else determines the weights (model and data hashes, method,
  // coefficients, schedule: libs/run/run_identity.h), recorded in every
  // checkpoint next to the trainer's own fields (seed, batch sizes, world
  // size, total steps); a checkpoint resumes only a run equal in all of
  // them.
  std::map<std::string, std::string> run_identity;
  // Asked before each checkpoint is committed (see WriteCheckpoint); its
  // error stops training. Unset: always.
  std::function<absl::Status()> may_commit;
};

struct TrainingOptions {
  double learning_rate = 1e-5;
  double weight_decay = 0.01;  // Not applied to norm weights.
  double warmup_epochs = 1.0;
  double max_grad_norm = 1.0;  // <= 0: no clipping.
  int num_epochs = 10;
  int64_t max_steps = 0;  // > 0: stop after this many optimizer steps.
  int per_device_batch_size = 4;
  int gradient_accumulation_steps = 1;
  uint64_t seed = 0;
  int threads = 0;  // > 0: at::set_num_threads(threads).
  bool bf16_autocast = false;
  // > 0: answer-token losses (fine-tuning NLL; in unlearning runs every
  // objective's log-probs and NLL, and the reference log-prob cache) are
  // computed from the final hidden states this many answer tokens at a time,
  // never materialising the batch's [B, T, V] logits
  // (libs/loss/chunked_log_probs.h). Changes only where rounding falls.
  // 0: the plain computation from the full logits.
  int64_t loss_chunk_tokens = 0;
  int rank = 0;
  int world_size = 1;
  // Length grouping, for less padding: with one length per example here,
  // each epoch's order is LengthGroupedPermutation (libs/data/sharding.h)
  // over windows of `length_window_batches` global batches. Empty: plain
  // EpochPermutation.
  std::vector<int64_t> example_lengths;
  int length_window_batches = 4;
  // ZeRO: 0 keeps a replicated torch::optim::AdamW on every rank; 1 or 2
  // shards AdamW's state over the ranks with the optimizer that
  // hooks.sharded_optimizer makes (stage 2 also reduces the gradients to
  // the shards). Recorded in checkpoints (when > 0): a checkpoint resumes
  // only a run of the same stage and world size.
  int zero_stage = 0;
  CheckpointOptions checkpoint;
};

// Hugging Face's get_linear_schedule_with_warmup multiplier for the
// optimizer step numbered `step` (from 0): step/warmup while warming up
// (so the first step has learning rate 0 when warmup_steps > 0), then a
// linear decay reaching 0 at total_steps.
double LinearWarmupDecay(int64_t step, int64_t warmup_steps,
                         int64_t total_steps);

struct MicroBatchLoss {
  at::Tensor loss;  // Scalar to minimise, for this micro-batch.
  int64_t tokens = 0;
  std::map<std::string, double> components;  // Named parts, for logs.
};

// Where in the run a micro-batch falls.
struct StepContext {
  int64_t step = 0;  // 0-based optimizer step.
  int epoch = 0;
  double learning_rate = 0;  // Scheduled for this step.
  // 0-based index of the micro-batch within this rank's share of the epoch,
  // for deriving per-micro-batch data deterministically.
  int64_t micro_batch = 0;
};

// Computes the loss of the training examples at `indices`.
using MicroBatchLossFn = std::function<absl::StatusOr<MicroBatchLoss>(
    const std::vector<int64_t>&, const StepContext&)>;
// Replaces local gradients by their average over ranks (data parallelism).
using GradientReducer = std::function<absl::Status(std::vector<at::Tensor>&)>;

// Averages gradients over ranks while the backward pass of a step's last
// micro-batch runs (libs/dist/overlapped_reducer.h), instead of after it.
// RunTraining calls PrepareForBackward(loss) right before that backward
// pass, on the tensor it differentiates, and FinishBackward() after it;
// FinishBackward must leave every parameter's .grad() defined and equal to
// the mean over ranks of the gradients the ranks accumulated in the step.
// Backward passes of earlier micro-batches come without either call.
class BackwardGradientReducer {
 public:
  virtual ~BackwardGradientReducer() = default;
  virtual absl::Status PrepareForBackward(const at::Tensor& loss) = 0;
  virtual absl::Status FinishBackward() = 0;
};
// Makes the reducer of one RunTraining call for its trainable parameters
// (those requiring a gradient, in registration order); it lives until the
// call returns.
using BackwardGradientReducerFactory =
    std::function<absl::StatusOr<std::unique_ptr<BackwardGradientReducer>>(
        const std::vector<at::Tensor>& parameters)>;

// An AdamW whose state is sharded over the data-parallel ranks (ZeRO;
// libs/dist/zero_training.h makes one over a process group). With
// TrainingOptions::zero_stage > 0 it replaces RunTraining's replicated
// torch::optim::AdamW: RunTraining averages the step's gradients as usual
// (hooks.reduce_gradients or hooks.overlapped_reducer) and calls Step at
// stage 1; at stage 2 it calls PrepareForBackward right before the backward
// pass of the step's last micro-batch (the optimizer may reduce gradients
// and release the .grad()s it does not need during that pass, leaving them
// undefined: RunTraining then does not zero-fill them), ReduceGradients
// after it instead of averaging, then Step. Step leaves every rank with the
// same updated parameters.
//
// Checkpoints: at each checkpoint step every rank calls SaveShard on a
// staging path in the checkpoint root; the ranks agree (AllRanksOk) that
// every shard was written; rank 0 moves them into the checkpoint it writes
// (as OptimizerShardFileName(rank, world_size)) and commits it, and the
// ranks agree again that it did. checkpoint.write is ignored: rank 0 always
// commits, so the directory must be shared. At resume each rank restores
// its shard with LoadShard.
class ShardedTrainingOptimizer {
 public:
  virtual ~ShardedTrainingOptimizer() = default;
  virtual absl::Status PrepareForBackward() { return absl::OkStatus(); }
  virtual absl::Status ReduceGradients() = 0;
  // Clips on the global norm (max_grad_norm <= 0: no clipping), updates,
  // gathers; returns the norm before clipping.
  virtual absl::StatusOr<double> Step(double learning_rate,
                                      double max_grad_norm) = 0;
  virtual absl::Status SaveShard(const std::string& path) = 0;
  virtual absl::Status LoadShard(const std::string& path) = 0;
  // Collective: whether `ok` is true on every rank.
  virtual absl::StatusOr<bool> AllRanksOk(bool ok) = 0;
};

// A trainable parameter and the weight decay AdamW applies to it (0 for
// norm weights).
struct TrainableParameter {
  std::string name;
  at::Tensor tensor;
  double weight_decay = 0;
};
// Makes the sharded optimizer of one RunTraining call for its trainable
// parameters (in registration order) and ZeRO stage.
using ShardedOptimizerFactory =
    std::function<absl::StatusOr<std::unique_ptr<ShardedTrainingOptimizer>>(
        const std::vector<TrainableParameter>& parameters, int zero_stage)>;

struct StepRecord {
  int64_t step = 0;         // 1-based optimizer step.
  int64_t total_steps = 0;  // Of the whole run.
  int epoch = 0;
  double loss = 0;  // Mean micro-batch loss of the step (this rank).
  double learning_rate = 0;
  double grad_norm = 0;  // Before clipping.
  int64_t tokens = 0;    // Processed by this rank in the step.
  double seconds = 0;    // Computing the step, without checkpointing.
  std::map<std::string, double> components;
  std::string checkpoint;  // Directory written after this step, if any.
  double checkpoint_seconds = 0;
};

struct TrainingSummary {
  std::vector<StepRecord> steps;  // The steps run by this call.
  int64_t total_steps = 0;        // Of the whole run.
  double seconds = 0;
  int64_t tokens = 0;
  // The step restored from options.checkpoint.dir (0: started afresh), and
  // the checkpoint directory it came from.
  int64_t resumed_from_step = 0;
  std::string resumed_from;
  std::string last_checkpoint;  // Written by this call; empty if none.
  // Damaged checkpoints skipped when resuming.
  std::vector<std::string> checkpoint_warnings;
};

struct TrainingHooks {
  // Optional; averages the step's gradients after the backward passes, and
  // checks at resume that the ranks agree on the step.
  GradientReducer reduce_gradients;
  // Optional; when set, it averages the step's gradients (overlapped with
  // the last backward pass) and reduce_gradients serves only the resume
  // check. With world_size > 1 it needs reduce_gradients too.
  BackwardGradientReducerFactory overlapped_reducer;
  // Required when options.zero_stage > 0 (see ShardedTrainingOptimizer);
  // unused otherwise.
  ShardedOptimizerFactory sharded_optimizer;
  // Optional; called after each step (and its checkpoint, if any); an error
  // stops the run and is returned.
  std::function<absl::Status(const StepRecord&)> on_step;
  // Optional; called after each completed epoch (0-based); an error stops
  // the run.
  std::function<absl::Status(int epoch)> on_epoch_end;
};

absl::StatusOr<TrainingSummary> RunTraining(torch::nn::Module& model,
                                            int64_t num_examples,
                                            const TrainingOptions& options,
                                            const MicroBatchLossFn& loss,
                                            const TrainingHooks& hooks = {});

// The lengths of `examples`, for TrainingOptions::example_lengths.
std::vector<int64_t> ExampleLengths(const std::vector<QaExample>& examples);

// Supervised fine-tuning: token-mean NLL of the answers of `examples`.
absl::StatusOr<TrainingSummary> FinetuneOnQa(
    LlamaForCausalLM& model, const std::vector<QaExample>& examples, int pad_id,
    const TrainingOptions& options, const TrainingHooks& hooks = {});

}  // namespace lethe

#endif  // LETHE_LIBS_UNLEARN_TRAINER_H_
