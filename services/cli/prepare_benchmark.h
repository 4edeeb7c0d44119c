// `lethe prepare-benchmark`: TOFU's protocol in miniature, cached on disk.
//
//   1. generate the embedded mini-TOFU data (libs/data/mini_tofu.h);
//   2. train a SentencePiece tokenizer on all of its text (in the separate
//      lethe-train-tokenizer program);
//   3. train a small base Llama model on the general-knowledge sets (world
//      facts, famous authors);
//   4. fine-tune the base on `full` -> the target model;
//   5. fine-tune the base on `retain90` -> the retain model, the reference
//      forget quality is measured against;
//   6. run the TOFU evaluation on forget10 (libs/eval/tofu_evaluator.h):
//      retain/TOFU_EVAL.json (the retain log unlearning runs are compared
//      with) and target/TOFU_EVAL.json (the baseline, against the retain
//      log), each with its TOFU_SUMMARY.json.
// The general-knowledge sets are replayed in steps 4 and 5 so that the small
// models keep them (a large pretrained model would not lose them).
//
// Everything is deterministic for the options given. The result lands in
// `cache_dir` atomically (built in `<cache_dir>.partial`, then renamed), and
// a second run with the same options reuses it.
#ifndef LETHE_SERVICES_CLI_PREPARE_BENCHMARK_H_
#define LETHE_SERVICES_CLI_PREPARE_BENCHMARK_H_

#include <cstdint>
#include <functional>
#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "libs/model/llama_config.h"

namespace lethe {

struct BenchmarkOptions {
  std::string cache_dir = ".lethe/benchmark";
  int num_authors = 100;
  uint64_t seed = 1;
  int threads = 2;
  // Epochs over the fine-tuning sets (full or retain90, plus replay).
  int finetune_epochs = 12;
  int base_epochs = 22;
  double learning_rate = 2e-3;
  int vocab_size = 1024;
  // The lethe-train-tokenizer program.
  std::string tokenizer_trainer;
};

struct PreparedBenchmark {
  std::string data_dir;
  std::string base_dir;
  std::string target_dir;
  std::string retain_dir;
  bool reused = false;
  // "target/forget10" -> mean answer probability, etc.
  std::map<std::string, double> probabilities;
  // "target/forget_quality", "retain/model_utility", ... from the models'
  // TOFU_SUMMARY.json.
  std::map<std::string, double> tofu_summary;
  double seconds = 0;
};

absl::StatusOr<PreparedBenchmark> PrepareBenchmark(
    const BenchmarkOptions& options,
    const std::function<void(const std::string&)>& log);

}  // namespace lethe

#endif  // LETHE_SERVICES_CLI_PREPARE_BENCHMARK_H_
