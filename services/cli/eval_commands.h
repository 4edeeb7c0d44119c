// The evaluation commands of the `lethe` CLI, free of LibTorch.
//
//   lethe tofu-summary --eval=.../TOFU_EVAL.json --retain=.../TOFU_EVAL.json
//
//   RETURN_IF_ERROR(RunTofuSummary(eval_json, retain_json, std::cout));
#ifndef LETHE_SERVICES_CLI_EVAL_COMMANDS_H_
#define LETHE_SERVICES_CLI_EVAL_COMMANDS_H_

#include <ostream>
#include <string>

#include "absl/status/status.h"

namespace lethe {

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
