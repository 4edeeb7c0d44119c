#include "services/coordinator/coordinator.h"

#include <algorithm>
#include <map>
#include <optional>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "google/protobuf/util/time_util.h"
#include "libs/files/file_io.h"
#include "libs/jobs/compute_device.h"
#include "libs/jobs/job_spec.h"
#include "libs/logging/logging.h"
#include "libs/status/status_macros.h"

namespace lethe {
namespace {

grpc::Status ToGrpc(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()),
                      std::string(status.message()));
}

bool IsFinal(v1::Job::State state) {
  return state == v1::Job::SUCCEEDED || state == v1::Job::FAILED ||
         state == v1::Job::CANCELLED;
}

google::protobuf::Timestamp ToTimestamp(absl::Time time) {
  return google::protobuf::util::TimeUtil::MicrosecondsToTimestamp(
      absl::ToUnixMicros(time));
}

absl::Time FromTimestamp(const google::protobuf::Timestamp& timestamp) {
  return absl::FromUnixMicros(
      google::protobuf::util::TimeUtil::TimestampToMicroseconds(timestamp));
}

// How long after its creation a job must have ended; zero for no limit.
absl::Duration JobDeadline(const v1::Job& job) {
  return absl::Seconds(job.spec().run_policy().deadline().seconds());
}

absl::Time JobCreateTime(const v1::Job& job) {
  return FromTimestamp(job.create_time());
}

// Log lines StreamJobLogs reads from the store at a time.
constexpr int kLogReadPage = 500;
// How often the scheduler reads the queue when nothing that could start a
// job has changed: the resolution of queue deadlines.
constexpr absl::Duration kQueueRescanPeriod = absl::Seconds(1);

JobStore::LogLine NewLogLine(const std::string& source,
                             const std::string& message) {
  JobStore::LogLine line;
  line.time = absl::Now();
  line.source = source;
  line.message = message;
  return line;
}

v1::LogEntry ToLogEntry(const JobStore::LogLine& line) {
  v1::LogEntry entry;
  *entry.mutable_time() = ToTimestamp(line.time);
  entry.set_source(line.source);
  entry.set_message(line.message);
  return entry;
}

}  // namespace

// --- gRPC adapters -----------------------------------------------------------

// Each call is counted (and unary calls timed) in the metrics.
class Coordinator::JobsService final : public v1::Jobs::Service {
 public:
  explicit JobsService(Coordinator& coordinator) : c_(coordinator) {}

  grpc::Status CreateJob(grpc::ServerContext*,
                         const v1::CreateJobRequest* request,
                         v1::Job* response) override {
    const absl::Time start = absl::Now();
    return Count("CreateJob", start, Reply(c_.CreateJob(*request), response));
  }
  grpc::Status GetJob(grpc::ServerContext*, const v1::GetJobRequest* request,
                      v1::Job* response) override {
    const absl::Time start = absl::Now();
    return Count("GetJob", start, Reply(c_.GetJob(request->name()), response));
  }
  grpc::Status ListJobs(grpc::ServerContext*,
                        const v1::ListJobsRequest* request,
                        v1::ListJobsResponse* response) override {
    const absl::Time start = absl::Now();
    return Count("ListJobs", start, Reply(c_.ListJobs(*request), response));
  }
  grpc::Status CancelJob(grpc::ServerContext*,
                         const v1::CancelJobRequest* request,
                         v1::Job* response) override {
    const absl::Time start = absl::Now();
    return Count("CancelJob", start,
                 Reply(c_.CancelJob(request->name()), response));
  }
  grpc::Status DeleteJob(grpc::ServerContext*,
                         const v1::DeleteJobRequest* request,
                         google::protobuf::Empty*) override {
    const absl::Time start = absl::Now();
    return Count("DeleteJob", start, ToGrpc(c_.DeleteJob(request->name())));
  }
  grpc::Status WatchJob(grpc::ServerContext* context,
                        const v1::WatchJobRequest* request,
                        grpc::ServerWriter<v1::Job>* writer) override {
    return Count("WatchJob", std::nullopt,
                 ToGrpc(c_.WatchJob(
                     request->name(),
                     [&](const v1::Job& job) { return writer->Write(job); },
                     [&] { return context->IsCancelled(); })));
  }
  grpc::Status StreamJobLogs(
      grpc::ServerContext* context, const v1::StreamJobLogsRequest* request,
      grpc::ServerWriter<v1::LogEntry>* writer) override {
    return Count(
        "StreamJobLogs", std::nullopt,
        ToGrpc(c_.StreamJobLogs(
            request->name(), request->follow(),
            [&](const v1::LogEntry& entry) { return writer->Write(entry); },
            [&] { return context->IsCancelled(); })));
  }

 private:
  template <typename T>
  static grpc::Status Reply(absl::StatusOr<T> result, T* response) {
    if (!result.ok()) return ToGrpc(result.status());
    *response = *std::move(result);
    return grpc::Status::OK;
  }

  // Records the call; `start` is empty for streams (not timed).
  grpc::Status Count(const std::string& method, std::optional<absl::Time> start,
                     grpc::Status status) {
    if (c_.options_.metrics != nullptr) {
      c_.options_.metrics->ApiCall(
          method,
          absl::StatusCodeToString(
              static_cast<absl::StatusCode>(status.error_code())),
          start.has_value() ? absl::ToDoubleSeconds(absl::Now() - *start) : -1);
    }
    return status;
  }

  Coordinator& c_;
};

class Coordinator::WorkerService final : public v1::WorkerRegistry::Service {
 public:
  explicit WorkerService(Coordinator& coordinator) : c_(coordinator) {}

  grpc::Status RegisterWorker(grpc::ServerContext*,
                              const v1::RegisterWorkerRequest* request,
                              v1::RegisterWorkerResponse* response) override {
    absl::StatusOr<v1::RegisterWorkerResponse> result =
        c_.RegisterWorker(*request);
    if (!result.ok()) return ToGrpc(result.status());
    *response = *std::move(result);
    return grpc::Status::OK;
  }
  grpc::Status Heartbeat(grpc::ServerContext*,
                         const v1::HeartbeatRequest* request,
                         v1::HeartbeatResponse* response) override {
    *response = c_.Heartbeat(*request);
    return grpc::Status::OK;
  }
  grpc::Status ReportProgress(grpc::ServerContext*,
                              const v1::ReportProgressRequest* request,
                              v1::ReportProgressResponse* response) override {
    *response = c_.ReportProgress(*request);
    return grpc::Status::OK;
  }

 private:
  Coordinator& c_;
};

// --- Coordinator
// ---------------------------------------------------------------

Coordinator::Coordinator(std::unique_ptr<JobStore> store,
                         CoordinatorOptions options)
    : options_(std::move(options)),
      store_(std::move(store)),
      jobs_service_(std::make_unique<JobsService>(*this)),
      worker_service_(std::make_unique<WorkerService>(*this)) {}

grpc::Service* Coordinator::jobs_service() { return jobs_service_.get(); }
grpc::Service* Coordinator::worker_service() { return worker_service_.get(); }

Coordinator::~Coordinator() {
  {
    absl::MutexLock lock(&mu_);
    shutting_down_ = true;
  }
  if (scheduler_.joinable()) scheduler_.join();
}

absl::Status Coordinator::RecoverAfterRestart() {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(
      std::vector<v1::Job> jobs,
      store_->ListInStates({v1::Job::RUNNING, v1::Job::CANCELLING}));
  for (const v1::Job& job : jobs) {
    if (job.state() == v1::Job::CANCELLING) {
      TransitionLocked(job.name(), v1::Job::CANCELLED, "COORDINATOR_RESTARTED",
                       "cancelled while the coordinator was down");
    } else if (job.restart_count() < job.spec().run_policy().max_restarts()) {
      TransitionLocked(job.name(), v1::Job::QUEUED, "COORDINATOR_RESTARTED",
                       "the coordinator restarted; resuming from the last "
                       "checkpoint");
    } else {
      TransitionLocked(job.name(), v1::Job::FAILED, "COORDINATOR_RESTARTED",
                       "the coordinator restarted and the job has no restarts "
                       "left");
    }
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
  const absl::Time now = absl::Now();
  DropSilentWorkersLocked(now);
  EnforceDeadlinesLocked(now);
  SettleAttemptsLocked(now);
  ScheduleLocked(now);
  UpdateGaugesLocked(now);
}

void Coordinator::UpdateGaugesLocked(absl::Time now) {
  if (options_.metrics == nullptr || now - gauges_updated_ < absl::Seconds(1)) {
    return;
  }
  gauges_updated_ = now;
  int healthy = 0, busy = 0;
  for (const auto& [id, worker] : workers_) {
    healthy += now - worker.last_heartbeat <= 2 * options_.heartbeat_interval;
    busy += worker.attempt_id != 0;
  }
  options_.metrics->SetWorkers(static_cast<int>(workers_.size()), healthy,
                               busy);
  const absl::StatusOr<std::map<v1::Job::State, int64_t>> counts =
      store_->CountByState();
  if (counts.ok()) options_.metrics->SetJobCounts(*counts);
}

void Coordinator::WriteWorkerTargetsLocked() {
  if (options_.worker_targets_file.empty()) return;
  std::vector<std::string> targets;
  for (const auto& [id, worker] : workers_) {
    if (!worker.metrics_address.empty()) {
      targets.push_back(absl::StrCat("\"", worker.metrics_address, "\""));
    }
  }
  const std::string json =
      absl::StrCat("[{\"targets\": [", absl::StrJoin(targets, ", "),
                   "], \"labels\": {\"component\": \"worker\"}}]\n");
  const absl::Status written =
      WriteFileAtomically(options_.worker_targets_file, json);
  if (!written.ok()) {
    LOG(ERROR) << "writing the workers' scrape targets: " << written;
  }
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

void Coordinator::LogLocked(const std::string& job, const std::string& source,
                            const std::string& message) {
  AppendLogsLocked(job, {NewLogLine(source, message)});
}

void Coordinator::AppendLogsLocked(
    const std::string& job, const std::vector<JobStore::LogLine>& lines) {
  const absl::StatusOr<int64_t> appended =
      store_->AppendLogs(job, lines, options_.max_log_lines);
  // A job deleted meanwhile has no log left to write to.
  if (!appended.ok() && !absl::IsNotFound(appended.status())) {
    LOG(ERROR) << "could not write the log of " << job << ": "
               << appended.status();
  }
  ++version_;
}

void Coordinator::TransitionLocked(const std::string& job, v1::Job::State to,
                                   const std::string& reason,
                                   const std::string& message) {
  const absl::StatusOr<v1::Job> moved =
      store_->Transition(job, to, reason, message, absl::Now());
  if (!moved.ok()) {
    LogLocked(job, "coordinator",
              absl::StrCat("could not record ", v1::Job::State_Name(to), ": ",
                           moved.status().ToString()));
    return;
  }
  if (to == v1::Job::QUEUED) job_queued_since_scan_ = true;
  if (options_.metrics != nullptr && moved->history_size() >= 2) {
    // The change before this one: the state left, and since when.
    const v1::Job::StateChange& before =
        moved->history(moved->history_size() - 2);
    const absl::Time since = FromTimestamp(before.time());
    options_.metrics->JobTransition(before.state(), to, reason,
                                    absl::Now() - since);
    if (IsFinal(to)) options_.metrics->JobEnded(job);
  }
  LogLocked(
      job, "coordinator",
      absl::StrCat(v1::Job::State_Name(to), " (", reason, "): ", message));
}

// --- Jobs API ---------------------------------------------------------------

absl::StatusOr<v1::Job> Coordinator::CreateJob(
    const v1::CreateJobRequest& request) {
  const v1::JobSpec spec = JobSpecWithDefaults(request.spec());
  RETURN_IF_ERROR(ValidateJobSpec(spec));
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(JobStore::CreateResult created,
                   store_->Create(spec, request.request_id(), absl::Now()));
  if (created.created) {
    job_queued_since_scan_ = true;
    LogLocked(created.job.name(), "coordinator",
              absl::StrCat("QUEUED: ", v1::Method_Name(spec.method()), " on ",
                           spec.data_dir(), "/", spec.forget_split(), " with ",
                           spec.world_size(), " worker(s)"));
  }
  return created.job;
}

absl::StatusOr<v1::Job> Coordinator::GetJob(const std::string& name) {
  return store_->Get(name);
}

absl::StatusOr<v1::ListJobsResponse> Coordinator::ListJobs(
    const v1::ListJobsRequest& request) {
  std::optional<v1::Job::State> filter;
  if (request.state() != v1::Job::STATE_UNSPECIFIED) filter = request.state();
  ASSIGN_OR_RETURN(
      JobStore::ListResult result,
      store_->List(request.page_size(), request.page_token(), filter));
  v1::ListJobsResponse response;
  for (v1::Job& job : result.jobs) *response.add_jobs() = std::move(job);
  response.set_next_page_token(result.next_page_token);
  return response;
}

absl::StatusOr<v1::Job> Coordinator::CancelJob(const std::string& name) {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(v1::Job job, store_->Get(name));
  switch (job.state()) {
    case v1::Job::QUEUED:
      TransitionLocked(name, v1::Job::CANCELLED, "CANCELLED_BY_USER",
                       "cancelled before it started");
      break;
    case v1::Job::RUNNING:
      TransitionLocked(name, v1::Job::CANCELLING, "CANCELLED_BY_USER",
                       "stopping every rank");
      for (auto& [id, attempt] : attempts_) {
        if (attempt.job != name) continue;
        attempt.cancel = true;
        StopAttemptLocked(attempt, "CANCELLED_BY_USER", "cancelled");
      }
      break;
    case v1::Job::CANCELLING:
      break;
    default:
      return absl::FailedPreconditionError(
          absl::StrCat(name, " is already ", v1::Job::State_Name(job.state())));
  }
  return store_->Get(name);
}

absl::Status Coordinator::DeleteJob(const std::string& name) {
  absl::MutexLock lock(&mu_);
  RETURN_IF_ERROR(store_->Delete(name));
  ++version_;
  return absl::OkStatus();
}

bool Coordinator::AwaitChange(int64_t seen_version, absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto changed = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return version_ != seen_version || shutting_down_;
  };
  return mu_.AwaitWithTimeout(absl::Condition(&changed), timeout);
}

int64_t Coordinator::CurrentVersion() {
  absl::MutexLock lock(&mu_);
  return version_;
}

absl::Status Coordinator::WatchJob(
    const std::string& name, const std::function<bool(const v1::Job&)>& send,
    const std::function<bool()>& cancelled) {
  std::string last_sent;
  while (!cancelled()) {
    const int64_t version = CurrentVersion();
    ASSIGN_OR_RETURN(v1::Job job, store_->Get(name));
    std::string bytes = job.SerializeAsString();
    if (bytes != last_sent) {
      if (!send(job)) return absl::OkStatus();
      last_sent = std::move(bytes);
    }
    if (IsFinal(job.state())) return absl::OkStatus();
    AwaitChange(version, absl::Seconds(1));
  }
  return absl::OkStatus();
}

absl::Status Coordinator::StreamJobLogs(
    const std::string& name, bool follow,
    const std::function<bool(const v1::LogEntry&)>& send,
    const std::function<bool()>& cancelled) {
  // The sequence number of the last line sent; lines trimmed from the store
  // while the client lagged are skipped.
  int64_t sent = 0;
  while (!cancelled()) {
    const int64_t version = CurrentVersion();
    bool job_final = false;
    std::vector<JobStore::LogLine> page;
    {
      // Every line is written under mu_, so the state read here comes with
      // every line logged up to it (a final state's own line included).
      absl::MutexLock lock(&mu_);
      ASSIGN_OR_RETURN(const v1::Job job, store_->Get(name));
      job_final = IsFinal(job.state());
      ASSIGN_OR_RETURN(page, store_->ReadLogs(name, sent, kLogReadPage));
    }
    for (const JobStore::LogLine& line : page) {
      if (!send(ToLogEntry(line))) return absl::OkStatus();
      sent = line.sequence;
    }
    if (static_cast<int>(page.size()) == kLogReadPage) continue;
    if (!follow || job_final) return absl::OkStatus();
    AwaitChange(version, absl::Seconds(1));
  }
  return absl::OkStatus();
}

// --- Workers ----------------------------------------------------------------

absl::StatusOr<v1::RegisterWorkerResponse> Coordinator::RegisterWorker(
    const v1::RegisterWorkerRequest& request) {
  if (request.host().empty()) {
    return absl::InvalidArgumentError("host: required");
  }
  if (request.store_port() <= 0 || request.store_port() > 65535) {
    return absl::InvalidArgumentError(absl::StrCat(
        "store_port: must be in [1, 65535], got ", request.store_port()));
  }
  ASSIGN_OR_RETURN(
      const ComputeDevice device,
      ParseComputeDevice(request.device().empty() ? "cpu" : request.device()));
  absl::MutexLock lock(&mu_);
  WorkerState worker;
  worker.id = absl::StrCat("workers/", next_worker_number_++);
  worker.host = request.host();
  worker.pid = request.pid();
  worker.store_port = request.store_port();
  worker.metrics_address = request.metrics_address();
  worker.device = device.kind;
  worker.last_heartbeat = absl::Now();
  v1::RegisterWorkerResponse response;
  response.set_worker_id(worker.id);
  response.set_heartbeat_interval_ms(static_cast<int32_t>(
      absl::ToInt64Milliseconds(options_.heartbeat_interval)));
  workers_[worker.id] = std::move(worker);
  WriteWorkerTargetsLocked();
  ++version_;
  return response;
}

v1::HeartbeatResponse Coordinator::Heartbeat(
    const v1::HeartbeatRequest& request) {
  absl::MutexLock lock(&mu_);
  v1::HeartbeatResponse response;
  auto found = workers_.find(request.worker_id());
  if (found == workers_.end()) {
    response.set_unknown_worker(true);
    return response;
  }
  WorkerState& worker = found->second;
  worker.last_heartbeat = absl::Now();
  const v1::AttemptStatus& reported = request.attempt();
  if (worker.attempt_id != 0 && worker.delivered) {
    auto attempt = attempts_.find(worker.attempt_id);
    const bool reports_it =
        request.has_attempt() && reported.attempt_id() == worker.attempt_id;
    if (attempt != attempts_.end()) {
      const int rank = RankOf(attempt->second, worker.id);
      if (!reports_it) {
        // The worker is not running the attempt (it stopped it, or never
        // got it): this rank is over.
        RankEndedLocked(attempt->second, rank, RankState::kStopped);
        worker.attempt_id = 0;
      } else if (reported.state() == v1::AttemptStatus::SUCCEEDED) {
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
    } else {
      worker.attempt_id = 0;
    }
  } else if (worker.attempt_id == 0 && request.has_attempt() &&
             reported.state() == v1::AttemptStatus::RUNNING) {
    // A leftover attempt (of a dropped worker or an earlier coordinator).
    response.set_abort_attempt_id(reported.attempt_id());
  }
  if (worker.to_run.has_value() && !worker.delivered) {
    *response.mutable_run() = *worker.to_run;
    worker.delivered = true;
  }
  return response;
}

v1::ReportProgressResponse Coordinator::ReportProgress(
    const v1::ReportProgressRequest& request) {
  absl::MutexLock lock(&mu_);
  v1::ReportProgressResponse response;
  auto attempt = attempts_.find(request.attempt_id());
  if (attempt == attempts_.end() || attempt->second.stopping) {
    response.set_stop(true);
    return response;
  }
  const std::string& job = attempt->second.job;
  if (options_.metrics != nullptr) {
    options_.metrics->JobProgress(job, request, absl::Now());
  }
  const absl::StatusOr<v1::Job> updated =
      store_->Update(job, [&](v1::Job& stored) {
        if (request.has_progress()) {
          *stored.mutable_progress() = request.progress();
        }
        for (const auto& [name, value] : request.evaluation_summary()) {
          (*stored.mutable_evaluation_summary())[name] = value;
        }
        if (!request.output_model_dir().empty()) {
          stored.set_output_model_dir(request.output_model_dir());
        }
      });
  if (!updated.ok()) {
    LogLocked(job, "coordinator",
              absl::StrCat("could not record progress: ",
                           updated.status().ToString()));
  }
  std::vector<JobStore::LogLine> lines;
  for (const std::string& line : request.log_lines()) {
    lines.push_back(NewLogLine("rank0", line));
  }
  if (request.has_progress() && request.progress().step() % 10 == 0) {
    lines.push_back(NewLogLine(
        "rank0", absl::StrCat("step ", request.progress().step(), "/",
                              request.progress().total_steps())));
  }
  if (!lines.empty()) AppendLogsLocked(job, lines);
  ++version_;
  return response;
}

// --- Scheduling
// ---------------------------------------------------------------

void Coordinator::DropSilentWorkersLocked(absl::Time now) {
  for (auto it = workers_.begin(); it != workers_.end();) {
    WorkerState& worker = it->second;
    if (now - worker.last_heartbeat <= options_.worker_timeout) {
      ++it;
      continue;
    }
    if (worker.attempt_id != 0) {
      auto attempt = attempts_.find(worker.attempt_id);
      if (attempt != attempts_.end()) {
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
    }
    dropped_pids_.push_back(worker.pid);
    it = workers_.erase(it);
    WriteWorkerTargetsLocked();
    ++version_;
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
  LogLocked(attempt.job, "coordinator",
            absl::StrCat("stopping attempt ", attempt.id, ": ", message));
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
    if (attempt.stopping || now <= attempt.deadline_at) continue;
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
    const absl::StatusOr<v1::Job> job = store_->Get(attempt.job);
    if (job.ok()) {
      if (all_succeeded && !attempt.stopping) {
        TransitionLocked(attempt.job, v1::Job::SUCCEEDED, "COMPLETED",
                         absl::StrCat("model in ", job->output_model_dir()));
      } else if (job->state() == v1::Job::CANCELLING || attempt.cancel) {
        TransitionLocked(attempt.job, v1::Job::CANCELLED, "CANCELLED_BY_USER",
                         "every rank stopped");
      } else if (attempt.failure_reason != "DEADLINE_EXCEEDED" &&
                 job->restart_count() <
                     job->spec().run_policy().max_restarts()) {
        TransitionLocked(
            attempt.job, v1::Job::QUEUED, attempt.failure_reason,
            absl::StrCat(attempt.failure_message,
                         "; restarting from the last checkpoint (restart ",
                         job->restart_count() + 1, " of ",
                         job->spec().run_policy().max_restarts(), ")"));
      } else {
        TransitionLocked(attempt.job, v1::Job::FAILED, attempt.failure_reason,
                         attempt.failure_message);
      }
    }
    // Its workers that still count themselves in it are free again.
    for (const std::string& id : attempt.workers) {
      auto worker = workers_.find(id);
      if (worker != workers_.end() && worker->second.attempt_id == attempt.id) {
        worker->second.attempt_id = 0;
        worker->second.to_run.reset();
      }
    }
    it = attempts_.erase(it);
    ++version_;
  }
}

std::vector<std::string> Coordinator::IdleWorkersLocked() const {
  std::vector<std::string> idle;
  for (const auto& [id, worker] : workers_) {
    if (worker.attempt_id == 0) idle.push_back(id);
  }
  return idle;
}

void Coordinator::ScheduleLocked(absl::Time now) {
  if (!job_queued_since_scan_ && now - last_queue_scan_ < kQueueRescanPeriod &&
      IdleWorkersLocked() == idle_after_scan_) {
    return;
  }
  const absl::StatusOr<std::vector<v1::Job>> queued =
      store_->ListInStates({v1::Job::QUEUED});
  if (!queued.ok()) return;
  job_queued_since_scan_ = false;
  last_queue_scan_ = now;
  // Idle workers by the device they compute on; a job runs on workers of
  // its spec's device only.
  std::map<v1::Device, std::vector<WorkerState*>> idle_by_device;
  std::map<v1::Device, int> registered_by_device;
  for (auto& [id, worker] : workers_) {
    ++registered_by_device[worker.device];
    if (worker.attempt_id == 0) {
      idle_by_device[worker.device].push_back(&worker);
    }
  }
  // Strict order per device: a job never waits behind a later job that
  // needs the same kind of worker.
  std::set<v1::Device> blocked;
  for (const v1::Job& job : *queued) {
    const absl::Duration deadline = JobDeadline(job);
    if (deadline > absl::ZeroDuration() &&
        now > JobCreateTime(job) + deadline) {
      TransitionLocked(job.name(), v1::Job::FAILED, "DEADLINE_EXCEEDED",
                       absl::StrCat("the job waited in the queue past its "
                                    "deadline of ",
                                    absl::FormatDuration(deadline)));
      continue;
    }
    const v1::Device device =
        job.spec().device() == v1::CUDA ? v1::CUDA : v1::CPU;
    if (blocked.count(device) > 0) continue;
    std::vector<WorkerState*>& idle = idle_by_device[device];
    const int world_size = std::max(1, job.spec().world_size());
    if (world_size > static_cast<int>(idle.size())) {
      blocked.insert(device);
      const int registered = registered_by_device[device];
      if (registered < world_size &&
          told_too_few_workers_.insert(job.name()).second) {
        LogLocked(job.name(), "coordinator",
                  absl::StrCat("waiting: needs ", world_size, " ",
                               v1::Device_Name(device), " worker",
                               world_size == 1 ? "" : "s", ", ", registered,
                               " registered"));
      }
      continue;
    }
    told_too_few_workers_.erase(job.name());
    AttemptState attempt;
    attempt.id = NewAttemptIdLocked();
    attempt.job = job.name();
    if (deadline > absl::ZeroDuration()) {
      attempt.deadline = deadline;
      attempt.deadline_at = JobCreateTime(job) + deadline;
    }
    const WorkerState& rank0 = *idle[0];
    std::vector<std::string> names;
    for (int rank = 0; rank < world_size; ++rank) {
      WorkerState& worker = *idle[rank];
      v1::Attempt order;
      order.set_job(job.name());
      order.set_attempt_id(attempt.id);
      *order.mutable_spec() = job.spec();
      order.set_rank(rank);
      order.set_world_size(world_size);
      order.set_store_host(rank0.host);
      order.set_store_port(rank0.store_port);
      order.set_store_prefix(absl::StrCat(job.name(), "/attempt-", attempt.id));
      order.set_coordinator(options_.address);
      order.set_collective_timeout_ms(static_cast<int32_t>(
          absl::ToInt64Milliseconds(options_.collective_timeout)));
      worker.attempt_id = attempt.id;
      worker.to_run = std::move(order);
      worker.delivered = false;
      attempt.workers.push_back(worker.id);
      attempt.ranks.push_back(RankState::kRunning);
      names.push_back(worker.id);
    }
    idle.erase(idle.begin(), idle.begin() + world_size);
    TransitionLocked(job.name(), v1::Job::RUNNING, "SCHEDULED",
                     absl::StrCat("attempt ", attempt.id, " on ",
                                  absl::StrJoin(names, ", ")));
    attempts_[attempt.id] = std::move(attempt);
  }
  // Forget jobs that left the queue otherwise (cancelled, deleted).
  std::set<std::string> still_queued;
  for (const v1::Job& job : *queued) still_queued.insert(job.name());
  for (auto it = told_too_few_workers_.begin();
       it != told_too_few_workers_.end();) {
    it = still_queued.count(*it) > 0 ? std::next(it)
                                     : told_too_few_workers_.erase(it);
  }
  idle_after_scan_ = IdleWorkersLocked();
}

}  // namespace lethe
