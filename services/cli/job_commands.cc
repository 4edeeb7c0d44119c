#include "services/cli/job_commands.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <cmath>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/time_util.h"
#include "libs/jobs/job_state.h"
#include "libs/status/status_macros.h"

namespace lethe {
namespace {

absl::Status FromGrpc(const grpc::Status& status, absl::string_view address) {
  if (status.ok()) return absl::OkStatus();
  std::string message = status.error_message();
  if (status.error_code() == grpc::StatusCode::UNAVAILABLE) {
    message = absl::StrCat("cannot reach the coordinator at ", address, ": ",
                           message);
  }
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      message);
}

std::string Json(const google::protobuf::Message& message) {
  std::string json;
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  if (!google::protobuf::util::MessageToJsonString(message, &json, options)
           .ok()) {
    return "{}";
  }
  return json;
}

std::string FormatTime(const google::protobuf::Timestamp& time) {
  return absl::FormatTime(
      "%Y-%m-%d %H:%M:%S",
      absl::FromUnixMicros(
          google::protobuf::util::TimeUtil::TimestampToMicroseconds(time)),
      absl::LocalTimeZone());
}

std::string FormatSeconds(int64_t seconds) {
  if (seconds >= 3600) {
    return absl::StrFormat("%d:%02d:%02d", seconds / 3600, (seconds / 60) % 60,
                           seconds % 60);
  }
  return absl::StrFormat("%d:%02d", seconds / 60, seconds % 60);
}

// "name value, name value" with 4 significant digits.
std::string FormatValues(const google::protobuf::Map<std::string, double>& m) {
  std::vector<std::string> sorted;
  for (const auto& [name, value] : m) {
    sorted.push_back(absl::StrFormat("%s %.4g", name, value));
  }
  std::sort(sorted.begin(), sorted.end());
  return absl::StrJoin(sorted, ", ");
}

std::string StateName(v1::Job::State state) {
  return v1::Job::State_Name(state);
}

}  // namespace

absl::StatusOr<OutputFormat> ParseOutputFormat(const std::string& name) {
  if (name == "table" || name.empty()) return OutputFormat::kTable;
  if (name == "json") return OutputFormat::kJson;
  return absl::InvalidArgumentError(
      absl::StrCat("--format: expected table or json, got '", name, "'"));
}

std::string ProgressLine(const v1::Job& job) {
  const v1::Job::Progress& progress = job.progress();
  const int kWidth = 24;
  const double fraction =
      progress.total_steps() > 0
          ? std::clamp(
                static_cast<double>(progress.step()) / progress.total_steps(),
                0.0, 1.0)
          : 0.0;
  const int filled = static_cast<int>(std::round(fraction * kWidth));
  std::string line = absl::StrCat("[", std::string(filled, '#'),
                                  std::string(kWidth - filled, '-'), "] ");
  absl::StrAppendFormat(&line, "%s  %d/%d steps  epoch %d",
                        StateName(job.state()), progress.step(),
                        progress.total_steps(), progress.epoch() + 1);
  const auto& losses = progress.loss_components();
  if (auto loss = losses.find("loss"); loss != losses.end()) {
    absl::StrAppendFormat(&line, "  loss %.4f", loss->second);
  }
  if (progress.tokens_per_second() > 0) {
    absl::StrAppendFormat(&line, "  %.0f tok/s", progress.tokens_per_second());
  }
  if (progress.step() > 0 && !IsFinalState(job.state())) {
    absl::StrAppend(&line, "  ETA ", FormatSeconds(progress.eta().seconds()));
  }
  return line;
}

void PrintJob(const v1::Job& job, OutputFormat format, std::ostream& out) {
  if (format == OutputFormat::kJson) {
    out << Json(job) << "\n";
    return;
  }
  const v1::JobSpec& spec = job.spec();
  auto row = [&](absl::string_view name, const std::string& value) {
    if (!value.empty()) out << absl::StrFormat("%-12s %s\n", name, value);
  };
  row("name", job.name());
  row("state",
      absl::StrCat(StateName(job.state()),
                   job.restart_count() > 0
                       ? absl::StrCat(" (restarts: ", job.restart_count(), ")")
                       : ""));
  row("method", absl::StrCat(v1::Method_Name(spec.method()), " forgetting ",
                             spec.data_dir(), "/", spec.forget_split(),
                             " from ", spec.model_dir()));
  row("workers", absl::StrCat(spec.world_size(), " x ",
                              spec.per_device_batch_size(), " examples"));
  if (job.attempt_generation() > 0) {
    row("attempt", absl::StrCat("generation ", job.attempt_generation()));
  }
  if (job.progress().total_steps() > 0) row("progress", ProgressLine(job));
  row("losses", FormatValues(job.progress().loss_components()));
  row("evaluation", FormatValues(job.evaluation_summary()));
  row("model", job.output_model_dir());
  row("error", job.error());
  for (const v1::Job::StateChange& change : job.history()) {
    row("history",
        absl::StrFormat("%s  %-10s %s: %s", FormatTime(change.time()),
                        StateName(change.state()), change.reason(),
                        change.message()));
  }
}

JobClient::JobClient(const std::string& address, absl::Duration timeout,
                     std::shared_ptr<grpc::ChannelCredentials> credentials,
                     std::string token)
    : address_(address),
      timeout_(timeout),
      token_(std::move(token)),
      stub_(v1::Jobs::NewStub(grpc::CreateChannel(
          address, credentials != nullptr
                       ? credentials
                       : grpc::InsecureChannelCredentials()))) {}

void JobClient::AddToken(grpc::ClientContext& context) const {
  if (!token_.empty()) {
    context.AddMetadata("authorization", absl::StrCat("Bearer ", token_));
  }
}

std::unique_ptr<grpc::ClientContext> JobClient::UnaryContext() const {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(absl::ToChronoTime(absl::Now() + timeout_));
  AddToken(*context);
  return context;
}

absl::StatusOr<v1::Job> JobClient::Submit(const v1::JobSpec& spec,
                                          const std::string& request_id) {
  v1::CreateJobRequest request;
  *request.mutable_spec() = spec;
  request.set_request_id(request_id);
  v1::Job job;
  RETURN_IF_ERROR(FromGrpc(
      stub_->CreateJob(UnaryContext().get(), request, &job), address_));
  return job;
}

absl::StatusOr<v1::Job> JobClient::Get(const std::string& name) {
  v1::GetJobRequest request;
  request.set_name(name);
  v1::Job job;
  RETURN_IF_ERROR(
      FromGrpc(stub_->GetJob(UnaryContext().get(), request, &job), address_));
  return job;
}

absl::Status JobClient::List(v1::Job::State state, int page_size,
                             OutputFormat format, std::ostream& out) {
  v1::ListJobsRequest request;
  request.set_state(state);
  request.set_page_size(page_size);
  if (format == OutputFormat::kTable) {
    out << absl::StrFormat("%-10s %-11s %-8s %-14s %-9s %s\n", "NAME", "STATE",
                           "METHOD", "FORGET", "STEP", "CREATED");
  }
  do {
    v1::ListJobsResponse response;
    RETURN_IF_ERROR(FromGrpc(
        stub_->ListJobs(UnaryContext().get(), request, &response), address_));
    for (const v1::Job& job : response.jobs()) {
      if (format == OutputFormat::kJson) {
        out << Json(job) << "\n";
        continue;
      }
      out << absl::StrFormat("%-10s %-11s %-8s %-14s %-9s %s\n", job.name(),
                             StateName(job.state()),
                             v1::Method_Name(job.spec().method()),
                             job.spec().forget_split(),
                             absl::StrCat(job.progress().step(), "/",
                                          job.progress().total_steps()),
                             FormatTime(job.create_time()));
    }
    request.set_page_token(response.next_page_token());
  } while (!request.page_token().empty());
  return absl::OkStatus();
}

absl::StatusOr<v1::Job> JobClient::Cancel(const std::string& name) {
  v1::CancelJobRequest request;
  request.set_name(name);
  v1::Job job;
  RETURN_IF_ERROR(FromGrpc(
      stub_->CancelJob(UnaryContext().get(), request, &job), address_));
  return job;
}

absl::Status JobClient::Delete(const std::string& name) {
  v1::DeleteJobRequest request;
  request.set_name(name);
  google::protobuf::Empty empty;
  return FromGrpc(stub_->DeleteJob(UnaryContext().get(), request, &empty),
                  address_);
}

absl::StatusOr<v1::Job> JobClient::Watch(const std::string& name,
                                         OutputFormat format, std::ostream& out,
                                         bool live) {
  grpc::ClientContext context;
  AddToken(context);
  v1::WatchJobRequest request;
  request.set_name(name);
  std::unique_ptr<grpc::ClientReader<v1::Job>> reader =
      stub_->WatchJob(&context, request);
  v1::Job job;
  std::optional<v1::Job> last;
  int last_state = -1;
  int64_t last_printed_step = -1;
  while (reader->Read(&job)) {
    if (format == OutputFormat::kJson) {
      out << Json(job) << std::endl;
    } else if (live) {
      out << "\r\033[K" << ProgressLine(job) << std::flush;
    } else {
      // One line per state change and per tenth of the run.
      const int64_t total = std::max<int64_t>(1, job.progress().total_steps());
      const int64_t step = job.progress().step();
      if (job.state() != last_state ||
          step * 10 / total != last_printed_step * 10 / total) {
        out << ProgressLine(job) << std::endl;
        last_state = job.state();
        last_printed_step = step;
      }
    }
    last = job;
  }
  RETURN_IF_ERROR(FromGrpc(reader->Finish(), address_));
  if (!last.has_value()) {
    return absl::UnavailableError(absl::StrCat("no update for ", name));
  }
  if (format == OutputFormat::kTable) {
    if (live) out << "\n";
    PrintJob(*last, format, out);
  }
  return *last;
}

absl::Status JobClient::Logs(const std::string& name, bool follow,
                             OutputFormat format, std::ostream& out) {
  grpc::ClientContext context;
  AddToken(context);
  v1::StreamJobLogsRequest request;
  request.set_name(name);
  request.set_follow(follow);
  std::unique_ptr<grpc::ClientReader<v1::LogEntry>> reader =
      stub_->StreamJobLogs(&context, request);
  v1::LogEntry entry;
  while (reader->Read(&entry)) {
    if (format == OutputFormat::kJson) {
      out << Json(entry) << std::endl;
    } else {
      out << FormatTime(entry.time()) << "  "
          << absl::StrFormat("%-11s", entry.source()) << " " << entry.message()
          << std::endl;
    }
  }
  return FromGrpc(reader->Finish(), address_);
}

}  // namespace lethe
