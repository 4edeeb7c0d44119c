// Process groups for data-parallel training: rendezvous over a c10d TCPStore,
// all-reduce of gradient tensors and all-gather of byte strings, with Gloo
// (CPU) or NCCL (CUDA builds with LETHE_WITH_NCCL).
//
//   // One process (the coordinator, or rank 0) hosts the store:
//   ASSIGN_OR_RETURN(auto store, RendezvousStore::Start("127.0.0.1", 0));
//   // Every rank joins with the store's address and an attempt prefix:
//   ASSIGN_OR_RETURN(auto group, CollectiveGroup::Join(
//       {.store_host = "127.0.0.1", .store_port = store->port(),
//        .prefix = "job-7/attempt-0", .rank = r, .world_size = n}));
//   RETURN_IF_ERROR(group->AllReduceMean(gradients));
//
// Every call returns a Status instead of throwing; a peer that dies or never
// arrives turns into an error within the spec's timeout, never a hang.
#ifndef LETHE_LIBS_DIST_COLLECTIVE_GROUP_H_
#define LETHE_LIBS_DIST_COLLECTIVE_GROUP_H_

#include <torch/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace c10d {
class Store;
}  // namespace c10d

namespace lethe {

// An all-reduce (or reduce) started by CollectiveGroup::StartAllReduceSum
// (StartReduceSum) and still running on the backend's threads. Its tensor must
// not be touched until Wait() returns. Destroying it without waiting abandons
// the result (the backend keeps the tensor alive until the collective ends).
class PendingAllReduce {
 public:
  PendingAllReduce(PendingAllReduce&&) noexcept;
  PendingAllReduce& operator=(PendingAllReduce&&) noexcept;
  ~PendingAllReduce();

  // Whether the collective has ended (successfully or not); never blocks.
  bool IsCompleted() const;
  // Blocks until the collective ends, at most the group's timeout; the
  // tensor then holds the sum over ranks (a reduce: on its root only; other
  // ranks' tensors are scratch). Errors are classified as
  // CollectiveGroup's are (DEADLINE_EXCEEDED, UNAVAILABLE, ...). Calling it
  // again returns the same status without waiting.
  absl::Status Wait();

 private:
  friend class CollectiveGroup;
  struct State;
  explicit PendingAllReduce(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

enum class CollectiveBackend { kGloo, kNccl };

// Parses "gloo" or "nccl".
absl::StatusOr<CollectiveBackend> ParseCollectiveBackend(
    absl::string_view name);

// A TCPStore server that the ranks of one or more groups rendezvous on.
class RendezvousStore {
 public:
  // Listens on host:port; port 0 picks a free port (read it with port()).
  static absl::StatusOr<std::unique_ptr<RendezvousStore>> Start(
      const std::string& host, int port);
  ~RendezvousStore();

  int port() const { return port_; }

 private:
  RendezvousStore(c10::intrusive_ptr<c10d::Store> store, int port);

  c10::intrusive_ptr<c10d::Store> store_;
  int port_;
};

struct RendezvousSpec {
  std::string store_host;
  int store_port = 0;
  // Keys of this group live under this prefix, so retried attempts of a job
  // never see an earlier attempt's keys.
  std::string prefix;
  int rank = 0;
  int world_size = 1;
  CollectiveBackend backend = CollectiveBackend::kGloo;
  // This rank's compute device. With NCCL, AllGatherBytes puts its buffers
  // there, so it must be the CUDA device the rank's tensors live on; Gloo
  // keeps them on the CPU whatever this says.
  at::Device device = at::kCPU;
  // Address this rank's Gloo transport binds to; peers connect to it.
  std::string local_address = "127.0.0.1";
  // Bound on rendezvous and on every collective; a dead peer surfaces as an
  // error after at most this long.
  absl::Duration timeout = absl::Seconds(60);
};

class CollectiveGroup {
 public:
  // Connects to the store and waits for all world_size ranks.
  // INVALID_ARGUMENT for an inconsistent spec; DEADLINE_EXCEEDED or
  // UNAVAILABLE when the store or the peers cannot be reached in time;
  // FAILED_PRECONDITION for NCCL in a build without it.
  static absl::StatusOr<std::unique_ptr<CollectiveGroup>> Join(
      const RendezvousSpec& spec);
  ~CollectiveGroup();

  int rank() const { return rank_; }
  int world_size() const { return world_size_; }

  // Replaces each tensor by its element-wise sum over all ranks. Tensors may
  // differ in shape and dtype; they are packed into flat buckets of at most
  // `bucket_bytes` (a single larger tensor gets a bucket of its own).
  absl::Status AllReduceSum(std::vector<at::Tensor>& tensors,
                            int64_t bucket_bytes = kDefaultBucketBytes);
  // Same, divided by world_size: the average gradient of data parallelism.
  absl::Status AllReduceMean(std::vector<at::Tensor>& tensors,
                             int64_t bucket_bytes = kDefaultBucketBytes);
  // Starts replacing `flat` by its element-wise sum over all ranks and
  // returns at once; the sum is there when the returned handle's Wait()
  // returns. Every rank must start its collectives in the same order
  // (Gloo matches them by sequence number). INVALID_ARGUMENT for an
  // undefined or non-contiguous tensor.
  absl::StatusOr<PendingAllReduce> StartAllReduceSum(const at::Tensor& flat);
  // Starts replacing `flat` on rank `root` by its element-wise sum over all
  // ranks (c10d reduce); on the other ranks `flat` holds unspecified values
  // afterwards. Ordering and handle as StartAllReduceSum. INVALID_ARGUMENT
  // for an undefined or non-contiguous tensor or a root out of range.
  absl::StatusOr<PendingAllReduce> StartReduceSum(const at::Tensor& flat,
                                                  int root);
  // Writes every rank's `mine` into all[rank] (c10d allgather), on every
  // rank. `all` holds world_size contiguous tensors of mine's shape and
  // dtype. INVALID_ARGUMENT otherwise.
  absl::Status AllGather(const at::Tensor& mine, std::vector<at::Tensor>& all);
  // Returns every rank's `mine` (any bytes, any length, empty included), in
  // rank order, on every rank. It runs all-reduces (the lengths, then the
  // bytes in rows of the longest length), so every rank must call it at the
  // same point of its sequence of collectives. FAILED_PRECONDITION for
  // NCCL when the spec's device is not CUDA.
  absl::StatusOr<std::vector<std::string>> AllGatherBytes(
      const std::string& mine);
  // Returns once every rank has called Barrier.
  absl::Status Barrier();

  static constexpr int64_t kDefaultBucketBytes = 25 << 20;

 private:
  class Backend;
  CollectiveGroup(std::unique_ptr<Backend> backend, const RendezvousSpec& spec);
  absl::Status AllReduceFlat(at::Tensor& flat);

  std::unique_ptr<Backend> backend_;
  int rank_;
  int world_size_;
  CollectiveBackend backend_kind_;
  // Where the group's own collective buffers live (the CPU for Gloo).
  at::Device buffer_device_;
};

}  // namespace lethe

#endif  // LETHE_LIBS_DIST_COLLECTIVE_GROUP_H_
