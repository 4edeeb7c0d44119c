#include "libs/dist/collective_group.h"

#include <torch/version.h>

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef LETHE_WITH_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <algorithm>
#include <chrono>
#include <cstring>
#include <exception>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "libs/status/status_macros.h"
#include "libs/status/torch_status.h"

namespace lethe {
namespace {

// LibTorch 1.x runs collectives on c10d::ProcessGroup subclasses; from 2.0
// the Gloo and NCCL implementations are c10d::Backend subclasses.
#if TORCH_VERSION_MAJOR >= 2
using TorchCollectives = c10d::Backend;
#else
using TorchCollectives = c10d::ProcessGroup;
#endif

std::chrono::milliseconds ToChrono(absl::Duration duration) {
  return std::chrono::milliseconds(absl::ToInt64Milliseconds(duration));
}

// Classifies an exception thrown by c10d while doing `what`.
absl::Status CollectiveError(absl::string_view what,
                             const std::exception& error) {
  const absl::Status status = StatusFromException(what, error);
  const absl::string_view message = status.message();
  if (absl::StrContains(message, "imeout") ||
      absl::StrContains(message, "imed out")) {
    return absl::DeadlineExceededError(message);
  }
  if (absl::StrContains(message, "onnection") ||
      absl::StrContains(message, "peer")) {
    return absl::UnavailableError(message);
  }
  return status;
}

}  // namespace

class CollectiveGroup::Backend {
 public:
  Backend(c10::intrusive_ptr<c10d::Store> store,
          c10::intrusive_ptr<TorchCollectives> collectives,
          absl::Duration timeout)
      : store_(std::move(store)),
        collectives_(std::move(collectives)),
        timeout_(timeout) {}

  absl::Status AllReduce(std::vector<at::Tensor>& tensors,
                         absl::string_view what) {
    try {
      c10d::AllreduceOptions options;
      options.reduceOp = c10d::ReduceOp::SUM;
      collectives_->allreduce(tensors, options)->wait(ToChrono(timeout_));
      return absl::OkStatus();
    } catch (const std::exception& error) {
      return CollectiveError(what, error);
    }
  }

  // Starts a sum all-reduce of `tensors`; the work handle reports its end.
  absl::StatusOr<c10::intrusive_ptr<c10d::Work>> StartAllReduce(
      std::vector<at::Tensor>& tensors, absl::string_view what) {
    try {
      c10d::AllreduceOptions options;
      options.reduceOp = c10d::ReduceOp::SUM;
      return collectives_->allreduce(tensors, options);
    } catch (const std::exception& error) {
      return CollectiveError(what, error);
    }
  }

  // Starts a sum reduce of `tensors` onto rank `root`.
  absl::StatusOr<c10::intrusive_ptr<c10d::Work>> StartReduce(
      std::vector<at::Tensor>& tensors, int root, absl::string_view what) {
    try {
      c10d::ReduceOptions options;
      options.reduceOp = c10d::ReduceOp::SUM;
      options.rootRank = root;
      options.rootTensor = 0;
      return collectives_->reduce(tensors, options);
    } catch (const std::exception& error) {
      return CollectiveError(what, error);
    }
  }

  absl::Status AllGather(std::vector<std::vector<at::Tensor>>& outputs,
                         std::vector<at::Tensor>& inputs,
                         absl::string_view what) {
    try {
      collectives_->allgather(outputs, inputs)->wait(ToChrono(timeout_));
      return absl::OkStatus();
    } catch (const std::exception& error) {
      return CollectiveError(what, error);
    }
  }

  absl::Duration timeout() const { return timeout_; }

  absl::Status Barrier() {
    try {
      collectives_->barrier()->wait(ToChrono(timeout_));
      return absl::OkStatus();
    } catch (const std::exception& error) {
      return CollectiveError("barrier", error);
    }
  }

 private:
  c10::intrusive_ptr<c10d::Store> store_;
  c10::intrusive_ptr<TorchCollectives> collectives_;
  absl::Duration timeout_;
};

struct PendingAllReduce::State {
  c10::intrusive_ptr<c10d::Work> work;
  at::Tensor tensor;  // Kept alive until the collective ends.
  absl::Duration timeout;
  std::string what;
  bool waited = false;
  absl::Status status;
};

PendingAllReduce::PendingAllReduce(std::unique_ptr<State> state)
    : state_(std::move(state)) {}
PendingAllReduce::PendingAllReduce(PendingAllReduce&&) noexcept = default;
PendingAllReduce& PendingAllReduce::operator=(PendingAllReduce&&) noexcept =
    default;
PendingAllReduce::~PendingAllReduce() = default;

bool PendingAllReduce::IsCompleted() const {
  if (state_ == nullptr || state_->waited) return true;
  try {
    return state_->work->isCompleted();
  } catch (const std::exception&) {
    return true;  // Wait() reports the error.
  }
}

absl::Status PendingAllReduce::Wait() {
  if (state_ == nullptr) {
    return absl::FailedPreconditionError("waiting on a moved-from all-reduce");
  }
  if (state_->waited) return state_->status;
  state_->waited = true;
  try {
    state_->work->wait(ToChrono(state_->timeout));
  } catch (const std::exception& error) {
    state_->status = CollectiveError(state_->what, error);
  }
  state_->work.reset();
  return state_->status;
}

absl::StatusOr<CollectiveBackend> ParseCollectiveBackend(
    absl::string_view name) {
  if (name == "gloo") return CollectiveBackend::kGloo;
  if (name == "nccl") return CollectiveBackend::kNccl;
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown collective backend '", name, "': expected 'gloo' or 'nccl'"));
}

RendezvousStore::RendezvousStore(c10::intrusive_ptr<c10d::Store> store,
                                 int port)
    : store_(std::move(store)), port_(port) {}

RendezvousStore::~RendezvousStore() = default;

absl::StatusOr<std::unique_ptr<RendezvousStore>> RendezvousStore::Start(
    const std::string& host, int port) {
  if (port < 0 || port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("rendezvous port ", port, " is out of range"));
  }
  try {
    c10d::TCPStoreOptions options;
    options.port = static_cast<uint16_t>(port);
    options.isServer = true;
    options.waitWorkers = false;
    auto store = c10::make_intrusive<c10d::TCPStore>(host, options);
    const int bound_port = store->getPort();
    return std::unique_ptr<RendezvousStore>(
        new RendezvousStore(std::move(store), bound_port));
  } catch (const std::exception& error) {
    return absl::UnavailableError(
        StatusFromException(
            absl::StrCat("starting the rendezvous store on ", host, ":", port),
            error)
            .message());
  }
}

CollectiveGroup::CollectiveGroup(std::unique_ptr<Backend> backend,
                                 const RendezvousSpec& spec)
    : backend_(std::move(backend)),
      rank_(spec.rank),
      world_size_(spec.world_size),
      backend_kind_(spec.backend),
      buffer_device_(spec.backend == CollectiveBackend::kNccl ? spec.device
                                                              : at::kCPU) {}

CollectiveGroup::~CollectiveGroup() = default;

absl::StatusOr<std::unique_ptr<CollectiveGroup>> CollectiveGroup::Join(
    const RendezvousSpec& spec) {
  if (spec.world_size < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("world_size must be at least 1, got ", spec.world_size));
  }
  if (spec.rank < 0 || spec.rank >= spec.world_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        "rank ", spec.rank, " is outside [0, ", spec.world_size, ")"));
  }
  if (spec.store_port <= 0 || spec.store_port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("store_port ", spec.store_port, " is out of range"));
  }
  if (spec.prefix.empty()) {
    return absl::InvalidArgumentError(
        "prefix must name the attempt, e.g. 'job-7/attempt-0'");
  }
  if (spec.timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("timeout must be positive");
  }
#ifndef LETHE_WITH_NCCL
  if (spec.backend == CollectiveBackend::kNccl) {
    return absl::FailedPreconditionError(
        "this build of Lethe has no NCCL support: build with the CMake mirror "
        "against a CUDA LibTorch and -DLETHE_WITH_NCCL=ON");
  }
#endif

  const std::string where =
      absl::StrCat("joining rank ", spec.rank, " of ", spec.world_size, " via ",
                   spec.store_host, ":", spec.store_port, "/", spec.prefix);
  try {
    c10d::TCPStoreOptions store_options;
    store_options.port = static_cast<uint16_t>(spec.store_port);
    store_options.isServer = false;
    store_options.timeout = ToChrono(spec.timeout);
    auto tcp_store =
        c10::make_intrusive<c10d::TCPStore>(spec.store_host, store_options);
    auto store = c10::make_intrusive<c10d::PrefixStore>(spec.prefix, tcp_store);

    c10::intrusive_ptr<TorchCollectives> collectives;
    if (spec.backend == CollectiveBackend::kGloo) {
      auto options =
          c10d::ProcessGroupGloo::Options::create(ToChrono(spec.timeout));
      options->devices.push_back(
          c10d::ProcessGroupGloo::createDeviceForHostname(spec.local_address));
      collectives = c10::make_intrusive<c10d::ProcessGroupGloo>(
          store, spec.rank, spec.world_size, options);
    } else {
#ifdef LETHE_WITH_NCCL
      auto options = c10d::ProcessGroupNCCL::Options::create();
      options->timeout = ToChrono(spec.timeout);
      collectives = c10::make_intrusive<c10d::ProcessGroupNCCL>(
          store, spec.rank, spec.world_size, options);
#endif
    }
    auto backend = std::make_unique<Backend>(
        std::move(store), std::move(collectives), spec.timeout);
    std::unique_ptr<CollectiveGroup> group(
        new CollectiveGroup(std::move(backend), spec));
    // Gloo connects lazily on some versions; a barrier makes Join return only
    // once every rank is really there.
    RETURN_IF_ERROR(group->Barrier());
    return group;
  } catch (const std::exception& error) {
    return CollectiveError(where, error);
  }
}

absl::Status CollectiveGroup::AllReduceFlat(at::Tensor& flat) {
  std::vector<at::Tensor> bucket = {flat};
  return backend_->AllReduce(
      bucket, absl::StrCat("all-reduce of ", flat.numel(), " ",
                           c10::toString(flat.scalar_type()), " values over ",
                           world_size_, " ranks"));
}

absl::StatusOr<PendingAllReduce> CollectiveGroup::StartAllReduceSum(
    const at::Tensor& flat) {
  if (!flat.defined()) {
    return absl::InvalidArgumentError("all-reduce of an undefined tensor");
  }
  if (!flat.is_contiguous()) {
    return absl::InvalidArgumentError(
        "an asynchronous all-reduce needs a contiguous tensor");
  }
  auto state = std::make_unique<PendingAllReduce::State>();
  state->tensor = flat;
  state->timeout = backend_->timeout();
  state->what = absl::StrCat("all-reduce of ", flat.numel(), " ",
                             c10::toString(flat.scalar_type()), " values over ",
                             world_size_, " ranks");
  std::vector<at::Tensor> tensors = {flat};
  ASSIGN_OR_RETURN(state->work, backend_->StartAllReduce(tensors, state->what));
  return PendingAllReduce(std::move(state));
}

absl::StatusOr<PendingAllReduce> CollectiveGroup::StartReduceSum(
    const at::Tensor& flat, int root) {
  if (!flat.defined()) {
    return absl::InvalidArgumentError("reduce of an undefined tensor");
  }
  if (!flat.is_contiguous()) {
    return absl::InvalidArgumentError(
        "an asynchronous reduce needs a contiguous tensor");
  }
  if (root < 0 || root >= world_size_) {
    return absl::InvalidArgumentError(absl::StrCat(
        "reduce onto rank ", root, " outside [0, ", world_size_, ")"));
  }
  auto state = std::make_unique<PendingAllReduce::State>();
  state->tensor = flat;
  state->timeout = backend_->timeout();
  state->what = absl::StrCat("reduce of ", flat.numel(), " ",
                             c10::toString(flat.scalar_type()),
                             " values onto rank ", root, " of ", world_size_);
  std::vector<at::Tensor> tensors = {flat};
  ASSIGN_OR_RETURN(state->work,
                   backend_->StartReduce(tensors, root, state->what));
  return PendingAllReduce(std::move(state));
}

absl::Status CollectiveGroup::AllGather(const at::Tensor& mine,
                                        std::vector<at::Tensor>& all) {
  if (!mine.defined() || !mine.is_contiguous()) {
    return absl::InvalidArgumentError(
        "all-gather of an undefined or non-contiguous tensor");
  }
  if (static_cast<int>(all.size()) != world_size_) {
    return absl::InvalidArgumentError(absl::StrCat("all-gather into ",
                                                   all.size(), " tensors over ",
                                                   world_size_, " ranks"));
  }
  for (const at::Tensor& row : all) {
    if (!row.defined() || !row.is_contiguous() || row.sizes() != mine.sizes() ||
        row.scalar_type() != mine.scalar_type()) {
      return absl::InvalidArgumentError(
          "all-gather rows must be contiguous tensors shaped like the input");
    }
  }
  std::vector<std::vector<at::Tensor>> outputs = {all};
  std::vector<at::Tensor> inputs = {mine};
  return backend_->AllGather(
      outputs, inputs,
      absl::StrCat("all-gather of ", mine.numel(), " ",
                   c10::toString(mine.scalar_type()), " values over ",
                   world_size_, " ranks"));
}

absl::Status CollectiveGroup::AllReduceSum(std::vector<at::Tensor>& tensors,
                                           int64_t bucket_bytes) {
  if (bucket_bytes <= 0) {
    return absl::InvalidArgumentError("bucket_bytes must be positive");
  }
  for (const at::Tensor& tensor : tensors) {
    if (!tensor.defined()) {
      return absl::InvalidArgumentError("all-reduce of an undefined tensor");
    }
  }
  // Greedy buckets of consecutive tensors sharing dtype and device.
  size_t begin = 0;
  while (begin < tensors.size()) {
    size_t end = begin;
    int64_t bytes = 0;
    while (end < tensors.size() &&
           tensors[end].scalar_type() == tensors[begin].scalar_type() &&
           tensors[end].device() == tensors[begin].device() &&
           (end == begin || bytes + tensors[end].nbytes() <=
                                static_cast<size_t>(bucket_bytes))) {
      bytes += tensors[end].nbytes();
      ++end;
    }
    at::Tensor flat;
    RETURN_IF_ERROR(CallTorch("packing an all-reduce bucket", [&] {
      std::vector<at::Tensor> flat_views;
      flat_views.reserve(end - begin);
      for (size_t i = begin; i < end; ++i) {
        flat_views.push_back(tensors[i].reshape({-1}));
      }
      flat = torch::cat(flat_views);
    }));
    RETURN_IF_ERROR(AllReduceFlat(flat));
    RETURN_IF_ERROR(CallTorch("unpacking an all-reduce bucket", [&] {
      int64_t offset = 0;
      for (size_t i = begin; i < end; ++i) {
        const int64_t count = tensors[i].numel();
        tensors[i].copy_(flat.narrow(0, offset, count).view_as(tensors[i]));
        offset += count;
      }
    }));
    begin = end;
  }
  return absl::OkStatus();
}

absl::Status CollectiveGroup::AllReduceMean(std::vector<at::Tensor>& tensors,
                                            int64_t bucket_bytes) {
  RETURN_IF_ERROR(AllReduceSum(tensors, bucket_bytes));
  if (world_size_ == 1) return absl::OkStatus();
  return CallTorch("averaging all-reduced tensors", [&] {
    for (at::Tensor& tensor : tensors) tensor.div_(world_size_);
  });
}

absl::StatusOr<std::vector<std::string>> CollectiveGroup::AllGatherBytes(
    const std::string& mine) {
  if (world_size_ == 1) return std::vector<std::string>{mine};
  if (backend_kind_ == CollectiveBackend::kNccl && !buffer_device_.is_cuda()) {
    return absl::FailedPreconditionError(
        "NCCL gathers through CUDA buffers: set RendezvousSpec.device to "
        "this rank's CUDA device");
  }
  // One contributor per slot, so the sums are exact copies.
  at::Tensor lengths;
  RETURN_IF_ERROR(CallTorch("preparing an all-gather's lengths", [&] {
    lengths = torch::zeros({world_size_}, torch::kInt64);
    lengths[rank_] = static_cast<int64_t>(mine.size());
    lengths = lengths.to(buffer_device_);
  }));
  RETURN_IF_ERROR(AllReduceFlat(lengths));
  std::vector<int64_t> sizes(world_size_);
  RETURN_IF_ERROR(CallTorch("reading an all-gather's lengths", [&] {
    const at::Tensor on_cpu = lengths.cpu().contiguous();
    std::copy_n(on_cpu.data_ptr<int64_t>(), world_size_, sizes.begin());
  }));
  const int64_t row_bytes = *std::max_element(sizes.begin(), sizes.end());
  std::vector<std::string> gathered(world_size_);
  if (row_bytes == 0) return gathered;
  at::Tensor rows;
  RETURN_IF_ERROR(CallTorch("preparing an all-gather's bytes", [&] {
    rows = torch::zeros({world_size_ * row_bytes}, torch::kUInt8);
    std::memcpy(rows.data_ptr<uint8_t>() + rank_ * row_bytes, mine.data(),
                mine.size());
    rows = rows.to(buffer_device_);
  }));
  RETURN_IF_ERROR(AllReduceFlat(rows));
  RETURN_IF_ERROR(CallTorch("reading an all-gather's bytes", [&] {
    const at::Tensor on_cpu = rows.cpu().contiguous();
    const char* bytes =
        reinterpret_cast<const char*>(on_cpu.data_ptr<uint8_t>());
    for (int r = 0; r < world_size_; ++r) {
      gathered[r].assign(bytes + r * row_bytes, sizes[r]);
    }
  }));
  return gathered;
}

absl::Status CollectiveGroup::Barrier() { return backend_->Barrier(); }

}  // namespace lethe
