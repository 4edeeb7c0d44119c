#include "services/coordinator/worker_registry.h"

#include <filesystem>
#include <fstream>
#include <string>

#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace lethe {
namespace {

v1::RegisterWorkerRequest Request(int pid, int port,
                                  const std::string& device = "cpu") {
  v1::RegisterWorkerRequest request;
  request.set_host("10.0.0.7");
  request.set_pid(pid);
  request.set_store_port(port);
  request.set_device(device);
  request.set_metrics_address("10.0.0.7:" + std::to_string(9100 + pid));
  return request;
}

std::string NewDir(const std::string& name) {
  const std::string dir = testing::TempDir() + "/" + name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

nlohmann::json ReadTargets(const std::string& path) {
  std::ifstream file(path);
  return nlohmann::json::parse(file);
}

const absl::Time kStart = absl::FromUnixSeconds(1'800'000'000);

TEST(WorkerRegistryTest, RegistrationIsValidatedAndIdempotent) {
  WorkerRegistry registry("");
  v1::RegisterWorkerRequest no_host = Request(1, 29500);
  no_host.clear_host();
  EXPECT_EQ(registry.Register(no_host, kStart).status().code(),
            absl::StatusCode::kInvalidArgument);
  for (int port : {0, -1, 65536}) {
    const absl::Status status =
        registry.Register(Request(1, port), kStart).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << port;
    EXPECT_NE(status.message().find("store_port"), std::string::npos);
  }
  EXPECT_FALSE(registry.Register(Request(1, 29500, "tpu"), kStart).ok());

  auto first = registry.Register(Request(1, 29500), kStart);
  ASSERT_TRUE(first.ok()) << first.status();
  // "workers/<registration number>-<128 random bits in hex>".
  EXPECT_EQ(first->worker_id.substr(0, 10), "workers/1-");
  EXPECT_EQ(first->worker_id.size(), 10u + 32u) << first->worker_id;
  EXPECT_TRUE(first->added);
  auto retried = registry.Register(Request(1, 29500), kStart);
  ASSERT_TRUE(retried.ok());
  EXPECT_EQ(retried->worker_id, first->worker_id);
  EXPECT_FALSE(retried->added);
  // Another process, or the same one on another port, is another worker.
  const std::string second =
      registry.Register(Request(2, 29500), kStart)->worker_id;
  EXPECT_EQ(second.substr(0, 10), "workers/2-");
  EXPECT_NE(second.substr(10), first->worker_id.substr(10))
      << "the random part repeats";
  EXPECT_EQ(
      registry.Register(Request(1, 29501), kStart)->worker_id.substr(0, 10),
      "workers/3-");
  EXPECT_EQ(registry.Count(kStart, absl::Seconds(1)).registered, 3);
}

TEST(WorkerRegistryTest, SilentWorkersAreTakenOutAndTheRestStay) {
  WorkerRegistry registry("");
  const std::string quiet = registry.Register(Request(1, 1), kStart)->worker_id;
  const std::string loud = registry.Register(Request(2, 2), kStart)->worker_id;
  registry.Find(loud)->last_heartbeat = kStart + absl::Seconds(4);
  EXPECT_TRUE(
      registry.TakeSilent(kStart + absl::Seconds(5), absl::Seconds(5)).empty())
      << "exactly the timeout is not yet silent";
  const auto taken =
      registry.TakeSilent(kStart + absl::Seconds(6), absl::Seconds(5));
  ASSERT_EQ(taken.size(), 1u);
  EXPECT_EQ(taken[0].id, quiet);
  EXPECT_EQ(taken[0].pid, 1);
  EXPECT_EQ(registry.Find(quiet), nullptr);
  EXPECT_NE(registry.Find(loud), nullptr);
  // A dropped worker that registers again is a new worker.
  EXPECT_EQ(registry.Register(Request(1, 1), kStart)->worker_id.substr(0, 10),
            "workers/3-");
}

TEST(WorkerRegistryTest, AssignAndReleaseTrackTheAttempt) {
  WorkerRegistry registry("");
  const std::string cpu = registry.Register(Request(1, 1), kStart)->worker_id;
  const std::string gpu =
      registry.Register(Request(2, 2, "cuda:1"), kStart)->worker_id;
  v1::Attempt order;
  order.set_attempt_id(42);
  order.set_rank(0);
  registry.Assign(gpu, order);
  const RegisteredWorker& assigned = *registry.Find(gpu);
  EXPECT_EQ(assigned.attempt_id, 42);
  ASSERT_TRUE(assigned.to_run.has_value());
  EXPECT_FALSE(assigned.order_sent);
  EXPECT_EQ(registry.IdleIds(), std::vector<std::string>{cpu});
  ASSERT_EQ(registry.Idle().size(), 1u);
  EXPECT_EQ(registry.Idle()[0].device, v1::CPU);
  const auto by_device = registry.RegisteredByDevice();
  EXPECT_EQ(by_device.at(v1::CPU), 1);
  EXPECT_EQ(by_device.at(v1::CUDA), 1);
  const WorkerRegistry::Counts counts =
      registry.Count(kStart + absl::Seconds(2), absl::Seconds(1));
  EXPECT_EQ(counts.registered, 2);
  EXPECT_EQ(counts.healthy, 0);
  EXPECT_EQ(counts.busy, 1);

  registry.Release(gpu, 41);  // Not its attempt: nothing changes.
  EXPECT_EQ(registry.Find(gpu)->attempt_id, 42);
  registry.Release(gpu, 42);
  EXPECT_EQ(registry.Find(gpu)->attempt_id, 0);
  EXPECT_FALSE(registry.Find(gpu)->to_run.has_value());
  EXPECT_EQ(registry.IdleIds().size(), 2u);
}

// The file_sd file Prometheus reads stays one target per worker whatever
// address a worker reports: quotes cannot add targets or labels.
TEST(WorkerRegistryTest, TargetsFileFollowsTheWorkersAndIsJsonEscaped) {
  const std::string path = NewDir("worker_registry_targets") + "/targets.json";
  WorkerRegistry registry(path);
  v1::RegisterWorkerRequest hostile = Request(1, 1);
  hostile.set_metrics_address(
      R"(10.0.0.1:9100"], "labels": {}}, {"targets": ["169.254.169.254:80)");
  ASSERT_TRUE(registry.Register(hostile, kStart).ok());
  ASSERT_TRUE(registry.Register(Request(2, 2), kStart + absl::Seconds(9)).ok());
  nlohmann::json targets = ReadTargets(path);
  ASSERT_EQ(targets.size(), 1u) << targets.dump();
  EXPECT_EQ(targets[0]["targets"],
            nlohmann::json::array(
                {hostile.metrics_address(), Request(2, 2).metrics_address()}));
  EXPECT_EQ(targets[0]["labels"]["component"], "worker");

  registry.TakeSilent(kStart + absl::Seconds(10), absl::Seconds(5));
  targets = ReadTargets(path);
  EXPECT_EQ(targets[0]["targets"],
            nlohmann::json::array({Request(2, 2).metrics_address()}));
}

}  // namespace
}  // namespace lethe
