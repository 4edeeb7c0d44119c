#include "libs/eval/rouge.h"

#include <algorithm>
#include <cmath>
#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "libs/eval/open_unlearning_logs.h"
#include "nlohmann/json.hpp"

namespace lethe {
namespace {

using Tokens = std::vector<std::string>;

TEST(RougeTokenizeTest, LowerCasesAndSplitsOnNonAlphanumerics) {
  EXPECT_EQ(RougeTokenize("Hello, World! It's 2024..."),
            (Tokens{"hello", "world", "it", "s", "2024"}));
  EXPECT_EQ(RougeTokenize("  \t\n"), Tokens{});
  EXPECT_EQ(RougeTokenize("a-b_c"), (Tokens{"a", "b", "c"}));
}

TEST(RougeTokenizeTest, StemsOnlyTokensLongerThanThree) {
  // "was" would stem to "wa" and "ties" stems to "tie".
  EXPECT_EQ(RougeTokenize("He was running quickly; ties"),
            (Tokens{"he", "was", "run", "quickli", "tie"}));
}

TEST(RougeTokenizeTest, NonAsciiCharactersSeparateTokens) {
  EXPECT_EQ(RougeTokenize("caf\u00e9 na\u00efve"), (Tokens{"caf", "na", "ve"}));
  // Python lower-cases U+0130 to "i" + U+0307 and the Kelvin sign to "k".
  EXPECT_EQ(RougeTokenize("\u0130stanbul"), (Tokens{"i", "stanbul"}));
  EXPECT_EQ(RougeTokenize("\u212Aelvin"), (Tokens{"kelvin"}));
  EXPECT_EQ(RougeTokenize("ab\xff"
                          "cd"),
            (Tokens{"ab", "cd"}));
}

TEST(ScoreRougeTest, ReorderedSentence) {
  const RougeScores scores =
      ScoreRouge("the cat sat on the mat", "the cat on the mat sat");
  EXPECT_EQ(scores.rouge1.precision, 1.0);
  EXPECT_EQ(scores.rouge1.recall, 1.0);
  EXPECT_EQ(scores.rouge1.fmeasure, 1.0);
  EXPECT_DOUBLE_EQ(scores.rouge_l.precision, 5.0 / 6.0);
  EXPECT_DOUBLE_EQ(scores.rouge_l.recall, 5.0 / 6.0);
  EXPECT_DOUBLE_EQ(scores.rouge_l.fmeasure, 5.0 / 6.0);
}

TEST(ScoreRougeTest, ClipsRepeatedUnigrams) {
  const RougeScores scores = ScoreRouge("cat cat dog", "cat cat cat cat");
  EXPECT_DOUBLE_EQ(scores.rouge1.precision, 2.0 / 4.0);
  EXPECT_DOUBLE_EQ(scores.rouge1.recall, 2.0 / 3.0);
  EXPECT_DOUBLE_EQ(scores.rouge_l.recall, 2.0 / 3.0);
}

TEST(ScoreRougeTest, ShortReferenceInLongAnswer) {
  // TOFU real-author question 0 as open-unlearning scored it.
  const RougeScores scores = ScoreRouge(
      "William Shakespeare",
      "The play 'Romeo and Juliet' was written by William Shakespeare.");
  EXPECT_EQ(scores.rouge1.recall, 1.0);
  EXPECT_EQ(scores.rouge_l.recall, 1.0);
  EXPECT_EQ(scores.rouge_l.fmeasure, 0.33333333333333337);
}

TEST(ScoreRougeTest, EmptySideScoresZero) {
  const RougeScores empty_prediction = ScoreRouge("some answer", "...");
  EXPECT_EQ(empty_prediction.rouge1.recall, 0.0);
  EXPECT_EQ(empty_prediction.rouge_l.recall, 0.0);
  EXPECT_EQ(empty_prediction.rouge_l.fmeasure, 0.0);
  const RougeScores empty_target = ScoreRouge("", "an answer");
  EXPECT_EQ(empty_target.rouge1.precision, 0.0);
  EXPECT_EQ(empty_target.rouge_l.precision, 0.0);
}

// Every ROUGE entry of open-unlearning's published TOFU logs.
TEST(ScoreRougeTest, AgreesWithOpenUnlearningLogs) {
  const std::string dir = OpenUnlearningLogDir();
  if (dir.empty()) LETHE_SKIP_WITHOUT_SHARED_DATA(kOpenUnlearningLogsMissing);
  int checked = 0;
  double max_error = 0;
  for (const std::string& path : EvalLogPaths(dir)) {
    const nlohmann::ordered_json log = ReadLogOrFail(path);
    for (const auto& [metric, result] : log.items()) {
      if (!absl::EndsWith(metric, "_ROUGE")) continue;
      for (const auto& [index, entry] : result.at("value_by_index").items()) {
        const RougeScores scores =
            ScoreRouge(entry.at("ground_truth").get<std::string>(),
                       entry.at("generation").get<std::string>());
        const double expected[] = {entry["rouge1_recall"].get<double>(),
                                   entry.at("rougeL_recall").get<double>(),
                                   entry.at("rougeL_f1").get<double>()};
        const double actual[] = {scores.rouge1.recall, scores.rouge_l.recall,
                                 scores.rouge_l.fmeasure};
        for (int i = 0; i < 3; ++i) {
          max_error = std::max(max_error, std::abs(actual[i] - expected[i]));
          EXPECT_EQ(actual[i], expected[i])
              << path << " " << metric << "[" << index << "] score " << i;
        }
        ++checked;
      }
    }
  }
  EXPECT_GT(checked, 8000);
  std::cout << "checked " << checked << " ROUGE entries; max abs error "
            << max_error << "\n";
}

}  // namespace
}  // namespace lethe
