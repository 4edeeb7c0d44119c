// The model commands of the `lethe` CLI: fine-tune a model on a TOFU split,
// unlearn a forget split from it, generate an answer greedily. Each returns
// a Status that lethe_main.cc prints; options come from its flags.
#ifndef LETHE_SERVICES_CLI_MODEL_COMMANDS_H_
#define LETHE_SERVICES_CLI_MODEL_COMMANDS_H_

#include <string>

#include "absl/status/status.h"
#include "libs/unlearn/objective.h"
#include "libs/unlearn/trainer.h"

namespace lethe {

struct FinetuneCommand {
  std::string model_dir;  // Hugging Face layout with tokenizer.model.
  std::string data_dir;
  std::string split;
  std::string prompt_template = "plain";
  std::string output_dir;
  int max_length = 256;
  TrainingOptions training;
};

// Trains and writes output_dir (weights, config.json, tokenizer.model) and
// output_dir/training_log.json (one record per optimizer step).
absl::Status RunFinetune(const FinetuneCommand& command);

struct UnlearnCommand {
  std::string model_dir;  // Hugging Face layout with tokenizer.model.
  std::string data_dir;
  std::string forget_split = "forget10";
  std::string retain_split = "retain90";
  std::string prompt_template = "plain";
  std::string output_dir;
  int max_length = 256;
  UnlearningMethod method = UnlearningMethod::kNpo;
  ObjectiveParams params;
  TrainingOptions training;
  bool bf16_reference = false;  // The KL terms' frozen reference in bf16.
};

// Unlearns forget_split from the model and writes output_dir (weights,
// config.json, tokenizer.model), output_dir/unlearning_log.json (the run's
// settings and every step's loss components) and, for methods with a
// reference, output_dir/reference_log_probs.json (reused by a rerun).
absl::Status RunUnlearn(const UnlearnCommand& command);

struct GenerateCommand {
  std::string model_dir;
  std::string question;
  std::string prompt_template = "plain";
  int max_new_tokens = 200;
  int threads = 2;
};

// Prints the greedy answer to the question.
absl::Status RunGenerate(const GenerateCommand& command);

}  // namespace lethe

#endif  // LETHE_SERVICES_CLI_MODEL_COMMANDS_H_
