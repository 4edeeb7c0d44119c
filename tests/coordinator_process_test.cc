// Starts the real lethe-coordinator binary and talks to it the way users and
// Prometheus do: the `lethe` CLI over gRPC, and HTTP for /metrics.
//
// Usage: coordinator_process_test COORDINATOR_BINARY LETHE_BINARY
#include <signal.h>

#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "libs/files/file_io.h"
#include "libs/net/host_port.h"
#include "libs/net/http_client.h"
#include "libs/subprocess/subprocess.h"
#include "nlohmann/json.hpp"
#include "tests/coordinator_harness.h"

namespace lethe {
namespace {

std::string coordinator_binary;
std::string lethe_binary;

// The file's contents, or "" when it cannot be read.
std::string ReadFile(const std::string& path) {
  return ReadFileToString(path).value_or("");
}

std::string TempPath(const std::string& name) {
  const std::string path = absl::StrCat(testing::TempDir(), "/", name);
  std::remove(path.c_str());
  return path;
}

// Runs `lethe ARGS...` to completion; its output goes to `output_path`.
ExitStatus RunCli(const std::vector<std::string>& args,
                  const std::string& output_path) {
  std::vector<std::string> argv = {lethe_binary};
  argv.insert(argv.end(), args.begin(), args.end());
  absl::StatusOr<Subprocess> cli = Subprocess::Start(
      argv, {}, {.stdout_path = output_path, .stderr_path = output_path});
  EXPECT_TRUE(cli.ok()) << cli.status();
  absl::StatusOr<ExitStatus> exit = cli->Wait();
  EXPECT_TRUE(exit.ok()) << exit.status();
  return *exit;
}

TEST(CoordinatorProcessTest, ServesHealthAndMetricsThenStopsOnSigterm) {
  auto coordinator_or =
      RunningCoordinator::Start(coordinator_binary, FreshDir("serving"));
  ASSERT_TRUE(coordinator_or.ok()) << coordinator_or.status();
  RunningCoordinator& coordinator = **coordinator_or;

  const std::string health_output = TempPath("health.out");
  const ExitStatus health =
      RunCli({"health", absl::StrCat("--coordinator=", coordinator.address())},
             health_output);
  EXPECT_TRUE(health.success()) << health.ToString() << ReadFile(health_output);
  EXPECT_TRUE(absl::StrContains(ReadFile(health_output), "SERVING"));

  // metrics_url is http://127.0.0.1:PORT/metrics.
  const std::string host_port = coordinator.metrics_url().substr(
      7, coordinator.metrics_url().size() - 7 - 8);
  std::string host;
  int port = 0;
  ASSERT_TRUE(ParseHostPort(host_port, &host, &port).ok()) << host_port;
  absl::StatusOr<HttpResponse> metrics = HttpGet(host, port, "/metrics");
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  EXPECT_EQ(metrics->status_code, 200);
  EXPECT_TRUE(absl::StrContains(metrics->body,
                                "lethe_build_info{component=\"coordinator\""))
      << metrics->body;

  ASSERT_TRUE(coordinator.process().Signal(SIGTERM).ok());
  absl::StatusOr<std::optional<ExitStatus>> exit =
      coordinator.process().WaitFor(absl::Seconds(15));
  ASSERT_TRUE(exit.ok() && exit->has_value()) << "no exit after SIGTERM";
  EXPECT_TRUE((*exit)->success()) << (*exit)->ToString();

  // Once it has stopped, the CLI reports it cannot reach it.
  const ExitStatus after =
      RunCli({"health", absl::StrCat("--coordinator=", coordinator.address()),
              "--timeout_seconds=1"},
             health_output);
  EXPECT_EQ(after.code, 1) << after.ToString();
  EXPECT_TRUE(absl::StrContains(ReadFile(health_output), "cannot reach"))
      << ReadFile(health_output);
}

TEST(CoordinatorProcessTest, BusyPortMakesASecondCoordinatorExitWithReason) {
  auto first_or =
      RunningCoordinator::Start(coordinator_binary, FreshDir("first"));
  ASSERT_TRUE(first_or.ok()) << first_or.status();
  RunningCoordinator& first = **first_or;
  const std::string log = TempPath("second.log");
  absl::StatusOr<Subprocess> second = Subprocess::Start(
      {coordinator_binary, absl::StrCat("--listen=", first.address()),
       "--metrics_address=127.0.0.1:0"},
      {}, {.stdout_path = log, .stderr_path = log});
  ASSERT_TRUE(second.ok());
  absl::StatusOr<std::optional<ExitStatus>> exit =
      second->WaitFor(absl::Seconds(15));
  ASSERT_TRUE(exit.ok() && exit->has_value())
      << "second coordinator kept running";
  EXPECT_EQ((*exit)->code, 1) << (*exit)->ToString();
  EXPECT_TRUE(absl::StrContains(ReadFile(log), first.address()))
      << ReadFile(log);
}

// Two coordinators on one job store would both schedule its jobs: the
// second refuses to start and names the process that holds the store.
TEST(CoordinatorProcessTest, ASecondCoordinatorOnTheSameDatabaseExits) {
  const std::string dir = FreshDir("one_per_database");
  auto first_or = RunningCoordinator::Start(coordinator_binary, dir + "/first",
                                            {.database = dir + "/jobs.sqlite"});
  ASSERT_TRUE(first_or.ok()) << first_or.status();
  const std::string log = TempPath("second_on_database.log");
  absl::StatusOr<Subprocess> second = Subprocess::Start(
      {coordinator_binary, "--listen=127.0.0.1:0",
       "--metrics_address=127.0.0.1:0", "--database=" + dir + "/jobs.sqlite"},
      {}, {.stdout_path = log, .stderr_path = log});
  ASSERT_TRUE(second.ok()) << second.status();
  absl::StatusOr<std::optional<ExitStatus>> exit =
      second->WaitFor(absl::Seconds(15));
  ASSERT_TRUE(exit.ok() && exit->has_value())
      << "the second coordinator kept running";
  EXPECT_EQ((*exit)->code, 1) << (*exit)->ToString();
  EXPECT_TRUE(absl::StrContains(
      ReadFile(log), absl::StrCat("jobs.sqlite.lock is locked by process ",
                                  (*first_or)->process().pid())))
      << ReadFile(log);
}

// `lethe submit` takes YAML spec files (.yaml, .yml) as well as JSON ones.
TEST(CoordinatorProcessTest, SubmitReadsYamlSpecFiles) {
  auto coordinator_or =
      RunningCoordinator::Start(coordinator_binary, FreshDir("yaml"));
  ASSERT_TRUE(coordinator_or.ok()) << coordinator_or.status();
  RunningCoordinator& coordinator = **coordinator_or;
  const std::string root = absl::StrCat(testing::TempDir(), "/yaml_spec");
  std::filesystem::remove_all(root);
  std::filesystem::create_directories(root + "/model");
  std::filesystem::create_directories(root + "/data");
  for (const std::string file :
       {"/model/config.json", "/model/tokenizer.model", "/data/forget10.json",
        "/data/retain90.json"}) {
    ASSERT_TRUE(WriteFileAtomically(root + file, "[]").ok()) << file;
  }
  const std::string spec = absl::StrCat(
      "# a forget request\nmodel_dir: ", root, "/model\ndata_dir: ", root,
      "/data\nforget_split: forget10\nmethod: NPO_RT\n",
      "optimizer: {learning_rate: 1e-3, seed: 7}\noutput_dir: ", root,
      "/out");  // Each job its own: callers append a suffix and "\n".
  const std::string coordinator_flag =
      absl::StrCat("--coordinator=", coordinator.address());
  const std::string output = TempPath("submit.out");
  auto submit = [&](const std::string& name, const std::string& text,
                    const std::string& format = "--format=table") {
    const std::string path = absl::StrCat(root, "/", name);
    EXPECT_TRUE(WriteFileAtomically(path, text).ok());
    return RunCli({"submit", path, coordinator_flag, format}, output);
  };

  for (const std::string name : {"spec.yaml", "spec.yml"}) {
    const ExitStatus exit =
        submit(name, absl::StrCat(spec, "_", name, "\ndisplay_name: ", name),
               "--format=json");
    ASSERT_TRUE(exit.success()) << exit.ToString() << ReadFile(output);
    const nlohmann::json job = nlohmann::json::parse(ReadFile(output));
    EXPECT_EQ(job["state"], "QUEUED");
    EXPECT_EQ(job["spec"]["display_name"], name);
    EXPECT_EQ(job["spec"]["optimizer"]["learning_rate"], 1e-3);
    EXPECT_EQ(job["spec"]["optimizer"]["seed"], "7");
  }

  ExitStatus exit = submit("bad.yaml", spec + "\n  world_size: 2\n");
  EXPECT_EQ(exit.code, 1) << exit.ToString();
  EXPECT_EQ(ReadFile(output),
            absl::StrCat("lethe submit: ", root,
                         "/bad.yaml:8:13: mapping values are not allowed in "
                         "this context\n"));
  exit = submit("spec.txt", spec);
  EXPECT_EQ(exit.code, 1) << exit.ToString();
  EXPECT_EQ(ReadFile(output),
            absl::StrCat("lethe submit: ", root,
                         "/spec.txt: a spec file ends in .json, .yaml or "
                         ".yml, got \".txt\"\n"));
}

TEST(CliTest, UnknownCommandIsAUsageError) {
  const std::string output = TempPath("usage.out");
  const ExitStatus exit = RunCli({"frobnicate"}, output);
  EXPECT_EQ(exit.code, 2) << exit.ToString();
  EXPECT_TRUE(
      absl::StrContains(ReadFile(output), "unknown command 'frobnicate'"));
}

TEST(CliTest, VersionPrintsTheVersion) {
  const std::string output = TempPath("version.out");
  EXPECT_TRUE(RunCli({"version"}, output).success());
  EXPECT_TRUE(absl::StartsWith(ReadFile(output), "lethe ")) << ReadFile(output);
}

}  // namespace
}  // namespace lethe

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  if (argc != 3) {
    std::cerr << "usage: " << argv[0] << " COORDINATOR_BINARY LETHE_BINARY\n";
    return 2;
  }
  lethe::coordinator_binary = argv[1];
  lethe::lethe_binary = argv[2];
  return RUN_ALL_TESTS();
}
