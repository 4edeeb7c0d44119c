#include "services/cli/prepare_benchmark.h"

#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "libs/data/mini_tofu.h"
#include "libs/data/qa_example.h"
#include "libs/data/tofu_dataset.h"
#include "libs/eval/answer_probability.h"
#include "libs/eval/tofu_evaluator.h"
#include "libs/files/file_io.h"
#include "libs/model/hf_checkpoint.h"
#include "libs/model/llama_model.h"
#include "libs/status/status_macros.h"
#include "libs/status/torch_status.h"
#include "libs/subprocess/subprocess.h"
#include "libs/tokenizer/tokenizer.h"
#include "libs/unlearn/trainer.h"
#include "nlohmann/json.hpp"

namespace lethe {
namespace {

constexpr char kManifest[] = "benchmark.json";
constexpr int kMaxLength = 128;
constexpr char kTemplate[] = "plain";
// Fine-tuning batches group similar lengths within windows of this many
// batches: a third less padding, with the models' answers as good as without
// (README, performance).
constexpr int kLengthWindowBatches = 8;
// The split whose TOFU evaluation logs the target and retain models get.
constexpr char kForgetSplit[] = "forget10";
// The summary figures kept in the manifest.
constexpr const char* kSummaryKeys[] = {"forget_quality", "model_utility",
                                        "forget_Q_A_Prob", "forget_Q_A_ROUGE"};

nlohmann::json OptionsJson(const BenchmarkOptions& options) {
  return {{"num_authors", options.num_authors},
          {"seed", options.seed},
          {"finetune_epochs", options.finetune_epochs},
          {"base_epochs", options.base_epochs},
          {"learning_rate", options.learning_rate},
          {"vocab_size", options.vocab_size},
          {"template", kTemplate},
          {"max_length", kMaxLength},
          {"length_window_batches", kLengthWindowBatches},
          {"format", 3}};
}

double Elapsed(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
      .count();
}

// Every sentence of the benchmark, one per line, for tokenizer training.
absl::Status WriteCorpus(const MiniTofu& data, const std::string& path) {
  const PromptTemplate plain = *PromptTemplateByName(kTemplate);
  std::set<std::string> lines = {plain.user_start_tag + plain.asst_start_tag};
  for (const auto& [split, records] : data.splits) {
    for (const TofuRecord& record : records) {
      lines.insert(record.question);
      lines.insert(record.answer);
      if (record.paraphrased_question)
        lines.insert(*record.paraphrased_question);
      if (record.paraphrased_answer) lines.insert(*record.paraphrased_answer);
      lines.insert(record.perturbed_answers.begin(),
                   record.perturbed_answers.end());
      lines.insert(record.options.begin(), record.options.end());
    }
  }
  std::ofstream out(path);
  for (const std::string& line : lines) out << line << "\n";
  if (!out.flush()) {
    return absl::PermissionDeniedError(absl::StrCat(path, ": cannot write"));
  }
  return absl::OkStatus();
}

absl::Status CopyFile(const std::string& from, const std::string& to) {
  std::error_code error;
  std::filesystem::copy_file(
      from, to, std::filesystem::copy_options::overwrite_existing, error);
  if (error) {
    return absl::PermissionDeniedError(
        absl::StrCat("copying ", from, " to ", to, ": ", error.message()));
  }
  return absl::OkStatus();
}

std::vector<TofuRecord> Concatenate(
    const std::vector<const std::vector<TofuRecord>*>& parts) {
  std::vector<TofuRecord> all;
  for (const auto* part : parts)
    all.insert(all.end(), part->begin(), part->end());
  return all;
}

// TOFU evaluation of `model` on `eval_data` (kForgetSplit's sets) into
// <partial>/<name>. The retain model's log (the reference forget quality is
// measured against) is null when evaluating the retain model itself.
absl::StatusOr<TofuEvalResult> EvaluateOnForgetSplit(
    LlamaForCausalLM& model, const Tokenizer& tokenizer,
    const PromptTemplate& prompt_template, const TofuEvalData& eval_data,
    const std::string& partial, const std::string& name,
    const nlohmann::ordered_json* retain_log,
    const std::function<void(const std::string&)>& log) {
  log(absl::StrCat("TOFU evaluation of the ", name, " model on ",
                   kForgetSplit));
  TofuEvaluator evaluator(
      model, tokenizer, prompt_template,
      {.progress = [&](const std::string& line) { log("  " + line); }});
  ASSIGN_OR_RETURN(TofuEvalResult result,
                   evaluator.Evaluate(eval_data, retain_log));
  RETURN_IF_ERROR(WriteTofuEvalFiles(result, partial + "/" + name));
  return result;
}

}  // namespace

absl::StatusOr<PreparedBenchmark> PrepareBenchmark(
    const BenchmarkOptions& options,
    const std::function<void(const std::string&)>& log) {
  const auto start = std::chrono::steady_clock::now();
  const std::string dir = options.cache_dir;
  PreparedBenchmark prepared;
  prepared.data_dir = dir + "/data";
  prepared.base_dir = dir + "/base";
  prepared.target_dir = dir + "/target";
  prepared.retain_dir = dir + "/retain";

  const nlohmann::json wanted = OptionsJson(options);
  {
    absl::StatusOr<std::string> manifest =
        ReadFileToString(dir + "/" + kManifest);
    if (manifest.ok()) {
      const nlohmann::json cached =
          nlohmann::json::parse(*manifest, nullptr, false);
      if (!cached.is_discarded() &&
          cached.value("options", nlohmann::json()) == wanted) {
        prepared.reused = true;
        for (const auto& [key, value] : cached["probabilities"].items()) {
          prepared.probabilities[key] = value.get<double>();
        }
        for (const auto& [key, value] : cached["tofu_summary"].items()) {
          prepared.tofu_summary[key] = value.get<double>();
        }
        log(absl::StrCat("reusing the prepared benchmark in ", dir));
        return prepared;
      }
      log(absl::StrCat(dir, " was prepared with other options; rebuilding"));
    }
  }
  if (options.tokenizer_trainer.empty()) {
    return absl::InvalidArgumentError(
        "the path of lethe-train-tokenizer is needed to prepare the benchmark");
  }

  const std::string partial = dir + ".partial";
  std::error_code error;
  std::filesystem::remove_all(partial, error);
  for (const char* sub : {"/data", "/base", "/target", "/retain"}) {
    std::filesystem::create_directories(partial + sub, error);
    if (error) {
      return absl::PermissionDeniedError(
          absl::StrCat(partial, sub, ": cannot create: ", error.message()));
    }
  }

  log(absl::StrCat("generating mini-TOFU: ", options.num_authors,
                   " authors, seed ", options.seed));
  const MiniTofu data = GenerateMiniTofu(
      {.num_authors = options.num_authors, .seed = options.seed});
  RETURN_IF_ERROR(WriteMiniTofu(data, partial + "/data"));

  log(absl::StrCat("training a ", options.vocab_size, "-piece tokenizer with ",
                   options.tokenizer_trainer));
  const std::string corpus = partial + "/tokenizer_corpus.txt";
  const std::string tokenizer_path = partial + "/base/tokenizer.model";
  RETURN_IF_ERROR(WriteCorpus(data, corpus));
  ASSIGN_OR_RETURN(
      Subprocess trainer,
      Subprocess::Start({options.tokenizer_trainer,
                         absl::StrCat("--corpus=", corpus),
                         absl::StrCat("--vocab_size=", options.vocab_size),
                         absl::StrCat("--threads=", options.threads),
                         absl::StrCat("--output=", tokenizer_path)}));
  ASSIGN_OR_RETURN(ExitStatus trained, trainer.Wait());
  if (!trained.success()) {
    return absl::InternalError(
        absl::StrCat("lethe-train-tokenizer ", trained.ToString()));
  }
  ASSIGN_OR_RETURN(std::unique_ptr<Tokenizer> tokenizer,
                   Tokenizer::Load(tokenizer_path));
  const PromptTemplate plain = *PromptTemplateByName(kTemplate);
  auto examples = [&](const std::vector<TofuRecord>& records) {
    return TokenizeRecords(*tokenizer, plain, records, kMaxLength);
  };
  const int pad_id = tokenizer->eos_id();
  const std::vector<TofuRecord>& world =
      data.splits.at("world_facts_perturbed");
  const std::vector<TofuRecord>& famous =
      data.splits.at("real_authors_perturbed");
  const std::vector<TofuRecord> general = Concatenate({&world, &famous});

  // Lines from the two fine-tuning threads must not interleave.
  absl::Mutex log_mu;
  auto log_line = [&](const std::string& line) {
    absl::MutexLock lock(&log_mu);
    log(line);
  };
  TrainingOptions training{.learning_rate = options.learning_rate,
                           .weight_decay = 0.01,
                           .warmup_epochs = 1.0,
                           .max_grad_norm = 1.0,
                           .per_device_batch_size = 16,
                           .seed = options.seed,
                           .threads = options.threads};
  auto train = [&](LlamaForCausalLM& model, const std::vector<QaExample>& set,
                   int epochs, int threads, bool group_lengths,
                   const std::string& name) -> absl::Status {
    TrainingOptions run = training;
    run.num_epochs = epochs;
    run.threads = threads;
    if (group_lengths) {
      run.example_lengths = ExampleLengths(set);
      run.length_window_batches = kLengthWindowBatches;
    }
    const auto phase_start = std::chrono::steady_clock::now();
    ASSIGN_OR_RETURN(
        TrainingSummary summary,
        FinetuneOnQa(
            model, set, pad_id, run, {.on_step = [&](const StepRecord& step) {
              if (step.step % 100 == 0) {
                log_line(absl::StrFormat("  %s step %d, epoch %d, loss %.4f",
                                         name, step.step, step.epoch,
                                         step.loss));
              }
              return absl::OkStatus();
            }}));
    log_line(absl::StrFormat(
        "%s: %d steps, %.0f tokens/s, final loss %.4f, %.0fs", name,
        summary.total_steps, summary.tokens / std::max(summary.seconds, 1e-9),
        summary.steps.back().loss, Elapsed(phase_start)));
    return absl::OkStatus();
  };

  torch::manual_seed(options.seed);
  LlamaForCausalLM base(MiniBenchmarkLlamaConfig(tokenizer->vocab_size()));
  log(absl::StrFormat("base model: %.2fM parameters",
                      base.NumParameters() / 1e6));
  ASSIGN_OR_RETURN(std::vector<QaExample> general_examples, examples(general));
  RETURN_IF_ERROR(train(base, general_examples, options.base_epochs,
                        options.threads, /*group_lengths=*/false, "base"));
  RETURN_IF_ERROR(SaveLlamaCheckpoint(base, partial + "/base", {}));

  // The target and the retain model are independent fine-tunes of the base.
  // With two or more threads they train side by side with half the threads
  // each: these small models keep one core busier than two (measured in the
  // README's performance section). The retain model's TOFU evaluation, which
  // the target's needs, runs in its thread as soon as it is trained.
  struct Finetuned {
    std::shared_ptr<LlamaForCausalLM> model;
    std::map<std::string, double> probabilities;
    std::optional<TofuEvalResult> evaluation;
  };
  ASSIGN_OR_RETURN(const TofuEvalData eval_data,
                   ReadTofuEvalData(partial + "/data", kForgetSplit));
  const bool side_by_side = options.threads >= 2;
  const int threads_each = side_by_side ? options.threads / 2 : options.threads;
  auto finetune = [&](const std::string& name, const std::string& split,
                      bool evaluate) -> absl::StatusOr<Finetuned> {
    Finetuned result;
    ASSIGN_OR_RETURN(result.model, LoadLlamaCheckpoint(partial + "/base"));
    ASSIGN_OR_RETURN(std::vector<QaExample> set,
                     examples(Concatenate({&data.splits.at(split), &general})));
    RETURN_IF_ERROR(train(*result.model, set, options.finetune_epochs,
                          threads_each,
                          /*group_lengths=*/true, name));
    RETURN_IF_ERROR(
        SaveLlamaCheckpoint(*result.model, partial + "/" + name, {}));
    RETURN_IF_ERROR(
        CopyFile(tokenizer_path, partial + "/" + name + "/tokenizer.model"));
    for (const char* probe :
         {"forget10", "retain_perturbed", "world_facts_perturbed",
          "real_authors_perturbed"}) {
      ASSIGN_OR_RETURN(std::vector<QaExample> probe_examples,
                       examples(data.splits.at(probe)));
      ASSIGN_OR_RETURN(std::vector<AnswerProbability> scores,
                       ScoreAnswers(*result.model, probe_examples, pad_id));
      result.probabilities[name + "/" + probe] = MeanProbability(scores);
      log_line(absl::StrFormat("  %s answers %s with mean probability %.3f",
                               name, probe, MeanProbability(scores)));
    }
    if (evaluate) {
      ASSIGN_OR_RETURN(
          result.evaluation,
          EvaluateOnForgetSplit(*result.model, *tokenizer, plain, eval_data,
                                partial, name, nullptr, log_line));
    }
    return result;
  };
  std::optional<absl::StatusOr<Finetuned>> retain_result;
  std::thread retain_thread;
  if (side_by_side) {
    retain_thread = std::thread(
        [&] { retain_result = finetune("retain", "retain90", true); });
  } else {
    retain_result = finetune("retain", "retain90", true);
  }
  absl::StatusOr<Finetuned> target = finetune("target", "full", false);
  if (retain_thread.joinable()) retain_thread.join();
  RETURN_IF_ERROR(retain_result->status());
  RETURN_IF_ERROR(target.status());
  Finetuned& retain = **retain_result;
  at::set_num_threads(options.threads);
  ASSIGN_OR_RETURN(target->evaluation,
                   EvaluateOnForgetSplit(
                       *target->model, *tokenizer, plain, eval_data, partial,
                       "target", &retain.evaluation->eval_log, log_line));
  for (Finetuned* finetuned : {&*target, &retain}) {
    prepared.probabilities.insert(finetuned->probabilities.begin(),
                                  finetuned->probabilities.end());
  }
  for (const auto& [name, result] :
       std::vector<std::pair<std::string, const TofuEvalResult*>>{
           {"target", &*target->evaluation}, {"retain", &*retain.evaluation}}) {
    for (const char* key : kSummaryKeys) {
      if (result->summary.contains(key)) {
        prepared.tofu_summary[name + "/" + key] =
            result->summary[key].get<double>();
      }
    }
  }

  nlohmann::json manifest = {
      {"options", wanted},
      {"model_config", nlohmann::json::parse(LlamaConfigToJson(
                           MiniBenchmarkLlamaConfig(tokenizer->vocab_size())))},
      {"probabilities", prepared.probabilities},
      {"tofu_summary", prepared.tofu_summary},
      {"seconds", Elapsed(start)}};
  RETURN_IF_ERROR(
      WriteFileAtomically(partial + "/" + kManifest, manifest.dump(2) + "\n"));
  // Replace an older preparation only once the new one is complete.
  if (std::filesystem::exists(dir + "/" + kManifest)) {
    std::filesystem::remove_all(dir, error);
  }
  std::filesystem::rename(partial, dir, error);
  if (error) {
    return absl::PermissionDeniedError(absl::StrCat(
        "cannot move ", partial, " to ", dir, ": ", error.message()));
  }
  prepared.seconds = Elapsed(start);
  return prepared;
}

}  // namespace lethe
