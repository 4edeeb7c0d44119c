#include "services/coordinator/job_state_machine.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "google/protobuf/util/time_util.h"
#include "libs/logging/logging.h"
#include "libs/status/status_macros.h"

namespace lethe {
namespace {

absl::Time FromTimestamp(const google::protobuf::Timestamp& timestamp) {
  return absl::FromUnixMicros(
      google::protobuf::util::TimeUtil::TimestampToMicroseconds(timestamp));
}

JobStore::LogLine NewLogLine(const std::string& source,
                             const std::string& message) {
  JobStore::LogLine line;
  line.time = absl::Now();
  line.source = source;
  line.message = message;
  return line;
}

}  // namespace

JobStateMachine::JobStateMachine(JobStore& store, Options options)
    : store_(store), options_(std::move(options)) {}

void JobStateMachine::Changed(const std::string& job, v1::Job::State to) {
  if (options_.on_change) options_.on_change(job, to);
}

absl::Status JobStateMachine::StoreFailed(const std::string& operation,
                                          const std::string& job,
                                          const absl::Status& status) {
  LETHE_LOG(ERROR) << "job store: " << operation << " of " << job
                   << " failed: " << status;
  if (options_.metrics != nullptr) options_.metrics->StoreError(operation);
  return status;
}

absl::Status JobStateMachine::AppendLogs(
    const std::string& job, const std::vector<JobStore::LogLine>& lines) {
  const absl::StatusOr<int64_t> appended =
      store_.AppendLogs(job, lines, options_.max_log_lines);
  Changed(job, v1::Job::STATE_UNSPECIFIED);
  // A job deleted meanwhile has no log left to write to.
  if (appended.ok() || absl::IsNotFound(appended.status())) {
    return absl::OkStatus();
  }
  return StoreFailed("append_logs", job, appended.status());
}

absl::Status JobStateMachine::Log(const std::string& job,
                                  const std::string& source,
                                  const std::string& message) {
  return AppendLogs(job, {NewLogLine(source, message)});
}

absl::StatusOr<v1::Job> JobStateMachine::Transition(
    const std::string& job, v1::Job::State to, const std::string& reason,
    const std::string& message) {
  const absl::StatusOr<v1::Job> moved =
      store_.Transition(job, to, reason, message, absl::Now());
  if (!moved.ok()) {
    Log(job, "coordinator",
        absl::StrCat("could not record ", v1::Job::State_Name(to), ": ",
                     moved.status().ToString()))
        .IgnoreError();  // Counted below; the log may fail for the same cause.
    return StoreFailed("transition", job, moved.status());
  }
  if (options_.metrics != nullptr && moved->history_size() >= 2) {
    // The change before this one: the state left, and since when.
    const v1::Job::StateChange& before =
        moved->history(moved->history_size() - 2);
    options_.metrics->JobTransition(before.state(), to, reason,
                                    absl::Now() - FromTimestamp(before.time()));
    if (IsFinalState(to)) options_.metrics->JobEnded(job);
  }
  Log(job, "coordinator",
      absl::StrCat(v1::Job::State_Name(to), " (", reason, "): ", message))
      .IgnoreError();  // Already logged and counted by AppendLogs.
  Changed(job, to);
  return moved;
}

absl::StatusOr<v1::Job> JobStateMachine::Create(const v1::JobSpec& spec,
                                                const std::string& request_id,
                                                absl::Time now,
                                                const std::string& tenant) {
  const absl::StatusOr<JobStore::CreateResult> created =
      store_.Create(spec, request_id, now, tenant);
  if (!created.ok()) {
    if (absl::IsInvalidArgument(created.status()) ||
        absl::IsAlreadyExists(created.status())) {
      return created.status();  // The request's fault, not the store's.
    }
    return StoreFailed("create", request_id, created.status());
  }
  if (created->created) {
    Log(created->job.name(), "coordinator",
        absl::StrCat("QUEUED: ", v1::Method_Name(spec.method()), " on ",
                     spec.data_dir(), "/", spec.forget_split(), " with ",
                     spec.world_size(), " worker(s)"))
        .IgnoreError();
    Changed(created->job.name(), v1::Job::QUEUED);
  }
  return created->job;
}

absl::StatusOr<v1::Job> JobStateMachine::Start(
    const std::string& job, int64_t attempt_id,
    const std::vector<std::string>& workers) {
  return Transition(job, v1::Job::RUNNING, "SCHEDULED",
                    absl::StrCat("attempt ", attempt_id, " on ",
                                 absl::StrJoin(workers, ", ")));
}

absl::StatusOr<v1::Job::State> JobStateMachine::EndAttempt(
    const std::string& name, const AttemptOutcome& outcome) {
  const absl::StatusOr<v1::Job> job = store_.Get(name);
  if (!job.ok()) return StoreFailed("read", name, job.status());
  v1::Job::State to;
  std::string reason, message;
  const int restarts = job->restart_count();
  const int max_restarts = job->spec().run_policy().max_restarts();
  if (outcome.succeeded && job->state() == v1::Job::RUNNING) {
    to = v1::Job::SUCCEEDED;
    reason = "COMPLETED";
    message = absl::StrCat("model in ", job->output_model_dir());
  } else if (job->state() == v1::Job::CANCELLING || outcome.cancelled) {
    to = v1::Job::CANCELLED;
    reason = "CANCELLED_BY_USER";
    message = "every rank stopped";
  } else if (outcome.failure_reason != "DEADLINE_EXCEEDED" &&
             restarts < max_restarts) {
    to = v1::Job::QUEUED;
    reason = outcome.failure_reason;
    message = absl::StrCat(outcome.failure_message,
                           "; restarting from the last checkpoint (restart ",
                           restarts + 1, " of ", max_restarts, ")");
  } else {
    to = v1::Job::FAILED;
    reason = outcome.failure_reason;
    message = outcome.failure_message;
  }
  RETURN_IF_ERROR(Transition(name, to, reason, message).status());
  return to;
}

absl::StatusOr<v1::Job::State> JobStateMachine::Cancel(
    const std::string& name) {
  const absl::StatusOr<v1::Job> job = store_.Get(name);
  if (!job.ok()) {
    if (absl::IsNotFound(job.status())) return job.status();
    return StoreFailed("read", name, job.status());
  }
  switch (job->state()) {
    case v1::Job::QUEUED:
      RETURN_IF_ERROR(Transition(name, v1::Job::CANCELLED, "CANCELLED_BY_USER",
                                 "cancelled before it started")
                          .status());
      break;
    case v1::Job::RUNNING:
      RETURN_IF_ERROR(Transition(name, v1::Job::CANCELLING, "CANCELLED_BY_USER",
                                 "stopping every rank")
                          .status());
      break;
    case v1::Job::CANCELLING:
      break;
    default:
      return absl::FailedPreconditionError(absl::StrCat(
          name, " is already ", v1::Job::State_Name(job->state())));
  }
  return job->state();
}

absl::Status JobStateMachine::ExpireQueued(const std::string& job,
                                           absl::Duration deadline) {
  return Transition(job, v1::Job::FAILED, "DEADLINE_EXCEEDED",
                    absl::StrCat("the job waited in the queue past its "
                                 "deadline of ",
                                 absl::FormatDuration(deadline)))
      .status();
}

absl::StatusOr<std::vector<v1::Job>> JobStateMachine::Queued() {
  absl::StatusOr<std::vector<v1::Job>> queued =
      store_.ListInStates({v1::Job::QUEUED});
  if (!queued.ok()) return StoreFailed("list", "queued jobs", queued.status());
  return queued;
}

absl::Status JobStateMachine::Recover() {
  const absl::StatusOr<std::vector<v1::Job>> jobs =
      store_.ListInStates({v1::Job::RUNNING, v1::Job::CANCELLING});
  if (!jobs.ok()) return StoreFailed("list", "running jobs", jobs.status());
  absl::Status first_error;
  for (const v1::Job& job : *jobs) {
    absl::Status moved;
    if (job.state() == v1::Job::CANCELLING) {
      moved =
          Transition(job.name(), v1::Job::CANCELLED, "COORDINATOR_RESTARTED",
                     "cancelled while the coordinator was down")
              .status();
    } else if (job.restart_count() < job.spec().run_policy().max_restarts()) {
      moved = Transition(job.name(), v1::Job::QUEUED, "COORDINATOR_RESTARTED",
                         "the coordinator restarted; resuming from the last "
                         "checkpoint")
                  .status();
    } else {
      moved = Transition(job.name(), v1::Job::FAILED, "COORDINATOR_RESTARTED",
                         "the coordinator restarted and the job has no "
                         "restarts left")
                  .status();
    }
    first_error.Update(moved);
  }
  return first_error;
}

absl::Status JobStateMachine::RecordProgress(
    const std::string& job, const v1::ReportProgressRequest& report) {
  const absl::StatusOr<v1::Job> updated =
      store_.Update(job, [&](v1::Job& stored) {
        if (report.has_progress()) {
          *stored.mutable_progress() = report.progress();
        }
        for (const auto& [name, value] : report.evaluation_summary()) {
          (*stored.mutable_evaluation_summary())[name] = value;
        }
        if (!report.output_model_dir().empty()) {
          stored.set_output_model_dir(report.output_model_dir());
        }
      });
  absl::Status status;
  if (!updated.ok()) {
    status = StoreFailed("update", job, updated.status());
    Log(job, "coordinator",
        absl::StrCat("could not record progress: ", status.ToString()))
        .IgnoreError();
  }
  std::vector<JobStore::LogLine> lines;
  for (const std::string& line : report.log_lines()) {
    lines.push_back(NewLogLine("rank0", line));
  }
  if (report.has_progress() && report.progress().step() % 10 == 0) {
    lines.push_back(
        NewLogLine("rank0", absl::StrCat("step ", report.progress().step(), "/",
                                         report.progress().total_steps())));
  }
  if (!lines.empty()) status.Update(AppendLogs(job, lines));
  Changed(job, v1::Job::STATE_UNSPECIFIED);
  return status;
}

}  // namespace lethe
