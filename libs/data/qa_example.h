// Turning a question-answer pair into model inputs, exactly as
// open-unlearning does for TOFU: the prompt is
//   user_start_tag + question + user_end_tag + asst_start_tag
// the full text is prompt + answer_prefix + answer, tokenized as one string
// with BOS, truncated to max_length tokens (keeping the start, so the
// answer's first tokens survive), then EOS appended. Labels are kIgnoreIndex
// over the prompt's tokens and the token ids over the answer (and EOS).
//
//   ASSIGN_OR_RETURN(PromptTemplate chat, PromptTemplateByName("llama2_chat"));
//   ASSIGN_OR_RETURN(QaExample example,
//                    TokenizeQa(tokenizer, chat, record.question,
//                               record.answer, /*max_length=*/512));
#ifndef LETHE_LIBS_DATA_QA_EXAMPLE_H_
#define LETHE_LIBS_DATA_QA_EXAMPLE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "libs/data/tofu_dataset.h"
#include "libs/tokenizer/tokenizer.h"

namespace lethe {

inline constexpr int kIgnoreIndex = -100;

// A prompt format, as data. Tag names follow open-unlearning's template_args.
struct PromptTemplate {
  std::string name;
  std::string user_start_tag;
  std::string user_end_tag;
  std::string asst_start_tag;
  // Unused for single-turn examples (open-unlearning adds it only after
  // in-context examples); kept so templates carry all of their tags.
  std::string asst_end_tag;
  // Text between the prompt and the answer that belongs to the answer's
  // tokens (" " for the plain template, so "Answer:" + " The..." tokenizes
  // at a word boundary).
  std::string answer_prefix;

  std::string WrapPrompt(const std::string& question) const {
    return user_start_tag + question + user_end_tag + asst_start_tag;
  }
};

// "llama2_chat": open-unlearning's Llama-2-7b-chat tags
//   ("[INST] ", " [/INST]", "", " ").
// "plain": "Question: {q}\nAnswer: {a}" for Lethe's own small models.
// INVALID_ARGUMENT listing the presets for any other name.
absl::StatusOr<PromptTemplate> PromptTemplateByName(const std::string& name);

struct QaExample {
  std::vector<int> input_ids;
  std::vector<int> labels;  // kIgnoreIndex where no loss is taken.
  int answer_tokens() const;
};

absl::StatusOr<QaExample> TokenizeQa(const Tokenizer& tokenizer,
                                     const PromptTemplate& prompt_template,
                                     const std::string& question,
                                     const std::string& answer, int max_length);

// TokenizeQa over every record's question and answer, in order.
absl::StatusOr<std::vector<QaExample>> TokenizeRecords(
    const Tokenizer& tokenizer, const PromptTemplate& prompt_template,
    const std::vector<TofuRecord>& records, int max_length);

// The prompt's token ids (with BOS), the input for generating an answer.
absl::StatusOr<std::vector<int>> TokenizePrompt(
    const Tokenizer& tokenizer, const PromptTemplate& prompt_template,
    const std::string& question, int max_length);

}  // namespace lethe

#endif  // LETHE_LIBS_DATA_QA_EXAMPLE_H_
