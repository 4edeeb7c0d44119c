// The Jobs API under load: a real lethe-coordinator (loopback, no workers,
// so every job stays QUEUED, a fresh SQLite store) filled with --jobs jobs
// through CreateJob, then --streams WatchJob streams held open on distinct
// jobs while --calls GetJob calls (from --threads threads; once as fast as
// they return, once paced at --rate calls/s) and --list_calls ListJobs
// calls (pages of 100, walking the whole list) are timed. Prints the
// latencies (p50, p90, p99, max), the CreateJob rate, and the coordinator
// process's CPU time per phase (utime + stime from /proc/<pid>/stat), its
// threads and its peak RSS (VmHWM). Progress goes to stderr.
//
//   bazel run //benchmarks:coordinator_load
//   bazel run //benchmarks:coordinator_load -- --jobs=500 --streams=50
//       --calls=500 --idle_seconds=1  (a quick run)
//
// The streams all come from this process (one channel, gRPC's callback
// API), so they count against one client's stream cap: the coordinator is
// started with --max_streams_per_client=--max_streams_per_client (1000, not
// its default 16), and with --backfill_after=1h (see that flag). The paced
// run is the one to read for a client's view: a call due while the
// coordinator is busy (its scheduler reads the whole queue once a second)
// waits, where the unpaced threads would just send fewer calls then.
// Specs are minimal but valid: an empty config.json and tokenizer.model,
// empty forget/retain splits, one output_dir per job, all in a fresh
// temporary directory that is removed at the end (10,000 output
// directories: up to a minute).
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "lethe/v1/jobs_service.grpc.pb.h"
#include "libs/files/file_io.h"
#include "libs/status/status_macros.h"
#include "libs/subprocess/subprocess.h"
#include "nlohmann/json.hpp"

ABSL_FLAG(std::string, coordinator_binary, "",
          "lethe-coordinator (default: the one in this program's runfiles, "
          "else the one next to it)");
ABSL_FLAG(int, jobs, 10000, "jobs queued through CreateJob");
ABSL_FLAG(int, create_threads, 4, "threads calling CreateJob");
ABSL_FLAG(int, streams, 500, "WatchJob streams held open, on distinct jobs");
ABSL_FLAG(int, calls, 2000, "GetJob calls timed while the streams are open");
ABSL_FLAG(int, threads, 4, "threads calling GetJob and ListJobs");
ABSL_FLAG(double, rate, 200,
          "GetJob calls per second of the paced run (open loop: call i is "
          "due at i / rate s and its latency counts from then, so a stall "
          "delays the calls due during it as it would a client's); 0: no "
          "paced run");
ABSL_FLAG(std::string, latency_file, "",
          "if set, write the paced GetJob calls here, one line each: when "
          "the call was due (s after the first) and its latency (ms)");
ABSL_FLAG(int, list_calls, 200,
          "ListJobs calls (pages of 100) timed while the streams are open");
ABSL_FLAG(int, idle_seconds, 5,
          "seconds of coordinator CPU measured with nothing asked, before "
          "and after the streams open");
ABSL_FLAG(int, max_streams_per_client, 1000,
          "the coordinator's --max_streams_per_client (all streams come from "
          "this one client)");
ABSL_FLAG(std::string, backfill_after, "1h",
          "the coordinator's --backfill_after. Its default, 1m, makes every "
          "job that has waited a minute log a \"waiting\" line, which wakes "
          "every stream: at this benchmark's fill rate, hundreds a second "
          "for as long as the fill took, from a minute after it started. "
          "1h keeps the run to the steady state of a long queue");
ABSL_FLAG(bool, keep_scratch, false,
          "keep the temporary directory (store, coordinator log) at the end");

namespace lethe {
namespace {

using Clock = std::chrono::steady_clock;

double MillisecondsSince(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start)
      .count();
}

// What /proc says about the coordinator process.
struct ProcessSample {
  double cpu_seconds = 0;   // utime + stime.
  int64_t peak_rss_kb = 0;  // VmHWM.
  int64_t rss_kb = 0;       // VmRSS.
  int threads = 0;
};

absl::StatusOr<ProcessSample> SampleProcess(pid_t pid) {
  ProcessSample sample;
  ASSIGN_OR_RETURN(const std::string stat,
                   ReadFileToString(absl::StrCat("/proc/", pid, "/stat")));
  // The fields after "(comm)": state is field 3, utime 14 and stime 15.
  const size_t paren = stat.rfind(')');
  if (paren == std::string::npos) {
    return absl::DataLossError(absl::StrCat("/proc/", pid, "/stat: ", stat));
  }
  const std::vector<absl::string_view> fields = absl::StrSplit(
      absl::string_view(stat).substr(paren + 2), ' ', absl::SkipEmpty());
  int64_t utime = 0, stime = 0;
  if (fields.size() < 13 || !absl::SimpleAtoi(fields[11], &utime) ||
      !absl::SimpleAtoi(fields[12], &stime)) {
    return absl::DataLossError(absl::StrCat("/proc/", pid, "/stat: ", stat));
  }
  sample.cpu_seconds =
      static_cast<double>(utime + stime) / sysconf(_SC_CLK_TCK);
  ASSIGN_OR_RETURN(const std::string status,
                   ReadFileToString(absl::StrCat("/proc/", pid, "/status")));
  for (absl::string_view line : absl::StrSplit(status, '\n')) {
    const std::vector<absl::string_view> parts =
        absl::StrSplit(line, absl::ByAnyChar(" \t:"), absl::SkipEmpty());
    if (parts.size() < 2) continue;
    if (parts[0] == "VmHWM") absl::SimpleAtoi(parts[1], &sample.peak_rss_kb);
    if (parts[0] == "VmRSS") absl::SimpleAtoi(parts[1], &sample.rss_kb);
    if (parts[0] == "Threads") absl::SimpleAtoi(parts[1], &sample.threads);
  }
  return sample;
}

std::string LoadAverage() {
  const std::string text = ReadFileToString("/proc/loadavg").value_or("?");
  const std::vector<absl::string_view> parts = absl::StrSplit(text, ' ');
  if (parts.size() < 3) return text;
  return absl::StrCat(parts[0], " ", parts[1], " ", parts[2]);
}

// Latencies of one kind of call, in milliseconds.
struct Latencies {
  std::vector<double> ms;
  std::vector<double> due_seconds;  // When each call was due, from the start.
  int errors = 0;
  std::string first_error;
  double wall_seconds = 0;

  void Add(const Latencies& other) {
    ms.insert(ms.end(), other.ms.begin(), other.ms.end());
    due_seconds.insert(due_seconds.end(), other.due_seconds.begin(),
                       other.due_seconds.end());
    errors += other.errors;
    if (first_error.empty()) first_error = other.first_error;
  }
};

// Nearest rank: the smallest value with at least `fraction` of them at or
// below it.
double Percentile(const std::vector<double>& sorted, double fraction) {
  if (sorted.empty()) return 0;
  const size_t rank = static_cast<size_t>(std::ceil(fraction * sorted.size()));
  return sorted[std::clamp<size_t>(rank, 1, sorted.size()) - 1];
}

void PrintLatencyRow(const std::string& call, Latencies latencies) {
  std::sort(latencies.ms.begin(), latencies.ms.end());
  const std::vector<double>& ms = latencies.ms;
  std::printf(
      "| %s | %zu | %d | %.2f | %.2f | %.2f | %.2f | %.0f |\n", call.c_str(),
      ms.size(), latencies.errors, Percentile(ms, 0.5), Percentile(ms, 0.9),
      Percentile(ms, 0.99), ms.empty() ? 0.0 : ms.back(),
      latencies.wall_seconds > 0 ? ms.size() / latencies.wall_seconds : 0.0);
  if (!latencies.first_error.empty()) {
    std::printf("  first error: %s\n", latencies.first_error.c_str());
  }
}

// Runs `call(thread, i)` for i in [0, count) over `threads` threads and
// times each call; `call` returns its status. With `rate` 0 each thread
// calls again as soon as its call returns (closed loop); else call i is
// due at i / rate seconds and its latency counts from then (open loop,
// `threads` calls in flight at most).
template <typename Call>
Latencies TimeCalls(int count, int threads, double rate, const Call& call) {
  std::vector<Latencies> per_thread(threads);
  std::atomic<int> next{0};
  const Clock::time_point start = Clock::now();
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      Latencies& mine = per_thread[t];
      for (int i = next++; i < count; i = next++) {
        Clock::time_point due = Clock::now();
        if (rate > 0) {
          due = start + std::chrono::duration_cast<Clock::duration>(
                            std::chrono::duration<double>(i / rate));
          std::this_thread::sleep_until(due);
        }
        const grpc::Status status = call(t, i);
        mine.ms.push_back(MillisecondsSince(due));
        mine.due_seconds.push_back(
            std::chrono::duration<double>(due - start).count());
        if (!status.ok()) {
          ++mine.errors;
          if (mine.first_error.empty()) {
            mine.first_error =
                absl::StrCat(status.error_code(), ": ", status.error_message());
          }
        }
      }
    });
  }
  for (std::thread& thread : pool) thread.join();
  Latencies all;
  for (const Latencies& latencies : per_thread) all.Add(latencies);
  all.wall_seconds = MillisecondsSince(start) / 1000;
  return all;
}

// A line on stderr with the time since the start, to follow a long run.
void Progress(const std::string& what) {
  static const Clock::time_point start = Clock::now();
  std::fprintf(stderr, "[%6.1f s] %s\n", MillisecondsSince(start) / 1000,
               what.c_str());
}

std::unique_ptr<v1::Jobs::Stub> NewStub(const std::string& address,
                                        const std::string& connection) {
  // A distinct argument gives each channel its own connection.
  grpc::ChannelArguments arguments;
  arguments.SetString("lethe.benchmark.connection", connection);
  return v1::Jobs::NewStub(grpc::CreateCustomChannel(
      address, grpc::InsecureChannelCredentials(), arguments));
}

// Open WatchJob streams and what came back on them.
class StreamTally {
 public:
  void Opened() {
    absl::MutexLock lock(&mu_);
    ++opened_;
  }
  void Closed(const grpc::Status& status) {
    absl::MutexLock lock(&mu_);
    ++closed_;
    if (!status.ok() && status.error_code() != grpc::StatusCode::CANCELLED) {
      ++failed_;
      if (first_error_.empty()) {
        first_error_ =
            absl::StrCat(status.error_code(), ": ", status.error_message());
      }
    }
  }
  // Waits until every one of `streams` got its first job or ended.
  bool AwaitOpen(int streams, absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    auto done = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return opened_ + closed_ >= streams;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&done), timeout);
  }
  bool AwaitClosed(int streams, absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    auto done = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return closed_ >= streams;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&done), timeout);
  }
  int opened() {
    absl::MutexLock lock(&mu_);
    return opened_;
  }
  int closed() {
    absl::MutexLock lock(&mu_);
    return closed_;
  }
  int failed() {
    absl::MutexLock lock(&mu_);
    return failed_;
  }
  std::string first_error() {
    absl::MutexLock lock(&mu_);
    return first_error_;
  }

 private:
  absl::Mutex mu_;
  int opened_ ABSL_GUARDED_BY(mu_) = 0;  // Streams that sent their first job.
  int closed_ ABSL_GUARDED_BY(mu_) = 0;
  int failed_ ABSL_GUARDED_BY(mu_) = 0;  // Closed with an error.
  std::string first_error_ ABSL_GUARDED_BY(mu_);
};

// One WatchJob stream, read until cancelled.
class Watch : public grpc::ClientReadReactor<v1::Job> {
 public:
  Watch(v1::Jobs::Stub& stub, const std::string& job, StreamTally& tally)
      : tally_(tally) {
    request_.set_name(job);
    stub.async()->WatchJob(&context_, &request_, this);
    StartRead(&job_);
    StartCall();
  }
  void Cancel() { context_.TryCancel(); }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // OnDone follows.
    if (!got_first_) {
      got_first_ = true;
      tally_.Opened();
    }
    StartRead(&job_);
  }
  void OnDone(const grpc::Status& status) override { tally_.Closed(status); }

 private:
  StreamTally& tally_;
  grpc::ClientContext context_;
  v1::WatchJobRequest request_;
  v1::Job job_;
  bool got_first_ = false;  // Touched by one callback at a time.
};

// A lethe-coordinator on a free loopback port with its store, ready file
// and log in `dir`, no workers; killed when destroyed.
class RunningCoordinator {
 public:
  static absl::StatusOr<std::unique_ptr<RunningCoordinator>> Start(
      const std::string& binary, const std::string& dir, int max_streams,
      const std::string& backfill_after) {
    std::filesystem::create_directories(dir);
    const std::string ready_file = dir + "/ready.json";
    const std::string log = dir + "/coordinator.log";
    ASSIGN_OR_RETURN(
        Subprocess process,
        Subprocess::Start(
            {binary, "--listen=127.0.0.1:0", "--metrics_address=127.0.0.1:0",
             "--database=" + dir + "/jobs.sqlite", "--local_workers=0",
             absl::StrCat("--max_streams_per_client=", max_streams),
             "--backfill_after=" + backfill_after,
             "--ready_file=" + ready_file},
            {}, {.stdout_path = log, .stderr_path = log}));
    std::unique_ptr<RunningCoordinator> coordinator(
        new RunningCoordinator(std::move(process)));
    const absl::Time deadline = absl::Now() + absl::Seconds(60);
    std::string ready;
    while (ready.empty() && absl::Now() < deadline &&
           coordinator->process_.running()) {
      absl::SleepFor(absl::Milliseconds(20));
      ready = ReadFileToString(ready_file).value_or("");
    }
    const nlohmann::json parsed = nlohmann::json::parse(ready, nullptr, false);
    if (!parsed.is_object() || !parsed.contains("grpc_address") ||
        !parsed["grpc_address"].is_string()) {
      return absl::DeadlineExceededError(
          absl::StrCat(binary, " did not get ready; its log:\n",
                       ReadFileToString(log).value_or("")));
    }
    coordinator->address_ = parsed["grpc_address"];
    return coordinator;
  }
  ~RunningCoordinator() {
    if (process_.running()) {
      process_.Signal(SIGKILL).IgnoreError();
      process_.Wait().IgnoreError();
    }
  }

  pid_t pid() const { return process_.pid(); }
  const std::string& address() const { return address_; }

 private:
  explicit RunningCoordinator(Subprocess process)
      : process_(std::move(process)) {}

  Subprocess process_;
  std::string address_;
};

std::string FindCoordinator(const char* argv0) {
  const std::string flag = absl::GetFlag(FLAGS_coordinator_binary);
  if (!flag.empty()) return flag;
  const std::string relative = "services/coordinator/lethe-coordinator";
  // Bazel's runfiles (bazel run, then bazel-bin/), then CMake's build
  // directory, where the binaries lie side by side.
  for (const std::string& candidate :
       {relative, absl::StrCat(argv0, ".runfiles/lethe/", relative),
        (std::filesystem::path(argv0).parent_path() / "lethe-coordinator")
            .string()}) {
    if (std::filesystem::exists(candidate)) {
      return std::filesystem::absolute(candidate).string();
    }
  }
  return relative;
}

v1::CreateJobRequest Request(const std::string& scratch, int index) {
  v1::CreateJobRequest request;
  v1::JobSpec& spec = *request.mutable_spec();
  spec.set_model_dir(scratch + "/model");
  spec.set_data_dir(scratch + "/data");
  spec.set_forget_split("forget10");
  spec.set_method(v1::NPO_RT);
  spec.set_output_dir(absl::StrCat(scratch, "/out/", index));
  return request;
}

class Phases {
 public:
  explicit Phases(pid_t pid) : pid_(pid) {}
  // Samples the coordinator at the start of a phase.
  absl::Status Begin(std::string phase) {
    Progress(phase);
    phase_ = std::move(phase);
    ASSIGN_OR_RETURN(before_, SampleProcess(pid_));
    start_ = Clock::now();
    return absl::OkStatus();
  }
  // Samples it at the end and records a row.
  absl::Status End() {
    ASSIGN_OR_RETURN(const ProcessSample after, SampleProcess(pid_));
    const double wall = MillisecondsSince(start_) / 1000;
    const double cpu = after.cpu_seconds - before_.cpu_seconds;
    rows_.push_back(absl::StrFormat("| %s | %.1f | %.2f | %.0f%% | %d | %.0f |",
                                    phase_, wall, cpu,
                                    wall > 0 ? 100 * cpu / wall : 0.0,
                                    after.threads, after.rss_kb / 1024.0));
    return absl::OkStatus();
  }
  void Print() const {
    std::printf(
        "\n| phase | wall (s) | coordinator CPU (s) | CPU / wall | "
        "threads after | RSS after (MiB) |\n| --- | --- | --- | --- | --- | "
        "--- |\n");
    for (const std::string& row : rows_) std::printf("%s\n", row.c_str());
  }

 private:
  pid_t pid_;
  std::string phase_;
  ProcessSample before_;
  Clock::time_point start_;
  std::vector<std::string> rows_;
};

absl::Status Run(const char* argv0) {
  const int job_count = absl::GetFlag(FLAGS_jobs);
  const int stream_count = absl::GetFlag(FLAGS_streams);
  const int calls = absl::GetFlag(FLAGS_calls);
  const int threads = std::max(1, absl::GetFlag(FLAGS_threads));
  const int list_calls = absl::GetFlag(FLAGS_list_calls);
  if (job_count < 1 || stream_count < 0 || stream_count > job_count) {
    return absl::InvalidArgumentError(
        "need --jobs >= 1 and 0 <= --streams <= --jobs");
  }
  std::string scratch_template =
      (std::filesystem::temp_directory_path() / "lethe-coordinator-load-XXXXXX")
          .string();
  if (mkdtemp(scratch_template.data()) == nullptr) {
    return absl::InternalError("cannot create a temporary directory");
  }
  const std::string scratch = scratch_template;
  // Runs last: after the coordinator is killed and the streams are closed.
  const absl::Cleanup remove_scratch = [&] {
    if (absl::GetFlag(FLAGS_keep_scratch)) {
      std::printf("kept %s\n", scratch.c_str());
    } else {
      Progress(absl::StrCat("removing ", scratch));
      std::filesystem::remove_all(scratch);
      Progress("done");
    }
  };
  std::filesystem::create_directories(scratch + "/model");
  std::filesystem::create_directories(scratch + "/data");
  std::filesystem::create_directories(scratch + "/out");
  RETURN_IF_ERROR(WriteFileAtomically(scratch + "/model/config.json", "{}"));
  RETURN_IF_ERROR(WriteFileAtomically(scratch + "/model/tokenizer.model", ""));
  RETURN_IF_ERROR(WriteFileAtomically(scratch + "/data/forget10.json", "[]"));
  RETURN_IF_ERROR(WriteFileAtomically(scratch + "/data/retain90.json", "[]"));

  const std::string binary = FindCoordinator(argv0);
  Progress(absl::StrCat("starting ", binary));
  const int max_streams = absl::GetFlag(FLAGS_max_streams_per_client);
  ASSIGN_OR_RETURN(
      std::unique_ptr<RunningCoordinator> coordinator,
      RunningCoordinator::Start(binary, scratch + "/coordinator", max_streams,
                                absl::GetFlag(FLAGS_backfill_after)));
  const pid_t pid = coordinator->pid();
  const std::string& address = coordinator->address();
  std::printf(
      "coordinator_load: %s on %s (pid %d, --max_streams_per_client=%d, "
      "--backfill_after=%s, no workers); %d jobs, %d WatchJob streams, %d "
      "GetJob and %d ListJobs "
      "calls from %d threads; %u cores, load average %s\n",
      binary.c_str(), address.c_str(), pid, max_streams,
      absl::GetFlag(FLAGS_backfill_after).c_str(), job_count, stream_count,
      calls, list_calls, threads, std::thread::hardware_concurrency(),
      LoadAverage().c_str());
  std::fflush(stdout);
  Phases phases(pid);

  // Fill the queue.
  std::vector<std::string> names(job_count);
  const int create_threads = std::max(1, absl::GetFlag(FLAGS_create_threads));
  std::vector<std::unique_ptr<v1::Jobs::Stub>> create_stubs;
  for (int t = 0; t < create_threads; ++t) {
    create_stubs.push_back(NewStub(address, absl::StrCat("create-", t)));
  }
  RETURN_IF_ERROR(phases.Begin(absl::StrCat("CreateJob x ", job_count)));
  const Latencies created =
      TimeCalls(job_count, create_threads, 0, [&](int thread, int i) {
        grpc::ClientContext context;
        context.set_deadline(std::chrono::system_clock::now() +
                             std::chrono::seconds(60));
        v1::Job job;
        const grpc::Status status = create_stubs[thread]->CreateJob(
            &context, Request(scratch, i), &job);
        if (status.ok()) names[i] = job.name();
        return status;
      });
  RETURN_IF_ERROR(phases.End());
  if (created.errors > 0) {
    return absl::InternalError(
        absl::StrCat(created.errors,
                     " CreateJob calls failed; first: ", created.first_error));
  }

  std::vector<std::unique_ptr<v1::Jobs::Stub>> call_stubs;
  for (int t = 0; t < threads; ++t) {
    call_stubs.push_back(NewStub(address, absl::StrCat("call-", t)));
  }
  std::vector<std::mt19937> random;
  for (int t = 0; t < threads; ++t) random.emplace_back(7 + t);
  const auto get_job = [&](int thread, int) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::seconds(30));
    v1::GetJobRequest request;
    request.set_name(names[std::uniform_int_distribution<int>(
        0, job_count - 1)(random[thread])]);
    v1::Job job;
    return call_stubs[thread]->GetJob(&context, request, &job);
  };
  // Walks the list a page of 100 at a time, each thread from the start,
  // starting over after the last page.
  std::vector<std::string> page_tokens(threads);
  const auto list_jobs = [&](int thread, int) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::seconds(30));
    v1::ListJobsRequest request;
    request.set_page_size(100);
    request.set_page_token(page_tokens[thread]);
    v1::ListJobsResponse response;
    const grpc::Status status =
        call_stubs[thread]->ListJobs(&context, request, &response);
    page_tokens[thread] = status.ok() ? response.next_page_token() : "";
    return status;
  };
  const absl::Duration idle = absl::Seconds(absl::GetFlag(FLAGS_idle_seconds));

  RETURN_IF_ERROR(phases.Begin("idle, no streams"));
  absl::SleepFor(idle);
  RETURN_IF_ERROR(phases.End());
  RETURN_IF_ERROR(
      phases.Begin(absl::StrCat("GetJob x ", calls, ", no streams")));
  const Latencies get_alone = TimeCalls(calls, threads, 0, get_job);
  RETURN_IF_ERROR(phases.End());
  const double rate = absl::GetFlag(FLAGS_rate);
  Latencies get_alone_paced;
  if (rate > 0) {
    RETURN_IF_ERROR(phases.Begin(
        absl::StrFormat("GetJob x %d at %g/s, no streams", calls, rate)));
    get_alone_paced = TimeCalls(calls, threads, rate, get_job);
    RETURN_IF_ERROR(phases.End());
  }

  // Open the streams on one shared channel, on distinct jobs spread over
  // the queue.
  std::unique_ptr<v1::Jobs::Stub> watch_stub = NewStub(address, "watch");
  StreamTally tally;
  std::vector<std::unique_ptr<Watch>> watches;
  // Every stream ends before its Watch is destroyed.
  const absl::Cleanup close_streams = [&] {
    for (std::unique_ptr<Watch>& watch : watches) watch->Cancel();
    if (!tally.AwaitClosed(static_cast<int>(watches.size()),
                           absl::Seconds(60))) {
      std::fprintf(stderr, "coordinator_load: streams did not close\n");
      std::_Exit(1);
    }
  };
  RETURN_IF_ERROR(
      phases.Begin(absl::StrCat("open ", stream_count, " WatchJob streams")));
  const Clock::time_point open_start = Clock::now();
  for (int s = 0; s < stream_count; ++s) {
    const int job = static_cast<int>(static_cast<int64_t>(s) * job_count /
                                     std::max(1, stream_count));
    watches.push_back(std::make_unique<Watch>(*watch_stub, names[job], tally));
  }
  const bool all_open = tally.AwaitOpen(stream_count, absl::Seconds(120));
  const double open_seconds = MillisecondsSince(open_start) / 1000;
  RETURN_IF_ERROR(phases.End());
  if (!all_open || tally.opened() < stream_count) {
    return absl::InternalError(absl::StrCat(
        tally.opened(), " of ", stream_count, " streams opened, ",
        tally.failed(), " failed; first error: ", tally.first_error()));
  }

  RETURN_IF_ERROR(
      phases.Begin(absl::StrCat("idle, ", stream_count, " streams")));
  absl::SleepFor(idle);
  RETURN_IF_ERROR(phases.End());
  RETURN_IF_ERROR(phases.Begin(
      absl::StrCat("GetJob x ", calls, ", ", stream_count, " streams")));
  const Latencies get_watched = TimeCalls(calls, threads, 0, get_job);
  RETURN_IF_ERROR(phases.End());
  Latencies get_paced;
  if (rate > 0) {
    RETURN_IF_ERROR(phases.Begin(absl::StrFormat(
        "GetJob x %d at %g/s, %d streams", calls, rate, stream_count)));
    get_paced = TimeCalls(calls, threads, rate, get_job);
    RETURN_IF_ERROR(phases.End());
    const std::string latency_file = absl::GetFlag(FLAGS_latency_file);
    if (!latency_file.empty()) {
      std::string lines;
      for (size_t i = 0; i < get_paced.ms.size(); ++i) {
        absl::StrAppendFormat(&lines, "%.4f %.3f\n", get_paced.due_seconds[i],
                              get_paced.ms[i]);
      }
      RETURN_IF_ERROR(WriteFileAtomically(latency_file, lines));
    }
  }
  RETURN_IF_ERROR(phases.Begin(
      absl::StrCat("ListJobs x ", list_calls, ", ", stream_count, " streams")));
  const Latencies listed = TimeCalls(list_calls, threads, 0, list_jobs);
  RETURN_IF_ERROR(phases.End());
  const int still_open = tally.opened() - tally.closed();

  ASSIGN_OR_RETURN(const ProcessSample last, SampleProcess(pid));
  Progress("closing the streams, stopping the coordinator");

  std::printf(
      "\n| call | calls | errors | p50 (ms) | p90 (ms) | p99 (ms) | max (ms) "
      "| calls/s |\n| --- | --- | --- | --- | --- | --- | --- | --- |\n");
  PrintLatencyRow(absl::StrCat("CreateJob (", create_threads,
                               " threads, filling the queue)"),
                  created);
  PrintLatencyRow(absl::StrCat("GetJob, no streams (", threads, " threads)"),
                  get_alone);
  if (rate > 0) {
    PrintLatencyRow(absl::StrFormat("GetJob, no streams, paced at %g/s (open "
                                    "loop, %d threads)",
                                    rate, threads),
                    get_alone_paced);
  }
  PrintLatencyRow(absl::StrCat("GetJob, ", stream_count, " streams open (",
                               threads, " threads)"),
                  get_watched);
  if (rate > 0) {
    PrintLatencyRow(absl::StrFormat("GetJob, %d streams open, paced at %g/s "
                                    "(open loop, %d threads)",
                                    stream_count, rate, threads),
                    get_paced);
  }
  PrintLatencyRow(absl::StrCat("ListJobs page of 100, ", stream_count,
                               " streams open (", threads, " threads)"),
                  listed);
  phases.Print();
  std::printf(
      "\nstreams: %d opened in %.2f s, %d still open after the calls, %d "
      "failed%s%s\ncoordinator peak RSS (VmHWM): %.1f MiB; load average at "
      "the end: %s\n",
      tally.opened(), open_seconds, still_open, tally.failed(),
      tally.failed() > 0 ? "; first error: " : "", tally.first_error().c_str(),
      last.peak_rss_kb / 1024.0, LoadAverage().c_str());
  return absl::OkStatus();
}

}  // namespace
}  // namespace lethe

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const absl::Status status = lethe::Run(argv[0]);
  if (!status.ok()) {
    std::fprintf(stderr, "coordinator_load: %s\n", status.ToString().c_str());
    return 1;
  }
  return 0;
}
