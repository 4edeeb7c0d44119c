// TOFU evaluation throughput on the embedded benchmark: questions/s of the
// greedy generations behind the ROUGE metrics (forget, retain, real-author
// and world-fact questions, up to 200 new tokens) batched with a KV cache
// against one question at a time, and of the whole evaluation
// (libs/eval/tofu_evaluator.h) either way, with the ratios.
//
//   lethe prepare-benchmark --cache_dir=.lethe/benchmark
//   bazel run -c opt //benchmarks:eval_throughput --
//       --cache_dir=$PWD/.lethe/benchmark --threads=2
//
// It also counts the questions whose batched generation differs from the
// one-at-a-time one (floating-point rounding may flip a near-tied argmax).
#include <torch/types.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/status/status.h"
#include "libs/data/qa_example.h"
#include "libs/eval/tofu_evaluator.h"
#include "libs/model/generation.h"
#include "libs/model/hf_checkpoint.h"
#include "libs/model/llama_model.h"
#include "libs/status/status_macros.h"
#include "libs/status/torch_status.h"
#include "libs/tokenizer/tokenizer.h"

ABSL_FLAG(std::string, cache_dir, ".lethe/benchmark",
          "the prepared embedded benchmark (lethe prepare-benchmark)");
ABSL_FLAG(std::string, model, "",
          "model directory (default: the benchmark's target model)");
ABSL_FLAG(std::string, forget_split, "forget10", "forget split to evaluate");
ABSL_FLAG(int, threads, 2, "intra-op threads");
ABSL_FLAG(int, batch_size, 32, "questions per batch");
ABSL_FLAG(int, max_new_tokens, 200, "generation limit");

namespace lethe {
namespace {

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
      .count();
}

absl::Status Run() {
  at::set_num_threads(absl::GetFlag(FLAGS_threads));
  const std::string cache = absl::GetFlag(FLAGS_cache_dir);
  const std::string model_dir = absl::GetFlag(FLAGS_model).empty()
                                    ? cache + "/target"
                                    : absl::GetFlag(FLAGS_model);
  const int batch_size = absl::GetFlag(FLAGS_batch_size);
  const int max_new_tokens = absl::GetFlag(FLAGS_max_new_tokens);
  ASSIGN_OR_RETURN(
      TofuEvalData data,
      ReadTofuEvalData(cache + "/data", absl::GetFlag(FLAGS_forget_split)));
  ASSIGN_OR_RETURN(std::unique_ptr<Tokenizer> tokenizer,
                   Tokenizer::Load(model_dir + "/tokenizer.model"));
  ASSIGN_OR_RETURN(std::shared_ptr<LlamaForCausalLM> model,
                   LoadLlamaCheckpoint(model_dir));
  model->eval();
  ASSIGN_OR_RETURN(PromptTemplate prompt_template,
                   PromptTemplateByName("plain"));

  std::vector<std::vector<int64_t>> prompts;
  for (const auto* set :
       {&data.forget, &data.retain, &data.real_authors, &data.world_facts}) {
    for (const TofuRecord& record : *set) {
      ASSIGN_OR_RETURN(
          std::vector<int> prompt,
          TokenizePrompt(*tokenizer, prompt_template, record.question, 512));
      prompts.emplace_back(prompt.begin(), prompt.end());
    }
  }
  const std::vector<int64_t>& stop_ids = model->config().eos_token_ids;
  const int64_t pad_id = tokenizer->eos_id();
  std::printf("model %s (%.2fM parameters), %zu questions, %d threads\n",
              model_dir.c_str(), model->NumParameters() / 1e6, prompts.size(),
              absl::GetFlag(FLAGS_threads));

  // Warm-up, so that neither side pays for first-call allocations.
  RETURN_IF_ERROR(
      GreedyGenerateBatch(*model, {prompts[0]}, 4, stop_ids, pad_id, batch_size)
          .status());

  auto start = std::chrono::steady_clock::now();
  ASSIGN_OR_RETURN(std::vector<std::vector<int64_t>> batched,
                   GreedyGenerateBatch(*model, prompts, max_new_tokens,
                                       stop_ids, pad_id, batch_size));
  const double batched_seconds = SecondsSince(start);
  start = std::chrono::steady_clock::now();
  std::vector<std::vector<int64_t>> single;
  for (const std::vector<int64_t>& prompt : prompts) {
    ASSIGN_OR_RETURN(std::vector<int64_t> tokens, CallTorch("generation", [&] {
                       return GreedyGenerate(*model, prompt, max_new_tokens,
                                             stop_ids);
                     }));
    single.push_back(std::move(tokens));
  }
  const double single_seconds = SecondsSince(start);
  int64_t tokens = 0;
  int differing = 0;
  for (size_t i = 0; i < prompts.size(); ++i) {
    tokens += static_cast<int64_t>(batched[i].size());
    if (batched[i] != single[i]) ++differing;
  }
  const double n = static_cast<double>(prompts.size());
  std::printf(
      "generation (%lld new tokens, %d of %zu answers differ):\n"
      "  batched (%d per batch)  %7.2f s  %8.1f questions/s\n"
      "  one at a time           %7.2f s  %8.1f questions/s\n"
      "  speed-up                %7.2fx\n",
      static_cast<long long>(tokens), differing, prompts.size(), batch_size,
      batched_seconds, n / batched_seconds, single_seconds, n / single_seconds,
      single_seconds / batched_seconds);

  // The whole evaluation; its questions are the forget, holdout, retain,
  // real-author and world-fact ones.
  const double questions = static_cast<double>(
      data.forget.size() + data.holdout.size() + data.retain.size() +
      data.real_authors.size() + data.world_facts.size());
  double eval_seconds[2];
  for (bool batched_generation : {true, false}) {
    TofuEvaluator evaluator(*model, *tokenizer, prompt_template,
                            {.batch_size = batch_size,
                             .max_new_tokens = max_new_tokens,
                             .batched_generation = batched_generation});
    start = std::chrono::steady_clock::now();
    RETURN_IF_ERROR(evaluator.Evaluate(data, nullptr).status());
    eval_seconds[batched_generation ? 0 : 1] = SecondsSince(start);
  }
  std::printf(
      "whole TOFU evaluation (%.0f questions, every metric):\n"
      "  batched generation      %7.2f s  %8.1f questions/s\n"
      "  one at a time           %7.2f s  %8.1f questions/s\n"
      "  speed-up                %7.2fx\n",
      questions, eval_seconds[0], questions / eval_seconds[0], eval_seconds[1],
      questions / eval_seconds[1], eval_seconds[1] / eval_seconds[0]);
  return absl::OkStatus();
}

}  // namespace
}  // namespace lethe

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const absl::Status status = lethe::Run();
  if (!status.ok()) {
    std::fprintf(stderr, "eval_throughput: %s\n",
                 std::string(status.message()).c_str());
    return 1;
  }
  return 0;
}
