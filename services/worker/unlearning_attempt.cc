#include "services/worker/unlearning_attempt.h"

#include <torch/cuda.h>
#include <torch/types.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "libs/dist/collective_group.h"
#include "libs/jobs/compute_device.h"
#include "libs/logging/logging.h"
#include "libs/run/job_run.h"
#include "libs/status/status_macros.h"

namespace lethe {
namespace {

// This process' resident set size, from /proc/self/statm (0 if unreadable).
int64_t ResidentMemoryBytes() {
  std::ifstream statm("/proc/self/statm");
  int64_t size_pages = 0, resident_pages = 0;
  if (!(statm >> size_pages >> resident_pages)) return 0;
  return resident_pages * sysconf(_SC_PAGESIZE);
}

}  // namespace

absl::StatusOr<std::string> CheckComputeDevice(const std::string& device) {
  ASSIGN_OR_RETURN(const ComputeDevice parsed, ParseComputeDevice(device));
  if (parsed.kind == lethe::v1::CPU) return parsed.Name();
  if (!torch::cuda::is_available()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "device ", device,
        ": this LibTorch has no CUDA (Debian's libtorch is CPU-only; build "
        "the worker with the CMake mirror against a CUDA LibTorch)"));
  }
  const int64_t count = static_cast<int64_t>(torch::cuda::device_count());
  if (parsed.index >= count) {
    return absl::InvalidArgumentError(
        absl::StrCat("device ", device, ": this machine has ", count,
                     " CUDA device", count == 1 ? "" : "s"));
  }
  return parsed.Name();
}

absl::Status RunUnlearningAttempt(const lethe::v1::Attempt& attempt,
                                  const ProgressReporter& report) {
  const lethe::v1::JobSpec& spec = attempt.spec();
  const int rank = attempt.rank();
  const int world_size = std::max(1, attempt.world_size());
  ASSIGN_OR_RETURN(
      const std::string device_name,
      CheckComputeDevice(attempt.device().empty() ? "cpu" : attempt.device()));
  const at::Device device(device_name);
  if (device.is_cuda() != (spec.device() == lethe::v1::CUDA)) {
    return absl::FailedPreconditionError(
        absl::StrCat("spec.device is ", lethe::v1::Device_Name(spec.device()),
                     " but this worker computes on ", device_name));
  }
  // Rank 0 hosts the attempt's store; it must outlive the group.
  std::unique_ptr<RendezvousStore> store;
  std::unique_ptr<CollectiveGroup> group;
  if (world_size > 1 && rank == 0) {
    ASSIGN_OR_RETURN(store, RendezvousStore::Start(attempt.store_host(),
                                                   attempt.store_port()));
  }
  if (world_size > 1) {
    ASSIGN_OR_RETURN(
        group,
        CollectiveGroup::Join(
            {.store_host = attempt.store_host(),
             .store_port = attempt.store_port(),
             .prefix = attempt.store_prefix(),
             .rank = rank,
             .world_size = world_size,
             .backend = spec.backend() == lethe::v1::NCCL
                            ? CollectiveBackend::kNccl
                            : CollectiveBackend::kGloo,
             .device = device,
             .local_address = attempt.local_address().empty()
                                  ? "127.0.0.1"
                                  : attempt.local_address(),
             .timeout = absl::Milliseconds(attempt.collective_timeout_ms() > 0
                                               ? attempt.collective_timeout_ms()
                                               : 120000)}));
  }
  double step_seconds_sum = 0;
  int64_t steps_timed = 0;
  RunCallbacks callbacks;
  callbacks.log = [](const std::string& line) { LETHE_LOG(INFO) << line; };
  callbacks.on_step = [&](const RunStep& run_step) -> absl::Status {
    if (rank != 0) return absl::OkStatus();
    const StepRecord& step = run_step.record;
    step_seconds_sum += step.seconds;
    ++steps_timed;
    lethe::v1::ReportProgressRequest request;
    request.set_attempt_id(attempt.attempt_id());
    lethe::v1::Job::Progress& progress = *request.mutable_progress();
    progress.set_step(step.step);
    progress.set_total_steps(step.total_steps);
    progress.set_epoch(step.epoch);
    auto& components = *progress.mutable_loss_components();
    components["loss"] = step.loss;
    components["learning_rate"] = step.learning_rate;
    components["grad_norm"] = step.grad_norm;
    for (const auto& [name, value] : step.components) components[name] = value;
    progress.set_tokens_per_second(
        step.seconds > 0 ? step.tokens * world_size / step.seconds : 0);
    const double eta_seconds = (step.total_steps - step.step) *
                               step_seconds_sum /
                               std::max<int64_t>(1, steps_timed);
    progress.mutable_eta()->set_seconds(static_cast<int64_t>(eta_seconds));
    request.set_step_seconds(step.seconds);
    request.set_allreduce_seconds(run_step.allreduce_seconds);
    request.set_checkpoint_seconds(step.checkpoint_seconds);
    request.set_tokens(step.tokens * world_size);
    request.set_resident_memory_bytes(ResidentMemoryBytes());
    request.set_reference_cache_seconds(run_step.reference_cache_seconds);
    ASSIGN_OR_RETURN(const bool stop, report(request));
    if (stop) {
      return absl::CancelledError(absl::StrCat("attempt ", attempt.attempt_id(),
                                               " stopped at step ", step.step,
                                               " by the coordinator"));
    }
    return absl::OkStatus();
  };
  // Every rank evaluates its share; the next step's all-reduce waits for
  // rank 0's report.
  callbacks.on_evaluation =
      [&](int epoch,
          const std::map<std::string, double>& summary) -> absl::Status {
    if (rank != 0) return absl::OkStatus();
    lethe::v1::ReportProgressRequest request;
    request.set_attempt_id(attempt.attempt_id());
    request.mutable_evaluation_summary()->insert(summary.begin(),
                                                 summary.end());
    request.add_log_lines(absl::StrCat("evaluated after epoch ", epoch));
    return report(request).status();
  };

  ASSIGN_OR_RETURN(const JobRunResult result,
                   RunJobSpec(spec,
                              {.rank = rank,
                               .world_size = world_size,
                               .group = group.get(),
                               .device = device,
                               .generation = attempt.generation()},
                              callbacks));
  if (rank != 0) return absl::OkStatus();
  const TrainingSummary& summary = result.training;
  lethe::v1::ReportProgressRequest final_report;
  final_report.set_attempt_id(attempt.attempt_id());
  final_report.add_log_lines(absl::StrCat(
      "trained to step ", summary.total_steps,
      summary.resumed_from_step > 0
          ? absl::StrCat(" (resumed from step ", summary.resumed_from_step, ")")
          : "",
      absl::StrFormat(" in %.1fs; model in ", summary.seconds),
      result.model_dir));
  if (spec.has_evaluation()) {
    final_report.mutable_evaluation_summary()->insert(result.evaluation.begin(),
                                                      result.evaluation.end());
  }
  final_report.set_output_model_dir(result.model_dir);
  return report(final_report).status();
}

}  // namespace lethe
