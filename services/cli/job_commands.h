// The job commands of the `lethe` CLI: talk to a coordinator's Jobs API.
//
//   JobClient client("127.0.0.1:7070", absl::Seconds(5));
//   ASSIGN_OR_RETURN(lethe::v1::Job job, client.Submit(spec, request_id));
//   RETURN_IF_ERROR(client.Watch(job.name(), OutputFormat::kTable, std::cout));
//
// Tables for people by default; OutputFormat::kJson prints the API's
// messages as JSON (one object per line when streaming) for scripts.
// Channel credentials (TLS: libs/rpc/tls_credentials.h) and a bearer token
// are optional; the token goes with every call as "authorization: Bearer
// <token>" metadata.
#ifndef LETHE_SERVICES_CLI_JOB_COMMANDS_H_
#define LETHE_SERVICES_CLI_JOB_COMMANDS_H_

#include <grpcpp/security/credentials.h>

#include <memory>
#include <ostream>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "lethe/v1/jobs_service.grpc.pb.h"

namespace lethe {

enum class OutputFormat { kTable, kJson };

// "table" or "json".
absl::StatusOr<OutputFormat> ParseOutputFormat(const std::string& name);

class JobClient {
 public:
  // `timeout` bounds each unary call; streams run until the job ends.
  // Null `credentials`: plaintext. Empty `token`: none sent.
  JobClient(const std::string& address, absl::Duration timeout,
            std::shared_ptr<grpc::ChannelCredentials> credentials = nullptr,
            std::string token = "");

  absl::StatusOr<v1::Job> Submit(const v1::JobSpec& spec,
                                 const std::string& request_id);
  absl::StatusOr<v1::Job> Get(const std::string& name);
  absl::Status List(v1::Job::State state, int page_size, OutputFormat format,
                    std::ostream& out);
  absl::StatusOr<v1::Job> Cancel(const std::string& name);
  absl::Status Delete(const std::string& name);
  // Follows the job to its end: a live progress line on a terminal (one
  // line per change otherwise), then the result. The returned job is the
  // last one seen.
  absl::StatusOr<v1::Job> Watch(const std::string& name, OutputFormat format,
                                std::ostream& out, bool live);
  absl::Status Logs(const std::string& name, bool follow, OutputFormat format,
                    std::ostream& out);

 private:
  std::unique_ptr<grpc::ClientContext> UnaryContext() const;
  // Adds the token, if any, to a call.
  void AddToken(grpc::ClientContext& context) const;

  std::string address_;
  absl::Duration timeout_;
  std::string token_;
  std::unique_ptr<v1::Jobs::Stub> stub_;
};

// A job as people read it: state, progress, losses, evaluation, history.
void PrintJob(const v1::Job& job, OutputFormat format, std::ostream& out);

// "[#####-----] 12/40 steps  epoch 1  loss 0.531  ETA 0:12".
std::string ProgressLine(const v1::Job& job);

}  // namespace lethe

#endif  // LETHE_SERVICES_CLI_JOB_COMMANDS_H_
