#include "services/coordinator/worker_registry.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "libs/auth/token_auth.h"
#include "libs/files/file_io.h"
#include "libs/jobs/compute_device.h"
#include "libs/logging/logging.h"
#include "libs/status/status_macros.h"
#include "nlohmann/json.hpp"

namespace lethe {

WorkerRegistry::WorkerRegistry(std::string targets_file)
    : targets_file_(std::move(targets_file)) {}

absl::StatusOr<WorkerRegistry::Registration> WorkerRegistry::Register(
    const v1::RegisterWorkerRequest& request, absl::Time now) {
  if (request.host().empty()) {
    return absl::InvalidArgumentError("host: required");
  }
  if (request.store_port() <= 0 || request.store_port() > 65535) {
    return absl::InvalidArgumentError(absl::StrCat(
        "store_port: must be in [1, 65535], got ", request.store_port()));
  }
  ASSIGN_OR_RETURN(
      const ComputeDevice device,
      ParseComputeDevice(request.device().empty() ? "cpu" : request.device()));
  for (auto& [id, known] : workers_) {
    if (known.host == request.host() && known.pid == request.pid() &&
        known.store_port == request.store_port()) {
      known.last_heartbeat = now;
      known.metrics_address = request.metrics_address();
      known.device = device.kind;
      known.memory_bytes = request.memory_bytes();
      WriteTargets();
      return Registration{.worker_id = id, .added = false};
    }
  }
  RegisteredWorker worker;
  // Unguessable, so that a heartbeat cannot be forged for a worker whose id
  // the caller was not told; the number keeps registration order.
  worker.id = absl::StrCat("workers/", next_number_++, "-", RandomHex(16));
  worker.host = request.host();
  worker.pid = request.pid();
  worker.store_port = request.store_port();
  worker.metrics_address = request.metrics_address();
  worker.device = device.kind;
  worker.memory_bytes = request.memory_bytes();
  worker.last_heartbeat = now;
  Registration registration{.worker_id = worker.id, .added = true};
  workers_[worker.id] = std::move(worker);
  WriteTargets();
  return registration;
}

WorkerRegistry::MemoryCensus WorkerRegistry::Memory(v1::Device device) const {
  MemoryCensus census;
  for (const auto& [id, worker] : workers_) {
    if (worker.device != device) continue;
    ++census.workers;
    if (worker.memory_bytes == 0) {
      ++census.unknown;
    } else {
      census.largest_bytes =
          std::max(census.largest_bytes, worker.memory_bytes);
    }
  }
  return census;
}

RegisteredWorker* WorkerRegistry::Find(const std::string& worker_id) {
  auto found = workers_.find(worker_id);
  return found == workers_.end() ? nullptr : &found->second;
}

std::vector<RegisteredWorker> WorkerRegistry::TakeSilent(
    absl::Time now, absl::Duration timeout) {
  std::vector<RegisteredWorker> silent;
  for (auto it = workers_.begin(); it != workers_.end();) {
    if (now - it->second.last_heartbeat <= timeout) {
      ++it;
      continue;
    }
    silent.push_back(std::move(it->second));
    it = workers_.erase(it);
  }
  if (!silent.empty()) WriteTargets();
  return silent;
}

void WorkerRegistry::Assign(const std::string& worker_id, v1::Attempt order) {
  RegisteredWorker* worker = Find(worker_id);
  if (worker == nullptr) return;
  worker->attempt_id = order.attempt_id();
  worker->to_run = std::move(order);
  worker->order_sent = false;
  worker->acknowledged = false;
}

void WorkerRegistry::Release(const std::string& worker_id, int64_t attempt_id) {
  RegisteredWorker* worker = Find(worker_id);
  if (worker == nullptr || worker->attempt_id != attempt_id) return;
  worker->attempt_id = 0;
  worker->to_run.reset();
}

std::vector<std::string> WorkerRegistry::IdleIds() const {
  std::vector<std::string> idle;
  for (const auto& [id, worker] : workers_) {
    if (worker.attempt_id == 0) idle.push_back(id);
  }
  return idle;
}

std::vector<IdleWorker> WorkerRegistry::Idle() const {
  std::vector<IdleWorker> idle;
  for (const auto& [id, worker] : workers_) {
    if (worker.attempt_id == 0) idle.push_back({id, worker.device});
  }
  return idle;
}

std::map<v1::Device, int> WorkerRegistry::RegisteredByDevice() const {
  std::map<v1::Device, int> registered;
  for (const auto& [id, worker] : workers_) ++registered[worker.device];
  return registered;
}

WorkerRegistry::Counts WorkerRegistry::Count(
    absl::Time now, absl::Duration healthy_within) const {
  Counts counts;
  counts.registered = static_cast<int>(workers_.size());
  for (const auto& [id, worker] : workers_) {
    counts.healthy += now - worker.last_heartbeat <= healthy_within;
    counts.busy += worker.attempt_id != 0;
  }
  return counts;
}

void WorkerRegistry::WriteTargets() const {
  if (targets_file_.empty()) return;
  nlohmann::json targets = nlohmann::json::array();
  for (const auto& [id, worker] : workers_) {
    if (!worker.metrics_address.empty()) {
      targets.push_back(worker.metrics_address);
    }
  }
  const std::string json =
      nlohmann::json::array(
          {{{"targets", targets}, {"labels", {{"component", "worker"}}}}})
          .dump() +
      "\n";
  const absl::Status written = WriteFileAtomically(targets_file_, json);
  if (!written.ok()) {
    LETHE_LOG(ERROR) << "writing the workers' scrape targets: " << written;
  }
}

}  // namespace lethe
