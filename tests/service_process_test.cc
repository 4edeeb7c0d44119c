// The service end to end, with real processes: lethe-coordinator (SQLite
// job store, local lethe-worker processes, c10d Gloo between them) driven
// by the `lethe` CLI and by the Jobs API over gRPC, on a tiny random model
// and tiny TOFU data.
//
// Usage: service_process_test COORDINATOR_BINARY LETHE_BINARY
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <torch/types.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "lethe/v1/jobs_service.grpc.pb.h"
#include "libs/eval/tofu_eval_fixture.h"
#include "libs/files/file_io.h"
#include "libs/model/hf_checkpoint.h"
#include "libs/model/llama_model.h"
#include "libs/model/tiny_llama.h"
#include "libs/subprocess/subprocess.h"
#include "nlohmann/json.hpp"
#include "tests/cli_runner.h"
#include "tests/coordinator_harness.h"

namespace lethe {
namespace {

std::string coordinator_binary;
std::string lethe_binary;

// The tiny model and data every job here unlearns: forget10 and retain90
// are the fixture's evaluation sets under the split names jobs use.
struct Inputs {
  std::string model_dir;
  std::string data_dir;
};

const Inputs& SharedInputs() {
  static const Inputs* inputs = [] {
    const std::string root = FreshDir("inputs");
    auto* made = new Inputs{root + "/model", root + "/data"};
    EXPECT_TRUE(WriteTinyTofuModel(made->model_dir, 7).ok());
    EXPECT_TRUE(WriteTinyTofuData(made->data_dir, 16).ok());
    std::filesystem::copy_file(made->data_dir + "/forget10_perturbed.json",
                               made->data_dir + "/forget10.json");
    std::filesystem::copy_file(made->data_dir + "/retain_perturbed.json",
                               made->data_dir + "/retain90.json");
    return made;
  }();
  return *inputs;
}

// A spec on the shared inputs; tests adjust it.
v1::JobSpec TinySpec(const std::string& output_dir) {
  const Inputs& inputs = SharedInputs();
  v1::JobSpec spec;
  spec.set_model_dir(inputs.model_dir);
  spec.set_data_dir(inputs.data_dir);
  spec.set_forget_split("forget10");
  spec.set_retain_split("retain90");
  spec.set_method(v1::NPO_RT);
  spec.mutable_optimizer()->set_learning_rate(1e-3);
  spec.mutable_optimizer()->set_warmup_epochs(0);
  spec.mutable_optimizer()->set_max_grad_norm(1);
  spec.mutable_optimizer()->set_seed(3);
  spec.set_num_epochs(2);
  spec.set_per_device_batch_size(2);
  spec.set_world_size(2);
  spec.set_threads_per_worker(1);
  spec.set_output_dir(output_dir);
  return spec;
}

grpc::Status CreateJob(v1::Jobs::Stub& jobs, const v1::JobSpec& spec,
                       v1::Job* job, const std::string& request_id = "") {
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
  v1::CreateJobRequest request;
  *request.mutable_spec() = spec;
  request.set_request_id(request_id);
  return jobs.CreateJob(&context, request, job);
}

v1::Job GetJob(v1::Jobs::Stub& jobs, const std::string& name) {
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
  v1::GetJobRequest request;
  request.set_name(name);
  v1::Job job;
  const grpc::Status status = jobs.GetJob(&context, request, &job);
  EXPECT_TRUE(status.ok()) << status.error_message();
  return job;
}

// Polls until `done(job)` or the timeout; returns the last job seen.
v1::Job WaitFor(v1::Jobs::Stub& jobs, const std::string& name,
                const std::function<bool(const v1::Job&)>& done,
                absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  v1::Job job = GetJob(jobs, name);
  while (!done(job) && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(100));
    job = GetJob(jobs, name);
  }
  return job;
}

bool IsFinal(const v1::Job& job) {
  return job.state() == v1::Job::SUCCEEDED || job.state() == v1::Job::FAILED ||
         job.state() == v1::Job::CANCELLED;
}

TEST(ServiceProcessTest, CliSubmitsWatchesAndTheModelLoads) {
  const std::string dir = FreshDir("cli");
  auto coordinator_or = RunningCoordinator::Start(
      coordinator_binary, dir + "/coordinator", {.local_workers = 2});
  ASSERT_TRUE(coordinator_or.ok()) << coordinator_or.status();
  RunningCoordinator& coordinator = **coordinator_or;
  const Inputs& inputs = SharedInputs();
  const CliResult submit =
      RunCli(lethe_binary,
             {"submit", "--coordinator=" + coordinator.address(),
              "--model=" + inputs.model_dir, "--data=" + inputs.data_dir,
              "--method=NPO_RT", "--output=" + dir + "/job", "--epochs=2",
              "--learning_rate=1e-3", "--batch_size=2", "--world_size=2",
              "--evaluate", "--eval_every_epochs=1", "--watch"});
  ASSERT_TRUE(submit.exit.success())
      << submit.stdout_text << submit.stderr_text << coordinator.Log();
  EXPECT_TRUE(absl::StrContains(submit.stdout_text, "submitted jobs/1"));
  EXPECT_TRUE(absl::StrContains(submit.stdout_text, "SUCCEEDED"));
  EXPECT_TRUE(absl::StrContains(submit.stdout_text, "forget_quality") ||
              absl::StrContains(submit.stdout_text, "model_utility"))
      << submit.stdout_text;
  const v1::Job job = GetJob(coordinator.jobs(), "jobs/1");
  EXPECT_EQ(job.state(), v1::Job::SUCCEEDED);
  EXPECT_EQ(job.output_model_dir(), dir + "/job/model");
  EXPECT_GT(job.progress().step(), 0);
  EXPECT_EQ(job.progress().step(), job.progress().total_steps());
  EXPECT_TRUE(job.evaluation_summary().contains("model_utility"));
  EXPECT_FALSE(ModelWeights(job.output_model_dir()).empty());
  EXPECT_TRUE(std::filesystem::exists(dir + "/job/eval/TOFU_EVAL.json"));
  // Both ranks evaluated after each epoch (each its share; rank 0 reports),
  // and the last of those stands for the final evaluation.
  const CliResult logs =
      RunCli(lethe_binary, {"logs", "1", "--follow=false",
                            "--coordinator=" + coordinator.address()});
  EXPECT_TRUE(absl::StrContains(logs.stdout_text, "evaluated after epoch 1"))
      << logs.stdout_text;
  EXPECT_TRUE(absl::StrContains(logs.stdout_text, "evaluated after epoch 2"))
      << logs.stdout_text;

  const CliResult get = RunCli(
      lethe_binary, {"get", "1", "--coordinator=" + coordinator.address()});
  EXPECT_TRUE(get.exit.success()) << get.stderr_text;
  EXPECT_TRUE(absl::StrContains(get.stdout_text, "SUCCEEDED"));
  const CliResult list = RunCli(
      lethe_binary,
      {"list", "--format=json", "--coordinator=" + coordinator.address()});
  EXPECT_TRUE(list.exit.success()) << list.stderr_text;
  EXPECT_EQ(nlohmann::json::parse(list.stdout_text)["name"], "jobs/1");
}

// Two workers on half batches take the same steps as one on whole ones, and
// so do two workers sharding AdamW's state (ZeRO 1) and the reduced
// gradients too (ZeRO 2).
TEST(ServiceProcessTest, TwoWorkersMatchOneProcessOnTheSameGlobalBatch) {
  const std::string dir = FreshDir("equivalence");
  auto coordinator_or = RunningCoordinator::Start(
      coordinator_binary, dir + "/coordinator", {.local_workers = 2});
  ASSERT_TRUE(coordinator_or.ok()) << coordinator_or.status();
  RunningCoordinator& coordinator = **coordinator_or;
  v1::JobSpec two = TinySpec(dir + "/two");
  two.set_method(v1::NPO);  // Per-example means: exact under averaging.
  two.set_per_device_batch_size(2);
  two.set_world_size(2);
  v1::JobSpec one = two;
  one.set_output_dir(dir + "/one");
  one.set_per_device_batch_size(4);
  one.set_world_size(1);
  v1::JobSpec zero1 = two;
  zero1.set_output_dir(dir + "/zero1");
  zero1.mutable_memory()->set_zero_stage(1);
  v1::JobSpec zero2 = two;
  zero2.set_output_dir(dir + "/zero2");
  zero2.mutable_memory()->set_zero_stage(2);
  v1::Job two_job, one_job, zero1_job, zero2_job;
  ASSERT_TRUE(CreateJob(coordinator.jobs(), two, &two_job).ok());
  ASSERT_TRUE(CreateJob(coordinator.jobs(), one, &one_job).ok());
  ASSERT_TRUE(CreateJob(coordinator.jobs(), zero1, &zero1_job).ok());
  ASSERT_TRUE(CreateJob(coordinator.jobs(), zero2, &zero2_job).ok());
  for (const v1::Job* job : {&two_job, &one_job, &zero1_job, &zero2_job}) {
    const v1::Job done =
        WaitFor(coordinator.jobs(), job->name(), IsFinal, absl::Seconds(120));
    ASSERT_EQ(done.state(), v1::Job::SUCCEEDED)
        << done.DebugString() << coordinator.Log();
  }
  const std::vector<at::Tensor> a = ModelWeights(dir + "/two/model");
  const std::vector<at::Tensor> b = ModelWeights(dir + "/one/model");
  const std::vector<at::Tensor> start = ModelWeights(SharedInputs().model_dir);
  ASSERT_EQ(a.size(), b.size());
  double max_change = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_TRUE(at::allclose(a[i], b[i], /*rtol=*/1e-4, /*atol=*/1e-5))
        << "parameter " << i << " differs by "
        << (a[i] - b[i]).abs().max().item<double>();
    max_change =
        std::max(max_change, (a[i] - start[i]).abs().max().item<double>());
  }
  EXPECT_GT(max_change, 1e-4) << "the runs did not train";
  for (const std::string sharded : {"zero1", "zero2"}) {
    const std::vector<at::Tensor> z =
        ModelWeights(dir + "/" + sharded + "/model");
    ASSERT_EQ(z.size(), a.size());
    for (size_t i = 0; i < a.size(); ++i) {
      EXPECT_TRUE(at::allclose(z[i], a[i], /*rtol=*/1e-5, /*atol=*/1e-6))
          << sharded << " parameter " << i << " differs by "
          << (z[i] - a[i]).abs().max().item<double>();
    }
  }
}

// `lethe unlearn` and a 1-worker job submitted with the same flags run the
// same spec, so they end with the same weights; coefficients the user sets
// reach both, 0 included (alpha 0 drops NPO_RT's retain term).
TEST(ServiceProcessTest, UnlearnAndAOneWorkerJobOfTheSameFlagsEndEqual) {
  const std::string dir = FreshDir("same_flags");
  auto coordinator_or = RunningCoordinator::Start(
      coordinator_binary, dir + "/coordinator", {.local_workers = 1});
  ASSERT_TRUE(coordinator_or.ok()) << coordinator_or.status();
  RunningCoordinator& coordinator = **coordinator_or;
  const Inputs& inputs = SharedInputs();
  const std::vector<std::string> common = {"--model=" + inputs.model_dir,
                                           "--data=" + inputs.data_dir,
                                           "--method=NPO_RT",
                                           "--epochs=2",
                                           "--learning_rate=1e-3",
                                           "--batch_size=2",
                                           "--warmup_epochs=0",
                                           "--seed=3",
                                           "--threads=1"};
  const std::vector<std::pair<std::string, std::vector<std::string>>> cases = {
      {"alpha_zero", {"--alpha=0"}},
      {"gamma_beta", {"--gamma=0.5", "--beta=0.7"}},
      {"defaults", {}}};
  std::map<std::string, std::vector<at::Tensor>> weights;
  for (const auto& [name, coefficients] : cases) {
    std::vector<std::string> unlearn = {"unlearn",
                                        "--output=" + dir + "/" + name};
    std::vector<std::string> submit = {
        "submit", "--coordinator=" + coordinator.address(), "--watch",
        "--output=" + dir + "/" + name + "_job"};
    for (std::vector<std::string>* args : {&unlearn, &submit}) {
      args->insert(args->end(), common.begin(), common.end());
      args->insert(args->end(), coefficients.begin(), coefficients.end());
      const CliResult result = RunCli(lethe_binary, *args);
      ASSERT_TRUE(result.exit.success())
          << name << ": " << result.stdout_text << result.stderr_text
          << coordinator.Log();
    }
    const std::vector<at::Tensor> local =
        ModelWeights(dir + "/" + name + "/model");
    const std::vector<at::Tensor> job =
        ModelWeights(dir + "/" + name + "_job/model");
    ASSERT_EQ(local.size(), job.size());
    for (size_t i = 0; i < local.size(); ++i) {
      EXPECT_TRUE(at::equal(local[i], job[i]))
          << name << ": parameter " << i << " differs by "
          << (local[i] - job[i]).abs().max().item<double>();
    }
    weights[name] = local;
  }
  // The coefficients changed the runs, so the equalities above say
  // something: each differs from the run with the method's defaults.
  for (const char* name : {"alpha_zero", "gamma_beta"}) {
    EXPECT_GT(MaxAbsDifference(weights[name], weights["defaults"]), 1e-6)
        << name;
  }
  const v1::Job alpha_zero = GetJob(coordinator.jobs(), "jobs/1");
  EXPECT_TRUE(alpha_zero.spec().method_params().has_alpha());
  EXPECT_EQ(alpha_zero.spec().method_params().alpha(), 0);
  EXPECT_FALSE(alpha_zero.spec().method_params().has_beta())
      << "a coefficient left out stays absent: the method's default";
}

// Runs a 2-worker job that checkpoints every 5 steps; once it passed step
// 12, sends `signal` to local worker `victim` and returns the finished job.
v1::Job InterruptOneWorker(const std::string& name, int victim, int signal,
                           RunningCoordinator& coordinator) {
  const std::string dir = FreshDir(name);
  v1::JobSpec spec = TinySpec(dir + "/job");
  spec.set_num_epochs(30);
  spec.mutable_checkpoint()->set_every_steps(5);
  v1::Job job;
  EXPECT_TRUE(CreateJob(coordinator.jobs(), spec, &job).ok());
  const v1::Job running = WaitFor(
      coordinator.jobs(), job.name(),
      [](const v1::Job& j) { return j.progress().step() >= 12 || IsFinal(j); },
      absl::Seconds(60));
  EXPECT_EQ(running.state(), v1::Job::RUNNING) << coordinator.Log();
  const std::vector<pid_t> pids = coordinator.WorkerPids();
  EXPECT_EQ(pids.size(), 2u) << coordinator.Log();
  if (running.state() != v1::Job::RUNNING || pids.size() != 2) return running;
  EXPECT_EQ(kill(pids[victim], signal), 0);
  const v1::Job done =
      WaitFor(coordinator.jobs(), job.name(), IsFinal, absl::Seconds(180));
  EXPECT_EQ(done.state(), v1::Job::SUCCEEDED)
      << done.DebugString() << coordinator.Log();
  EXPECT_EQ(done.restart_count(), 1);
  kill(pids[victim], SIGCONT);
  return done;
}

TEST(ServiceProcessTest, KilledWorkerRestartsTheJobFromItsCheckpoint) {
  auto coordinator_or = RunningCoordinator::Start(
      coordinator_binary, FreshDir("kill_worker_coordinator"),
      {.local_workers = 2});
  ASSERT_TRUE(coordinator_or.ok()) << coordinator_or.status();
  RunningCoordinator& coordinator = **coordinator_or;
  const v1::Job job =
      InterruptOneWorker("kill_worker", /*victim=*/1, SIGKILL, coordinator);
  const CliResult logs =
      RunCli(lethe_binary,
             {"logs", job.name(), "--coordinator=" + coordinator.address()});
  EXPECT_TRUE(absl::StrContains(logs.stdout_text, "WORKER_LOST") ||
              absl::StrContains(logs.stdout_text, "RANK_FAILED"))
      << logs.stdout_text;
  EXPECT_TRUE(absl::StrContains(logs.stdout_text, "resumed from step"))
      << logs.stdout_text;
}

// A stopped worker still holds its socket but sends no heartbeat: it is
// dropped, killed and replaced, and the job restarts on the workers there are.
TEST(ServiceProcessTest, HungWorkerIsDetectedByHeartbeatAndReplaced) {
  auto coordinator_or = RunningCoordinator::Start(
      coordinator_binary, FreshDir("hung_worker_coordinator"),
      {.local_workers = 2});
  ASSERT_TRUE(coordinator_or.ok()) << coordinator_or.status();
  RunningCoordinator& coordinator = **coordinator_or;
  const v1::Job done =
      InterruptOneWorker("hung_worker", /*victim=*/0, SIGSTOP, coordinator);
  bool worker_lost = false;
  for (const v1::Job::StateChange& change : done.history()) {
    worker_lost |= change.reason() == "WORKER_LOST";
  }
  EXPECT_TRUE(worker_lost) << done.DebugString();
  EXPECT_TRUE(absl::StrContains(coordinator.Log(), "stopped answering"))
      << coordinator.Log();
}

// The processes whose parent is `pid`.
std::vector<pid_t> ChildrenOf(pid_t pid) {
  std::vector<pid_t> children;
  std::error_code error;
  for (const auto& entry :
       std::filesystem::directory_iterator("/proc", error)) {
    const std::string name = entry.path().filename().string();
    pid_t child = 0;
    if (!absl::SimpleAtoi(name, &child)) continue;
    const std::string stat =
        ReadFileToString(entry.path().string() + "/stat").value_or("");
    // "pid (comm) state ppid ...": comm may hold spaces; ppid follows ')'.
    const size_t close = stat.rfind(')');
    if (close == std::string::npos) continue;
    const std::vector<std::string> fields =
        absl::StrSplit(stat.substr(close + 2), ' ');
    pid_t parent = 0;
    if (fields.size() > 1 && absl::SimpleAtoi(fields[1], &parent) &&
        parent == pid) {
      children.push_back(child);
    }
  }
  return children;
}

// Workers cut off from their coordinator (here: it is stopped) stop their
// own attempts before it could give the job to others, so that a job never
// has two writers; the restarted attempt is a newer generation.
TEST(ServiceProcessTest, WorkersCutOffStopTheirAttemptsBeforeTheJobMoves) {
  const std::string dir = FreshDir("cut_off");
  auto coordinator_or = RunningCoordinator::Start(
      coordinator_binary, dir + "/coordinator", {.local_workers = 2});
  ASSERT_TRUE(coordinator_or.ok()) << coordinator_or.status();
  RunningCoordinator& coordinator = **coordinator_or;
  v1::JobSpec spec = TinySpec(dir + "/job");
  spec.set_num_epochs(30);
  spec.mutable_checkpoint()->set_every_steps(5);
  v1::Job job;
  ASSERT_TRUE(CreateJob(coordinator.jobs(), spec, &job).ok());
  const v1::Job running = WaitFor(
      coordinator.jobs(), job.name(),
      [](const v1::Job& j) { return j.progress().step() >= 8 || IsFinal(j); },
      absl::Seconds(60));
  ASSERT_EQ(running.state(), v1::Job::RUNNING) << coordinator.Log();
  EXPECT_EQ(running.attempt_generation(), 1);
  const std::vector<pid_t> workers = coordinator.WorkerPids();
  ASSERT_EQ(workers.size(), 2u);
  for (pid_t worker : workers) {
    EXPECT_EQ(ChildrenOf(worker).size(), 1u) << "its attempt runs";
  }

  ASSERT_TRUE(coordinator.process().Signal(SIGSTOP).ok());
  // The coordinator drops workers after 2 s; they stop at half of that.
  absl::SleepFor(absl::Milliseconds(2500));
  for (pid_t worker : workers) {
    EXPECT_TRUE(ChildrenOf(worker).empty())
        << "worker " << worker << " still runs its attempt while cut off";
  }
  ASSERT_TRUE(coordinator.process().Signal(SIGCONT).ok());

  const v1::Job done =
      WaitFor(coordinator.jobs(), job.name(), IsFinal, absl::Seconds(180));
  EXPECT_EQ(done.state(), v1::Job::SUCCEEDED)
      << done.DebugString() << coordinator.Log();
  EXPECT_EQ(done.restart_count(), 1);
  EXPECT_EQ(done.attempt_generation(), 2);
  EXPECT_EQ(ReadFileToString(dir + "/job/.lethe-generation").value_or(""),
            "2\n");
  std::string worker_logs;
  std::error_code error;
  for (const auto& entry :
       std::filesystem::directory_iterator(dir + "/coordinator", error)) {
    if (absl::StartsWith(entry.path().filename().string(), "worker-")) {
      worker_logs += ReadFileToString(entry.path().string()).value_or("");
    }
  }
  EXPECT_TRUE(absl::StrContains(worker_logs, "stopped by its worker"))
      << worker_logs;
}

TEST(ServiceProcessTest, RestartedCoordinatorKeepsJobsAndResumesTheRunningOne) {
  const std::string dir = FreshDir("kill_coordinator");
  const std::string database = dir + "/jobs.sqlite";
  std::string name;
  {
    auto first_or =
        RunningCoordinator::Start(coordinator_binary, dir + "/first",
                                  {.local_workers = 2, .database = database});
    ASSERT_TRUE(first_or.ok()) << first_or.status();
    RunningCoordinator& first = **first_or;
    v1::JobSpec spec = TinySpec(dir + "/job");
    spec.set_num_epochs(30);
    spec.mutable_checkpoint()->set_every_steps(5);
    v1::Job job;
    ASSERT_TRUE(CreateJob(first.jobs(), spec, &job).ok());
    name = job.name();
    const v1::Job running = WaitFor(
        first.jobs(), name,
        [](const v1::Job& j) {
          return j.progress().step() >= 12 || IsFinal(j);
        },
        absl::Seconds(60));
    ASSERT_EQ(running.state(), v1::Job::RUNNING) << first.Log();
    ASSERT_TRUE(first.process().Signal(SIGKILL).ok());
    ASSERT_TRUE(first.process().Wait().ok());
  }
  auto second_or =
      RunningCoordinator::Start(coordinator_binary, dir + "/second",
                                {.local_workers = 2, .database = database});
  ASSERT_TRUE(second_or.ok()) << second_or.status();
  RunningCoordinator& second = **second_or;
  // Follows the log while the job runs again, until it ends.
  absl::StatusOr<Subprocess> follower = Subprocess::Start(
      {lethe_binary, "logs", name, "--coordinator=" + second.address()}, {},
      {.stdout_path = dir + "/follow.out", .stderr_path = dir + "/follow.err"});
  ASSERT_TRUE(follower.ok()) << follower.status();
  const v1::Job done =
      WaitFor(second.jobs(), name, IsFinal, absl::Seconds(180));
  EXPECT_EQ(done.state(), v1::Job::SUCCEEDED)
      << done.DebugString() << second.Log();
  bool saw_restart_reason = false;
  for (const v1::Job::StateChange& change : done.history()) {
    saw_restart_reason |= change.reason() == "COORDINATOR_RESTARTED";
  }
  EXPECT_TRUE(saw_restart_reason) << done.DebugString();

  // The log kept what the first coordinator wrote: the job's creation line,
  // once, before the restart's.
  const CliResult logs =
      RunCli(lethe_binary, {"logs", name, "--coordinator=" + second.address()});
  EXPECT_TRUE(logs.exit.success()) << logs.stderr_text;
  const size_t created = logs.stdout_text.find("QUEUED: ");
  const size_t restarted =
      logs.stdout_text.find("QUEUED (COORDINATOR_RESTARTED)");
  ASSERT_NE(created, std::string::npos) << logs.stdout_text;
  ASSERT_NE(restarted, std::string::npos) << logs.stdout_text;
  EXPECT_LT(created, restarted) << logs.stdout_text;
  EXPECT_EQ(logs.stdout_text.find("QUEUED: ", created + 1), std::string::npos)
      << logs.stdout_text;
  EXPECT_TRUE(absl::StrContains(logs.stdout_text, "SUCCEEDED ("))
      << logs.stdout_text;

  // The follower got the same lines: history, then the rest live.
  absl::StatusOr<std::optional<ExitStatus>> followed =
      follower->WaitFor(absl::Seconds(30));
  ASSERT_TRUE(followed.ok()) << followed.status();
  ASSERT_TRUE(followed->has_value()) << "lethe logs did not end with the job";
  EXPECT_TRUE((*followed)->success())
      << ReadFileToString(dir + "/follow.err").value_or("");
  EXPECT_EQ(ReadFileToString(dir + "/follow.out").value_or(""),
            logs.stdout_text);
}

TEST(ServiceProcessTest, CancelStopsEveryRankWithinTenSeconds) {
  const std::string dir = FreshDir("cancel");
  auto coordinator_or = RunningCoordinator::Start(
      coordinator_binary, dir + "/coordinator", {.local_workers = 2});
  ASSERT_TRUE(coordinator_or.ok()) << coordinator_or.status();
  RunningCoordinator& coordinator = **coordinator_or;
  v1::JobSpec spec = TinySpec(dir + "/job");
  spec.set_num_epochs(200);
  v1::Job job;
  ASSERT_TRUE(CreateJob(coordinator.jobs(), spec, &job).ok());
  WaitFor(
      coordinator.jobs(), job.name(),
      [](const v1::Job& j) { return j.progress().step() >= 3; },
      absl::Seconds(60));
  const absl::Time asked = absl::Now();
  const CliResult cancel =
      RunCli(lethe_binary,
             {"cancel", job.name(), "--coordinator=" + coordinator.address()});
  ASSERT_TRUE(cancel.exit.success()) << cancel.stderr_text;
  const v1::Job done =
      WaitFor(coordinator.jobs(), job.name(), IsFinal, absl::Seconds(10));
  EXPECT_EQ(done.state(), v1::Job::CANCELLED) << coordinator.Log();
  EXPECT_LT(absl::Now() - asked, absl::Seconds(10));
  // A CUDA job waits for CUDA workers (these are CPU ones) without holding
  // up the CPU job queued after it.
  v1::JobSpec cuda = TinySpec(dir + "/cuda");
  cuda.set_device(v1::CUDA);
  cuda.set_world_size(1);
  v1::Job cuda_job;
  ASSERT_TRUE(CreateJob(coordinator.jobs(), cuda, &cuda_job).ok());
  // The workers are idle again: a next job runs on both.
  v1::JobSpec next = TinySpec(dir + "/next");
  next.set_num_epochs(1);
  v1::Job next_job;
  ASSERT_TRUE(CreateJob(coordinator.jobs(), next, &next_job).ok());
  EXPECT_EQ(
      WaitFor(coordinator.jobs(), next_job.name(), IsFinal, absl::Seconds(60))
          .state(),
      v1::Job::SUCCEEDED);
  EXPECT_EQ(GetJob(coordinator.jobs(), cuda_job.name()).state(),
            v1::Job::QUEUED);
  const CliResult cuda_logs =
      RunCli(lethe_binary, {"logs", cuda_job.name(), "--follow=false",
                            "--coordinator=" + coordinator.address()});
  EXPECT_TRUE(absl::StrContains(cuda_logs.stdout_text,
                                "waiting: needs 1 CUDA worker, 0 registered"))
      << cuda_logs.stdout_text;
  const CliResult cancel_cuda = RunCli(
      lethe_binary,
      {"cancel", cuda_job.name(), "--coordinator=" + coordinator.address()});
  ASSERT_TRUE(cancel_cuda.exit.success()) << cancel_cuda.stderr_text;
  EXPECT_EQ(GetJob(coordinator.jobs(), cuda_job.name()).state(),
            v1::Job::CANCELLED);
  // A running job past its deadline fails without using its restarts.
  v1::JobSpec late = TinySpec(dir + "/late");
  late.set_num_epochs(5000);  // Far longer than its deadline, loaded or not.
  late.mutable_run_policy()->set_max_restarts(2);
  late.mutable_run_policy()->mutable_deadline()->set_seconds(3);
  v1::Job late_job;
  ASSERT_TRUE(CreateJob(coordinator.jobs(), late, &late_job).ok());
  const v1::Job late_done =
      WaitFor(coordinator.jobs(), late_job.name(), IsFinal, absl::Seconds(30));
  EXPECT_EQ(late_done.state(), v1::Job::FAILED) << coordinator.Log();
  EXPECT_EQ(late_done.restart_count(), 0);
  ASSERT_GE(late_done.history_size(), 3) << late_done.DebugString();
  EXPECT_EQ(late_done.history(late_done.history_size() - 2).state(),
            v1::Job::RUNNING);
  EXPECT_EQ(late_done.history().rbegin()->reason(), "DEADLINE_EXCEEDED");
}

TEST(ServiceProcessTest, RequestIdRetriesPaginationAndBadSpecs) {
  const std::string dir = FreshDir("api");
  auto coordinator_or = RunningCoordinator::Start(
      coordinator_binary, dir + "/coordinator", {.local_workers = 0});
  ASSERT_TRUE(coordinator_or.ok()) << coordinator_or.status();
  RunningCoordinator& coordinator = **coordinator_or;
  v1::JobSpec spec = TinySpec(dir + "/job");
  v1::Job first, retry;
  ASSERT_TRUE(CreateJob(coordinator.jobs(), spec, &first, "req-1").ok());
  ASSERT_TRUE(CreateJob(coordinator.jobs(), spec, &retry, "req-1").ok());
  EXPECT_EQ(first.name(), retry.name());
  // Another job may not write jobs/1's directory.
  v1::Job refused;
  grpc::Status claimed = CreateJob(coordinator.jobs(), spec, &refused);
  EXPECT_EQ(claimed.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_TRUE(absl::StrContains(claimed.error_message(), "belongs to jobs/1"))
      << claimed.error_message();
  for (int i = 0; i < 6; ++i) {
    v1::Job job;
    v1::JobSpec other = spec;
    other.set_output_dir(absl::StrCat(dir, "/job", i));
    ASSERT_TRUE(CreateJob(coordinator.jobs(), other, &job).ok());
  }
  // Bad specs never become jobs.
  v1::JobSpec bad = spec;
  bad.mutable_optimizer()->set_learning_rate(-1);
  v1::Job rejected;
  grpc::Status status = CreateJob(coordinator.jobs(), bad, &rejected);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(
      absl::StartsWith(status.error_message(), "spec.optimizer.learning_rate"))
      << status.error_message();
  bad = spec;
  bad.set_model_dir(dir + "/no_such_model");
  status = CreateJob(coordinator.jobs(), bad, &rejected);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);

  std::vector<std::string> names;
  v1::ListJobsRequest request;
  request.set_page_size(3);
  do {
    grpc::ClientContext context;
    v1::ListJobsResponse response;
    ASSERT_TRUE(coordinator.jobs().ListJobs(&context, request, &response).ok());
    for (const v1::Job& job : response.jobs()) names.push_back(job.name());
    request.set_page_token(response.next_page_token());
  } while (!request.page_token().empty());
  ASSERT_EQ(names.size(), 7u);
  for (int i = 0; i < 7; ++i) EXPECT_EQ(names[i], absl::StrCat("jobs/", i + 1));

  // With no workers at all, the head of the queue says what it waits for,
  // and a queued job past its deadline fails there.
  const CliResult waiting =
      RunCli(lethe_binary, {"logs", "jobs/1", "--follow=false",
                            "--coordinator=" + coordinator.address()});
  EXPECT_TRUE(absl::StrContains(waiting.stdout_text,
                                "waiting: needs 2 CPU workers, 0 registered"))
      << waiting.stdout_text;
  v1::JobSpec late = spec;
  late.set_output_dir(dir + "/late");
  late.mutable_run_policy()->mutable_deadline()->set_seconds(1);
  v1::Job late_job;
  ASSERT_TRUE(CreateJob(coordinator.jobs(), late, &late_job).ok());
  const v1::Job late_done =
      WaitFor(coordinator.jobs(), late_job.name(), IsFinal, absl::Seconds(10));
  EXPECT_EQ(late_done.state(), v1::Job::FAILED) << late_done.DebugString();
  EXPECT_EQ(late_done.history().rbegin()->reason(), "DEADLINE_EXCEEDED");
  EXPECT_EQ(GetJob(coordinator.jobs(), "jobs/1").state(), v1::Job::QUEUED);
}

}  // namespace
}  // namespace lethe

int main(int argc, char** argv) {
  testing::InitGoogleTest(&argc, argv);
  if (argc != 3) {
    std::cerr << "usage: service_process_test COORDINATOR_BINARY LETHE_BINARY"
              << std::endl;
    return 2;
  }
  lethe::coordinator_binary = argv[1];
  lethe::lethe_binary = argv[2];
  return RUN_ALL_TESTS();
}
