// A one-GPU check of CollectiveGroup's NCCL path against a CUDA LibTorch (the
// one inside a PyTorch wheel): a world_size=1 group over a local TCPStore,
// all-reduces of CUDA tensors (two dtypes, so two buckets), then the same
// through Gloo on CPU tensors. Built and run by
// tools/device/hf_reference_check.sh; not part of the Bazel build (CI's
// LibTorch is CPU-only).
#include <torch/cuda.h>
#include <torch/types.h>

#include <iostream>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "libs/dist/collective_group.h"

namespace {

int Check(lethe::CollectiveBackend backend, const std::string& name, int port) {
  lethe::RendezvousSpec spec;
  spec.store_host = "127.0.0.1";
  spec.store_port = port;
  spec.prefix = "device-check/" + name;
  spec.rank = 0;
  spec.world_size = 1;
  spec.backend = backend;
  spec.timeout = absl::Seconds(60);
  auto group = lethe::CollectiveGroup::Join(spec);
  if (!group.ok()) {
    std::cout << name << ": Join failed: " << group.status() << "\n";
    return 1;
  }
  const torch::Device device =
      backend == lethe::CollectiveBackend::kNccl ? torch::kCUDA : torch::kCPU;
  std::vector<at::Tensor> tensors = {
      torch::arange(6, torch::dtype(torch::kFloat).device(device)),
      torch::full({3}, 2.5, torch::dtype(torch::kDouble).device(device)),
  };
  const absl::Status sum = (*group)->AllReduceSum(tensors, /*bucket_bytes=*/8);
  const absl::Status mean = (*group)->AllReduceMean(tensors);
  const absl::Status barrier = (*group)->Barrier();
  std::cout << name << ": sum " << sum << ", mean " << mean << ", barrier "
            << barrier << "\n"
            << name << ": result " << tensors[0].cpu() << " "
            << tensors[1].cpu() << " on " << tensors[0].device() << "\n";
  const bool same =
      torch::equal(tensors[0].cpu(), torch::arange(6, torch::kFloat)) &&
      torch::equal(tensors[1].cpu(), torch::full({3}, 2.5, torch::kDouble));
  std::cout << name << ": "
            << (sum.ok() && mean.ok() && barrier.ok() && same ? "OK" : "FAILED")
            << "\n";
  return sum.ok() && mean.ok() && barrier.ok() && same ? 0 : 1;
}

}  // namespace

int main() {
  std::cout << "CUDA available: " << torch::cuda::is_available()
            << ", devices: " << static_cast<int>(torch::cuda::device_count())
            << "\n";
  auto store = lethe::RendezvousStore::Start("127.0.0.1", 0);
  if (!store.ok()) {
    std::cout << "store: " << store.status() << "\n";
    return 1;
  }
  const int port = (*store)->port();
  int failures = Check(lethe::CollectiveBackend::kNccl, "nccl", port);
  failures += Check(lethe::CollectiveBackend::kGloo, "gloo", port);
  std::cout << (failures == 0 ? "NCCL CHECK PASSED" : "NCCL CHECK FAILED")
            << "\n";
  return failures == 0 ? 0 : 1;
}
