// lethe-coordinator: the daemon that takes forget requests over gRPC.
//
// Serves the Jobs API and the worker registry (plus health checking and
// reflection) on --listen and Prometheus metrics on --metrics_address; both
// accept port 0. Jobs live in the SQLite file --database, so a restarted
// coordinator lists the same jobs and resumes the running ones. With
// --local_workers=N it starts N lethe-worker processes itself and replaces
// any that exit or stop answering; otherwise workers started elsewhere
// register with it. Once serving it prints one line with its addresses and,
// with --ready_file, writes them as JSON to that file (atomically), so
// scripts and tests can find a coordinator started on free ports. SIGINT or
// SIGTERM shut it down.
//
// Security (README, "Security"): --tls_cert_file/--tls_key_file make the
// gRPC port TLS-only; --tls_client_ca_file makes the worker registry accept
// only workers with a certificate from that CA (mutual TLS; the Jobs API's
// clients need none); --auth_tokens_file makes every Jobs API call carry a
// bearer token and scopes jobs to the caller's tenant. Without all three
// the coordinator serves only a loopback address, unless --insecure says
// that whoever can reach --listen may be trusted.
#include <signal.h>

#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "libs/auth/path_policy.h"
#include "libs/auth/token_auth.h"
#include "libs/files/file_io.h"
#include "libs/files/file_lock.h"
#include "libs/jobs/job_store.h"
#include "libs/logging/logging.h"
#include "libs/metrics/build_info.h"
#include "libs/metrics/metrics_endpoint.h"
#include "libs/net/host_port.h"
#include "libs/rpc/grpc_server.h"
#include "libs/status/status_macros.h"
#include "nlohmann/json.hpp"
#include "services/coordinator/coordinator.h"
#include "services/coordinator/coordinator_metrics.h"
#include "services/coordinator/grpc_services.h"
#include "services/coordinator/local_workers.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:7070",
          "host:port for the gRPC API (port 0 picks a free port)");
ABSL_FLAG(std::string, metrics_address, "127.0.0.1:9464",
          "host:port for Prometheus' /metrics (port 0 picks a free port)");
ABSL_FLAG(std::string, database, ".lethe/coordinator.sqlite",
          "the SQLite file that holds the jobs (created if missing)");
ABSL_FLAG(int, local_workers, 0,
          "start and supervise this many lethe-worker processes");
ABSL_FLAG(std::string, worker_binary, "",
          "lethe-worker for --local_workers (default: next to this binary, "
          "then ../worker/, then PATH)");
ABSL_FLAG(int, worker_threads, 0,
          "CPU threads per local worker (0: this machine's cores divided "
          "among the local workers)");
ABSL_FLAG(absl::Duration, worker_timeout, absl::Seconds(5),
          "drop a worker (and stop its attempt) after this long without a "
          "heartbeat");
ABSL_FLAG(absl::Duration, backfill_after, absl::Minutes(1),
          "a queued job that needs more workers than are registered holds "
          "back the jobs behind it for this long after it was queued; then "
          "jobs that fit start around it");
ABSL_FLAG(absl::Duration, collective_timeout, absl::Seconds(120),
          "bound on each collective of an attempt");
ABSL_FLAG(std::string, worker_targets_file, "",
          "keep the workers' /metrics addresses in this file (Prometheus "
          "file_sd format) for a Prometheus to scrape them");
ABSL_FLAG(std::string, ready_file, "",
          "if set, write {\"grpc_address\", \"metrics_url\"} here as JSON "
          "once serving");
ABSL_FLAG(std::string, tls_cert_file, "",
          "PEM certificate chain: serve gRPC over TLS only (with "
          "--tls_key_file)");
ABSL_FLAG(std::string, tls_key_file, "", "PEM private key of --tls_cert_file");
ABSL_FLAG(std::string, tls_client_ca_file, "",
          "PEM CA bundle: the worker registry accepts only workers presenting "
          "a certificate from it (mutual TLS); needs --tls_cert_file");
ABSL_FLAG(std::string, auth_tokens_file, "",
          "bearer tokens of the Jobs API, one per line: SHA-256 of the token "
          "(hex), principal, tenant, role (viewer|submitter|admin); and "
          "optional lines 'tenant NAME model_roots=DIR,... data_roots=... "
          "output_roots=...' giving a tenant its own roots within the "
          "--allowed_*_roots; without it every client is an admin");
ABSL_FLAG(int, max_streams_per_client, 16,
          "concurrent WatchJob/StreamJobLogs streams per principal (per IP "
          "address without tokens)");
ABSL_FLAG(bool, grpc_reflection, false,
          "serve gRPC server reflection (lets callers list the API)");
ABSL_FLAG(std::vector<std::string>, allowed_model_roots, {},
          "comma-separated directories; jobs' model_dir and tokenizer_path "
          "must lie under one (empty: anywhere); tenants may have narrower "
          "roots in --auth_tokens_file");
ABSL_FLAG(std::vector<std::string>, allowed_data_roots, {},
          "comma-separated directories; jobs' data_dir and "
          "evaluation.retain_logs_path must lie under one (empty: anywhere); "
          "tenants may have narrower roots in --auth_tokens_file");
ABSL_FLAG(std::vector<std::string>, allowed_output_roots, {},
          "comma-separated directories; jobs' output_dir must lie under one "
          "(empty: anywhere); tenants may have narrower roots in "
          "--auth_tokens_file");
ABSL_FLAG(bool, insecure, false,
          "allow --listen on a non-loopback address without TLS, mutual TLS "
          "and tokens: anyone who can reach the port then owns the service");

namespace lethe {
namespace {

bool IsLoopback(const std::string& host) {
  return host == "localhost" || host == "::1" || absl::StartsWith(host, "127.");
}

// Refuses to expose an unprotected API beyond this machine, and says loudly
// what is unprotected.
absl::Status CheckExposure(const std::string& listen) {
  std::string host;
  int port = 0;
  RETURN_IF_ERROR(ParseHostPort(listen, &host, &port));
  std::vector<std::string> missing;
  if (absl::GetFlag(FLAGS_tls_cert_file).empty()) {
    missing.push_back("TLS (--tls_cert_file, --tls_key_file)");
  }
  if (absl::GetFlag(FLAGS_tls_client_ca_file).empty()) {
    missing.push_back("worker certificates (--tls_client_ca_file)");
  }
  if (absl::GetFlag(FLAGS_auth_tokens_file).empty()) {
    missing.push_back("API tokens (--auth_tokens_file)");
  }
  if (missing.empty()) return absl::OkStatus();
  const std::string what = absl::StrJoin(missing, ", ");
  if (!IsLoopback(host) && !absl::GetFlag(FLAGS_insecure)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "--listen=", listen, " is not a loopback address, and this ",
        "coordinator has no ", what,
        ": anyone who reaches the port could read, create, cancel and delete ",
        "every job and register as a worker. Configure them, listen on ",
        "127.0.0.1, or pass --insecure if the network itself is trusted"));
  }
  LETHE_LOG(WARNING) << "INSECURE: no " << what << "; every client that "
                     << "reaches " << listen << " can act on every job"
                     << (absl::GetFlag(FLAGS_tls_client_ca_file).empty()
                             ? " and register as a worker"
                             : "");
  return absl::OkStatus();
}

absl::Status Run() {
  // Handle shutdown signals synchronously in this thread; every thread
  // started below inherits the blocked mask.
  sigset_t shutdown_signals;
  sigemptyset(&shutdown_signals);
  sigaddset(&shutdown_signals, SIGINT);
  sigaddset(&shutdown_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &shutdown_signals, nullptr);

  RETURN_IF_ERROR(CheckExposure(absl::GetFlag(FLAGS_listen)));
  const GrpcServerOptions server_options = {
      .tls = {.cert_file = absl::GetFlag(FLAGS_tls_cert_file),
              .key_file = absl::GetFlag(FLAGS_tls_key_file),
              .client_ca_file = absl::GetFlag(FLAGS_tls_client_ca_file)},
      .reflection = absl::GetFlag(FLAGS_grpc_reflection)};
  if (absl::GetFlag(FLAGS_local_workers) > 0 &&
      !server_options.tls.cert_file.empty()) {
    return absl::UnimplementedError(
        "--local_workers cannot be combined with --tls_cert_file yet: local "
        "workers are started without TLS flags; start lethe-worker "
        "processes with --tls_ca_file (and --tls_cert_file, --tls_key_file) "
        "instead");
  }
  std::optional<TokenTable> tokens;
  if (!absl::GetFlag(FLAGS_auth_tokens_file).empty()) {
    ASSIGN_OR_RETURN(tokens,
                     TokenTable::Load(absl::GetFlag(FLAGS_auth_tokens_file)));
    LETHE_LOG(INFO) << "Jobs API: " << tokens->size() << " token(s) from "
                    << absl::GetFlag(FLAGS_auth_tokens_file);
  }
  // The global roots, and the tenants' own from the tokens file (which
  // must lie within them).
  ASSIGN_OR_RETURN(
      const TenantPathPolicy paths,
      TenantPathPolicy::Create(
          {.model_roots = absl::GetFlag(FLAGS_allowed_model_roots),
           .data_roots = absl::GetFlag(FLAGS_allowed_data_roots),
           .output_roots = absl::GetFlag(FLAGS_allowed_output_roots)},
          tokens.has_value() ? tokens->tenant_roots()
                             : std::map<std::string, TenantRoots>()));
  if (tokens.has_value() && !tokens->tenant_roots().empty()) {
    LETHE_LOG(INFO) << "allowed roots of their own for "
                    << tokens->tenant_roots().size() << " tenant(s)";
  }
  if (absl::GetFlag(FLAGS_max_streams_per_client) < 1) {
    return absl::InvalidArgumentError("--max_streams_per_client must be >= 1");
  }

  auto registry = std::make_shared<prometheus::Registry>();
  RegisterBuildInfo(*registry, "coordinator");
  ASSIGN_OR_RETURN(
      std::unique_ptr<MetricsEndpoint> metrics,
      MetricsEndpoint::Start(absl::GetFlag(FLAGS_metrics_address), registry));
  const std::string database = absl::GetFlag(FLAGS_database);
  const std::string database_dir =
      std::filesystem::path(database).parent_path().string();
  if (!database_dir.empty()) {
    std::error_code error;
    std::filesystem::create_directories(database_dir, error);
    if (error) {
      return absl::PermissionDeniedError(
          absl::StrCat("creating ", database_dir, ": ", error.message()));
    }
  }
  // One coordinator per job store: a second would schedule the same jobs.
  ASSIGN_OR_RETURN(const std::unique_ptr<FileLock> database_lock,
                   FileLock::Acquire(database + ".lock"));
  ASSIGN_OR_RETURN(std::unique_ptr<JobStore> store, JobStore::Open(database));
  CoordinatorMetrics coordinator_metrics(*registry);
  Coordinator coordinator(
      std::move(store),
      {.worker_timeout = absl::GetFlag(FLAGS_worker_timeout),
       .collective_timeout = absl::GetFlag(FLAGS_collective_timeout),
       .backfill_after = absl::GetFlag(FLAGS_backfill_after),
       .metrics = &coordinator_metrics,
       .worker_targets_file = absl::GetFlag(FLAGS_worker_targets_file),
       .paths = paths.restricts_anything() ? &paths : nullptr});
  RETURN_IF_ERROR(coordinator.RecoverAfterRestart());
  JobsGrpcService jobs_service(
      coordinator, &coordinator_metrics,
      {.tokens = tokens.has_value() ? &*tokens : nullptr,
       .paths = paths.restricts_anything() ? &paths : nullptr,
       .max_streams_per_client = absl::GetFlag(FLAGS_max_streams_per_client)});
  WorkerRegistryGrpcService worker_service(
      coordinator,
      /*require_client_certificate=*/!server_options.tls.client_ca_file
          .empty());
  ASSIGN_OR_RETURN(
      std::unique_ptr<GrpcServer> server,
      GrpcServer::Start(absl::GetFlag(FLAGS_listen),
                        {&jobs_service, &worker_service}, server_options));
  // Workers learn the API's address from their orders, made from now on.
  coordinator.set_address(server->address());
  server->SetServing("lethe.v1.Jobs", true);
  server->SetServing("lethe.v1.WorkerRegistry", true);
  coordinator.StartScheduler();
  std::unique_ptr<LocalWorkers> local_workers;
  if (absl::GetFlag(FLAGS_local_workers) > 0) {
    ASSIGN_OR_RETURN(local_workers,
                     LocalWorkers::Start(
                         {.count = absl::GetFlag(FLAGS_local_workers),
                          .binary = absl::GetFlag(FLAGS_worker_binary),
                          .threads = absl::GetFlag(FLAGS_worker_threads),
                          .coordinator = server->address(),
                          .log_dir = database_dir.empty() ? "." : database_dir},
                         coordinator));
  }

  LETHE_LOG(INFO) << "lethe-coordinator " << kLetheVersion
                  << " serving gRPC on " << server->address()
                  << (server->tls() ? " (TLS)" : " (plaintext)")
                  << ", metrics at " << metrics->url();
  const std::string ready_file = absl::GetFlag(FLAGS_ready_file);
  if (!ready_file.empty()) {
    const nlohmann::json ready = {{"grpc_address", server->address()},
                                  {"metrics_url", metrics->url()}};
    RETURN_IF_ERROR(WriteFileAtomically(ready_file, ready.dump() + "\n"));
  }

  int received = 0;
  sigwait(&shutdown_signals, &received);
  LETHE_LOG(INFO) << "received " << strsignal(received) << ", shutting down";
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
      "[--metrics_address=HOST:PORT] [--database=FILE] [--local_workers=N] "
      "[--worker_timeout=5s] [--ready_file=PATH] [--tls_cert_file=PEM "
      "--tls_key_file=PEM [--tls_client_ca_file=PEM]] "
      "[--auth_tokens_file=FILE] [--insecure]");
  absl::ParseCommandLine(argc, argv);
  lethe::InitLogging(argv[0], "lethe-coordinator");
  const absl::Status status = lethe::Run();
  if (!status.ok()) {
    LETHE_LOG(ERROR) << status;
    return 1;
  }
  return 0;
}
