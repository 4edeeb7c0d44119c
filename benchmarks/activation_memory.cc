// Peak memory of one training step (forward, cross-entropy, backward) with
// and without per-layer activation checkpointing, for full training and for
// LoRA (frozen base, adapters on every projection).
//
//   bazel run -c opt //benchmarks:activation_memory
//   bazel run -c opt //benchmarks:activation_memory -- --layers=16
//   --tokens=1024
//
// Each mode runs in a fresh child process (glibc's mmap threshold fixed at
// 64 KiB, so freed tensors leave the resident set): it builds a random fp32
// model of the flags' shape, resets the kernel's peak-RSS counter (writing
// 5 to /proc/self/clear_refs), runs one step and reports the step's peak
// (VmHWM) above the resident memory before it, which is the activations,
// the logits, the gradients and the autograd engine's buffers. The
// gradients are the same in both modes (all parameters, or only the
// adapters); the difference between the two is the activations that
// checkpointing does not keep. The loss is printed in full: it is the same,
// bit for bit, with and without checkpointing.
#include <malloc.h>
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "libs/model/llama_config.h"
#include "libs/model/llama_model.h"
#include "libs/model/lora.h"
#include "libs/subprocess/subprocess.h"
#include "libs/sysinfo/process_memory.h"

ABSL_FLAG(int64_t, hidden, 1024, "hidden size");
ABSL_FLAG(int64_t, layers, 8, "decoder layers");
ABSL_FLAG(int64_t, heads, 16, "attention heads");
ABSL_FLAG(int64_t, kv_heads, 4, "key/value heads");
ABSL_FLAG(int64_t, intermediate, 2816, "MLP intermediate size");
ABSL_FLAG(int64_t, vocab, 8192, "vocabulary size");
ABSL_FLAG(int64_t, batch, 4, "sequences per step");
ABSL_FLAG(int64_t, tokens, 512, "tokens per sequence");
ABSL_FLAG(int64_t, lora_rank, 8, "LoRA rank in the lora modes");
ABSL_FLAG(int, threads, 2, "intra-op threads");
ABSL_FLAG(std::string, modes, "full,full+ckpt,lora,lora+ckpt",
          "modes, one child process each");
ABSL_FLAG(std::string, child, "", "internal: run this mode and report");

namespace lethe {
namespace {

double Now() {
  return std::chrono::duration<double>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

double Mb(int64_t bytes) { return bytes / (1024.0 * 1024.0); }

LlamaConfig BenchmarkConfig() {
  LlamaConfig config;
  config.model_type = "llama";
  config.hidden_size = absl::GetFlag(FLAGS_hidden);
  config.num_hidden_layers = absl::GetFlag(FLAGS_layers);
  config.num_attention_heads = absl::GetFlag(FLAGS_heads);
  config.num_key_value_heads = absl::GetFlag(FLAGS_kv_heads);
  config.intermediate_size = absl::GetFlag(FLAGS_intermediate);
  config.vocab_size = absl::GetFlag(FLAGS_vocab);
  config.max_position_embeddings = 8192;
  config.rms_norm_eps = 1e-5;
  return config;
}

int RunChild(const std::string& mode) {
  // A fixed mmap threshold: every large tensor gets its own mapping, given
  // back when freed, so resident memory follows the live tensors (glibc's
  // dynamic threshold would keep freed activations in the heap and make the
  // peak depend on allocation order).
  mallopt(M_MMAP_THRESHOLD, 64 * 1024);
  at::set_num_threads(absl::GetFlag(FLAGS_threads));
  const bool lora = mode.rfind("lora", 0) == 0;
  const bool checkpoint = mode.find("+ckpt") != std::string::npos;
  torch::manual_seed(0);
  LlamaForCausalLM model(BenchmarkConfig());
  if (lora) {
    const absl::Status attached =
        AttachLora(model, {.rank = absl::GetFlag(FLAGS_lora_rank),
                           .alpha = 16,
                           .target_modules = LoraTargetableModules()});
    if (!attached.ok()) {
      std::fprintf(stderr, "%s\n", attached.ToString().c_str());
      return 2;
    }
    // Random B, so the adapters take part in the computation.
    torch::NoGradGuard no_grad;
    for (auto& [name, tensor] : LoraParameters(model)) tensor.normal_(0, 0.01);
  }
  if (lora) FreezeAllButLora(model);
  model.SetActivationCheckpointing(checkpoint);
  const int64_t batch = absl::GetFlag(FLAGS_batch),
                tokens = absl::GetFlag(FLAGS_tokens);
  torch::manual_seed(1);
  const at::Tensor ids =
      torch::randint(0, model.config().vocab_size, {batch, tokens});

  const int64_t before = ProcessMemoryBytes("VmRSS").value_or(0);
  ResetPeakResidentMemory().IgnoreError();  // Checked by the peak.
  const double start = Now();
  const at::Tensor logits = model.Forward(ids);
  const at::Tensor loss = torch::nn::functional::cross_entropy(
      logits.narrow(1, 0, tokens - 1).reshape({-1, logits.size(-1)}),
      ids.narrow(1, 1, tokens - 1).reshape({-1}));
  loss.backward();
  const double seconds = Now() - start;
  const int64_t peak = ProcessMemoryBytes("VmHWM").value_or(0);
  int64_t gradient_bytes = 0;
  for (const at::Tensor& parameter : model.parameters()) {
    if (parameter.grad().defined()) {
      gradient_bytes +=
          parameter.grad().numel() * parameter.grad().element_size();
    }
  }
  std::printf(
      "%-10s step peak above start %8.1f MB (gradients %7.1f MB, logits "
      "%6.1f MB)  resident before %7.1f MB  step %.2f s  loss %.17g\n",
      mode.c_str(), Mb(peak - before), Mb(gradient_bytes),
      Mb(logits.numel() * logits.element_size()), Mb(before), seconds,
      loss.item<double>());
  return 0;
}

int Run() {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  const LlamaConfig config = BenchmarkConfig();
  std::printf(
      "shape: hidden %ld, %ld layers, %ld heads (%ld kv), intermediate %ld, "
      "vocab %ld; batch %ld x %ld tokens, fp32, %d threads\n",
      config.hidden_size, config.num_hidden_layers, config.num_attention_heads,
      config.num_key_value_heads, config.intermediate_size, config.vocab_size,
      absl::GetFlag(FLAGS_batch), absl::GetFlag(FLAGS_tokens),
      absl::GetFlag(FLAGS_threads));
  const std::string self =
      std::filesystem::read_symlink("/proc/self/exe").string();
  int result = 0;
  for (const std::string& mode : std::vector<std::string>(absl::StrSplit(
           absl::GetFlag(FLAGS_modes), ',', absl::SkipEmpty()))) {
    absl::StatusOr<Subprocess> child = Subprocess::Start(
        {self, "--child=" + mode,
         absl::StrCat("--hidden=", absl::GetFlag(FLAGS_hidden)),
         absl::StrCat("--layers=", absl::GetFlag(FLAGS_layers)),
         absl::StrCat("--heads=", absl::GetFlag(FLAGS_heads)),
         absl::StrCat("--kv_heads=", absl::GetFlag(FLAGS_kv_heads)),
         absl::StrCat("--intermediate=", absl::GetFlag(FLAGS_intermediate)),
         absl::StrCat("--vocab=", absl::GetFlag(FLAGS_vocab)),
         absl::StrCat("--batch=", absl::GetFlag(FLAGS_batch)),
         absl::StrCat("--tokens=", absl::GetFlag(FLAGS_tokens)),
         absl::StrCat("--lora_rank=", absl::GetFlag(FLAGS_lora_rank)),
         absl::StrCat("--threads=", absl::GetFlag(FLAGS_threads))});
    absl::StatusOr<ExitStatus> exit =
        child.ok() ? child->Wait() : absl::StatusOr<ExitStatus>(child.status());
    if (!exit.ok() || !exit->success()) {
      std::printf("%s: child %s\n", mode.c_str(),
                  exit.ok() ? exit->ToString().c_str()
                            : exit.status().ToString().c_str());
      result = 1;
    }
  }
  return result;
}

}  // namespace
}  // namespace lethe

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const std::string child = absl::GetFlag(FLAGS_child);
  return child.empty() ? lethe::Run() : lethe::RunChild(child);
}
