// Local mode: the coordinator starts N lethe-worker processes on this
// machine and keeps N running: a worker that exits is started again, and
// one the coordinator dropped for missed heartbeats (hung, stopped) is
// killed and replaced. Destroying LocalWorkers kills them all.
//
//   ASSIGN_OR_RETURN(std::unique_ptr<LocalWorkers> workers,
//                    LocalWorkers::Start({.count = 2,
//                                         .coordinator = "127.0.0.1:7070"},
//                                        coordinator));
#ifndef LETHE_SERVICES_COORDINATOR_LOCAL_WORKERS_H_
#define LETHE_SERVICES_COORDINATOR_LOCAL_WORKERS_H_

#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "libs/subprocess/subprocess.h"
#include "services/coordinator/coordinator.h"

namespace lethe {

struct LocalWorkersOptions {
  int count = 1;
  // lethe-worker; empty: next to this program, then ../worker/, then PATH.
  std::string binary;
  // CPU threads per worker; 0: this machine's cores divided among them.
  int threads = 0;
  std::string coordinator;  // The address workers register with.
  // Worker i writes its output to <log_dir>/worker-<i>.log.
  std::string log_dir = ".";
};

class LocalWorkers {
 public:
  static absl::StatusOr<std::unique_ptr<LocalWorkers>> Start(
      LocalWorkersOptions options, Coordinator& coordinator);
  ~LocalWorkers();

 private:
  LocalWorkers(LocalWorkersOptions options, Coordinator& coordinator);
  absl::Status StartSlot(int slot) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Supervise();

  const LocalWorkersOptions options_;
  Coordinator& coordinator_;
  absl::Mutex mu_;
  std::vector<std::optional<Subprocess>> processes_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread supervisor_;
};

}  // namespace lethe

#endif  // LETHE_SERVICES_COORDINATOR_LOCAL_WORKERS_H_
