#include "libs/dist/overlapped_reducer.h"

#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/variable.h>

#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "libs/dist/gradient_ready_hooks.h"
#include "libs/status/status_macros.h"
#include "libs/status/torch_status.h"

namespace lethe {

struct OverlappedReducer::Bucket {
  // kIdle until its all-reduce starts; kDone once unpacked, until the next
  // PrepareForBackward.
  enum class State { kIdle, kStarted, kDone };

  std::vector<size_t> members;   // Parameter indices, in bucket order.
  std::vector<int64_t> offsets;  // Of each member in `flat`.
  int64_t numel = 0;             // Elements of all members.
  // Packed gradients, then their sum; only while the all-reduce runs.
  at::Tensor flat;
  size_t pending = 0;  // Members not ready yet.
  State state = State::kIdle;
  std::optional<PendingAllReduce> work;
};

absl::StatusOr<std::unique_ptr<OverlappedReducer>> OverlappedReducer::Create(
    CollectiveGroup& group, const std::vector<at::Tensor>& parameters,
    const OverlappedReducerOptions& options) {
  if (options.bucket_bytes <= 0 || options.first_bucket_bytes <= 0) {
    return absl::InvalidArgumentError("bucket sizes must be positive");
  }
  std::vector<at::Tensor> kept;
  std::unordered_set<const void*> seen;
  for (const at::Tensor& parameter : parameters) {
    if (!parameter.defined()) {
      return absl::InvalidArgumentError("an undefined parameter");
    }
    if (!parameter.requires_grad()) continue;
    if (!parameter.is_leaf()) {
      return absl::InvalidArgumentError(
          "a parameter that is not a leaf of the autograd graph");
    }
    if (!seen.insert(parameter.unsafeGetTensorImpl()).second) {
      return absl::InvalidArgumentError("a parameter is listed twice");
    }
    kept.push_back(parameter);
  }
  // Reverse registration order; a new bucket when the dtype or device
  // changes or the cap would be passed.
  std::vector<std::vector<size_t>> layout;
  std::vector<size_t> current;
  int64_t bytes = 0;
  int64_t cap = options.first_bucket_bytes;
  for (size_t i = kept.size(); i-- > 0;) {
    const at::Tensor& parameter = kept[i];
    const int64_t size = static_cast<int64_t>(parameter.nbytes());
    if (!current.empty()) {
      const at::Tensor& first = kept[current.front()];
      if (first.scalar_type() != parameter.scalar_type() ||
          first.device() != parameter.device() || bytes + size > cap) {
        layout.push_back(std::move(current));
        current.clear();
        bytes = 0;
        cap = options.bucket_bytes;
      }
    }
    current.push_back(i);
    bytes += size;
  }
  if (!current.empty()) layout.push_back(std::move(current));

  std::unique_ptr<OverlappedReducer> reducer(
      new OverlappedReducer(group, std::move(kept), std::move(layout)));
  OverlappedReducer* self = reducer.get();
  ASSIGN_OR_RETURN(
      reducer->hooks_,
      GradientReadyHooks::Install(reducer->parameters_, [self](size_t index) {
        self->OnGradientReady(index);
      }));
  RETURN_IF_ERROR(CallTorch("laying out the gradient buckets", [&] {
    for (std::unique_ptr<Bucket>& bucket : reducer->buckets_) {
      int64_t numel = 0;
      for (size_t member : bucket->members) {
        bucket->offsets.push_back(numel);
        numel += reducer->parameters_[member].numel();
      }
      bucket->numel = numel;
    }
  }));
  if (options.find_unused_parameters) {
    const auto& accumulators = reducer->hooks_->accumulators();
    for (size_t i = 0; i < accumulators.size(); ++i) {
      reducer->accumulator_index_[accumulators[i].get()] = i;
    }
  }
  reducer->stats_.buckets = static_cast<int64_t>(reducer->buckets_.size());
  return reducer;
}

OverlappedReducer::OverlappedReducer(CollectiveGroup& group,
                                     std::vector<at::Tensor> parameters,
                                     std::vector<std::vector<size_t>> layout)
    : group_(group),
      parameters_(std::move(parameters)),
      bucket_of_(parameters_.size()),
      ready_(parameters_.size(), false) {
  for (std::vector<size_t>& members : layout) {
    auto bucket = std::make_unique<Bucket>();
    for (size_t member : members) bucket_of_[member] = buckets_.size();
    bucket->members = std::move(members);
    buckets_.push_back(std::move(bucket));
  }
}

OverlappedReducer::~OverlappedReducer() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    armed_ = false;
    AbandonLocked();
  }
  hooks_.reset();
}

std::vector<std::vector<size_t>> OverlappedReducer::BucketLayout() const {
  std::vector<std::vector<size_t>> layout;
  for (const std::unique_ptr<Bucket>& bucket : buckets_) {
    layout.push_back(bucket->members);
  }
  return layout;
}

OverlappedReducerStats OverlappedReducer::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stats_;
}

absl::Status OverlappedReducer::PrepareForBackward(const at::Tensor& loss) {
  // Parameters that the backward pass from `loss` reaches.
  std::vector<bool> reached(parameters_.size(), true);
  if (loss.defined() && !accumulator_index_.empty()) {
    reached.assign(parameters_.size(), false);
    RETURN_IF_ERROR(CallTorch("finding the parameters the loss reaches", [&] {
      const torch::autograd::Edge root =
          torch::autograd::impl::gradient_edge(loss);
      std::vector<torch::autograd::Node*> stack;
      std::unordered_set<const torch::autograd::Node*> visited;
      if (root.function != nullptr) {
        stack.push_back(root.function.get());
        visited.insert(root.function.get());
      }
      while (!stack.empty()) {
        torch::autograd::Node* node = stack.back();
        stack.pop_back();
        const auto found = accumulator_index_.find(node);
        if (found != accumulator_index_.end()) reached[found->second] = true;
        for (const torch::autograd::Edge& edge : node->next_edges()) {
          torch::autograd::Node* next = edge.function.get();
          if (next != nullptr && visited.insert(next).second) {
            stack.push_back(next);
          }
        }
      }
    }));
  }
  std::lock_guard<std::mutex> lock(mutex_);
  AbandonLocked();  // A backward pass that ended in an error.
  armed_ = true;
  error_ = absl::OkStatus();
  next_to_start_ = 0;
  next_to_unpack_ = 0;
  stats_.started_during_backward = 0;
  stats_.unreachable_parameters = 0;
  ready_.assign(parameters_.size(), false);
  for (std::unique_ptr<Bucket>& bucket : buckets_) {
    bucket->pending = bucket->members.size();
    bucket->state = Bucket::State::kIdle;
  }
  for (size_t i = 0; i < parameters_.size(); ++i) {
    if (!reached[i]) {
      ++stats_.unreachable_parameters;
      MarkReadyLocked(i);
    }
  }
  StartReadyBucketsLocked();
  return error_;
}

void OverlappedReducer::OnGradientReady(size_t index) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!armed_) return;
  if (ready_[index]) {
    if (buckets_[bucket_of_[index]]->state != Bucket::State::kIdle &&
        error_.ok()) {
      error_ = absl::FailedPreconditionError(absl::StrCat(
          "the gradient of parameter ", index, " (", bucket_of_[index],
          "th all-reduce bucket) changed after its all-reduce started: its "
          "AccumulateGrad ran twice in one backward pass, or the graph walk "
          "missed it"));
    }
    return;
  }
  MarkReadyLocked(index);
  StartReadyBucketsLocked();
  // Unpack finished buckets now rather than after the backward pass.
  while (error_.ok() && next_to_unpack_ < next_to_start_ &&
         buckets_[next_to_unpack_]->work->IsCompleted()) {
    error_ = UnpackLocked(*buckets_[next_to_unpack_++]);
  }
}

void OverlappedReducer::MarkReadyLocked(size_t index) {
  ready_[index] = true;
  --buckets_[bucket_of_[index]]->pending;
}

void OverlappedReducer::StartReadyBucketsLocked() {
  // Strictly in order, so that every rank's collectives pair up.
  while (error_.ok() && next_to_start_ < buckets_.size() &&
         buckets_[next_to_start_]->pending == 0) {
    error_ = StartBucketLocked(*buckets_[next_to_start_++]);
    if (armed_) ++stats_.started_during_backward;
  }
}

absl::Status OverlappedReducer::StartBucketLocked(Bucket& bucket) {
  RETURN_IF_ERROR(CallTorch("packing an all-reduce bucket", [&] {
    at::NoGradGuard no_grad;
    // Allocated per backward pass and freed once unpacked, so that the
    // buffers never add up to a second copy of every gradient.
    const at::Tensor& first = parameters_[bucket.members.front()];
    bucket.flat = torch::empty(
        {bucket.numel},
        at::TensorOptions().dtype(first.scalar_type()).device(first.device()));
    for (size_t i = 0; i < bucket.members.size(); ++i) {
      const at::Tensor& parameter = parameters_[bucket.members[i]];
      at::Tensor slot =
          bucket.flat.narrow(0, bucket.offsets[i], parameter.numel())
              .view(parameter.sizes());
      const at::Tensor& grad = parameter.grad();
      if (grad.defined()) {
        slot.copy_(grad);
      } else {
        slot.zero_();
      }
    }
  }));
  ASSIGN_OR_RETURN(PendingAllReduce work,
                   group_.StartAllReduceSum(bucket.flat));
  bucket.work.emplace(std::move(work));
  bucket.state = Bucket::State::kStarted;
  return absl::OkStatus();
}

absl::Status OverlappedReducer::UnpackLocked(Bucket& bucket) {
  const absl::Status waited = bucket.work->Wait();
  bucket.work.reset();
  bucket.state = Bucket::State::kDone;
  if (!waited.ok()) {
    bucket.flat = at::Tensor();
    return waited;
  }
  const int world_size = group_.world_size();
  absl::Status unpacked = CallTorch("unpacking an all-reduce bucket", [&] {
    at::NoGradGuard no_grad;
    const at::Tensor divisor =
        torch::scalar_tensor(static_cast<double>(world_size), at::kDouble);
    for (size_t i = 0; i < bucket.members.size(); ++i) {
      at::Tensor& parameter = parameters_[bucket.members[i]];
      const at::Tensor sum =
          bucket.flat.narrow(0, bucket.offsets[i], parameter.numel())
              .view(parameter.sizes());
      at::Tensor& grad = parameter.mutable_grad();
      if (!grad.defined()) {
        grad = torch::empty_like(parameter, at::MemoryFormat::Preserve);
      }
      if (world_size == 1) {
        grad.copy_(sum);
      } else {
        at::div_out(grad, sum, divisor);
      }
    }
  });
  bucket.flat = at::Tensor();
  return unpacked;
}

absl::Status OverlappedReducer::FinishBackward() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!armed_) {
    return absl::FailedPreconditionError(
        "FinishBackward without PrepareForBackward");
  }
  armed_ = false;
  // Gradients that never arrived are final as they are.
  for (size_t i = 0; i < parameters_.size(); ++i) {
    if (!ready_[i]) MarkReadyLocked(i);
  }
  StartReadyBucketsLocked();
  while (next_to_unpack_ < next_to_start_) {
    Bucket& bucket = *buckets_[next_to_unpack_++];
    if (error_.ok()) {
      error_ = UnpackLocked(bucket);
    } else {
      bucket.work->Wait().IgnoreError();
      bucket.work.reset();
      bucket.state = Bucket::State::kIdle;
    }
  }
  for (std::unique_ptr<Bucket>& bucket : buckets_) {
    bucket->state = Bucket::State::kIdle;
  }
  return error_;
}

void OverlappedReducer::AbandonLocked() {
  for (std::unique_ptr<Bucket>& bucket : buckets_) {
    if (bucket->work.has_value()) {
      bucket->work->Wait().IgnoreError();
      bucket->work.reset();
    }
    bucket->flat = at::Tensor();
    bucket->state = Bucket::State::kIdle;
  }
  next_to_start_ = 0;
  next_to_unpack_ = 0;
}

}  // namespace lethe
