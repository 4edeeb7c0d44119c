#include "libs/eval/tofu_evaluator.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <tuple>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "libs/eval/answer_scoring.h"
#include "libs/eval/eval_share_format.h"
#include "libs/eval/scoped_eval_mode.h"
#include "libs/eval/tofu_eval_examples.h"
#include "libs/eval/tofu_eval_metrics.h"
#include "libs/eval/tofu_summary.h"
#include "libs/files/file_io.h"
#include "libs/model/generation.h"
#include "libs/status/status_macros.h"
#include "libs/status/torch_status.h"

namespace lethe {
namespace {

using Json = nlohmann::ordered_json;

absl::Status CheckOptions(const TofuEvalOptions& options) {
  if (options.batch_size < 1) {
    return absl::InvalidArgumentError("the batch size must be at least 1");
  }
  if (options.max_new_tokens < 0) {
    return absl::InvalidArgumentError("max_new_tokens must not be negative");
  }
  if (!(options.min_k_fraction > 0 && options.min_k_fraction <= 1)) {
    return absl::InvalidArgumentError("min_k_fraction must be in (0, 1]");
  }
  const TofuEvalSharding& sharding = options.sharding;
  if (sharding.world_size < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "sharding.world_size must be at least 1, got ", sharding.world_size));
  }
  if (sharding.rank < 0 || sharding.rank >= sharding.world_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("sharding.rank ", sharding.rank, " is outside [0, ",
                     sharding.world_size, ")"));
  }
  if (sharding.world_size > 1 && !sharding.all_gather) {
    return absl::InvalidArgumentError(
        "sharding.all_gather must be set when sharding.world_size > 1");
  }
  return absl::OkStatus();
}

using Statistic =
    std::function<absl::StatusOr<double>(const AnswerScore&, size_t)>;

// The steps of one evaluation, which share its inputs and progress lines.
class EvalRun {
 public:
  EvalRun(LlamaForCausalLM& model, const Tokenizer& tokenizer,
          const TofuEvalOptions& options)
      : model_(model),
        tokenizer_(tokenizer),
        options_(options),
        sharding_(options.sharding),
        pad_id_(tokenizer.pad_id() >= 0 ? tokenizer.pad_id()
                                        : tokenizer.eos_id()),
        start_(std::chrono::steady_clock::now()) {}

  // The expensive part, on this rank's share of the examples and prompts.
  absl::StatusOr<EvalValues> ComputeShare(
      const TofuEvalExamples& examples,
      const std::vector<std::vector<int64_t>>& prompts,
      const EvalValueCounts& counts);
  // Every rank's values, from this rank's.
  absl::StatusOr<EvalValues> Gather(EvalValues mine,
                                    const EvalValueCounts& counts);
  // The mia_* attacks: forget questions are members, holdout ones not.
  absl::Status AddMiaMetrics(const TofuEvalExamples& examples,
                             const EvalValues& values,
                             std::map<std::string, Json>& metrics) const;
  absl::Status AddRougeMetrics(
      const RougePrompts& rouge,
      const std::vector<std::vector<int64_t>>& generations,
      std::map<std::string, Json>& metrics) const;
  void Progress(const std::string& line) const;

 private:
  absl::StatusOr<std::vector<std::vector<int64_t>>> Generate(
      const std::vector<std::vector<int64_t>>& prompts);
  // `total`, or this rank's share of it.
  std::string HowMany(size_t total) const;

  LlamaForCausalLM& model_;
  const Tokenizer& tokenizer_;
  const TofuEvalOptions& options_;
  const TofuEvalSharding& sharding_;
  const int pad_id_;
  const std::chrono::steady_clock::time_point start_;
};

void EvalRun::Progress(const std::string& line) const {
  if (!options_.progress) return;
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_)
          .count();
  options_.progress(absl::StrFormat("[%6.1fs] %s", seconds, line));
}

std::string EvalRun::HowMany(size_t total) const {
  if (sharding_.world_size == 1) return absl::StrCat(total);
  return absl::StrCat(ShareSize(total, sharding_.rank, sharding_.world_size),
                      " (this rank's share of ", total, ")");
}

absl::StatusOr<EvalValues> EvalRun::ComputeShare(
    const TofuEvalExamples& examples,
    const std::vector<std::vector<int64_t>>& prompts,
    const EvalValueCounts& counts) {
  const int rank = sharding_.rank, world_size = sharding_.world_size;
  const std::vector<QaExample> detailed_share =
      TakeShare(examples.detailed, rank, world_size);
  EvalValues mine;
  Progress(absl::StrCat("scoring ", HowMany(counts.detailed),
                        " forget and holdout answers token by token"));
  ASSIGN_OR_RETURN(mine.detailed,
                   ScoreExamples(model_, detailed_share, pad_id_,
                                 options_.batch_size, /*detailed=*/true));
  Progress(absl::StrCat("scoring ", HowMany(counts.scores),
                        " paraphrased, perturbed and other answers"));
  ASSIGN_OR_RETURN(
      mine.scores,
      ScoreExamples(model_, TakeShare(examples.others, rank, world_size),
                    pad_id_, options_.batch_size, /*detailed=*/false));
  Progress(absl::StrCat("mia_gradnorm: one backward pass per question (",
                        HowMany(counts.detailed), ")"));
  ASSIGN_OR_RETURN(mine.gradient_norms, GradientNorms(model_, detailed_share));
  if (options_.reference_model != nullptr) {
    Progress(absl::StrCat("mia_reference: scoring ", HowMany(counts.reference),
                          " answers with the reference model"));
    LlamaForCausalLM& reference = *options_.reference_model;
    const bool reference_training = reference.is_training();
    reference.eval();
    absl::StatusOr<std::vector<AnswerScore>> reference_scores =
        ScoreExamples(reference, detailed_share, pad_id_, options_.batch_size,
                      /*detailed=*/false);
    reference.train(reference_training);
    if (!reference_scores.ok()) return reference_scores.status();
    mine.reference = *std::move(reference_scores);
  }
  Progress(absl::StrCat("generating ", HowMany(counts.generations),
                        " answers (",
                        options_.batched_generation
                            ? absl::StrCat("batches of ", options_.batch_size)
                            : std::string("one at a time"),
                        ", up to ", options_.max_new_tokens, " tokens)"));
  ASSIGN_OR_RETURN(mine.generations,
                   Generate(TakeShare(prompts, rank, world_size)));
  return mine;
}

absl::StatusOr<std::vector<std::vector<int64_t>>> EvalRun::Generate(
    const std::vector<std::vector<int64_t>>& prompts) {
  const std::vector<int64_t>& stop_ids = model_.config().eos_token_ids;
  if (options_.batched_generation) {
    return GreedyGenerateBatch(model_, prompts, options_.max_new_tokens,
                               stop_ids, pad_id_, options_.batch_size);
  }
  std::vector<std::vector<int64_t>> generations;
  for (const std::vector<int64_t>& prompt : prompts) {
    ASSIGN_OR_RETURN(std::vector<int64_t> tokens, CallTorch("generation", [&] {
                       return GreedyGenerate(model_, prompt,
                                             options_.max_new_tokens, stop_ids);
                     }));
    generations.push_back(std::move(tokens));
  }
  return generations;
}

absl::StatusOr<EvalValues> EvalRun::Gather(EvalValues mine,
                                           const EvalValueCounts& counts) {
  if (sharding_.world_size == 1) return mine;
  Progress(
      absl::StrCat("gathering the shares of ", sharding_.world_size, " ranks"));
  return GatherShares(mine, counts, sharding_.world_size, sharding_.all_gather);
}

absl::Status EvalRun::AddMiaMetrics(
    const TofuEvalExamples& examples, const EvalValues& values,
    std::map<std::string, Json>& metrics) const {
  const std::vector<AnswerScore> forget_scores =
      examples.forget_qa.Single(values.detailed);
  const std::vector<AnswerScore> holdout_scores =
      examples.holdout_qa.Single(values.detailed);
  auto mia = [&](const std::string& name,
                 const Statistic& statistic) -> absl::Status {
    std::vector<double> forget, holdout;
    for (size_t i = 0; i < forget_scores.size(); ++i) {
      ASSIGN_OR_RETURN(double value, statistic(forget_scores[i],
                                               examples.forget_qa.rows[i][0]));
      forget.push_back(value);
    }
    for (size_t i = 0; i < holdout_scores.size(); ++i) {
      ASSIGN_OR_RETURN(double value, statistic(holdout_scores[i],
                                               examples.holdout_qa.rows[i][0]));
      holdout.push_back(value);
    }
    ASSIGN_OR_RETURN(metrics[name], MiaMetric(name, forget, holdout));
    return absl::OkStatus();
  };
  RETURN_IF_ERROR(mia("mia_loss", [](const AnswerScore& score, size_t) {
    return static_cast<double>(score.avg_loss);
  }));
  RETURN_IF_ERROR(mia(
      "mia_zlib",
      [&](const AnswerScore& score, size_t index) -> absl::StatusOr<double> {
        const QaExample& example = examples.detailed[index];
        std::vector<int> answer_ids;
        for (int label : example.labels) {
          if (label != kIgnoreIndex) answer_ids.push_back(label);
        }
        ASSIGN_OR_RETURN(std::string text, tokenizer_.Decode(answer_ids));
        ASSIGN_OR_RETURN(size_t compressed, ZlibCompressedSize(text));
        return static_cast<double>(score.avg_loss) / compressed;
      }));
  RETURN_IF_ERROR(mia("mia_min_k", [&](const AnswerScore& score, size_t) {
    return MinKScore(score.token_log_probs, options_.min_k_fraction);
  }));
  RETURN_IF_ERROR(
      mia("mia_min_k_plus_plus", [&](const AnswerScore& score, size_t) {
        return MinKScore(score.standardized_log_probs, options_.min_k_fraction);
      }));
  RETURN_IF_ERROR(mia("mia_gradnorm", [&](const AnswerScore&, size_t index) {
    return values.gradient_norms[index];
  }));
  if (options_.reference_model != nullptr) {
    RETURN_IF_ERROR(
        mia("mia_reference", [&](const AnswerScore& score, size_t index) {
          return static_cast<double>(score.avg_loss) -
                 static_cast<double>(values.reference[index].avg_loss);
        }));
  }
  return absl::OkStatus();
}

// exact_memorization, extraction_strength, and the probabilities and truth
// ratios of every set.
void AddScoreMetrics(const TofuEvalExamples& examples, const EvalValues& values,
                     std::map<std::string, Json>& metrics) {
  const std::vector<AnswerScore>& scores = values.scores;
  const std::vector<AnswerScore> forget_scores =
      examples.forget_qa.Single(values.detailed);
  std::vector<std::optional<double>> exact_memorization;
  std::vector<std::optional<double>> extraction_strength;
  for (const AnswerScore& score : forget_scores) {
    exact_memorization.push_back(score.exact_memorization);
    extraction_strength.push_back(score.extraction_strength);
  }
  metrics["exact_memorization"] = ScoreMetric(exact_memorization);
  metrics["extraction_strength"] = ScoreMetric(extraction_strength);

  const AnswerRows& forget_para = examples.forget_para;
  const AnswerRows& forget_pert = examples.forget_pert;
  metrics["forget_Q_A_Prob"] = ProbabilityMetric(forget_scores);
  metrics["forget_Q_A_PARA_Prob"] =
      ProbabilityMetric(forget_para.Single(scores));
  metrics["forget_Q_A_PERT_Prob"] =
      MultiProbabilityMetric(forget_pert.Multi(scores));
  metrics["forget_truth_ratio"] =
      TruthRatioMetric(forget_para.Single(scores), forget_pert.Multi(scores),
                       TruthRatioAggregate::kCloserToOne);
  const AnswerRows& retain_para = examples.retain_para;
  const AnswerRows& retain_pert = examples.retain_pert;
  metrics["retain_Q_A_Prob"] =
      ProbabilityMetric(examples.retain_qa.Single(scores));
  metrics["retain_Q_A_PARA_Prob"] =
      ProbabilityMetric(retain_para.Single(scores));
  metrics["retain_Q_A_PERT_Prob"] =
      MultiProbabilityMetric(retain_pert.Multi(scores));
  metrics["retain_Truth_Ratio"] =
      TruthRatioMetric(retain_para.Single(scores), retain_pert.Multi(scores),
                       TruthRatioAggregate::kOneMinus);
  for (const auto& [prefix, qa, pert] :
       {std::make_tuple("ra", &examples.ra_qa, &examples.ra_pert),
        std::make_tuple("wf", &examples.wf_qa, &examples.wf_pert)}) {
    const std::string name = prefix;
    metrics[name + "_Q_A_Prob"] = ProbabilityMetric(qa->Single(scores));
    metrics[name + "_Q_A_PERT_Prob"] =
        MultiProbabilityMetric(pert->Multi(scores));
    metrics[name + "_Q_A_Prob_normalised"] =
        NormalisedProbabilityMetric(qa->Single(scores), pert->Multi(scores));
    metrics[name + "_Truth_Ratio"] =
        TruthRatioMetric(qa->Single(scores), pert->Multi(scores),
                         TruthRatioAggregate::kOneMinus);
  }
}

absl::Status EvalRun::AddRougeMetrics(
    const RougePrompts& rouge,
    const std::vector<std::vector<int64_t>>& generations,
    std::map<std::string, Json>& metrics) const {
  const std::vector<int64_t>& stop_ids = model_.config().eos_token_ids;
  size_t question = 0;
  for (const RougePrompts::Set& set : rouge.sets) {
    std::vector<RougeSample> samples;
    for (size_t i = 0; i < set.questions; ++i, ++question) {
      std::vector<int> tokens(generations[question].begin(),
                              generations[question].end());
      if (!tokens.empty() && std::find(stop_ids.begin(), stop_ids.end(),
                                       tokens.back()) != stop_ids.end()) {
        tokens.pop_back();
      }
      ASSIGN_OR_RETURN(std::string generation,
                       DecodeForRouge(tokenizer_, tokens));
      samples.push_back({rouge.inputs[question], rouge.ground_truths[question],
                         std::string(absl::StripAsciiWhitespace(generation))});
    }
    metrics[set.metric] = RougeMetric(samples);
  }
  return absl::OkStatus();
}

// TOFU_EVAL.json from the per-question metrics, with the summary's
// forget_quality, model_utility and privleak, and TOFU_SUMMARY.json.
absl::StatusOr<TofuEvalResult> AssembleResult(
    std::map<std::string, Json> metrics, const Json* retain_log) {
  for (const char* name : {"forget_quality", "model_utility", "privleak"}) {
    metrics[name] = Json{{"agg_value", nullptr}};
  }
  TofuEvalResult result;
  for (auto& [name, metric] : metrics) {
    result.eval_log[name] = std::move(metric);
  }
  ASSIGN_OR_RETURN(result.summary,
                   SummarizeTofuEval(result.eval_log, retain_log));
  for (const char* name : {"forget_quality", "model_utility", "privleak"}) {
    if (result.summary.contains(name)) {
      result.eval_log[name]["agg_value"] = result.summary[name];
    }
  }
  return result;
}

}  // namespace

TofuEvaluator::TofuEvaluator(LlamaForCausalLM& model,
                             const Tokenizer& tokenizer,
                             PromptTemplate prompt_template,
                             TofuEvalOptions options)
    : model_(model),
      tokenizer_(tokenizer),
      prompt_template_(std::move(prompt_template)),
      options_(std::move(options)) {}

absl::StatusOr<TofuEvalResult> TofuEvaluator::Evaluate(
    const TofuEvalData& data, const nlohmann::ordered_json* retain_log) {
  RETURN_IF_ERROR(CheckOptions(options_));
  EvalRun run(model_, tokenizer_, options_);
  ASSIGN_OR_RETURN(const TofuEvalExamples examples,
                   TokenizeEvalExamples(tokenizer_, prompt_template_, data,
                                        options_.max_length));
  ASSIGN_OR_RETURN(const RougePrompts rouge,
                   TokenizeRougePrompts(tokenizer_, prompt_template_, data,
                                        options_.max_length));

  const ScopedEvalMode eval_mode(model_);
  const EvalValueCounts counts{.detailed = examples.detailed.size(),
                               .scores = examples.others.size(),
                               .reference = options_.reference_model != nullptr
                                                ? examples.detailed.size()
                                                : 0,
                               .generations = rouge.prompts.size()};
  ASSIGN_OR_RETURN(EvalValues mine,
                   run.ComputeShare(examples, rouge.prompts, counts));

  // Everything from here on runs on the whole evaluation's values.
  ASSIGN_OR_RETURN(const EvalValues values,
                   run.Gather(std::move(mine), counts));
  std::map<std::string, Json> metrics;
  RETURN_IF_ERROR(run.AddMiaMetrics(examples, values, metrics));
  AddScoreMetrics(examples, values, metrics);
  RETURN_IF_ERROR(run.AddRougeMetrics(rouge, values.generations, metrics));
  ASSIGN_OR_RETURN(TofuEvalResult result,
                   AssembleResult(std::move(metrics), retain_log));
  run.Progress("evaluation done");
  return result;
}

absl::Status WriteTofuEvalFiles(const TofuEvalResult& result,
                                const std::string& dir) {
  std::error_code error;
  std::filesystem::create_directories(dir, error);
  if (error) {
    return absl::PermissionDeniedError(
        absl::StrCat(dir, ": cannot create: ", error.message()));
  }
  auto dump = [](const auto& json) {
    return json.dump(4, ' ', /*ensure_ascii=*/true,
                     nlohmann::json::error_handler_t::replace);
  };
  RETURN_IF_ERROR(
      WriteFileAtomically(dir + "/TOFU_EVAL.json", dump(result.eval_log)));
  return WriteFileAtomically(dir + "/TOFU_SUMMARY.json", dump(result.summary));
}

}  // namespace lethe
