// Child processes: start a program, signal it, wait for it with a deadline.
//
//   ASSIGN_OR_RETURN(Subprocess child,
//                    Subprocess::Start({"/usr/bin/lethe-worker", "--rank=1"},
//                                      {{"OMP_NUM_THREADS", "1"}}));
//   ASSIGN_OR_RETURN(ExitStatus exit, child.Wait());
//   if (!exit.success()) return absl::InternalError(exit.ToString());
//
// The child inherits the environment (plus `extra_env`) and the standard
// streams, unless they are redirected to files. A Subprocess still running when
// destroyed is killed (SIGKILL) and reaped, so no child outlives its owner by
// accident.
#ifndef LETHE_LIBS_SUBPROCESS_SUBPROCESS_H_
#define LETHE_LIBS_SUBPROCESS_SUBPROCESS_H_

#include <sys/types.h>

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace lethe {

// How a child ended: a normal exit with a code, or death by a signal.
struct ExitStatus {
  bool exited = false;  // True for exit(code); false for a signal.
  int code = 0;         // Exit code when `exited`.
  int signal = 0;       // Terminating signal when not `exited`.

  bool success() const { return exited && code == 0; }
  // "exited with code 3" or "killed by signal 9 (Killed)".
  std::string ToString() const;
};

// Where the child's standard output and error go: empty inherits the
// parent's; a path is created, and truncated unless `append`; both may name
// one file.
struct OutputRedirect {
  std::string stdout_path;
  std::string stderr_path;
  bool append = false;  // Keep what the file holds (a replaced process's).
};

class Subprocess {
 public:
  // Starts `argv[0]` (a path, or a name looked up on PATH). NOT_FOUND when
  // the program does not exist, INTERNAL when it cannot be started.
  static absl::StatusOr<Subprocess> Start(
      const std::vector<std::string>& argv,
      const std::map<std::string, std::string>& extra_env = {},
      const OutputRedirect& output = {});

  Subprocess(Subprocess&& other) noexcept;
  Subprocess& operator=(Subprocess&& other) noexcept;
  Subprocess(const Subprocess&) = delete;
  Subprocess& operator=(const Subprocess&) = delete;
  ~Subprocess();

  pid_t pid() const { return pid_; }
  bool running() const { return pid_ > 0 && !exit_status_.has_value(); }

  // Sends `signal` to a running child; FAILED_PRECONDITION once it ended.
  absl::Status Signal(int signal);

  // Blocks until the child ends.
  absl::StatusOr<ExitStatus> Wait();

  // Waits at most `timeout`; nullopt when the child is still running then.
  absl::StatusOr<std::optional<ExitStatus>> WaitFor(absl::Duration timeout);

 private:
  explicit Subprocess(pid_t pid) : pid_(pid) {}
  // Reaps the child if it has ended (blocking when `block`).
  absl::Status Reap(bool block);

  pid_t pid_ = -1;
  std::optional<ExitStatus> exit_status_;
};

}  // namespace lethe

#endif  // LETHE_LIBS_SUBPROCESS_SUBPROCESS_H_
