// The device a worker computes on, named as on the command line and in the
// worker protocol: "cpu", "cuda" (the first GPU) or "cuda:N". This is the
// one parser of those names. It needs no LibTorch, so the coordinator (which
// does not link it) and the worker (which then checks that the GPU exists)
// accept exactly the same names.
//
//   ASSIGN_OR_RETURN(ComputeDevice device, ParseComputeDevice("cuda:1"));
//   // device.kind == v1::CUDA, device.index == 1, device.Name() == "cuda:1"
#ifndef LETHE_LIBS_JOBS_COMPUTE_DEVICE_H_
#define LETHE_LIBS_JOBS_COMPUTE_DEVICE_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "lethe/v1/job.pb.h"

namespace lethe {

struct ComputeDevice {
  v1::Device kind = v1::CPU;  // CPU or CUDA, never DEVICE_UNSPECIFIED.
  int index = 0;              // The GPU's index; 0 for the CPU.

  // "cpu" or "cuda:N": the normalised name ("cuda" becomes "cuda:0").
  std::string Name() const;
};

// INVALID_ARGUMENT naming `name` for anything but cpu, cuda or cuda:N with
// N a decimal index below 2^31 (the empty string included).
absl::StatusOr<ComputeDevice> ParseComputeDevice(absl::string_view name);

// The memory a worker on `device` offers one attempt, in bytes, for the
// coordinator's memory check: for the CPU, the host's RAM (MemTotal in
// /proc/meminfo) or the cgroup's memory limit when that is lower (a
// container's, a Kubernetes pod's); 0 (unknown) for a CUDA device, whose
// memory only a CUDA build can ask for, or when nothing can be read.
uint64_t DeviceMemoryBytes(const ComputeDevice& device);

}  // namespace lethe

#endif  // LETHE_LIBS_JOBS_COMPUTE_DEVICE_H_
