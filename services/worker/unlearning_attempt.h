// One rank's share of one attempt at an unlearning job: checks that the
// worker's device is the spec's, joins the attempt's process group (Gloo, or
// NCCL when the spec asks for it and the build has it; rank 0 hosts the
// rendezvous store) and runs the spec with RunJobSpec (libs/run/job_run.h:
// the run itself, its checkpoints, evaluations and outputs), each rank
// taking every world_size-th example. Rank 0 reports every step's progress,
// each evaluation and the end (the model's directory) to the coordinator.
//
//   lethe::v1::Attempt attempt = ...;  // from the coordinator
//   absl::Status status = RunUnlearningAttempt(attempt, report);
#ifndef LETHE_SERVICES_WORKER_UNLEARNING_ATTEMPT_H_
#define LETHE_SERVICES_WORKER_UNLEARNING_ATTEMPT_H_

#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "lethe/v1/worker_service.pb.h"

namespace lethe {

// Delivers one progress report of rank 0; returns true when the attempt
// must stop (the job was cancelled or the attempt superseded).
using ProgressReporter = std::function<absl::StatusOr<bool>(
    const lethe::v1::ReportProgressRequest&)>;

// Runs the attempt to its end. CANCELLED when the reporter asked to stop;
// other errors name what failed (a missing file, a peer that died, ...).
absl::Status RunUnlearningAttempt(const lethe::v1::Attempt& attempt,
                                  const ProgressReporter& report);

// The device a worker computes on, from its --device ("cpu", "cuda",
// "cuda:N"), normalised ("cuda" -> "cuda:0"). INVALID_ARGUMENT for a name
// ParseComputeDevice rejects or a GPU index this machine lacks;
// FAILED_PRECONDITION for CUDA in a LibTorch built without it (Debian's).
absl::StatusOr<std::string> CheckComputeDevice(const std::string& device);

}  // namespace lethe

#endif  // LETHE_SERVICES_WORKER_UNLEARNING_ATTEMPT_H_
