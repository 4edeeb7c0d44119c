// lethe-coordinator: the daemon that takes forget requests over gRPC.
//
// Serves gRPC (health checking and reflection) on --listen and Prometheus
// metrics on --metrics_address; both accept port 0. Once both are bound it
// prints one line with their addresses and, with --ready_file, writes them
// as JSON to that file (atomically), so scripts and tests can find a
// coordinator started on free ports. SIGINT or SIGTERM shut it down.
#include <signal.h>

#include <cstring>
#include <iostream>
#include <memory>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "libs/files/file_io.h"
#include "libs/metrics/build_info.h"
#include "libs/metrics/metrics_endpoint.h"
#include "libs/rpc/grpc_server.h"
#include "libs/status/status_macros.h"
#include "nlohmann/json.hpp"

ABSL_FLAG(std::string, listen, "127.0.0.1:7070",
          "host:port for the gRPC API (port 0 picks a free port)");
ABSL_FLAG(std::string, metrics_address, "127.0.0.1:9464",
          "host:port for Prometheus' /metrics (port 0 picks a free port)");
ABSL_FLAG(std::string, ready_file, "",
          "if set, write {\"grpc_address\", \"metrics_url\"} here as JSON "
          "once serving");

namespace lethe {
namespace {

absl::Status Run() {
  // Handle shutdown signals synchronously in this thread; every thread
  // started below inherits the blocked mask.
  sigset_t shutdown_signals;
  sigemptyset(&shutdown_signals);
  sigaddset(&shutdown_signals, SIGINT);
  sigaddset(&shutdown_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &shutdown_signals, nullptr);

  auto registry = std::make_shared<prometheus::Registry>();
  RegisterBuildInfo(*registry, "coordinator");
  ASSIGN_OR_RETURN(
      std::unique_ptr<MetricsEndpoint> metrics,
      MetricsEndpoint::Start(absl::GetFlag(FLAGS_metrics_address), registry));
  ASSIGN_OR_RETURN(std::unique_ptr<GrpcServer> server,
                   GrpcServer::Start(absl::GetFlag(FLAGS_listen), {}));

  std::cout << "lethe-coordinator " << kLetheVersion << " serving gRPC on "
            << server->address() << ", metrics at " << metrics->url()
            << std::endl;
  const std::string ready_file = absl::GetFlag(FLAGS_ready_file);
  if (!ready_file.empty()) {
    const nlohmann::json ready = {{"grpc_address", server->address()},
                                  {"metrics_url", metrics->url()}};
    RETURN_IF_ERROR(WriteFileAtomically(ready_file, ready.dump() + "\n"));
  }

  int received = 0;
  sigwait(&shutdown_signals, &received);
  std::cout << "lethe-coordinator: received " << strsignal(received)
            << ", shutting down" << std::endl;
  server->SetServing("", false);
  server->Shutdown(absl::Seconds(5));
  server->Wait();
  return absl::OkStatus();
}

}  // namespace
}  // namespace lethe

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Lethe's coordinator: takes forget requests over gRPC.\n"
      "Usage: lethe-coordinator [--listen=HOST:PORT] "
      "[--metrics_address=HOST:PORT] [--ready_file=PATH]");
  absl::ParseCommandLine(argc, argv);
  const absl::Status status = lethe::Run();
  if (!status.ok()) {
    std::cerr << "lethe-coordinator: " << status << std::endl;
    return 1;
  }
  return 0;
}
