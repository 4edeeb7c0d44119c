#include "libs/eval/tofu_eval_metrics.h"

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "libs/eval/tofu_eval_fixture.h"
#include "libs/eval/tofu_metrics.h"
#include "libs/tokenizer/tokenizer.h"

namespace lethe {
namespace {

using Json = nlohmann::ordered_json;

AnswerScore Score(float avg_loss, float prob) {
  AnswerScore score;
  score.avg_loss = avg_loss;
  score.prob = prob;
  return score;
}

// Expected outputs of transformers' clean_up_tokenization, written by hand
// from its replacements (Python's str.replace, in order).
TEST(CleanUpTokenizationSpacesTest, MatchesTransformersCleanUp) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"Hello , world ! It 's fine .", "Hello, world! It's fine."},
      {"do n't", "don't"},
      {"a ' b", "a'b"},
      {"Why ?", "Why?"},
      {"I 'm sure you 've seen they 're here",
       "I'm sure you've seen they're here"},
      {"a , b , c", "a, b, c"},
      {"ca n't stop", "can't stop"},
      // " ' " first, so "it ' s" loses both spaces.
      {"it ' s", "it's"},
      // One pass per pattern: of two spaces before ".", one is left.
      {"end  .", "end ."},
      // Non-overlapping, left to right: the second " ' " shares a space.
      {" ' ' ", "'' "},
      // No word boundaries: " 're" inside a word too.
      {"we 'red", "we'red"},
      // Case-sensitive.
      {"IT 'S", "IT 'S"},
      {"Hello world", "Hello world"},
      {"", ""},
  };
  for (const auto& [input, expected] : cases) {
    EXPECT_EQ(CleanUpTokenizationSpaces(input), expected)
        << "'" << input << "'";
  }
}

TEST(DecodeForRougeTest, DecodesAndCleansUp) {
  std::unique_ptr<Tokenizer> tokenizer =
      *Tokenizer::FromSerialized(CharacterTokenizerModel());
  const std::vector<int> ids = *tokenizer->Encode("Hello , world !");
  absl::StatusOr<std::string> text = DecodeForRouge(*tokenizer, ids);
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_EQ(*text, "Hello, world!");
}

TEST(ZlibCompressedSizeTest, MatchesPythonsZlibCompress) {
  // len(zlib.compress(text.encode())) in Python.
  EXPECT_EQ(*ZlibCompressedSize(""), 8u);
  EXPECT_EQ(*ZlibCompressedSize("a"), 9u);
  EXPECT_EQ(*ZlibCompressedSize("hello hello hello hello"), 16u);
  std::string repeated;
  for (int i = 0; i < 1000; ++i) repeated += "ab";
  EXPECT_EQ(*ZlibCompressedSize(repeated), 24u);
}

TEST(TofuEvalMetricsTest, ProbabilityMetricLayout) {
  EXPECT_EQ(ProbabilityMetric({Score(1, 0.25f), Score(2, 0.75f)}).dump(),
            R"({"agg_value":0.5,"value_by_index":{)"
            R"("0":{"prob":0.25,"avg_loss":1.0},)"
            R"("1":{"prob":0.75,"avg_loss":2.0}}})");
  EXPECT_EQ(Metric(0.0, {}).dump(), R"({"agg_value":0.0,"value_by_index":{}})");
}

TEST(TofuEvalMetricsTest, MultiProbabilityMetricAveragesPerQuestionMeans) {
  // Question means 0.5 and 1.0, so 0.75 (the mean of all three is 2/3).
  EXPECT_EQ(MultiProbabilityMetric(
                {{Score(1, 0.25f), Score(3, 0.75f)}, {Score(0, 1.0f)}})
                .dump(),
            R"({"agg_value":0.75,"value_by_index":{)"
            R"("0":{"prob":[0.25,0.75],"avg_loss":[1.0,3.0]},)"
            R"("1":{"prob":[1.0],"avg_loss":[0.0]}}})");
}

TEST(TofuEvalMetricsTest, TruthRatiosUseAverageLosses) {
  const std::vector<AnswerScore> correct = {Score(1, 0.5f), Score(2, 0.25f)};
  const std::vector<std::vector<AnswerScore>> perturbed = {
      {Score(2, 0.1f), Score(4, 0.1f)}, {Score(1, 0.9f)}};
  const std::vector<double> ratios = {TruthRatio(1, {2, 4}),
                                      TruthRatio(2, {1})};
  for (const auto aggregate :
       {TruthRatioAggregate::kCloserToOne, TruthRatioAggregate::kOneMinus}) {
    const Json metric = TruthRatioMetric(correct, perturbed, aggregate);
    EXPECT_EQ(metric["value_by_index"]["0"]["score"].get<double>(), ratios[0]);
    EXPECT_EQ(metric["value_by_index"]["1"]["score"].get<double>(), ratios[1]);
    EXPECT_EQ(metric["agg_value"].get<double>(),
              aggregate == TruthRatioAggregate::kCloserToOne
                  ? MeanTruthRatioCloserToOne(ratios)
                  : MeanOneMinusTruthRatio(ratios));
  }
  const Json normalised = NormalisedProbabilityMetric(correct, perturbed);
  EXPECT_EQ(normalised["value_by_index"]["1"]["prob"].get<double>(),
            NormalisedProbability(0.25f, {0.9f}));
}

TEST(TofuEvalMetricsTest, ScoreMetricKeepsNullsOutOfTheMean) {
  EXPECT_EQ(ScoreMetric({0.5, std::nullopt, 1.0}).dump(),
            R"({"agg_value":0.75,"value_by_index":{"0":{"score":0.5},)"
            R"("1":{"score":null},"2":{"score":1.0}}})");
}

TEST(TofuEvalMetricsTest, MiaMetricLayoutAndErrors) {
  absl::StatusOr<Json> metric = MiaMetric("mia_loss", {1, 2}, {3, 4, 5});
  ASSERT_TRUE(metric.ok()) << metric.status();
  EXPECT_EQ(metric->dump(),
            R"({"forget":{"agg_value":1.5,"value_by_index":{)"
            R"("0":{"score":1.0},"1":{"score":2.0}}},)"
            R"("holdout":{"agg_value":4.0,"value_by_index":{)"
            R"("0":{"score":3.0},"1":{"score":4.0},"2":{"score":5.0}}},)"
            R"("auc":1.0,"agg_value":1.0})");
  const absl::Status error = MiaMetric("mia_zlib", {}, {1}).status();
  EXPECT_EQ(error.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StartsWith(error.message(), "mia_zlib: ")) << error;
}

TEST(TofuEvalMetricsTest, RougeMetricScoresGroundTruthAgainstGeneration) {
  const Json metric =
      RougeMetric({{"Q1", "the cat sat", "the cat"}, {"Q2", "a dog", "a dog"}});
  EXPECT_EQ(metric.dump(),
            R"({"agg_value":0.8333333333333333,"value_by_index":{)"
            R"("0":{"rouge1_recall":0.6666666666666666,"rougeL_f1":0.8,)"
            R"("rougeL_recall":0.6666666666666666,"input":"Q1",)"
            R"("ground_truth":"the cat sat","generation":"the cat"},)"
            R"("1":{"rouge1_recall":1.0,"rougeL_f1":1.0,"rougeL_recall":1.0,)"
            R"("input":"Q2","ground_truth":"a dog","generation":"a dog"}}})");
}

}  // namespace
}  // namespace lethe
