#include "services/coordinator/grpc_services.h"

#include <algorithm>
#include <iterator>
#include <utility>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "libs/logging/logging.h"
#include "libs/rpc/tls_credentials.h"
#include "libs/status/status_macros.h"

namespace lethe {
namespace {

grpc::Status ToGrpc(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()),
                      std::string(status.message()));
}

template <typename T>
grpc::Status Reply(absl::StatusOr<T> result, T* response) {
  if (!result.ok()) return ToGrpc(result.status());
  *response = *std::move(result);
  return grpc::Status::OK;
}

absl::Status CheckRequestId(const std::string& request_id) {
  if (request_id.size() > JobsGrpcService::kMaxRequestIdBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("request_id is ", request_id.size(), " bytes; at most ",
                     JobsGrpcService::kMaxRequestIdBytes, " are allowed"));
  }
  for (const char c : request_id) {
    const unsigned char byte = static_cast<unsigned char>(c);
    if (byte < 0x20 || byte == 0x7f) {
      return absl::InvalidArgumentError(
          "request_id must not contain control characters");
    }
  }
  return absl::OkStatus();
}

// 1-64 of [A-Za-z0-9_.:-].
bool IsReportName(absl::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  for (const char c : name) {
    if (!absl::ascii_isalnum(c) && c != '_' && c != '.' && c != ':' &&
        c != '-') {
      return false;
    }
  }
  return true;
}

// Drops the entries of `map` that `keep` refuses and those beyond `limit`;
// returns the names it dropped.
std::vector<std::string> BoundNames(
    google::protobuf::Map<std::string, double>& map, size_t limit,
    bool (*keep)(absl::string_view)) {
  std::vector<std::string> drop;
  size_t kept = 0;
  for (const auto& [name, value] : map) {
    if (!keep(name) || kept >= limit) {
      drop.push_back(name);
    } else {
      ++kept;
    }
  }
  for (const std::string& name : drop) map.erase(name);
  return drop;
}

// `name` for a log line: printable ASCII, at most 64 bytes.
std::string Printable(const std::string& name) {
  std::string shown;
  for (const char c : name.substr(0, 64)) {
    shown.push_back(absl::ascii_isprint(c) ? c : '?');
  }
  return name.size() > 64 ? absl::StrCat(shown, "...") : shown;
}

}  // namespace

bool IsEvaluationSummaryKey(absl::string_view key) {
  for (const char* known : kEvaluationSummaryKeys) {
    if (key == known) return true;
  }
  return false;
}

int BoundProgressReport(v1::ReportProgressRequest& report) {
  std::vector<std::string> evaluation =
      BoundNames(*report.mutable_evaluation_summary(),
                 std::size(kEvaluationSummaryKeys), &IsEvaluationSummaryKey);
  const size_t losses =
      report.has_progress()
          ? BoundNames(
                *report.mutable_progress()->mutable_loss_components(),
                kMaxLossTerms,
                [](absl::string_view name) { return IsReportName(name); })
                .size()
          : 0;
  int lines = 0;
  if (report.log_lines_size() > kMaxReportedLogLines) {
    lines = report.log_lines_size() - kMaxReportedLogLines;
    report.mutable_log_lines()->DeleteSubrange(kMaxReportedLogLines, lines);
  }
  const int dropped = static_cast<int>(evaluation.size() + losses) + lines;
  if (dropped > 0) {
    std::sort(evaluation.begin(), evaluation.end());
    std::string unknown;
    for (size_t i = 0; i < evaluation.size() && i < 8; ++i) {
      absl::StrAppend(&unknown, i == 0 ? " (" : ", ", "\"",
                      Printable(evaluation[i]), "\"");
    }
    if (!unknown.empty()) {
      absl::StrAppend(&unknown, evaluation.size() > 8 ? ", ...)" : ")");
    }
    report.add_log_lines(absl::StrCat(
        "the coordinator dropped from this report: ", evaluation.size(),
        " evaluation key(s) not of the evaluator's summary", unknown, ", ",
        losses, " loss term(s), ", lines,
        " log line(s) (bad names or over the limits)"));
  }
  return dropped;
}

grpc::Status JobsGrpcService::Count(const std::string& method,
                                    std::optional<absl::Time> start,
                                    grpc::Status status) {
  if (metrics_ != nullptr) {
    metrics_->ApiCall(
        method,
        absl::StatusCodeToString(
            static_cast<absl::StatusCode>(status.error_code())),
        start.has_value() ? absl::ToDoubleSeconds(absl::Now() - *start) : -1);
  }
  return status;
}

absl::StatusOr<JobsGrpcService::Caller> JobsGrpcService::Authenticate(
    const grpc::ServerContext& context, Access access,
    absl::string_view method) {
  if (options_.tokens == nullptr) {
    return Caller{{"anonymous", "", Role::kAdmin}, true};
  }
  std::optional<absl::string_view> header;
  const auto& metadata = context.client_metadata();
  const auto found = metadata.find("authorization");
  if (found != metadata.end()) {
    header = absl::string_view(found->second.data(), found->second.size());
  }
  ASSIGN_OR_RETURN(Principal principal,
                   options_.tokens->AuthenticateHeader(header));
  RETURN_IF_ERROR(Authorize(principal, access, method));
  const bool admin = principal.role == Role::kAdmin;
  return Caller{std::move(principal), admin};
}

absl::Status JobsGrpcService::CheckVisible(const Caller& caller,
                                           const std::string& name) {
  if (caller.all_tenants) return absl::OkStatus();
  ASSIGN_OR_RETURN(const v1::Job job, coordinator_.GetJob(name));
  if (job.tenant() != caller.principal.tenant) {
    // Word for word what a job that does not exist answers.
    return absl::NotFoundError(absl::StrCat(job.name(), " not found"));
  }
  return absl::OkStatus();
}

std::string JobsGrpcService::ClientKey(const grpc::ServerContext& context,
                                       const Caller& caller) const {
  if (options_.tokens != nullptr) {
    return absl::StrCat("principal:", caller.principal.name);
  }
  // "ipv4:127.0.0.1:40000" -> "ipv4:127.0.0.1": one client per address.
  std::string peer = context.peer();
  const size_t port = peer.rfind(':');
  if (port != std::string::npos && port > peer.find(':')) peer.resize(port);
  return absl::StrCat("peer:", peer);
}

absl::Status JobsGrpcService::AcquireStream(const std::string& client) {
  absl::MutexLock lock(&streams_mu_);
  int& open = open_streams_[client];
  if (open >= options_.max_streams_per_client) {
    if (open == 0) open_streams_.erase(client);
    return absl::ResourceExhaustedError(absl::StrCat(
        "this client already has ", options_.max_streams_per_client,
        " WatchJob/StreamJobLogs streams open, the most allowed; close one "
        "first"));
  }
  ++open;
  return absl::OkStatus();
}

void JobsGrpcService::ReleaseStream(const std::string& client) {
  absl::MutexLock lock(&streams_mu_);
  const auto found = open_streams_.find(client);
  if (found != open_streams_.end() && --found->second <= 0) {
    open_streams_.erase(found);
  }
}

grpc::Status JobsGrpcService::CreateJob(grpc::ServerContext* context,
                                        const v1::CreateJobRequest* request,
                                        v1::Job* response) {
  const absl::Time start = absl::Now();
  const auto create = [&]() -> absl::StatusOr<v1::Job> {
    ASSIGN_OR_RETURN(const Caller caller,
                     Authenticate(*context, Access::kWrite, "CreateJob"));
    RETURN_IF_ERROR(CheckRequestId(request->request_id()));
    if (options_.paths != nullptr) {
      RETURN_IF_ERROR(
          options_.paths->Check(caller.principal.tenant, request->spec()));
    }
    return coordinator_.CreateJob(*request, caller.principal.tenant);
  };
  return Count("CreateJob", start, Reply(create(), response));
}

grpc::Status JobsGrpcService::GetJob(grpc::ServerContext* context,
                                     const v1::GetJobRequest* request,
                                     v1::Job* response) {
  const absl::Time start = absl::Now();
  const auto get = [&]() -> absl::StatusOr<v1::Job> {
    ASSIGN_OR_RETURN(const Caller caller,
                     Authenticate(*context, Access::kRead, "GetJob"));
    ASSIGN_OR_RETURN(v1::Job job, coordinator_.GetJob(request->name()));
    if (!caller.all_tenants && job.tenant() != caller.principal.tenant) {
      return absl::NotFoundError(absl::StrCat(job.name(), " not found"));
    }
    return job;
  };
  return Count("GetJob", start, Reply(get(), response));
}

grpc::Status JobsGrpcService::ListJobs(grpc::ServerContext* context,
                                       const v1::ListJobsRequest* request,
                                       v1::ListJobsResponse* response) {
  const absl::Time start = absl::Now();
  const auto list = [&]() -> absl::StatusOr<v1::ListJobsResponse> {
    ASSIGN_OR_RETURN(const Caller caller,
                     Authenticate(*context, Access::kRead, "ListJobs"));
    std::optional<std::string> tenant;
    if (!caller.all_tenants) tenant = caller.principal.tenant;
    return coordinator_.ListJobs(*request, tenant);
  };
  return Count("ListJobs", start, Reply(list(), response));
}

grpc::Status JobsGrpcService::CancelJob(grpc::ServerContext* context,
                                        const v1::CancelJobRequest* request,
                                        v1::Job* response) {
  const absl::Time start = absl::Now();
  const auto cancel = [&]() -> absl::StatusOr<v1::Job> {
    ASSIGN_OR_RETURN(const Caller caller,
                     Authenticate(*context, Access::kWrite, "CancelJob"));
    RETURN_IF_ERROR(CheckVisible(caller, request->name()));
    return coordinator_.CancelJob(request->name());
  };
  return Count("CancelJob", start, Reply(cancel(), response));
}

grpc::Status JobsGrpcService::DeleteJob(grpc::ServerContext* context,
                                        const v1::DeleteJobRequest* request,
                                        google::protobuf::Empty*) {
  const absl::Time start = absl::Now();
  const auto remove = [&]() -> absl::Status {
    ASSIGN_OR_RETURN(const Caller caller,
                     Authenticate(*context, Access::kWrite, "DeleteJob"));
    RETURN_IF_ERROR(CheckVisible(caller, request->name()));
    return coordinator_.DeleteJob(request->name());
  };
  return Count("DeleteJob", start, ToGrpc(remove()));
}

grpc::Status JobsGrpcService::WatchJob(grpc::ServerContext* context,
                                       const v1::WatchJobRequest* request,
                                       grpc::ServerWriter<v1::Job>* writer) {
  const auto watch = [&]() -> absl::Status {
    ASSIGN_OR_RETURN(const Caller caller,
                     Authenticate(*context, Access::kRead, "WatchJob"));
    RETURN_IF_ERROR(CheckVisible(caller, request->name()));
    const std::string client = ClientKey(*context, caller);
    RETURN_IF_ERROR(AcquireStream(client));
    const absl::Cleanup release = [&] { ReleaseStream(client); };
    return coordinator_.WatchJob(
        request->name(), [&](const v1::Job& job) { return writer->Write(job); },
        [&] { return context->IsCancelled(); });
  };
  return Count("WatchJob", std::nullopt, ToGrpc(watch()));
}

grpc::Status JobsGrpcService::StreamJobLogs(
    grpc::ServerContext* context, const v1::StreamJobLogsRequest* request,
    grpc::ServerWriter<v1::LogEntry>* writer) {
  const auto stream = [&]() -> absl::Status {
    ASSIGN_OR_RETURN(const Caller caller,
                     Authenticate(*context, Access::kRead, "StreamJobLogs"));
    RETURN_IF_ERROR(CheckVisible(caller, request->name()));
    const std::string client = ClientKey(*context, caller);
    RETURN_IF_ERROR(AcquireStream(client));
    const absl::Cleanup release = [&] { ReleaseStream(client); };
    return coordinator_.StreamJobLogs(
        request->name(), request->follow(),
        [&](const v1::LogEntry& entry) { return writer->Write(entry); },
        [&] { return context->IsCancelled(); });
  };
  return Count("StreamJobLogs", std::nullopt, ToGrpc(stream()));
}

grpc::Status WorkerRegistryGrpcService::CheckPeer(
    const grpc::ServerContext& context) const {
  if (!require_client_certificate_ || HasVerifiedClientCertificate(context)) {
    return grpc::Status::OK;
  }
  return grpc::Status(
      grpc::StatusCode::UNAUTHENTICATED,
      "the worker registry requires a client certificate from the "
      "coordinator's client CA (lethe-worker --tls_cert_file, "
      "--tls_key_file)");
}

grpc::Status WorkerRegistryGrpcService::RegisterWorker(
    grpc::ServerContext* context, const v1::RegisterWorkerRequest* request,
    v1::RegisterWorkerResponse* response) {
  if (grpc::Status peer = CheckPeer(*context); !peer.ok()) return peer;
  return Reply(coordinator_.RegisterWorker(*request), response);
}

grpc::Status WorkerRegistryGrpcService::Heartbeat(
    grpc::ServerContext* context, const v1::HeartbeatRequest* request,
    v1::HeartbeatResponse* response) {
  if (grpc::Status peer = CheckPeer(*context); !peer.ok()) return peer;
  *response = coordinator_.Heartbeat(*request);
  return grpc::Status::OK;
}

grpc::Status WorkerRegistryGrpcService::ReportProgress(
    grpc::ServerContext* context, const v1::ReportProgressRequest* request,
    v1::ReportProgressResponse* response) {
  if (grpc::Status peer = CheckPeer(*context); !peer.ok()) return peer;
  v1::ReportProgressRequest bounded = *request;
  if (const int dropped = BoundProgressReport(bounded); dropped > 0) {
    LETHE_LOG(WARNING) << "dropped " << dropped
                       << " entries from a progress report of attempt "
                       << request->attempt_id() << ": "
                       << bounded.log_lines(bounded.log_lines_size() - 1);
  }
  return Reply(coordinator_.ReportProgress(bounded), response);
}

}  // namespace lethe
