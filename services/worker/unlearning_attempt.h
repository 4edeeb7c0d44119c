// One rank's share of one attempt at an unlearning job: joins the attempt's
// process group (Gloo, or NCCL when the spec asks for it and the build has
// it), loads the model (onto the attempt's device), tokenizer and data the
// spec names, shares one reference log-prob cache between the ranks, and runs
// the method data-parallel (each rank takes every world_size-th example;
// gradients are averaged before every step). Checkpoints go to
// <output_dir>/checkpoints and a restarted attempt resumes from the newest.
// Evaluations (every N epochs and at the end, when the spec asks for them)
// run sharded across the ranks, each scoring and generating its share of the
// questions. Rank 0 reports progress and the evaluations, writes the
// unlearned model to <output_dir>/model and TOFU_EVAL.json and
// TOFU_SUMMARY.json to <output_dir>/eval.
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
#include "libs/unlearn/objective.h"

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

// The spec's method with its coefficients: fields left at 0 take the
// method's defaults (DefaultObjectiveParams).
absl::StatusOr<UnlearningMethod> MethodFromSpec(lethe::v1::Method method);
ObjectiveParams ObjectiveParamsFromSpec(UnlearningMethod method,
                                        const lethe::v1::MethodParams& params);

// Where the attempt's outputs go under the spec's output_dir.
std::string ModelOutputDir(const lethe::v1::JobSpec& spec);
std::string CheckpointDir(const lethe::v1::JobSpec& spec);
std::string EvalOutputDir(const lethe::v1::JobSpec& spec);

}  // namespace lethe

#endif  // LETHE_SERVICES_WORKER_UNLEARNING_ATTEMPT_H_
