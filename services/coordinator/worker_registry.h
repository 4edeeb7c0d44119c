// The coordinator's registered workers: who they are, when each was last
// heard from, the attempt each is part of and the order it has yet to
// acknowledge. No clock of its own (callers pass `now`) and no lock: the
// coordinator calls it under its mutex.
//
//   WorkerRegistry registry(/*targets_file=*/"/var/lib/lethe/workers.json");
//   ASSIGN_OR_RETURN(WorkerRegistry::Registration r,
//                    registry.Register(request, absl::Now()));
//   if (RegisteredWorker* w = registry.Find(r.worker_id)) { ... }
//   for (RegisteredWorker& lost :
//        registry.TakeSilent(absl::Now(), absl::Seconds(5))) { ... }
//
// Registration is idempotent: a retried request from the same host, pid and
// rendezvous port (its reply was lost) gets the same id, not a second entry
// whose timeout would get the real worker's pid killed. When a targets file
// is set, the workers' /metrics addresses are rewritten to it (Prometheus
// file_sd JSON, built as JSON so an address stays one string) whenever the
// set of workers changes; a failed write is logged, never fatal.
#ifndef LETHE_SERVICES_COORDINATOR_WORKER_REGISTRY_H_
#define LETHE_SERVICES_COORDINATOR_WORKER_REGISTRY_H_

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "lethe/v1/worker_service.pb.h"
#include "services/coordinator/scheduler.h"

namespace lethe {

struct RegisteredWorker {
  // "workers/N-R": N counts up from 1, R is 128 random bits in hex (ids
  // cannot be guessed).
  std::string id;
  std::string host;
  int store_port = 0;
  std::string metrics_address;
  v1::Device device = v1::CPU;  // CPU or CUDA (any cuda:N).
  uint64_t memory_bytes = 0;    // What one attempt may use; 0: unknown.
  pid_t pid = 0;
  absl::Time last_heartbeat;  // On the caller's clock (monotonic_clock.h).
  int64_t attempt_id = 0;     // The attempt it is part of; 0 when idle.
  // Its rank's order: sent with every heartbeat reply until the worker
  // acknowledges it by reporting the attempt (a lost reply is sent again).
  std::optional<v1::Attempt> to_run;
  bool order_sent = false;
  bool acknowledged = false;
};

class WorkerRegistry {
 public:
  // `targets_file` empty: no scrape targets file.
  explicit WorkerRegistry(std::string targets_file);

  struct Registration {
    std::string worker_id;
    bool added = false;  // False for a retried registration.
  };
  // INVALID_ARGUMENT naming the field for a missing host, a port outside
  // [1, 65535] or an unknown device.
  absl::StatusOr<Registration> Register(
      const v1::RegisterWorkerRequest& request, absl::Time now);

  // The registered workers of `device` and the memory they offer.
  struct MemoryCensus {
    int workers = 0;
    int unknown = 0;  // Workers that reported no memory.
    uint64_t largest_bytes = 0;
  };
  MemoryCensus Memory(v1::Device device) const;

  // Null when no worker has the id (never registered, or dropped).
  RegisteredWorker* Find(const std::string& worker_id);

  // Removes the workers last heard from more than `timeout` before `now`
  // and returns them.
  std::vector<RegisteredWorker> TakeSilent(absl::Time now,
                                           absl::Duration timeout);

  // Gives `worker_id` its rank's order of `order.attempt_id()`, to be sent
  // until acknowledged.
  void Assign(const std::string& worker_id, v1::Attempt order);
  // Frees `worker_id` if it still counts itself in `attempt_id`.
  void Release(const std::string& worker_id, int64_t attempt_id);

  // Ids of the workers in no attempt, in id order.
  std::vector<std::string> IdleIds() const;
  // The idle workers with their devices, and every worker counted by
  // device: the scheduler's view.
  std::vector<IdleWorker> Idle() const;
  std::map<v1::Device, int> RegisteredByDevice() const;

  struct Counts {
    int registered = 0;
    int healthy = 0;  // Heard from within `healthy_within`.
    int busy = 0;
  };
  Counts Count(absl::Time now, absl::Duration healthy_within) const;

 private:
  void WriteTargets() const;

  std::string targets_file_;
  std::map<std::string, RegisteredWorker> workers_;
  int64_t next_number_ = 1;
};

}  // namespace lethe

#endif  // LETHE_SERVICES_COORDINATOR_WORKER_REGISTRY_H_
