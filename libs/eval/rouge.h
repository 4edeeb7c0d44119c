// ROUGE-1 and ROUGE-L as Google's rouge_score package computes them with
// RougeScorer(["rouge1", "rougeL"], use_stemmer=True), the scorer behind
// open-unlearning's TOFU ROUGE metric.
//
//   RougeScores scores = ScoreRouge(ground_truth, generation);
//   double tofu_rouge = scores.rouge_l.recall;  // open-unlearning's
//                                               // "rougeL_recall"
//
// Tokens: the text is lower-cased (Unicode rules: only U+0130 and the Kelvin
// sign U+212A lower-case to ASCII letters), every run of characters other
// than [a-z0-9] becomes a separator, and tokens longer than three characters
// are Porter-stemmed (porter_stemmer.h). ROUGE-1 counts clipped unigram
// matches; ROUGE-L uses the longest common subsequence of the two token
// lists. F-measure is 2PR / (P + R), 0 when P + R is 0.
#ifndef LETHE_LIBS_EVAL_ROUGE_H_
#define LETHE_LIBS_EVAL_ROUGE_H_

#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace lethe {

struct RougeScore {
  double precision = 0;
  double recall = 0;
  double fmeasure = 0;
};

struct RougeScores {
  RougeScore rouge1;
  RougeScore rouge_l;
};

// rouge_score's tokenizer with stemming. `text` is UTF-8; invalid bytes are
// separators.
std::vector<std::string> RougeTokenize(absl::string_view text);

// Scores `prediction` against the reference `target` (rouge_score's
// scorer.score(target, prediction)).
RougeScores ScoreRouge(absl::string_view target, absl::string_view prediction);

}  // namespace lethe

#endif  // LETHE_LIBS_EVAL_ROUGE_H_
