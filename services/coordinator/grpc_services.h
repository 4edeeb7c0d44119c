// The coordinator's gRPC services: thin adapters from lethe.v1.Jobs and
// lethe.v1.WorkerRegistry onto Coordinator's methods (statuses map one to
// one onto gRPC codes). Every Jobs call is counted, and unary ones timed,
// in the metrics.
//
//   JobsGrpcService jobs(coordinator, &metrics);
//   WorkerRegistryGrpcService workers(coordinator);
//   GrpcServer::Start(address, {&jobs, &workers});
#ifndef LETHE_SERVICES_COORDINATOR_GRPC_SERVICES_H_
#define LETHE_SERVICES_COORDINATOR_GRPC_SERVICES_H_

#include <optional>
#include <string>

#include "absl/time/time.h"
#include "lethe/v1/jobs_service.grpc.pb.h"
#include "lethe/v1/worker_service.grpc.pb.h"
#include "services/coordinator/coordinator.h"
#include "services/coordinator/coordinator_metrics.h"

namespace lethe {

class JobsGrpcService final : public v1::Jobs::Service {
 public:
  // `metrics` may be null; both must outlive the service.
  JobsGrpcService(Coordinator& coordinator, CoordinatorMetrics* metrics)
      : coordinator_(coordinator), metrics_(metrics) {}

  grpc::Status CreateJob(grpc::ServerContext*,
                         const v1::CreateJobRequest* request,
                         v1::Job* response) override;
  grpc::Status GetJob(grpc::ServerContext*, const v1::GetJobRequest* request,
                      v1::Job* response) override;
  grpc::Status ListJobs(grpc::ServerContext*,
                        const v1::ListJobsRequest* request,
                        v1::ListJobsResponse* response) override;
  grpc::Status CancelJob(grpc::ServerContext*,
                         const v1::CancelJobRequest* request,
                         v1::Job* response) override;
  grpc::Status DeleteJob(grpc::ServerContext*,
                         const v1::DeleteJobRequest* request,
                         google::protobuf::Empty*) override;
  grpc::Status WatchJob(grpc::ServerContext* context,
                        const v1::WatchJobRequest* request,
                        grpc::ServerWriter<v1::Job>* writer) override;
  grpc::Status StreamJobLogs(grpc::ServerContext* context,
                             const v1::StreamJobLogsRequest* request,
                             grpc::ServerWriter<v1::LogEntry>* writer) override;

 private:
  // Records the call; `start` is empty for streams (not timed).
  grpc::Status Count(const std::string& method, std::optional<absl::Time> start,
                     grpc::Status status);

  Coordinator& coordinator_;
  CoordinatorMetrics* metrics_;
};

class WorkerRegistryGrpcService final : public v1::WorkerRegistry::Service {
 public:
  explicit WorkerRegistryGrpcService(Coordinator& coordinator)
      : coordinator_(coordinator) {}

  grpc::Status RegisterWorker(grpc::ServerContext*,
                              const v1::RegisterWorkerRequest* request,
                              v1::RegisterWorkerResponse* response) override;
  grpc::Status Heartbeat(grpc::ServerContext*,
                         const v1::HeartbeatRequest* request,
                         v1::HeartbeatResponse* response) override;
  grpc::Status ReportProgress(grpc::ServerContext*,
                              const v1::ReportProgressRequest* request,
                              v1::ReportProgressResponse* response) override;

 private:
  Coordinator& coordinator_;
};

}  // namespace lethe

#endif  // LETHE_SERVICES_COORDINATOR_GRPC_SERVICES_H_
