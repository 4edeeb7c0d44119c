#include "libs/eval/tofu_summary.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "libs/eval/ks_test.h"
#include "libs/eval/numpy_reduction.h"
#include "libs/eval/roc_auc.h"
#include "libs/eval/tofu_metrics.h"
#include "libs/files/file_io.h"
#include "libs/status/status_macros.h"

namespace lethe {
namespace {

using Json = nlohmann::ordered_json;
// Keys from the log's root to a node, for messages ("mia_loss.forget").
using KeyPath = std::vector<std::string>;

// The reference AUC of open-unlearning's privleak without a retain log.
constexpr double kDefaultReferenceAuc = 0.5;

// Summary metrics that are the mean of one per-question field.
const std::pair<const char*, const char*> kMeanMetrics[] = {
    {"forget_Q_A_Prob", "prob"},
    {"forget_Q_A_ROUGE", "rougeL_recall"},
    {"exact_memorization", "score"},
    {"extraction_strength", "score"},
};

std::string Name(const KeyPath& path) {
  return absl::StrCat("'", absl::StrJoin(path, "."), "'");
}

KeyPath Append(KeyPath path, const std::string& key) {
  path.push_back(key);
  return path;
}

absl::Status WithContext(const absl::Status& status,
                         absl::string_view context) {
  return absl::Status(status.code(),
                      absl::StrCat(context, ": ", status.message()));
}

// Member `key` of `node`, which `path` names.
absl::StatusOr<const Json*> Member(const Json& node, const KeyPath& path,
                                   const std::string& key) {
  if (!node.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(Name(path), " is not a JSON object"));
  }
  const auto it = node.find(key);
  if (it == node.end()) {
    return absl::InvalidArgumentError(
        absl::StrCat("missing ", Name(Append(path, key))));
  }
  return &*it;
}

absl::StatusOr<const Json*> Find(const Json& log, const KeyPath& path) {
  const Json* node = &log;
  KeyPath walked;
  for (const std::string& key : path) {
    ASSIGN_OR_RETURN(node, Member(*node, walked, key));
    walked.push_back(key);
  }
  return node;
}

absl::StatusOr<double> Number(const Json& node, const KeyPath& path) {
  if (!node.is_number()) {
    return absl::InvalidArgumentError(
        absl::StrCat(Name(path), " is not a number"));
  }
  return node.get<double>();
}

absl::StatusOr<std::vector<double>> Numbers(const Json& node,
                                            const KeyPath& path) {
  if (!node.is_array()) {
    return absl::InvalidArgumentError(
        absl::StrCat(Name(path), " is not a list"));
  }
  std::vector<double> numbers;
  for (const Json& element : node) {
    ASSIGN_OR_RETURN(double number, Number(element, path));
    numbers.push_back(number);
  }
  return numbers;
}

// Field `field` of every question of the metric at `metric`, in the log's
// order, skipping null entries and null fields.
absl::StatusOr<std::vector<double>> PerQuestion(const Json& log,
                                                const KeyPath& metric,
                                                const std::string& field) {
  const KeyPath path = Append(metric, "value_by_index");
  ASSIGN_OR_RETURN(const Json* value_by_index, Find(log, path));
  if (!value_by_index->is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(Name(path), " is not a JSON object"));
  }
  std::vector<double> values;
  for (const auto& [index, entry] : value_by_index->items()) {
    if (entry.is_null()) continue;
    const KeyPath entry_path = Append(path, index);
    ASSIGN_OR_RETURN(const Json* value, Member(entry, entry_path, field));
    if (value->is_null()) continue;
    ASSIGN_OR_RETURN(double number, Number(*value, Append(entry_path, field)));
    values.push_back(number);
  }
  if (values.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(Name(path), " has no '", field, "' values"));
  }
  return values;
}

absl::StatusOr<double> MeanPerQuestion(const Json& log,
                                       const std::string& metric,
                                       const std::string& field) {
  ASSIGN_OR_RETURN(std::vector<double> values,
                   PerQuestion(log, {metric}, field));
  return NumpyMean(values);
}

// Mean NormalisedProbability of the correct answers' "prob" in `correct`
// against the perturbed answers' "prob" lists in `perturbed`.
absl::StatusOr<double> MeanNormalisedProbability(const Json& log,
                                                 const std::string& correct,
                                                 const std::string& perturbed) {
  const KeyPath correct_path = {correct, "value_by_index"};
  const KeyPath perturbed_path = {perturbed, "value_by_index"};
  ASSIGN_OR_RETURN(const Json* correct_entries, Find(log, correct_path));
  ASSIGN_OR_RETURN(const Json* perturbed_entries, Find(log, perturbed_path));
  if (!correct_entries->is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(Name(correct_path), " is not a JSON object"));
  }
  std::vector<double> probabilities;
  for (const auto& [index, entry] : correct_entries->items()) {
    ASSIGN_OR_RETURN(const Json* perturbed_entry,
                     Member(*perturbed_entries, perturbed_path, index));
    if (entry.is_null() || perturbed_entry->is_null()) continue;
    const KeyPath entry_path = Append(correct_path, index);
    const KeyPath perturbed_entry_path = Append(perturbed_path, index);
    ASSIGN_OR_RETURN(const Json* probability,
                     Member(entry, entry_path, "prob"));
    ASSIGN_OR_RETURN(const Json* perturbed_probabilities,
                     Member(*perturbed_entry, perturbed_entry_path, "prob"));
    ASSIGN_OR_RETURN(double correct_probability,
                     Number(*probability, Append(entry_path, "prob")));
    ASSIGN_OR_RETURN(std::vector<double> wrong_probabilities,
                     Numbers(*perturbed_probabilities,
                             Append(perturbed_entry_path, "prob")));
    probabilities.push_back(
        NormalisedProbability(correct_probability, wrong_probabilities));
  }
  if (probabilities.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(Name(correct_path), " has no 'prob' values"));
  }
  return NumpyMean(probabilities);
}

absl::StatusOr<double> MiaAuc(const Json& log, const std::string& metric) {
  ASSIGN_OR_RETURN(std::vector<double> forget,
                   PerQuestion(log, {metric, "forget"}, "score"));
  ASSIGN_OR_RETURN(std::vector<double> holdout,
                   PerQuestion(log, {metric, "holdout"}, "score"));
  absl::StatusOr<double> auc = RocAuc(forget, holdout);
  if (!auc.ok()) return WithContext(auc.status(), metric);
  return auc;
}

// open-unlearning's model_utility: the harmonic mean, in this order, of
// probability, ROUGE-L recall and truth-ratio score on the retain set, the
// real authors and the world facts.
absl::StatusOr<double> ModelUtility(const Json& log) {
  std::vector<double> parts;
  for (const std::string prefix : {"retain", "ra", "wf"}) {
    double probability;
    if (prefix == "retain") {
      ASSIGN_OR_RETURN(probability,
                       MeanPerQuestion(log, "retain_Q_A_Prob", "prob"));
    } else {
      ASSIGN_OR_RETURN(probability,
                       MeanNormalisedProbability(log, prefix + "_Q_A_Prob",
                                                 prefix + "_Q_A_PERT_Prob"));
    }
    ASSIGN_OR_RETURN(double rouge, MeanPerQuestion(log, prefix + "_Q_A_ROUGE",
                                                   "rougeL_recall"));
    ASSIGN_OR_RETURN(std::vector<double> truth_ratios,
                     PerQuestion(log, {prefix + "_Truth_Ratio"}, "score"));
    parts.insert(parts.end(),
                 {probability, rouge, MeanOneMinusTruthRatio(truth_ratios)});
  }
  return ScipyHarmonicMean(parts);
}

absl::StatusOr<double> ForgetQuality(const Json& log, const Json& retain_log) {
  ASSIGN_OR_RETURN(std::vector<double> forget,
                   PerQuestion(log, {"forget_truth_ratio"}, "score"));
  absl::StatusOr<std::vector<double>> retain =
      PerQuestion(retain_log, {"forget_truth_ratio"}, "score");
  if (!retain.ok()) return WithContext(retain.status(), "retain log");
  ASSIGN_OR_RETURN(KsTestResult ks, KsTwoSampleTest(forget, *retain));
  return ks.pvalue;
}

absl::StatusOr<double> PrivLeakAgainstRetain(const Json& log,
                                             const Json* retain_log) {
  ASSIGN_OR_RETURN(double auc, MiaAuc(log, "mia_min_k"));
  double reference = kDefaultReferenceAuc;
  if (retain_log != nullptr && retain_log->is_object() &&
      retain_log->contains("mia_min_k")) {
    const KeyPath path = {"mia_min_k", "agg_value"};
    absl::StatusOr<const Json*> node = Find(*retain_log, path);
    if (!node.ok()) return WithContext(node.status(), "retain log");
    absl::StatusOr<double> value = Number(**node, path);
    if (!value.ok()) return WithContext(value.status(), "retain log");
    reference = *value;
  }
  return PrivLeak(auc, reference);
}

}  // namespace

absl::StatusOr<nlohmann::ordered_json> ReadTofuEvalLog(
    const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  Json log = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (log.is_discarded()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": not valid JSON"));
  }
  if (!log.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": not a JSON object of metrics"));
  }
  return log;
}

absl::StatusOr<nlohmann::json> SummarizeTofuEval(
    const nlohmann::ordered_json& log,
    const nlohmann::ordered_json* retain_log) {
  if (!log.is_object()) {
    return absl::InvalidArgumentError("the eval log is not a JSON object");
  }
  nlohmann::json summary = nlohmann::json::object();
  for (const auto& [metric, field] : kMeanMetrics) {
    if (!log.contains(metric)) continue;
    ASSIGN_OR_RETURN(summary[metric], MeanPerQuestion(log, metric, field));
  }
  for (const auto& [metric, value] : log.items()) {
    if (!absl::StartsWith(metric, "mia_")) continue;
    ASSIGN_OR_RETURN(summary[metric], MiaAuc(log, metric));
  }
  if (log.contains("model_utility")) {
    ASSIGN_OR_RETURN(summary["model_utility"], ModelUtility(log));
  }
  if (log.contains("forget_quality") && retain_log != nullptr) {
    ASSIGN_OR_RETURN(summary["forget_quality"],
                     ForgetQuality(log, *retain_log));
  }
  if (log.contains("privleak")) {
    ASSIGN_OR_RETURN(summary["privleak"],
                     PrivLeakAgainstRetain(log, retain_log));
  }
  return summary;
}

}  // namespace lethe
