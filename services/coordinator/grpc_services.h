// The coordinator's gRPC services: adapters from lethe.v1.Jobs and
// lethe.v1.WorkerRegistry onto Coordinator's methods (statuses map one to
// one onto gRPC codes). Every Jobs call is counted, and unary ones timed,
// in the metrics.
//
// Jobs API security (see libs/auth/token_auth.h):
// - With a TokenTable every call must carry "authorization: Bearer
//   <token>" metadata: UNAUTHENTICATED without it or with an unknown token,
//   PERMISSION_DENIED when the caller's role may not make the call (viewers
//   only read). Without one, every caller acts as an admin of tenant "" (no
//   authentication; the coordinator's flags decide when that is allowed).
// - A job belongs to the tenant of the principal that created it; callers
//   other than admins see, watch, cancel and delete their own tenant's jobs
//   only, and another tenant's job answers NOT_FOUND exactly as a missing
//   one does. request_id idempotency is per tenant.
// - With a TenantPathPolicy, CreateJob refuses paths outside the allowed
//   roots of the caller's tenant (its own from the tokens file, else the
//   global ones): PERMISSION_DENIED naming the field and that tenant's
//   roots, saying nothing of whether the path exists or of other tenants'
//   roots.
// - Limits: request_id at most kMaxRequestIdBytes bytes of no control
//   characters (INVALID_ARGUMENT); at most max_streams_per_client
//   concurrent WatchJob and StreamJobLogs streams per client (the
//   principal, or without tokens the peer's IP address); more are
//   RESOURCE_EXHAUSTED.
// The worker registry, with require_client_certificate, refuses every call
// that did not come with a client certificate verified against the
// server's client CA (UNAUTHENTICATED). Progress reports are bounded
// before the coordinator sees them (BoundProgressReport); a report that
// lost anything is logged as a warning on the coordinator too.
//
//   JobsGrpcService jobs(coordinator, &metrics, {.tokens = &tokens});
//   WorkerRegistryGrpcService workers(coordinator,
//                                     /*require_client_certificate=*/true);
//   GrpcServer::Start(address, {&jobs, &workers}, server_options);
#ifndef LETHE_SERVICES_COORDINATOR_GRPC_SERVICES_H_
#define LETHE_SERVICES_COORDINATOR_GRPC_SERVICES_H_

#include <map>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "lethe/v1/jobs_service.grpc.pb.h"
#include "lethe/v1/worker_service.grpc.pb.h"
#include "libs/auth/path_policy.h"
#include "libs/auth/token_auth.h"
#include "libs/eval/tofu_summary.h"
#include "services/coordinator/coordinator.h"
#include "services/coordinator/coordinator_metrics.h"

namespace lethe {

// The only evaluation keys a progress report may carry: those of the
// evaluator's summary (libs/eval/tofu_summary.h).
inline constexpr const auto& kEvaluationSummaryKeys = kTofuSummaryKeys;
bool IsEvaluationSummaryKey(absl::string_view key);

// What a rank's progress report may bring, at most: evaluation summary
// keys from kEvaluationSummaryKeys only; kMaxLossTerms loss terms named
// with 1-64 of [A-Za-z0-9_.:-] (both become metric labels);
// kMaxReportedLogLines log lines (each line's length is the job store's
// limit). Anything else is dropped, not refused (the report's progress
// still counts), and a log line appended to the report says how many of
// each were dropped and, for evaluation keys, which (up to 8, cut to 64
// bytes each, as the job's log is readable by the job's tenant).
// Returns how many entries were dropped in all.
inline constexpr int kMaxLossTerms = 32;
inline constexpr int kMaxReportedLogLines = 1000;
int BoundProgressReport(v1::ReportProgressRequest& report);

struct JobsApiOptions {
  // Not owned; null: no authentication.
  const TokenTable* tokens = nullptr;
  // Not owned; null: any path. Checked, for the caller's tenant, at
  // CreateJob before the spec's own validation looks at the files
  // (path_policy.h).
  const TenantPathPolicy* paths = nullptr;
  int max_streams_per_client = 16;
};

class JobsGrpcService final : public v1::Jobs::Service {
 public:
  static constexpr size_t kMaxRequestIdBytes = 128;

  // `metrics` and `options.tokens` may be null; what they point to must
  // outlive the service.
  JobsGrpcService(Coordinator& coordinator, CoordinatorMetrics* metrics,
                  JobsApiOptions options = {})
      : coordinator_(coordinator), metrics_(metrics), options_(options) {}

  grpc::Status CreateJob(grpc::ServerContext* context,
                         const v1::CreateJobRequest* request,
                         v1::Job* response) override;
  grpc::Status GetJob(grpc::ServerContext* context,
                      const v1::GetJobRequest* request,
                      v1::Job* response) override;
  grpc::Status ListJobs(grpc::ServerContext* context,
                        const v1::ListJobsRequest* request,
                        v1::ListJobsResponse* response) override;
  grpc::Status CancelJob(grpc::ServerContext* context,
                         const v1::CancelJobRequest* request,
                         v1::Job* response) override;
  grpc::Status DeleteJob(grpc::ServerContext* context,
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

  struct Caller {
    Principal principal;
    bool all_tenants = false;  // Admins, and everyone without tokens.
  };
  // Who calls, if allowed to make a call of `access`.
  absl::StatusOr<Caller> Authenticate(const grpc::ServerContext& context,
                                      Access access, absl::string_view method);
  // NOT_FOUND (as for a missing job) unless `caller` may see job `name`.
  absl::Status CheckVisible(const Caller& caller, const std::string& name);
  // Takes one of the client's stream slots (RESOURCE_EXHAUSTED when none is
  // free); ReleaseStream gives it back.
  absl::Status AcquireStream(const std::string& client);
  void ReleaseStream(const std::string& client);
  // The key streams are counted by.
  std::string ClientKey(const grpc::ServerContext& context,
                        const Caller& caller) const;

  Coordinator& coordinator_;
  CoordinatorMetrics* metrics_;
  const JobsApiOptions options_;
  absl::Mutex streams_mu_;
  std::map<std::string, int> open_streams_ ABSL_GUARDED_BY(streams_mu_);
};

class WorkerRegistryGrpcService final : public v1::WorkerRegistry::Service {
 public:
  explicit WorkerRegistryGrpcService(Coordinator& coordinator,
                                     bool require_client_certificate = false)
      : coordinator_(coordinator),
        require_client_certificate_(require_client_certificate) {}

  grpc::Status RegisterWorker(grpc::ServerContext* context,
                              const v1::RegisterWorkerRequest* request,
                              v1::RegisterWorkerResponse* response) override;
  grpc::Status Heartbeat(grpc::ServerContext* context,
                         const v1::HeartbeatRequest* request,
                         v1::HeartbeatResponse* response) override;
  grpc::Status ReportProgress(grpc::ServerContext* context,
                              const v1::ReportProgressRequest* request,
                              v1::ReportProgressResponse* response) override;

 private:
  // UNAUTHENTICATED when a client certificate is required and missing.
  grpc::Status CheckPeer(const grpc::ServerContext& context) const;

  Coordinator& coordinator_;
  const bool require_client_certificate_;
};

}  // namespace lethe

#endif  // LETHE_SERVICES_COORDINATOR_GRPC_SERVICES_H_
