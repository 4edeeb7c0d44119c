// A job's life in the coordinator's JobStore. Every state change happens
// here, with its history entry (the store's), its line in the job's log
// and its metrics; nothing else in the coordinator moves a job.
//
//   JobStateMachine jobs(store, {.max_log_lines = 10000, .metrics = metrics});
//   ASSIGN_OR_RETURN(v1::Job job, jobs.Create(spec, request_id, absl::Now()));
//   RETURN_IF_ERROR(jobs.Start(job.name(), attempt_id, {"workers/1"}));
//   ASSIGN_OR_RETURN(v1::Job::State state,
//                    jobs.EndAttempt(job.name(), {.succeeded = true}));
//
// The edges (the store refuses any other):
//   QUEUED     -> RUNNING (Start), CANCELLED (Cancel), FAILED (ExpireQueued)
//   RUNNING    -> SUCCEEDED, QUEUED (a restart within the budget), FAILED
//                 (EndAttempt); CANCELLING (Cancel)
//   CANCELLING -> CANCELLED (EndAttempt)
//   after a coordinator restart (Recover): RUNNING -> QUEUED or FAILED,
//   CANCELLING -> CANCELLED.
// A failed store call is returned, never dropped: it is logged (glog),
// written to the job's log when the log itself can be written, and counted
// in lethe_job_store_errors_total. The caller must then not act as if the
// change happened (e.g. launch an attempt whose job is still QUEUED).
//
// Not thread-safe: the coordinator calls it under its own lock.
#ifndef LETHE_SERVICES_COORDINATOR_JOB_STATE_MACHINE_H_
#define LETHE_SERVICES_COORDINATOR_JOB_STATE_MACHINE_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "lethe/v1/job.pb.h"
#include "lethe/v1/worker_service.pb.h"
#include "libs/jobs/job_store.h"
#include "services/coordinator/coordinator_metrics.h"

namespace lethe {

class JobStateMachine {
 public:
  struct Options {
    // Log lines kept per job (the newest).
    int max_log_lines = 10000;
    // Not owned; null: no metrics.
    CoordinatorMetrics* metrics = nullptr;
    // Called after every recorded change of a job: a transition (with its
    // new state), a new job (QUEUED), progress or a log line (with the
    // job's current state unknown: STATE_UNSPECIFIED).
    std::function<void(const std::string& job, v1::Job::State to)> on_change;
  };

  // `store` must outlive this object.
  JobStateMachine(JobStore& store, Options options);

  // Stores a new QUEUED job for a spec that passed ValidateJobSpec, or
  // returns the job an earlier call with the same request_id (in the same
  // tenant) created.
  absl::StatusOr<v1::Job> Create(const v1::JobSpec& spec,
                                 const std::string& request_id, absl::Time now,
                                 const std::string& tenant = "");

  // QUEUED -> RUNNING on `workers` (by rank) as attempt `attempt_id`;
  // returns the job as recorded, with its new attempt_generation.
  absl::StatusOr<v1::Job> Start(const std::string& job, int64_t attempt_id,
                                const std::vector<std::string>& workers);

  // How an attempt of a RUNNING or CANCELLING job ended.
  struct AttemptOutcome {
    bool succeeded = false;  // Every rank succeeded and nothing stopped it.
    bool cancelled = false;  // Stopped because the user cancelled the job.
    // Why it failed (WORKER_LOST, RANK_FAILED, DEADLINE_EXCEEDED, ...).
    std::string failure_reason;
    std::string failure_message;
  };
  // Records the end of the job's attempt and returns the job's new state:
  // SUCCEEDED; CANCELLED (cancelled, or the job was CANCELLING); QUEUED
  // again to resume from its checkpoint while restart_count <
  // run_policy.max_restarts (never after DEADLINE_EXCEEDED); else FAILED.
  absl::StatusOr<v1::Job::State> EndAttempt(const std::string& job,
                                            const AttemptOutcome& outcome);

  // QUEUED -> CANCELLED, RUNNING -> CANCELLING (the caller stops its
  // ranks; EndAttempt then ends it CANCELLED), CANCELLING unchanged.
  // Returns the state the job was in. FAILED_PRECONDITION for a job that
  // already ended; NOT_FOUND for an unknown one.
  absl::StatusOr<v1::Job::State> Cancel(const std::string& job);

  // A QUEUED job whose run_policy.deadline passed -> FAILED.
  absl::Status ExpireQueued(const std::string& job, absl::Duration deadline);

  // The QUEUED jobs, highest priority first, then oldest.
  absl::StatusOr<std::vector<v1::Job>> Queued();

  // After a coordinator restart: RUNNING jobs are QUEUED again (resuming
  // from their checkpoints) or FAILED when out of restarts; CANCELLING ones
  // end CANCELLED. Returns the first error; the other jobs are still done.
  absl::Status Recover();

  // Rank 0's report: progress, evaluation summary, the model's directory
  // and log lines (a progress line every 10 steps).
  absl::Status RecordProgress(const std::string& job,
                              const v1::ReportProgressRequest& report);

  // Appends to the job's log ("coordinator" lines, ...). A job deleted
  // meanwhile has no log to write to; that is not an error.
  absl::Status Log(const std::string& job, const std::string& source,
                   const std::string& message);

 private:
  absl::StatusOr<v1::Job> Transition(const std::string& job, v1::Job::State to,
                                     const std::string& reason,
                                     const std::string& message);
  absl::Status AppendLogs(const std::string& job,
                          const std::vector<JobStore::LogLine>& lines);
  // Logs and counts a failed store call; returns `status`.
  absl::Status StoreFailed(const std::string& operation, const std::string& job,
                           const absl::Status& status);
  void Changed(const std::string& job, v1::Job::State to);

  JobStore& store_;
  Options options_;
};

}  // namespace lethe

#endif  // LETHE_SERVICES_COORDINATOR_JOB_STATE_MACHINE_H_
