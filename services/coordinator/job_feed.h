// Following jobs as they change, for the Jobs API's streams: WatchJob sends
// a job each time it changes, StreamJobLogs sends its log lines, until the
// job ends, the client goes or the feed shuts down.
//
// Writers (the coordinator) record changes in the JobStore under one mutex
// and call ChangedLocked() under it after each; the feed reads the job's
// state and its log under the same mutex, so a reader that sees a final
// state has also seen every line logged before it (the final state's own
// line included).
//
//   JobFeed feed(store, mu);
//   { absl::MutexLock lock(&mu); ...record...; feed.ChangedLocked(); }
//   feed.WatchJob("jobs/7", send, cancelled);  // Without holding mu.
#ifndef LETHE_SERVICES_COORDINATOR_JOB_FEED_H_
#define LETHE_SERVICES_COORDINATOR_JOB_FEED_H_

#include <cstdint>
#include <functional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "lethe/v1/jobs_service.pb.h"
#include "libs/jobs/job_store.h"

namespace lethe {

class JobFeed {
 public:
  // `store` and `mu` (the writers' mutex) must outlive the feed.
  JobFeed(JobStore& store, absl::Mutex& mu) : store_(store), mu_(mu) {}

  // Wakes the readers after a change; call with `mu` held.
  void ChangedLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { ++version_; }
  // Readers return at their next wake-up; call with `mu` held.
  void ShutdownLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    shutting_down_ = true;
  }

  // Calls `send` with the job now and after every change until the job is
  // final, `send` returns false, `cancelled` returns true or the feed shuts
  // down. NOT_FOUND for an unknown job.
  absl::Status WatchJob(const std::string& name,
                        const std::function<bool(const v1::Job&)>& send,
                        const std::function<bool()>& cancelled);

  // Sends the job's log lines oldest first; with `follow`, keeps sending
  // new ones until the job is final (its last line included). Lines trimmed
  // from the store while the client lagged are skipped.
  absl::Status StreamJobLogs(
      const std::string& name, bool follow,
      const std::function<bool(const v1::LogEntry&)>& send,
      const std::function<bool()>& cancelled);

 private:
  int64_t CurrentVersion();
  // Waits until the version moves past `seen_version`, the feed shuts down
  // or `timeout` passes; false on a timeout.
  bool AwaitChange(int64_t seen_version, absl::Duration timeout);
  bool ShuttingDown();

  JobStore& store_;
  absl::Mutex& mu_;
  int64_t version_ ABSL_GUARDED_BY(mu_) = 0;
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace lethe

#endif  // LETHE_SERVICES_COORDINATOR_JOB_FEED_H_
