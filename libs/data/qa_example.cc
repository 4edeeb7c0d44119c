#include "libs/data/qa_example.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "libs/status/status_macros.h"

namespace lethe {

absl::StatusOr<PromptTemplate> PromptTemplateByName(const std::string& name) {
  if (name == "llama2_chat") {
    return PromptTemplate{.name = name,
                          .user_start_tag = "[INST] ",
                          .user_end_tag = " [/INST]",
                          .asst_start_tag = "",
                          .asst_end_tag = " ",
                          .answer_prefix = ""};
  }
  if (name == "plain") {
    return PromptTemplate{.name = name,
                          .user_start_tag = "Question: ",
                          .user_end_tag = "\n",
                          .asst_start_tag = "Answer:",
                          .asst_end_tag = "\n",
                          .answer_prefix = " "};
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown prompt template '", name, "': expected llama2_chat or plain"));
}

int QaExample::answer_tokens() const {
  return static_cast<int>(
      std::count_if(labels.begin(), labels.end(),
                    [](int label) { return label != kIgnoreIndex; }));
}

absl::StatusOr<std::vector<int>> TokenizePrompt(
    const Tokenizer& tokenizer, const PromptTemplate& prompt_template,
    const std::string& question, int max_length) {
  if (max_length < 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_length ", max_length, " leaves no room for text"));
  }
  ASSIGN_OR_RETURN(std::vector<int> ids,
                   tokenizer.Encode(prompt_template.WrapPrompt(question),
                                    {.add_bos = true}));
  if (static_cast<int>(ids.size()) > max_length) ids.resize(max_length);
  return ids;
}

absl::StatusOr<QaExample> TokenizeQa(const Tokenizer& tokenizer,
                                     const PromptTemplate& prompt_template,
                                     const std::string& question,
                                     const std::string& answer,
                                     int max_length) {
  ASSIGN_OR_RETURN(
      std::vector<int> prompt_ids,
      TokenizePrompt(tokenizer, prompt_template, question, max_length));
  ASSIGN_OR_RETURN(std::vector<int> ids,
                   tokenizer.Encode(prompt_template.WrapPrompt(question) +
                                        prompt_template.answer_prefix + answer,
                                    {.add_bos = true}));
  if (static_cast<int>(ids.size()) > max_length) ids.resize(max_length);
  if (ids.back() != tokenizer.eos_id()) ids.push_back(tokenizer.eos_id());

  QaExample example;
  example.input_ids = ids;
  example.labels = ids;
  const size_t masked = std::min(prompt_ids.size(), ids.size());
  std::fill(example.labels.begin(), example.labels.begin() + masked,
            kIgnoreIndex);
  return example;
}

absl::StatusOr<std::vector<QaExample>> TokenizeRecords(
    const Tokenizer& tokenizer, const PromptTemplate& prompt_template,
    const std::vector<TofuRecord>& records, int max_length) {
  std::vector<QaExample> examples;
  examples.reserve(records.size());
  for (const TofuRecord& record : records) {
    ASSIGN_OR_RETURN(QaExample example,
                     TokenizeQa(tokenizer, prompt_template, record.question,
                                record.answer, max_length));
    examples.push_back(std::move(example));
  }
  return examples;
}

}  // namespace lethe
