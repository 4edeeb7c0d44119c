#include "services/cli/model_commands.h"

#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "libs/data/qa_example.h"
#include "libs/data/tofu_dataset.h"
#include "libs/files/file_io.h"
#include "libs/model/generation.h"
#include "libs/model/hf_checkpoint.h"
#include "libs/model/llama_model.h"
#include "libs/run/job_run.h"
#include "libs/status/status_macros.h"
#include "libs/status/torch_status.h"
#include "libs/tokenizer/tokenizer.h"
#include "libs/unlearn/pga.h"
#include "nlohmann/json.hpp"

namespace lethe {
namespace {

void PrintStep(const StepRecord& step) {
  std::string components;
  for (const auto& [name, value] : step.components) {
    absl::StrAppendFormat(&components, "  %s %.4g", name, value);
  }
  std::cout << absl::StrFormat("step %d  epoch %d  loss %.4f  lr %.2e%s",
                               step.step, step.epoch, step.loss,
                               step.learning_rate, components)
            << std::endl;
}

void PrintDone(const TrainingSummary& summary, const std::string& output_dir) {
  std::cout << absl::StrFormat(
                   "done: %d steps in %.1fs (%.0f tokens/s); model in %s",
                   summary.total_steps, summary.seconds,
                   summary.tokens / std::max(summary.seconds, 1e-9), output_dir)
            << std::endl;
}

}  // namespace

absl::Status RunFinetune(const FinetuneCommand& command) {
  if (command.output_dir.empty()) {
    return absl::InvalidArgumentError("--output is required");
  }
  ASSIGN_OR_RETURN(std::unique_ptr<Tokenizer> tokenizer,
                   LoadModelTokenizer(command.model_dir));
  ASSIGN_OR_RETURN(
      PromptTemplate prompt_template,
      PromptTemplateForModel(command.prompt_template, command.model_dir,
                             command.chat_args));
  ASSIGN_OR_RETURN(std::vector<TofuRecord> records,
                   ReadTofuSplit(command.data_dir, command.split));
  ASSIGN_OR_RETURN(std::vector<QaExample> examples,
                   TokenizeRecords(*tokenizer, prompt_template, records,
                                   command.max_length));
  ASSIGN_OR_RETURN(std::shared_ptr<LlamaForCausalLM> model,
                   LoadLlamaCheckpoint(command.model_dir));
  std::cout << absl::StrFormat(
                   "fine-tuning %s (%.2fM parameters) on %s/%s: %d examples",
                   command.model_dir, model->NumParameters() / 1e6,
                   command.data_dir, command.split, examples.size())
            << std::endl;
  nlohmann::json log = nlohmann::json::array();
  ASSIGN_OR_RETURN(
      TrainingSummary summary,
      FinetuneOnQa(*model, examples, tokenizer->eos_id(), command.training,
                   {.on_step = [&](const StepRecord& step) {
                     log.push_back(StepRecordJson(step));
                     if (step.step % 20 == 0) PrintStep(step);
                     return absl::OkStatus();
                   }}));
  ASSIGN_OR_RETURN(const std::string tokenizer_file,
                   ModelTokenizerFileName(command.model_dir));
  RETURN_IF_ERROR(SaveModelWithTokenizer(
      *model, command.model_dir + "/" + tokenizer_file, command.output_dir));
  RETURN_IF_ERROR(WriteFileAtomically(command.output_dir + "/training_log.json",
                                      log.dump(1) + "\n"));
  PrintDone(summary, command.output_dir);
  return absl::OkStatus();
}

absl::Status RunUnlearn(const lethe::v1::JobSpec& spec) {
  auto print = [](const std::string& line) { std::cout << line << std::endl; };
  ASSIGN_OR_RETURN(
      const JobRunResult result,
      RunJobSpec(spec, {},
                 {.on_step =
                      [](const RunStep& step) {
                        if (step.record.step % 10 == 0) PrintStep(step.record);
                        return absl::OkStatus();
                      },
                  .on_evaluation =
                      [](int epoch, const std::map<std::string, double>&) {
                        std::cout << "evaluated after epoch " << epoch
                                  << std::endl;
                        return absl::OkStatus();
                      },
                  .log = print}));
  if (result.training.resumed_from_step > 0) {
    std::cout << "resumed from step " << result.training.resumed_from_step
              << std::endl;
  }
  for (const auto& [name, value] : result.evaluation) {
    std::cout << absl::StrFormat("  %-30s %.4g", name, value) << std::endl;
  }
  PrintDone(result.training, result.model_dir);
  return absl::OkStatus();
}

absl::Status RunGenerate(const GenerateCommand& command) {
  if (command.question.empty()) {
    return absl::InvalidArgumentError("--prompt is required");
  }
  at::set_num_threads(command.threads);
  ASSIGN_OR_RETURN(std::unique_ptr<Tokenizer> tokenizer,
                   LoadModelTokenizer(command.model_dir));
  ASSIGN_OR_RETURN(
      PromptTemplate prompt_template,
      PromptTemplateForModel(command.prompt_template, command.model_dir,
                             command.chat_args));
  ASSIGN_OR_RETURN(const WeightsDtype weights_dtype,
                   ParseWeightsDtype(command.weights_dtype));
  ASSIGN_OR_RETURN(
      std::shared_ptr<LlamaForCausalLM> model,
      LoadLlamaCheckpoint(command.model_dir, {.weights_dtype = weights_dtype}));
  if (command.pga_projection) {
    RETURN_IF_ERROR(
        InstallSavedActivationProjection(*model, command.model_dir).status());
  }
  ASSIGN_OR_RETURN(
      std::vector<int> prompt,
      TokenizePrompt(
          *tokenizer, prompt_template, command.question,
          static_cast<int>(model->config().max_position_embeddings)));
  ASSIGN_OR_RETURN(std::vector<int64_t> generated, CallTorch("generation", [&] {
                     model->eval();
                     return GreedyGenerate(
                         *model,
                         std::vector<int64_t>(prompt.begin(), prompt.end()),
                         command.max_new_tokens, model->config().eos_token_ids);
                   }));
  ASSIGN_OR_RETURN(
      std::string answer,
      tokenizer->Decode(std::vector<int>(generated.begin(), generated.end())));
  std::cout << answer << std::endl;
  return absl::OkStatus();
}

}  // namespace lethe
