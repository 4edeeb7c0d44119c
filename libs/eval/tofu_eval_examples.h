// The model inputs of a TOFU evaluation (tofu_evaluator.h), tokenized once:
// every (question, answer) pair that a metric scores, in two pools (the
// forget and holdout answers, which the mia_* attacks score in detail, and
// all others) with each set's rows of indices into its pool; and the prompts
// of the ROUGE metrics with the texts their entries show.
//
//   ASSIGN_OR_RETURN(TofuEvalExamples examples,
//                    TokenizeEvalExamples(tokenizer, chat, data, 512));
//   ASSIGN_OR_RETURN(std::vector<AnswerScore> scores,
//                    ScoreExamples(model, examples.others, ...));
//   std::vector<std::vector<AnswerScore>> perturbed =
//       examples.forget_pert.Multi(scores);  // Per forget question.
#ifndef LETHE_LIBS_EVAL_TOFU_EVAL_EXAMPLES_H_
#define LETHE_LIBS_EVAL_TOFU_EVAL_EXAMPLES_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "libs/data/qa_example.h"
#include "libs/eval/answer_scoring.h"
#include "libs/eval/tofu_eval_data.h"
#include "libs/tokenizer/tokenizer.h"

namespace lethe {

// A set's answers of one kind: `rows[i]` lists question i's examples in the
// pool (one for answers and paraphrases, several for perturbed answers).
struct AnswerRows {
  std::vector<std::vector<size_t>> rows;

  // The score of each question's first example, from the pool's scores.
  std::vector<AnswerScore> Single(const std::vector<AnswerScore>& all) const;
  // The scores of each question's examples.
  std::vector<std::vector<AnswerScore>> Multi(
      const std::vector<AnswerScore>& all) const;
};

struct TofuEvalExamples {
  // The forget answers, then the holdout answers.
  std::vector<QaExample> detailed;
  AnswerRows forget_qa, holdout_qa;
  // The forget paraphrased and perturbed answers; the retain answers,
  // paraphrased and perturbed answers; the real authors' and world facts'
  // answers and perturbed answers; in this order.
  std::vector<QaExample> others;
  AnswerRows forget_para, forget_pert;
  AnswerRows retain_qa, retain_para, retain_pert;
  AnswerRows ra_qa, ra_pert, wf_qa, wf_pert;
};

// TokenizeQa of every pair (`max_length` tokens at most). Tokenizer errors.
absl::StatusOr<TofuEvalExamples> TokenizeEvalExamples(
    const Tokenizer& tokenizer, const PromptTemplate& prompt_template,
    const TofuEvalData& data, int max_length);

// One greedy generation per forget, retain, real-author and world-fact
// question, in this order.
struct RougePrompts {
  struct Set {
    std::string metric;  // e.g. "forget_Q_A_ROUGE"
    size_t questions = 0;
  };
  std::vector<Set> sets;
  // Per question, set after set:
  std::vector<std::vector<int64_t>> prompts;  // TokenizePrompt's ids.
  std::vector<std::string> inputs;            // The prompt, decoded.
  // The prompt and answer decoded together, the input cut out, stripped.
  std::vector<std::string> ground_truths;
};

// The prompts and texts, decoded with DecodeForRouge as open-unlearning
// decodes them. Tokenizer errors.
absl::StatusOr<RougePrompts> TokenizeRougePrompts(
    const Tokenizer& tokenizer, const PromptTemplate& prompt_template,
    const TofuEvalData& data, int max_length);

}  // namespace lethe

#endif  // LETHE_LIBS_EVAL_TOFU_EVAL_EXAMPLES_H_
