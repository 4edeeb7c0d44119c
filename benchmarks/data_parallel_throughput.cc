// Data-parallel step throughput on this machine: the same global batch
// trained by 1 process with T threads and by N processes (Gloo all-reduce
// of gradients over loopback) with T/N threads each, at the embedded
// benchmark's model size and one near 100M parameters. The multi-process
// configurations run twice: gradients all-reduced after the backward pass
// (CollectiveGroup::AllReduceMean, "after") and all-reduced in buckets while
// the backward pass runs (OverlappedReducer, "overlap"). Prints tokens/s of
// a full step (forward, backward, all-reduce, AdamW), its ratio to the
// single process of the same round, and the exposed all-reduce share of the
// step: the time between the end of the backward pass and averaged
// gradients. Modes zero1 and zero2 replace the replicated AdamW with
// ShardedAdamW (libs/dist/sharded_optimizer.h): zero1 averages with the
// overlapped reducer and steps the sharded optimizer; zero2 reduces each
// bucket to its owners during the backward pass and releases the
// gradients (its "exposed" share is ReduceGradients after the backward
// pass). Every row also prints the peak RSS (VmHWM) of its ranks (the
// largest) next to libs/plan's prediction for the same step (method NPO,
// whose training phase makes one forward pass per micro-batch like this
// fine-tuning step; its training_bytes(), without the reference pass).
// Ranks run with MALLOC_MMAP_THRESHOLD_=--mmap_threshold (0: glibc's
// default), as the plan's CPU calibration does.
//
//   bazel run -c opt //benchmarks:data_parallel_throughput -- --sizes=100m \
//       --modes=after,overlap,zero1,zero2 --batch=4 --steps=2
//
//   bazel run -c opt //benchmarks:data_parallel_throughput -- --threads=2
//
// Each configuration runs in fresh processes (this program started again
// with --rank), so thread pools never mix; --rounds repeats the sequence of
// configurations, so that peers compared in a ratio ran close together.
#include <torch/optim/adamw.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "libs/dist/collective_group.h"
#include "libs/dist/overlapped_reducer.h"
#include "libs/dist/sharded_optimizer.h"
#include "libs/files/file_io.h"
#include "libs/loss/sequence_loss.h"
#include "libs/model/llama_config.h"
#include "libs/model/llama_model.h"
#include "libs/plan/memory_plan.h"
#include "libs/subprocess/subprocess.h"
#include "libs/sysinfo/process_memory.h"

ABSL_FLAG(int, threads, 2, "CPU threads in all (split among the ranks)");
ABSL_FLAG(int, steps, 5, "timed steps per configuration (after one warm-up)");
ABSL_FLAG(int, batch, 16, "sequences per step, all ranks together");
ABSL_FLAG(int, length, 64, "tokens per sequence");
ABSL_FLAG(std::string, sizes, "mini,100m", "model sizes: mini, 100m");
ABSL_FLAG(std::string, worlds, "1,2", "process counts to compare");
ABSL_FLAG(std::string, modes, "after,overlap",
          "gradient all-reduce modes of the multi-process configurations: "
          "after (the backward pass), overlap (with it), zero1, zero2 "
          "(sharded AdamW)");
ABSL_FLAG(int64_t, mmap_threshold, 1 << 20,
          "MALLOC_MMAP_THRESHOLD_ of the ranks; 0: glibc's default");
ABSL_FLAG(int, rounds, 1, "times each size's configurations run, in turn");
ABSL_FLAG(int64_t, bucket_mb, 25, "overlap mode: bucket size in MiB");
// Internal: one rank of one configuration.
ABSL_FLAG(int, rank, -1, "internal: run as this rank");
ABSL_FLAG(int, world, 1, "internal: ranks of the configuration");
ABSL_FLAG(int, store_port, 0, "internal: rank 0's TCPStore port");
ABSL_FLAG(std::string, size, "mini", "internal: model size");
ABSL_FLAG(std::string, mode, "after", "internal: all-reduce mode");
ABSL_FLAG(std::string, result_file, "", "internal: where rank 0 writes");

namespace lethe {
namespace {

LlamaConfig ConfigFor(const std::string& size) {
  // "mini": the embedded benchmark's model with its 1024-piece tokenizer.
  return size == "100m" ? Benchmark100MLlamaConfig()
                        : MiniBenchmarkLlamaConfig(1024);
}

double Now() {
  return std::chrono::duration<double>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// One rank: trains `steps` timed steps on its share of the batch; rank 0
// writes "<params> <seconds per step> <all-reduce seconds per step>".
int RunRank() {
  const int rank = absl::GetFlag(FLAGS_rank);
  const int world = absl::GetFlag(FLAGS_world);
  at::set_num_threads(std::max(1, absl::GetFlag(FLAGS_threads) / world));
  torch::manual_seed(0);  // Same initial weights on every rank.
  std::unique_ptr<RendezvousStore> store;
  std::unique_ptr<CollectiveGroup> group;
  if (world > 1) {
    if (rank == 0) {
      absl::StatusOr<std::unique_ptr<RendezvousStore>> started =
          RendezvousStore::Start("127.0.0.1", absl::GetFlag(FLAGS_store_port));
      if (!started.ok()) {
        std::fprintf(stderr, "%s\n", started.status().ToString().c_str());
        return 1;
      }
      store = *std::move(started);
    }
    absl::StatusOr<std::unique_ptr<CollectiveGroup>> joined =
        CollectiveGroup::Join({.store_host = "127.0.0.1",
                               .store_port = absl::GetFlag(FLAGS_store_port),
                               .prefix = "throughput",
                               .rank = rank,
                               .world_size = world});
    if (!joined.ok()) {
      std::fprintf(stderr, "%s\n", joined.status().ToString().c_str());
      return 1;
    }
    group = *std::move(joined);
  }
  LlamaForCausalLM model(ConfigFor(absl::GetFlag(FLAGS_size)));
  torch::optim::AdamW optimizer(model.parameters(),
                                torch::optim::AdamWOptions(1e-4));
  const std::string mode = absl::GetFlag(FLAGS_mode);
  const int zero_stage = mode == "zero1" ? 1 : mode == "zero2" ? 2 : 0;
  std::unique_ptr<ShardedAdamW> sharded;
  if (group && zero_stage > 0) {
    std::vector<ShardedParameter> parameters;
    for (const auto& parameter : model.named_parameters()) {
      parameters.push_back({parameter.key(), parameter.value(), 0.01});
    }
    absl::StatusOr<std::unique_ptr<ShardedAdamW>> created =
        ShardedAdamW::Create(
            *group, std::move(parameters),
            {.stage = zero_stage,
             .bucket_bytes = absl::GetFlag(FLAGS_bucket_mb) << 20});
    if (!created.ok()) {
      std::fprintf(stderr, "%s\n", created.status().ToString().c_str());
      return 1;
    }
    sharded = *std::move(created);
  }
  torch::manual_seed(1 + rank);  // Each rank its own data.
  const at::Tensor ids = torch::randint(
      3, model.config().vocab_size,
      {absl::GetFlag(FLAGS_batch) / world, absl::GetFlag(FLAGS_length)},
      at::kLong);
  const bool overlap = mode == "overlap" || mode == "zero1";
  std::unique_ptr<OverlappedReducer> reducer;
  if (group && overlap) {
    absl::StatusOr<std::unique_ptr<OverlappedReducer>> created =
        OverlappedReducer::Create(
            *group, model.parameters(),
            {.bucket_bytes = absl::GetFlag(FLAGS_bucket_mb) << 20});
    if (!created.ok()) {
      std::fprintf(stderr, "%s\n", created.status().ToString().c_str());
      return 1;
    }
    reducer = *std::move(created);
  }
  auto check = [](const absl::Status& status) {
    if (!status.ok()) {
      std::fprintf(stderr, "%s\n", status.ToString().c_str());
      std::exit(1);
    }
  };
  double allreduce_seconds = 0;
  auto step = [&] {
    optimizer.zero_grad();
    const at::Tensor loss = TokenMeanNll(model.Forward(ids), ids);
    if (sharded && zero_stage == 2) {
      check(sharded->PrepareForBackward());
      loss.backward();
      const double start = Now();
      check(sharded->ReduceGradients());
      allreduce_seconds += Now() - start;
      check(sharded->Step(1e-4, /*max_grad_norm=*/0).status());
      return;
    }
    if (reducer) {
      check(reducer->PrepareForBackward(loss));
      loss.backward();
      const double start = Now();
      check(reducer->FinishBackward());
      allreduce_seconds += Now() - start;
    } else {
      loss.backward();
    }
    if (group && !reducer) {
      std::vector<at::Tensor> gradients;
      for (const at::Tensor& parameter : model.parameters()) {
        gradients.push_back(parameter.grad());
      }
      const double start = Now();
      check(group->AllReduceMean(gradients));
      allreduce_seconds += Now() - start;
    }
    if (sharded) {
      check(sharded->Step(1e-4, /*max_grad_norm=*/0).status());
    } else {
      optimizer.step();
    }
  };
  step();  // Warm-up.
  allreduce_seconds = 0;
  const int steps = absl::GetFlag(FLAGS_steps);
  const double start = Now();
  for (int i = 0; i < steps; ++i) step();
  const double seconds = (Now() - start) / steps;
  // Every rank: its peak RSS in kB.
  if (!WriteFileAtomically(
           absl::StrCat(absl::GetFlag(FLAGS_result_file), ".rss", rank),
           absl::StrCat(ProcessMemoryBytes("VmHWM").value_or(0) / 1024))
           .ok()) {
    return 1;
  }
  if (rank == 0) {
    const absl::Status written =
        WriteFileAtomically(absl::GetFlag(FLAGS_result_file),
                            absl::StrCat(model.NumParameters(), " ", seconds,
                                         " ", allreduce_seconds / steps, "\n"));
    if (!written.ok()) return 1;
  }
  return 0;
}

std::string SelfPath() {
  return std::filesystem::read_symlink("/proc/self/exe").string();
}

// Runs one configuration in `world` fresh processes; false on failure.
bool RunConfiguration(const std::string& size, int world,
                      const std::string& mode, int store_port,
                      double* parameters, double* seconds,
                      double* allreduce_seconds, double* peak_rss_bytes) {
  const std::string result_file =
      absl::StrCat("/tmp/lethe_dp_throughput_", getpid(), ".txt");
  std::map<std::string, std::string> environment = {
      {"OMP_NUM_THREADS",
       absl::StrCat(std::max(1, absl::GetFlag(FLAGS_threads) / world))}};
  if (absl::GetFlag(FLAGS_mmap_threshold) > 0) {
    environment["MALLOC_MMAP_THRESHOLD_"] =
        absl::StrCat(absl::GetFlag(FLAGS_mmap_threshold));
  }
  std::vector<Subprocess> ranks;
  for (int rank = 0; rank < world; ++rank) {
    absl::StatusOr<Subprocess> process = Subprocess::Start(
        {SelfPath(), absl::StrCat("--rank=", rank),
         absl::StrCat("--world=", world),
         absl::StrCat("--store_port=", store_port), "--size=" + size,
         "--result_file=" + result_file, "--mode=" + mode,
         absl::StrCat("--bucket_mb=", absl::GetFlag(FLAGS_bucket_mb)),
         absl::StrCat("--threads=", absl::GetFlag(FLAGS_threads)),
         absl::StrCat("--steps=", absl::GetFlag(FLAGS_steps)),
         absl::StrCat("--batch=", absl::GetFlag(FLAGS_batch)),
         absl::StrCat("--length=", absl::GetFlag(FLAGS_length))},
        environment);
    if (!process.ok()) return false;
    ranks.push_back(*std::move(process));
  }
  bool ok = true;
  for (Subprocess& rank : ranks) {
    absl::StatusOr<ExitStatus> exit = rank.Wait();
    ok &= exit.ok() && exit->success();
  }
  absl::StatusOr<std::string> text = ReadFileToString(result_file);
  std::filesystem::remove(result_file);
  *peak_rss_bytes = 0;
  for (int rank = 0; rank < world; ++rank) {
    const std::string rss_file = absl::StrCat(result_file, ".rss", rank);
    absl::StatusOr<std::string> rss = ReadFileToString(rss_file);
    std::filesystem::remove(rss_file);
    double kb = 0;
    if (rss.ok() && absl::SimpleAtod(*rss, &kb)) {
      *peak_rss_bytes = std::max(*peak_rss_bytes, kb * 1024);
    }
  }
  if (!ok || !text.ok()) return false;
  const std::vector<std::string> fields =
      absl::StrSplit(*text, ' ', absl::SkipWhitespace());
  return fields.size() == 3 && absl::SimpleAtod(fields[0], parameters) &&
         absl::SimpleAtod(fields[1], seconds) &&
         absl::SimpleAtod(fields[2], allreduce_seconds);
}

int Compare() {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  const int threads = absl::GetFlag(FLAGS_threads);
  const int batch = absl::GetFlag(FLAGS_batch);
  const int length = absl::GetFlag(FLAGS_length);
  std::printf("global batch %d x %d tokens, %d threads in all, %d steps\n",
              batch, length, threads, absl::GetFlag(FLAGS_steps));
  std::printf("%-6s %5s %9s %-22s %-8s %10s %9s %9s %10s %10s\n", "size",
              "round", "params", "configuration", "mode", "tokens/s",
              "vs 1 proc", "exposed", "peak RSS", "plan");
  const std::vector<std::string> modes =
      absl::StrSplit(absl::GetFlag(FLAGS_modes), ',');
  int store_port = 29500 + getpid() % 1000;
  for (const std::string& size : std::vector<std::string>(
           absl::StrSplit(absl::GetFlag(FLAGS_sizes), ','))) {
    for (int round = 1; round <= absl::GetFlag(FLAGS_rounds); ++round) {
      double baseline = 0;
      for (const std::string& world_text : std::vector<std::string>(
               absl::StrSplit(absl::GetFlag(FLAGS_worlds), ','))) {
        int world = 1;
        if (!absl::SimpleAtoi(world_text, &world) || world < 1) return 2;
        for (const std::string& mode :
             world == 1 ? std::vector<std::string>{"-"} : modes) {
          double parameters = 0, seconds = 0, allreduce = 0, peak = 0;
          if (!RunConfiguration(size, world, mode == "-" ? "after" : mode,
                                ++store_port, &parameters, &seconds, &allreduce,
                                &peak)) {
            std::printf("%-6s %s %s: failed\n", size.c_str(),
                        world_text.c_str(), mode.c_str());
            return 1;
          }
          const double tokens_per_second = batch * length / seconds;
          if (world == 1) baseline = tokens_per_second;
          PlanOptions plan_options;
          plan_options.method = UnlearningMethod::kNpo;
          plan_options.batch_size = batch / world;
          plan_options.max_length = length;
          plan_options.world_size = world;
          plan_options.zero_stage = mode == "zero1"   ? 1
                                    : mode == "zero2" ? 2
                                                      : 0;
          const absl::StatusOr<MemoryPlan> plan =
              PlanMemory(ConfigFor(size), plan_options);
          const double planned =
              plan.ok() ? static_cast<double>(plan->training_bytes()) : 0;
          std::printf(
              "%-6s %5d %8.1fM %-22s %-8s %10.0f %8.2fx %8.1f%% %7.0f MiB "
              "%6.0f MiB\n",
              size.c_str(), round, parameters / 1e6,
              absl::StrCat(world, " proc x ", std::max(1, threads / world),
                           " thread(s)")
                  .c_str(),
              mode.c_str(), tokens_per_second,
              baseline > 0 ? tokens_per_second / baseline : 0.0,
              100.0 * allreduce / seconds, peak / (1 << 20),
              planned / (1 << 20));
        }
      }
    }
  }
  return 0;
}

}  // namespace
}  // namespace lethe

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return absl::GetFlag(FLAGS_rank) >= 0 ? lethe::RunRank() : lethe::Compare();
}
