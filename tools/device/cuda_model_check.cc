// Does Lethe's LlamaForCausalLM run on CUDA? A one-GPU check against a CUDA
// LibTorch (the one inside a PyTorch wheel), built and run by
// tools/device/cuda_model_check.sh; not part of the Bazel build (CI's
// LibTorch is CPU-only).
//
// 1. libs/model/testdata/hf_tiny_llama loaded with Lethe's loader, moved to
//    CUDA: right-/left-padded, unmasked and KV-cache logits against
//    transformers' reference logits, mixed-device inputs (CPU mask and
//    positions with CUDA ids), GreedyGenerate against the CPU model, and a
//    checkpoint saved from / loaded into the CUDA model.
// 2. One training step (forward, TokenMeanNll, backward, AdamW) of a random
//    MiniBenchmarkLlamaConfig(1024) model on CUDA, against the same step on
//    the CPU.
// 3. Training-step throughput (tokens/s) for MiniBenchmarkLlamaConfig(1024)
//    and Benchmark100MLlamaConfig(): fp32, fp32 with TF32 matmuls, CUDA bf16
//    autocast, and bf16 weights.
//
// Prints one "CHECK name: OK|FAIL ..." line per check and exits non-zero if
// any failed. LETHE_CHECK_NO_THROUGHPUT=1 skips part 3; LETHE_CHECK_ON_CPU=1
// runs parts 1 and 2 on the CPU (a smoke test of the program itself, where
// the on-CUDA checks fail).
//
// Link libstdc++ before LibTorch (see cuda_model_check.sh): the wheel's
// libtorch_cpu.so exports its own std::filesystem functions, and
// std::filesystem::remove_all of a non-empty directory bound to them crashes.
#include <ATen/Context.h>
#include <ATen/autocast_mode.h>
#include <execinfo.h>
#include <torch/cuda.h>
#include <torch/nn/module.h>
#include <torch/optim/adamw.h>
#include <torch/types.h>
#include <torch/version.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <functional>
#include <iostream>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "libs/loss/sequence_loss.h"
#include "libs/model/generation.h"
#include "libs/model/hf_checkpoint.h"
#include "libs/model/llama_config.h"
#include "libs/model/llama_model.h"
#include "libs/model/safetensors.h"

namespace lethe {
namespace {

int failures = 0;
// CUDA, or the CPU for a smoke run of the checks themselves
// (LETHE_CHECK_ON_CPU=1) on a machine without a GPU.
at::DeviceType g_device_type = at::kCUDA;

void Sync() {
  if (g_device_type == at::kCUDA) torch::cuda::synchronize();
}

void PrintBacktraceAndDie(int signal) {
  void* frames[64];
  const int count = backtrace(frames, 64);
  const char message[] = "\n*** fatal signal; backtrace:\n";
  (void)!write(2, message, sizeof(message) - 1);
  backtrace_symbols_fd(frames, count, 2);
  std::signal(signal, SIG_DFL);
  std::raise(signal);
}

void Check(const std::string& name, bool ok, const std::string& detail) {
  std::cout << "CHECK " << name << ": " << (ok ? "OK" : "FAIL") << "  "
            << detail << std::endl;
  if (!ok) ++failures;
}

// Runs one section; an exception fails it without stopping the others.
void Section(const std::string& name, const std::function<void()>& body) {
  std::cout << "== " << name << std::endl;
  try {
    body();
  } catch (const std::exception& error) {
    std::string message = error.what();
    if (message.size() > 1500) message = message.substr(0, 1500) + " ...";
    Check(name, false, "exception: " + message);
  }
}

// TF32 for cuBLAS fp32 matmuls, where this LibTorch has the switch.
template <typename C>
auto SetTf32Impl(C& context, bool on, int)
    -> decltype(context.setAllowTF32CuBLAS(on), bool()) {
  context.setAllowTF32CuBLAS(on);
  return true;
}
template <typename C>
bool SetTf32Impl(C&, bool, long) {
  return false;
}
void SetTf32(bool on) {
  if (!SetTf32Impl(at::globalContext(), on, 0)) {
    std::cout << "(no setAllowTF32CuBLAS in this LibTorch)\n";
  }
}

class CudaBf16Autocast {
 public:
  CudaBf16Autocast() {
#if TORCH_VERSION_MAJOR > 2 || \
    (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
    at::autocast::set_autocast_enabled(at::kCUDA, true);
    at::autocast::set_autocast_dtype(at::kCUDA, at::kBFloat16);
#else
    at::autocast::set_enabled(true);
    at::autocast::set_autocast_gpu_dtype(at::kBFloat16);
#endif
    at::autocast::increment_nesting();
  }
  ~CudaBf16Autocast() {
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
#if TORCH_VERSION_MAJOR > 2 || \
    (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
    at::autocast::set_autocast_enabled(at::kCUDA, false);
#else
    at::autocast::set_enabled(false);
#endif
  }
};

double MaxAbsDiff(const at::Tensor& a, const at::Tensor& b,
                  const at::Tensor& mask = {}) {
  at::Tensor diff =
      (a.to(at::kCPU).to(at::kDouble) - b.to(at::kCPU).to(at::kDouble)).abs();
  if (mask.defined()) {
    diff = diff.masked_select(
        mask.to(at::kCPU).to(at::kBool).unsqueeze(-1).expand_as(diff));
  }
  return diff.max().item<double>();
}

std::string Str(double value) {
  std::ostringstream out;
  out << value;
  return out.str();
}

template <typename T>
T Unwrap(absl::StatusOr<T> value, const std::string& what) {
  if (!value.ok()) {
    throw std::runtime_error(what + ": " + value.status().ToString());
  }
  return std::move(*value);
}

void Unwrap(const absl::Status& status, const std::string& what) {
  if (!status.ok()) throw std::runtime_error(what + ": " + status.ToString());
}

std::string Join(const std::vector<int64_t>& values) {
  std::string out;
  for (int64_t v : values) out += (out.empty() ? "" : " ") + std::to_string(v);
  return out;
}

constexpr double kTolerance = 1e-4;
const char kDataDir[] = "libs/model/testdata/hf_tiny_llama";

void ReferenceChecks() {
  const at::Device cuda(g_device_type);
  auto reference =
      Unwrap(SafetensorsFile::Open(std::string(kDataDir) +
                                   "/reference_logits.safetensors"),
             "open reference logits");
  auto ref = [&](const std::string& name) {
    return Unwrap(reference->Get(name), name).clone();
  };
  std::shared_ptr<LlamaForCausalLM> cpu_model =
      Unwrap(LoadLlamaCheckpoint(kDataDir, at::kFloat), "load (cpu)");
  std::shared_ptr<LlamaForCausalLM> model =
      Unwrap(LoadLlamaCheckpoint(kDataDir, at::kFloat), "load");
  model->to(cuda);
  Check("model_on_cuda", model->parameters().front().is_cuda(),
        "parameters on " + model->parameters().front().device().str());
  torch::NoGradGuard no_grad;

  Section("right_padded", [&] {
    const at::Tensor ids = ref("right.input_ids");
    const at::Tensor mask = ref("right.attention_mask");
    const at::Tensor logits = model->Forward(ids.to(cuda), mask.to(cuda));
    Check("right_padded_logits_on_cuda", logits.is_cuda(),
          logits.device().str());
    const double diff = MaxAbsDiff(logits, ref("right.logits_f32"), mask);
    const double cpu_diff =
        MaxAbsDiff(logits, cpu_model->Forward(ids, mask), mask);
    Check("right_padded_fp32_vs_transformers", diff <= kTolerance,
          "max |cuda - transformers| = " + Str(diff) +
              ", max |cuda - lethe cpu| = " + Str(cpu_diff));
  });

  Section("left_padded", [&] {
    const at::Tensor ids = ref("left.input_ids");
    const at::Tensor mask = ref("left.attention_mask");
    const at::Tensor positions = PositionIdsFromMask(mask.to(cuda));
    const at::Tensor logits =
        model->Forward(ids.to(cuda), mask.to(cuda), nullptr, positions);
    const double diff = MaxAbsDiff(logits, ref("left.logits_f32"), mask);
    Check("left_padded_fp32_vs_transformers", diff <= kTolerance,
          "max |cuda - transformers| = " + Str(diff));
    // A batch built on the CPU: mask and positions on the CPU, ids on CUDA.
    const at::Tensor mixed =
        model->Forward(ids.to(cuda), mask, nullptr, PositionIdsFromMask(mask));
    const double mixed_diff = MaxAbsDiff(mixed, logits, mask);
    Check("left_padded_cpu_mask_and_positions", mixed_diff <= 1e-6,
          "max |mixed - all cuda| = " + Str(mixed_diff));
  });

  Section("unmasked_and_kv_cache", [&] {
    const at::Tensor ids = ref("nomask.input_ids").to(cuda);
    const at::Tensor expected = ref("nomask.logits_f32");
    const double diff = MaxAbsDiff(model->Forward(ids), expected);
    Check("unmasked_fp32_vs_transformers", diff <= kTolerance,
          "max diff " + Str(diff));
    KvCache cache;
    std::vector<at::Tensor> steps = {
        model->Forward(ids.narrow(1, 0, 5), {}, &cache)};
    for (int64_t t = 5; t < ids.size(1); ++t) {
      steps.push_back(model->Forward(ids.narrow(1, t, 1), {}, &cache));
    }
    const double cached = MaxAbsDiff(torch::cat(steps, 1), expected);
    Check("kv_cache_fp32_vs_transformers",
          cached <= kTolerance && cache.keys[0].is_cuda(),
          "max diff " + Str(cached) + ", cache on " +
              cache.keys[0].device().str());
  });

  Section("greedy_generate", [&] {
    const at::Tensor ids = ref("nomask.input_ids");
    std::vector<int64_t> prompt;
    for (int64_t t = 0; t < 5; ++t) prompt.push_back(ids[0][t].item<int64_t>());
    const std::vector<int64_t> on_cuda = GreedyGenerate(*model, prompt, 12, {});
    const std::vector<int64_t> on_cpu =
        GreedyGenerate(*cpu_model, prompt, 12, {});
    Check("greedy_generate_cuda_equals_cpu", on_cuda == on_cpu,
          "cuda [" + Join(on_cuda) + "], cpu [" + Join(on_cpu) + "]");
  });

  Section("checkpoint_round_trip", [&] {
    const std::string dir = "/tmp/lethe_cuda_check_ckpt";
    std::filesystem::remove_all(dir);
    std::cout << "saving to " << dir << std::endl;
    Unwrap(SaveLlamaCheckpoint(*model, dir, {}), "save from cuda");
    std::cout << "saved; reloading" << std::endl;
    auto reloaded = Unwrap(LoadLlamaCheckpoint(dir, at::kFloat), "reload");
    double worst = 0;
    auto a = cpu_model->named_parameters();
    auto b = reloaded->named_parameters();
    for (const auto& item : a) {
      worst = std::max(worst, MaxAbsDiff(item.value(), b[item.key()]));
    }
    std::cout << "reloaded and compared; LoadLlamaWeights" << std::endl;
    // Weights into an existing CUDA model (LoadLlamaWeights).
    torch::manual_seed(7);
    auto target = std::make_shared<LlamaForCausalLM>(cpu_model->config());
    target->to(cuda);
    Unwrap(LoadLlamaWeights(kDataDir, *target), "LoadLlamaWeights into cuda");
    double loaded = 0;
    auto c = target->named_parameters();
    for (const auto& item : a) {
      loaded = std::max(loaded, MaxAbsDiff(item.value(), c[item.key()]));
    }
    Check("checkpoint_save_from_cuda_and_load_into_cuda",
          worst == 0 && loaded == 0 && target->parameters().front().is_cuda(),
          "saved-reloaded diff " + Str(worst) + ", loaded-into-cuda diff " +
              Str(loaded) + ", target on " +
              target->parameters().front().device().str());
  });
}

struct Batch {
  at::Tensor ids;
  at::Tensor labels;
};

Batch RandomBatch(int64_t vocab, int64_t batch, int64_t length,
                  const at::Device& device) {
  const at::Tensor ids =
      torch::randint(3, vocab, {batch, length}, torch::kLong).to(device);
  at::Tensor labels = ids.clone();
  labels.narrow(1, 0, length / 4).fill_(-100);  // a "prompt" without loss
  return {ids, labels};
}

void TrainingStepCheck() {
  const at::Device cuda(g_device_type);
  const LlamaConfig config = MiniBenchmarkLlamaConfig(1024);
  torch::manual_seed(0);
  LlamaForCausalLM cpu_model(config);
  torch::manual_seed(0);
  auto model = std::make_shared<LlamaForCausalLM>(config);
  model->to(cuda);
  std::vector<at::Tensor> before;
  for (const at::Tensor& p : model->parameters()) before.push_back(p.clone());
  torch::manual_seed(1);
  const Batch batch = RandomBatch(config.vocab_size, 4, 32, at::kCPU);
  const auto options = torch::optim::AdamWOptions(1e-3).weight_decay(0.01);
  torch::optim::AdamW cuda_opt(model->parameters(), options);
  torch::optim::AdamW cpu_opt(cpu_model.parameters(), options);

  cuda_opt.zero_grad();
  const at::Tensor loss =
      TokenMeanNll(model->Forward(batch.ids.to(cuda)), batch.labels.to(cuda));
  loss.backward();
  cuda_opt.step();
  Sync();
  cpu_opt.zero_grad();
  const at::Tensor cpu_loss =
      TokenMeanNll(cpu_model.Forward(batch.ids), batch.labels);
  cpu_loss.backward();
  cpu_opt.step();

  const double l = loss.item<double>(), cl = cpu_loss.item<double>();
  double changed = 0, vs_cpu = 0, grad_diff = 0;
  bool grads_on_cuda = true;
  auto params = model->parameters();
  auto cpu_params = cpu_model.parameters();
  for (size_t i = 0; i < params.size(); ++i) {
    changed = std::max(changed, MaxAbsDiff(params[i], before[i]));
    vs_cpu = std::max(vs_cpu, MaxAbsDiff(params[i], cpu_params[i]));
    grads_on_cuda = grads_on_cuda && params[i].grad().is_cuda();
    grad_diff =
        std::max(grad_diff, MaxAbsDiff(params[i].grad(), cpu_params[i].grad()));
  }
  // AdamW's first step moves each weight by about lr * sign(grad), so a
  // weight whose gradient is ~0 may move either way on the two devices: the
  // parameters agree to 2 * lr, the gradients much closer.
  Check("train_step_mini_1024",
        std::isfinite(l) && changed > 1e-4 && grads_on_cuda &&
            std::abs(l - cl) < 1e-4 && grad_diff < 1e-4 && vs_cpu <= 2.1e-3,
        "loss cuda " + Str(l) + " cpu " + Str(cl) +
            " (ln 1024 = " + Str(std::log(1024.0)) + "), max param change " +
            Str(changed) + ", max |grad cuda - grad cpu| " + Str(grad_diff) +
            ", max |param cuda - param cpu| after step " + Str(vs_cpu));
  // Labels left on the CPU, logits on CUDA.
  const at::Tensor mixed =
      TokenMeanNll(model->Forward(batch.ids.to(cuda)), batch.labels);
  Check("token_mean_nll_cpu_labels", std::isfinite(mixed.item<double>()),
        "loss " + Str(mixed.item<double>()));
}

enum class Mode { kFp32, kTf32, kBf16Autocast, kBf16Weights };
const char* ModeName(Mode mode) {
  switch (mode) {
    case Mode::kFp32:
      return "fp32";
    case Mode::kTf32:
      return "fp32+tf32";
    case Mode::kBf16Autocast:
      return "bf16-autocast";
    case Mode::kBf16Weights:
      return "bf16-weights";
  }
  return "?";
}

void Throughput(const std::string& name, const LlamaConfig& config,
                const std::vector<std::pair<int64_t, int64_t>>& shapes,
                int steps) {
  const at::Device cuda(g_device_type);
  torch::manual_seed(0);
  auto model = std::make_shared<LlamaForCausalLM>(config);
  model->to(cuda);
  const double params = static_cast<double>(model->NumParameters());
  std::cout << name << ": " << params / 1e6 << "M parameters" << std::endl;
  for (Mode mode :
       {Mode::kFp32, Mode::kTf32, Mode::kBf16Autocast, Mode::kBf16Weights}) {
    if (mode == Mode::kBf16Weights) model->to(at::kBFloat16);
    SetTf32(mode == Mode::kTf32);
    for (const auto& [batch_size, length] : shapes) {
      const std::string what = name + " " + ModeName(mode) + " " +
                               std::to_string(batch_size) + "x" +
                               std::to_string(length);
      Section("throughput " + what, [&] {
        torch::optim::AdamW optimizer(model->parameters(),
                                      torch::optim::AdamWOptions(1e-4));
        const Batch batch =
            RandomBatch(config.vocab_size, batch_size, length, cuda);
        double loss = 0;
        auto step = [&] {
          optimizer.zero_grad();
          at::Tensor l;
          if (mode == Mode::kBf16Autocast) {
            CudaBf16Autocast autocast;
            l = TokenMeanNll(model->Forward(batch.ids), batch.labels);
          } else {
            l = TokenMeanNll(model->Forward(batch.ids), batch.labels);
          }
          l.backward();
          optimizer.step();
          return l;
        };
        for (int i = 0; i < 3; ++i) step();
        Sync();
        const auto start = std::chrono::steady_clock::now();
        at::Tensor last;
        for (int i = 0; i < steps; ++i) last = step();
        Sync();
        const double seconds = std::chrono::duration<double>(
                                   std::chrono::steady_clock::now() - start)
                                   .count();
        loss = last.item<double>();
        const double tokens = static_cast<double>(batch_size * length) * steps;
        std::cout << "THROUGHPUT " << what << ": " << tokens / seconds
                  << " tokens/s, " << 1e3 * seconds / steps << " ms/step, ~"
                  << 6 * params * tokens / seconds / 1e12
                  << " TFLOP/s (6N), loss " << loss << std::endl;
        Check("throughput " + what, std::isfinite(loss), "");
      });
    }
  }
  SetTf32(false);
}

}  // namespace
}  // namespace lethe

int main() {
  using namespace lethe;
  std::signal(SIGSEGV, PrintBacktraceAndDie);
  std::signal(SIGABRT, PrintBacktraceAndDie);
  std::signal(SIGBUS, PrintBacktraceAndDie);
  const bool on_cpu = std::getenv("LETHE_CHECK_ON_CPU") != nullptr;
  std::cout << "LibTorch " << TORCH_VERSION << ", CUDA available "
            << torch::cuda::is_available() << ", devices "
            << static_cast<int>(torch::cuda::device_count()) << std::endl;
  if (on_cpu) {
    g_device_type = at::kCPU;
    std::cout << "LETHE_CHECK_ON_CPU: checks run on the CPU (device checks "
                 "fail), no throughput\n";
  } else if (!torch::cuda::is_available()) {
    std::cout << "no CUDA device\n";
    return 2;
  }
  SetTf32(false);
  Section("reference", ReferenceChecks);
  Section("training_step", TrainingStepCheck);
  if (!on_cpu && std::getenv("LETHE_CHECK_NO_THROUGHPUT") == nullptr) {
    Section("throughput", [] {
      Throughput("mini1024", MiniBenchmarkLlamaConfig(1024), {{16, 64}}, 30);
      Throughput("100M", Benchmark100MLlamaConfig(), {{16, 64}, {64, 256}}, 10);
    });
  }
  std::cout << (failures == 0 ? "ALL CHECKS PASSED" : "SOME CHECKS FAILED")
            << " (" << failures << " failed)" << std::endl;
  return failures == 0 ? 0 : 1;
}
