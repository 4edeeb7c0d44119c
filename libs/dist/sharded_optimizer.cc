#include "libs/dist/sharded_optimizer.h"

#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/variable.h>
#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>

#include <algorithm>
#include <cmath>
#include <unordered_set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "libs/files/file_io.h"
#include "libs/status/status_macros.h"
#include "libs/status/torch_status.h"

namespace lethe {
namespace {

// The dtype parameters are gathered and gradients reduced in: fp32, or
// double for double parameters (bf16 / fp16 values are exact in fp32).
at::ScalarType BufferType(const at::Tensor& tensor) {
  return tensor.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
}

at::Tensor Flat(const at::Tensor& tensor) { return tensor.detach().view({-1}); }

at::Tensor Int64Tensor(const std::vector<int64_t>& values) {
  return torch::tensor(values, at::kLong);
}

std::vector<int64_t> Int64Values(const at::Tensor& tensor) {
  const at::Tensor cpu = tensor.to(at::kLong).cpu().contiguous();
  return std::vector<int64_t>(cpu.data_ptr<int64_t>(),
                              cpu.data_ptr<int64_t>() + cpu.numel());
}

}  // namespace

std::vector<int64_t> ShardBounds(int64_t total, int world_size) {
  std::vector<int64_t> bounds(world_size + 1, 0);
  const int64_t base = total / world_size;
  const int64_t extra = total % world_size;
  for (int r = 0; r < world_size; ++r) {
    bounds[r + 1] = bounds[r] + base + (r < extra ? 1 : 0);
  }
  return bounds;
}

ShardedAdamW::ShardedAdamW(CollectiveGroup& group,
                           std::vector<ShardedParameter> parameters,
                           const ShardedAdamWOptions& options)
    : group_(group), parameters_(std::move(parameters)), options_(options) {}

absl::StatusOr<std::unique_ptr<ShardedAdamW>> ShardedAdamW::Create(
    CollectiveGroup& group, std::vector<ShardedParameter> parameters,
    const ShardedAdamWOptions& options) {
  if (options.stage != 1 && options.stage != 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("ZeRO stage must be 1 or 2 for a sharded optimizer, got ",
                     options.stage));
  }
  if (options.bucket_bytes <= 0) {
    return absl::InvalidArgumentError("bucket_bytes must be positive");
  }
  if (parameters.empty()) {
    return absl::InvalidArgumentError("a sharded optimizer of no parameters");
  }
  std::unordered_set<const void*> seen;
  for (const ShardedParameter& parameter : parameters) {
    const at::Tensor& tensor = parameter.tensor;
    if (!tensor.defined() || !tensor.requires_grad() || !tensor.is_leaf()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "parameter ", parameter.name,
          " is not a defined leaf tensor that requires a gradient"));
    }
    if (!at::isFloatingType(tensor.scalar_type()) || !tensor.is_contiguous()) {
      return absl::InvalidArgumentError(
          absl::StrCat("parameter ", parameter.name,
                       " is not a contiguous floating-point tensor"));
    }
    if (!seen.insert(tensor.unsafeGetTensorImpl()).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("parameter ", parameter.name, " is listed twice"));
    }
  }
  std::unique_ptr<ShardedAdamW> optimizer(
      new ShardedAdamW(group, std::move(parameters), options));
  ShardedAdamW& self = *optimizer;
  int64_t total = 0;
  for (const ShardedParameter& parameter : self.parameters_) {
    self.offsets_.push_back(total);
    total += parameter.tensor.numel();
  }
  self.bounds_ = ShardBounds(total, group.world_size());
  const int64_t begin = self.shard_begin(), end = self.shard_end();
  bool all_fp32 = true;
  for (size_t i = 0; i < self.parameters_.size(); ++i) {
    const int64_t first = std::max(begin, self.offsets_[i]);
    const int64_t last =
        std::min(end, self.offsets_[i] + self.parameters_[i].tensor.numel());
    if (first >= last) continue;
    self.pieces_.push_back({.parameter = i,
                            .offset = first - self.offsets_[i],
                            .length = last - first,
                            .shard_offset = first - begin});
    if (self.parameters_[i].tensor.scalar_type() != at::kFloat) {
      all_fp32 = false;
    }
  }
  RETURN_IF_ERROR(CallTorch("allocating the optimizer shard", [&] {
    at::NoGradGuard no_grad;
    const at::TensorOptions fp32 =
        at::TensorOptions()
            .dtype(at::kFloat)
            .device(self.parameters_.front().tensor.device());
    self.exp_avg_ = torch::zeros({end - begin}, fp32);
    self.exp_avg_sq_ = torch::zeros({end - begin}, fp32);
    if (!all_fp32) {
      self.master_ = torch::zeros({end - begin}, fp32);
      for (const Piece& piece : self.pieces_) {
        self.master_.narrow(0, piece.shard_offset, piece.length)
            .copy_(Flat(self.parameters_[piece.parameter].tensor)
                       .narrow(0, piece.offset, piece.length));
      }
    }
  }));
  if (options.stage == 2) RETURN_IF_ERROR(self.InstallHooks());
  return optimizer;
}

int64_t ShardedAdamW::StateBytes() const {
  int64_t bytes = 0;
  for (const at::Tensor* tensor :
       {&exp_avg_, &exp_avg_sq_, &master_, &grad_shard_}) {
    if (tensor->defined()) bytes += static_cast<int64_t>(tensor->nbytes());
  }
  return bytes;
}

at::Tensor ShardedAdamW::Weights(const Piece& piece) const {
  if (master_.defined()) {
    return master_.narrow(0, piece.shard_offset, piece.length);
  }
  return Flat(parameters_[piece.parameter].tensor)
      .narrow(0, piece.offset, piece.length);
}

at::Tensor ShardedAdamW::Gradient(const Piece& piece) const {
  if (options_.stage == 2) {
    return grad_shard_.narrow(0, piece.shard_offset, piece.length);
  }
  const at::Tensor& grad = parameters_[piece.parameter].tensor.grad();
  if (!grad.defined()) {
    return torch::zeros({piece.length}, exp_avg_.options());
  }
  // A view for fp32 gradients (clipped in place, as the replicated run's).
  return grad.detach()
      .reshape({-1})
      .narrow(0, piece.offset, piece.length)
      .to(at::kFloat);
}

ShardedAdamW::~ShardedAdamW() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    armed_ = false;
    AbandonLocked();
  }
  hooks_.reset();
}

absl::Status ShardedAdamW::InstallHooks() {
  // Reverse parameter order (the order a backward pass finishes them); a
  // new bucket when the buffer dtype or device changes or the cap would be
  // passed. Each bucket is a contiguous range of the flat order.
  size_t last = parameters_.size();
  grad_bucket_of_.assign(parameters_.size(), 0);
  while (last > 0) {
    const at::Tensor& first_seen = parameters_[last - 1].tensor;
    const int64_t element_bytes = at::elementSize(BufferType(first_seen));
    size_t first = last;
    int64_t bytes = 0;
    while (first > 0) {
      const at::Tensor& next = parameters_[first - 1].tensor;
      const int64_t size = next.numel() * element_bytes;
      if (first < last && (BufferType(next) != BufferType(first_seen) ||
                           next.device() != first_seen.device() ||
                           bytes + size > options_.bucket_bytes)) {
        break;
      }
      bytes += size;
      --first;
    }
    GradBucket bucket;
    bucket.first = first;
    bucket.last = last;
    bucket.begin = offsets_[first];
    bucket.end = offsets_[last - 1] + parameters_[last - 1].tensor.numel();
    for (size_t i = first; i < last; ++i) {
      grad_bucket_of_[i] = grad_buckets_.size();
    }
    grad_buckets_.push_back(std::move(bucket));
    last = first;
  }
  ready_.assign(parameters_.size(), false);
  std::vector<at::Tensor> tensors;
  for (const ShardedParameter& parameter : parameters_) {
    tensors.push_back(parameter.tensor);
  }
  ASSIGN_OR_RETURN(
      hooks_, GradientReadyHooks::Install(
                  tensors, [this](size_t index) { OnGradientReady(index); }));
  return absl::OkStatus();
}

ShardedAdamWStats ShardedAdamW::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stats_;
}

absl::Status ShardedAdamW::PrepareForBackward() {
  if (options_.stage != 2) return absl::OkStatus();
  std::lock_guard<std::mutex> lock(mutex_);
  return ArmLocked();
}

absl::Status ShardedAdamW::ArmLocked() {
  AbandonLocked();  // A backward pass that ended in an error.
  armed_ = true;
  error_ = absl::OkStatus();
  grad_reduced_ = false;
  stats_ = {.buckets = static_cast<int64_t>(grad_buckets_.size())};
  ready_.assign(parameters_.size(), false);
  for (GradBucket& bucket : grad_buckets_) {
    bucket.pending = bucket.last - bucket.first;
    bucket.started = false;
  }
  return CallTorch("allocating the gradient shard", [&] {
    grad_shard_ =
        torch::zeros({shard_end() - shard_begin()}, exp_avg_.options());
  });
}

void ShardedAdamW::OnGradientReady(size_t index) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!armed_) return;  // An earlier micro-batch: accumulate locally.
  if (ready_[index]) {
    if (grad_buckets_[grad_bucket_of_[index]].started && error_.ok()) {
      error_ = absl::FailedPreconditionError(absl::StrCat(
          "the gradient of ", parameters_[index].name,
          " changed after its ZeRO-2 reduce started: its AccumulateGrad ran "
          "twice in one backward pass"));
    }
    return;
  }
  ready_[index] = true;
  --grad_buckets_[grad_bucket_of_[index]].pending;
  StartReadyBucketsLocked(/*during_backward=*/true);
  // Collect finished buckets now, so that their buffers go early.
  while (error_.ok() && next_to_unpack_ < next_to_start_ &&
         grad_buckets_[next_to_unpack_].Completed()) {
    error_ = UnpackLocked(grad_buckets_[next_to_unpack_++]);
  }
}

bool ShardedAdamW::GradBucket::Completed() const {
  for (const PendingAllReduce& work : works) {
    if (!work.IsCompleted()) return false;
  }
  return true;
}

void ShardedAdamW::StartReadyBucketsLocked(bool during_backward) {
  // Strictly in order, so that every rank's collectives pair up.
  while (error_.ok() && next_to_start_ < grad_buckets_.size() &&
         grad_buckets_[next_to_start_].pending == 0) {
    error_ = StartBucketLocked(grad_buckets_[next_to_start_++]);
    if (during_backward) ++stats_.started_during_backward;
  }
}

absl::Status ShardedAdamW::StartBucketLocked(GradBucket& bucket) {
  bucket.started = true;
  RETURN_IF_ERROR(CallTorch("packing a ZeRO-2 gradient bucket", [&] {
    at::NoGradGuard no_grad;
    const at::Tensor& model = parameters_[bucket.first].tensor;
    bucket.flat = torch::empty(
        {bucket.end - bucket.begin},
        at::TensorOptions().dtype(BufferType(model)).device(model.device()));
    for (size_t i = bucket.first; i < bucket.last; ++i) {
      at::Tensor slot = bucket.flat.narrow(0, offsets_[i] - bucket.begin,
                                           parameters_[i].tensor.numel());
      at::Tensor& grad = parameters_[i].tensor.mutable_grad();
      if (grad.defined()) {
        slot.copy_(grad.detach().reshape({-1}));
      } else {
        slot.zero_();
      }
      grad = at::Tensor();  // Released: the bucket holds it now.
    }
  }));
  if (group_.world_size() == 1) return absl::OkStatus();
  // One reduce per rank owning part of the bucket, onto that rank.
  for (int owner = 0; owner < group_.world_size(); ++owner) {
    const int64_t first = std::max(bounds_[owner], bucket.begin);
    const int64_t last = std::min(bounds_[owner + 1], bucket.end);
    if (first >= last) continue;
    ASSIGN_OR_RETURN(
        PendingAllReduce work,
        group_.StartReduceSum(
            bucket.flat.narrow(0, first - bucket.begin, last - first), owner));
    bucket.works.push_back(std::move(work));
    ++stats_.reduces;
  }
  return absl::OkStatus();
}

absl::Status ShardedAdamW::UnpackLocked(GradBucket& bucket) {
  absl::Status status;
  for (PendingAllReduce& work : bucket.works) status.Update(work.Wait());
  bucket.works.clear();
  if (status.ok()) {
    status = CallTorch("keeping this rank's gradient shard", [&] {
      at::NoGradGuard no_grad;
      const int64_t begin = shard_begin();
      const int64_t first = std::max(begin, bucket.begin);
      const int64_t last = std::min(shard_end(), bucket.end);
      if (first < last) {
        at::Tensor owned = grad_shard_.narrow(0, first - begin, last - first);
        owned.copy_(bucket.flat.narrow(0, first - bucket.begin, last - first));
        if (group_.world_size() > 1) owned.div_(group_.world_size());
      }
    });
  }
  bucket.flat = at::Tensor();
  return status;
}

void ShardedAdamW::AbandonLocked() {
  for (GradBucket& bucket : grad_buckets_) {
    for (PendingAllReduce& work : bucket.works) work.Wait().IgnoreError();
    bucket.works.clear();
    bucket.flat = at::Tensor();
    bucket.started = false;
  }
  next_to_start_ = 0;
  next_to_unpack_ = 0;
}

absl::Status ShardedAdamW::ReduceGradients() {
  if (options_.stage != 2) return absl::OkStatus();
  std::lock_guard<std::mutex> lock(mutex_);
  if (!armed_) RETURN_IF_ERROR(ArmLocked());
  armed_ = false;
  // Gradients that never arrived (unused parameters, or no
  // PrepareForBackward) are final as they are. At most two buckets in
  // flight from here on, so that reducing after the backward pass holds
  // two bucket buffers, not a second copy of every gradient.
  for (size_t i = 0; i < parameters_.size(); ++i) {
    if (!ready_[i]) {
      ready_[i] = true;
      --grad_buckets_[grad_bucket_of_[i]].pending;
    }
  }
  while (error_.ok() && next_to_start_ < grad_buckets_.size()) {
    if (next_to_start_ - next_to_unpack_ >= 2) {
      error_ = UnpackLocked(grad_buckets_[next_to_unpack_++]);
      continue;
    }
    error_ = StartBucketLocked(grad_buckets_[next_to_start_++]);
  }
  while (error_.ok() && next_to_unpack_ < next_to_start_) {
    error_ = UnpackLocked(grad_buckets_[next_to_unpack_++]);
  }
  if (!error_.ok()) {
    AbandonLocked();
    grad_shard_ = at::Tensor();
    return error_;
  }
  next_to_start_ = 0;
  next_to_unpack_ = 0;
  grad_reduced_ = true;
  return absl::OkStatus();
}

absl::StatusOr<double> ShardedAdamW::Step(double learning_rate,
                                          double max_grad_norm) {
  if (options_.stage == 2 && !grad_reduced_) {
    return absl::FailedPreconditionError(
        "ZeRO-2 step without ReduceGradients since the last step");
  }
  grad_reduced_ = false;
  std::vector<at::Tensor> gradients;
  std::vector<at::Tensor> squared;
  RETURN_IF_ERROR(CallTorch("the shard's squared gradient norm", [&] {
    at::NoGradGuard no_grad;
    at::Tensor sum = torch::zeros(
        {1}, at::TensorOptions().dtype(at::kDouble).device(exp_avg_.device()));
    for (const Piece& piece : pieces_) {
      gradients.push_back(Gradient(piece));
      sum += gradients.back().to(at::kDouble).square().sum();
    }
    squared.push_back(sum);
  }));
  RETURN_IF_ERROR(group_.AllReduceSum(squared));
  ASSIGN_OR_RETURN(const double norm, CallTorch("the global norm", [&] {
                     return std::sqrt(squared.front().item<double>());
                   }));
  RETURN_IF_ERROR(CallTorch("the sharded AdamW update", [&] {
    at::NoGradGuard no_grad;
    if (max_grad_norm > 0) {
      // clip_grad_norm_'s coefficient: an fp32 tensor, clamped to 1.
      const at::Tensor coefficient = torch::clamp(
          max_grad_norm /
              (torch::scalar_tensor(norm, exp_avg_.options()) + 1e-6),
          c10::nullopt, 1.0);
      for (at::Tensor& gradient : gradients) gradient.mul_(coefficient);
    }
    ++step_;
    const double beta1 = options_.beta1, beta2 = options_.beta2;
    const double bias_correction1 = 1 - std::pow(beta1, step_);
    const double bias_correction2 = 1 - std::pow(beta2, step_);
    const double step_size = learning_rate / bias_correction1;
    for (size_t k = 0; k < pieces_.size(); ++k) {
      const Piece& piece = pieces_[k];
      const at::Tensor& gradient = gradients[k];
      at::Tensor weights = Weights(piece);
      const double weight_decay = parameters_[piece.parameter].weight_decay;
      if (weight_decay != 0) weights.mul_(1 - learning_rate * weight_decay);
      at::Tensor exp_avg = exp_avg_.narrow(0, piece.shard_offset, piece.length);
      at::Tensor exp_avg_sq =
          exp_avg_sq_.narrow(0, piece.shard_offset, piece.length);
      exp_avg.mul_(beta1).add_(gradient, 1 - beta1);
      exp_avg_sq.mul_(beta2).addcmul_(gradient, gradient, 1 - beta2);
      const at::Tensor denom =
          (exp_avg_sq.sqrt() / std::sqrt(bias_correction2)).add_(options_.eps);
      weights.addcdiv_(exp_avg, denom, -step_size);
      if (master_.defined()) {
        Flat(parameters_[piece.parameter].tensor)
            .narrow(0, piece.offset, piece.length)
            .copy_(weights);
      }
    }
  }));
  grad_shard_ = at::Tensor();  // Freed until the next ReduceGradients.
  RETURN_IF_ERROR(GatherParameters());
  return norm;
}

void ShardedAdamW::ForEachSegment(
    int64_t flat_begin, int64_t length,
    const std::function<void(size_t, int64_t, int64_t, int64_t)>& fn) const {
  if (length <= 0) return;
  const int64_t flat_end = flat_begin + length;
  size_t i = static_cast<size_t>(
      std::upper_bound(offsets_.begin(), offsets_.end(), flat_begin) -
      offsets_.begin() - 1);
  for (; i < parameters_.size() && offsets_[i] < flat_end; ++i) {
    const int64_t first = std::max(flat_begin, offsets_[i]);
    const int64_t last =
        std::min(flat_end, offsets_[i] + parameters_[i].tensor.numel());
    if (first < last) {
      fn(i, first - offsets_[i], first - flat_begin, last - first);
    }
  }
}

absl::Status ShardedAdamW::GatherParameters() {
  const int world_size = group_.world_size();
  if (world_size == 1) return absl::OkStatus();
  // Shards differ in length by at most one element and Gloo's allgather
  // wants equal rows: chunk the shards by shard-local offset, each rank's
  // row zero-padded past its shard's end.
  at::ScalarType dtype = at::kFloat;
  for (const ShardedParameter& parameter : parameters_) {
    if (BufferType(parameter.tensor) == at::kDouble) dtype = at::kDouble;
  }
  const at::TensorOptions buffer = at::TensorOptions().dtype(dtype).device(
      parameters_.front().tensor.device());
  const int64_t longest = bounds_[1] - bounds_[0];
  const int64_t chunk = std::max<int64_t>(
      1, options_.bucket_bytes / (at::elementSize(dtype) * world_size));
  for (int64_t start = 0; start < longest; start += chunk) {
    const int64_t row = std::min(chunk, longest - start);
    at::Tensor mine;
    std::vector<at::Tensor> all;
    RETURN_IF_ERROR(CallTorch("packing a parameter all-gather", [&] {
      at::NoGradGuard no_grad;
      mine = torch::zeros({row}, buffer);
      const int64_t valid =
          std::clamp<int64_t>(shard_end() - shard_begin() - start, 0, row);
      ForEachSegment(shard_begin() + start, valid,
                     [&](size_t i, int64_t offset, int64_t at, int64_t n) {
                       mine.narrow(0, at, n).copy_(
                           Flat(parameters_[i].tensor).narrow(0, offset, n));
                     });
      for (int r = 0; r < world_size; ++r) {
        all.push_back(torch::empty({row}, buffer));
      }
    }));
    RETURN_IF_ERROR(group_.AllGather(mine, all));
    RETURN_IF_ERROR(CallTorch("unpacking a parameter all-gather", [&] {
      at::NoGradGuard no_grad;
      for (int r = 0; r < world_size; ++r) {
        if (r == group_.rank()) continue;
        const int64_t valid =
            std::clamp<int64_t>(bounds_[r + 1] - bounds_[r] - start, 0, row);
        ForEachSegment(bounds_[r] + start, valid,
                       [&](size_t i, int64_t offset, int64_t at, int64_t n) {
                         Flat(parameters_[i].tensor)
                             .narrow(0, offset, n)
                             .copy_(all[r].narrow(0, at, n));
                       });
      }
    }));
  }
  return absl::OkStatus();
}

absl::Status ShardedAdamW::Save(const std::string& path) const {
  std::string bytes;
  RETURN_IF_ERROR(CallTorch("serializing the optimizer shard", [&] {
    torch::serialize::OutputArchive archive;
    std::vector<int64_t> numels;
    for (const ShardedParameter& parameter : parameters_) {
      numels.push_back(parameter.tensor.numel());
    }
    archive.write("format_version", Int64Tensor({1}));
    archive.write(
        "rank_world_stage",
        Int64Tensor({group_.rank(), group_.world_size(), options_.stage}));
    archive.write("numels", Int64Tensor(numels));
    archive.write("step", Int64Tensor({step_}));
    archive.write("exp_avg", exp_avg_.cpu());
    archive.write("exp_avg_sq", exp_avg_sq_.cpu());
    if (master_.defined()) archive.write("master", master_.cpu());
    archive.save_to([&](const void* data, size_t size) -> size_t {
      bytes.append(static_cast<const char*>(data), size);
      return size;
    });
  }));
  return WriteFileAtomically(path, bytes);
}

absl::Status ShardedAdamW::Load(const std::string& path) {
  ASSIGN_OR_RETURN(const std::string bytes, ReadFileToString(path));
  torch::serialize::InputArchive archive;
  at::Tensor version, rank_world_stage, numels, step, exp_avg, exp_avg_sq,
      master;
  RETURN_IF_ERROR(CallTorch(absl::StrCat("reading ", path), [&] {
    archive.load_from(bytes.data(), bytes.size());
    archive.read("format_version", version);
    archive.read("rank_world_stage", rank_world_stage);
    archive.read("numels", numels);
    archive.read("step", step);
    archive.read("exp_avg", exp_avg);
    archive.read("exp_avg_sq", exp_avg_sq);
    if (!archive.try_read("master", master)) master = at::Tensor();
  }));
  const std::vector<int64_t> header = Int64Values(rank_world_stage);
  if (header.size() != 3) {
    return absl::DataLossError(absl::StrCat(path, ": malformed shard header"));
  }
  if (header[1] != group_.world_size() || header[0] != group_.rank()) {
    return absl::FailedPreconditionError(absl::StrCat(
        path, ": optimizer shard of rank ", header[0], " of a ", header[1],
        "-rank run; this is rank ", group_.rank(), " of ", group_.world_size(),
        ": a ZeRO checkpoint resumes only at the world size that wrote it"));
  }
  if (header[2] != options_.stage) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, ": written by ZeRO stage ", header[2],
                     ", this run uses stage ", options_.stage));
  }
  std::vector<int64_t> expected;
  for (const ShardedParameter& parameter : parameters_) {
    expected.push_back(parameter.tensor.numel());
  }
  if (Int64Values(numels) != expected) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, ": written for another parameter layout (",
                     Int64Values(numels).size(), " parameters, this run has ",
                     expected.size(), ")"));
  }
  if (exp_avg.numel() != exp_avg_.numel() ||
      exp_avg_sq.numel() != exp_avg_sq_.numel() ||
      master.defined() != master_.defined() ||
      (master.defined() && master.numel() != master_.numel())) {
    return absl::DataLossError(
        absl::StrCat(path, ": shard tensors do not match the shard's size"));
  }
  return CallTorch(absl::StrCat("restoring ", path), [&] {
    at::NoGradGuard no_grad;
    step_ = Int64Values(step).at(0);
    exp_avg_.copy_(exp_avg);
    exp_avg_sq_.copy_(exp_avg_sq);
    if (master_.defined()) master_.copy_(master);
    grad_reduced_ = false;
  });
}

}  // namespace lethe
