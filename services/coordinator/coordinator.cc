#include "services/coordinator/coordinator.h"

#include <algorithm>
#include <map>
#include <optional>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "google/protobuf/util/time_util.h"
#include "libs/auth/token_auth.h"
#include "libs/jobs/job_spec.h"
#include "libs/logging/logging.h"
#include "libs/plan/memory_plan.h"
#include "libs/status/status_macros.h"
#include "services/coordinator/monotonic_clock.h"
#include "services/coordinator/output_claim.h"
#include "services/coordinator/scheduler.h"

namespace lethe {
namespace {

// How often the scheduler reads the queue when nothing that could start a
// job has changed: the resolution of queue deadlines.
constexpr absl::Duration kQueueRescanPeriod = absl::Seconds(1);

}  // namespace

Coordinator::Coordinator(std::unique_ptr<JobStore> store,
                         CoordinatorOptions options)
    : options_(std::move(options)),
      store_(std::move(store)),
      jobs_(*store_,
            {.max_log_lines = options_.max_log_lines,
             .metrics = options_.metrics,
             .on_change = [this](const std::string&, v1::Job::State to) {
               // Every call into jobs_ is made under mu_.
               JobChangedLocked(to);
             }}) {}

void Coordinator::JobChangedLocked(v1::Job::State to) {
  if (to == v1::Job::QUEUED) job_queued_since_scan_ = true;
  feed_.ChangedLocked();
}

Coordinator::~Coordinator() {
  {
    absl::MutexLock lock(&mu_);
    shutting_down_ = true;
    feed_.ShutdownLocked();
  }
  if (scheduler_.joinable()) scheduler_.join();
}

absl::Status Coordinator::RecoverAfterRestart() {
  absl::MutexLock lock(&mu_);
  // A job that cannot be moved now is logged and counted; the coordinator
  // still starts and serves the others.
  const absl::Status recovered = jobs_.Recover();
  if (!recovered.ok()) {
    LETHE_LOG(ERROR) << "recovering jobs after a restart: " << recovered;
  }
  return absl::OkStatus();
}

void Coordinator::StartScheduler() {
  scheduler_ = std::thread([this] {
    while (true) {
      {
        absl::MutexLock lock(&mu_);
        if (shutting_down_) return;
      }
      Tick();
      absl::SleepFor(options_.scheduler_period);
    }
  });
}

void Coordinator::Tick() {
  absl::MutexLock lock(&mu_);
  const absl::Time now = MonotonicNow();
  DropSilentWorkersLocked(now);
  EnforceDeadlinesLocked(now);
  SettleAttemptsLocked(now);
  ScheduleLocked(now, absl::Now());
  UpdateGaugesLocked(now);
}

void Coordinator::UpdateGaugesLocked(absl::Time now) {
  if (options_.metrics == nullptr || now - gauges_updated_ < absl::Seconds(1)) {
    return;
  }
  gauges_updated_ = now;
  const WorkerRegistry::Counts workers =
      workers_.Count(now, 2 * options_.heartbeat_interval);
  options_.metrics->SetWorkers(workers.registered, workers.healthy,
                               workers.busy);
  const absl::StatusOr<std::map<v1::Job::State, int64_t>> counts =
      store_->CountByState();
  if (counts.ok()) options_.metrics->SetJobCounts(*counts);
}

std::vector<pid_t> Coordinator::TakeDroppedWorkerPids() {
  absl::MutexLock lock(&mu_);
  return std::exchange(dropped_pids_, {});
}

int64_t Coordinator::NewAttemptIdLocked() {
  // Unique across coordinator restarts, so a worker still running an attempt
  // of an earlier coordinator is never mistaken for a current one.
  last_attempt_id_ =
      std::max(last_attempt_id_ + 1, absl::ToUnixMicros(absl::Now()));
  return last_attempt_id_;
}

// --- Jobs API ---------------------------------------------------------------

absl::StatusOr<v1::Job> Coordinator::CreateJob(
    const v1::CreateJobRequest& request, const std::string& tenant) {
  const v1::JobSpec spec = JobSpecWithDefaults(request.spec());
  RETURN_IF_ERROR(ValidateJobSpec(spec));
  absl::MutexLock lock(&mu_);
  RETURN_IF_ERROR(CheckMemoryPlanLocked(spec));
  // Each job writes its own output directory. A retry may reuse its own
  // claim; the claim names the tenant too, so that the same request_id in
  // another tenant does not.
  const std::string claim_id =
      tenant.empty() || request.request_id().empty()
          ? request.request_id()
          : absl::StrCat(tenant, "\x1f", request.request_id());
  RETURN_IF_ERROR(CheckOutputClaim(
      spec.output_dir(), claim_id,
      [&](const std::string& owner) {
        // Only a definite "not stored" frees the directory.
        return !absl::IsNotFound(store_->Get(owner).status());
      },
      [&](const std::string& owner) {
        // Named to its own tenant only (tenant "": no tokens, one tenant).
        if (tenant.empty()) return true;
        const absl::StatusOr<v1::Job> stored = store_->Get(owner);
        return stored.ok() && stored->tenant() == tenant;
      }));
  ASSIGN_OR_RETURN(v1::Job job, jobs_.Create(spec, request.request_id(),
                                             absl::Now(), tenant));
  const absl::Status claimed =
      WriteOutputClaim(spec.output_dir(), job.name(), claim_id);
  if (!claimed.ok()) {
    // Not runnable without its directory: it ends before it starts.
    jobs_.Cancel(job.name()).IgnoreError();
    return claimed;
  }
  return job;
}

absl::Status Coordinator::CheckMemoryPlanLocked(const v1::JobSpec& spec) {
  const WorkerRegistry::MemoryCensus census = workers_.Memory(spec.device());
  // Nothing to compare with: no worker of the device yet, or one that did
  // not say its memory (it might be large enough).
  if (census.workers == 0 || census.unknown > 0) return absl::OkStatus();
  const absl::StatusOr<MemoryPlan> plan = PlanMemoryForJob(spec);
  if (!plan.ok()) {
    // A model the planner cannot read is the loader's to reject, with the
    // loader's message; the plan is only a forecast.
    LETHE_LOG(WARNING) << "no memory plan for a job of " << spec.model_dir()
                       << ": " << plan.status();
    return absl::OkStatus();
  }
  const int64_t needed = plan->total_bytes();
  if (needed <= static_cast<int64_t>(census.largest_bytes)) {
    return absl::OkStatus();
  }
  return absl::FailedPreconditionError(absl::StrCat(
      "the job needs about ", Gib(needed), " GiB per rank (weights ",
      Gib(plan->weights), ", gradients ", Gib(plan->gradients),
      ", optimizer state ", Gib(plan->optimizer_state), ", reference model ",
      Gib(plan->reference_model), ", activations and logits ",
      Gib(plan->activations + plan->logits), ") and none of the ",
      census.workers, " registered ",
      spec.device() == v1::CUDA ? "CUDA" : "CPU",
      " workers can hold it: the largest offers ",
      Gib(static_cast<int64_t>(census.largest_bytes)),
      " GiB. `lethe plan` with the same flags prints the plan; LoRA "
      "(--lora_rank), --activation_checkpointing, --loss_chunk_tokens, "
      "--weights_dtype=bf16 or a smaller --batch_size lower it"));
}

absl::StatusOr<v1::Job> Coordinator::GetJob(const std::string& name) {
  return store_->Get(name);
}

absl::StatusOr<v1::ListJobsResponse> Coordinator::ListJobs(
    const v1::ListJobsRequest& request,
    const std::optional<std::string>& tenant) {
  std::optional<v1::Job::State> filter;
  if (request.state() != v1::Job::STATE_UNSPECIFIED) filter = request.state();
  ASSIGN_OR_RETURN(
      JobStore::ListResult result,
      store_->List(request.page_size(), request.page_token(), filter, tenant));
  v1::ListJobsResponse response;
  for (v1::Job& job : result.jobs) *response.add_jobs() = std::move(job);
  response.set_next_page_token(result.next_page_token);
  return response;
}

absl::StatusOr<v1::Job> Coordinator::CancelJob(const std::string& name) {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(const v1::Job::State was, jobs_.Cancel(name));
  if (was == v1::Job::RUNNING) {
    for (auto& [id, attempt] : attempts_) {
      if (attempt.job != name) continue;
      attempt.cancel = true;
      StopAttemptLocked(attempt, "CANCELLED_BY_USER", "cancelled");
    }
  }
  return store_->Get(name);
}

absl::Status Coordinator::DeleteJob(const std::string& name) {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(const v1::Job job, store_->Get(name));
  RETURN_IF_ERROR(store_->Delete(name));
  ReleaseOutputClaim(job.spec().output_dir(), name);
  feed_.ChangedLocked();
  return absl::OkStatus();
}

absl::Status Coordinator::WatchJob(
    const std::string& name, const std::function<bool(const v1::Job&)>& send,
    const std::function<bool()>& cancelled) {
  return feed_.WatchJob(name, send, cancelled);
}

absl::Status Coordinator::StreamJobLogs(
    const std::string& name, bool follow,
    const std::function<bool(const v1::LogEntry&)>& send,
    const std::function<bool()>& cancelled) {
  return feed_.StreamJobLogs(name, follow, send, cancelled);
}

// --- Workers ----------------------------------------------------------------

absl::StatusOr<v1::RegisterWorkerResponse> Coordinator::RegisterWorker(
    const v1::RegisterWorkerRequest& request) {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(const WorkerRegistry::Registration registration,
                   workers_.Register(request, MonotonicNow()));
  if (registration.added) feed_.ChangedLocked();
  v1::RegisterWorkerResponse response;
  response.set_worker_id(registration.worker_id);
  response.set_heartbeat_interval_ms(static_cast<int32_t>(
      absl::ToInt64Milliseconds(options_.heartbeat_interval)));
  response.set_worker_timeout_ms(
      static_cast<int32_t>(absl::ToInt64Milliseconds(options_.worker_timeout)));
  return response;
}

v1::HeartbeatResponse Coordinator::Heartbeat(
    const v1::HeartbeatRequest& request) {
  absl::MutexLock lock(&mu_);
  v1::HeartbeatResponse response;
  RegisteredWorker* found = workers_.Find(request.worker_id());
  if (found == nullptr) {
    response.set_unknown_worker(true);
    return response;
  }
  RegisteredWorker& worker = *found;
  worker.last_heartbeat = MonotonicNow();
  const v1::AttemptStatus& reported = request.attempt();
  if (worker.attempt_id != 0 && worker.order_sent) {
    auto attempt = attempts_.find(worker.attempt_id);
    const bool reports_it =
        request.has_attempt() && reported.attempt_id() == worker.attempt_id;
    if (reports_it) worker.acknowledged = true;
    if (attempt == attempts_.end()) {
      worker.attempt_id = 0;
    } else if (!reports_it) {
      const int rank = RankOf(attempt->second, worker.id);
      if (worker.acknowledged || attempt->second.stopping) {
        // The worker no longer runs its rank (it stopped it, or lost it):
        // the rank is over, and the attempt cannot go on without it.
        if (!attempt->second.stopping) {
          StopAttemptLocked(attempt->second, "RANK_LOST",
                            absl::StrCat(worker.id, " no longer runs rank ",
                                         rank, " (pid ", worker.pid, ")"));
        }
        RankEndedLocked(attempt->second, rank, RankState::kStopped);
        worker.attempt_id = 0;
      }
      // Else the order was not taken (its reply was lost): it goes again.
    } else {
      const int rank = RankOf(attempt->second, worker.id);
      if (reported.state() == v1::AttemptStatus::SUCCEEDED) {
        RankEndedLocked(attempt->second, rank, RankState::kSucceeded);
        worker.attempt_id = 0;
      } else if (reported.state() == v1::AttemptStatus::FAILED) {
        if (!attempt->second.stopping) {
          StopAttemptLocked(attempt->second, "RANK_FAILED",
                            absl::StrCat("rank ", rank, " on ", worker.id,
                                         " failed: ", reported.error()));
        }
        RankEndedLocked(attempt->second, rank, RankState::kStopped);
        worker.attempt_id = 0;
      } else if (attempt->second.stopping) {
        response.set_abort_attempt_id(worker.attempt_id);
      }
    }
  } else if (worker.attempt_id == 0 && request.has_attempt() &&
             reported.state() == v1::AttemptStatus::RUNNING) {
    // A leftover attempt (of a dropped worker or an earlier coordinator).
    response.set_abort_attempt_id(reported.attempt_id());
  }
  if (worker.attempt_id != 0 && worker.to_run.has_value() &&
      !worker.acknowledged) {
    *response.mutable_run() = *worker.to_run;
    worker.order_sent = true;
  }
  return response;
}

absl::StatusOr<v1::ReportProgressResponse> Coordinator::ReportProgress(
    const v1::ReportProgressRequest& request) {
  absl::MutexLock lock(&mu_);
  v1::ReportProgressResponse response;
  auto attempt = attempts_.find(request.attempt_id());
  if (attempt == attempts_.end() || attempt->second.stopping) {
    response.set_stop(true);
    return response;
  }
  if (!ConstantTimeEquals(request.report_secret(),
                          attempt->second.report_secret)) {
    return absl::PermissionDeniedError(
        absl::StrCat("a progress report for attempt ", request.attempt_id(),
                     " must carry that attempt's report_secret"));
  }
  const std::string& job = attempt->second.job;
  if (options_.metrics != nullptr) {
    options_.metrics->JobProgress(job, request, absl::Now());
  }
  // A failure is logged and counted there; the attempt goes on.
  jobs_.RecordProgress(job, request).IgnoreError();
  return response;
}

// --- Scheduling -------------------------------------------------------------

void Coordinator::DropSilentWorkersLocked(absl::Time now) {
  for (const RegisteredWorker& worker :
       workers_.TakeSilent(now, options_.worker_timeout)) {
    auto attempt = attempts_.find(worker.attempt_id);
    if (worker.attempt_id != 0 && attempt != attempts_.end()) {
      const int rank = RankOf(attempt->second, worker.id);
      if (!attempt->second.stopping) {
        StopAttemptLocked(
            attempt->second, "WORKER_LOST",
            absl::StrCat(worker.id, " (rank ", rank, ", pid ", worker.pid,
                         ") sent no heartbeat for ",
                         absl::FormatDuration(now - worker.last_heartbeat)));
      }
      RankEndedLocked(attempt->second, rank, RankState::kStopped);
    }
    dropped_pids_.push_back(worker.pid);
    feed_.ChangedLocked();
  }
}

void Coordinator::StopAttemptLocked(AttemptState& attempt,
                                    const std::string& reason,
                                    const std::string& message) {
  attempt.stopping = true;
  if (attempt.failure_reason.empty()) {
    attempt.failure_reason = reason;
    attempt.failure_message = message;
  }
  jobs_
      .Log(attempt.job, "coordinator",
           absl::StrCat("stopping attempt ", attempt.id, ": ", message))
      .IgnoreError();  // Logged and counted by the state machine.
}

void Coordinator::RankEndedLocked(AttemptState& attempt, int rank,
                                  RankState state) {
  if (rank < 0 || rank >= static_cast<int>(attempt.ranks.size())) return;
  if (attempt.ranks[rank] == RankState::kRunning) attempt.ranks[rank] = state;
}

int Coordinator::RankOf(const AttemptState& attempt,
                        const std::string& worker_id) {
  return static_cast<int>(
      std::find(attempt.workers.begin(), attempt.workers.end(), worker_id) -
      attempt.workers.begin());
}

void Coordinator::EnforceDeadlinesLocked(absl::Time now) {
  for (auto& [id, attempt] : attempts_) {
    // An attempt whose ranks have all ended is being recorded: too late.
    if (attempt.stopping || attempt.outcome.has_value() ||
        now <= attempt.deadline_at) {
      continue;
    }
    StopAttemptLocked(attempt, "DEADLINE_EXCEEDED",
                      absl::StrCat("the job ran past its deadline of ",
                                   absl::FormatDuration(attempt.deadline)));
  }
}

void Coordinator::SettleAttemptsLocked(absl::Time now) {
  for (auto it = attempts_.begin(); it != attempts_.end();) {
    AttemptState& attempt = it->second;
    const bool all_succeeded =
        std::all_of(attempt.ranks.begin(), attempt.ranks.end(),
                    [](RankState s) { return s == RankState::kSucceeded; });
    const bool all_ended =
        std::none_of(attempt.ranks.begin(), attempt.ranks.end(),
                     [](RankState s) { return s == RankState::kRunning; });
    if (!attempt.stopping && !all_succeeded) {
      ++it;
      continue;
    }
    if (!all_ended) {
      ++it;  // Waiting for the other ranks to stop.
      continue;
    }
    if (!attempt.outcome.has_value()) {
      attempt.outcome = {.succeeded = all_succeeded && !attempt.stopping,
                         .cancelled = attempt.cancel,
                         .failure_reason = attempt.failure_reason,
                         .failure_message = attempt.failure_message};
    }
    if (now < attempt.retry_at) {
      ++it;
      continue;
    }
    const absl::StatusOr<v1::Job::State> ended =
        jobs_.EndAttempt(attempt.job, *attempt.outcome);
    if (!ended.ok() && !absl::IsNotFound(ended.status())) {
      // Not recorded (logged and counted): try again later.
      attempt.retry_at = now + attempt.retry_backoff;
      attempt.retry_backoff =
          std::min(2 * attempt.retry_backoff, absl::Seconds(30));
      ++it;
      continue;
    }
    // Its workers that still count themselves in it are free again.
    for (const std::string& id : attempt.workers) {
      workers_.Release(id, attempt.id);
    }
    it = attempts_.erase(it);
    feed_.ChangedLocked();
  }
}

void Coordinator::ScheduleLocked(absl::Time now, absl::Time wall_now) {
  if (!job_queued_since_scan_ && now - last_queue_scan_ < kQueueRescanPeriod &&
      workers_.IdleIds() == idle_after_scan_) {
    return;
  }
  // A failed read is logged and counted by the state machine; the next
  // tick tries again.
  const absl::StatusOr<std::vector<v1::Job>> queued = jobs_.Queued();
  if (!queued.ok()) return;
  job_queued_since_scan_ = false;
  last_queue_scan_ = now;
  const SchedulingDecision decision = PlaceQueuedJobs(
      *queued, workers_.Idle(), workers_.RegisteredByDevice(), wall_now,
      {.hold_for_missing_workers = options_.backfill_after});
  if (options_.metrics != nullptr) {
    options_.metrics->SetJobsWaitingForWorkers(
        static_cast<int>(decision.too_few_workers.size()));
  }
  std::map<std::string, const v1::Job*> by_name;
  for (const v1::Job& job : *queued) by_name[job.name()] = &job;
  for (const std::string& name : decision.expired) {
    jobs_.ExpireQueued(name, JobDeadline(*by_name[name])).IgnoreError();
  }
  for (const TooFewWorkers& wait : decision.too_few_workers) {
    const auto told = told_too_few_workers_.find(wait.job);
    if (told != told_too_few_workers_.end() &&
        told->second == wait.holds_queue) {
      continue;
    }
    told_too_few_workers_[wait.job] = wait.holds_queue;
    jobs_
        .Log(wait.job, "coordinator",
             absl::StrCat("waiting: needs ", wait.needed, " ",
                          v1::Device_Name(wait.device), " worker",
                          wait.needed == 1 ? "" : "s", ", ", wait.registered,
                          " registered",
                          wait.holds_queue
                              ? ""
                              : absl::StrCat("; after ",
                                             absl::FormatDuration(
                                                 options_.backfill_after),
                                             " jobs behind it that fit may "
                                             "start first")))
        .IgnoreError();
  }
  for (const Placement& placement : decision.placements) {
    LaunchLocked(*by_name[placement.job], placement.workers, now, wall_now);
  }
  // Forget jobs that started or left the queue otherwise (cancelled,
  // deleted, expired).
  std::set<std::string> still_queued;
  for (const v1::Job& job : *queued) still_queued.insert(job.name());
  for (const std::string& name : decision.expired) still_queued.erase(name);
  for (const Placement& placement : decision.placements) {
    still_queued.erase(placement.job);
  }
  for (auto it = told_too_few_workers_.begin();
       it != told_too_few_workers_.end();) {
    it = still_queued.count(it->first) > 0 ? std::next(it)
                                           : told_too_few_workers_.erase(it);
  }
  idle_after_scan_ = workers_.IdleIds();
}

void Coordinator::LaunchLocked(const v1::Job& job,
                               const std::vector<std::string>& workers,
                               absl::Time now, absl::Time wall_now) {
  AttemptState attempt;
  attempt.id = NewAttemptIdLocked();
  attempt.job = job.name();
  attempt.report_secret = RandomHex(16);
  const absl::Duration deadline = JobDeadline(job);
  if (deadline > absl::ZeroDuration()) {
    attempt.deadline = deadline;
    // Counted from the job's creation (a date) once, then on the
    // monotonic clock.
    attempt.deadline_at = now + (JobCreateTime(job) + deadline - wall_now);
  }
  // Recorded RUNNING first: a job the store still has QUEUED must not run.
  const absl::StatusOr<v1::Job> started =
      jobs_.Start(job.name(), attempt.id, workers);
  if (!started.ok()) return;
  // The scheduler placed registered workers, under mu_ since.
  const RegisteredWorker& rank0 = *workers_.Find(workers[0]);
  const int world_size = static_cast<int>(workers.size());
  v1::AllowedRoots allowed_roots;
  if (options_.paths != nullptr) {
    const PathRoots& roots = options_.paths->For(job.tenant()).roots();
    allowed_roots.mutable_model_roots()->Add(roots.model_roots.begin(),
                                             roots.model_roots.end());
    allowed_roots.mutable_data_roots()->Add(roots.data_roots.begin(),
                                            roots.data_roots.end());
    allowed_roots.mutable_output_roots()->Add(roots.output_roots.begin(),
                                              roots.output_roots.end());
  }
  for (int rank = 0; rank < world_size; ++rank) {
    v1::Attempt order;
    order.set_job(job.name());
    order.set_attempt_id(attempt.id);
    order.set_report_secret(attempt.report_secret);
    order.set_generation(started->attempt_generation());
    *order.mutable_spec() = job.spec();
    order.set_tenant(job.tenant());
    *order.mutable_allowed_roots() = allowed_roots;
    order.set_rank(rank);
    order.set_world_size(world_size);
    order.set_store_host(rank0.host);
    order.set_store_port(rank0.store_port);
    order.set_store_prefix(absl::StrCat(job.name(), "/attempt-", attempt.id));
    order.set_coordinator(options_.address);
    order.set_collective_timeout_ms(static_cast<int32_t>(
        absl::ToInt64Milliseconds(options_.collective_timeout)));
    workers_.Assign(workers[rank], std::move(order));
    attempt.workers.push_back(workers[rank]);
    attempt.ranks.push_back(RankState::kRunning);
  }
  attempts_[attempt.id] = std::move(attempt);
}

}  // namespace lethe
