#include "libs/eval/tofu_eval_examples.h"

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "libs/data/qa_example.h"
#include "libs/eval/tofu_eval_data.h"
#include "libs/eval/tofu_eval_fixture.h"
#include "libs/tokenizer/tokenizer.h"

namespace lethe {
namespace {

constexpr int kMaxLength = 512;

class TofuEvalExamplesTest : public testing::Test {
 protected:
  void SetUp() override {
    const std::string dir = testing::TempDir() + "/tofu_eval_examples";
    std::filesystem::remove_all(dir);
    ASSERT_TRUE(WriteTinyTofuData(dir, 3).ok());
    data_ = *ReadTofuEvalData(dir, "forget10");
    tokenizer_ = *Tokenizer::FromSerialized(CharacterTokenizerModel());
    template_ = *PromptTemplateByName("plain");
  }

  // Expects `rows` to list one example per answer of each record, in order,
  // from `first` on in `pool`, each that record's question and answer.
  void ExpectRows(const AnswerRows& rows,
                  const std::vector<TofuRecord>& records,
                  const std::vector<std::vector<std::string>>& answers,
                  const std::vector<QaExample>& pool, size_t& next) {
    ASSERT_EQ(rows.rows.size(), records.size());
    for (size_t i = 0; i < records.size(); ++i) {
      ASSERT_EQ(rows.rows[i].size(), answers[i].size()) << i;
      for (size_t j = 0; j < answers[i].size(); ++j) {
        EXPECT_EQ(rows.rows[i][j], next) << i << "." << j;
        const QaExample expected =
            *TokenizeQa(*tokenizer_, template_, records[i].question,
                        answers[i][j], kMaxLength);
        EXPECT_EQ(pool[next].input_ids, expected.input_ids);
        EXPECT_EQ(pool[next].labels, expected.labels);
        ++next;
      }
    }
  }

  static std::vector<std::vector<std::string>> Answers(
      const std::vector<TofuRecord>& records) {
    std::vector<std::vector<std::string>> answers;
    for (const TofuRecord& record : records) answers.push_back({record.answer});
    return answers;
  }
  static std::vector<std::vector<std::string>> Paraphrased(
      const std::vector<TofuRecord>& records) {
    std::vector<std::vector<std::string>> answers;
    for (const TofuRecord& record : records) {
      answers.push_back({*record.paraphrased_answer});
    }
    return answers;
  }
  static std::vector<std::vector<std::string>> Perturbed(
      const std::vector<TofuRecord>& records) {
    std::vector<std::vector<std::string>> answers;
    for (const TofuRecord& record : records) {
      answers.push_back(record.perturbed_answers);
    }
    return answers;
  }

  TofuEvalData data_;
  std::unique_ptr<Tokenizer> tokenizer_;
  PromptTemplate template_;
};

TEST_F(TofuEvalExamplesTest, EveryAnswerOnceInItsPoolInOrder) {
  absl::StatusOr<TofuEvalExamples> examples =
      TokenizeEvalExamples(*tokenizer_, template_, data_, kMaxLength);
  ASSERT_TRUE(examples.ok()) << examples.status();
  size_t next = 0;
  ExpectRows(examples->forget_qa, data_.forget, Answers(data_.forget),
             examples->detailed, next);
  ExpectRows(examples->holdout_qa, data_.holdout, Answers(data_.holdout),
             examples->detailed, next);
  EXPECT_EQ(next, examples->detailed.size());
  next = 0;
  const std::vector<QaExample>& others = examples->others;
  ExpectRows(examples->forget_para, data_.forget, Paraphrased(data_.forget),
             others, next);
  ExpectRows(examples->forget_pert, data_.forget, Perturbed(data_.forget),
             others, next);
  ExpectRows(examples->retain_qa, data_.retain, Answers(data_.retain), others,
             next);
  ExpectRows(examples->retain_para, data_.retain, Paraphrased(data_.retain),
             others, next);
  ExpectRows(examples->retain_pert, data_.retain, Perturbed(data_.retain),
             others, next);
  ExpectRows(examples->ra_qa, data_.real_authors, Answers(data_.real_authors),
             others, next);
  ExpectRows(examples->ra_pert, data_.real_authors,
             Perturbed(data_.real_authors), others, next);
  ExpectRows(examples->wf_qa, data_.world_facts, Answers(data_.world_facts),
             others, next);
  ExpectRows(examples->wf_pert, data_.world_facts, Perturbed(data_.world_facts),
             others, next);
  EXPECT_EQ(next, others.size());
}

TEST(AnswerRowsTest, PicksScoresByIndex) {
  std::vector<AnswerScore> all(5);
  for (int i = 0; i < 5; ++i) all[i].avg_loss = i;
  const AnswerRows rows{{{3, 1}, {0}, {4, 2, 0}}};
  const std::vector<AnswerScore> single = rows.Single(all);
  ASSERT_EQ(single.size(), 3u);
  EXPECT_EQ(single[0].avg_loss, 3);
  EXPECT_EQ(single[1].avg_loss, 0);
  EXPECT_EQ(single[2].avg_loss, 4);
  const std::vector<std::vector<AnswerScore>> multi = rows.Multi(all);
  ASSERT_EQ(multi.size(), 3u);
  ASSERT_EQ(multi[2].size(), 3u);
  EXPECT_EQ(multi[0][1].avg_loss, 1);
  EXPECT_EQ(multi[2][1].avg_loss, 2);
  EXPECT_EQ(multi[2][2].avg_loss, 0);
}

TEST_F(TofuEvalExamplesTest, RougePromptsAndTexts) {
  absl::StatusOr<RougePrompts> rouge =
      TokenizeRougePrompts(*tokenizer_, template_, data_, kMaxLength);
  ASSERT_TRUE(rouge.ok()) << rouge.status();
  const std::vector<const std::vector<TofuRecord>*> sets = {
      &data_.forget, &data_.retain, &data_.real_authors, &data_.world_facts};
  const std::vector<std::string> metrics = {
      "forget_Q_A_ROUGE", "retain_Q_A_ROUGE", "ra_Q_A_ROUGE", "wf_Q_A_ROUGE"};
  ASSERT_EQ(rouge->sets.size(), 4u);
  size_t question = 0;
  for (size_t s = 0; s < sets.size(); ++s) {
    EXPECT_EQ(rouge->sets[s].metric, metrics[s]);
    ASSERT_EQ(rouge->sets[s].questions, sets[s]->size());
    for (const TofuRecord& record : *sets[s]) {
      const std::vector<int> prompt =
          *TokenizePrompt(*tokenizer_, template_, record.question, kMaxLength);
      EXPECT_EQ(rouge->prompts[question],
                std::vector<int64_t>(prompt.begin(), prompt.end()));
      // The character tokenizer decodes the plain prompt as it was.
      EXPECT_EQ(rouge->inputs[question], template_.WrapPrompt(record.question));
      EXPECT_EQ(rouge->ground_truths[question], record.answer);
      ++question;
    }
  }
  EXPECT_EQ(rouge->prompts.size(), question);
  EXPECT_EQ(rouge->inputs.size(), question);
  EXPECT_EQ(rouge->ground_truths.size(), question);
}

}  // namespace
}  // namespace lethe
