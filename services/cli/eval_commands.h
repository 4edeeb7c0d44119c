// The evaluation commands of the `lethe` CLI.
//
//   lethe eval --model=DIR --data=DIR [--forget_split=forget10]
//              [--retain_logs=RETAIN/TOFU_EVAL.json]
//              [--memorization_probe | --only_memorization_probe] --output=DIR
//   lethe tofu-summary --eval=.../TOFU_EVAL.json --retain=.../TOFU_EVAL.json
//
//   RETURN_IF_ERROR(RunEval(command, std::cout));
//   RETURN_IF_ERROR(RunTofuSummary(eval_json, retain_json, std::cout));
#ifndef LETHE_SERVICES_CLI_EVAL_COMMANDS_H_
#define LETHE_SERVICES_CLI_EVAL_COMMANDS_H_

#include <ostream>
#include <string>

#include "absl/status/status.h"
#include "libs/data/qa_example.h"

namespace lethe {

struct EvalCommand {
  std::string model_dir;  // Hugging Face layout with its tokenizer files.
  std::string data_dir;   // TOFU-format split files.
  std::string forget_split = "forget10";
  std::string prompt_template = "auto";  // As JobSpec.prompt_template.
  ChatTemplateArgs chat_args;            // system_prompt, date_string.
  std::string weights_dtype = "fp32";    // As JobSpec.weights_dtype.
  // The retain model's TOFU_EVAL.json, for forget_quality and privleak;
  // empty for none.
  std::string retain_logs;
  // A model for mia_reference (typically the retain model); empty for none.
  std::string reference_model_dir;
  std::string output_dir;
  int batch_size = 32;
  int max_new_tokens = 200;
  int threads = 2;
  // Also PGA's memorisation signature (libs/eval/memorization_signature.h)
  // of forget_split against its holdout split.
  bool memorization_probe = false;
  // The memorisation signature alone: no TOFU evaluation, no TOFU files
  // (retain_logs and reference_model_dir are not read).
  bool only_memorization_probe = false;
  // Apply the PGA activation projection saved next to the model
  // (pga_projection.json, written by PGA jobs), when there is one; it then
  // acts in every pass, the memorisation probe's included.
  bool pga_projection = true;
};

// Runs open-unlearning's TOFU evaluation (libs/eval/tofu_evaluator.h) and
// writes output_dir/TOFU_EVAL.json and output_dir/TOFU_SUMMARY.json. Prints
// progress, then the summary, to `out`. With memorization_probe, then also
// measures the memorisation signature (the forget split's records paired
// with the holdout split's, the first min(sizes) of each; INVALID_ARGUMENT
// before any model runs when that is under 2 pairs), writes
// output_dir/MEMORIZATION_PROBE.json
//   {"forget_split", "holdout_split", "pairs", "per_depth": [accuracy per
//    depth, 0 = embeddings ... num_hidden_layers = final norm],
//    "max_accuracy", "max_depth", "chance": 0.5}
// and prints one line about it; the TOFU files are the same as without it.
// With only_memorization_probe, that file and line are all it does.
absl::Status RunEval(const EvalCommand& command, std::ostream& out);

// Prints to `out` the TOFU_SUMMARY.json that open-unlearning would write for
// the TOFU_EVAL.json at `eval_json` (same keys, json.dump(indent=4) layout,
// then a newline), recomputed from its per-question values
// (libs/eval/tofu_summary.h). `retain_json` is the retain model's
// TOFU_EVAL.json for forget_quality and privleak; empty for none, which
// leaves forget_quality out and compares privleak with an AUC of 0.5.
// Errors name the file and the key.
absl::Status RunTofuSummary(const std::string& eval_json,
                            const std::string& retain_json, std::ostream& out);

}  // namespace lethe

#endif  // LETHE_SERVICES_CLI_EVAL_COMMANDS_H_
