#include "libs/dist/sharded_optimizer.h"

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

std::vector<std::pair<size_t, size_t>> ShardedAdamW::Buckets() const {
  std::vector<std::pair<size_t, size_t>> buckets;
  size_t begin = 0;
  while (begin < parameters_.size()) {
    const at::Tensor& first = parameters_[begin].tensor;
    const int64_t element_bytes = at::elementSize(BufferType(first));
    size_t end = begin;
    int64_t bytes = 0;
    while (end < parameters_.size()) {
      const at::Tensor& next = parameters_[end].tensor;
      const int64_t size = next.numel() * element_bytes;
      if (end > begin && (BufferType(next) != BufferType(first) ||
                          next.device() != first.device() ||
                          bytes + size > options_.bucket_bytes)) {
        break;
      }
      bytes += size;
      ++end;
    }
    buckets.emplace_back(begin, end);
    begin = end;
  }
  return buckets;
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

absl::Status ShardedAdamW::ReduceGradients() {
  if (options_.stage != 2) return absl::OkStatus();
  const int world_size = group_.world_size();
  const int64_t begin = shard_begin(), end = shard_end();
  RETURN_IF_ERROR(CallTorch("allocating the gradient shard", [&] {
    grad_shard_ = torch::zeros({end - begin}, exp_avg_.options());
  }));
  for (const auto& [first, last] : Buckets()) {
    const int64_t bucket_begin = offsets_[first];
    const int64_t bucket_end =
        offsets_[last - 1] + parameters_[last - 1].tensor.numel();
    at::Tensor flat;
    RETURN_IF_ERROR(CallTorch("packing a gradient bucket", [&] {
      at::NoGradGuard no_grad;
      const at::Tensor& model = parameters_[first].tensor;
      flat = torch::empty(
          {bucket_end - bucket_begin},
          at::TensorOptions().dtype(BufferType(model)).device(model.device()));
      for (size_t i = first; i < last; ++i) {
        at::Tensor slot = flat.narrow(0, offsets_[i] - bucket_begin,
                                      parameters_[i].tensor.numel());
        const at::Tensor& grad = parameters_[i].tensor.grad();
        if (grad.defined()) {
          slot.copy_(grad.detach().reshape({-1}));
        } else {
          slot.zero_();
        }
      }
    }));
    std::vector<at::Tensor> bucket = {flat};
    RETURN_IF_ERROR(group_.AllReduceSum(bucket, flat.nbytes() + 1));
    RETURN_IF_ERROR(CallTorch("keeping this rank's gradient shard", [&] {
      at::NoGradGuard no_grad;
      const int64_t first_owned = std::max(begin, bucket_begin);
      const int64_t last_owned = std::min(end, bucket_end);
      if (first_owned < last_owned) {
        at::Tensor owned = grad_shard_.narrow(0, first_owned - begin,
                                              last_owned - first_owned);
        owned.copy_(flat.narrow(0, first_owned - bucket_begin,
                                last_owned - first_owned));
        if (world_size > 1) owned.div_(world_size);
      }
      for (size_t i = first; i < last; ++i) {
        parameters_[i].tensor.mutable_grad() = at::Tensor();
      }
    }));
  }
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

absl::Status ShardedAdamW::GatherParameters() {
  if (group_.world_size() == 1) return absl::OkStatus();
  for (const auto& [first, last] : Buckets()) {
    const int64_t bucket_begin = offsets_[first];
    const int64_t bucket_end =
        offsets_[last - 1] + parameters_[last - 1].tensor.numel();
    at::Tensor flat;
    RETURN_IF_ERROR(CallTorch("packing a parameter bucket", [&] {
      at::NoGradGuard no_grad;
      const at::Tensor& model = parameters_[first].tensor;
      flat = torch::zeros(
          {bucket_end - bucket_begin},
          at::TensorOptions().dtype(BufferType(model)).device(model.device()));
      // This rank's elements (the parameters' own values, already rounded
      // to their dtype); zeros elsewhere.
      for (const Piece& piece : pieces_) {
        if (piece.parameter < first || piece.parameter >= last) continue;
        flat.narrow(0, offsets_[piece.parameter] + piece.offset - bucket_begin,
                    piece.length)
            .copy_(Flat(parameters_[piece.parameter].tensor)
                       .narrow(0, piece.offset, piece.length));
      }
    }));
    std::vector<at::Tensor> bucket = {flat};
    RETURN_IF_ERROR(group_.AllReduceSum(bucket, flat.nbytes() + 1));
    RETURN_IF_ERROR(CallTorch("unpacking a parameter bucket", [&] {
      at::NoGradGuard no_grad;
      for (size_t i = first; i < last; ++i) {
        Flat(parameters_[i].tensor)
            .copy_(flat.narrow(0, offsets_[i] - bucket_begin,
                               parameters_[i].tensor.numel()));
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
