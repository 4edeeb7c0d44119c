#include "services/coordinator/job_feed.h"

#include <utility>
#include <vector>

#include "google/protobuf/util/time_util.h"
#include "libs/status/status_macros.h"

namespace lethe {
namespace {

// Log lines read from the store at a time.
constexpr int kLogReadPage = 500;

v1::LogEntry ToLogEntry(const JobStore::LogLine& line) {
  v1::LogEntry entry;
  *entry.mutable_time() =
      google::protobuf::util::TimeUtil::MicrosecondsToTimestamp(
          absl::ToUnixMicros(line.time));
  entry.set_source(line.source);
  entry.set_message(line.message);
  return entry;
}

}  // namespace

int64_t JobFeed::CurrentVersion() {
  absl::MutexLock lock(&mu_);
  return version_;
}

bool JobFeed::ShuttingDown() {
  absl::MutexLock lock(&mu_);
  return shutting_down_;
}

bool JobFeed::AwaitChange(int64_t seen_version, absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto changed = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return version_ != seen_version || shutting_down_;
  };
  return mu_.AwaitWithTimeout(absl::Condition(&changed), timeout);
}

absl::Status JobFeed::WatchJob(const std::string& name,
                               const std::function<bool(const v1::Job&)>& send,
                               const std::function<bool()>& cancelled) {
  std::string last_sent;
  while (!cancelled() && !ShuttingDown()) {
    const int64_t version = CurrentVersion();
    ASSIGN_OR_RETURN(v1::Job job, store_.Get(name));
    std::string bytes = job.SerializeAsString();
    if (bytes != last_sent) {
      if (!send(job)) return absl::OkStatus();
      last_sent = std::move(bytes);
    }
    if (IsFinalState(job.state())) return absl::OkStatus();
    // Read again only after a change: every write of a job or its log
    // wakes the feed (ChangedLocked). The timeout only notices a client
    // that went away, without a store read per open stream each second.
    while (!AwaitChange(version, absl::Seconds(1))) {
      if (cancelled()) return absl::OkStatus();
    }
  }
  return absl::OkStatus();
}

absl::Status JobFeed::StreamJobLogs(
    const std::string& name, bool follow,
    const std::function<bool(const v1::LogEntry&)>& send,
    const std::function<bool()>& cancelled) {
  int64_t sent = 0;  // The sequence number of the last line sent.
  while (!cancelled() && !ShuttingDown()) {
    const int64_t version = CurrentVersion();
    bool job_final = false;
    std::vector<JobStore::LogLine> page;
    {
      absl::MutexLock lock(&mu_);
      ASSIGN_OR_RETURN(const v1::Job job, store_.Get(name));
      job_final = IsFinalState(job.state());
      ASSIGN_OR_RETURN(page, store_.ReadLogs(name, sent, kLogReadPage));
    }
    for (const JobStore::LogLine& line : page) {
      if (!send(ToLogEntry(line))) return absl::OkStatus();
      sent = line.sequence;
    }
    if (static_cast<int>(page.size()) == kLogReadPage) continue;
    if (!follow || job_final) return absl::OkStatus();
    while (!AwaitChange(version, absl::Seconds(1))) {  // As in WatchJob.
      if (cancelled()) return absl::OkStatus();
    }
  }
  return absl::OkStatus();
}

}  // namespace lethe
