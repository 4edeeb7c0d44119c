#include "services/cli/eval_commands.h"

#include <torch/types.h>

#include <algorithm>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <system_error>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "libs/data/qa_example.h"
#include "libs/eval/memorization_signature.h"
#include "libs/eval/tofu_evaluator.h"
#include "libs/eval/tofu_summary.h"
#include "libs/files/file_io.h"
#include "libs/model/hf_checkpoint.h"
#include "libs/model/llama_model.h"
#include "libs/status/status_macros.h"
#include "libs/tokenizer/tokenizer.h"
#include "libs/unlearn/pga.h"
#include "nlohmann/json.hpp"

namespace lethe {
namespace {

// PGA's memorisation signature of `data.forget` against `data.holdout`,
// written to <output_dir>/MEMORIZATION_PROBE.json and summed up on `out`.
absl::Status WriteMemorizationProbe(const EvalCommand& command,
                                    const TofuEvalData& data,
                                    LlamaForCausalLM& model,
                                    const Tokenizer& tokenizer,
                                    const PromptTemplate& prompt_template,
                                    std::ostream& out) {
  // ReadTofuEvalData has checked the name: "forget" + digits.
  const std::string holdout_split =
      "holdout" + data.forget_split.substr(std::string("forget").size());
  ASSIGN_OR_RETURN(
      const MemorizationSignature signature,
      MeasureMemorizationSignature(
          model, tokenizer, prompt_template, data.forget, data.holdout,
          {.batch_size = command.batch_size,
           // Tokenized as the TOFU evaluation tokenizes them.
           .max_length = TofuEvalOptions().max_length}));
  const nlohmann::ordered_json probe = {
      {"forget_split", data.forget_split},
      {"holdout_split", holdout_split},
      {"pairs", signature.pairs},
      {"per_depth", signature.per_depth},
      {"max_accuracy", signature.max_accuracy},
      {"max_depth", signature.max_depth},
      {"chance", 0.5}};
  std::error_code error;
  std::filesystem::create_directories(command.output_dir, error);
  if (error) {
    return absl::PermissionDeniedError(
        absl::StrCat(command.output_dir, ": cannot create: ", error.message()));
  }
  const std::string path = command.output_dir + "/MEMORIZATION_PROBE.json";
  RETURN_IF_ERROR(WriteFileAtomically(path, probe.dump(4) + "\n"));
  out << absl::StrFormat(
             "memorization probe (%s vs %s, %d pairs): max leave-one-pair-out "
             "accuracy %.4f at depth %d of %d (chance 0.5); wrote %s",
             data.forget_split, holdout_split, signature.pairs,
             signature.max_accuracy, signature.max_depth,
             signature.per_depth.size() - 1, path)
      << std::endl;
  return absl::OkStatus();
}

}  // namespace

absl::Status RunEval(const EvalCommand& command, std::ostream& out) {
  for (const auto& [value, flag] :
       {std::make_pair(&command.model_dir, "--model"),
        std::make_pair(&command.data_dir, "--data"),
        std::make_pair(&command.output_dir, "--output")}) {
    if (value->empty()) {
      return absl::InvalidArgumentError(absl::StrCat(flag, " is required"));
    }
  }
  if (command.threads < 1) {
    return absl::InvalidArgumentError("--threads must be at least 1");
  }
  at::set_num_threads(command.threads);
  // Inputs first, so that a bad one fails before the model is loaded.
  ASSIGN_OR_RETURN(
      PromptTemplate prompt_template,
      PromptTemplateForModel(command.prompt_template, command.model_dir,
                             command.chat_args));
  ASSIGN_OR_RETURN(TofuEvalData data,
                   ReadTofuEvalData(command.data_dir, command.forget_split));
  const bool probe =
      command.memorization_probe || command.only_memorization_probe;
  if (probe && std::min(data.forget.size(), data.holdout.size()) < 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("--memorization_probe needs at least 2 pairs; ",
                     command.forget_split, " has ", data.forget.size(),
                     " records and its holdout split ", data.holdout.size()));
  }
  std::optional<nlohmann::ordered_json> retain_log;
  if (!command.retain_logs.empty() && !command.only_memorization_probe) {
    ASSIGN_OR_RETURN(retain_log, ReadTofuEvalLog(command.retain_logs));
    const auto truth_ratios = retain_log->find("forget_truth_ratio");
    if (truth_ratios == retain_log->end() || !truth_ratios->is_object() ||
        !truth_ratios->contains("value_by_index")) {
      return absl::InvalidArgumentError(absl::StrCat(
          command.retain_logs,
          ": no forget_truth_ratio.value_by_index (is it the retain model's "
          "TOFU_EVAL.json?)"));
    }
    const size_t retain_questions = (*truth_ratios)["value_by_index"].size();
    if (retain_questions != data.forget.size()) {
      out << "warning: " << command.retain_logs << " has " << retain_questions
          << " forget truth ratios, " << command.forget_split << " has "
          << data.forget.size()
          << " questions: forget_quality compares different forget sets"
          << std::endl;
    }
  }
  ASSIGN_OR_RETURN(std::unique_ptr<Tokenizer> tokenizer,
                   LoadModelTokenizer(command.model_dir));
  ASSIGN_OR_RETURN(const WeightsDtype weights_dtype,
                   ParseWeightsDtype(command.weights_dtype));
  ASSIGN_OR_RETURN(
      std::shared_ptr<LlamaForCausalLM> model,
      LoadLlamaCheckpoint(command.model_dir, {.weights_dtype = weights_dtype}));
  if (command.pga_projection) {
    ASSIGN_OR_RETURN(const bool projected, InstallSavedActivationProjection(
                                               *model, command.model_dir));
    if (projected) {
      out << "applying PGA's activation projection (" << command.model_dir
          << "/" << kPgaProjectionConfig << "; --nopga_projection: without)"
          << std::endl;
    }
  }
  if (command.only_memorization_probe) {
    return WriteMemorizationProbe(command, data, *model, *tokenizer,
                                  prompt_template, out);
  }
  std::shared_ptr<LlamaForCausalLM> reference;
  if (!command.reference_model_dir.empty()) {
    ASSIGN_OR_RETURN(reference,
                     LoadLlamaCheckpoint(command.reference_model_dir,
                                         {.weights_dtype = weights_dtype}));
  }
  out << "evaluating " << command.model_dir << " on " << command.data_dir
      << " (" << command.forget_split << ", " << data.forget.size()
      << " forget questions)" << std::endl;
  TofuEvaluator evaluator(*model, *tokenizer, prompt_template,
                          {.batch_size = command.batch_size,
                           .max_new_tokens = command.max_new_tokens,
                           .reference_model = reference.get(),
                           .progress = [&out](const std::string& line) {
                             out << line << std::endl;
                           }});
  absl::StatusOr<TofuEvalResult> result =
      evaluator.Evaluate(data, retain_log ? &*retain_log : nullptr);
  if (!result.ok()) {
    if (command.retain_logs.empty()) return result.status();
    return absl::Status(result.status().code(),
                        absl::StrCat(result.status().message(), " (retain log ",
                                     command.retain_logs, ")"));
  }
  RETURN_IF_ERROR(WriteTofuEvalFiles(*result, command.output_dir));
  out << "wrote " << command.output_dir << "/TOFU_EVAL.json and "
      << command.output_dir << "/TOFU_SUMMARY.json\n"
      << result->summary.dump(4) << std::endl;
  if (probe) {
    RETURN_IF_ERROR(WriteMemorizationProbe(command, data, *model, *tokenizer,
                                           prompt_template, out));
  }
  return absl::OkStatus();
}

absl::Status RunTofuSummary(const std::string& eval_json,
                            const std::string& retain_json, std::ostream& out) {
  ASSIGN_OR_RETURN(nlohmann::ordered_json eval_log, ReadTofuEvalLog(eval_json));
  std::optional<nlohmann::ordered_json> retain_log;
  if (!retain_json.empty()) {
    ASSIGN_OR_RETURN(retain_log, ReadTofuEvalLog(retain_json));
  }
  absl::StatusOr<nlohmann::json> summary = SummarizeTofuEval(
      eval_log, retain_log.has_value() ? &*retain_log : nullptr);
  if (!summary.ok()) {
    const std::string files =
        retain_json.empty()
            ? eval_json
            : absl::StrCat(eval_json, " (retain log ", retain_json, ")");
    return absl::Status(summary.status().code(),
                        absl::StrCat(files, ": ", summary.status().message()));
  }
  out << summary->dump(4) << "\n";
  if (!out) {
    return absl::UnavailableError("could not write the TOFU summary");
  }
  return absl::OkStatus();
}

}  // namespace lethe
