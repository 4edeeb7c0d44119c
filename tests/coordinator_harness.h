// A real lethe-coordinator for the process tests: started on free ports
// (gRPC and /metrics) with its job store, ready file and log in a directory
// of the test's, optionally with local workers; killed when destroyed.
//
//   absl::StatusOr<std::unique_ptr<RunningCoordinator>> started =
//       RunningCoordinator::Start(coordinator_binary, FreshDir("jobs"),
//                                 {.local_workers = 2});
//   ASSERT_TRUE(started.ok()) << started.status();
//   RunningCoordinator& coordinator = **started;
//   coordinator.jobs().CreateJob(...);
#ifndef LETHE_TESTS_COORDINATOR_HARNESS_H_
#define LETHE_TESTS_COORDINATOR_HARNESS_H_

#include <sys/types.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "lethe/v1/jobs_service.grpc.pb.h"
#include "libs/subprocess/subprocess.h"

namespace lethe {

// A fresh (emptied) directory `name` under the test's temporary directory.
std::string FreshDir(const std::string& name);

struct TestCoordinatorOptions {
  int local_workers = 0;
  // The job store; empty: <dir>/jobs.sqlite.
  std::string database;
  // More flags, e.g. "--worker_targets_file=...".
  std::vector<std::string> flags;
};

class RunningCoordinator {
 public:
  // Starts `binary` with --local_workers, --worker_threads=1,
  // --worker_timeout=2s and --collective_timeout=20s, and waits (30 s at
  // most) for its ready file. DEADLINE_EXCEEDED with its log when it does
  // not get ready; the error of a binary that cannot be started.
  static absl::StatusOr<std::unique_ptr<RunningCoordinator>> Start(
      const std::string& binary, const std::string& dir,
      const TestCoordinatorOptions& options = {});
  ~RunningCoordinator();

  const std::string& address() const { return address_; }  // gRPC
  const std::string& metrics_url() const { return metrics_url_; }
  const std::string& database() const { return database_; }
  Subprocess& process() { return process_; }
  v1::Jobs::Stub& jobs() { return *jobs_; }
  // Its stdout and stderr so far.
  std::string Log() const;
  // Pids of the local workers it started, in order of start.
  std::vector<pid_t> WorkerPids() const;

 private:
  RunningCoordinator(Subprocess process, std::string log, std::string database)
      : process_(std::move(process)),
        log_(std::move(log)),
        database_(std::move(database)) {}

  Subprocess process_;
  std::string log_, database_, address_, metrics_url_;
  std::unique_ptr<v1::Jobs::Stub> jobs_;
};

}  // namespace lethe

#endif  // LETHE_TESTS_COORDINATOR_HARNESS_H_
