#include "libs/subprocess/subprocess.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

extern char** environ;

namespace lethe {

std::string ExitStatus::ToString() const {
  if (exited) return absl::StrCat("exited with code ", code);
  return absl::StrCat("killed by signal ", signal, " (", strsignal(signal),
                      ")");
}

absl::StatusOr<Subprocess> Subprocess::Start(
    const std::vector<std::string>& argv,
    const std::map<std::string, std::string>& extra_env,
    const OutputRedirect& output) {
  if (argv.empty() || argv[0].empty()) {
    return absl::InvalidArgumentError("Subprocess::Start needs a program");
  }
  std::vector<std::string> env_strings;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    const std::string variable = *entry;
    const std::string name = variable.substr(0, variable.find('='));
    if (extra_env.count(name) == 0) env_strings.push_back(variable);
  }
  for (const auto& [name, value] : extra_env) {
    env_strings.push_back(absl::StrCat(name, "=", value));
  }
  std::vector<char*> env_pointers;
  for (std::string& variable : env_strings) {
    env_pointers.push_back(variable.data());
  }
  env_pointers.push_back(nullptr);

  std::vector<std::string> argv_copy = argv;
  std::vector<char*> argv_pointers;
  for (std::string& arg : argv_copy) argv_pointers.push_back(arg.data());
  argv_pointers.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  const int kOutputFlags =
      O_WRONLY | O_CREAT | (output.append ? O_APPEND : O_TRUNC);
  if (!output.stdout_path.empty()) {
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO,
                                     output.stdout_path.c_str(), kOutputFlags,
                                     0644);
  }
  if (!output.stderr_path.empty()) {
    if (output.stderr_path == output.stdout_path) {
      posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
    } else {
      posix_spawn_file_actions_addopen(&actions, STDERR_FILENO,
                                       output.stderr_path.c_str(), kOutputFlags,
                                       0644);
    }
  }
  pid_t pid = -1;
  const int error = posix_spawnp(&pid, argv_pointers[0], &actions, nullptr,
                                 argv_pointers.data(), env_pointers.data());
  posix_spawn_file_actions_destroy(&actions);
  if (error == ENOENT) {
    return absl::NotFoundError(
        absl::StrCat("cannot start '", argv[0], "': no such program"));
  }
  if (error != 0) {
    return absl::InternalError(
        absl::StrCat("cannot start '", argv[0], "': ", strerror(error)));
  }
  return Subprocess(pid);
}

Subprocess::Subprocess(Subprocess&& other) noexcept
    : pid_(std::exchange(other.pid_, -1)),
      exit_status_(std::move(other.exit_status_)) {}

Subprocess& Subprocess::operator=(Subprocess&& other) noexcept {
  if (this != &other) {
    if (running()) {
      kill(pid_, SIGKILL);
      Reap(/*block=*/true).IgnoreError();
    }
    pid_ = std::exchange(other.pid_, -1);
    exit_status_ = std::move(other.exit_status_);
  }
  return *this;
}

Subprocess::~Subprocess() {
  if (running()) {
    kill(pid_, SIGKILL);
    Reap(/*block=*/true).IgnoreError();
  }
}

absl::Status Subprocess::Signal(int signal) {
  if (!running()) {
    return absl::FailedPreconditionError(
        absl::StrCat("process ", pid_, " is not running"));
  }
  if (kill(pid_, signal) != 0) {
    return absl::InternalError(
        absl::StrCat("kill(", pid_, ", ", signal, "): ", strerror(errno)));
  }
  return absl::OkStatus();
}

absl::Status Subprocess::Reap(bool block) {
  if (!running()) return absl::OkStatus();
  int wait_status = 0;
  pid_t result;
  do {
    result = waitpid(pid_, &wait_status, block ? 0 : WNOHANG);
  } while (result < 0 && errno == EINTR);
  if (result < 0) {
    return absl::InternalError(
        absl::StrCat("waitpid(", pid_, "): ", strerror(errno)));
  }
  if (result == 0) return absl::OkStatus();
  ExitStatus status;
  if (WIFEXITED(wait_status)) {
    status.exited = true;
    status.code = WEXITSTATUS(wait_status);
  } else {
    status.signal = WTERMSIG(wait_status);
  }
  exit_status_ = status;
  return absl::OkStatus();
}

absl::StatusOr<ExitStatus> Subprocess::Wait() {
  if (pid_ <= 0) return absl::FailedPreconditionError("no process to wait for");
  if (absl::Status status = Reap(/*block=*/true); !status.ok()) return status;
  return *exit_status_;
}

absl::StatusOr<std::optional<ExitStatus>> Subprocess::WaitFor(
    absl::Duration timeout) {
  if (pid_ <= 0) return absl::FailedPreconditionError("no process to wait for");
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    if (absl::Status status = Reap(/*block=*/false); !status.ok()) {
      return status;
    }
    if (exit_status_.has_value()) return exit_status_;
    if (absl::Now() >= deadline) return std::optional<ExitStatus>();
    absl::SleepFor(absl::Milliseconds(5));
  }
}

}  // namespace lethe
