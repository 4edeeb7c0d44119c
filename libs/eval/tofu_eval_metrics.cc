#include "libs/eval/tofu_eval_metrics.h"

#include <zlib.h>

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "libs/eval/numpy_reduction.h"
#include "libs/eval/roc_auc.h"
#include "libs/eval/rouge.h"
#include "libs/eval/tofu_metrics.h"
#include "libs/status/status_macros.h"

namespace lethe {
namespace {

using Json = nlohmann::ordered_json;

Json IndexEntries(const std::vector<Json>& entries) {
  Json by_index = Json::object();
  for (size_t i = 0; i < entries.size(); ++i) {
    by_index[std::to_string(i)] = entries[i];
  }
  return by_index;
}

}  // namespace

Json Metric(double agg_value, const std::vector<Json>& entries) {
  return Json{{"agg_value", agg_value},
              {"value_by_index", IndexEntries(entries)}};
}

Json ProbabilityMetric(const std::vector<AnswerScore>& scores) {
  std::vector<Json> entries;
  std::vector<double> probs;
  for (const AnswerScore& score : scores) {
    entries.push_back({{"prob", score.prob}, {"avg_loss", score.avg_loss}});
    probs.push_back(score.prob);
  }
  return Metric(NumpyMean(probs), entries);
}

Json MultiProbabilityMetric(
    const std::vector<std::vector<AnswerScore>>& scores) {
  std::vector<Json> entries;
  std::vector<double> row_means;
  for (const std::vector<AnswerScore>& row : scores) {
    Json probs = Json::array(), losses = Json::array();
    std::vector<double> row_probs;
    for (const AnswerScore& score : row) {
      probs.push_back(score.prob);
      losses.push_back(score.avg_loss);
      row_probs.push_back(score.prob);
    }
    entries.push_back({{"prob", probs}, {"avg_loss", losses}});
    row_means.push_back(NumpyMean(row_probs));
  }
  return Metric(NumpyMean(row_means), entries);
}

Json TruthRatioMetric(const std::vector<AnswerScore>& correct,
                      const std::vector<std::vector<AnswerScore>>& perturbed,
                      TruthRatioAggregate aggregate) {
  std::vector<Json> entries;
  std::vector<double> ratios;
  for (size_t i = 0; i < correct.size(); ++i) {
    std::vector<double> losses;
    for (const AnswerScore& score : perturbed[i]) {
      losses.push_back(score.avg_loss);
    }
    ratios.push_back(TruthRatio(correct[i].avg_loss, losses));
    entries.push_back({{"score", ratios.back()}});
  }
  return Metric(aggregate == TruthRatioAggregate::kCloserToOne
                    ? MeanTruthRatioCloserToOne(ratios)
                    : MeanOneMinusTruthRatio(ratios),
                entries);
}

Json NormalisedProbabilityMetric(
    const std::vector<AnswerScore>& correct,
    const std::vector<std::vector<AnswerScore>>& perturbed) {
  std::vector<Json> entries;
  std::vector<double> normalised;
  for (size_t i = 0; i < correct.size(); ++i) {
    std::vector<double> wrong;
    for (const AnswerScore& score : perturbed[i]) wrong.push_back(score.prob);
    normalised.push_back(NormalisedProbability(correct[i].prob, wrong));
    entries.push_back({{"prob", normalised.back()}});
  }
  return Metric(NumpyMean(normalised), entries);
}

Json ScoreMetric(const std::vector<std::optional<double>>& scores) {
  std::vector<Json> entries;
  std::vector<double> present;
  for (const std::optional<double>& score : scores) {
    entries.push_back({{"score", score.has_value() ? Json(*score) : Json()}});
    if (score.has_value()) present.push_back(*score);
  }
  return Metric(NumpyMean(present), entries);
}

absl::StatusOr<Json> MiaMetric(const std::string& name,
                               const std::vector<double>& forget,
                               const std::vector<double>& holdout) {
  auto attack = [](const std::vector<double>& scores) {
    std::vector<Json> entries;
    for (double score : scores) entries.push_back({{"score", score}});
    return Metric(NumpyMean(scores), entries);
  };
  absl::StatusOr<double> auc = RocAuc(forget, holdout);
  if (!auc.ok()) {
    return absl::Status(auc.status().code(),
                        absl::StrCat(name, ": ", auc.status().message()));
  }
  return Json{{"forget", attack(forget)},
              {"holdout", attack(holdout)},
              {"auc", *auc},
              {"agg_value", *auc}};
}

Json RougeMetric(const std::vector<RougeSample>& samples) {
  std::vector<Json> entries;
  std::vector<double> recalls;
  for (const RougeSample& sample : samples) {
    const RougeScores rouge =
        ScoreRouge(sample.ground_truth, sample.generation);
    recalls.push_back(rouge.rouge_l.recall);
    entries.push_back({{"rouge1_recall", rouge.rouge1.recall},
                       {"rougeL_f1", rouge.rouge_l.fmeasure},
                       {"rougeL_recall", rouge.rouge_l.recall},
                       {"input", sample.input},
                       {"ground_truth", sample.ground_truth},
                       {"generation", sample.generation}});
  }
  return Metric(NumpyMean(recalls), entries);
}

std::string CleanUpTokenizationSpaces(std::string text) {
  for (const auto& [from, to] :
       std::vector<std::pair<const char*, const char*>>{{" .", "."},
                                                        {" ?", "?"},
                                                        {" !", "!"},
                                                        {" ,", ","},
                                                        {" ' ", "'"},
                                                        {" n't", "n't"},
                                                        {" 'm", "'m"},
                                                        {" 's", "'s"},
                                                        {" 've", "'ve"},
                                                        {" 're", "'re"}}) {
    text = absl::StrReplaceAll(text, {{from, to}});
  }
  return text;
}

absl::StatusOr<std::string> DecodeForRouge(const Tokenizer& tokenizer,
                                           const std::vector<int>& ids) {
  ASSIGN_OR_RETURN(std::string text, tokenizer.Decode(ids));
  return CleanUpTokenizationSpaces(std::move(text));
}

absl::StatusOr<size_t> ZlibCompressedSize(const std::string& text) {
  uLongf size = compressBound(text.size());
  std::vector<Bytef> buffer(size);
  if (compress2(buffer.data(), &size,
                reinterpret_cast<const Bytef*>(text.data()), text.size(),
                Z_DEFAULT_COMPRESSION) != Z_OK) {
    return absl::InternalError("zlib could not compress an answer");
  }
  return size;
}

}  // namespace lethe
