// The coordinator's Prometheus metrics (names, types and labels from
// libs/metrics/metric_catalog): jobs by state, workers, restarts and
// failures by reason, API calls and latency, scheduling latency, and the
// series of each running job (label `job`) fed by rank 0's progress
// reports. A job's series are removed when it ends, so the label stays
// bounded by the jobs running now. Thread-safe.
//
//   CoordinatorMetrics metrics(*registry);
//   metrics.ApiCall("CreateJob", "OK", 0.002);
//   metrics.JobProgress("jobs/7", report, absl::Now());
//   metrics.JobEnded("jobs/7");
#ifndef LETHE_SERVICES_COORDINATOR_COORDINATOR_METRICS_H_
#define LETHE_SERVICES_COORDINATOR_COORDINATOR_METRICS_H_

#include <map>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "lethe/v1/job.pb.h"
#include "lethe/v1/worker_service.pb.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace lethe {

class CoordinatorMetrics {
 public:
  // Registers the families in `registry`, which must outlive this object.
  explicit CoordinatorMetrics(prometheus::Registry& registry);

  // Jobs per state (states absent from the map are 0).
  void SetJobCounts(const std::map<v1::Job::State, int64_t>& by_state);
  void SetWorkers(int registered, int healthy, int busy);
  // Queued jobs that need more workers of their device than are registered.
  void SetJobsWaitingForWorkers(int jobs);

  // A state change recorded in the store: counts restarts (to QUEUED from
  // RUNNING), failures and final states by reason, and the scheduling
  // latency of a start (`queued_for`, from the latest QUEUED).
  void JobTransition(v1::Job::State from, v1::Job::State to,
                     const std::string& reason, absl::Duration queued_for);

  // A job store call that failed: "create", "read", "list", "transition",
  // "update" or "append_logs".
  void StoreError(const std::string& operation);

  // `seconds` < 0 (streams) counts the call without timing it.
  void ApiCall(const std::string& method, const std::string& code,
               double seconds);

  // A progress report from rank 0 of a running attempt of `job`.
  void JobProgress(const std::string& job,
                   const v1::ReportProgressRequest& report, absl::Time now);
  // Removes every series labelled with `job`.
  void JobEnded(const std::string& job);

 private:
  // The series of one running job.
  struct JobSeries {
    prometheus::Gauge* step;
    prometheus::Gauge* total_steps;
    prometheus::Gauge* epoch;
    prometheus::Gauge* learning_rate;
    prometheus::Gauge* grad_norm;
    prometheus::Counter* tokens;
    prometheus::Gauge* tokens_per_second;
    prometheus::Histogram* step_duration;
    prometheus::Histogram* allreduce_duration;
    prometheus::Histogram* checkpoint_duration;
    prometheus::Gauge* last_step_time;
    prometheus::Gauge* resident_memory;
    prometheus::Gauge* forget_quality = nullptr;
    prometheus::Gauge* model_utility = nullptr;
    prometheus::Gauge* reference_cache_seconds = nullptr;
    std::map<std::string, prometheus::Gauge*> losses;
  };
  JobSeries& SeriesLocked(const std::string& job)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  prometheus::Family<prometheus::Gauge>& jobs_;
  prometheus::Family<prometheus::Gauge>& queue_length_;
  prometheus::Family<prometheus::Gauge>& workers_registered_;
  prometheus::Family<prometheus::Gauge>& workers_healthy_;
  prometheus::Family<prometheus::Gauge>& workers_busy_;
  prometheus::Family<prometheus::Gauge>& jobs_waiting_for_workers_;
  prometheus::Family<prometheus::Counter>& restarts_;
  prometheus::Family<prometheus::Counter>& failures_;
  prometheus::Family<prometheus::Counter>& store_errors_;
  prometheus::Family<prometheus::Counter>& finished_;
  prometheus::Family<prometheus::Counter>& api_requests_;
  prometheus::Family<prometheus::Histogram>& api_latency_;
  prometheus::Family<prometheus::Histogram>& scheduling_latency_;
  prometheus::Family<prometheus::Gauge>& job_step_;
  prometheus::Family<prometheus::Gauge>& job_total_steps_;
  prometheus::Family<prometheus::Gauge>& job_epoch_;
  prometheus::Family<prometheus::Gauge>& job_loss_;
  prometheus::Family<prometheus::Gauge>& job_learning_rate_;
  prometheus::Family<prometheus::Gauge>& job_grad_norm_;
  prometheus::Family<prometheus::Counter>& job_tokens_;
  prometheus::Family<prometheus::Gauge>& job_tokens_per_second_;
  prometheus::Family<prometheus::Histogram>& job_step_duration_;
  prometheus::Family<prometheus::Histogram>& job_allreduce_duration_;
  prometheus::Family<prometheus::Histogram>& job_checkpoint_duration_;
  prometheus::Family<prometheus::Gauge>& job_last_step_time_;
  prometheus::Family<prometheus::Gauge>& job_forget_quality_;
  prometheus::Family<prometheus::Gauge>& job_model_utility_;
  prometheus::Family<prometheus::Gauge>& job_reference_cache_seconds_;
  prometheus::Family<prometheus::Gauge>& job_resident_memory_;

  absl::Mutex mu_;
  std::map<std::string, JobSeries> series_ ABSL_GUARDED_BY(mu_);
};

}  // namespace lethe

#endif  // LETHE_SERVICES_COORDINATOR_COORDINATOR_METRICS_H_
