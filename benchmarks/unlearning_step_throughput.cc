// Throughput of one NPO_RT unlearning step (8 forget + 8 retain sequences,
// cached reference log-probs, clipping, AdamW) in Lethe next to the same step
// in PyTorch eager over the same LibTorch (benchmarks/unlearning_step_peer.py,
// run by this program with the same config, initial weights, token ids and
// thread count), with a profile of the steps of each.
//
//   bazel build -c opt //benchmarks:unlearning_step_throughput
//   bazel-bin/benchmarks/unlearning_step_throughput --threads=2
//   # or: bazel run -c opt //benchmarks:unlearning_step_throughput --
//   #       --benchmark=$PWD/.lethe/benchmark
//
// Cases (--cases):
//   mini, 100m            synthetic: random token ids, --length tokens per
//                         sequence, the answer (the loss) on the last half;
//                         the embedded benchmark's model size
//                         (MiniBenchmarkLlamaConfig(1024), 2.0M parameters)
//                         and Benchmark100MLlamaConfig, randomly initialised.
//   mini_tofu, 100m_tofu  real embedded-benchmark batches: the first forget
//                         and retain micro-batches a seed-1 run over
//                         forget10 / retain90 draws, tokenized as a job does
//                         (the model's tokenizer, the "auto" template,
//                         max_length 256), right-padded; the mini case
//                         starts from the prepared target model. They need
//                         `lethe prepare-benchmark` (--benchmark).
// Lethe's step is RunUnlearning's (libs/unlearn/unlearning_run.h): the
// NPO_RT objective of libs/unlearn/objective.h inside RunTraining's loop, as
// a job runs it. Tokens/s counts the non-padding tokens of the step's
// forward passes (forget + retain); answer tokens/s counts the tokens that
// carry a loss. The sides run in alternating rounds (--rounds); the
// headline is each side's fastest timed step (the least disturbed by other
// processes on a shared machine), next to the ratio of the medians.
// The first two steps' losses of both sides are compared (relative
// difference; step 2 also checks the clipped AdamW update).
#include <torch/csrc/autograd/profiler_legacy.h>
#include <torch/version.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "libs/data/packed_batch.h"
#include "libs/data/qa_batch.h"
#include "libs/data/qa_example.h"
#include "libs/data/sharding.h"
#include "libs/data/tofu_dataset.h"
#include "libs/files/file_io.h"
#include "libs/model/hf_checkpoint.h"
#include "libs/model/llama_config.h"
#include "libs/model/llama_model.h"
#include "libs/model/safetensors.h"
#include "libs/status/status_macros.h"
#include "libs/status/torch_status.h"
#include "libs/subprocess/subprocess.h"
#include "libs/tokenizer/tokenizer.h"
#include "libs/unlearn/objective_params.h"
#include "libs/unlearn/unlearning_run.h"
#include "nlohmann/json.hpp"

ABSL_FLAG(int, threads, 2, "intra-op threads, on both sides");
ABSL_FLAG(std::string, cases, "mini,100m,mini_tofu,100m_tofu",
          "comma-separated: mini, 100m, mini_tofu, 100m_tofu");
ABSL_FLAG(int, warmup_steps, 2, "untimed steps first (1 at 100M)");
ABSL_FLAG(int, steps, 5, "timed steps at the mini size");
ABSL_FLAG(int, steps_100m, 2, "timed steps at the 100M size");
ABSL_FLAG(int, rounds, 2,
          "rounds of (Lethe, PyTorch) per case, alternating the sides");
ABSL_FLAG(int, batch, 8, "forget sequences per step (as many retain ones)");
ABSL_FLAG(int, length, 64, "tokens per synthetic sequence");
ABSL_FLAG(double, learning_rate, 1e-4,
          "peak learning rate (linear decay, no warm-up)");
ABSL_FLAG(int64_t, loss_chunk_tokens, 0,
          "Lethe's loss_chunk_tokens (0: full logits, a job's default)");
ABSL_FLAG(std::string, pack_row_lengths, "0",
          "comma-separated UnlearningOptions.pack_row_length values Lethe's "
          "step runs with, each in every round from the same initial "
          "weights (0: padded batches; e.g. 0,256 compares padded and "
          "packed in one invocation)");
ABSL_FLAG(std::string, benchmark, ".lethe/benchmark",
          "a directory prepared by `lethe prepare-benchmark` (tofu cases)");
ABSL_FLAG(std::string, python, "/usr/bin/python3",
          "the interpreter with Debian's python3-torch (empty: no peer)");
ABSL_FLAG(std::string, peer, "",
          "the peer script (default: benchmarks/unlearning_step_peer.py)");
ABSL_FLAG(int, profile_top, 15, "operators per profile (0: no profile)");
ABSL_FLAG(int, profile_steps, 3,
          "steps the profile averages over (1 at 100M), after the timed ones");
ABSL_FLAG(bool, profile_shapes, false,
          "profile rows per operator and input shapes, not per operator");
ABSL_FLAG(std::string, work_dir, "",
          "scratch directory for the peer's inputs (default: a new one "
          "under /tmp, removed at the end)");

namespace lethe {
namespace {

using torch::autograd::profiler::EventKind;
using torch::autograd::profiler::LegacyEvent;
using torch::autograd::profiler::thread_event_lists;

constexpr double kLossTolerance = 1e-4;
constexpr uint64_t kSeed = 1;

// A path given relative to where `bazel run` was started.
std::string FromWorkingDirectory(const std::string& path) {
  const char* dir = std::getenv("BUILD_WORKING_DIRECTORY");
  if (path.empty() || path[0] == '/' || dir == nullptr) return path;
  return absl::StrCat(dir, "/", path);
}

std::string PeerScript() {
  if (!absl::GetFlag(FLAGS_peer).empty()) {
    return FromWorkingDirectory(absl::GetFlag(FLAGS_peer));
  }
  const std::string relative = "benchmarks/unlearning_step_peer.py";
  if (std::filesystem::exists(relative)) return relative;  // Runfiles, root.
  return FromWorkingDirectory(relative);
}

struct Case {
  std::string name;
  std::string description;
  std::shared_ptr<LlamaForCausalLM> model;
  std::vector<QaExample> forget;
  std::vector<QaExample> retain;
  int pad_id = 0;
  int warmup_steps = 0;
  int timed_steps = 0;
  int profile_steps = 0;
};

// Time per operator name in one profiled step (an average over
// --profile_steps steps).
struct OpTime {
  std::string name;
  double self_us = 0;
  int64_t calls = 0;
};

struct Profile {
  std::vector<OpTime> ops;  // By self time, largest first.
  double in_ops_us = 0;     // Inside any operator.
  double step_us = 0;       // Wall time of a profiled step.
};

// What one side measured.
struct SideResult {
  std::vector<double> losses;
  std::vector<double> seconds;
  std::map<std::string, double> first_step;  // Loss components of step 1.
  Profile profile;
};

std::vector<QaExample> SyntheticExamples(int count, int length,
                                         int64_t vocab_size) {
  const at::Tensor ids =
      torch::randint(3, vocab_size, {count, length}, at::kLong);
  std::vector<QaExample> examples(count);
  for (int i = 0; i < count; ++i) {
    for (int t = 0; t < length; ++t) {
      const int id = static_cast<int>(ids[i][t].item<int64_t>());
      examples[i].input_ids.push_back(id);
      // The answer is the last half; the first half is the prompt.
      examples[i].labels.push_back(t < length / 2 ? kIgnoreIndex : id);
    }
  }
  return examples;
}

std::vector<QaExample> Pick(const std::vector<QaExample>& examples,
                            uint64_t seed, int count) {
  const std::vector<int64_t> order =
      EpochPermutation(static_cast<int64_t>(examples.size()), seed, 0);
  std::vector<QaExample> picked;
  for (int i = 0; i < count && i < static_cast<int>(order.size()); ++i) {
    picked.push_back(examples[order[i]]);
  }
  return picked;
}

absl::StatusOr<Case> MakeCase(const std::string& name) {
  const int batch = absl::GetFlag(FLAGS_batch);
  const bool big = absl::StartsWith(name, "100m");
  Case c;
  c.name = name;
  c.warmup_steps = big ? std::min(1, absl::GetFlag(FLAGS_warmup_steps))
                       : absl::GetFlag(FLAGS_warmup_steps);
  c.timed_steps =
      big ? absl::GetFlag(FLAGS_steps_100m) : absl::GetFlag(FLAGS_steps);
  c.profile_steps = absl::GetFlag(FLAGS_profile_top) <= 0 ? 0
                    : big                                 ? 1
                          : std::max(1, absl::GetFlag(FLAGS_profile_steps));
  torch::manual_seed(kSeed);
  const LlamaConfig config =
      big ? Benchmark100MLlamaConfig() : MiniBenchmarkLlamaConfig(1024);
  if (name == "mini" || name == "100m") {
    c.model = std::make_shared<LlamaForCausalLM>(config);
    const int length = absl::GetFlag(FLAGS_length);
    c.forget = SyntheticExamples(batch, length, config.vocab_size);
    c.retain = SyntheticExamples(batch, length, config.vocab_size);
    c.description =
        absl::StrFormat("synthetic, %d tokens, answer last half", length);
    return c;
  }
  if (name != "mini_tofu" && name != "100m_tofu") {
    return absl::InvalidArgumentError(absl::StrCat(
        "unknown case '", name, "' (mini, 100m, mini_tofu, 100m_tofu)"));
  }
  const std::string dir = FromWorkingDirectory(absl::GetFlag(FLAGS_benchmark));
  const std::string target = dir + "/target";
  if (!std::filesystem::exists(target + "/tokenizer.model")) {
    return absl::NotFoundError(absl::StrCat(
        target,
        "/tokenizer.model is missing: run `lethe prepare-benchmark` "
        "or pass --benchmark=DIR"));
  }
  ASSIGN_OR_RETURN(std::unique_ptr<Tokenizer> tokenizer,
                   Tokenizer::Load(target + "/tokenizer.model"));
  ASSIGN_OR_RETURN(PromptTemplate prompt_template,
                   PromptTemplateForModel("auto", target));
  ASSIGN_OR_RETURN(std::vector<TofuRecord> forget,
                   ReadTofuSplit(dir + "/data", "forget10"));
  ASSIGN_OR_RETURN(std::vector<TofuRecord> retain,
                   ReadTofuSplit(dir + "/data", "retain90"));
  constexpr int kMaxLength = 256;  // A job's default max_length.
  ASSIGN_OR_RETURN(
      std::vector<QaExample> forget_examples,
      TokenizeRecords(*tokenizer, prompt_template, forget, kMaxLength));
  ASSIGN_OR_RETURN(
      std::vector<QaExample> retain_examples,
      TokenizeRecords(*tokenizer, prompt_template, retain, kMaxLength));
  // The first micro-batches of epoch 0 of a seed-1 run (RunUnlearning draws
  // retain examples with the seed ^ 0x5eed).
  c.forget = Pick(forget_examples, kSeed, batch);
  c.retain = Pick(retain_examples, kSeed ^ 0x5eedull, batch);
  c.pad_id = tokenizer->eos_id();
  if (big) {
    c.model = std::make_shared<LlamaForCausalLM>(config);
    c.description = "forget10/retain90 batches, random init";
  } else {
    ASSIGN_OR_RETURN(c.model, LoadLlamaCheckpoint(target));
    c.description = "forget10/retain90 batches, prepared target model";
  }
  return c;
}

QaBatch CollateAll(const std::vector<QaExample>& examples, int pad_id) {
  std::vector<const QaExample*> pointers;
  for (const QaExample& example : examples) pointers.push_back(&example);
  return CollateQaBatch(pointers, pad_id);
}

int64_t AnswerTokens(const std::vector<QaExample>& examples) {
  int64_t total = 0;
  for (const QaExample& example : examples) {
    // Position 0 never carries a loss (nothing predicts it).
    for (size_t t = 1; t < example.labels.size(); ++t) {
      total += example.labels[t] != kIgnoreIndex;
    }
  }
  return total;
}

int64_t RealTokens(const std::vector<QaExample>& examples) {
  int64_t total = 0;
  for (const QaExample& example : examples) total += example.input_ids.size();
  return total;
}

// The peer's inputs: the config, the initial weights, the batch.
absl::Status WritePeerInputs(Case& c, const std::string& dir) {
  RETURN_IF_ERROR(WriteFileAtomically(dir + "/config.json",
                                      LlamaConfigToJson(c.model->config())));
  std::vector<std::pair<std::string, at::Tensor>> weights;
  for (const auto& parameter : c.model->named_parameters()) {
    weights.emplace_back(parameter.key(), parameter.value().detach());
  }
  RETURN_IF_ERROR(WriteSafetensors(dir + "/weights.safetensors", weights));
  const QaBatch forget = CollateAll(c.forget, c.pad_id);
  const QaBatch retain = CollateAll(c.retain, c.pad_id);
  return WriteSafetensors(dir + "/batch.safetensors",
                          {{"forget_input_ids", forget.input_ids},
                           {"forget_attention_mask", forget.attention_mask},
                           {"forget_labels", forget.labels},
                           {"retain_input_ids", retain.input_ids},
                           {"retain_attention_mask", retain.attention_mask},
                           {"retain_labels", retain.labels}});
}

// "[[8, 64], []]", as Python's profiler prints input shapes.
std::string ShapesText(const std::vector<std::vector<int64_t>>& shapes) {
  std::vector<std::string> parts;
  for (const std::vector<int64_t>& shape : shapes) {
    parts.push_back(absl::StrCat("[", absl::StrJoin(shape, ", "), "]"));
  }
  return absl::StrCat("[", absl::StrJoin(parts, ", "), "]");
}

// Self time per operator from the legacy profiler's push/pop ranges (each
// thread's list is in time order; a pop carries its push's handle).
Profile AggregateProfile(const thread_event_lists& lists, double total_us,
                         int steps) {
  Profile profile;
  profile.step_us = total_us / steps;
  std::map<std::string, OpTime> by_name;
  for (const std::vector<LegacyEvent>& events : lists) {
    struct Frame {
      const LegacyEvent* push;
      double child_us;
    };
    std::vector<Frame> stack;
    for (const LegacyEvent& event : events) {
      if (event.kind() == EventKind::PushRange) {
        stack.push_back({&event, 0.0});
        continue;
      }
      if (event.kind() != EventKind::PopRange) continue;
      size_t depth = stack.size();
      while (depth > 0 && stack[depth - 1].push->handle() != event.handle()) {
        --depth;
      }
      if (depth == 0) continue;  // A pop of a range opened before enabling.
      stack.resize(depth);
      const Frame frame = stack.back();
      stack.pop_back();
      const double total_us = frame.push->cpuElapsedUs(event);
      std::string name = frame.push->name();
      if (absl::GetFlag(FLAGS_profile_shapes)) {
        absl::StrAppend(&name, " ", ShapesText(frame.push->shapes()));
      }
      OpTime& op = by_name[name];
      op.name = name;
      op.self_us += total_us - frame.child_us;
      ++op.calls;
      if (stack.empty()) {
        profile.in_ops_us += total_us;
      } else {
        stack.back().child_us += total_us;
      }
    }
  }
  profile.in_ops_us /= steps;
  for (auto& [name, op] : by_name) {
    op.self_us /= steps;
    op.calls /= steps;
    profile.ops.push_back(op);
  }
  std::sort(
      profile.ops.begin(), profile.ops.end(),
      [](const OpTime& a, const OpTime& b) { return a.self_us > b.self_us; });
  return profile;
}

absl::StatusOr<SideResult> RunLethe(Case& c, int profile_steps,
                                    int64_t pack_row_length) {
  const int threads = absl::GetFlag(FLAGS_threads);
  const int measured = c.warmup_steps + c.timed_steps;
  const int total = measured + profile_steps;
  UnlearningData data{
      .forget = c.forget, .retain = c.retain, .pad_id = c.pad_id};
  UnlearningOptions options{
      .method = UnlearningMethod::kNpoRt,
      .params = DefaultObjectiveParams(UnlearningMethod::kNpoRt)};
  options.training = {
      .learning_rate = absl::GetFlag(FLAGS_learning_rate),
      .weight_decay = 0.01,
      .warmup_epochs = 0.0,
      .max_grad_norm = 1.0,
      .num_epochs = total,
      .per_device_batch_size = static_cast<int>(c.forget.size()),
      .gradient_accumulation_steps = 1,
      .seed = kSeed,
      .threads = threads,
      .loss_chunk_tokens = absl::GetFlag(FLAGS_loss_chunk_tokens)};
  options.pack_row_length = pack_row_length;
  const torch::profiler::impl::ProfilerConfig profiler_config(
      torch::profiler::impl::ProfilerState::CPU,
      /*report_input_shapes=*/absl::GetFlag(FLAGS_profile_shapes));
  SideResult result;
  double profiled_us = 0;
  auto on_step = [&](const StepRecord& record) -> absl::Status {
    if (record.step <= measured) {
      result.losses.push_back(record.loss);
      result.seconds.push_back(record.seconds);
      if (record.step == 1) result.first_step = record.components;
    }
    if (profile_steps == 0) return absl::OkStatus();
    if (record.step == measured) {
      torch::autograd::profiler::enableProfilerLegacy(profiler_config);
      return absl::OkStatus();
    }
    if (record.step > measured) profiled_us += record.seconds * 1e6;
    if (record.step == total) {
      result.profile =
          AggregateProfile(torch::autograd::profiler::disableProfilerLegacy(),
                           profiled_us, profile_steps);
    }
    return absl::OkStatus();
  };
  RETURN_IF_ERROR(
      RunUnlearning(*c.model, data, options, {.training = {.on_step = on_step}})
          .status());
  return result;
}

absl::StatusOr<SideResult> RunPeer(const Case& c, const std::string& dir,
                                   int profile_steps) {
  const int threads = absl::GetFlag(FLAGS_threads);
  const ObjectiveParams params =
      DefaultObjectiveParams(UnlearningMethod::kNpoRt);
  const std::string output = dir + "/peer_result.json";
  std::vector<std::string> argv = {
      absl::GetFlag(FLAGS_python),
      PeerScript(),
      "--dir=" + dir,
      "--output=" + output,
      absl::StrCat("--steps=", c.warmup_steps + c.timed_steps),
      absl::StrCat("--threads=", threads),
      absl::StrFormat("--beta=%.17g", params.beta),
      absl::StrFormat("--alpha=%.17g", params.alpha),
      absl::StrFormat("--gamma=%.17g", params.gamma),
      absl::StrFormat("--learning_rate=%.17g",
                      absl::GetFlag(FLAGS_learning_rate)),
      "--weight_decay=0.01",
      "--max_grad_norm=1",
      absl::StrCat("--profile_steps=", profile_steps),
      absl::StrCat("--profile_shapes=",
                   absl::GetFlag(FLAGS_profile_shapes) ? 1 : 0)};
  ASSIGN_OR_RETURN(
      Subprocess peer,
      Subprocess::Start(argv, {{"OMP_NUM_THREADS", absl::StrCat(threads)}}));
  ASSIGN_OR_RETURN(ExitStatus exit, peer.Wait());
  if (!exit.success()) {
    return absl::InternalError(
        absl::StrCat("the PyTorch peer (", argv[1], ") ", exit.ToString()));
  }
  ASSIGN_OR_RETURN(std::string text, ReadFileToString(output));
  const nlohmann::json json = nlohmann::json::parse(text, nullptr, false);
  if (json.is_discarded()) {
    return absl::DataLossError(output + ": not JSON");
  }
  SideResult result;
  result.losses = json["losses"].get<std::vector<double>>();
  result.seconds = json["seconds"].get<std::vector<double>>();
  for (const auto& [key, value] : json["first_step"].items()) {
    result.first_step[key] = value.get<double>();
  }
  result.profile.step_us = json["profile_seconds"].get<double>() * 1e6;
  for (const auto& op : json["profile"]) {
    result.profile.ops.push_back({.name = op["name"].get<std::string>(),
                                  .self_us = op["self_us"].get<double>(),
                                  .calls = op["calls"].get<int64_t>()});
    result.profile.in_ops_us += result.profile.ops.back().self_us;
  }
  return result;
}

// Step seconds of one side: the fastest (the least disturbed by other
// processes) and the median.
struct StepTimes {
  double best = NAN;
  double median = NAN;
};

StepTimes Summarize(std::vector<double> timed) {
  StepTimes times;
  if (timed.empty()) return times;
  std::sort(timed.begin(), timed.end());
  const size_t n = timed.size();
  times.best = timed.front();
  times.median =
      n % 2 == 1 ? timed[n / 2] : 0.5 * (timed[n / 2 - 1] + timed[n / 2]);
  return times;
}

double Relative(double a, double b) {
  return std::abs(a - b) / std::max(std::abs(b), 1e-30);
}

struct Row {
  std::string name;
  double parameters_m = 0;
  std::string shape;
  int64_t tokens = 0;
  int64_t answer_tokens = 0;
  StepTimes lethe;
  StepTimes peer;
};

void PrintRow(const Row& row) {
  const double lethe = row.tokens / row.lethe.best;
  const double peer = row.tokens / row.peer.best;
  std::printf(
      "%-10s %6.1fM %-13s %6lld %6lld %8.3f %8.3f %8.0f %8.0f %6.2fx %6.2fx "
      "%8.0f %8.0f\n",
      row.name.c_str(), row.parameters_m, row.shape.c_str(),
      static_cast<long long>(row.tokens),
      static_cast<long long>(row.answer_tokens), row.lethe.best, row.peer.best,
      lethe, peer, lethe / peer, row.peer.median / row.lethe.median,
      row.answer_tokens / row.lethe.best, row.answer_tokens / row.peer.best);
}

void PrintHeader() {
  std::printf("%-10s %7s %-13s %6s %6s %8s %8s %8s %8s %7s %7s %8s %8s\n",
              "case", "params", "fwd BxT", "tokens", "answer", "Lethe s",
              "PyTorch", "Lethe", "PyTorch", "ratio", "ratio", "Lethe",
              "PyTorch");
  std::printf("%-10s %7s %-13s %6s %6s %8s %8s %8s %8s %7s %7s %8s %8s\n", "",
              "", "forget+retain", "/step", "/step", "/step", "s/step", "tok/s",
              "tok/s", "L/P", "median", "answer/s", "answer/s");
}

void PrintLossCheck(const std::string& name, const SideResult& lethe,
                    const SideResult& peer) {
  bool ok = !lethe.losses.empty() && !peer.losses.empty();
  std::string line = absl::StrFormat("loss check %-10s", name);
  for (size_t step = 0;
       step < 2 && step < lethe.losses.size() && step < peer.losses.size();
       ++step) {
    const double relative = Relative(lethe.losses[step], peer.losses[step]);
    ok = ok && relative <= kLossTolerance;
    absl::StrAppendFormat(
        &line, " step %d: Lethe %.7f PyTorch %.7f (rel %.1e);", step + 1,
        lethe.losses[step], peer.losses[step], relative);
  }
  for (const char* key :
       {"forget_loss", "retain_nll", "forget_log_prob_mean"}) {
    auto a = lethe.first_step.find(key);
    auto b = peer.first_step.find(key);
    if (a == lethe.first_step.end() || b == peer.first_step.end()) continue;
    const double relative = Relative(a->second, b->second);
    ok = ok && relative <= kLossTolerance;
    absl::StrAppendFormat(&line, " %s %.6f vs %.6f (rel %.1e);", key, a->second,
                          b->second, relative);
  }
  std::printf("%s %s\n", line.c_str(),
              ok ? "AGREE (<= 1e-4)" : "DISAGREE (> 1e-4)");
}

void PrintProfile(const std::string& name, int steps, const Profile& lethe,
                  const Profile* peer, int top) {
  std::printf(
      "\nprofile of one step, %s (legacy autograd profiler, self time per "
      "operator, mean of %d steps; Lethe step %.1f ms%s)\n",
      name.c_str(), steps, lethe.step_us / 1e3,
      peer != nullptr
          ? absl::StrFormat(", PyTorch step %.1f ms", peer->step_us / 1e3)
                .c_str()
          : "");
  std::map<std::string, const OpTime*> peer_ops;
  if (peer != nullptr) {
    for (const OpTime& op : peer->ops) peer_ops[op.name] = &op;
  }
  std::printf("  %-52s %9s %6s %6s | %9s %6s %6s\n", "operator", "Lethe ms",
              "share", "calls", "PyTorch", "share", "calls");
  auto print = [&](const std::string& op_name, const OpTime* mine,
                   const OpTime* theirs) {
    std::string left = "        -      -      -";
    if (mine != nullptr) {
      left = absl::StrFormat("%9.2f %5.1f%% %6lld", mine->self_us / 1e3,
                             100.0 * mine->self_us / lethe.step_us,
                             static_cast<long long>(mine->calls));
    }
    std::string right = "        -      -      -";
    if (theirs != nullptr) {
      right = absl::StrFormat("%9.2f %5.1f%% %6lld", theirs->self_us / 1e3,
                              100.0 * theirs->self_us / peer->step_us,
                              static_cast<long long>(theirs->calls));
    }
    std::printf("  %-52s %s | %s\n", op_name.substr(0, 52).c_str(),
                left.c_str(), right.c_str());
  };
  std::set<std::string> shown;
  for (int i = 0; i < top && i < static_cast<int>(lethe.ops.size()); ++i) {
    const OpTime& op = lethe.ops[i];
    auto theirs = peer_ops.find(op.name);
    print(op.name, &op, theirs == peer_ops.end() ? nullptr : theirs->second);
    shown.insert(op.name);
  }
  if (peer != nullptr) {
    std::map<std::string, const OpTime*> mine;
    for (const OpTime& op : lethe.ops) mine[op.name] = &op;
    for (int i = 0; i < top && i < static_cast<int>(peer->ops.size()); ++i) {
      const OpTime& op = peer->ops[i];
      if (shown.count(op.name) > 0) continue;
      auto found = mine.find(op.name);
      print(op.name, found == mine.end() ? nullptr : found->second, &op);
    }
  }
  auto rest = [](const Profile& profile, const std::set<std::string>& names) {
    double us = 0;
    for (const OpTime& op : profile.ops) {
      if (names.count(op.name) == 0) us += op.self_us;
    }
    return us;
  };
  std::set<std::string> listed = shown;
  if (peer != nullptr) {
    for (int i = 0; i < top && i < static_cast<int>(peer->ops.size()); ++i) {
      listed.insert(peer->ops[i].name);
    }
  }
  const OpTime lethe_rest{"", rest(lethe, listed), 0};
  const OpTime lethe_outside{"", lethe.step_us - lethe.in_ops_us, 0};
  const OpTime peer_rest{"", peer ? rest(*peer, listed) : 0, 0};
  const OpTime peer_outside{"", peer ? peer->step_us - peer->in_ops_us : 0, 0};
  print("(every other operator)", &lethe_rest, peer ? &peer_rest : nullptr);
  print("(outside any operator: C++ / Python code between ops)", &lethe_outside,
        peer ? &peer_outside : nullptr);
}

absl::Status Run() {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  const int threads = absl::GetFlag(FLAGS_threads);
  at::set_num_threads(threads);
  const bool with_peer = !absl::GetFlag(FLAGS_python).empty();
  const int top = absl::GetFlag(FLAGS_profile_top);
  std::string work_dir = absl::GetFlag(FLAGS_work_dir);
  const bool own_work_dir = work_dir.empty();
  if (own_work_dir) {
    std::string pattern = "/tmp/lethe_unlearning_step_XXXXXX";
    if (mkdtemp(pattern.data()) == nullptr) {
      return absl::InternalError("cannot create a directory under /tmp");
    }
    work_dir = pattern;
  }
  std::printf(
      "NPO_RT unlearning step, Lethe (RunUnlearning) vs PyTorch %s eager "
      "(%s), same LibTorch, %d threads each; %d forget + %d retain "
      "sequences, lr %.0e, loss_chunk_tokens %lld\n",
      TORCH_VERSION, with_peer ? PeerScript().c_str() : "no peer", threads,
      absl::GetFlag(FLAGS_batch), absl::GetFlag(FLAGS_batch),
      absl::GetFlag(FLAGS_learning_rate),
      static_cast<long long>(absl::GetFlag(FLAGS_loss_chunk_tokens)));
  std::vector<Row> rows;
  std::vector<std::string> checks;
  const std::vector<std::string> names =
      absl::StrSplit(absl::GetFlag(FLAGS_cases), ',', absl::SkipEmpty());
  for (const std::string& name : names) {
    absl::StatusOr<Case> made = MakeCase(name);
    if (absl::IsNotFound(made.status())) {
      std::printf("\n%s: skipped: %s\n", name.c_str(),
                  std::string(made.status().message()).c_str());
      continue;
    }
    RETURN_IF_ERROR(made.status());
    Case& c = *made;
    const QaBatch forget = CollateAll(c.forget, c.pad_id);
    const QaBatch retain = CollateAll(c.retain, c.pad_id);
    Row row{.name = name,
            .parameters_m = c.model->NumParameters() / 1e6,
            .shape = absl::StrFormat(
                "%lldx%lld+%lldx%lld", forget.input_ids.size(0),
                forget.input_ids.size(1), retain.input_ids.size(0),
                retain.input_ids.size(1)),
            .tokens = RealTokens(c.forget) + RealTokens(c.retain),
            .answer_tokens = AnswerTokens(c.forget) + AnswerTokens(c.retain)};
    std::printf(
        "\n%s: %s; %.1fM parameters; %lld tokens/step (%lld with padding), "
        "%lld answer tokens; %d warm-up + %d timed steps\n",
        name.c_str(), c.description.c_str(), row.parameters_m,
        static_cast<long long>(row.tokens),
        static_cast<long long>(forget.input_ids.numel() +
                               retain.input_ids.numel()),
        static_cast<long long>(row.answer_tokens), c.warmup_steps,
        c.timed_steps);
    const std::string dir = work_dir + "/" + name;
    std::filesystem::create_directories(dir);
    if (with_peer) RETURN_IF_ERROR(WritePeerInputs(c, dir));
    // Rounds alternate the two sides, so that load from other processes
    // on a shared machine falls on both; the first round has the profile.
    std::vector<int64_t> pack_row_lengths;
    for (absl::string_view value : absl::StrSplit(
             absl::GetFlag(FLAGS_pack_row_lengths), ',', absl::SkipEmpty())) {
      int64_t length = 0;
      if (!absl::SimpleAtoi(value, &length) || length < 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("bad --pack_row_lengths entry '", value, "'"));
      }
      pack_row_lengths.push_back(length);
    }
    if (pack_row_lengths.empty()) pack_row_lengths.push_back(0);
    // Every Lethe run starts from the case's initial weights (the peer's).
    std::vector<at::Tensor> initial;
    for (const at::Tensor& parameter : c.model->parameters()) {
      initial.push_back(parameter.detach().clone());
    }
    auto restore = [&] {
      torch::NoGradGuard no_grad;
      const std::vector<at::Tensor> parameters = c.model->parameters();
      for (size_t i = 0; i < parameters.size(); ++i) {
        parameters[i].copy_(initial[i]);
      }
    };
    const size_t variants = pack_row_lengths.size();
    std::vector<SideResult> lethe(variants);
    std::vector<std::vector<double>> lethe_timed(variants);
    SideResult peer;
    std::vector<double> peer_timed;
    auto keep_timed = [&](const SideResult& side, std::vector<double>& timed,
                          const char* label, int round) {
      timed.insert(timed.end(), side.seconds.begin() + c.warmup_steps,
                   side.seconds.end());
      std::printf("  round %d %-8s step seconds:", round + 1, label);
      for (double seconds : side.seconds) std::printf(" %.3f", seconds);
      std::printf("\n");
    };
    for (int round = 0; round < absl::GetFlag(FLAGS_rounds); ++round) {
      const int profile = round == 0 ? c.profile_steps : 0;
      for (size_t v = 0; v < variants; ++v) {
        restore();
        ASSIGN_OR_RETURN(SideResult lethe_round,
                         RunLethe(c, profile, pack_row_lengths[v]));
        const std::string label =
            pack_row_lengths[v] > 0
                ? absl::StrCat("Lethe/p", pack_row_lengths[v])
                : std::string("Lethe");
        keep_timed(lethe_round, lethe_timed[v], label.c_str(), round);
        if (round == 0) lethe[v] = std::move(lethe_round);
      }
      if (!with_peer) continue;
      ASSIGN_OR_RETURN(SideResult peer_round, RunPeer(c, dir, profile));
      keep_timed(peer_round, peer_timed, "PyTorch", round);
      if (round == 0) peer = std::move(peer_round);
    }
    row.peer = Summarize(peer_timed);
    std::vector<Row> case_rows;
    for (size_t v = 0; v < variants; ++v) {
      Row variant = row;
      variant.lethe = Summarize(lethe_timed[v]);
      if (pack_row_lengths[v] > 0) {
        variant.name = absl::StrCat(name, "/p", pack_row_lengths[v]);
        absl::StatusOr<PackedBatch> packed =
            PackQaBatches({&forget, &retain}, pack_row_lengths[v]);
        RETURN_IF_ERROR(packed.status());
        variant.shape =
            absl::StrFormat("%lldx%lld packed", packed->input_ids.size(0),
                            packed->input_ids.size(1));
      }
      case_rows.push_back(variant);
      if (with_peer) PrintLossCheck(variant.name, lethe[v], peer);
    }
    if (variants > 1 && !lethe[0].losses.empty()) {
      for (size_t v = 1; v < variants; ++v) {
        std::printf(
            "packed vs padded %s: step-1 loss rel %.1e, step-2 loss "
            "rel %.1e; best step %.2fx, median %.2fx faster\n",
            case_rows[v].name.c_str(),
            Relative(lethe[v].losses[0], lethe[0].losses[0]),
            lethe[v].losses.size() > 1
                ? Relative(lethe[v].losses[1], lethe[0].losses[1])
                : 0.0,
            case_rows[0].lethe.best / case_rows[v].lethe.best,
            case_rows[0].lethe.median / case_rows[v].lethe.median);
      }
    }
    PrintHeader();
    for (const Row& variant : case_rows) PrintRow(variant);
    if (top > 0) {
      for (size_t v = 0; v < variants; ++v) {
        std::printf("\n[%s]", case_rows[v].name.c_str());
        PrintProfile(name, c.profile_steps, lethe[v].profile,
                     with_peer ? &peer.profile : nullptr, top);
      }
    }
    rows.insert(rows.end(), case_rows.begin(), case_rows.end());
    c.model.reset();
  }
  std::printf(
      "\nsummary: seconds and tokens/s of the fastest timed step of each "
      "side (ratio median: of the median steps); tokens = the non-padding "
      "tokens of the forget and retain forward passes, answer = those that "
      "carry a loss\n");
  PrintHeader();
  for (const Row& row : rows) PrintRow(row);
  if (own_work_dir) {
    std::error_code error;
    std::filesystem::remove_all(work_dir, error);
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace lethe

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const absl::Status status = lethe::Run();
  if (!status.ok()) {
    std::fprintf(stderr, "unlearning_step_throughput: %s\n",
                 status.ToString().c_str());
    return 1;
  }
  return 0;
}
