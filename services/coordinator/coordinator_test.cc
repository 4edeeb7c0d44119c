// The coordinator driven by hand in one process: a real SQLite job store,
// workers that are only heartbeats, Tick() called by the test. Covers the
// job state machine's edges (restarts and their budget, cancellation in
// each state, deadlines of queued and running jobs) and a store that fails.
#include "services/coordinator/coordinator.h"

#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "libs/jobs/job_store.h"
#include "libs/sqlite/sqlite_db.h"
#include "prometheus/registry.h"
#include "services/coordinator/coordinator_metrics.h"

namespace lethe {
namespace {

class CoordinatorTest : public testing::Test {
 protected:
  void SetUp() override {
    root_ = testing::TempDir() + "/coordinator_test";
    std::filesystem::remove_all(root_);
    for (const char* dir : {"/model", "/data", "/runs"}) {
      std::filesystem::create_directories(root_ + dir);
    }
    for (const char* file : {"/model/config.json", "/model/tokenizer.model",
                             "/data/forget10.json", "/data/retain90.json"}) {
      std::ofstream(root_ + file) << "{}";
    }
    database_ = root_ + "/jobs.sqlite";
    absl::StatusOr<std::unique_ptr<JobStore>> store = JobStore::Open(database_);
    ASSERT_TRUE(store.ok()) << store.status();
    metrics_ = std::make_unique<CoordinatorMetrics>(registry_);
    coordinator_ = std::make_unique<Coordinator>(
        *std::move(store), CoordinatorOptions{.address = "127.0.0.1:1",
                                              .worker_timeout = absl::Hours(1),
                                              .metrics = metrics_.get()});
  }

  v1::JobSpec Spec(const std::string& name) const {
    v1::JobSpec spec;
    spec.set_model_dir(root_ + "/model");
    spec.set_data_dir(root_ + "/data");
    spec.set_forget_split("forget10");
    spec.set_method(v1::NPO_RT);
    spec.set_output_dir(root_ + "/runs/" + name);
    return spec;
  }

  std::string Create(const v1::JobSpec& spec) {
    v1::CreateJobRequest request;
    *request.mutable_spec() = spec;
    absl::StatusOr<v1::Job> job = coordinator_->CreateJob(request);
    EXPECT_TRUE(job.ok()) << job.status();
    return job.ok() ? job->name() : "";
  }

  // A worker with process id `pid` (each test's workers differ in it).
  std::string Register(int pid = 100) {
    v1::RegisterWorkerRequest request;
    request.set_host("127.0.0.1");
    request.set_pid(pid);
    request.set_store_port(29500);
    absl::StatusOr<v1::RegisterWorkerResponse> response =
        coordinator_->RegisterWorker(request);
    EXPECT_TRUE(response.ok()) << response.status();
    return response->worker_id();
  }

  // One heartbeat reporting `attempt_id` in `state` (0: no attempt).
  v1::HeartbeatResponse Beat(
      const std::string& worker, int64_t attempt_id = 0,
      v1::AttemptStatus::State state = v1::AttemptStatus::RUNNING) {
    v1::HeartbeatRequest request;
    request.set_worker_id(worker);
    if (attempt_id != 0) {
      request.mutable_attempt()->set_attempt_id(attempt_id);
      request.mutable_attempt()->set_state(state);
      if (state == v1::AttemptStatus::FAILED) {
        request.mutable_attempt()->set_error("injected failure");
      }
    }
    return coordinator_->Heartbeat(request);
  }

  v1::Job Get(const std::string& name) {
    absl::StatusOr<v1::Job> job = coordinator_->GetJob(name);
    EXPECT_TRUE(job.ok()) << job.status();
    return job.ok() ? *job : v1::Job();
  }

  // Ticks until the scheduler has read the queue again (it rereads it at
  // least once a second).
  void TickAfterRescan() {
    absl::SleepFor(absl::Milliseconds(1050));
    coordinator_->Tick();
  }

  // The worker takes the order the last tick gave it; returns its attempt.
  int64_t TakeOrder(const std::string& worker) {
    const v1::HeartbeatResponse response = Beat(worker);
    EXPECT_TRUE(response.has_run()) << response.DebugString();
    return response.run().attempt_id();
  }

  double StoreErrors(const std::string& operation) {
    for (const prometheus::MetricFamily& family : registry_.Collect()) {
      if (family.name != "lethe_job_store_errors_total") continue;
      for (const prometheus::ClientMetric& metric : family.metric) {
        for (const prometheus::ClientMetric::Label& label : metric.label) {
          if (label.name == "operation" && label.value == operation) {
            return metric.counter.value;
          }
        }
      }
    }
    return 0;
  }

  std::string root_, database_;
  prometheus::Registry registry_;
  std::unique_ptr<CoordinatorMetrics> metrics_;
  std::unique_ptr<Coordinator> coordinator_;
};

// A job whose memory plan no registered worker can hold is refused at
// CreateJob with the numbers; one that fits, or a device whose workers did
// not say their memory, is accepted.
TEST_F(CoordinatorTest, AJobThatFitsNoWorkersMemoryIsRefusedWithTheNumbers) {
  // Llama-3.2-1B's shape: about 1.2B parameters, 18+ GiB to train in fp32.
  std::ofstream(root_ + "/model/config.json")
      << R"({"model_type": "llama", "hidden_size": 2048,
             "intermediate_size": 8192, "num_attention_heads": 32,
             "num_hidden_layers": 16, "num_key_value_heads": 8,
             "head_dim": 64, "rms_norm_eps": 1e-05, "rope_theta": 500000.0,
             "tie_word_embeddings": true, "vocab_size": 128256,
             "max_position_embeddings": 131072})";
  auto create = [&](const std::string& name) {
    v1::CreateJobRequest request;
    *request.mutable_spec() = Spec(name);
    return coordinator_->CreateJob(request);
  };
  // No worker yet: nothing to compare with.
  ASSERT_TRUE(create("before_workers").ok());

  v1::RegisterWorkerRequest small;
  small.set_host("127.0.0.1");
  small.set_pid(201);
  small.set_store_port(29500);
  small.set_memory_bytes(uint64_t{8} << 30);
  ASSERT_TRUE(coordinator_->RegisterWorker(small).ok());
  absl::StatusOr<v1::Job> refused = create("too_big");
  ASSERT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition)
      << refused.status();
  EXPECT_NE(refused.status().message().find("GiB per rank"), std::string::npos)
      << refused.status();
  EXPECT_NE(refused.status().message().find("the largest offers 8.00 GiB"),
            std::string::npos)
      << refused.status();
  EXPECT_FALSE(std::filesystem::exists(root_ + "/runs/too_big/.lethe-job.json"))
      << "a refused job claims no output directory";

  v1::JobSpec lora = Spec("lora_fits");
  lora.mutable_lora()->set_rank(8);
  lora.set_weights_dtype("bf16");
  lora.set_max_length(64);
  lora.set_per_device_batch_size(1);
  lora.mutable_memory()->set_loss_chunk_tokens(32);
  v1::CreateJobRequest lora_request;
  *lora_request.mutable_spec() = lora;
  const absl::StatusOr<v1::Job> lora_job =
      coordinator_->CreateJob(lora_request);
  EXPECT_TRUE(lora_job.ok())
      << "LoRA over bf16 weights, short sequences: under 8 GiB; "
      << lora_job.status();

  v1::RegisterWorkerRequest large = small;
  large.set_pid(202);
  large.set_memory_bytes(uint64_t{256} << 30);
  ASSERT_TRUE(coordinator_->RegisterWorker(large).ok());
  EXPECT_TRUE(create("fits_the_large_worker").ok());

  // CUDA jobs are compared with CUDA workers only, and a worker that did not
  // say its memory (0) might hold anything.
  v1::RegisterWorkerRequest gpu = small;
  gpu.set_pid(203);
  gpu.set_device("cuda:0");
  ASSERT_TRUE(coordinator_->RegisterWorker(gpu).ok());
  v1::JobSpec cuda = Spec("cuda_job");
  cuda.set_device(v1::CUDA);
  v1::CreateJobRequest cuda_request;
  *cuda_request.mutable_spec() = cuda;
  EXPECT_EQ(coordinator_->CreateJob(cuda_request).status().code(),
            absl::StatusCode::kFailedPrecondition);
  v1::RegisterWorkerRequest unknown = gpu;
  unknown.set_pid(204);
  unknown.set_memory_bytes(0);
  ASSERT_TRUE(coordinator_->RegisterWorker(unknown).ok());
  cuda_request.mutable_spec()->set_output_dir(root_ + "/runs/cuda_job_2");
  EXPECT_TRUE(coordinator_->CreateJob(cuda_request).ok());
}

TEST_F(CoordinatorTest, HigherPriorityStartsFirstOnTheOnlyWorker) {
  const std::string worker = Register();
  const std::string first = Create(Spec("first"));
  v1::JobSpec urgent = Spec("urgent");
  urgent.set_priority(10);
  const std::string second = Create(urgent);
  coordinator_->Tick();
  const v1::HeartbeatResponse response = Beat(worker);
  ASSERT_TRUE(response.has_run());
  EXPECT_EQ(response.run().job(), second);
  EXPECT_EQ(Get(second).state(), v1::Job::RUNNING);
  EXPECT_EQ(Get(first).state(), v1::Job::QUEUED);
}

TEST_F(CoordinatorTest, AFailedAttemptRestartsWithinItsBudgetThenFails) {
  const std::string worker = Register();
  v1::JobSpec spec = Spec("budget");
  spec.mutable_run_policy()->set_max_restarts(1);
  const std::string job = Create(spec);

  coordinator_->Tick();
  v1::HeartbeatResponse order = Beat(worker);
  ASSERT_TRUE(order.has_run());
  EXPECT_EQ(order.run().generation(), 1);
  int64_t attempt = order.run().attempt_id();
  Beat(worker, attempt, v1::AttemptStatus::FAILED);
  coordinator_->Tick();
  v1::Job seen = Get(job);
  EXPECT_EQ(seen.state(), v1::Job::RUNNING)
      << "queued again and, on the now idle worker, started again: "
      << seen.DebugString();
  EXPECT_EQ(seen.restart_count(), 1);

  order = Beat(worker);
  ASSERT_TRUE(order.has_run());
  EXPECT_EQ(order.run().generation(), 2) << "the restart fences out the first";
  EXPECT_EQ(seen.attempt_generation(), 2);
  attempt = order.run().attempt_id();
  Beat(worker, attempt, v1::AttemptStatus::FAILED);
  coordinator_->Tick();
  seen = Get(job);
  EXPECT_EQ(seen.state(), v1::Job::FAILED) << seen.DebugString();
  EXPECT_EQ(seen.history(seen.history_size() - 1).reason(), "RANK_FAILED");
}

TEST_F(CoordinatorTest, ASucceededAttemptEndsTheJob) {
  const std::string worker = Register();
  const std::string job = Create(Spec("success"));
  coordinator_->Tick();
  const int64_t attempt = TakeOrder(worker);
  Beat(worker, attempt, v1::AttemptStatus::SUCCEEDED);
  coordinator_->Tick();
  EXPECT_EQ(Get(job).state(), v1::Job::SUCCEEDED);
}

TEST_F(CoordinatorTest, CancelInEachState) {
  // QUEUED: at once.
  const std::string queued = Create(Spec("queued"));
  absl::StatusOr<v1::Job> cancelled = coordinator_->CancelJob(queued);
  ASSERT_TRUE(cancelled.ok()) << cancelled.status();
  EXPECT_EQ(cancelled->state(), v1::Job::CANCELLED);
  // Final: refused.
  EXPECT_EQ(coordinator_->CancelJob(queued).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(coordinator_->CancelJob("jobs/99").status().code(),
            absl::StatusCode::kNotFound);

  // RUNNING: CANCELLING until the rank stops, then CANCELLED.
  const std::string worker = Register();
  const std::string running = Create(Spec("running"));
  coordinator_->Tick();
  const int64_t attempt = TakeOrder(worker);
  cancelled = coordinator_->CancelJob(running);
  ASSERT_TRUE(cancelled.ok()) << cancelled.status();
  EXPECT_EQ(cancelled->state(), v1::Job::CANCELLING);
  // CANCELLING: unchanged.
  EXPECT_EQ(coordinator_->CancelJob(running)->state(), v1::Job::CANCELLING);
  const v1::HeartbeatResponse told = Beat(worker, attempt);
  EXPECT_EQ(told.abort_attempt_id(), attempt) << "the rank is told to stop";
  coordinator_->Tick();
  EXPECT_EQ(Get(running).state(), v1::Job::CANCELLING);
  Beat(worker);  // The worker no longer runs it.
  coordinator_->Tick();
  EXPECT_EQ(Get(running).state(), v1::Job::CANCELLED);
}

// A heartbeat reply that carried an order is lost: the order goes again
// until the worker reports the attempt. A worker that then stops reporting
// it (it lost the rank) ends the attempt at once, and the job restarts.
TEST_F(CoordinatorTest, ALostOrderIsSentAgainAndALostRankEndsTheAttempt) {
  const std::string worker = Register();
  const std::string job = Create(Spec("lost_order"));
  coordinator_->Tick();
  const int64_t attempt = TakeOrder(worker);  // This reply is "lost".
  const v1::HeartbeatResponse again = Beat(worker);
  ASSERT_TRUE(again.has_run()) << "the unacknowledged order is sent again";
  EXPECT_EQ(again.run().attempt_id(), attempt);
  EXPECT_FALSE(Beat(worker, attempt).has_run()) << "acknowledged: no more";
  EXPECT_EQ(Get(job).state(), v1::Job::RUNNING);

  Beat(worker);  // The worker no longer runs it.
  coordinator_->Tick();
  const v1::Job seen = Get(job);
  EXPECT_EQ(seen.restart_count(), 1) << seen.DebugString();
  EXPECT_EQ(seen.history(seen.history_size() - 2).reason(), "RANK_LOST")
      << seen.DebugString();
}

TEST_F(CoordinatorTest, ARetriedRegistrationIsTheSameWorker) {
  const std::string first = Register(/*pid=*/7);
  EXPECT_EQ(Register(/*pid=*/7), first);
  EXPECT_NE(Register(/*pid=*/8), first);
}

// Each job writes its own output directory: another job naming it is
// refused naming the owner, a retry of the same request is not, and
// deleting the owner frees the directory.
TEST_F(CoordinatorTest, AnOutputDirectoryBelongsToOneJob) {
  const v1::JobSpec spec = Spec("claimed");
  v1::CreateJobRequest request;
  *request.mutable_spec() = spec;
  request.set_request_id("req-1");
  absl::StatusOr<v1::Job> owner = coordinator_->CreateJob(request);
  ASSERT_TRUE(owner.ok()) << owner.status();
  absl::StatusOr<v1::Job> retry = coordinator_->CreateJob(request);
  ASSERT_TRUE(retry.ok()) << retry.status();
  EXPECT_EQ(retry->name(), owner->name());

  request.set_request_id("req-2");
  absl::StatusOr<v1::Job> other = coordinator_->CreateJob(request);
  EXPECT_EQ(other.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(other.status().message().find("belongs to " + owner->name()),
            std::string::npos)
      << other.status();

  ASSERT_TRUE(coordinator_->CancelJob(owner->name()).ok());
  ASSERT_TRUE(coordinator_->DeleteJob(owner->name()).ok());
  other = coordinator_->CreateJob(request);
  EXPECT_TRUE(other.ok()) << "the deleted job's directory is free again: "
                          << other.status();
}

// Another tenant's job holding the directory is refused without its name
// (job names would tell one tenant about another's work); the owner's own
// tenant is told which job holds it.
TEST_F(CoordinatorTest, AnotherTenantsClaimDoesNotNameItsJob) {
  v1::CreateJobRequest request;
  *request.mutable_spec() = Spec("shared-out");
  request.set_request_id("same-id");
  absl::StatusOr<v1::Job> owner =
      coordinator_->CreateJob(request, /*tenant=*/"team-b");
  ASSERT_TRUE(owner.ok()) << owner.status();

  // The same request_id in another tenant is not a retry of B's request.
  absl::StatusOr<v1::Job> other =
      coordinator_->CreateJob(request, /*tenant=*/"team-a");
  EXPECT_EQ(other.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(other.status().message().find("another tenant's job"),
            std::string::npos)
      << other.status();
  EXPECT_EQ(other.status().message().find(owner->name()), std::string::npos)
      << other.status();

  request.set_request_id("second");
  other = coordinator_->CreateJob(request, /*tenant=*/"team-b");
  EXPECT_EQ(other.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(other.status().message().find("belongs to " + owner->name()),
            std::string::npos)
      << other.status();
}

TEST_F(CoordinatorTest, AQueuedJobFailsAtItsDeadline) {
  v1::JobSpec spec = Spec("queue_deadline");
  spec.mutable_run_policy()->mutable_deadline()->set_seconds(1);
  const std::string job = Create(spec);  // No worker: it stays queued.
  coordinator_->Tick();
  EXPECT_EQ(Get(job).state(), v1::Job::QUEUED);
  TickAfterRescan();
  const v1::Job seen = Get(job);
  EXPECT_EQ(seen.state(), v1::Job::FAILED);
  EXPECT_EQ(seen.history(seen.history_size() - 1).reason(),
            "DEADLINE_EXCEEDED");
}

TEST_F(CoordinatorTest, ARunningJobFailsAtItsDeadlineWithoutRestarting) {
  const std::string worker = Register();
  v1::JobSpec spec = Spec("run_deadline");
  spec.mutable_run_policy()->mutable_deadline()->set_seconds(1);
  spec.mutable_run_policy()->set_max_restarts(5);
  const std::string job = Create(spec);
  coordinator_->Tick();
  const int64_t attempt = TakeOrder(worker);
  absl::SleepFor(absl::Milliseconds(1050));
  coordinator_->Tick();  // Past the deadline: the attempt is stopped.
  EXPECT_EQ(Beat(worker, attempt).abort_attempt_id(), attempt);
  Beat(worker);
  coordinator_->Tick();
  const v1::Job seen = Get(job);
  EXPECT_EQ(seen.state(), v1::Job::FAILED) << seen.DebugString();
  EXPECT_EQ(seen.restart_count(), 0);
  EXPECT_EQ(seen.history(seen.history_size() - 1).reason(),
            "DEADLINE_EXCEEDED");
}

// A store whose writes fail (a trigger aborts every update of the first
// job's row): the job is not launched while it cannot be recorded RUNNING;
// an attempt's end that cannot be recorded is kept, with its outcome, and
// recorded once the store works; every failure is counted.
TEST_F(CoordinatorTest, AFailingStoreNeverLaunchesOrLosesAnAttempt) {
  absl::StatusOr<std::unique_ptr<SqliteDb>> saboteur =
      SqliteDb::Open(database_);
  ASSERT_TRUE(saboteur.ok()) << saboteur.status();
  auto break_writes = [&] {
    ASSERT_TRUE((*saboteur)
                    ->Execute("CREATE TRIGGER fail BEFORE UPDATE ON jobs "
                              "WHEN OLD.id = 1 "
                              "BEGIN SELECT RAISE(ABORT, 'injected'); END")
                    .ok());
  };
  auto mend_writes = [&] {
    ASSERT_TRUE((*saboteur)->Execute("DROP TRIGGER fail").ok());
  };

  const std::string worker = Register();
  const std::string job = Create(Spec("store"));
  ASSERT_EQ(job, "jobs/1");
  break_writes();
  coordinator_->Tick();
  EXPECT_FALSE(Beat(worker).has_run())
      << "a job still QUEUED in the store must not run";
  EXPECT_EQ(Get(job).state(), v1::Job::QUEUED);
  EXPECT_GE(StoreErrors("transition"), 1);
  mend_writes();
  TickAfterRescan();
  const int64_t attempt = TakeOrder(worker);
  EXPECT_EQ(Get(job).state(), v1::Job::RUNNING);

  // The attempt's end cannot be recorded: the job stays RUNNING, and the
  // end is recorded (SUCCEEDED, not a retry or a failure) once it can be.
  // The worker's rank is over, so another job may use it meanwhile.
  const std::string next = Create(Spec("next"));
  break_writes();
  Beat(worker, attempt, v1::AttemptStatus::SUCCEEDED);
  const double errors = StoreErrors("transition");
  coordinator_->Tick();
  EXPECT_EQ(Get(job).state(), v1::Job::RUNNING);
  EXPECT_GT(StoreErrors("transition"), errors);
  EXPECT_EQ(Get(next).state(), v1::Job::RUNNING) << "the worker is free";
  const v1::HeartbeatResponse order = Beat(worker);
  ASSERT_TRUE(order.has_run());
  EXPECT_EQ(order.run().job(), next);
  mend_writes();
  absl::SleepFor(absl::Milliseconds(250));  // Past the first backoff.
  coordinator_->Tick();
  const v1::Job recorded = Get(job);
  EXPECT_EQ(recorded.state(), v1::Job::SUCCEEDED) << recorded.DebugString();
  EXPECT_EQ(recorded.restart_count(), 0);
}

// A damaged job row neither stops the coordinator from starting nor the
// scheduler from starting the jobs around it; it reads FAILED (DATA_LOSS)
// and can be deleted.
TEST_F(CoordinatorTest, AnUnreadableJobRowIsFailedAndTheRestRun) {
  const std::string broken = Create(Spec("broken"));
  const std::string queued = Create(Spec("queued"));
  coordinator_.reset();
  {
    absl::StatusOr<std::unique_ptr<SqliteDb>> db = SqliteDb::Open(database_);
    ASSERT_TRUE(db.ok()) << db.status();
    ASSERT_TRUE((*db)
                    ->Execute("UPDATE jobs SET job = x'ffffffff', state = 2 "
                              "WHERE id = 1")  // Damaged while RUNNING.
                    .ok());
  }
  absl::StatusOr<std::unique_ptr<JobStore>> store = JobStore::Open(database_);
  ASSERT_TRUE(store.ok()) << store.status();
  coordinator_ = std::make_unique<Coordinator>(
      *std::move(store), CoordinatorOptions{.address = "127.0.0.1:1",
                                            .worker_timeout = absl::Hours(1),
                                            .metrics = metrics_.get()});
  ASSERT_TRUE(coordinator_->RecoverAfterRestart().ok());
  const std::string worker = Register();
  coordinator_->Tick();
  const v1::HeartbeatResponse order = Beat(worker);
  ASSERT_TRUE(order.has_run()) << order.DebugString();
  EXPECT_EQ(order.run().job(), queued);
  EXPECT_EQ(Get(queued).state(), v1::Job::RUNNING);
  const v1::Job seen = Get(broken);
  EXPECT_EQ(seen.state(), v1::Job::FAILED);
  EXPECT_EQ(seen.history(seen.history_size() - 1).reason(), "DATA_LOSS");
  EXPECT_TRUE(coordinator_->DeleteJob(broken).ok());
  // Its record no longer names its directory; the claim left there is
  // stale once the job is gone, and a new job may take the directory.
  EXPECT_FALSE(Create(Spec("broken")).empty());
}

}  // namespace
}  // namespace lethe
