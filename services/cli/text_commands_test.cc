#include "services/cli/text_commands.h"

#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <string>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "libs/eval/open_unlearning_logs.h"

namespace lethe {
namespace {

constexpr char kLlama3Missing[] =
    "Meta's Llama 3.2 tokenizer not found (LETHE_SHARED_DIR names the folder "
    "holding data/tokenizers/llama3)";

// A model folder with the Llama 3.2 tokenizer files only (no weights: the
// text commands never load them); "" without the shared data.
std::string Llama3ModelDir() {
  const char* shared = std::getenv("LETHE_SHARED_DIR");
  const std::string source =
      std::string(shared != nullptr ? shared : "../shared") +
      "/data/tokenizers/llama3";
  if (!std::filesystem::exists(source + "/tokenizer.json")) return "";
  const std::string dir = testing::TempDir() + "/text_commands_llama3";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  for (const char* file : {"tokenizer.json", "tokenizer_config.json"}) {
    std::filesystem::copy_file(source + "/" + file, dir + "/" + file);
  }
  return dir;
}

// Meta's ids for "Hello world!" (the shared examples.jsonl, made with
// llama3-tokenizer-js).
TEST(TextCommandsTest, TokenizePrintsIdsAndPieces) {
  const std::string dir = Llama3ModelDir();
  if (dir.empty()) LETHE_SKIP_WITHOUT_SHARED_DATA(kLlama3Missing);
  std::ostringstream out;
  ASSERT_TRUE(
      RunTokenize({.model_dir = dir, .text = "Hello world!"}, out).ok());
  EXPECT_EQ(out.str(),
            "128000\t<|begin_of_text|>\n9906\tHello\n1917\t\xC4\xA0world\n"
            "0\t!\nids: [128000, 9906, 1917, 0]\ndecoded: Hello world!\n");
}

// The rendering given in the shared MANIFEST.md, made by npm
// @huggingface/jinja from the model's own template.
TEST(TextCommandsTest, PromptIsTheModelsOwnChatTemplate) {
  const std::string dir = Llama3ModelDir();
  if (dir.empty()) LETHE_SKIP_WITHOUT_SHARED_DATA(kLlama3Missing);
  std::ostringstream out;
  ASSERT_TRUE(
      RunPrompt({.model_dir = dir,
                 .chat_args = {.system_prompt = "You are a helpful assistant.",
                               .date_string = "10 Apr 2025"},
                 .question = "Who wrote X?"},
                out)
          .ok());
  EXPECT_EQ(out.str(),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
            "Cutting Knowledge Date: December 2023\nToday Date: 10 Apr 2025\n\n"
            "You are a helpful assistant.<|eot_id|><|start_header_id|>user<|"
            "end_header_id|>\n\nWho wrote X?<|eot_id|><|start_header_id|>"
            "assistant<|end_header_id|>\n\n");

  std::ostringstream example;
  ASSERT_TRUE(
      RunPrompt(
          {.model_dir = dir, .question = "Who wrote X?", .answer = "Y did."},
          example)
          .ok());
  EXPECT_TRUE(absl::EndsWith(example.str(),
                             "assistant<|end_header_id|>\n\nY did.<|eot_id|>"))
      << example.str();
}

TEST(TextCommandsTest, MissingArgumentsAreNamed) {
  std::ostringstream out;
  EXPECT_EQ(RunTokenize({.text = "x"}, out).message(), "--model is required");
  EXPECT_EQ(RunPrompt({.model_dir = "/nonexistent"}, out).message(),
            "--question is required");
  EXPECT_EQ(RunTokenize({.model_dir = "/nonexistent", .text = "x"}, out).code(),
            absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace lethe
