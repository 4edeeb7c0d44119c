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
#include "libs/model/hf_checkpoint.h"
#include "libs/model/llama_model.h"
#include "libs/status/status_macros.h"
#include "libs/status/torch_status.h"
#include "libs/tokenizer/tokenizer.h"
#include "libs/unlearn/unlearning_run.h"
#include "nlohmann/json.hpp"

namespace lethe {
namespace {

nlohmann::json StepJson(const StepRecord& step) {
  nlohmann::json json = {
      {"step", step.step},           {"epoch", step.epoch},
      {"loss", step.loss},           {"learning_rate", step.learning_rate},
      {"grad_norm", step.grad_norm}, {"tokens", step.tokens},
      {"seconds", step.seconds}};
  if (!step.components.empty()) json["components"] = step.components;
  return json;
}

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

// Writes the model and a copy of the tokenizer it was trained with.
absl::Status SaveModelAndTokenizer(LlamaForCausalLM& model,
                                   const std::string& tokenizer_path,
                                   const std::string& output_dir) {
  RETURN_IF_ERROR(SaveLlamaCheckpoint(model, output_dir, {}));
  std::error_code error;
  std::filesystem::copy_file(tokenizer_path, output_dir + "/tokenizer.model",
                             std::filesystem::copy_options::overwrite_existing,
                             error);
  if (error) {
    return absl::PermissionDeniedError(
        absl::StrCat("copying tokenizer.model: ", error.message()));
  }
  return absl::OkStatus();
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
                   Tokenizer::Load(command.model_dir + "/tokenizer.model"));
  ASSIGN_OR_RETURN(PromptTemplate prompt_template,
                   PromptTemplateByName(command.prompt_template));
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
                     log.push_back(StepJson(step));
                     if (step.step % 20 == 0) PrintStep(step);
                     return absl::OkStatus();
                   }}));
  RETURN_IF_ERROR(SaveModelAndTokenizer(
      *model, command.model_dir + "/tokenizer.model", command.output_dir));
  RETURN_IF_ERROR(WriteFileAtomically(command.output_dir + "/training_log.json",
                                      log.dump(1) + "\n"));
  PrintDone(summary, command.output_dir);
  return absl::OkStatus();
}

absl::Status RunUnlearn(const UnlearnCommand& command) {
  if (command.output_dir.empty()) {
    return absl::InvalidArgumentError("--output is required");
  }
  const std::string tokenizer_path = command.model_dir + "/tokenizer.model";
  ASSIGN_OR_RETURN(std::unique_ptr<Tokenizer> tokenizer,
                   Tokenizer::Load(tokenizer_path));
  ASSIGN_OR_RETURN(PromptTemplate prompt_template,
                   PromptTemplateByName(command.prompt_template));
  const ObjectiveNeeds needs = MethodNeeds(command.method, command.params);
  ASSIGN_OR_RETURN(std::vector<TofuRecord> forget,
                   ReadTofuSplit(command.data_dir, command.forget_split));
  std::vector<TofuRecord> retain;
  if (needs.retain_batch) {
    ASSIGN_OR_RETURN(retain,
                     ReadTofuSplit(command.data_dir, command.retain_split));
  }
  std::vector<TofuRecord> alternate;
  if (command.method == UnlearningMethod::kIdkDpo) {
    alternate = RefusalAlternates(forget, command.training.seed);
  } else if (command.method == UnlearningMethod::kLlmu) {
    alternate = RandomAnswerAlternates(forget, retain, command.training.seed);
  }
  auto tokenize = [&](const std::vector<TofuRecord>& records) {
    return TokenizeRecords(*tokenizer, prompt_template, records,
                           command.max_length);
  };
  UnlearningData data{.pad_id = tokenizer->eos_id()};
  ASSIGN_OR_RETURN(data.forget, tokenize(forget));
  ASSIGN_OR_RETURN(data.retain, tokenize(retain));
  ASSIGN_OR_RETURN(data.alternate, tokenize(alternate));
  ASSIGN_OR_RETURN(std::shared_ptr<LlamaForCausalLM> model,
                   LoadLlamaCheckpoint(command.model_dir));
  std::error_code error;
  std::filesystem::create_directories(command.output_dir, error);
  if (error) {
    return absl::PermissionDeniedError(
        absl::StrCat("creating ", command.output_dir, ": ", error.message()));
  }
  std::cout << absl::StrFormat(
                   "unlearning %s/%s from %s with %s: %d forget, %d retain "
                   "examples",
                   command.data_dir, command.forget_split, command.model_dir,
                   UnlearningMethodName(command.method), data.forget.size(),
                   data.retain.size())
            << std::endl;
  nlohmann::json steps = nlohmann::json::array();
  const UnlearningOptions options{
      .method = command.method,
      .params = command.params,
      .training = command.training,
      .bf16_reference = command.bf16_reference,
      .reference_cache_path =
          needs.reference_log_probs
              ? command.output_dir + "/reference_log_probs.json"
              : ""};
  ASSIGN_OR_RETURN(
      TrainingSummary summary,
      RunUnlearning(*model, data, options,
                    {.training = {.on_step = [&](const StepRecord& step) {
                       steps.push_back(StepJson(step));
                       if (step.step % 10 == 0) PrintStep(step);
                       return absl::OkStatus();
                     }}}));
  RETURN_IF_ERROR(
      SaveModelAndTokenizer(*model, tokenizer_path, command.output_dir));
  const ObjectiveParams& params = command.params;
  const nlohmann::json log = {
      {"method", UnlearningMethodName(command.method)},
      {"model", command.model_dir},
      {"data", command.data_dir},
      {"forget_split", command.forget_split},
      {"retain_split", needs.retain_batch ? command.retain_split : ""},
      {"params",
       {{"beta", params.beta},
        {"alpha", params.alpha},
        {"gamma", params.gamma},
        {"delta", params.delta},
        {"retain_loss", params.retain_loss == RetainLoss::kKl ? "kl" : "nll"},
        {"random_answer_weight", params.random_answer_weight},
        {"ofmu_inner_steps", params.ofmu_inner_steps},
        {"ofmu_inner_learning_rate", params.ofmu_inner_learning_rate},
        {"ofmu_rho", params.ofmu_rho},
        {"ofmu_rho_growth", params.ofmu_rho_growth},
        {"ofmu_first_order", params.ofmu_first_order}}},
      {"learning_rate", command.training.learning_rate},
      {"num_epochs", command.training.num_epochs},
      {"per_device_batch_size", command.training.per_device_batch_size},
      {"gradient_accumulation_steps",
       command.training.gradient_accumulation_steps},
      {"seed", command.training.seed},
      {"seconds", summary.seconds},
      {"steps", steps}};
  RETURN_IF_ERROR(WriteFileAtomically(
      command.output_dir + "/unlearning_log.json", log.dump(1) + "\n"));
  PrintDone(summary, command.output_dir);
  return absl::OkStatus();
}

absl::Status RunGenerate(const GenerateCommand& command) {
  if (command.question.empty()) {
    return absl::InvalidArgumentError("--prompt is required");
  }
  at::set_num_threads(command.threads);
  ASSIGN_OR_RETURN(std::unique_ptr<Tokenizer> tokenizer,
                   Tokenizer::Load(command.model_dir + "/tokenizer.model"));
  ASSIGN_OR_RETURN(PromptTemplate prompt_template,
                   PromptTemplateByName(command.prompt_template));
  ASSIGN_OR_RETURN(std::shared_ptr<LlamaForCausalLM> model,
                   LoadLlamaCheckpoint(command.model_dir));
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
