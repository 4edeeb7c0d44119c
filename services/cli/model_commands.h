// The model commands of the `lethe` CLI: fine-tune a model on a TOFU split,
// unlearn a forget split from it (a job spec run here), generate an answer
// greedily. Each returns
// a Status that lethe_main.cc prints; options come from its flags.
#ifndef LETHE_SERVICES_CLI_MODEL_COMMANDS_H_
#define LETHE_SERVICES_CLI_MODEL_COMMANDS_H_

#include <string>

#include "absl/status/status.h"
#include "lethe/v1/job.pb.h"
#include "libs/data/qa_example.h"
#include "libs/unlearn/trainer.h"

namespace lethe {

struct FinetuneCommand {
  std::string model_dir;  // Hugging Face layout with its tokenizer files.
  std::string data_dir;
  std::string split;
  std::string prompt_template = "auto";  // As JobSpec.prompt_template.
  ChatTemplateArgs chat_args;            // system_prompt, date_string.
  std::string output_dir;
  int max_length = 256;
  TrainingOptions training;
};

// Trains and writes output_dir (weights, config.json, tokenizer files) and
// output_dir/training_log.json (one record per optimizer step).
absl::Status RunFinetune(const FinetuneCommand& command);

// Runs `spec` (completed and checked: JobSpecWithDefaults, ValidateJobSpec)
// here as one rank with RunJobSpec (libs/run/job_run.h), printing progress:
// the model goes to <output_dir>/model, the log of every step to
// <output_dir>/unlearning_log.json, checkpoints to <output_dir>/checkpoints
// (a rerun resumes from the newest), the reference log-prob cache to
// <output_dir>/reference_log_probs.json (reused by a rerun) and, with
// spec.evaluation, TOFU_EVAL.json and TOFU_SUMMARY.json to <output_dir>/eval.
absl::Status RunUnlearn(const lethe::v1::JobSpec& spec);

struct GenerateCommand {
  std::string model_dir;
  std::string question;
  std::string prompt_template = "auto";  // As JobSpec.prompt_template.
  ChatTemplateArgs chat_args;            // system_prompt, date_string.
  std::string weights_dtype = "fp32";    // As JobSpec.weights_dtype.
  int max_new_tokens = 200;
  int threads = 2;
  // As EvalCommand::pga_projection.
  bool pga_projection = true;
};

// Prints the greedy answer to the question.
absl::Status RunGenerate(const GenerateCommand& command);

}  // namespace lethe

#endif  // LETHE_SERVICES_CLI_MODEL_COMMANDS_H_
