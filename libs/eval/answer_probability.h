// TOFU's "probability" metric: for each question, exp(-mean NLL of the
// answer tokens) under the model, as open-unlearning computes it (answer
// tokens as labelled by TokenizeQa, EOS included).
//
//   ASSIGN_OR_RETURN(std::vector<AnswerProbability> scores,
//                    ScoreAnswers(model, examples, pad_id, {.batch_size =
//                    16}));
//   double mean = MeanProbability(scores);
#ifndef LETHE_LIBS_EVAL_ANSWER_PROBABILITY_H_
#define LETHE_LIBS_EVAL_ANSWER_PROBABILITY_H_

#include <vector>

#include "absl/status/statusor.h"
#include "libs/data/qa_example.h"
#include "libs/model/llama_model.h"

namespace lethe {

struct AnswerProbability {
  double avg_loss = 0;     // Mean NLL over the answer tokens.
  double probability = 0;  // exp(-avg_loss).
  int answer_tokens = 0;
};

struct ScoringOptions {
  int batch_size = 16;
  bool bf16_autocast = false;
};

// Scores every example, in order, without gradients.
absl::StatusOr<std::vector<AnswerProbability>> ScoreAnswers(
    LlamaForCausalLM& model, const std::vector<QaExample>& examples, int pad_id,
    const ScoringOptions& options = {});

double MeanProbability(const std::vector<AnswerProbability>& scores);

}  // namespace lethe

#endif  // LETHE_LIBS_EVAL_ANSWER_PROBABILITY_H_
