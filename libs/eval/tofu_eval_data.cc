#include "libs/eval/tofu_eval_data.h"

#include <algorithm>
#include <filesystem>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "libs/status/status_macros.h"

namespace lethe {
namespace {

// What a set's records must carry.
enum class Needs { kAnswer, kPerturbed, kParaphrasedAndPerturbed };

// The file ReadTofuSplit reads for `split` (or would, were it there).
std::string SplitPath(const std::string& dir, const std::string& split) {
  const std::string json = absl::StrCat(dir, "/", split, ".json");
  const std::string jsonl = absl::StrCat(dir, "/", split, ".jsonl");
  return !std::filesystem::exists(json) && std::filesystem::exists(jsonl)
             ? jsonl
             : json;
}

absl::StatusOr<std::vector<TofuRecord>> ReadEvalSet(const std::string& dir,
                                                    const std::string& split,
                                                    absl::string_view role,
                                                    Needs needs) {
  absl::StatusOr<std::vector<TofuRecord>> records = ReadTofuSplit(dir, split);
  if (!records.ok()) {
    return absl::Status(
        records.status().code(),
        absl::StrCat("the ", role, " set: ", records.status().message()));
  }
  const std::string path = SplitPath(dir, split);
  if (records->empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": no questions (the ", role, " set)"));
  }
  for (size_t i = 0; i < records->size(); ++i) {
    const TofuRecord& record = (*records)[i];
    if (needs == Needs::kParaphrasedAndPerturbed &&
        !record.paraphrased_answer.has_value()) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": record ", i,
          " has no paraphrased_answer, which the truth ratio of the ", role,
          " set needs"));
    }
    if (needs != Needs::kAnswer && record.perturbed_answers.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": record ", i,
          " has no perturbed_answer, which the truth ratio of the ", role,
          " set needs"));
    }
  }
  return records;
}

}  // namespace

absl::StatusOr<TofuEvalData> ReadTofuEvalData(const std::string& data_dir,
                                              const std::string& forget_split) {
  const std::string kPrefix = "forget";
  const std::string digits = absl::StartsWith(forget_split, kPrefix)
                                 ? forget_split.substr(kPrefix.size())
                                 : "";
  if (digits.empty() || !std::all_of(digits.begin(), digits.end(), [](char c) {
        return absl::ascii_isdigit(c);
      })) {
    return absl::InvalidArgumentError(absl::StrCat(
        "forget split '", forget_split,
        "' is not forgetNN (e.g. forget10); its holdout set holdoutNN is "
        "named after it"));
  }
  TofuEvalData data;
  data.forget_split = forget_split;
  ASSIGN_OR_RETURN(data.forget,
                   ReadEvalSet(data_dir, forget_split + "_perturbed", "forget",
                               Needs::kParaphrasedAndPerturbed));
  ASSIGN_OR_RETURN(data.holdout, ReadEvalSet(data_dir, "holdout" + digits,
                                             "holdout", Needs::kAnswer));
  ASSIGN_OR_RETURN(data.retain,
                   ReadEvalSet(data_dir, "retain_perturbed", "retain",
                               Needs::kParaphrasedAndPerturbed));
  ASSIGN_OR_RETURN(data.real_authors,
                   ReadEvalSet(data_dir, "real_authors_perturbed",
                               "real authors", Needs::kPerturbed));
  ASSIGN_OR_RETURN(data.world_facts,
                   ReadEvalSet(data_dir, "world_facts_perturbed", "world facts",
                               Needs::kPerturbed));
  return data;
}

}  // namespace lethe
