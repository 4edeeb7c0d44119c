// A one-GPU check that Lethe's training runs compute on CUDA what they
// compute on the CPU: each unlearning method (RunUnlearning, with its
// reference cache, frozen reference copy or OFMU's double backward) and
// fine-tuning run from the same weights on both
// devices, and the final weights must agree to fp32 round-off. A run whose
// gradients go through a one-rank NCCL group (LETHE_WITH_NCCL builds) must
// equal the plain CUDA run. Last, the step throughput of NPO_RT on the
// 100M-parameter config. Built and run by
// tools/device/cuda_unlearning_check.sh; not part of the Bazel build (CI's
// LibTorch is CPU-only). With LETHE_CHECK_ON_CPU=1 the "device" is the CPU, a
// smoke run of the program.
#include <torch/cuda.h>
#include <torch/types.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "libs/data/qa_example.h"
#include "libs/data/sharding.h"
#include "libs/dist/collective_group.h"
#include "libs/model/llama_config.h"
#include "libs/model/llama_model.h"
#include "libs/unlearn/objective.h"
#include "libs/unlearn/trainer.h"
#include "libs/unlearn/unlearning_run.h"

namespace lethe {
namespace {

int failures = 0;

void Check(const std::string& name, bool ok, const std::string& detail) {
  std::cout << "CHECK " << name << ": " << (ok ? "OK" : "FAIL") << "  "
            << detail << std::endl;
  if (!ok) ++failures;
}

LlamaConfig SmallConfig() {
  LlamaConfig config;
  config.vocab_size = 128;
  config.hidden_size = 64;
  config.intermediate_size = 128;
  config.num_hidden_layers = 2;
  config.num_attention_heads = 4;
  config.num_key_value_heads = 2;
  config.max_position_embeddings = 128;
  return config;
}

// `count` question-answer examples of 6 to 29 tokens with a 3-token prompt.
std::vector<QaExample> RandomExamples(int count, uint64_t seed,
                                      int vocab_size) {
  SplitMix64 random(seed);
  std::vector<QaExample> examples;
  for (int i = 0; i < count; ++i) {
    const int length = 6 + static_cast<int>(random.Below(24));
    QaExample example;
    for (int t = 0; t < length; ++t) {
      const int token = 3 + static_cast<int>(random.Below(vocab_size - 3));
      example.input_ids.push_back(token);
      example.labels.push_back(t < 3 ? kIgnoreIndex : token);
    }
    examples.push_back(std::move(example));
  }
  return examples;
}

std::shared_ptr<LlamaForCausalLM> ModelOn(const at::Device& device,
                                          const LlamaConfig& config) {
  torch::manual_seed(5);
  auto model = std::make_shared<LlamaForCausalLM>(config);
  model->to(device);
  return model;
}

// max |a - b| over parameters, and max |a - start| (how far training moved).
std::pair<double, double> Compare(LlamaForCausalLM& a, LlamaForCausalLM& b,
                                  LlamaForCausalLM& start) {
  double diff = 0, moved = 0;
  auto b_parameters = b.named_parameters();
  auto start_parameters = start.named_parameters();
  for (const auto& parameter : a.named_parameters()) {
    const at::Tensor value = parameter.value().detach().cpu();
    diff = std::max(diff, (value - b_parameters[parameter.key()].detach().cpu())
                              .abs()
                              .max()
                              .item<double>());
    moved = std::max(moved,
                     (value - start_parameters[parameter.key()].detach().cpu())
                         .abs()
                         .max()
                         .item<double>());
  }
  return {diff, moved};
}

UnlearningOptions Options(UnlearningMethod method) {
  UnlearningOptions options{.method = method,
                            .params = DefaultObjectiveParams(method)};
  options.training.learning_rate = 1e-3;
  options.training.warmup_epochs = 0.5;
  options.training.num_epochs = 2;
  options.training.per_device_batch_size = 4;
  options.training.seed = 3;
  return options;
}

void CheckMethods(const at::Device& device) {
  const LlamaConfig config = SmallConfig();
  UnlearningData data{.forget = RandomExamples(16, 1, config.vocab_size),
                      .retain = RandomExamples(32, 2, config.vocab_size),
                      .alternate = RandomExamples(16, 3, config.vocab_size),
                      .pad_id = 0};
  for (UnlearningMethod method :
       {UnlearningMethod::kGradDiff, UnlearningMethod::kNpoRt,
        UnlearningMethod::kNpoKl, UnlearningMethod::kSimNpo,
        UnlearningMethod::kIdkDpo, UnlearningMethod::kOfmu}) {
    const std::string name = UnlearningMethodName(method);
    auto start = ModelOn(at::kCPU, config);
    auto on_cpu = ModelOn(at::kCPU, config);
    auto on_device = ModelOn(device, config);
    const auto cpu_run = RunUnlearning(*on_cpu, data, Options(method));
    const auto device_run = RunUnlearning(*on_device, data, Options(method));
    if (!cpu_run.ok() || !device_run.ok()) {
      Check(name, false,
            "cpu: " + cpu_run.status().ToString() +
                "; device: " + device_run.status().ToString());
      continue;
    }
    const auto [diff, moved] = Compare(*on_device, *on_cpu, *start);
    Check(name + " on the device equals the CPU run",
          diff <= 5e-5 && moved > 1e-3,
          "max |w_device - w_cpu| " + std::to_string(diff) + ", max |w - w0| " +
              std::to_string(moved) + ", final loss " +
              std::to_string(device_run->steps.back().loss) + " vs " +
              std::to_string(cpu_run->steps.back().loss));
  }
}

void CheckFinetuning(const at::Device& device) {
  const LlamaConfig config = SmallConfig();
  const std::vector<QaExample> examples =
      RandomExamples(40, 4, config.vocab_size);
  TrainingOptions options{.learning_rate = 1e-3,
                          .num_epochs = 2,
                          .per_device_batch_size = 8,
                          .seed = 6};
  auto start = ModelOn(at::kCPU, config);
  auto on_cpu = ModelOn(at::kCPU, config);
  auto on_device = ModelOn(device, config);
  const auto cpu_run = FinetuneOnQa(*on_cpu, examples, 0, options);
  const auto device_run = FinetuneOnQa(*on_device, examples, 0, options);
  if (!cpu_run.ok() || !device_run.ok()) {
    Check("fine-tuning", false,
          cpu_run.status().ToString() + "; " + device_run.status().ToString());
    return;
  }
  const auto [diff, moved] = Compare(*on_device, *on_cpu, *start);
  Check(
      "fine-tuning on the device equals the CPU run",
      diff <= 5e-5 && moved > 1e-3,
      "max diff " + std::to_string(diff) + ", moved " + std::to_string(moved));
}

#ifdef LETHE_WITH_NCCL
void CheckNcclReducer(const at::Device& device) {
  auto store = RendezvousStore::Start("127.0.0.1", 0);
  if (!store.ok()) {
    Check("NCCL store", false, store.status().ToString());
    return;
  }
  auto group = CollectiveGroup::Join({.store_host = "127.0.0.1",
                                      .store_port = (*store)->port(),
                                      .prefix = "device-check/npo_rt",
                                      .backend = CollectiveBackend::kNccl,
                                      .timeout = absl::Seconds(60)});
  if (!group.ok()) {
    Check("NCCL join", false, group.status().ToString());
    return;
  }
  const LlamaConfig config = SmallConfig();
  UnlearningData data{.forget = RandomExamples(16, 1, config.vocab_size),
                      .retain = RandomExamples(32, 2, config.vocab_size),
                      .pad_id = 0};
  auto plain = ModelOn(device, config);
  auto reduced = ModelOn(device, config);
  const UnlearningOptions options = Options(UnlearningMethod::kNpoRt);
  int reductions = 0;
  UnlearningHooks hooks;
  hooks.training.reduce_gradients = [&](std::vector<at::Tensor>& gradients) {
    ++reductions;
    return (*group)->AllReduceMean(gradients);
  };
  const auto plain_run = RunUnlearning(*plain, data, options);
  const auto reduced_run = RunUnlearning(*reduced, data, options, hooks);
  if (!plain_run.ok() || !reduced_run.ok()) {
    Check(
        "NPO_RT through NCCL", false,
        plain_run.status().ToString() + "; " + reduced_run.status().ToString());
    return;
  }
  const auto [diff, moved] = Compare(*reduced, *plain, *plain);
  Check("NPO_RT with gradients through a 1-rank NCCL group equals no group",
        diff == 0 && reductions == reduced_run->total_steps,
        std::to_string(reductions) + " all-reduces, max diff " +
            std::to_string(diff));
}
#endif

void MeasureThroughput(const at::Device& device) {
  const LlamaConfig config = Benchmark100MLlamaConfig();
  UnlearningData data{.forget = RandomExamples(256, 7, config.vocab_size),
                      .retain = RandomExamples(512, 8, config.vocab_size),
                      .pad_id = 0};
  for (bool tf32 : {false, true}) {
    at::globalContext().setFloat32MatmulPrecision(tf32 ? "high" : "highest");
    auto model = ModelOn(device, config);
    UnlearningOptions options = Options(UnlearningMethod::kNpoRt);
    options.training.num_epochs = 1;
    options.training.per_device_batch_size = 32;
    int64_t tokens = 0;
    double seconds = 0;
    options.training.max_steps = 8;
    UnlearningHooks hooks;
    auto last = std::chrono::steady_clock::now();
    hooks.training.on_step = [&](const StepRecord& step) {
      if (device.is_cuda()) torch::cuda::synchronize();
      const auto now = std::chrono::steady_clock::now();
      if (step.step > 2) {  // The first steps warm up kernels and caches.
        tokens += step.tokens;
        seconds += std::chrono::duration<double>(now - last).count();
      }
      last = now;
      return absl::OkStatus();
    };
    const auto run = RunUnlearning(*model, data, options, hooks);
    Check(std::string("NPO_RT throughput run, ") + (tf32 ? "TF32" : "fp32"),
          run.ok(), run.ok() ? "" : run.status().ToString());
    std::cout << "NPO_RT step (100M, 32 forget + 32 retain sequences of 6-29 "
                 "tokens), "
              << (tf32 ? "TF32" : "fp32") << ": "
              << (seconds > 0 ? tokens / seconds : 0) << " forget tokens/s, "
              << (seconds > 0 ? seconds / 6 * 1000 : 0) << " ms a step\n";
  }
  at::globalContext().setFloat32MatmulPrecision("highest");
}

}  // namespace
}  // namespace lethe

int main() {
  const bool on_cpu = std::getenv("LETHE_CHECK_ON_CPU") != nullptr;
  if (!on_cpu && !torch::cuda::is_available()) {
    std::cout << "no CUDA device\n";
    return 1;
  }
  const at::Device device =
      on_cpu ? at::Device(at::kCPU) : at::Device("cuda:0");
  at::globalContext().setFloat32MatmulPrecision("highest");
  lethe::CheckMethods(device);
  lethe::CheckFinetuning(device);
#ifdef LETHE_WITH_NCCL
  if (device.is_cuda()) lethe::CheckNcclReducer(device);
#endif
  if (std::getenv("LETHE_CHECK_NO_THROUGHPUT") == nullptr) {
    lethe::MeasureThroughput(device);
  }
  std::cout << (lethe::failures == 0 ? "ALL CHECKS PASSED" : "CHECKS FAILED")
            << " (" << lethe::failures << " failed)\n";
  return lethe::failures == 0 ? 0 : 1;
}
