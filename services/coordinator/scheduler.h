// Placement of queued jobs on idle workers: the scheduling decision alone,
// without the store, the clock or the workers' connections, so that its
// rules can be tested directly.
//
//   SchedulingDecision decision =
//       PlaceQueuedJobs(queued, idle_workers, registered, absl::Now());
//   for (const Placement& p : decision.placements) { ...start p.job... }
//
// Rules:
//  - Order: highest spec.priority first, then oldest (the lower job number:
//    numbers grow with creation), whatever order `queued` comes in.
//  - Device: a job runs on workers of its spec's device only (CUDA jobs on
//    CUDA workers, everything else on CPU ones).
//  - Gang: a job starts on world_size distinct idle workers at once, or not
//    at all; rank r is the r-th of the idle workers in the order given.
//  - Strict order per device: once a job cannot start, no later job of the
//    same device starts before it (no starvation of large jobs); jobs of
//    the other device are not held back.
//  - Queue deadline: a job whose run_policy.deadline has passed since its
//    creation is not placed but listed in `expired`, and holds nothing back.
//  - Backfill: a job that needs more workers of its device than are
//    registered at all cannot start until more register. It holds back the
//    jobs behind it only for `hold_for_missing_workers` after it was queued
//    (workers may still be starting); after that, later jobs that fit start
//    around it. Either way it is listed in `too_few_workers`.
#ifndef LETHE_SERVICES_COORDINATOR_SCHEDULER_H_
#define LETHE_SERVICES_COORDINATOR_SCHEDULER_H_

#include <map>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "lethe/v1/job.pb.h"

namespace lethe {

struct IdleWorker {
  std::string id;
  v1::Device device = v1::CPU;
};

// `job` runs with workers[r] as rank r.
struct Placement {
  std::string job;
  std::vector<std::string> workers;
};

// A job that waits because fewer workers of its device are registered than
// it needs (not merely busy): it cannot start until more register.
struct TooFewWorkers {
  std::string job;
  v1::Device device = v1::CPU;
  int needed = 0;
  int registered = 0;
  bool holds_queue = false;  // Still within hold_for_missing_workers.
};

struct SchedulingDecision {
  std::vector<Placement> placements;
  std::vector<std::string> expired;  // Past their deadline in the queue.
  std::vector<TooFewWorkers> too_few_workers;
};

struct SchedulingOptions {
  absl::Duration hold_for_missing_workers = absl::Minutes(1);
};

// `registered` counts every registered worker (busy ones too) by device.
SchedulingDecision PlaceQueuedJobs(std::vector<v1::Job> queued,
                                   const std::vector<IdleWorker>& idle,
                                   const std::map<v1::Device, int>& registered,
                                   absl::Time now,
                                   const SchedulingOptions& options = {});

// The device kind a spec's job runs on: CUDA, or CPU for anything else.
v1::Device JobDevice(const v1::JobSpec& spec);

// When the job was created (its create_time).
absl::Time JobCreateTime(const v1::Job& job);

// When the job was last queued (its latest QUEUED state change; its
// create_time when the history has none).
absl::Time JobQueuedTime(const v1::Job& job);

// How long after its creation a job must have ended (seconds and
// nanoseconds: "0.5s" is half a second); zero for no limit.
absl::Duration JobDeadline(const v1::Job& job);

}  // namespace lethe

#endif  // LETHE_SERVICES_COORDINATOR_SCHEDULER_H_
