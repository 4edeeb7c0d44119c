// The memory plan (libs/plan/memory_plan.h) against the peak resident memory
// of real unlearning runs on the CPU.
//
//   bazel run -c opt //benchmarks:memory_plan_check
//   bazel run -c opt //benchmarks:memory_plan_check -- --cases=20M:NPO_KL
//
// For each case (a model size, a method, a weights dtype, and optionally
// memory savers: LoRA adapters, per-layer activation checkpointing, the
// chunked vocabulary loss) a fresh child
// process builds a random-weight model (LlamaForCausalLM, ParameterInit::
// kRandom), makes full-length random forget and retain examples
// (--max_length tokens, the last quarter of each the answer), and runs
// --steps optimizer steps of RunUnlearning (libs/unlearn) with batch
// --batch_size, including its reference log-prob pass and, for methods with
// a KL term, the frozen reference copy. The child reports VmHWM (peak RSS)
// from /proc/self/status, and its VmHWM right after start-up (LibTorch's
// baseline, before any model exists). The parent prints plan vs measured
// and their ratio; the exit code is 1 when any ratio leaves
// [1 - tolerance, 1 + tolerance].
//
// The plan counts live tensors. By default the children fix glibc's
// M_MMAP_THRESHOLD at 1 MiB so that freed tensors leave the resident set;
// --mmap_threshold=0 keeps glibc's dynamic threshold, under which peak RSS
// also holds freed heap memory (the README's second table).
//
// --probe instead measures what one decoder layer's forward pass keeps for
// the backward pass (malloc's in-use bytes), the figure behind the
// activation count in libs/plan/memory_plan.cc.
#include <malloc.h>
#include <torch/types.h>
#include <unistd.h>

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
#include "libs/data/qa_example.h"
#include "libs/model/llama_config.h"
#include "libs/model/llama_model.h"
#include "libs/model/lora.h"
#include "libs/plan/memory_plan.h"
#include "libs/subprocess/subprocess.h"
#include "libs/sysinfo/process_memory.h"
#include "libs/unlearn/objective_params.h"
#include "libs/unlearn/unlearning_run.h"

ABSL_FLAG(
    std::string, cases,
    "20M:NPO_RT:fp32,20M:NPO_KL:fp32,20M:GA:fp32,20M:NPO_RT:bf16,"
    "100M:NPO_RT:fp32,100M:NPO_KL_BF16REF:fp32,100M:NPO_RT:fp32:ckpt,"
    "100M:NPO_RT:fp32:chunk128,100M:NPO_KL:fp32:lora16,"
    "100M:NPO_RT:fp32:lora16+ckpt+chunk128",
    "comma-separated SIZE:METHOD:DTYPE[:SAVERS] cases (SIZE 20M, 100M "
    "or 20MV (a 64000-token vocabulary); METHOD a method name, "
    "NPO_KL_BF16REF for NPO_KL with a bf16 reference; SAVERS joined by "
    "'+': loraR (LoRA rank R on q_proj and v_proj; with all: on all seven "
    "projections), ckpt (activation "
    "checkpointing), chunkN (loss_chunk_tokens N))");
ABSL_FLAG(int, batch_size, 4, "examples per micro-batch");
ABSL_FLAG(int, max_length, 256, "tokens per example");
ABSL_FLAG(int, steps, 3, "optimizer steps per case");
ABSL_FLAG(int, threads, 2, "intra-op threads");
ABSL_FLAG(double, tolerance, 0.15, "largest accepted |plan/measured - 1|");
ABSL_FLAG(std::string, child, "", "internal: run this case and report");
ABSL_FLAG(int64_t, mmap_threshold, 1 << 20,
          "> 0: the children set glibc's M_MMAP_THRESHOLD to this many bytes "
          "(tensors above it are mmapped and go back to the system when "
          "freed, so peak RSS follows the live tensors the plan counts); 0: "
          "glibc's default, a threshold that grows to 32 MiB, whose heaps "
          "keep freed tensor memory (peak RSS 4-40% above the live bytes)");
ABSL_FLAG(bool, plan_only, false, "print the plans without running them");
ABSL_FLAG(bool, probe, false,
          "instead of the cases: the bytes one decoder layer's forward pass "
          "keeps for backward (malloc's in-use bytes with the graph alive, "
          "a 2-layer minus a 1-layer model), against the plan's count");

namespace lethe {
namespace {

// About 20M parameters with grouped-query attention (8 query, 4 key/value
// heads) and tied embeddings.
LlamaConfig Config20M(int64_t vocab) {
  LlamaConfig config;
  config.vocab_size = vocab;
  config.hidden_size = 512;
  config.intermediate_size = 1408;
  config.num_hidden_layers = 4;
  config.num_attention_heads = 8;
  config.num_key_value_heads = 4;
  config.max_position_embeddings = 1024;
  config.tie_word_embeddings = true;
  return config;
}

absl::StatusOr<LlamaConfig> ConfigFor(const std::string& size) {
  if (size == "20M") return Config20M(16000);
  if (size == "20MV") return Config20M(64000);
  if (size == "100M") {
    LlamaConfig config = Benchmark100MLlamaConfig();
    config.max_position_embeddings = 1024;
    return config;
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown size ", size));
}

struct Case {
  std::string size;
  std::string method_name;
  UnlearningMethod method = UnlearningMethod::kNpo;
  bool bf16_reference = false;
  std::string dtype;
  int lora_rank = 0;
  bool lora_all_projections = false;
  bool activation_checkpointing = false;
  int loss_chunk_tokens = 0;
};

absl::StatusOr<Case> ParseCase(const std::string& text) {
  const std::vector<std::string> parts = absl::StrSplit(text, ':');
  if (parts.size() != 3 && parts.size() != 4) {
    return absl::InvalidArgumentError(
        absl::StrCat("case \"", text, "\" is not SIZE:METHOD:DTYPE[:SAVERS]"));
  }
  Case c{.size = parts[0], .method_name = parts[1], .dtype = parts[2]};
  if (parts.size() == 4) {
    for (absl::string_view saver : absl::StrSplit(parts[3], '+')) {
      if (saver == "ckpt") {
        c.activation_checkpointing = true;
      } else if (saver == "all") {
        c.lora_all_projections = true;
      } else if (absl::ConsumePrefix(&saver, "lora")) {
        if (!absl::SimpleAtoi(saver, &c.lora_rank) || c.lora_rank <= 0) {
          return absl::InvalidArgumentError(
              absl::StrCat("case \"", text, "\": bad LoRA rank"));
        }
      } else if (absl::ConsumePrefix(&saver, "chunk")) {
        if (!absl::SimpleAtoi(saver, &c.loss_chunk_tokens) ||
            c.loss_chunk_tokens <= 0) {
          return absl::InvalidArgumentError(
              absl::StrCat("case \"", text, "\": bad chunk size"));
        }
      } else {
        return absl::InvalidArgumentError(
            absl::StrCat("case \"", text, "\": unknown saver \"", saver,
                         "\" (loraR, all, ckpt or chunkN)"));
      }
    }
  }
  std::string method = parts[1];
  if (method == "NPO_KL_BF16REF") {
    method = "NPO_KL";
    c.bf16_reference = true;
  }
  absl::StatusOr<UnlearningMethod> parsed = ParseUnlearningMethod(method);
  if (!parsed.ok()) return parsed.status();
  c.method = *parsed;
  return c;
}

std::vector<std::string> AllProjections() { return LoraTargetableModules(); }

// The method's defaults, except that REGLU's RILA measures every example the
// case makes (--batch_size x --steps of each set), as the run does when its
// sets are smaller than reglu_samples.
ObjectiveParams ParamsFor(const Case& c) {
  ObjectiveParams params = DefaultObjectiveParams(c.method);
  params.reglu_samples =
      std::min<int64_t>(params.reglu_samples, absl::GetFlag(FLAGS_batch_size) *
                                                  absl::GetFlag(FLAGS_steps));
  return params;
}

PlanOptions OptionsFor(const Case& c) {
  PlanOptions options;
  options.method = c.method;
  options.params = ParamsFor(c);
  options.weights_dtype = c.dtype;
  options.bf16_reference = c.bf16_reference;
  options.lora_rank = c.lora_rank;
  if (c.lora_all_projections) options.lora_target_modules = AllProjections();
  options.activation_checkpointing = c.activation_checkpointing;
  options.loss_chunk_tokens = c.loss_chunk_tokens;
  options.batch_size = absl::GetFlag(FLAGS_batch_size);
  options.max_length = absl::GetFlag(FLAGS_max_length);
  return options;
}

// Full-length examples of random tokens; the last quarter is the answer.
std::vector<QaExample> RandomExamples(int count, int length, int64_t vocab,
                                      uint64_t seed) {
  torch::manual_seed(seed);
  std::vector<QaExample> examples;
  for (int i = 0; i < count; ++i) {
    const at::Tensor ids = torch::randint(3, vocab, {length}, at::kInt);
    QaExample example;
    example.input_ids.assign(ids.data_ptr<int>(), ids.data_ptr<int>() + length);
    example.labels = example.input_ids;
    for (int t = 0; t < length * 3 / 4; ++t) example.labels[t] = kIgnoreIndex;
    examples.push_back(std::move(example));
  }
  return examples;
}

// The child: one case; prints "baseline BYTES" and "peak BYTES".
int RunChild(const std::string& text) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  if (absl::GetFlag(FLAGS_mmap_threshold) > 0) {
    mallopt(M_MMAP_THRESHOLD,
            static_cast<int>(absl::GetFlag(FLAGS_mmap_threshold)));
  }
  at::set_num_threads(absl::GetFlag(FLAGS_threads));
  absl::StatusOr<Case> c = ParseCase(text);
  absl::StatusOr<LlamaConfig> config =
      c.ok() ? ConfigFor(c->size) : absl::StatusOr<LlamaConfig>(c.status());
  if (!config.ok()) {
    std::fprintf(stderr, "%s\n", config.status().ToString().c_str());
    return 2;
  }
  // A first tensor operation, so that LibTorch's lazily made thread pool
  // and allocator exist in the baseline.
  (void)(torch::ones({8, 8}).matmul(torch::ones({8, 8}))).sum().item<float>();
  std::printf("baseline %ld\n", ProcessMemoryBytes("VmHWM").value_or(0));

  const int batch = absl::GetFlag(FLAGS_batch_size);
  const int length = absl::GetFlag(FLAGS_max_length);
  const int steps = absl::GetFlag(FLAGS_steps);
  torch::manual_seed(1);
  auto model = std::make_shared<LlamaForCausalLM>(*config);
  if (c->dtype == "bf16") model->to(at::kBFloat16);
  model->SetActivationCheckpointing(c->activation_checkpointing);
  if (c->lora_rank > 0) {
    // As a job attaches them (libs/run/job_run.cc): PEFT's default targets.
    const absl::Status attached = AttachLora(
        *model, {.rank = c->lora_rank,
                 .alpha = 2.0 * c->lora_rank,
                 .target_modules = c->lora_all_projections
                                       ? AllProjections()
                                       : std::vector<std::string>{}});
    if (!attached.ok()) {
      std::fprintf(stderr, "%s\n", attached.ToString().c_str());
      return 2;
    }
    FreezeAllButLora(*model);
  }
  UnlearningData data;
  data.forget = RandomExamples(batch * steps, length, config->vocab_size, 2);
  data.retain = RandomExamples(batch * steps, length, config->vocab_size, 3);
  if (MethodNeeds(c->method, DefaultObjectiveParams(c->method))
          .alternate_answers) {
    data.alternate =
        RandomExamples(batch * steps, length, config->vocab_size, 4);
  }
  data.pad_id = 0;
  UnlearningOptions options;
  options.method = c->method;
  options.params = ParamsFor(*c);
  options.bf16_reference = c->bf16_reference;
  options.training.num_epochs = 1;
  options.training.max_steps = steps;
  options.training.per_device_batch_size = batch;
  options.training.threads = absl::GetFlag(FLAGS_threads);
  options.training.warmup_epochs = 0;
  options.training.loss_chunk_tokens = c->loss_chunk_tokens;
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<TrainingSummary> summary =
      RunUnlearning(*model, data, options);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  if (!summary.ok()) {
    std::fprintf(stderr, "%s\n", summary.status().ToString().c_str());
    return 2;
  }
  std::printf("seconds_per_step %.3f\n",
              seconds / std::max<size_t>(summary->steps.size(), 1));
  std::printf("peak %ld\n", ProcessMemoryBytes("VmHWM").value_or(0));
  return 0;
}

// Bytes malloc has handed out and not yet taken back (heap and mmap).
int64_t InUseBytes() {
  const struct mallinfo2 info = mallinfo2();
  return static_cast<int64_t>(info.uordblks + info.hblkhd);
}

// In-use bytes after a forward pass with gradients (the graph alive, the
// logits dropped) minus before it.
int64_t ForwardGraphBytes(LlamaConfig config, int64_t layers, int batch,
                          int length) {
  config.num_hidden_layers = layers;
  torch::manual_seed(1);
  LlamaForCausalLM model(config);
  const at::Tensor ids =
      torch::randint(3, config.vocab_size, {batch, length}, at::kLong);
  const int64_t before = InUseBytes();
  at::Tensor hidden = model.ForwardHidden(ids);
  const int64_t after = InUseBytes();
  hidden = at::Tensor();
  return after - before;
}

int RunProbe() {
  at::set_num_threads(absl::GetFlag(FLAGS_threads));
  const int batch = absl::GetFlag(FLAGS_batch_size);
  const int length = absl::GetFlag(FLAGS_max_length);
  for (const std::string size : {"20M", "100M"}) {
    absl::StatusOr<LlamaConfig> config = ConfigFor(size);
    const int64_t one = ForwardGraphBytes(*config, 1, batch, length);
    const int64_t two = ForwardGraphBytes(*config, 2, batch, length);
    const int64_t three = ForwardGraphBytes(*config, 3, batch, length);
    std::printf(
        "%s, batch %d x %d: forward graph of 1/2/3 layers %.2f / %.2f / "
        "%.2f MiB; per layer %.2f MiB; hidden x token %.1f bytes\n",
        size.c_str(), batch, length, one / 1048576.0, two / 1048576.0,
        three / 1048576.0, (three - two) / 1048576.0,
        static_cast<double>(three - two) /
            (static_cast<double>(batch) * length * config->hidden_size));
  }
  return 0;
}

std::string SelfPath() {
  return std::filesystem::read_symlink("/proc/self/exe").string();
}

int Run() {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  const double tolerance = absl::GetFlag(FLAGS_tolerance);
  std::printf(
      "batch %d x %d tokens, %d steps, %d threads, M_MMAP_THRESHOLD %s; "
      "GiB = 2^30 bytes\n\n",
      absl::GetFlag(FLAGS_batch_size), absl::GetFlag(FLAGS_max_length),
      absl::GetFlag(FLAGS_steps), absl::GetFlag(FLAGS_threads),
      absl::GetFlag(FLAGS_mmap_threshold) > 0
          ? absl::StrCat(absl::GetFlag(FLAGS_mmap_threshold), " bytes").c_str()
          : "glibc's default");
  std::printf(
      "| case | params | weights | grads+AdamW | reference (+ method state) "
      "| activations | logits | ref. pass (or RILA) | plan GiB | measured peak "
      "GiB | plan/measured | "
      "start-up GiB | s/step |\n"
      "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
  int result = 0;
  for (const std::string& text : std::vector<std::string>(absl::StrSplit(
           absl::GetFlag(FLAGS_cases), ',', absl::SkipEmpty()))) {
    absl::StatusOr<Case> c = ParseCase(text);
    absl::StatusOr<LlamaConfig> config =
        c.ok() ? ConfigFor(c->size) : absl::StatusOr<LlamaConfig>(c.status());
    absl::StatusOr<MemoryPlan> plan =
        config.ok() ? PlanMemory(*config, OptionsFor(*c))
                    : absl::StatusOr<MemoryPlan>(config.status());
    if (!plan.ok()) {
      std::fprintf(stderr, "%s: %s\n", text.c_str(),
                   plan.status().ToString().c_str());
      return 2;
    }
    if (absl::GetFlag(FLAGS_plan_only)) {
      std::printf(
          "| %s | %.1fM | %s | %s | %s | %s | %s | %s | %s |\n", text.c_str(),
          plan->parameters / 1e6, Gib(plan->weights, 3).c_str(),
          Gib(plan->gradients + plan->optimizer_state, 3).c_str(),
          Gib(plan->reference_model + plan->method_state, 3).c_str(),
          Gib(plan->activations, 3).c_str(), Gib(plan->logits, 3).c_str(),
          Gib(std::max(plan->reference_pass_bytes, plan->rila_bytes), 3)
              .c_str(),
          Gib(plan->total_bytes(), 3).c_str());
      continue;
    }
    const std::string report_path =
        absl::StrCat(std::filesystem::temp_directory_path().string(),
                     "/lethe_memory_plan_check_", getpid(), ".txt");
    absl::StatusOr<Subprocess> child = Subprocess::Start(
        {SelfPath(), "--child=" + text,
         absl::StrCat("--batch_size=", absl::GetFlag(FLAGS_batch_size)),
         absl::StrCat("--max_length=", absl::GetFlag(FLAGS_max_length)),
         absl::StrCat("--steps=", absl::GetFlag(FLAGS_steps)),
         absl::StrCat("--threads=", absl::GetFlag(FLAGS_threads)),
         absl::StrCat("--mmap_threshold=",
                      absl::GetFlag(FLAGS_mmap_threshold))},
        {}, {.stdout_path = report_path});
    absl::StatusOr<ExitStatus> exit =
        child.ok() ? child->Wait() : absl::StatusOr<ExitStatus>(child.status());
    if (!exit.ok() || !exit->success()) {
      std::printf("| %s | child %s |\n", text.c_str(),
                  exit.ok() ? exit->ToString().c_str()
                            : exit.status().ToString().c_str());
      result = 1;
      continue;
    }
    int64_t baseline = 0, peak = 0;
    double seconds_per_step = 0;
    std::ifstream report(report_path);
    std::string line_text;
    while (std::getline(report, line_text)) {
      absl::string_view line = line_text;
      if (absl::ConsumePrefix(&line, "baseline ")) {
        (void)absl::SimpleAtoi(line, &baseline);
      } else if (absl::ConsumePrefix(&line, "peak ")) {
        (void)absl::SimpleAtoi(line, &peak);
      } else if (absl::ConsumePrefix(&line, "seconds_per_step ")) {
        (void)absl::SimpleAtod(line, &seconds_per_step);
      }
    }
    std::filesystem::remove(report_path);
    if (peak == 0) {
      std::printf("| %s | child reported no peak |\n", text.c_str());
      result = 1;
      continue;
    }
    const double ratio = static_cast<double>(plan->total_bytes()) / peak;
    const bool ok = ratio >= 1 - tolerance && ratio <= 1 + tolerance;
    if (!ok) result = 1;
    std::printf(
        "| %s | %.1fM | %s | %s | %s | %s | %s | %s | %s | %s | %.3f%s | %s "
        "| %.1f |\n",
        text.c_str(), plan->parameters / 1e6, Gib(plan->weights, 3).c_str(),
        Gib(plan->gradients + plan->optimizer_state, 3).c_str(),
        Gib(plan->reference_model + plan->method_state, 3).c_str(),
        Gib(plan->activations, 3).c_str(), Gib(plan->logits, 3).c_str(),
        Gib(std::max(plan->reference_pass_bytes, plan->rila_bytes), 3).c_str(),
        Gib(plan->total_bytes(), 3).c_str(), Gib(peak, 3).c_str(), ratio,
        ok ? "" : " (out of tolerance)", Gib(baseline, 3).c_str(),
        seconds_per_step);
  }
  return result;
}

}  // namespace
}  // namespace lethe

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const std::string child = absl::GetFlag(FLAGS_child);
  if (absl::GetFlag(FLAGS_probe)) return lethe::RunProbe();
  return child.empty() ? lethe::Run() : lethe::RunChild(child);
}
