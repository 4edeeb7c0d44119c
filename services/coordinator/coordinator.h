// The coordinator's brain: the Jobs API and the worker registry over one
// durable JobStore. Its parts: the job state machine (job_state_machine.h:
// every state change of a job, recorded in the store), the placement rules
// (scheduler.h) and the gRPC adapters (grpc_services.h); this class holds
// the workers and the running attempts and drives the other parts.
//
//   ASSIGN_OR_RETURN(std::unique_ptr<JobStore> store, JobStore::Open(path));
//   Coordinator coordinator(std::move(store), {.address = "10.0.0.1:7070"});
//   RETURN_IF_ERROR(coordinator.RecoverAfterRestart());
//   JobsGrpcService jobs(coordinator, metrics);
//   WorkerRegistryGrpcService workers(coordinator);
//   GrpcServer::Start(address, {&jobs, &workers});
//   coordinator.StartScheduler();
//
// Jobs: CreateJob validates and stores (a bad spec never becomes a job);
// the scheduler gives each QUEUED job (priority, then age) world_size idle
// workers at once and assigns ranks; rank 0 hosts the attempt's c10d
// TCPStore on the port its worker registered, under a prefix unique to the
// attempt. An attempt is launched only once its job is recorded RUNNING;
// an attempt's end that cannot be recorded is retried (backing off from
// 100 ms to 30 s) with the outcome fixed when its ranks ended; its workers
// are free meanwhile (their ranks are over). Each rank's order carries the
// job's tenant and that tenant's allowed roots (options.paths), checked
// again by the worker, so roots narrowed since the job was created hold.
// Workers heartbeat; one silent for `worker_timeout` (on the monotonic
// clock) is dropped and its attempt aborted; a worker stops its own attempt
// after half of that without an answer. Each attempt carries the job's new
// attempt_generation, which fences out the files of any older attempt. An
// attempt whose rank fails or is lost is stopped on every rank, then the job is
// queued again (resuming from its checkpoint) while its restart budget lasts,
// else FAILED with the reason. Cancellation stops every rank; the job ends
// CANCELLED once all have stopped.
#ifndef LETHE_SERVICES_COORDINATOR_COORDINATOR_H_
#define LETHE_SERVICES_COORDINATOR_COORDINATOR_H_

#include <sys/types.h>

#include <atomic>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "lethe/v1/jobs_service.grpc.pb.h"
#include "lethe/v1/worker_service.grpc.pb.h"
#include "libs/auth/path_policy.h"
#include "libs/jobs/job_store.h"
#include "services/coordinator/coordinator_metrics.h"
#include "services/coordinator/job_feed.h"
#include "services/coordinator/job_state_machine.h"
#include "services/coordinator/worker_registry.h"

namespace lethe {

struct CoordinatorOptions {
  // host:port workers reach this coordinator's gRPC API on (or set_address
  // once the server is bound).
  std::string address;
  absl::Duration heartbeat_interval = absl::Milliseconds(500);
  // A worker silent this long is dropped and its attempt aborted.
  absl::Duration worker_timeout = absl::Seconds(5);
  // Bound on every collective of an attempt (a backstop: a lost peer is
  // normally noticed by its missing heartbeats first).
  absl::Duration collective_timeout = absl::Seconds(120);
  absl::Duration scheduler_period = absl::Milliseconds(100);
  // How long a queued job that needs more workers than are registered holds
  // back the jobs behind it (see scheduler.h, "Backfill").
  absl::Duration backfill_after = absl::Minutes(1);
  // Log lines kept per job (the newest) in the store for StreamJobLogs.
  int max_log_lines = 10000;
  // Where the metrics go (not owned; null: none). See coordinator_metrics.h.
  CoordinatorMetrics* metrics = nullptr;
  // When set, the workers' /metrics addresses are kept in this file in
  // Prometheus' file_sd format, for a Prometheus to scrape them.
  std::string worker_targets_file;
  // Not owned; null: no roots. Each attempt's order carries the roots of
  // its job's tenant (Attempt.allowed_roots), which the worker checks the
  // spec against as well as its own.
  const TenantPathPolicy* paths = nullptr;
};

class Coordinator {
 public:
  Coordinator(std::unique_ptr<JobStore> store, CoordinatorOptions options);
  ~Coordinator();

  // Jobs that were RUNNING when the last coordinator stopped are queued
  // again (they resume from their checkpoints) or FAILED when out of
  // restarts; CANCELLING ones end CANCELLED. A job that cannot be moved is
  // logged and counted, and the others still are: always OK.
  absl::Status RecoverAfterRestart();

  // Sets the API address given to workers; call before StartScheduler.
  void set_address(std::string address) {
    options_.address = std::move(address);
  }

  // Runs the scheduling loop in a thread until destruction.
  void StartScheduler();
  // One pass of the loop: drops silent workers, settles attempts, starts
  // queued jobs. Public for tests that step the coordinator by hand.
  void Tick();

  // Pids (as registered) of workers dropped for missed heartbeats since the
  // last call; a local supervisor kills and replaces them.
  std::vector<pid_t> TakeDroppedWorkerPids();

  // What the gRPC services call; statuses map one to one onto gRPC codes.
  // A job is created in `tenant` (request_id idempotency is per tenant);
  // ListJobs with a tenant lists that tenant's jobs only. Access checks
  // are the gRPC services' (grpc_services.h).
  absl::StatusOr<v1::Job> CreateJob(const v1::CreateJobRequest& request,
                                    const std::string& tenant = "");
  absl::StatusOr<v1::Job> GetJob(const std::string& name);
  absl::StatusOr<v1::ListJobsResponse> ListJobs(
      const v1::ListJobsRequest& request,
      const std::optional<std::string>& tenant = std::nullopt);
  absl::StatusOr<v1::Job> CancelJob(const std::string& name);
  absl::Status DeleteJob(const std::string& name);
  // Calls `send` with the job now and after every change until the job is
  // final, `send` returns false, or `cancelled` returns true.
  absl::Status WatchJob(const std::string& name,
                        const std::function<bool(const v1::Job&)>& send,
                        const std::function<bool()>& cancelled);
  absl::Status StreamJobLogs(
      const std::string& name, bool follow,
      const std::function<bool(const v1::LogEntry&)>& send,
      const std::function<bool()>& cancelled);

  absl::StatusOr<v1::RegisterWorkerResponse> RegisterWorker(
      const v1::RegisterWorkerRequest& request);
  v1::HeartbeatResponse Heartbeat(const v1::HeartbeatRequest& request);
  // PERMISSION_DENIED for a report of a current attempt without its
  // report_secret; a report of an unknown or stopping attempt is told to
  // stop.
  absl::StatusOr<v1::ReportProgressResponse> ReportProgress(
      const v1::ReportProgressRequest& request);

 private:
  enum class RankState { kRunning, kSucceeded, kStopped };
  struct AttemptState {
    int64_t id = 0;
    std::string job;
    // Given to the attempt's ranks only; authorises its progress reports.
    std::string report_secret;
    std::vector<std::string> workers;  // By rank.
    std::vector<RankState> ranks;
    bool stopping = false;
    bool cancel = false;
    std::string failure_reason;  // Set when the attempt failed.
    std::string failure_message;
    // The job's run_policy.deadline, counted from its creation; none: never.
    absl::Duration deadline = absl::InfiniteDuration();
    absl::Time deadline_at = absl::InfiniteFuture();
    // Fixed when every rank has ended, so that a retried recording records
    // the same end; the next try waits until retry_at (doubling backoff).
    std::optional<JobStateMachine::AttemptOutcome> outcome;
    absl::Time retry_at = absl::InfinitePast();
    absl::Duration retry_backoff = absl::Milliseconds(100);
  };
  // The rank `worker_id` runs in `attempt`.
  static int RankOf(const AttemptState& attempt, const std::string& worker_id);

  void DropSilentWorkersLocked(absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // FAILED_PRECONDITION with the numbers when the job's memory plan
  // (libs/plan) exceeds what every registered worker of its device offers.
  // Passes when no such worker is registered, when one did not say its
  // memory, or when the model cannot be planned.
  absl::Status CheckMemoryPlanLocked(const v1::JobSpec& spec)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SettleAttemptsLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // `now` on the monotonic clock (monotonic_clock.h); `wall_now` for the
  // jobs' creation times and queue deadlines.
  void ScheduleLocked(absl::Time now, absl::Time wall_now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void EnforceDeadlinesLocked(absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Marks the attempt failed and tells every rank still running it to stop.
  void StopAttemptLocked(AttemptState& attempt, const std::string& reason,
                         const std::string& message)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RankEndedLocked(AttemptState& attempt, int rank, RankState state)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Called by the state machine after each change of a job: wakes
  // watchers and log followers; a newly QUEUED job makes the scheduler read
  // the queue.
  void JobChangedLocked(v1::Job::State to) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Launches `placement` as a new attempt of its job: records the job
  // RUNNING, then hands each worker its rank's order.
  void LaunchLocked(const v1::Job& job, const std::vector<std::string>& workers,
                    absl::Time now, absl::Time wall_now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  int64_t NewAttemptIdLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void UpdateGaugesLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  CoordinatorOptions options_;
  std::unique_ptr<JobStore> store_;
  JobStateMachine jobs_;  // Used under mu_.

  absl::Mutex mu_;
  // Wakes the Jobs API's streams after every change (under mu_).
  JobFeed feed_{*store_, mu_};
  WorkerRegistry workers_ ABSL_GUARDED_BY(mu_){options_.worker_targets_file};
  std::map<int64_t, AttemptState> attempts_ ABSL_GUARDED_BY(mu_);
  std::vector<pid_t> dropped_pids_ ABSL_GUARDED_BY(mu_);
  // Queued jobs whose log says that too few workers of their device are
  // registered, with whether it said the job holds the queue (said once
  // per job and change).
  std::map<std::string, bool> told_too_few_workers_ ABSL_GUARDED_BY(mu_);
  // ScheduleLocked reads the queue from the store only when a job may have
  // become startable (a job was queued, or the set of idle workers changed
  // since the last read) or a second has passed (queue deadlines and the
  // "waiting" lines), not on every tick.
  bool job_queued_since_scan_ ABSL_GUARDED_BY(mu_) = true;
  std::vector<std::string> idle_after_scan_ ABSL_GUARDED_BY(mu_);
  absl::Time last_queue_scan_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  int64_t last_attempt_id_ ABSL_GUARDED_BY(mu_) = 0;
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time gauges_updated_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  std::thread scheduler_;
};

}  // namespace lethe

#endif  // LETHE_SERVICES_COORDINATOR_COORDINATOR_H_
