#include "tests/coordinator_harness.h"

#include <grpcpp/grpcpp.h>
#include <signal.h>

#include <filesystem>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "libs/files/file_io.h"
#include "nlohmann/json.hpp"

namespace lethe {

std::string FreshDir(const std::string& name) {
  const std::string dir =
      (std::filesystem::path(testing::TempDir()) / name).lexically_normal();
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

absl::StatusOr<std::unique_ptr<RunningCoordinator>> RunningCoordinator::Start(
    const std::string& binary, const std::string& dir,
    const TestCoordinatorOptions& options) {
  std::filesystem::create_directories(dir);
  const std::string ready_file = dir + "/ready.json";
  const std::string log = dir + "/coordinator.log";
  std::filesystem::remove(ready_file);
  const std::string database =
      options.database.empty() ? dir + "/jobs.sqlite" : options.database;
  std::vector<std::string> argv = {
      binary,
      "--listen=127.0.0.1:0",
      "--metrics_address=127.0.0.1:0",
      "--database=" + database,
      absl::StrCat("--local_workers=", options.local_workers),
      "--worker_threads=1",
      "--worker_timeout=2s",
      "--collective_timeout=20s",
      "--ready_file=" + ready_file};
  argv.insert(argv.end(), options.flags.begin(), options.flags.end());
  absl::StatusOr<Subprocess> process =
      Subprocess::Start(argv, {}, {.stdout_path = log, .stderr_path = log});
  if (!process.ok()) return process.status();
  std::unique_ptr<RunningCoordinator> coordinator(
      new RunningCoordinator(*std::move(process), log, database));
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  std::string ready;
  while (absl::Now() < deadline && coordinator->process_.running()) {
    ready = ReadFileToString(ready_file).value_or("");
    if (!ready.empty()) break;
    absl::SleepFor(absl::Milliseconds(20));
  }
  if (ready.empty()) {
    return absl::DeadlineExceededError(absl::StrCat(
        "lethe-coordinator did not get ready; its log:\n", coordinator->Log()));
  }
  const nlohmann::json parsed = nlohmann::json::parse(ready, nullptr, false);
  if (!parsed.is_object() || !parsed.contains("grpc_address") ||
      !parsed.contains("metrics_url")) {
    return absl::DataLossError(absl::StrCat("bad ready file: ", ready));
  }
  coordinator->address_ = parsed["grpc_address"];
  coordinator->metrics_url_ = parsed["metrics_url"];
  coordinator->jobs_ = v1::Jobs::NewStub(grpc::CreateChannel(
      coordinator->address_, grpc::InsecureChannelCredentials()));
  return coordinator;
}

RunningCoordinator::~RunningCoordinator() {
  if (process_.running()) {
    process_.Signal(SIGKILL).IgnoreError();
    process_.Wait().IgnoreError();
  }
}

std::string RunningCoordinator::Log() const {
  return ReadFileToString(log_).value_or("");
}

std::vector<pid_t> RunningCoordinator::WorkerPids() const {
  std::vector<pid_t> pids;
  for (absl::string_view line : absl::StrSplit(Log(), '\n')) {
    const size_t at = line.find("(pid ");
    if (!absl::StrContains(line, "started local worker") ||
        at == absl::string_view::npos) {
      continue;
    }
    absl::string_view rest = line.substr(at + 5);
    int pid = 0;
    if (absl::SimpleAtoi(rest.substr(0, rest.find(',')), &pid)) {
      pids.push_back(pid);
    }
  }
  return pids;
}

}  // namespace lethe
