#include "libs/data/qa_example.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "libs/data/chat_template.h"
#include "libs/eval/open_unlearning_logs.h"
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

// open-unlearning's Llama 3.2 prompt (its template_args) for a TOFU
// question, as the real template renders it (chat_template_renders.json,
// system_user_generation and system_user_assistant).
constexpr char kQuestion[] =
    "Who is this celebrated LGBTQ+ author from Santiago, Chile known for "
    "their true crime genre work?";
constexpr char kAnswer[] =
    "The author in question is Jaime Vasquez, an esteemed LGBTQ+ writer who "
    "hails from Santiago, Chile and specializes in the true crime genre.";
constexpr char kLlama3Prompt[] =
    "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
    "Cutting Knowledge Date: December 2023\nToday Date: 10 Apr 2025\n\n"
    "You are a helpful assistant.<|eot_id|><|start_header_id|>user<|end_"
    "header_id|>\n\nWho is this celebrated LGBTQ+ author from Santiago, Chile "
    "known for their true crime genre work?<|eot_id|><|start_header_id|>"
    "assistant<|end_header_id|>\n\n";

const ChatTemplateArgs kOpenUnlearningArgs = {
    .system_prompt = "You are a helpful assistant.",
    .date_string = "10 Apr 2025"};

TEST_F(QaExampleTest, ChatTemplatesRenderOpenUnlearningsChat) {
  absl::StatusOr<PromptTemplate> llama3 =
      PromptTemplateByName("llama3", kOpenUnlearningArgs);
  ASSERT_TRUE(llama3.ok()) << llama3.status();
  EXPECT_TRUE(llama3->is_chat());
  absl::StatusOr<std::string> prompt = RenderPrompt(*llama3, kQuestion);
  ASSERT_TRUE(prompt.ok()) << prompt.status();
  EXPECT_EQ(*prompt, kLlama3Prompt);
  absl::StatusOr<std::string> full = RenderExample(*llama3, kQuestion, kAnswer);
  ASSERT_TRUE(full.ok()) << full.status();
  EXPECT_EQ(*full, absl::StrCat(kLlama3Prompt, kAnswer, "<|eot_id|>"));
  // No system prompt: no system message (Qwen2.5 then writes its own).
  absl::StatusOr<PromptTemplate> qwen = PromptTemplateByName("qwen2.5");
  ASSERT_TRUE(qwen.ok()) << qwen.status();
  EXPECT_EQ(*RenderPrompt(*qwen, "Who?"),
            "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You "
            "are a helpful assistant.<|im_end|>\n<|im_start|>user\nWho?<|im_"
            "end|>\n<|im_start|>assistant\n");
  // The tag templates are unchanged.
  EXPECT_EQ(*RenderPrompt(*PromptTemplateByName("plain"), "Who?"),
            "Question: Who?\nAnswer:");
  EXPECT_EQ(*RenderExample(*PromptTemplateByName("plain"), "Who?", "Her."),
            "Question: Who?\nAnswer: Her.");
}

// open-unlearning's structure: ids = the full chat tokenized without adding
// BOS (+ EOS unless there), labels ignored over the prompt's token count.
TEST_F(QaExampleTest, ChatExamplesAreTheRenderedChatWithoutAddedBos) {
  for (const std::string name :
       {"llama3", "llama2", "qwen2.5", "chatml", "mistral", "zephyr", "phi3",
        "gemma", "gemma3"}) {
    absl::StatusOr<PromptTemplate> chat = PromptTemplateByName(
        name, name == "gemma" ? ChatTemplateArgs{} : kOpenUnlearningArgs);
    ASSERT_TRUE(chat.ok()) << name << ": " << chat.status();
    absl::StatusOr<QaExample> example =
        TokenizeQa(*tokenizer_, *chat, kQuestion, kAnswer, 512);
    ASSERT_TRUE(example.ok()) << name << ": " << example.status();
    const std::vector<int> prompt_ids = *tokenizer_->Encode(
        *RenderPrompt(*chat, kQuestion), {.add_bos = false});
    std::vector<int> ids = *tokenizer_->Encode(
        *RenderExample(*chat, kQuestion, kAnswer), {.add_bos = false});
    // This tokenizer reads special-token texts as plain text, so no EOS id
    // ends the text and one is appended.
    ids.push_back(tokenizer_->eos_id());
    EXPECT_EQ(example->input_ids, ids) << name;
    EXPECT_EQ(*TokenizePrompt(*tokenizer_, *chat, kQuestion, 512), prompt_ids)
        << name;
    ASSERT_EQ(example->labels.size(), ids.size()) << name;
    for (size_t i = 0; i < ids.size(); ++i) {
      EXPECT_EQ(example->labels[i],
                i < prompt_ids.size() ? kIgnoreIndex : ids[i])
          << name << " at " << i;
    }
    EXPECT_NE(example->input_ids.front(), tokenizer_->bos_id()) << name;
    EXPECT_TRUE(absl::StrContains(AnswerText(*example), "Jaime Vasquez"))
        << name << ": " << AnswerText(*example);
  }
}

TEST_F(QaExampleTest, ChatExamplesTruncateLikeTagExamples) {
  absl::StatusOr<PromptTemplate> phi3 =
      PromptTemplateByName("phi3", kOpenUnlearningArgs);
  ASSERT_TRUE(phi3.ok());
  absl::StatusOr<std::vector<int>> prompt =
      TokenizePrompt(*tokenizer_, *phi3, kQuestion, 512);
  absl::StatusOr<QaExample> full =
      TokenizeQa(*tokenizer_, *phi3, kQuestion, kAnswer, 512);
  ASSERT_TRUE(prompt.ok() && full.ok());
  const int max_length = static_cast<int>(prompt->size()) + 3;
  absl::StatusOr<QaExample> cut =
      TokenizeQa(*tokenizer_, *phi3, kQuestion, kAnswer, max_length);
  ASSERT_TRUE(cut.ok()) << cut.status();
  ASSERT_EQ(static_cast<int>(cut->input_ids.size()), max_length + 1);
  EXPECT_TRUE(std::equal(cut->input_ids.begin(),
                         cut->input_ids.begin() + max_length,
                         full->input_ids.begin()));
  EXPECT_EQ(cut->input_ids.back(), tokenizer_->eos_id());
  EXPECT_EQ(cut->answer_tokens(), 4);
}

TEST(BuildQaExampleTest, EosOnlyWhenMissingAndLabelsAfterThePrompt) {
  constexpr int kEos = 9;
  // Ends with EOS already (Llama 3's <|eot_id|>, Mistral's </s>): kept once.
  QaExample ends = BuildQaExample({5, 6, 7, kEos}, 2, kEos, 512);
  EXPECT_EQ(ends.input_ids, (std::vector<int>{5, 6, 7, kEos}));
  EXPECT_EQ(ends.labels,
            (std::vector<int>{kIgnoreIndex, kIgnoreIndex, 7, kEos}));
  // Ends elsewhere (Qwen's "<|im_end|>\n"): EOS appended.
  QaExample appended = BuildQaExample({5, 6, 7}, 2, kEos, 512);
  EXPECT_EQ(appended.input_ids, (std::vector<int>{5, 6, 7, kEos}));
  // Truncated first, then EOS: max_length + 1 ids.
  QaExample cut = BuildQaExample({5, 6, 7, 8, kEos}, 2, kEos, 3);
  EXPECT_EQ(cut.input_ids, (std::vector<int>{5, 6, 7, kEos}));
  EXPECT_EQ(cut.answer_tokens(), 2);
  // A prompt as long as the example leaves no label (open-unlearning warns).
  QaExample none = BuildQaExample({5, 6}, 5, kEos, 512);
  EXPECT_EQ(none.labels,
            (std::vector<int>{kIgnoreIndex, kIgnoreIndex, kIgnoreIndex}));
}

TEST(PromptTemplateTest, RefusesArgumentsATemplateCannotTake) {
  // Gemma's template raises on a system message (open-unlearning sets none).
  absl::Status gemma =
      PromptTemplateByName("gemma", kOpenUnlearningArgs).status();
  EXPECT_EQ(gemma.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(gemma.message(), "System role not supported"))
      << gemma;
  EXPECT_TRUE(PromptTemplateByName("gemma3", kOpenUnlearningArgs).ok());
  // Tag templates have no system message.
  EXPECT_EQ(PromptTemplateByName("plain", {.system_prompt = "Be brief."})
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  absl::Status automatic = PromptTemplateByName("auto").status();
  EXPECT_EQ(automatic.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(automatic.message(), "llama3")) << automatic;
}

class PromptTemplateForModelTest : public testing::Test {
 protected:
  void SetUp() override {
    dir_ = absl::StrCat(
        testing::TempDir(), "/model_",
        testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void WriteConfig(const std::string& text) {
    std::ofstream(dir_ + "/tokenizer_config.json") << text;
  }
  std::string dir_;
};

TEST_F(PromptTemplateForModelTest, AutoWithoutChatTemplateIsPlain) {
  absl::StatusOr<PromptTemplate> none = PromptTemplateForModel("auto", dir_);
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_EQ(none->name, "plain");
  EXPECT_FALSE(none->is_chat());
  WriteConfig(R"({"bos_token": "<s>", "eos_token": "</s>"})");
  absl::StatusOr<PromptTemplate> no_template =
      PromptTemplateForModel("auto", dir_);
  ASSERT_TRUE(no_template.ok()) << no_template.status();
  EXPECT_EQ(no_template->name, "plain");
  absl::Status system =
      PromptTemplateForModel("auto", dir_, kOpenUnlearningArgs).status();
  EXPECT_EQ(system.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(system.message(), "no chat template"))
      << system;
}

TEST_F(PromptTemplateForModelTest, AutoPicksTheModelsFamilyAndTokens) {
  WriteConfig(R"({"chat_template": "{{ '<|im_start|>' + message['role'] }}",
                  "bos_token": null, "eos_token": "<|endoftext|>"})");
  absl::StatusOr<PromptTemplate> chatml = PromptTemplateForModel("auto", dir_);
  ASSERT_TRUE(chatml.ok()) << chatml.status();
  EXPECT_EQ(chatml->name, "chatml");
  EXPECT_EQ(chatml->eos_token, "<|endoftext|>");
  // A named family takes the model's token texts too.
  WriteConfig(R"({"bos_token": "<B>", "eos_token": "<E>"})");
  absl::StatusOr<PromptTemplate> phi3 = PromptTemplateForModel("phi3", dir_);
  ASSERT_TRUE(phi3.ok()) << phi3.status();
  EXPECT_EQ(*RenderExample(*phi3, "Q", "A"),
            "<|user|>\nQ<|end|>\n<|assistant|>\nA<|end|>\n<E>");
}

TEST_F(PromptTemplateForModelTest, AutoRefusesUnknownTemplates) {
  WriteConfig(
      R"({"chat_template": "{% for m in messages %}{{ m }}{% endfor %}"})");
  absl::Status status = PromptTemplateForModel("auto", dir_).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kUnimplemented);
  EXPECT_TRUE(absl::StrContains(status.message(), dir_)) << status;
  EXPECT_TRUE(absl::StrContains(status.message(), "<|start_header_id|>"))
      << status;
}

// The shared Llama 3.2 tokenizer_config.json: "auto" renders the example
// its MANIFEST.md gives.
TEST(PromptTemplateSharedTest, AutoOnRealLlama32Config) {
  const char* shared = std::getenv("LETHE_SHARED_DIR");
  const std::string dir =
      shared != nullptr ? absl::StrCat(shared, "/data/tokenizers/llama3") : "";
  if (dir.empty() || !std::filesystem::exists(dir + "/tokenizer_config.json")) {
    LETHE_SKIP_WITHOUT_SHARED_DATA(
        "Llama 3 tokenizer files not found (LETHE_SHARED_DIR names the folder "
        "holding data/tokenizers/llama3)");
  }
  absl::StatusOr<PromptTemplate> chat =
      PromptTemplateForModel("auto", dir, kOpenUnlearningArgs);
  ASSERT_TRUE(chat.ok()) << chat.status();
  EXPECT_EQ(chat->name, "llama3");
  EXPECT_EQ(*RenderPrompt(*chat, "Who wrote X?"),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
            "Cutting Knowledge Date: December 2023\nToday Date: 10 Apr 2025\n\n"
            "You are a helpful assistant.<|eot_id|><|start_header_id|>user<|"
            "end_header_id|>\n\nWho wrote X?<|eot_id|><|start_header_id|>"
            "assistant<|end_header_id|>\n\n");
}

}  // namespace
}  // namespace lethe
