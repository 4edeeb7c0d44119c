// Memory and speed of loading a bf16 checkpoint in its stored dtype
// (WeightsDtype::kAsStored: the weights stay in the memory-mapped file)
// against converting it to fp32 on load (the default).
//
//   bazel run -c opt //benchmarks:load_memory              # Llama-3.2-1B
//   bazel run -c opt //benchmarks:load_memory -- --layers=2 --vocab=32000
//
// Writes a random-weight bf16 checkpoint of the given shape (default
// Llama-3.2-1B: hidden 2048, 16 layers, 32 heads, 8 key/value heads,
// intermediate 8192, vocabulary 128256, tied embeddings, llama3 rope
// scaling) with Lethe's own writer (SaveLlamaCheckpoint) into a temporary
// directory, then, for each weights dtype, in a fresh child process: loads
// it and reports the load time and resident memory (VmRSS, split into
// RssFile, pages of the mapped file, and RssAnon, the process's own) right
// after loading and after the first forward pass (which faults the mapped
// weights in), the peak (VmHWM), and forward tokens/s for one batch of
// --tokens tokens. For the as-stored load, RSS / file size must stay at
// most --max_ratio (exit code 1 otherwise). The file was just written, so
// the page cache is warm: load times do not include reading the disk.
#include <torch/types.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "libs/model/hf_checkpoint.h"
#include "libs/model/llama_config.h"
#include "libs/model/llama_model.h"
#include "libs/status/status_macros.h"
#include "libs/subprocess/subprocess.h"
#include "libs/sysinfo/process_memory.h"

ABSL_FLAG(int64_t, hidden, 2048, "hidden size");
ABSL_FLAG(int64_t, layers, 16, "decoder layers");
ABSL_FLAG(int64_t, heads, 32, "attention heads");
ABSL_FLAG(int64_t, kv_heads, 8, "key/value heads");
ABSL_FLAG(int64_t, intermediate, 8192, "MLP intermediate size");
ABSL_FLAG(int64_t, vocab, 128256, "vocabulary size");
ABSL_FLAG(bool, tied, true, "tied input/output embeddings");
ABSL_FLAG(int, tokens, 128, "tokens in the 1-sequence forward batch");
ABSL_FLAG(int, repeats, 3, "timed forward passes after the first");
ABSL_FLAG(int, threads, 2, "intra-op threads");
ABSL_FLAG(double, max_ratio, 1.2,
          "largest acceptable RSS / file size for the as-stored load");
ABSL_FLAG(std::string, dtypes, "auto,fp32",
          "weights dtypes to load with, one child process each");
ABSL_FLAG(std::string, dir, "",
          "checkpoint directory (default: a temporary one, removed after)");
ABSL_FLAG(std::string, child, "",
          "internal: load --dir with this weights dtype and report");

namespace lethe {
namespace {

double Now() {
  return std::chrono::duration<double>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Llama-3.2-1B's configuration with the flags' shape.
LlamaConfig BenchmarkConfig() {
  LlamaConfig config;
  config.model_type = "llama";
  config.hidden_size = absl::GetFlag(FLAGS_hidden);
  config.num_hidden_layers = absl::GetFlag(FLAGS_layers);
  config.num_attention_heads = absl::GetFlag(FLAGS_heads);
  config.num_key_value_heads = absl::GetFlag(FLAGS_kv_heads);
  config.intermediate_size = absl::GetFlag(FLAGS_intermediate);
  config.vocab_size = absl::GetFlag(FLAGS_vocab);
  config.tie_word_embeddings = absl::GetFlag(FLAGS_tied);
  config.max_position_embeddings = 131072;
  config.rms_norm_eps = 1e-5;
  config.rope_theta = 500000.0;
  config.rope_scaling.rope_type = "llama3";
  config.rope_scaling.factor = 32.0;
  config.rope_scaling.low_freq_factor = 1.0;
  config.rope_scaling.high_freq_factor = 4.0;
  config.rope_scaling.original_max_position_embeddings = 8192;
  if (config.vocab_size > 128001) {  // Llama 3's; smaller vocabularies keep
    config.bos_token_id = 128000;    // LlamaConfig's 1 and 2.
    config.eos_token_ids = {128001};
  }
  return config;
}

// Writes random bf16 weights (N(0, 0.02), norms at 1) one tensor at a time,
// so that the writer never holds an fp32 copy of the model.
absl::Status WriteCheckpoint(const std::string& dir, int64_t* parameters) {
  const LlamaConfig config = BenchmarkConfig();
  RETURN_IF_ERROR(config.Validate());
  LlamaForCausalLM model(config, ParameterInit::kUninitialized);
  torch::manual_seed(0);
  for (auto& parameter : model.named_parameters()) {
    const std::vector<int64_t> shape = parameter.value().sizes().vec();
    parameter.value().set_data(
        parameter.key().find("norm") != std::string::npos
            ? torch::ones(shape, at::kBFloat16)
            : (torch::randn(shape) * 0.02).to(at::kBFloat16));
  }
  *parameters = model.NumParameters();
  return SaveLlamaCheckpoint(model, dir, {});
}

int64_t WeightBytes(const std::string& dir) {
  int64_t bytes = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (absl::EndsWith(entry.path().string(), ".safetensors")) {
      bytes += entry.file_size();
    }
  }
  return bytes;
}

double Mb(int64_t bytes) { return static_cast<double>(bytes) / 1e6; }

// `baseline`: VmRSS before loading (LibTorch's code and the like).
void PrintMemory(const char* when, int64_t file_bytes, int64_t baseline) {
  std::map<std::string, int64_t> memory =
      ReadProcessMemory().value_or(std::map<std::string, int64_t>{});
  std::printf(
      "  %-18s VmRSS %8.1f MB (RssFile %8.1f, RssAnon %8.1f)  RSS/file "
      "%.3f, (RSS - before)/file %.3f\n",
      when, Mb(memory["VmRSS"]), Mb(memory["RssFile"]), Mb(memory["RssAnon"]),
      static_cast<double>(memory["VmRSS"]) / file_bytes,
      static_cast<double>(memory["VmRSS"] - baseline) / file_bytes);
}

// The child: loads --dir in `dtype_name`, prints its figures.
int RunChild(const std::string& dtype_name) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  at::set_num_threads(absl::GetFlag(FLAGS_threads));
  const std::string dir = absl::GetFlag(FLAGS_dir);
  absl::StatusOr<WeightsDtype> dtype = ParseWeightsDtype(dtype_name);
  if (!dtype.ok()) {
    std::fprintf(stderr, "%s\n", dtype.status().ToString().c_str());
    return 2;
  }
  const int64_t file_bytes = WeightBytes(dir);
  std::printf("--weights_dtype=%s:\n", dtype_name.c_str());
  const int64_t baseline = ProcessMemoryBytes("VmRSS").value_or(0);
  PrintMemory("before load:", file_bytes, baseline);
  const double start = Now();
  absl::StatusOr<std::shared_ptr<LlamaForCausalLM>> model =
      LoadLlamaCheckpoint(dir, {.weights_dtype = *dtype});
  const double load_seconds = Now() - start;
  if (!model.ok()) {
    std::fprintf(stderr, "%s\n", model.status().ToString().c_str());
    return 2;
  }
  const at::ScalarType model_dtype =
      (*model)->parameters().front().scalar_type();
  std::printf("  loaded in %.2f s, parameters in %s\n", load_seconds,
              c10::toString(model_dtype));
  PrintMemory("after load:", file_bytes, baseline);
  const int64_t after_load_rss = ProcessMemoryBytes("VmRSS").value_or(0);

  torch::NoGradGuard no_grad;
  const int tokens = absl::GetFlag(FLAGS_tokens);
  const at::Tensor ids =
      torch::randint(3, (*model)->config().vocab_size, {1, tokens}, at::kLong);
  double first = Now();
  at::Tensor logits = (*model)->Forward(ids);
  first = Now() - first;
  PrintMemory("after 1st forward:", file_bytes, baseline);
  const int64_t after_forward_rss = ProcessMemoryBytes("VmRSS").value_or(0);
  const int repeats = absl::GetFlag(FLAGS_repeats);
  const double timed_start = Now();
  for (int i = 0; i < repeats; ++i) logits = (*model)->Forward(ids);
  const double seconds = (Now() - timed_start) / std::max(repeats, 1);
  std::map<std::string, int64_t> memory =
      ReadProcessMemory().value_or(std::map<std::string, int64_t>{});
  std::printf("  %-18s VmHWM %8.1f MB  RSS/file %.3f\n",
              "peak:", Mb(memory["VmHWM"]),
              static_cast<double>(memory["VmHWM"]) / file_bytes);
  std::printf(
      "  forward 1x%d tokens in %s: first %.2f s (faults the weights in), "
      "then %.2f s = %.1f tokens/s\n",
      tokens, c10::toString(logits.scalar_type()), first, seconds,
      tokens / seconds);
  if (*dtype == WeightsDtype::kAsStored) {
    const double ratio =
        static_cast<double>(std::max(after_load_rss, after_forward_rss)) /
        file_bytes;
    const bool ok = ratio <= absl::GetFlag(FLAGS_max_ratio);
    std::printf("  RSS/file %.3f %s %.2f: %s\n", ratio, ok ? "<=" : ">",
                absl::GetFlag(FLAGS_max_ratio), ok ? "ok" : "FAILED");
    if (!ok) return 1;
  }
  return 0;
}

std::string SelfPath() {
  return std::filesystem::read_symlink("/proc/self/exe").string();
}

int Run() {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  at::set_num_threads(absl::GetFlag(FLAGS_threads));
  std::string dir = absl::GetFlag(FLAGS_dir);
  const bool temporary = dir.empty();
  if (temporary) {
    dir = absl::StrCat(std::filesystem::temp_directory_path().string(),
                       "/lethe_load_memory_", getpid());
  }
  const LlamaConfig config = BenchmarkConfig();
  std::printf(
      "shape: hidden %ld, %ld layers, %ld heads (%ld kv), intermediate %ld, "
      "vocab %ld, %s embeddings, rope %s; %d threads\n",
      config.hidden_size, config.num_hidden_layers, config.num_attention_heads,
      config.num_key_value_heads, config.intermediate_size, config.vocab_size,
      config.tie_word_embeddings ? "tied" : "untied",
      config.rope_scaling.rope_type.c_str(), absl::GetFlag(FLAGS_threads));
  if (!std::filesystem::exists(dir + "/config.json")) {
    int64_t parameters = 0;
    const double start = Now();
    const absl::Status written = WriteCheckpoint(dir, &parameters);
    if (!written.ok()) {
      std::fprintf(stderr, "%s\n", written.ToString().c_str());
      return 2;
    }
    std::printf("wrote %.1fM parameters in bf16 to %s in %.1f s\n",
                parameters / 1e6, dir.c_str(), Now() - start);
  }
  std::printf("file size: %.1f MB\n", Mb(WeightBytes(dir)));

  int result = 0;
  for (const std::string& dtype : std::vector<std::string>(absl::StrSplit(
           absl::GetFlag(FLAGS_dtypes), ',', absl::SkipEmpty()))) {
    absl::StatusOr<Subprocess> child = Subprocess::Start(
        {SelfPath(), "--child=" + dtype, "--dir=" + dir,
         absl::StrCat("--tokens=", absl::GetFlag(FLAGS_tokens)),
         absl::StrCat("--repeats=", absl::GetFlag(FLAGS_repeats)),
         absl::StrCat("--threads=", absl::GetFlag(FLAGS_threads)),
         absl::StrCat("--max_ratio=", absl::GetFlag(FLAGS_max_ratio))});
    absl::StatusOr<ExitStatus> exit =
        child.ok() ? child->Wait() : absl::StatusOr<ExitStatus>(child.status());
    if (!exit.ok() || !exit->success()) {
      std::printf("--weights_dtype=%s: child %s\n", dtype.c_str(),
                  exit.ok() ? exit->ToString().c_str()
                            : exit.status().ToString().c_str());
      result = 1;
    }
  }
  if (temporary) std::filesystem::remove_all(dir);
  return result;
}

}  // namespace
}  // namespace lethe

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const std::string child = absl::GetFlag(FLAGS_child);
  return child.empty() ? lethe::Run() : lethe::RunChild(child);
}
