#include "services/coordinator/scheduler.h"

#include <algorithm>
#include <set>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/strip.h"
#include "google/protobuf/util/time_util.h"

namespace lethe {
namespace {

// "jobs/12" -> 12, for ties between jobs created in the same microsecond.
int64_t JobNumber(const v1::Job& job) {
  int64_t number = 0;
  absl::string_view name = job.name();
  if (absl::ConsumePrefix(&name, "jobs/")) {
    if (!absl::SimpleAtoi(name, &number)) number = 0;
  }
  return number;
}

}  // namespace

v1::Device JobDevice(const v1::JobSpec& spec) {
  return spec.device() == v1::CUDA ? v1::CUDA : v1::CPU;
}

absl::Time JobCreateTime(const v1::Job& job) {
  return absl::FromUnixMicros(
      google::protobuf::util::TimeUtil::TimestampToMicroseconds(
          job.create_time()));
}

absl::Time JobQueuedTime(const v1::Job& job) {
  for (int i = job.history_size() - 1; i >= 0; --i) {
    if (job.history(i).state() == v1::Job::QUEUED) {
      return absl::FromUnixMicros(
          google::protobuf::util::TimeUtil::TimestampToMicroseconds(
              job.history(i).time()));
    }
  }
  return JobCreateTime(job);
}

absl::Duration JobDeadline(const v1::Job& job) {
  const google::protobuf::Duration& deadline =
      job.spec().run_policy().deadline();
  return absl::Seconds(deadline.seconds()) +
         absl::Nanoseconds(deadline.nanos());
}

SchedulingDecision PlaceQueuedJobs(std::vector<v1::Job> queued,
                                   const std::vector<IdleWorker>& idle,
                                   const std::map<v1::Device, int>& registered,
                                   absl::Time now,
                                   const SchedulingOptions& options) {
  // Job numbers grow with creation, and unlike create_time they do not
  // follow the wall clock if it steps back.
  const auto before = [](const v1::Job& a, const v1::Job& b) {
    return std::make_pair(-a.spec().priority(), JobNumber(a)) <
           std::make_pair(-b.spec().priority(), JobNumber(b));
  };
  // The store lists the queue in this order already: checking is linear,
  // sorting 10,000 jobs again every second is not.
  if (!std::is_sorted(queued.begin(), queued.end(), before)) {
    std::stable_sort(queued.begin(), queued.end(), before);
  }
  std::map<v1::Device, std::vector<std::string>> idle_by_device;
  for (const IdleWorker& worker : idle) {
    idle_by_device[worker.device].push_back(worker.id);
  }
  SchedulingDecision decision;
  std::set<v1::Device> blocked;
  for (const v1::Job& job : queued) {
    const absl::Duration deadline = JobDeadline(job);
    if (deadline > absl::ZeroDuration() &&
        now > JobCreateTime(job) + deadline) {
      decision.expired.push_back(job.name());
      continue;
    }
    const v1::Device device = JobDevice(job.spec());
    if (blocked.count(device) > 0) continue;
    std::vector<std::string>& free = idle_by_device[device];
    const int world_size = std::max(1, job.spec().world_size());
    if (world_size > static_cast<int>(free.size())) {
      const auto found = registered.find(device);
      const int count = found == registered.end() ? 0 : found->second;
      if (count >= world_size) {
        blocked.insert(device);  // It waits for busy workers: strict order.
        continue;
      }
      const bool holds =
          now - JobQueuedTime(job) < options.hold_for_missing_workers;
      if (holds) blocked.insert(device);
      decision.too_few_workers.push_back({.job = job.name(),
                                          .device = device,
                                          .needed = world_size,
                                          .registered = count,
                                          .holds_queue = holds});
      continue;
    }
    decision.placements.push_back(
        {.job = job.name(),
         .workers = std::vector<std::string>(free.begin(),
                                             free.begin() + world_size)});
    free.erase(free.begin(), free.begin() + world_size);
  }
  return decision;
}

}  // namespace lethe
