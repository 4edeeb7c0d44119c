// Training throughput of Lethe's Llama model on this machine: tokens/s and
// achieved GFLOP/s of a full training step (forward, backward, AdamW) next
// to the matmul peak measured in the same run, for fp32 and bf16 autocast,
// at the embedded benchmark's model size and one near 100M parameters.
//
//   bazel run -c opt //benchmarks:training_throughput -- --threads=2
//
// Achieved FLOP/s counts 6 * parameters * tokens per step (the usual
// estimate; attention score FLOPs are left out).
#include <torch/optim/adamw.h>

#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_split.h"
#include "libs/loss/sequence_loss.h"
#include "libs/model/llama_config.h"
#include "libs/model/llama_model.h"

ABSL_FLAG(int, threads, 2, "intra-op threads");
ABSL_FLAG(int, steps, 5, "timed training steps per configuration");
ABSL_FLAG(int, batch, 16, "sequences per step");
ABSL_FLAG(int, length, 64, "tokens per sequence");
ABSL_FLAG(std::string, sizes, "mini,100m", "model sizes: mini, 100m");

namespace lethe {
namespace {

double Seconds(const std::function<void()>& work, int repeats) {
  work();  // Warm-up.
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < repeats; ++i) work();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
             .count() /
         repeats;
}

double MatmulGflops(at::ScalarType dtype) {
  const int64_t n = 1024;
  const at::Tensor a = torch::randn({n, n}).to(dtype);
  const at::Tensor b = torch::randn({n, n}).to(dtype);
  const double seconds = Seconds([&] { torch::matmul(a, b); }, 10);
  return 2.0 * n * n * n / seconds / 1e9;
}

LlamaConfig ConfigFor(const std::string& size) {
  // "mini": the embedded benchmark's model with its 1024-piece tokenizer.
  return size == "100m" ? Benchmark100MLlamaConfig()
                        : MiniBenchmarkLlamaConfig(1024);
}

void Run() {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  at::set_num_threads(absl::GetFlag(FLAGS_threads));
  torch::manual_seed(0);
  const double peak_fp32 = MatmulGflops(at::kFloat);
  const double peak_bf16 = MatmulGflops(at::kBFloat16);
  std::printf(
      "threads=%d  matmul peak (1024^3): fp32 %.0f GFLOP/s, bf16 %.0f "
      "GFLOP/s\n",
      absl::GetFlag(FLAGS_threads), peak_fp32, peak_bf16);
  std::printf("%-6s %10s %-5s %12s %10s %8s\n", "size", "params", "dtype",
              "tokens/s", "GFLOP/s", "of peak");
  const int batch = absl::GetFlag(FLAGS_batch);
  const int length = absl::GetFlag(FLAGS_length);
  const std::vector<std::string> sizes =
      absl::StrSplit(absl::GetFlag(FLAGS_sizes), ',');
  for (const std::string& size : sizes) {
    for (const bool bf16 : {false, true}) {
      if (bf16 && peak_bf16 < peak_fp32 / 4) {
        std::printf(
            "%-6s %10s %-5s  skipped: bf16 matmul is far slower than "
            "fp32 on this CPU (no AVX512-BF16/AMX)\n",
            size.c_str(), "", "bf16");
        continue;
      }
      LlamaForCausalLM model(ConfigFor(size));
      torch::optim::AdamW optimizer(model.parameters(),
                                    torch::optim::AdamWOptions(1e-4));
      const at::Tensor ids = torch::randint(3, model.config().vocab_size,
                                            {batch, length}, at::kLong);
      const double seconds = Seconds(
          [&] {
            optimizer.zero_grad();
            CpuBf16AutocastGuard autocast(bf16);
            TokenMeanNll(model.Forward(ids), ids).backward();
            optimizer.step();
          },
          absl::GetFlag(FLAGS_steps));
      const double tokens = static_cast<double>(batch) * length;
      const double parameters = static_cast<double>(model.NumParameters());
      const double gflops = 6.0 * parameters * tokens / seconds / 1e9;
      std::printf("%-6s %9.1fM %-5s %12.0f %10.1f %7.0f%%\n", size.c_str(),
                  parameters / 1e6, bf16 ? "bf16" : "fp32", tokens / seconds,
                  gflops, 100.0 * gflops / (bf16 ? peak_bf16 : peak_fp32));
    }
  }
}

}  // namespace
}  // namespace lethe

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  lethe::Run();
  return 0;
}
