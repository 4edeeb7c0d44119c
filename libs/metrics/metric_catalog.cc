#include "libs/metrics/metric_catalog.h"

#include <cstdlib>

#include "absl/strings/match.h"
#include "libs/logging/logging.h"

namespace lethe {

const std::vector<MetricInfo>& MetricCatalog() {
  using T = MetricType;
  static const auto* catalog = new std::vector<MetricInfo>{
      // Every binary.
      {"lethe_build_info",
       T::kGauge,
       {"component", "version"},
       "Constant 1, labelled with the binary and Lethe's version.",
       "all"},
      // Coordinator: jobs, workers, API.
      {"lethe_jobs",
       T::kGauge,
       {"state"},
       "Jobs in the store by state.",
       "coordinator"},
      {"lethe_job_queue_length",
       T::kGauge,
       {},
       "Jobs waiting for workers (state QUEUED).",
       "coordinator"},
      {"lethe_jobs_waiting_for_workers",
       T::kGauge,
       {},
       "Queued jobs that need more workers of their device than are "
       "registered (after --backfill_after, jobs behind them may start "
       "first).",
       "coordinator"},
      {"lethe_workers_registered",
       T::kGauge,
       {},
       "Workers registered with the coordinator.",
       "coordinator"},
      {"lethe_workers_healthy",
       T::kGauge,
       {},
       "Registered workers whose last heartbeat is within two intervals.",
       "coordinator"},
      {"lethe_workers_busy",
       T::kGauge,
       {},
       "Workers running a rank of an attempt.",
       "coordinator"},
      {"lethe_job_restarts_total",
       T::kCounter,
       {"reason"},
       "Jobs queued again after a failed attempt, by reason (WORKER_LOST, "
       "RANK_FAILED, COORDINATOR_RESTARTED).",
       "coordinator"},
      {"lethe_job_failures_total",
       T::kCounter,
       {"reason"},
       "Jobs that ended FAILED, by reason.",
       "coordinator"},
      {"lethe_job_store_errors_total",
       T::kCounter,
       {"operation"},
       "Job store calls that failed, by operation (create, read, list, "
       "transition, update, append_logs).",
       "coordinator"},
      {"lethe_jobs_finished_total",
       T::kCounter,
       {"state"},
       "Jobs that reached a final state (SUCCEEDED, FAILED, CANCELLED).",
       "coordinator"},
      {"lethe_api_requests_total",
       T::kCounter,
       {"method", "code"},
       "Jobs API calls by method and gRPC status code.",
       "coordinator"},
      {"lethe_api_request_duration_seconds",
       T::kHistogram,
       {"method"},
       "Latency of unary Jobs API calls.",
       "coordinator"},
      {"lethe_scheduling_latency_seconds",
       T::kHistogram,
       {},
       "Time from a job's (re)queueing to its start on workers.",
       "coordinator"},
      // Coordinator: running jobs, from rank 0's reports.
      {"lethe_job_step",
       T::kGauge,
       {"job"},
       "Optimizer steps completed.",
       "coordinator"},
      {"lethe_job_total_steps",
       T::kGauge,
       {"job"},
       "Optimizer steps of the whole run.",
       "coordinator"},
      {"lethe_job_epoch",
       T::kGauge,
       {"job"},
       "Current epoch (from 0).",
       "coordinator"},
      {"lethe_job_loss",
       T::kGauge,
       {"job", "term"},
       "Latest step's loss and its named components (forget_loss, "
       "retain_loss, npo_weight, ...).",
       "coordinator"},
      {"lethe_job_learning_rate",
       T::kGauge,
       {"job"},
       "Learning rate of the latest step.",
       "coordinator"},
      {"lethe_job_grad_norm",
       T::kGauge,
       {"job"},
       "Global gradient norm of the latest step, before clipping.",
       "coordinator"},
      {"lethe_job_tokens_total",
       T::kCounter,
       {"job"},
       "Tokens processed by all ranks.",
       "coordinator"},
      {"lethe_job_tokens_per_second",
       T::kGauge,
       {"job"},
       "Tokens per second of the latest step, all ranks together.",
       "coordinator"},
      {"lethe_job_step_duration_seconds",
       T::kHistogram,
       {"job"},
       "Wall time of an optimizer step on rank 0 (forward, backward, "
       "all-reduce, update).",
       "coordinator"},
      {"lethe_job_allreduce_duration_seconds",
       T::kHistogram,
       {"job"},
       "Time rank 0 waited for the gradient all-reduce of a step after its "
       "backward pass (the part not overlapped with it), plus OFMU's inner "
       "all-reduces.",
       "coordinator"},
      {"lethe_job_checkpoint_write_duration_seconds",
       T::kHistogram,
       {"job"},
       "Time to write a checkpoint.",
       "coordinator"},
      {"lethe_job_last_step_timestamp_seconds",
       T::kGauge,
       {"job"},
       "Unix time of the latest completed step (for stuck-job alerts).",
       "coordinator"},
      {"lethe_job_forget_quality",
       T::kGauge,
       {"job"},
       "Latest evaluation's forget quality (KS-test p-value vs the retain "
       "model).",
       "coordinator"},
      {"lethe_job_model_utility",
       T::kGauge,
       {"job"},
       "Latest evaluation's model utility.",
       "coordinator"},
      {"lethe_job_reference_cache_build_seconds",
       T::kGauge,
       {"job"},
       "Time rank 0 took to compute the reference log-prob cache.",
       "coordinator"},
      {"lethe_job_resident_memory_bytes",
       T::kGauge,
       {"job"},
       "Resident memory of rank 0's attempt process.",
       "coordinator"},
      // Workers.
      {"lethe_worker_heartbeats_total",
       T::kCounter,
       {"result"},
       "Heartbeats sent to the coordinator, by result (ok, error).",
       "worker"},
      {"lethe_worker_attempts_total",
       T::kCounter,
       {"result"},
       "Attempts this worker ran, by how they ended (succeeded, failed, "
       "stopped).",
       "worker"},
      {"lethe_worker_busy",
       T::kGauge,
       {},
       "1 while this worker runs a rank of an attempt.",
       "worker"},
  };
  return *catalog;
}

const MetricInfo& CatalogMetric(absl::string_view name) {
  for (const MetricInfo& info : MetricCatalog()) {
    if (info.name == name) return info;
  }
  LETHE_LOG(FATAL) << "metric " << name << " is not in Lethe's metric catalog";
  std::abort();  // Not reached.
}

std::string MetricTypeName(MetricType type) {
  switch (type) {
    case MetricType::kCounter:
      return "counter";
    case MetricType::kGauge:
      return "gauge";
    case MetricType::kHistogram:
      return "histogram";
  }
  return "untyped";
}

std::string CatalogFamilyOf(absl::string_view name) {
  for (const MetricInfo& info : MetricCatalog()) {
    if (name == info.name) return info.name;
    if (info.type != MetricType::kHistogram) continue;
    for (absl::string_view suffix : {"_bucket", "_sum", "_count"}) {
      if (absl::StartsWith(name, info.name) &&
          name.substr(info.name.size()) == suffix) {
        return info.name;
      }
    }
  }
  return "";
}

}  // namespace lethe
