// lethe-worker: runs the ranks of unlearning jobs for a coordinator.
//
//   lethe-worker --coordinator=HOST:PORT [--host=ADDRESS] [--device=cpu|cuda:N]
//                [--threads=N]
//
// Registers with the coordinator, then heartbeats every interval the
// coordinator sets. When told to run an attempt it starts a child process
// (this binary with --run_attempt) so that an attempt that must stop can be
// killed at once, even inside a collective; the child dies with its worker.
// A worker the coordinator no longer knows (it restarted, or dropped the
// worker after missed heartbeats) stops its attempt and registers again.
// --tls_ca_file makes its connection to the coordinator TLS, and
// --tls_cert_file/--tls_key_file present the worker's certificate (mutual
// TLS); the attempt's rank 0, which reports progress, uses the same.
#include <arpa/inet.h>
#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "lethe/v1/worker_service.grpc.pb.h"
#include "libs/auth/path_policy.h"
#include "libs/files/file_io.h"
#include "libs/jobs/compute_device.h"
#include "libs/logging/logging.h"
#include "libs/metrics/build_info.h"
#include "libs/metrics/metric_catalog.h"
#include "libs/metrics/metrics_endpoint.h"
#include "libs/rpc/tls_credentials.h"
#include "libs/status/status_macros.h"
#include "libs/subprocess/subprocess.h"
#include "prometheus/counter.h"
#include "prometheus/gauge.h"
#include "prometheus/registry.h"
#include "services/worker/unlearning_attempt.h"

ABSL_FLAG(std::string, coordinator, "127.0.0.1:7070",
          "the coordinator's gRPC address HOST:PORT");
ABSL_FLAG(std::string, host, "127.0.0.1",
          "address other workers reach this one's collectives on");
ABSL_FLAG(std::string, metrics_address, "",
          "host:port for Prometheus' /metrics (port 0 picks a free port; "
          "empty: no metrics)");
ABSL_FLAG(int, store_port, 0,
          "port on --host where this worker hosts the rendezvous store of the "
          "attempts it runs as rank 0 (0: a free port picked at start)");
ABSL_FLAG(std::string, device, "cpu",
          "what attempts compute on: cpu, cuda or cuda:N (CUDA needs a worker "
          "built against a CUDA LibTorch); the coordinator gives CUDA jobs to "
          "CUDA workers only");
ABSL_FLAG(int, threads, 0,
          "CPU threads for an attempt (0: all cores of this machine)");
ABSL_FLAG(double, memory_gib, 0,
          "memory an attempt may use, told to the coordinator for its memory "
          "check (0: this machine's RAM or cgroup limit for cpu; unknown for "
          "cuda)");
ABSL_FLAG(std::string, tls_ca_file, "",
          "PEM CA bundle: reach the coordinator over TLS, trusting this CA "
          "for its certificate (unset: plaintext)");
ABSL_FLAG(std::string, tls_cert_file, "",
          "PEM certificate presented to the coordinator (mutual TLS: needed "
          "when it runs with --tls_client_ca_file); needs --tls_ca_file");
ABSL_FLAG(std::string, tls_key_file, "", "PEM private key of --tls_cert_file");
ABSL_FLAG(std::vector<std::string>, allowed_model_roots, {},
          "comma-separated directories; refuse attempts whose model_dir or "
          "tokenizer_path lie elsewhere (as the coordinator's flag; empty: "
          "anywhere); the roots each attempt brings for its tenant are "
          "checked too, and can only narrow these");
ABSL_FLAG(std::vector<std::string>, allowed_data_roots, {},
          "comma-separated directories; refuse attempts whose data_dir or "
          "retain logs lie elsewhere (empty: anywhere)");
ABSL_FLAG(std::vector<std::string>, allowed_output_roots, {},
          "comma-separated directories; refuse attempts whose output_dir lies "
          "elsewhere (empty: anywhere)");
ABSL_FLAG(std::string, run_attempt, "",
          "internal: run the attempt in this file (a serialized "
          "lethe.v1.Attempt) and exit");
ABSL_FLAG(int, parent_pid, 0,
          "exit when the process with this pid (the coordinator that "
          "started this worker, or the worker that started --run_attempt) "
          "exits");

namespace lethe {
namespace {

using lethe::v1::Attempt;
using lethe::v1::AttemptStatus;
using lethe::v1::WorkerRegistry;

absl::Status FromGrpc(const grpc::Status& status, absl::string_view what) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      absl::StrCat(what, ": ", status.error_message()));
}

// Plaintext, TLS or mutual TLS to the coordinator, from the --tls_ flags.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>>
CoordinatorCredentials() {
  return lethe::ChannelCredentials(
      {.ca_file = absl::GetFlag(FLAGS_tls_ca_file),
       .cert_file = absl::GetFlag(FLAGS_tls_cert_file),
       .key_file = absl::GetFlag(FLAGS_tls_key_file)});
}

std::unique_ptr<grpc::ClientContext> ContextWithDeadline(absl::Duration d) {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(absl::ToChronoTime(absl::Now() + d));
  return context;
}

// --- The attempt, in the child process --------------------------------------

// With --parent_pid, dies with that parent; false if it is already gone.
bool TieLifetimeToParent() {
  const int parent = absl::GetFlag(FLAGS_parent_pid);
  if (parent == 0) return true;
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  return getppid() == parent;
}

absl::Status RunAttemptFile(const std::string& path) {
  if (!TieLifetimeToParent()) {
    return absl::AbortedError("the worker that started this attempt is gone");
  }
  ASSIGN_OR_RETURN(std::string bytes, ReadFileToString(path));
  Attempt attempt;
  if (!attempt.ParseFromString(bytes)) {
    return absl::DataLossError(absl::StrCat(path, ": not a lethe.v1.Attempt"));
  }
  attempt.set_local_address(absl::GetFlag(FLAGS_host));
  attempt.set_device(absl::GetFlag(FLAGS_device));
  if (const char* secret = std::getenv("LETHE_REPORT_SECRET")) {
    attempt.set_report_secret(secret);
    unsetenv("LETHE_REPORT_SECRET");  // Not for this process's children.
  }
  LETHE_LOG(INFO) << "attempt " << attempt.attempt_id() << " of "
                  << attempt.job() << ": rank " << attempt.rank() << " of "
                  << attempt.world_size();
  std::unique_ptr<WorkerRegistry::Stub> stub;
  if (attempt.rank() == 0) {
    ASSIGN_OR_RETURN(const auto credentials, CoordinatorCredentials());
    // Over TLS the worker's own --coordinator address, which the
    // coordinator's certificate names (its listen address may not).
    stub = WorkerRegistry::NewStub(
        grpc::CreateChannel(absl::GetFlag(FLAGS_tls_ca_file).empty()
                                ? attempt.coordinator()
                                : absl::GetFlag(FLAGS_coordinator),
                            credentials));
  }
  return RunUnlearningAttempt(
      attempt,
      [&](const lethe::v1::ReportProgressRequest& request)
          -> absl::StatusOr<bool> {
        if (!stub) return false;
        lethe::v1::ReportProgressResponse response;
        auto context = ContextWithDeadline(absl::Seconds(10));
        lethe::v1::ReportProgressRequest authorised = request;
        authorised.set_report_secret(attempt.report_secret());
        RETURN_IF_ERROR(
            FromGrpc(stub->ReportProgress(context.get(), authorised, &response),
                     "reporting progress to the coordinator"));
        return response.stop();
      });
}

// --- The worker daemon
// --------------------------------------------------------

// A port on `host` that nothing listens on now: bound, read back, released.
absl::StatusOr<int> PickFreePort(const std::string& host) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return absl::InternalError("socket() failed");
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = 0;
  if (inet_pton(AF_INET, host.c_str(), &address.sin_addr) != 1) {
    address.sin_addr.s_addr = htonl(INADDR_ANY);
  }
  socklen_t length = sizeof(address);
  const bool ok =
      bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0;
  close(fd);
  if (!ok) {
    return absl::UnavailableError(
        absl::StrCat("cannot find a free port on ", host));
  }
  return static_cast<int>(ntohs(address.sin_port));
}

// The worker's own metrics (see libs/metrics/metric_catalog.cc).
class WorkerMetrics {
 public:
  explicit WorkerMetrics(prometheus::Registry& registry)
      : heartbeats_(Build<prometheus::Counter>(prometheus::BuildCounter(),
                                               "lethe_worker_heartbeats_total",
                                               registry)),
        attempts_(Build<prometheus::Counter>(prometheus::BuildCounter(),
                                             "lethe_worker_attempts_total",
                                             registry)),
        busy_(Build<prometheus::Gauge>(prometheus::BuildGauge(),
                                       "lethe_worker_busy", registry)
                  .Add({})) {}

  void Heartbeat(bool ok) {
    heartbeats_.Add({{"result", ok ? "ok" : "error"}}).Increment();
  }
  void AttemptEnded(const std::string& result) {
    attempts_.Add({{"result", result}}).Increment();
  }
  void SetBusy(bool busy) { busy_.Set(busy ? 1 : 0); }

 private:
  template <typename T, typename Builder>
  static prometheus::Family<T>& Build(Builder builder, const std::string& name,
                                      prometheus::Registry& registry) {
    const MetricInfo& info = CatalogMetric(name);
    return builder.Name(info.name).Help(info.help).Register(registry);
  }

  prometheus::Family<prometheus::Counter>& heartbeats_;
  prometheus::Family<prometheus::Counter>& attempts_;
  prometheus::Gauge& busy_;
};

// The attempt this worker runs (or last ran) in a child process.
struct RunningAttempt {
  int64_t attempt_id = 0;
  std::string error_path;
  std::optional<Subprocess> child;  // Empty when it could not start.
  std::optional<AttemptStatus> finished;
};

class Worker {
 public:
  Worker(std::string coordinator, std::string metrics_address,
         WorkerMetrics* metrics,
         std::shared_ptr<grpc::ChannelCredentials> credentials,
         PathPolicy paths)
      : paths_(std::move(paths)),
        coordinator_(std::move(coordinator)),
        metrics_address_(std::move(metrics_address)),
        metrics_(metrics),
        stub_(WorkerRegistry::NewStub(
            grpc::CreateChannel(coordinator_, std::move(credentials)))) {}

  absl::Status Run() {
    store_port_ = absl::GetFlag(FLAGS_store_port);
    if (store_port_ == 0) {
      ASSIGN_OR_RETURN(store_port_, PickFreePort(absl::GetFlag(FLAGS_host)));
    }
    while (true) {
      if (worker_id_.empty()) {
        const absl::Status registered = Register();
        if (!registered.ok()) {
          LETHE_LOG(WARNING) << registered << "; retrying";
          absl::SleepFor(absl::Seconds(1));
          continue;
        }
      }
      RETURN_IF_ERROR(Beat());
      absl::SleepFor(interval_);
    }
  }

 private:
  absl::Status Register() {
    lethe::v1::RegisterWorkerRequest request;
    request.set_host(absl::GetFlag(FLAGS_host));
    request.set_device(absl::GetFlag(FLAGS_device));
    request.set_pid(getpid());
    request.set_threads(Threads());
    request.set_store_port(store_port_);
    request.set_metrics_address(metrics_address_);
    request.set_memory_bytes(MemoryBytes());
    lethe::v1::RegisterWorkerResponse response;
    auto context = ContextWithDeadline(absl::Seconds(5));
    RETURN_IF_ERROR(
        FromGrpc(stub_->RegisterWorker(context.get(), request, &response),
                 absl::StrCat("registering with ", coordinator_)));
    worker_id_ = response.worker_id();
    interval_ =
        absl::Milliseconds(std::max(50, response.heartbeat_interval_ms()));
    worker_timeout_ = absl::Milliseconds(response.worker_timeout_ms());
    last_contact_ = std::chrono::steady_clock::now();
    LETHE_LOG(INFO) << "registered with " << coordinator_ << " as "
                    << worker_id_;
    return absl::OkStatus();
  }

  // --memory_gib, or what the device offers (DeviceMemoryBytes; 0 unknown,
  // or a device name that does not parse, which start-up refuses anyway).
  static uint64_t MemoryBytes() {
    const double gib = absl::GetFlag(FLAGS_memory_gib);
    if (gib > 0) return static_cast<uint64_t>(gib * (uint64_t{1} << 30));
    const absl::StatusOr<ComputeDevice> device =
        ParseComputeDevice(absl::GetFlag(FLAGS_device));
    return device.ok() ? DeviceMemoryBytes(*device) : 0;
  }

  static int Threads() {
    const int threads = absl::GetFlag(FLAGS_threads);
    return threads > 0 ? threads
                       : std::max(1u, std::thread::hardware_concurrency());
  }

  // One heartbeat: reports the attempt's state and follows the orders.
  absl::Status Beat() {
    PollAttempt();
    lethe::v1::HeartbeatRequest request;
    request.set_worker_id(worker_id_);
    if (attempt_) {
      if (attempt_->finished) {
        *request.mutable_attempt() = *attempt_->finished;
      } else {
        request.mutable_attempt()->set_attempt_id(attempt_->attempt_id);
        request.mutable_attempt()->set_state(AttemptStatus::RUNNING);
      }
    }
    lethe::v1::HeartbeatResponse response;
    // Short enough that a worker cut off notices in time to stop its
    // attempt before the coordinator gives the job to another worker.
    absl::Duration deadline = absl::Seconds(2);
    if (worker_timeout_ > absl::ZeroDuration()) {
      deadline = std::min(deadline, worker_timeout_ / 4);
    }
    auto context = ContextWithDeadline(deadline);
    const auto sent = std::chrono::steady_clock::now();
    const grpc::Status status =
        stub_->Heartbeat(context.get(), request, &response);
    if (metrics_ != nullptr) {
      metrics_->Heartbeat(status.ok());
      metrics_->SetBusy(attempt_.has_value() && !attempt_->finished);
    }
    if (!status.ok()) {
      // Keep the attempt while the coordinator may be back soon and tell
      // us; not past half its timeout, when it may restart the job.
      LETHE_LOG(WARNING) << "heartbeat failed: " << status.error_message();
      StopAttemptIfCutOff();
      return absl::OkStatus();
    }
    last_contact_ = sent;
    if (response.unknown_worker()) {
      LETHE_LOG(WARNING) << "the coordinator does not know " << worker_id_
                         << "; stopping any attempt and registering again";
      StopAttempt();
      worker_id_.clear();
      return absl::OkStatus();
    }
    if (attempt_ && response.abort_attempt_id() == attempt_->attempt_id) {
      LETHE_LOG(INFO) << "stopping attempt " << attempt_->attempt_id
                      << " as the coordinator asked";
      StopAttempt();
    }
    if (response.has_run()) {
      if (attempt_ && !attempt_->finished) {
        LETHE_LOG(WARNING) << "told to run attempt "
                           << response.run().attempt_id() << " while running "
                           << attempt_->attempt_id << "; stopping the old one";
        StopAttempt();
      }
      const absl::Status started = StartAttempt(response.run());
      if (!started.ok()) {
        attempt_ = RunningAttempt{.attempt_id = response.run().attempt_id()};
        attempt_->finished =
            Failed(response.run().attempt_id(), started.ToString());
      }
    }
    return absl::OkStatus();
  }

  // Stops a running attempt once the coordinator has not answered for half
  // of its worker timeout: by the time it drops this worker and starts the
  // job elsewhere, this attempt no longer writes. The attempt is reported
  // FAILED when the coordinator answers again.
  void StopAttemptIfCutOff() {
    if (!attempt_ || attempt_->finished ||
        worker_timeout_ <= absl::ZeroDuration()) {
      return;
    }
    const absl::Duration silent =
        absl::FromChrono(std::chrono::steady_clock::now() - last_contact_);
    if (silent <= worker_timeout_ / 2) return;
    const int64_t attempt_id = attempt_->attempt_id;
    const std::string reason = absl::StrCat(
        "stopped by its worker: no answer from the coordinator for ",
        absl::FormatDuration(silent), " (it drops a worker after ",
        absl::FormatDuration(worker_timeout_),
        "), so that the job can restart elsewhere without two writers");
    LETHE_LOG(WARNING) << "attempt " << attempt_id << " " << reason;
    StopAttempt();
    attempt_ = RunningAttempt{.attempt_id = attempt_id,
                              .finished = Failed(attempt_id, reason)};
  }

  static AttemptStatus Failed(int64_t attempt_id, const std::string& error) {
    AttemptStatus status;
    status.set_attempt_id(attempt_id);
    status.set_state(AttemptStatus::FAILED);
    status.set_error(error);
    return status;
  }

  // The roots the coordinator allows the attempt's tenant, as a policy.
  static absl::StatusOr<PathPolicy> TenantPolicy(const Attempt& attempt) {
    const lethe::v1::AllowedRoots& sent = attempt.allowed_roots();
    const std::string whose =
        attempt.tenant().empty()
            ? std::string(" the coordinator allows")
            : absl::StrCat(" the coordinator allows tenant \"",
                           attempt.tenant(), "\"");
    return PathPolicy::Create(
        {.model_roots = {sent.model_roots().begin(), sent.model_roots().end()},
         .data_roots = {sent.data_roots().begin(), sent.data_roots().end()},
         .output_roots = {sent.output_roots().begin(),
                          sent.output_roots().end()}},
        {.model = absl::StrCat("the model roots", whose),
         .data = absl::StrCat("the data roots", whose),
         .output = absl::StrCat("the output roots", whose)});
  }

  absl::Status StartAttempt(const Attempt& attempt) {
    // Checked again here, before any file is opened: the paths came from a
    // coordinator this worker trusts only as far as its own roots, and they
    // must lie within the roots the coordinator gives the job's tenant now
    // (which may be narrower than when the job was created). Both checks:
    // the coordinator's roots narrow this worker's, never widen them.
    RETURN_IF_ERROR(paths_.Check(attempt.spec()));
    ASSIGN_OR_RETURN(const PathPolicy tenant_paths, TenantPolicy(attempt));
    RETURN_IF_ERROR(tenant_paths.Check(attempt.spec()));
    const std::string logs = attempt.spec().output_dir() + "/logs";
    std::error_code error;
    std::filesystem::create_directories(logs, error);
    if (error) {
      return absl::PermissionDeniedError(
          absl::StrCat("creating ", logs, ": ", error.message()));
    }
    const std::string stem = absl::StrCat(
        logs, "/attempt-", attempt.attempt_id(), "-rank", attempt.rank());
    // The report secret goes to the rank process in its environment (only
    // its user may read it), not into the attempt file in output_dir.
    Attempt to_file = attempt;
    to_file.clear_report_secret();
    RETURN_IF_ERROR(
        WriteFileAtomically(stem + ".attempt", to_file.SerializeAsString()));
    std::vector<std::string> argv = {
        SelfPath(),
        absl::StrCat("--run_attempt=", stem, ".attempt"),
        absl::StrCat("--parent_pid=", getpid()),
        absl::StrCat("--host=", absl::GetFlag(FLAGS_host)),
        absl::StrCat("--device=", absl::GetFlag(FLAGS_device)),
        absl::StrCat("--coordinator=", absl::GetFlag(FLAGS_coordinator))};
    for (const auto& [flag, value] :
         {std::pair{"tls_ca_file", absl::GetFlag(FLAGS_tls_ca_file)},
          std::pair{"tls_cert_file", absl::GetFlag(FLAGS_tls_cert_file)},
          std::pair{"tls_key_file", absl::GetFlag(FLAGS_tls_key_file)}}) {
      if (!value.empty()) argv.push_back(absl::StrCat("--", flag, "=", value));
    }
    ASSIGN_OR_RETURN(
        Subprocess child,
        Subprocess::Start(
            argv,
            {{"OMP_NUM_THREADS", absl::StrCat(Threads())},
             {"LETHE_ATTEMPT_ERROR_FILE", stem + ".error"},
             {"LETHE_REPORT_SECRET", attempt.report_secret()}},
            {.stdout_path = stem + ".log", .stderr_path = stem + ".log"}));
    LETHE_LOG(INFO) << "running attempt " << attempt.attempt_id() << " of "
                    << attempt.job() << " as rank " << attempt.rank()
                    << " (log " << stem << ".log)";
    attempt_ = RunningAttempt{.attempt_id = attempt.attempt_id(),
                              .error_path = stem + ".error",
                              .child = std::move(child)};
    return absl::OkStatus();
  }

  // Notes the child's end once it has exited.
  void PollAttempt() {
    if (!attempt_ || attempt_->finished) return;
    absl::StatusOr<std::optional<ExitStatus>> exit =
        attempt_->child->WaitFor(absl::ZeroDuration());
    if (exit.ok() && !exit->has_value()) return;
    AttemptStatus status;
    status.set_attempt_id(attempt_->attempt_id);
    if (exit.ok() && (*exit)->success()) {
      status.set_state(AttemptStatus::SUCCEEDED);
    } else {
      status.set_state(AttemptStatus::FAILED);
      std::string error = ReadFileToString(attempt_->error_path).value_or("");
      if (error.empty()) {
        error = exit.ok()
                    ? absl::StrCat("the attempt process ", (*exit)->ToString())
                    : exit.status().ToString();
      }
      status.set_error(error);
    }
    attempt_->finished = status;
    if (metrics_ != nullptr) {
      metrics_->AttemptEnded(
          status.state() == AttemptStatus::SUCCEEDED ? "succeeded" : "failed");
    }
  }

  void StopAttempt() {
    if (attempt_ && !attempt_->finished && attempt_->child->running()) {
      attempt_->child->Signal(SIGKILL).IgnoreError();
      attempt_->child->Wait().IgnoreError();
      if (metrics_ != nullptr) metrics_->AttemptEnded("stopped");
    }
    attempt_.reset();
  }

  static std::string SelfPath() {
    std::error_code error;
    const std::filesystem::path self =
        std::filesystem::read_symlink("/proc/self/exe", error);
    return error ? "lethe-worker" : self.string();
  }

  const PathPolicy paths_;
  std::string coordinator_;
  std::string metrics_address_;  // Reported to the coordinator.
  WorkerMetrics* metrics_;       // Null without --metrics_address.
  std::unique_ptr<WorkerRegistry::Stub> stub_;
  std::string worker_id_;
  int store_port_ = 0;
  absl::Duration interval_ = absl::Milliseconds(500);
  // The coordinator's worker timeout (0: not told) and when this worker last
  // sent a heartbeat that the coordinator answered (monotonic clock).
  absl::Duration worker_timeout_ = absl::ZeroDuration();
  std::chrono::steady_clock::time_point last_contact_ =
      std::chrono::steady_clock::now();
  std::optional<RunningAttempt> attempt_;
};

// The daemon: serves /metrics when asked, then heartbeats until killed.
absl::Status RunWorker() {
  ASSIGN_OR_RETURN(const std::string device,
                   CheckComputeDevice(absl::GetFlag(FLAGS_device)));
  absl::SetFlag(&FLAGS_device, device);
  auto registry = std::make_shared<prometheus::Registry>();
  std::unique_ptr<MetricsEndpoint> endpoint;
  std::unique_ptr<WorkerMetrics> metrics;
  std::string metrics_address;
  if (!absl::GetFlag(FLAGS_metrics_address).empty()) {
    RegisterBuildInfo(*registry, "worker");
    metrics = std::make_unique<WorkerMetrics>(*registry);
    ASSIGN_OR_RETURN(
        endpoint,
        MetricsEndpoint::Start(absl::GetFlag(FLAGS_metrics_address), registry));
    metrics_address =
        absl::StrCat(absl::GetFlag(FLAGS_host), ":", endpoint->port());
    LETHE_LOG(INFO) << "metrics at " << endpoint->url();
  }
  ASSIGN_OR_RETURN(const auto credentials, CoordinatorCredentials());
  ASSIGN_OR_RETURN(
      PathPolicy paths,
      PathPolicy::Create(
          {.model_roots = absl::GetFlag(FLAGS_allowed_model_roots),
           .data_roots = absl::GetFlag(FLAGS_allowed_data_roots),
           .output_roots = absl::GetFlag(FLAGS_allowed_output_roots)}));
  return Worker(absl::GetFlag(FLAGS_coordinator), metrics_address,
                metrics.get(), credentials, std::move(paths))
      .Run();
}

}  // namespace
}  // namespace lethe

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Lethe's worker: runs ranks of unlearning jobs for a coordinator.\n"
      "Usage: lethe-worker --coordinator=HOST:PORT [--host=ADDRESS] "
      "[--device=cpu|cuda:N] [--threads=N] [--tls_ca_file=PEM "
      "[--tls_cert_file=PEM --tls_key_file=PEM]]");
  absl::ParseCommandLine(argc, argv);
  lethe::InitLogging(argv[0], "lethe-worker");
  const std::string attempt_file = absl::GetFlag(FLAGS_run_attempt);
  if (!attempt_file.empty()) {
    const absl::Status status = lethe::RunAttemptFile(attempt_file);
    if (!status.ok()) {
      LETHE_LOG(ERROR) << "attempt failed: " << status;
      if (const char* error_file = std::getenv("LETHE_ATTEMPT_ERROR_FILE")) {
        lethe::WriteFileAtomically(error_file, status.ToString()).IgnoreError();
      }
      return 1;
    }
    return 0;
  }
  if (!lethe::TieLifetimeToParent()) {
    LETHE_LOG(ERROR) << "the process that started it is gone";
    return 1;
  }
  const absl::Status status = lethe::RunWorker();
  LETHE_LOG(ERROR) << status;
  return 1;
}
