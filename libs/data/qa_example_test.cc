#include "libs/data/qa_example.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "libs/tokenizer/tokenizer_training.h"

namespace lethe {
namespace {

class QaExampleTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    std::vector<std::string> corpus;
    for (int i = 0; i < 100; ++i) {
      corpus.push_back(absl::StrCat("Question: Where was author ", i,
                                    " born?\nAnswer: The author was born in "
                                    "Lagos, Nigeria, in ",
                                    1900 + i, "."));
      corpus.push_back(
          "[INST] Who wrote it? [/INST]The author's full name is Mira Okafor.");
    }
    absl::StatusOr<std::string> model =
        TrainTokenizer(corpus, {.vocab_size = 320, .num_threads = 1});
    ASSERT_TRUE(model.ok()) << model.status();
    absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer =
        Tokenizer::FromSerialized(*model);
    ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
    tokenizer_ = tokenizer->release();
  }
  static void TearDownTestSuite() { delete tokenizer_; }

  static std::string AnswerText(const QaExample& example) {
    std::vector<int> answer;
    for (int label : example.labels) {
      if (label != kIgnoreIndex && label != tokenizer_->eos_id()) {
        answer.push_back(label);
      }
    }
    return *tokenizer_->Decode(answer);
  }

  static Tokenizer* tokenizer_;
};
Tokenizer* QaExampleTest::tokenizer_ = nullptr;

TEST_F(QaExampleTest, LabelsCoverExactlyTheAnswerAndEos) {
  for (const std::string name : {"plain", "llama2_chat"}) {
    absl::StatusOr<PromptTemplate> prompt_template = PromptTemplateByName(name);
    ASSERT_TRUE(prompt_template.ok());
    absl::StatusOr<QaExample> example =
        TokenizeQa(*tokenizer_, *prompt_template, "Where was author 7 born?",
                   "The author was born in Lagos, Nigeria, in 1907.", 256);
    ASSERT_TRUE(example.ok()) << example.status();
    ASSERT_EQ(example->input_ids.size(), example->labels.size());
    EXPECT_EQ(example->input_ids.front(), tokenizer_->bos_id()) << name;
    EXPECT_EQ(example->input_ids.back(), tokenizer_->eos_id()) << name;
    EXPECT_EQ(example->labels.front(), kIgnoreIndex) << name;
    EXPECT_EQ(example->labels.back(), tokenizer_->eos_id()) << name;
    EXPECT_EQ(AnswerText(*example),
              "The author was born in Lagos, Nigeria, in 1907.")
        << name;
    // Where labels start, they equal the inputs.
    for (size_t i = 0; i < example->labels.size(); ++i) {
      if (example->labels[i] != kIgnoreIndex) {
        EXPECT_EQ(example->labels[i], example->input_ids[i]);
      }
    }
  }
}

TEST_F(QaExampleTest, PromptTokensArePrefixOfTheFullSequence) {
  absl::StatusOr<PromptTemplate> plain = PromptTemplateByName("plain");
  ASSERT_TRUE(plain.ok());
  absl::StatusOr<std::vector<int>> prompt =
      TokenizePrompt(*tokenizer_, *plain, "Where was author 3 born?", 256);
  absl::StatusOr<QaExample> example =
      TokenizeQa(*tokenizer_, *plain, "Where was author 3 born?",
                 "The author was born in Lagos.", 256);
  ASSERT_TRUE(prompt.ok() && example.ok());
  ASSERT_LT(prompt->size(), example->input_ids.size());
  EXPECT_TRUE(
      std::equal(prompt->begin(), prompt->end(), example->input_ids.begin()));
  EXPECT_EQ(example->labels[prompt->size() - 1], kIgnoreIndex);
  EXPECT_NE(example->labels[prompt->size()], kIgnoreIndex);
}

TEST_F(QaExampleTest, WrapsPromptsWithTheTemplateTags) {
  EXPECT_EQ(PromptTemplateByName("llama2_chat")->WrapPrompt("Who?"),
            "[INST] Who? [/INST]");
  EXPECT_EQ(PromptTemplateByName("plain")->WrapPrompt("Who?"),
            "Question: Who?\nAnswer:");
  EXPECT_EQ(PromptTemplateByName("alpaca").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(QaExampleTest, TruncationKeepsTheStartOfTheAnswer) {
  absl::StatusOr<PromptTemplate> plain = PromptTemplateByName("plain");
  absl::StatusOr<std::vector<int>> prompt =
      TokenizePrompt(*tokenizer_, *plain, "Where was author 3 born?", 256);
  ASSERT_TRUE(prompt.ok());
  const int max_length = static_cast<int>(prompt->size()) + 3;
  absl::StatusOr<QaExample> example =
      TokenizeQa(*tokenizer_, *plain, "Where was author 3 born?",
                 "The author was born in Lagos, Nigeria, in 1903.", max_length);
  ASSERT_TRUE(example.ok()) << example.status();
  EXPECT_EQ(static_cast<int>(example->input_ids.size()), max_length + 1);
  EXPECT_EQ(example->answer_tokens(), 4);  // Three answer tokens and EOS.
  absl::StatusOr<QaExample> full =
      TokenizeQa(*tokenizer_, *plain, "Where was author 3 born?",
                 "The author was born in Lagos, Nigeria, in 1903.", 256);
  ASSERT_TRUE(full.ok());
  EXPECT_TRUE(std::equal(example->input_ids.begin(),
                         example->input_ids.begin() + max_length,
                         full->input_ids.begin()));
}

}  // namespace
}  // namespace lethe
