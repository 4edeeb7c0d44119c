#include "libs/eval/open_unlearning_logs.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "libs/files/file_io.h"

namespace lethe {

bool SharedDataRequired() {
  const char* required = std::getenv("LETHE_REQUIRE_SHARED");
  return required != nullptr && std::string(required) != "" &&
         std::string(required) != "0";
}

std::string OpenUnlearningLogDir() {
  const char* shared = std::getenv("LETHE_SHARED_DIR");
  if (shared == nullptr) return "";
  const std::string dir =
      absl::StrCat(shared, "/data/tofu/eval_logs/open-unlearning");
  return std::filesystem::is_directory(dir) ? dir : "";
}

std::vector<std::string> EvalLogPaths(const std::string& dir) {
  std::vector<std::string> paths;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(dir)) {
    if (entry.path().filename() == "TOFU_EVAL.json") {
      paths.push_back(entry.path().string());
    }
  }
  std::sort(paths.begin(), paths.end());
  return paths;
}

std::vector<ForgetRetainPair> ForgetRetainPairs(const std::string& dir) {
  std::vector<ForgetRetainPair> pairs;
  for (const auto& model : std::filesystem::directory_iterator(dir)) {
    const std::string name = model.path().filename().string();
    const std::string suffix = "_full";
    if (name.size() <= suffix.size() ||
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0) {
      continue;
    }
    const std::string base = name.substr(0, name.size() - suffix.size());
    for (const char* forget : {"01", "05", "10"}) {
      const std::string eval_dir =
          absl::StrCat(model.path().string(), "/evals_forget", forget);
      const std::string retain_dir =
          absl::StrCat(dir, "/", base, "_retain", 100 - std::stoi(forget));
      if (std::filesystem::exists(eval_dir + "/TOFU_EVAL.json") &&
          std::filesystem::exists(retain_dir + "/TOFU_EVAL.json")) {
        pairs.push_back({eval_dir, retain_dir});
      }
    }
  }
  std::sort(pairs.begin(), pairs.end(),
            [](const ForgetRetainPair& a, const ForgetRetainPair& b) {
              return a.eval_dir < b.eval_dir;
            });
  return pairs;
}

nlohmann::ordered_json ReadLogOrFail(const std::string& path) {
  absl::StatusOr<std::string> text = ReadFileToString(path);
  if (!text.ok()) {
    ADD_FAILURE() << text.status();
    return nullptr;
  }
  nlohmann::ordered_json log =
      nlohmann::ordered_json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (log.is_discarded()) {
    ADD_FAILURE() << path << ": not valid JSON";
    return nullptr;
  }
  return log;
}

namespace {

using OrderedJson = nlohmann::ordered_json;

// `field` of every non-null entry of `metric`'s value_by_index; fails the
// calling test when the metric is missing.
std::vector<OrderedJson> Fields(const OrderedJson& metric,
                                const std::string& name,
                                const std::string& field) {
  std::vector<OrderedJson> values;
  if (!metric.is_object() || !metric.contains("value_by_index")) {
    ADD_FAILURE() << name << " has no value_by_index";
    return values;
  }
  for (const auto& [index, entry] : metric["value_by_index"].items()) {
    if (entry.is_null() || !entry.contains(field) || entry[field].is_null()) {
      continue;
    }
    values.push_back(entry[field]);
  }
  if (values.empty()) ADD_FAILURE() << name << " has no " << field << " values";
  return values;
}

double PlainMean(const std::vector<double>& values) {
  double sum = 0;
  for (double value : values) sum += value;
  return values.empty() ? std::nan("") : sum / values.size();
}

double MeanOf(const OrderedJson& log, const std::string& metric,
              const std::string& field) {
  std::vector<double> values;
  for (const OrderedJson& value :
       Fields(log.value(metric, OrderedJson()), metric, field)) {
    values.push_back(value.get<double>());
  }
  return PlainMean(values);
}

// P(correct) / (P(correct) + sum P(perturbed) + 1e-10), averaged.
double MeanNormalisedProbability(const OrderedJson& log,
                                 const std::string& prefix) {
  const OrderedJson& correct = log.at(prefix + "_Q_A_Prob")["value_by_index"];
  const OrderedJson& perturbed =
      log.at(prefix + "_Q_A_PERT_Prob")["value_by_index"];
  std::vector<double> values;
  for (const auto& [index, entry] : correct.items()) {
    if (entry.is_null() || perturbed[index].is_null()) continue;
    const double p = entry["prob"].get<double>();
    double wrong = 0;
    for (const OrderedJson& q : perturbed[index]["prob"]) {
      wrong += q.get<double>();
    }
    values.push_back(p / (p + wrong + 1e-10));
  }
  return PlainMean(values);
}

// The ROC AUC of the forget scores (label 0) against the holdout scores
// (label 1): the share of pairs the holdout score wins, ties counting half.
double PairCountingAuc(const OrderedJson& log, const std::string& metric) {
  const OrderedJson& mia = log.at(metric);
  const std::vector<OrderedJson> forget =
      Fields(mia.value("forget", OrderedJson()), metric + ".forget", "score");
  const std::vector<OrderedJson> holdout =
      Fields(mia.value("holdout", OrderedJson()), metric + ".holdout", "score");
  double wins = 0;
  for (const OrderedJson& f : forget) {
    for (const OrderedJson& h : holdout) {
      const double a = f.get<double>(), b = h.get<double>();
      wins += b > a ? 1.0 : (b == a ? 0.5 : 0.0);
    }
  }
  return wins / (static_cast<double>(forget.size()) * holdout.size());
}

}  // namespace

nlohmann::json PlainTofuSummary(const nlohmann::ordered_json& eval_log,
                                const nlohmann::ordered_json* retain_log) {
  nlohmann::json summary = nlohmann::json::object();
  if (!eval_log.is_object()) {
    ADD_FAILURE() << "the eval log is not a JSON object";
    return summary;
  }
  for (const auto& [metric, field] :
       std::vector<std::pair<std::string, std::string>>{
           {"forget_Q_A_Prob", "prob"},
           {"forget_Q_A_ROUGE", "rougeL_recall"},
           {"exact_memorization", "score"},
           {"extraction_strength", "score"}}) {
    if (eval_log.contains(metric)) {
      summary[metric] = MeanOf(eval_log, metric, field);
    }
  }
  for (const auto& [metric, value] : eval_log.items()) {
    if (metric.rfind("mia_", 0) == 0) {
      summary[metric] = PairCountingAuc(eval_log, metric);
    }
  }
  if (eval_log.contains("model_utility")) {
    std::vector<double> parts;
    for (const std::string prefix : {"retain", "ra", "wf"}) {
      parts.push_back(prefix == "retain"
                          ? MeanOf(eval_log, "retain_Q_A_Prob", "prob")
                          : MeanNormalisedProbability(eval_log, prefix));
      parts.push_back(MeanOf(eval_log, prefix + "_Q_A_ROUGE", "rougeL_recall"));
      std::vector<double> true_better;
      for (const OrderedJson& ratio :
           Fields(eval_log.value(prefix + "_Truth_Ratio", OrderedJson()),
                  prefix + "_Truth_Ratio", "score")) {
        true_better.push_back(std::max(0.0, 1 - ratio.get<double>()));
      }
      parts.push_back(PlainMean(true_better));
    }
    double reciprocal_sum = 0;
    for (double part : parts) reciprocal_sum += 1 / part;
    summary["model_utility"] = parts.size() / reciprocal_sum;
  }
  if (eval_log.contains("privleak")) {
    const double auc = PairCountingAuc(eval_log, "mia_min_k");
    double reference = 0.5;
    if (retain_log != nullptr && retain_log->contains("mia_min_k")) {
      reference = retain_log->at("mia_min_k").at("agg_value").get<double>();
    }
    summary["privleak"] =
        ((1 - auc) - (1 - reference)) / ((1 - reference) + 1e-10) * 100;
  }
  return summary;
}

void ExpectSummaryNear(const nlohmann::json& actual,
                       const nlohmann::json& expected,
                       double relative_tolerance) {
  std::vector<std::string> actual_keys, expected_keys;
  for (const auto& [key, value] : actual.items()) actual_keys.push_back(key);
  for (const auto& [key, value] : expected.items()) {
    expected_keys.push_back(key);
  }
  EXPECT_EQ(actual_keys, expected_keys);
  for (const auto& [key, value] : expected.items()) {
    if (!actual.contains(key)) continue;
    ASSERT_TRUE(actual[key].is_number()) << key << ": " << actual[key];
    const double want = value.get<double>();
    EXPECT_NEAR(actual[key].get<double>(), want,
                relative_tolerance * std::max(1.0, std::abs(want)))
        << key;
  }
}

}  // namespace lethe
