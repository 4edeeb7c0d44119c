// Data-parallel gradient averaging overlapped with the backward pass, as
// PyTorch's DistributedDataParallel does it: the parameters are split into
// buckets in reverse registration order (the order in which a transformer's
// backward pass finishes their gradients), and each bucket's all-reduce
// starts as soon as every gradient in it is final, while earlier layers are
// still differentiating.
//
//   ASSIGN_OR_RETURN(auto reducer,
//                    OverlappedReducer::Create(group, model.parameters()));
//   // Earlier micro-batches of the step: plain backward passes, no traffic.
//   RETURN_IF_ERROR(reducer->PrepareForBackward(last_loss));
//   last_loss.backward();
//   RETURN_IF_ERROR(reducer->FinishBackward());  // .grad() = mean over ranks
//
// Contract:
//   - Gradients arrive through post-hooks on each parameter's AccumulateGrad
//     node, installed by Create and removed by the destructor. They act only
//     between PrepareForBackward and FinishBackward: backward passes of
//     earlier micro-batches (gradient accumulation) reduce nothing, and
//     torch::autograd::grad (Hessian-vector products, OFMU, activation
//     checkpointing's recomputation) never runs AccumulateGrad, so it
//     triggers nothing either.
//   - Parameters that require no gradient are left out (frozen weights). A
//     parameter whose gradient never arrives (unused in this step, or
//     unreachable from `loss`) does not hold its bucket back forever:
//     PrepareForBackward walks `loss`'s graph and counts parameters it cannot
//     reach as ready at once, and FinishBackward starts every bucket not yet
//     started. Undefined gradients count as zeros; after FinishBackward every
//     parameter has a defined .grad().
//   - Buckets start strictly in bucket order on every rank, so the ranks'
//     collectives always pair up, even when a parameter is used on one rank
//     and not on another.
//   - Results equal those of CollectiveGroup::AllReduceMean after the backward
//     pass, up to the order in which the backend adds the ranks' values.
//   - A gradient that changes after its bucket started (a parameter whose
//     AccumulateGrad runs twice in one backward pass) is FAILED_PRECONDITION
//     from FinishBackward, never a silently wrong average.
//   - One backward pass at a time; not thread-safe beyond the autograd
//     engine's own calls of the hooks. The group must outlive the reducer.
#ifndef LETHE_LIBS_DIST_OVERLAPPED_REDUCER_H_
#define LETHE_LIBS_DIST_OVERLAPPED_REDUCER_H_

#include <torch/types.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "libs/dist/collective_group.h"
#include "libs/dist/gradient_ready_hooks.h"

namespace torch::autograd {
struct Node;
}  // namespace torch::autograd

namespace lethe {

struct OverlappedReducerOptions {
  // Most bytes of gradients per bucket (a single larger parameter gets a
  // bucket of its own). PyTorch DDP's defaults: 25 MiB, and 1 MiB for the
  // first bucket, so that communication starts early.
  int64_t bucket_bytes = 25 << 20;
  int64_t first_bucket_bytes = 1 << 20;
  // Walk the loss's graph in PrepareForBackward to find parameters it does
  // not reach (DDP's find_unused_parameters). Off: such parameters' buckets
  // start only in FinishBackward.
  bool find_unused_parameters = true;
};

// What the last backward pass did, for tests and benchmarks.
struct OverlappedReducerStats {
  int64_t buckets = 0;
  // Buckets whose all-reduce started before FinishBackward was called.
  int64_t started_during_backward = 0;
  // Parameters counted as ready because `loss` does not reach them.
  int64_t unreachable_parameters = 0;
};

class OverlappedReducer {
 public:
  // Installs the hooks on `parameters` that require a gradient. The bucket
  // layout is a pure function of the parameters' order, sizes, dtypes and
  // devices, so ranks with the same model get the same buckets.
  // INVALID_ARGUMENT for non-positive bucket sizes, a parameter that is not
  // a leaf, or one listed twice.
  static absl::StatusOr<std::unique_ptr<OverlappedReducer>> Create(
      CollectiveGroup& group, const std::vector<at::Tensor>& parameters,
      const OverlappedReducerOptions& options = {});
  // Removes the hooks and waits for any all-reduce still running.
  ~OverlappedReducer();
  OverlappedReducer(const OverlappedReducer&) = delete;
  OverlappedReducer& operator=(const OverlappedReducer&) = delete;

  // Arms the hooks for the next backward pass, whose root is `loss` (an
  // undefined tensor: no graph walk). Call it right before that backward
  // pass; the gradients the parameters already hold (earlier micro-batches)
  // are part of what is averaged.
  absl::Status PrepareForBackward(const at::Tensor& loss);
  // After the backward pass: starts the buckets not started yet, waits for
  // all of them and writes the mean over ranks into every parameter's
  // .grad(). The first collective or LibTorch error is returned.
  absl::Status FinishBackward();

  // The buckets, as indices into the parameters kept (those requiring a
  // gradient, in the order given); bucket 0 starts first.
  std::vector<std::vector<size_t>> BucketLayout() const;
  OverlappedReducerStats stats() const;

 private:
  struct Bucket;

  OverlappedReducer(CollectiveGroup& group, std::vector<at::Tensor> parameters,
                    std::vector<std::vector<size_t>> layout);
  // Called by the hook of parameter `index` once its AccumulateGrad ran.
  void OnGradientReady(size_t index);
  // Marks `index` ready and starts every bucket now ready, in order.
  // Requires mutex_.
  void MarkReadyLocked(size_t index);
  void StartReadyBucketsLocked();
  absl::Status StartBucketLocked(Bucket& bucket);
  // Copies the mean of a finished bucket into its parameters' .grad().
  absl::Status UnpackLocked(Bucket& bucket);
  // Waits for every started bucket, dropping the results.
  void AbandonLocked();

  CollectiveGroup& group_;
  std::vector<at::Tensor> parameters_;
  std::unique_ptr<GradientReadyHooks> hooks_;
  std::vector<std::unique_ptr<Bucket>> buckets_;
  std::vector<size_t> bucket_of_;  // Parameter index -> bucket index.
  // AccumulateGrad node -> parameter index; empty unless
  // find_unused_parameters.
  std::unordered_map<const torch::autograd::Node*, size_t> accumulator_index_;

  mutable std::mutex mutex_;
  bool armed_ = false;
  std::vector<bool> ready_;
  size_t next_to_start_ = 0;   // Buckets [0, next_to_start_) started.
  size_t next_to_unpack_ = 0;  // Buckets [0, next_to_unpack_) unpacked.
  absl::Status error_;         // First error of the current backward pass.
  OverlappedReducerStats stats_;
};

}  // namespace lethe

#endif  // LETHE_LIBS_DIST_OVERLAPPED_REDUCER_H_
