// AdamW sharded over the ranks of a data-parallel group (ZeRO stage 1 and
// 2): every rank keeps the fp32 moments (and, for parameters that are not
// fp32, fp32 master weights) of one shard of the trainable parameters only,
// updates that shard, and the ranks then all-gather the updated parameters.
//
//   ASSIGN_OR_RETURN(auto optimizer, ShardedAdamW::Create(
//       group, {{"layers.0.q_proj.weight", weight, /*weight_decay=*/0.01},
//               ...}, {.stage = 2}));
//   // Stage 2: right before the last micro-batch's backward pass.
//   RETURN_IF_ERROR(optimizer->PrepareForBackward());
//   loss.backward();
//   // After the step's backward passes (stage 1: after averaging the
//   // gradients as a replicated run does):
//   RETURN_IF_ERROR(optimizer->ReduceGradients());  // stage 2 only
//   ASSIGN_OR_RETURN(double norm, optimizer->Step(lr, /*max_grad_norm=*/1));
//
// Contract:
//   - The shard of rank r is a contiguous slice [bounds[r], bounds[r+1]) of
//     the parameters flattened in the order given, balanced by element count
//     (ShardBounds); a parameter may straddle two shards. Every rank must
//     create the optimizer with the same parameter list (names, shapes,
//     dtypes, weight decays) and call its collectives in the same order.
//   - Stage 1: Step reads the .grad() of the parameters, which the caller has
//     already averaged over ranks (CollectiveGroup::AllReduceMean or an
//     OverlappedReducer), exactly as the replicated trainer does.
//   - Stage 2: Create installs post-hooks on every parameter's
//     AccumulateGrad node. PrepareForBackward, called right before the
//     backward pass of a step's last micro-batch, arms them: the parameters
//     are split into buckets (reverse parameter order, at most bucket_bytes
//     each, contiguous in the flat order) and as soon as every gradient of
//     a bucket is final, the bucket is packed into one buffer, the
//     parameters' .grad()s are released (undefined), and one c10d reduce
//     per rank owning part of the bucket sums that slice onto its owner.
//     When a bucket's reduces end, this rank keeps the average of its own
//     slice in an fp32 gradient shard (4 bytes per shard element, allocated
//     by PrepareForBackward and freed by Step) and frees the buffer. So the
//     backward pass holds the gradients of the buckets not yet complete,
//     the buffers of the buckets in flight and the shard, never a full
//     gradient copy beyond that. ReduceGradients (after the backward pass)
//     starts the buckets not started yet (unused parameters' gradients
//     count as zeros), in order, at most two in flight, and waits for all.
//     Without PrepareForBackward it does all of that after the backward
//     pass. Buckets start strictly in order on every rank, so the reduces
//     pair up even when a parameter is used on one rank only.
//     Gradient accumulation: the hooks act only when armed, so the backward
//     passes of earlier micro-batches accumulate full local .grad()s as a
//     replicated run does (no traffic, full gradient memory during those
//     micro-batches); the last backward adds to them and the sum is what
//     is reduced. A gradient that changes after its bucket started
//     (AccumulateGrad twice in one pass) is FAILED_PRECONDITION from
//     ReduceGradients.
//   - Step: the global gradient norm is the square root of the all-reduced
//     sum of the shards' squared norms (accumulated in double); clipping
//     uses LibTorch's clip_grad_norm_ formula (coefficient max_norm /
//     (norm + 1e-6), fp32, clamped to 1). The update is
//     torch::optim::AdamW's (LibTorch 1.13): decoupled decay
//     p *= 1 - lr * wd, then moments, bias corrections and
//     p -= lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps), element-wise, so each
//     element equals the replicated run's up to the rounding of the
//     gradient average and the norm. The updated parameters are gathered
//     with c10d allgather in chunks of the shards (rows of at most
//     bucket_bytes / world_size bytes, zero-padded where a shard is one
//     element shorter): bucket-sized temporary memory.
//   - Save/Load write and read this rank's shard (moments, step, master
//     weights) as a LibTorch archive flushed to disk; Load refuses a file
//     written for another rank, world size or parameter layout with
//     FAILED_PRECONDITION naming both.
//   - Errors: INVALID_ARGUMENT from Create for an empty, undefined,
//     duplicated or non-floating parameter or a stage other than 1 or 2;
//     collective errors as CollectiveGroup classifies them. Not thread-safe;
//     the group must outlive the optimizer.
#ifndef LETHE_LIBS_DIST_SHARDED_OPTIMIZER_H_
#define LETHE_LIBS_DIST_SHARDED_OPTIMIZER_H_

#include <torch/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "libs/dist/collective_group.h"
#include "libs/dist/gradient_ready_hooks.h"

namespace torch::autograd {
struct Node;
}  // namespace torch::autograd

namespace lethe {

struct ShardedParameter {
  std::string name;
  at::Tensor tensor;  // A leaf requiring a gradient.
  double weight_decay = 0;
};

struct ShardedAdamWOptions {
  int stage = 1;  // ZeRO stage: 1 or 2.
  // torch::optim::AdamWOptions' defaults.
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  // Most bytes of the temporary buffers of the gradient reduction and the
  // parameter gathering.
  int64_t bucket_bytes = 25 << 20;
};

// What the last stage-2 reduction did, for tests and benchmarks.
struct ShardedAdamWStats {
  int64_t buckets = 0;
  // Buckets whose reduces started inside the backward pass (from a hook).
  int64_t started_during_backward = 0;
  int64_t reduces = 0;  // c10d reduce calls.
};

// Shard boundaries of `total` elements over `world_size` ranks: world_size +
// 1 offsets, the first `total % world_size` shards one element longer.
std::vector<int64_t> ShardBounds(int64_t total, int world_size);

class ShardedAdamW {
 public:
  static absl::StatusOr<std::unique_ptr<ShardedAdamW>> Create(
      CollectiveGroup& group, std::vector<ShardedParameter> parameters,
      const ShardedAdamWOptions& options = {});
  // Removes the hooks and waits for any reduce still running.
  ~ShardedAdamW();
  ShardedAdamW(const ShardedAdamW&) = delete;
  ShardedAdamW& operator=(const ShardedAdamW&) = delete;

  int stage() const { return options_.stage; }
  int rank() const { return group_.rank(); }
  int world_size() const { return group_.world_size(); }
  // This rank's slice of the flattened parameters.
  int64_t shard_begin() const { return bounds_[group_.rank()]; }
  int64_t shard_end() const { return bounds_[group_.rank() + 1]; }
  int64_t total_elements() const { return bounds_.back(); }
  int64_t step() const { return step_; }
  // Bytes this rank holds for the optimizer: moments, master weights and
  // (stage 2, from ReduceGradients to Step) the gradient shard.
  int64_t StateBytes() const;

  // Stage 2: see the contract. Stage 1: nothing.
  absl::Status PrepareForBackward();
  absl::Status ReduceGradients();
  ShardedAdamWStats stats() const;
  // Clips, updates this rank's shard, gathers the parameters; returns the
  // global gradient norm before clipping. max_grad_norm <= 0: no clipping.
  absl::StatusOr<double> Step(double learning_rate, double max_grad_norm);

  absl::Status Save(const std::string& path) const;
  absl::Status Load(const std::string& path);

 private:
  // The part of one parameter inside this rank's shard.
  struct Piece {
    size_t parameter;
    int64_t offset;  // In the flattened parameter.
    int64_t length;
    int64_t shard_offset;  // In this rank's shard.
  };

  // Stage 2: parameters [first, last), flat elements [begin, end).
  struct GradBucket {
    size_t first = 0, last = 0;
    int64_t begin = 0, end = 0;
    size_t pending = 0;  // Members whose gradient is not final yet.
    bool started = false;
    at::Tensor flat;  // Packed gradients while the reduces run.
    std::vector<PendingAllReduce> works;
    bool Completed() const;
  };
  ShardedAdamW(CollectiveGroup& group, std::vector<ShardedParameter> parameters,
               const ShardedAdamWOptions& options);
  absl::Status InstallHooks();
  void OnGradientReady(size_t index);
  // The rest require mutex_.
  absl::Status ArmLocked();
  void StartReadyBucketsLocked(bool during_backward);
  absl::Status StartBucketLocked(GradBucket& bucket);
  absl::Status UnpackLocked(GradBucket& bucket);
  void AbandonLocked();
  // Calls fn(parameter, offset in it, offset in the range, length) for the
  // parameters overlapping flat elements [flat_begin, flat_begin + length).
  void ForEachSegment(
      int64_t flat_begin, int64_t length,
      const std::function<void(size_t, int64_t, int64_t, int64_t)>& fn) const;
  absl::Status GatherParameters();
  // The fp32 weights of a piece: a view of the parameter, or of the master.
  at::Tensor Weights(const Piece& piece) const;
  at::Tensor Gradient(const Piece& piece) const;

  CollectiveGroup& group_;
  std::vector<ShardedParameter> parameters_;
  ShardedAdamWOptions options_;
  std::vector<int64_t> offsets_;  // Of each parameter in the flat order.
  std::vector<int64_t> bounds_;
  std::vector<Piece> pieces_;
  int64_t step_ = 0;
  at::Tensor exp_avg_;     // fp32 [shard elements].
  at::Tensor exp_avg_sq_;  // fp32 [shard elements].
  at::Tensor master_;      // fp32 [shard elements]; undefined if all fp32.
  at::Tensor grad_shard_;  // Stage 2: fp32 [shard elements].
  bool grad_reduced_ = false;

  // Stage 2's hooks and buckets (in start order).
  std::unique_ptr<GradientReadyHooks> hooks_;
  std::vector<GradBucket> grad_buckets_;
  std::vector<size_t> grad_bucket_of_;  // Parameter -> bucket.
  mutable std::mutex mutex_;
  bool armed_ = false;
  std::vector<bool> ready_;
  size_t next_to_start_ = 0;   // Buckets [0, next_to_start_) started.
  size_t next_to_unpack_ = 0;  // Buckets [0, next_to_unpack_) collected.
  absl::Status error_;
  ShardedAdamWStats stats_;
};

}  // namespace lethe

#endif  // LETHE_LIBS_DIST_SHARDED_OPTIMIZER_H_
