#include "libs/eval/tofu_eval_examples.h"

#include <functional>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_replace.h"
#include "libs/eval/tofu_eval_metrics.h"
#include "libs/status/status_macros.h"

namespace lethe {
namespace {

using AnswersOf = std::function<std::vector<std::string>(const TofuRecord&)>;

// Tokenizes `answers_of` each record, appending the examples to `pool`.
absl::StatusOr<AnswerRows> AddRows(const Tokenizer& tokenizer,
                                   const PromptTemplate& prompt_template,
                                   int max_length,
                                   const std::vector<TofuRecord>& records,
                                   const AnswersOf& answers_of,
                                   std::vector<QaExample>& pool) {
  AnswerRows rows;
  for (const TofuRecord& record : records) {
    rows.rows.emplace_back();
    for (const std::string& answer : answers_of(record)) {
      ASSIGN_OR_RETURN(QaExample example,
                       TokenizeQa(tokenizer, prompt_template, record.question,
                                  answer, max_length));
      rows.rows.back().push_back(pool.size());
      pool.push_back(std::move(example));
    }
  }
  return rows;
}

}  // namespace

std::vector<AnswerScore> AnswerRows::Single(
    const std::vector<AnswerScore>& all) const {
  std::vector<AnswerScore> result;
  for (const std::vector<size_t>& row : rows) result.push_back(all[row[0]]);
  return result;
}

std::vector<std::vector<AnswerScore>> AnswerRows::Multi(
    const std::vector<AnswerScore>& all) const {
  std::vector<std::vector<AnswerScore>> result;
  for (const std::vector<size_t>& row : rows) {
    result.emplace_back();
    for (size_t index : row) result.back().push_back(all[index]);
  }
  return result;
}

absl::StatusOr<TofuEvalExamples> TokenizeEvalExamples(
    const Tokenizer& tokenizer, const PromptTemplate& prompt_template,
    const TofuEvalData& data, int max_length) {
  const AnswersOf answer = [](const TofuRecord& r) {
    return std::vector<std::string>{r.answer};
  };
  const AnswersOf paraphrased = [](const TofuRecord& r) {
    return std::vector<std::string>{*r.paraphrased_answer};
  };
  const AnswersOf perturbed = [](const TofuRecord& r) {
    return r.perturbed_answers;
  };
  TofuEvalExamples sets;
  auto add = [&](const std::vector<TofuRecord>& records,
                 const AnswersOf& answers_of, std::vector<QaExample>& pool) {
    return AddRows(tokenizer, prompt_template, max_length, records, answers_of,
                   pool);
  };
  std::vector<QaExample>& detailed = sets.detailed;
  std::vector<QaExample>& others = sets.others;
  ASSIGN_OR_RETURN(sets.forget_qa, add(data.forget, answer, detailed));
  ASSIGN_OR_RETURN(sets.holdout_qa, add(data.holdout, answer, detailed));
  ASSIGN_OR_RETURN(sets.forget_para, add(data.forget, paraphrased, others));
  ASSIGN_OR_RETURN(sets.forget_pert, add(data.forget, perturbed, others));
  ASSIGN_OR_RETURN(sets.retain_qa, add(data.retain, answer, others));
  ASSIGN_OR_RETURN(sets.retain_para, add(data.retain, paraphrased, others));
  ASSIGN_OR_RETURN(sets.retain_pert, add(data.retain, perturbed, others));
  ASSIGN_OR_RETURN(sets.ra_qa, add(data.real_authors, answer, others));
  ASSIGN_OR_RETURN(sets.ra_pert, add(data.real_authors, perturbed, others));
  ASSIGN_OR_RETURN(sets.wf_qa, add(data.world_facts, answer, others));
  ASSIGN_OR_RETURN(sets.wf_pert, add(data.world_facts, perturbed, others));
  return sets;
}

absl::StatusOr<RougePrompts> TokenizeRougePrompts(
    const Tokenizer& tokenizer, const PromptTemplate& prompt_template,
    const TofuEvalData& data, int max_length) {
  RougePrompts rouge;
  for (const auto& [metric, records] :
       {std::make_pair("forget_Q_A_ROUGE", &data.forget),
        std::make_pair("retain_Q_A_ROUGE", &data.retain),
        std::make_pair("ra_Q_A_ROUGE", &data.real_authors),
        std::make_pair("wf_Q_A_ROUGE", &data.world_facts)}) {
    rouge.sets.push_back({metric, records->size()});
    for (const TofuRecord& record : *records) {
      ASSIGN_OR_RETURN(std::vector<int> prompt,
                       TokenizePrompt(tokenizer, prompt_template,
                                      record.question, max_length));
      ASSIGN_OR_RETURN(QaExample full,
                       TokenizeQa(tokenizer, prompt_template, record.question,
                                  record.answer, max_length));
      ASSIGN_OR_RETURN(std::string input, DecodeForRouge(tokenizer, prompt));
      ASSIGN_OR_RETURN(std::string full_text,
                       DecodeForRouge(tokenizer, full.input_ids));
      rouge.ground_truths.push_back(std::string(absl::StripAsciiWhitespace(
          input.empty() ? full_text
                        : absl::StrReplaceAll(full_text, {{input, ""}}))));
      rouge.inputs.push_back(std::move(input));
      rouge.prompts.emplace_back(prompt.begin(), prompt.end());
    }
  }
  return rouge;
}

}  // namespace lethe
