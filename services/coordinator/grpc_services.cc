#include "services/coordinator/grpc_services.h"

#include <utility>

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

}  // namespace

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

grpc::Status JobsGrpcService::CreateJob(grpc::ServerContext*,
                                        const v1::CreateJobRequest* request,
                                        v1::Job* response) {
  const absl::Time start = absl::Now();
  return Count("CreateJob", start,
               Reply(coordinator_.CreateJob(*request), response));
}

grpc::Status JobsGrpcService::GetJob(grpc::ServerContext*,
                                     const v1::GetJobRequest* request,
                                     v1::Job* response) {
  const absl::Time start = absl::Now();
  return Count("GetJob", start,
               Reply(coordinator_.GetJob(request->name()), response));
}

grpc::Status JobsGrpcService::ListJobs(grpc::ServerContext*,
                                       const v1::ListJobsRequest* request,
                                       v1::ListJobsResponse* response) {
  const absl::Time start = absl::Now();
  return Count("ListJobs", start,
               Reply(coordinator_.ListJobs(*request), response));
}

grpc::Status JobsGrpcService::CancelJob(grpc::ServerContext*,
                                        const v1::CancelJobRequest* request,
                                        v1::Job* response) {
  const absl::Time start = absl::Now();
  return Count("CancelJob", start,
               Reply(coordinator_.CancelJob(request->name()), response));
}

grpc::Status JobsGrpcService::DeleteJob(grpc::ServerContext*,
                                        const v1::DeleteJobRequest* request,
                                        google::protobuf::Empty*) {
  const absl::Time start = absl::Now();
  return Count("DeleteJob", start,
               ToGrpc(coordinator_.DeleteJob(request->name())));
}

grpc::Status JobsGrpcService::WatchJob(grpc::ServerContext* context,
                                       const v1::WatchJobRequest* request,
                                       grpc::ServerWriter<v1::Job>* writer) {
  return Count("WatchJob", std::nullopt,
               ToGrpc(coordinator_.WatchJob(
                   request->name(),
                   [&](const v1::Job& job) { return writer->Write(job); },
                   [&] { return context->IsCancelled(); })));
}

grpc::Status JobsGrpcService::StreamJobLogs(
    grpc::ServerContext* context, const v1::StreamJobLogsRequest* request,
    grpc::ServerWriter<v1::LogEntry>* writer) {
  return Count(
      "StreamJobLogs", std::nullopt,
      ToGrpc(coordinator_.StreamJobLogs(
          request->name(), request->follow(),
          [&](const v1::LogEntry& entry) { return writer->Write(entry); },
          [&] { return context->IsCancelled(); })));
}

grpc::Status WorkerRegistryGrpcService::RegisterWorker(
    grpc::ServerContext*, const v1::RegisterWorkerRequest* request,
    v1::RegisterWorkerResponse* response) {
  return Reply(coordinator_.RegisterWorker(*request), response);
}

grpc::Status WorkerRegistryGrpcService::Heartbeat(
    grpc::ServerContext*, const v1::HeartbeatRequest* request,
    v1::HeartbeatResponse* response) {
  *response = coordinator_.Heartbeat(*request);
  return grpc::Status::OK;
}

grpc::Status WorkerRegistryGrpcService::ReportProgress(
    grpc::ServerContext*, const v1::ReportProgressRequest* request,
    v1::ReportProgressResponse* response) {
  *response = coordinator_.ReportProgress(*request);
  return grpc::Status::OK;
}

}  // namespace lethe
