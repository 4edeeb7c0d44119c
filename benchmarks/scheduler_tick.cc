// Cost of the coordinator's scheduling tick with a long queue and no idle
// worker: a tick that reads the queue from the SQLite job store (what
// every 100 ms tick did before the scheduler learnt to skip the read when
// nothing could start) against one that skips it, for several queue
// lengths, and what each means for the coordinator's CPU at 10 ticks/s.
//
//   lethe prepare-benchmark --cache_dir=.lethe/benchmark
//   bazel run //benchmarks:scheduler_tick -- --cache_dir=$PWD/.lethe/benchmark
//
// The jobs are real specs (the benchmark's model and data, so that they
// pass validation) in a job store in a fresh temporary directory.
#include <stdlib.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "libs/jobs/job_store.h"
#include "libs/status/status_macros.h"
#include "services/coordinator/coordinator.h"

ABSL_FLAG(std::string, cache_dir, ".lethe/benchmark",
          "the prepared embedded benchmark (lethe prepare-benchmark)");
ABSL_FLAG(std::vector<std::string>, queue_lengths,
          std::vector<std::string>({"100", "1000", "5000"}),
          "queued jobs to measure with");
ABSL_FLAG(int, rounds, 20, "scanning and skipping ticks timed per length");

namespace lethe {
namespace {

using Clock = std::chrono::steady_clock;

double MillisecondsSince(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start)
      .count();
}

v1::CreateJobRequest Request(const std::string& cache,
                             const std::string& output_dir) {
  v1::CreateJobRequest request;
  v1::JobSpec& spec = *request.mutable_spec();
  spec.set_model_dir(cache + "/target");
  spec.set_data_dir(cache + "/data");
  spec.set_forget_split("forget10");
  spec.set_method(v1::NPO_RT);
  spec.set_world_size(2);
  spec.set_output_dir(output_dir);
  return request;
}

// Mean milliseconds of a scanning tick and of a skipping one with
// `queue_length` jobs waiting for workers that never register.
absl::Status Measure(const std::string& cache, const std::string& scratch,
                     int queue_length, int rounds) {
  const std::string dir = absl::StrCat(scratch, "/queue-", queue_length);
  std::filesystem::create_directories(dir);
  ASSIGN_OR_RETURN(std::unique_ptr<JobStore> store,
                   JobStore::Open(dir + "/coordinator.sqlite"));
  Coordinator coordinator(std::move(store), {.address = "127.0.0.1:1"});
  const Clock::time_point created = Clock::now();
  for (int i = 0; i < queue_length; ++i) {
    RETURN_IF_ERROR(
        coordinator.CreateJob(Request(cache, absl::StrCat(dir, "/out", i)))
            .status());
  }
  const double create_ms = MillisecondsSince(created);
  coordinator.Tick();  // The first scan logs the head's "waiting" line.
  double scanning_ms = 0, skipping_ms = 0;
  for (int round = 0; round < rounds; ++round) {
    // A newly queued job makes the next tick read the queue; the tick
    // after it has nothing new to look at.
    RETURN_IF_ERROR(
        coordinator
            .CreateJob(Request(cache, absl::StrCat(dir, "/extra", round)))
            .status());
    Clock::time_point start = Clock::now();
    coordinator.Tick();
    scanning_ms += MillisecondsSince(start);
    start = Clock::now();
    coordinator.Tick();
    skipping_ms += MillisecondsSince(start);
  }
  scanning_ms /= rounds;
  skipping_ms /= rounds;
  // At 10 ticks/s: before, every tick scanned; now one tick a second does
  // (the deadline pass) and the other nine skip.
  const double before_share = 10 * scanning_ms / 1000;
  const double after_share = (scanning_ms + 9 * skipping_ms) / 1000;
  std::printf("| %d | %.2f | %.3f | %.4f | %.0fx | %.1f%% | %.2f%% |\n",
              queue_length, create_ms / queue_length, scanning_ms, skipping_ms,
              scanning_ms / skipping_ms, 100 * before_share, 100 * after_share);
  return absl::OkStatus();
}

absl::Status Run() {
  const std::string cache = absl::GetFlag(FLAGS_cache_dir);
  if (!std::filesystem::exists(cache + "/target/config.json")) {
    return absl::NotFoundError(absl::StrCat(
        cache, "/target/config.json: run lethe prepare-benchmark first"));
  }
  std::string scratch_template =
      (std::filesystem::temp_directory_path() / "lethe-scheduler-XXXXXX")
          .string();
  if (mkdtemp(scratch_template.data()) == nullptr) {
    return absl::InternalError("cannot create a temporary directory");
  }
  const std::string scratch = scratch_template;
  std::printf(
      "| queued jobs | CreateJob (ms/job) | tick reading the queue (ms) | "
      "tick skipping it (ms) | ratio | scheduler CPU, every tick reads | "
      "scheduler CPU, one read a second |\n"
      "| --- | --- | --- | --- | --- | --- | --- |\n");
  absl::Status status;
  for (const std::string& length : absl::GetFlag(FLAGS_queue_lengths)) {
    int queue_length = 0;
    if (!absl::SimpleAtoi(length, &queue_length) || queue_length < 1) {
      status = absl::InvalidArgumentError(
          absl::StrCat("--queue_lengths: not a positive number: ", length));
      break;
    }
    status = Measure(cache, scratch, queue_length, absl::GetFlag(FLAGS_rounds));
    if (!status.ok()) break;
  }
  std::filesystem::remove_all(scratch);
  return status;
}

}  // namespace
}  // namespace lethe

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const absl::Status status = lethe::Run();
  if (!status.ok()) {
    std::fprintf(stderr, "scheduler_tick: %s\n", status.ToString().c_str());
    return 1;
  }
  return 0;
}
