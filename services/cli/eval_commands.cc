#include "services/cli/eval_commands.h"

#include <optional>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "libs/eval/tofu_summary.h"
#include "libs/status/status_macros.h"
#include "nlohmann/json.hpp"

namespace lethe {

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
