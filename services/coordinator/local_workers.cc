#include "services/coordinator/local_workers.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "libs/logging/logging.h"
#include "libs/status/status_macros.h"

namespace lethe {
namespace {

std::string FindWorkerBinary(const std::string& flag) {
  if (!flag.empty()) return flag;
  std::error_code error;
  const std::filesystem::path self =
      std::filesystem::read_symlink("/proc/self/exe", error);
  if (!error) {
    for (const std::filesystem::path& candidate :
         {self.parent_path() / "lethe-worker",
          self.parent_path().parent_path() / "worker" / "lethe-worker"}) {
      if (std::filesystem::exists(candidate, error)) return candidate.string();
    }
  }
  return "lethe-worker";
}

}  // namespace

LocalWorkers::LocalWorkers(LocalWorkersOptions options,
                           Coordinator& coordinator)
    : options_(std::move(options)), coordinator_(coordinator) {}

absl::StatusOr<std::unique_ptr<LocalWorkers>> LocalWorkers::Start(
    LocalWorkersOptions options, Coordinator& coordinator) {
  if (options.count < 1) {
    return absl::InvalidArgumentError("local workers: count must be >= 1");
  }
  options.binary = FindWorkerBinary(options.binary);
  if (options.threads <= 0) {
    options.threads =
        std::max<int>(1, static_cast<int>(std::thread::hardware_concurrency()) /
                             options.count);
  }
  std::unique_ptr<LocalWorkers> workers(
      new LocalWorkers(std::move(options), coordinator));
  {
    absl::MutexLock lock(&workers->mu_);
    workers->processes_.resize(workers->options_.count);
    for (int slot = 0; slot < workers->options_.count; ++slot) {
      RETURN_IF_ERROR(workers->StartSlot(slot));
    }
  }
  workers->supervisor_ = std::thread([w = workers.get()] { w->Supervise(); });
  return workers;
}

LocalWorkers::~LocalWorkers() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (supervisor_.joinable()) supervisor_.join();
  absl::MutexLock lock(&mu_);
  processes_.clear();  // Each Subprocess kills and reaps its child.
}

absl::Status LocalWorkers::StartSlot(int slot) {
  const std::string log =
      absl::StrCat(options_.log_dir, "/worker-", slot, ".log");
  ASSIGN_OR_RETURN(
      Subprocess process,
      Subprocess::Start(
          {options_.binary,
           absl::StrCat("--coordinator=", options_.coordinator),
           absl::StrCat("--threads=", options_.threads),
           absl::StrCat("--parent_pid=", getpid()),
           "--metrics_address=127.0.0.1:0"},
          {{"OMP_NUM_THREADS", absl::StrCat(options_.threads)}},
          {.stdout_path = log, .stderr_path = log, .append = true}));
  LETHE_LOG(INFO) << "started local worker " << slot << " (pid "
                  << process.pid() << ", log " << log << ")";
  processes_[slot] = std::move(process);
  return absl::OkStatus();
}

void LocalWorkers::Supervise() {
  while (true) {
    absl::SleepFor(absl::Milliseconds(200));
    const std::vector<pid_t> dropped = coordinator_.TakeDroppedWorkerPids();
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    for (int slot = 0; slot < options_.count; ++slot) {
      Subprocess& process = *processes_[slot];
      if (process.running() && std::find(dropped.begin(), dropped.end(),
                                         process.pid()) != dropped.end()) {
        LETHE_LOG(WARNING) << "local worker " << slot << " (pid "
                           << process.pid()
                           << ") stopped answering; killing and replacing it";
        process.Signal(SIGKILL).IgnoreError();
        process.Wait().IgnoreError();
      }
      absl::StatusOr<std::optional<ExitStatus>> exit =
          process.WaitFor(absl::ZeroDuration());
      if (exit.ok() && !exit->has_value()) continue;
      LETHE_LOG(WARNING) << "local worker " << slot << " ended ("
                         << (exit.ok() ? (*exit)->ToString()
                                       : exit.status().ToString())
                         << "); starting it again";
      const absl::Status started = StartSlot(slot);
      if (!started.ok()) {
        LETHE_LOG(ERROR) << "starting local worker " << slot << ": " << started;
      }
    }
  }
}

}  // namespace lethe
