#include "libs/eval/tofu_evaluator.h"

#include <torch/types.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "gtest/gtest.h"
#include "libs/data/qa_example.h"
#include "libs/data/tofu_dataset.h"
#include "libs/eval/open_unlearning_logs.h"
#include "libs/eval/rouge.h"
#include "libs/eval/tofu_eval_fixture.h"
#include "libs/eval/tofu_eval_metrics.h"
#include "libs/eval/tofu_metrics.h"
#include "libs/eval/tofu_summary.h"
#include "libs/model/generation.h"
#include "libs/model/hf_checkpoint.h"
#include "libs/tokenizer/tokenizer.h"

namespace lethe {
namespace {

using Json = nlohmann::ordered_json;

constexpr int kMaxNewTokens = 8;

// A tiny random model evaluated once on tiny data (3 questions per set).
class TofuEvaluatorTest : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(testing::TempDir() + "/tofu_evaluator");
    std::filesystem::remove_all(*dir_);
    ASSERT_TRUE(WriteTinyTofuModel(*dir_ + "/model", 1).ok());
    ASSERT_TRUE(WriteTinyTofuData(*dir_ + "/data", 3).ok());
    tokenizer_ = Tokenizer::Load(*dir_ + "/model/tokenizer.model")->release();
    model_ = new std::shared_ptr<LlamaForCausalLM>(
        *LoadLlamaCheckpoint(*dir_ + "/model"));
    absl::StatusOr<TofuEvalData> data =
        ReadTofuEvalData(*dir_ + "/data", "forget10");
    ASSERT_TRUE(data.ok()) << data.status();
    data_ = new TofuEvalData(*std::move(data));
    absl::StatusOr<TofuEvalResult> result =
        Evaluator().Evaluate(*data_, nullptr);
    ASSERT_TRUE(result.ok()) << result.status();
    result_ = new TofuEvalResult(*std::move(result));
  }

  static TofuEvaluator Evaluator(TofuEvalOptions options = {}) {
    options.max_new_tokens = kMaxNewTokens;
    options.batch_size = 2;
    return TofuEvaluator(**model_, *tokenizer_, Template(), options);
  }
  static PromptTemplate Template() { return *PromptTemplateByName("plain"); }
  static const Json& Entry(const std::string& metric, int index) {
    return result_->eval_log.at(metric)
        .at("value_by_index")
        .at(std::to_string(index));
  }

  // The mean NLL of `answer`'s tokens (EOS included) by a plain forward pass.
  static double HandAverageLoss(const std::string& question,
                                const std::string& answer) {
    const QaExample example =
        *TokenizeQa(*tokenizer_, Template(), question, answer, 512);
    torch::NoGradGuard no_grad;
    const at::Tensor ids =
        torch::tensor(std::vector<int64_t>(example.input_ids.begin(),
                                           example.input_ids.end()))
            .unsqueeze(0);
    const at::Tensor log_probs =
        torch::log_softmax((*model_)->Forward(ids)[0].to(at::kDouble), -1);
    double total = 0;
    int count = 0;
    for (size_t t = 1; t < example.labels.size(); ++t) {
      if (example.labels[t] == kIgnoreIndex) continue;
      total -= log_probs[t - 1][example.labels[t]].item<double>();
      ++count;
    }
    return total / count;
  }

  static std::string* dir_;
  static Tokenizer* tokenizer_;
  static std::shared_ptr<LlamaForCausalLM>* model_;
  static TofuEvalData* data_;
  static TofuEvalResult* result_;
};

std::string* TofuEvaluatorTest::dir_ = nullptr;
Tokenizer* TofuEvaluatorTest::tokenizer_ = nullptr;
std::shared_ptr<LlamaForCausalLM>* TofuEvaluatorTest::model_ = nullptr;
TofuEvalData* TofuEvaluatorTest::data_ = nullptr;
TofuEvalResult* TofuEvaluatorTest::result_ = nullptr;

TEST_F(TofuEvaluatorTest, WritesEveryOpenUnlearningMetric) {
  std::vector<std::string> keys;
  for (const auto& [key, value] : result_->eval_log.items()) {
    keys.push_back(key);
  }
  const std::vector<std::string> expected = {"exact_memorization",
                                             "extraction_strength",
                                             "forget_Q_A_PARA_Prob",
                                             "forget_Q_A_PERT_Prob",
                                             "forget_Q_A_Prob",
                                             "forget_Q_A_ROUGE",
                                             "forget_quality",
                                             "forget_truth_ratio",
                                             "mia_gradnorm",
                                             "mia_loss",
                                             "mia_min_k",
                                             "mia_min_k_plus_plus",
                                             "mia_zlib",
                                             "model_utility",
                                             "privleak",
                                             "ra_Q_A_PERT_Prob",
                                             "ra_Q_A_Prob",
                                             "ra_Q_A_Prob_normalised",
                                             "ra_Q_A_ROUGE",
                                             "ra_Truth_Ratio",
                                             "retain_Q_A_PARA_Prob",
                                             "retain_Q_A_PERT_Prob",
                                             "retain_Q_A_Prob",
                                             "retain_Q_A_ROUGE",
                                             "retain_Truth_Ratio",
                                             "wf_Q_A_PERT_Prob",
                                             "wf_Q_A_Prob",
                                             "wf_Q_A_Prob_normalised",
                                             "wf_Q_A_ROUGE",
                                             "wf_Truth_Ratio"};
  EXPECT_EQ(keys, expected);
  EXPECT_EQ(result_->eval_log["forget_Q_A_Prob"]["value_by_index"].size(),
            data_->forget.size());
  EXPECT_EQ(result_->eval_log["mia_loss"]["holdout"]["value_by_index"].size(),
            data_->holdout.size());
  // Without a retain log, as open-unlearning: forget_quality is null.
  EXPECT_TRUE(result_->eval_log["forget_quality"]["agg_value"].is_null());
  EXPECT_FALSE(result_->summary.contains("forget_quality"));
  EXPECT_TRUE(result_->eval_log["model_utility"]["agg_value"].is_number());
}

TEST_F(TofuEvaluatorTest, LayoutMatchesOpenUnlearningLogs) {
  const std::string dir = OpenUnlearningLogDir();
  if (dir.empty()) LETHE_SKIP_WITHOUT_SHARED_DATA(kOpenUnlearningLogsMissing);
  const Json reference = ReadLogOrFail(EvalLogPaths(dir).front());
  for (const auto& [metric, value] : result_->eval_log.items()) {
    ASSERT_TRUE(reference.contains(metric)) << metric;
    const Json& theirs = reference[metric];
    std::vector<std::string> our_fields, their_fields;
    for (const auto& [field, v] : value.items()) our_fields.push_back(field);
    for (const auto& [field, v] : theirs.items()) their_fields.push_back(field);
    EXPECT_EQ(our_fields, their_fields) << metric;
    const Json* ours_by_index = nullptr;
    const Json* theirs_by_index = nullptr;
    if (value.contains("value_by_index")) {
      ours_by_index = &value["value_by_index"];
      theirs_by_index = &theirs["value_by_index"];
    } else if (value.contains("forget")) {
      ours_by_index = &value["forget"]["value_by_index"];
      theirs_by_index = &theirs["forget"]["value_by_index"];
    }
    if (ours_by_index == nullptr) continue;
    std::vector<std::string> our_entry, their_entry;
    for (const auto& [f, v] : ours_by_index->at("0").items()) {
      our_entry.push_back(f);
      EXPECT_EQ(v.type(), theirs_by_index->at("0").at(f).type())
          << metric << "." << f;
    }
    for (const auto& [f, v] : theirs_by_index->at("0").items()) {
      their_entry.push_back(f);
    }
    EXPECT_EQ(our_entry, their_entry) << metric;
  }
}

TEST_F(TofuEvaluatorTest, ProbabilityEqualsAHandRunForwardPass) {
  for (size_t i = 0; i < data_->forget.size(); ++i) {
    const TofuRecord& record = data_->forget[i];
    const double loss = HandAverageLoss(record.question, record.answer);
    const Json& entry = Entry("forget_Q_A_Prob", i);
    EXPECT_NEAR(entry["avg_loss"].get<double>(), loss, 1e-5);
    EXPECT_NEAR(entry["prob"].get<double>(), std::exp(-loss), 1e-6);
    // mia_loss scores the same answers.
    EXPECT_EQ(result_->eval_log["mia_loss"]["forget"]["value_by_index"]
                               [std::to_string(i)]["score"],
              entry["avg_loss"]);
    const Json& paraphrased = Entry("forget_Q_A_PARA_Prob", i);
    EXPECT_NEAR(paraphrased["avg_loss"].get<double>(),
                HandAverageLoss(record.question, *record.paraphrased_answer),
                1e-5);
    const Json& perturbed = Entry("forget_Q_A_PERT_Prob", i);
    ASSERT_EQ(perturbed["avg_loss"].size(), record.perturbed_answers.size());
    EXPECT_NEAR(perturbed["avg_loss"][1].get<double>(),
                HandAverageLoss(record.question, record.perturbed_answers[1]),
                1e-5);
  }
}

TEST_F(TofuEvaluatorTest, TruthRatiosComeFromTheParaphrasedAndPerturbed) {
  for (size_t i = 0; i < data_->forget.size(); ++i) {
    const std::vector<double> perturbed =
        Entry("forget_Q_A_PERT_Prob", i)["avg_loss"].get<std::vector<double>>();
    EXPECT_EQ(
        Entry("forget_truth_ratio", i)["score"].get<double>(),
        TruthRatio(Entry("forget_Q_A_PARA_Prob", i)["avg_loss"], perturbed));
  }
  for (size_t i = 0; i < data_->real_authors.size(); ++i) {
    // Real authors have no paraphrase: the answer itself is the true one.
    const Json& perturbed = Entry("ra_Q_A_PERT_Prob", i);
    EXPECT_EQ(Entry("ra_Truth_Ratio", i)["score"].get<double>(),
              TruthRatio(Entry("ra_Q_A_Prob", i)["avg_loss"],
                         perturbed["avg_loss"].get<std::vector<double>>()));
    EXPECT_EQ(
        Entry("ra_Q_A_Prob_normalised", i)["prob"].get<double>(),
        NormalisedProbability(Entry("ra_Q_A_Prob", i)["prob"],
                              perturbed["prob"].get<std::vector<double>>()));
  }
}

TEST_F(TofuEvaluatorTest, RougeScoresTheGreedyGeneration) {
  for (size_t i = 0; i < data_->retain.size(); ++i) {
    const TofuRecord& record = data_->retain[i];
    const std::vector<int> prompt =
        *TokenizePrompt(*tokenizer_, Template(), record.question, 512);
    std::vector<int64_t> tokens = GreedyGenerate(
        **model_, std::vector<int64_t>(prompt.begin(), prompt.end()),
        kMaxNewTokens, (*model_)->config().eos_token_ids);
    if (!tokens.empty() && tokens.back() == tokenizer_->eos_id()) {
      tokens.pop_back();
    }
    const std::string generation = std::string(absl::StripAsciiWhitespace(
        CleanUpTokenizationSpaces(*tokenizer_->Decode(
            std::vector<int>(tokens.begin(), tokens.end())))));
    const Json& entry = Entry("retain_Q_A_ROUGE", i);
    EXPECT_EQ(entry["ground_truth"], record.answer);
    EXPECT_EQ(entry["input"], Template().WrapPrompt(record.question));
    EXPECT_EQ(entry["generation"], generation);
    const RougeScores rouge = ScoreRouge(record.answer, generation);
    EXPECT_EQ(entry["rougeL_recall"].get<double>(), rouge.rouge_l.recall);
    EXPECT_EQ(entry["rouge1_recall"].get<double>(), rouge.rouge1.recall);
  }
}

TEST_F(TofuEvaluatorTest, MemorizationScoresCountArgmaxMatches) {
  for (size_t i = 0; i < data_->forget.size(); ++i) {
    const double em = Entry("exact_memorization", i)["score"];
    const double es = Entry("extraction_strength", i)["score"];
    EXPECT_GE(em, 0);
    EXPECT_LE(em, 1);
    EXPECT_GT(es, 0) << "at least the last token counts";
    EXPECT_LE(es, 1);
  }
}

TEST_F(TofuEvaluatorTest, FilesRoundTripThroughTheSummary) {
  const std::string out = *dir_ + "/out";
  ASSERT_TRUE(WriteTofuEvalFiles(*result_, out).ok());
  absl::StatusOr<Json> log = ReadTofuEvalLog(out + "/TOFU_EVAL.json");
  ASSERT_TRUE(log.ok()) << log.status();
  EXPECT_EQ(*log, result_->eval_log);
  absl::StatusOr<Json> written = ReadTofuEvalLog(out + "/TOFU_SUMMARY.json");
  ASSERT_TRUE(written.ok());
  EXPECT_EQ(nlohmann::json(*written), result_->summary);
  for (const char* key :
       {"forget_Q_A_Prob", "forget_Q_A_ROUGE", "mia_loss", "mia_min_k",
        "model_utility", "privleak", "extraction_strength"}) {
    EXPECT_TRUE(result_->summary.contains(key)) << key;
  }
  // The summary is open-unlearning's, recomputed independently of
  // SummarizeTofuEval from the per-question values.
  ExpectSummaryNear(result_->summary, PlainTofuSummary(*log, nullptr));
}

// open-unlearning's model_utility: the harmonic mean of the nine utility
// metrics' aggregates (probability, ROUGE-L recall and truth-ratio score on
// the retain set, the real authors and the world facts; normalised
// probabilities for the last two), computed here from the agg_value of each
// metric of the log.
double HarmonicMeanOfUtilityMetrics(const Json& log) {
  double reciprocal_sum = 0;
  int count = 0;
  for (const char* metric :
       {"retain_Q_A_Prob", "retain_Q_A_ROUGE", "retain_Truth_Ratio",
        "ra_Q_A_Prob_normalised", "ra_Q_A_ROUGE", "ra_Truth_Ratio",
        "wf_Q_A_Prob_normalised", "wf_Q_A_ROUGE", "wf_Truth_Ratio"}) {
    reciprocal_sum += 1 / log.at(metric).at("agg_value").get<double>();
    ++count;
  }
  return count / reciprocal_sum;
}

TEST_F(TofuEvaluatorTest, ModelUtilityIsTheHarmonicMeanOfTheUtilityMetrics) {
  // The random model's generations share no word with the answers and it
  // finds no retain answer likelier than its perturbations, so some of its
  // utility metrics, and with them its model_utility, are 0.
  EXPECT_EQ(result_->eval_log["model_utility"]["agg_value"].get<double>(),
            HarmonicMeanOfUtilityMetrics(result_->eval_log));
  // The same log as a model that recalled part of each answer and preferred
  // the true retain answers would have it: every utility metric is then
  // above 0 and counts.
  Json log = result_->eval_log;
  int question = 0;
  for (const char* metric :
       {"retain_Q_A_ROUGE", "ra_Q_A_ROUGE", "wf_Q_A_ROUGE"}) {
    double sum = 0;
    int count = 0;
    for (auto& [index, entry] : log[metric]["value_by_index"].items()) {
      entry["rougeL_recall"] = 0.25 + 0.125 * (question++ % 5);
      sum += entry["rougeL_recall"].get<double>();
      ++count;
    }
    log[metric]["agg_value"] = sum / count;
  }
  double sum = 0;
  int count = 0;
  for (auto& [index, entry] :
       log["retain_Truth_Ratio"]["value_by_index"].items()) {
    entry["score"] = 0.5 + 0.25 * (count % 3);  // P(perturbed) / P(true)
    sum += std::max(0.0, 1 - entry["score"].get<double>());
    ++count;
  }
  log["retain_Truth_Ratio"]["agg_value"] = sum / count;
  const double expected = HarmonicMeanOfUtilityMetrics(log);
  ASSERT_GT(expected, 0);
  absl::StatusOr<nlohmann::json> summary = SummarizeTofuEval(log, nullptr);
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_NEAR((*summary)["model_utility"].get<double>(), expected,
              1e-12 * expected);
}

TEST_F(TofuEvaluatorTest, AgainstItsOwnLogForgetQualityIsOne) {
  absl::StatusOr<TofuEvalResult> again =
      Evaluator().Evaluate(*data_, &result_->eval_log);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->summary["forget_quality"].get<double>(), 1.0);
  EXPECT_EQ(again->eval_log["forget_quality"]["agg_value"].get<double>(), 1.0);
  EXPECT_NEAR(again->summary["privleak"].get<double>(), 0, 1e-6);
}

TEST_F(TofuEvaluatorTest, ReferenceAttackSubtractsTheReferenceLoss) {
  TofuEvalOptions options;
  options.reference_model = model_->get();
  absl::StatusOr<TofuEvalResult> result =
      Evaluator(options).Evaluate(*data_, nullptr);
  ASSERT_TRUE(result.ok()) << result.status();
  const Json& reference = result->eval_log["mia_reference"];
  for (const auto& [index, entry] :
       reference["forget"]["value_by_index"].items()) {
    EXPECT_EQ(entry["score"].get<double>(), 0) << "same model, same loss";
  }
  EXPECT_EQ(reference["auc"].get<double>(), 0.5);
}

TEST_F(TofuEvaluatorTest, OneAtATimeGenerationGivesTheSameLog) {
  TofuEvalOptions options;
  options.batched_generation = false;
  absl::StatusOr<TofuEvalResult> result =
      Evaluator(options).Evaluate(*data_, nullptr);
  ASSERT_TRUE(result.ok()) << result.status();
  for (const char* metric : {"forget_Q_A_ROUGE", "retain_Q_A_ROUGE",
                             "ra_Q_A_ROUGE", "wf_Q_A_ROUGE"}) {
    EXPECT_EQ(result->eval_log[metric], result_->eval_log[metric]) << metric;
  }
}

}  // namespace
}  // namespace lethe
