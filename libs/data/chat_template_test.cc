#include "libs/data/chat_template.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "libs/eval/open_unlearning_logs.h"
#include "libs/files/file_io.h"
#include "libs/files/source_path_test_util.h"
#include "nlohmann/json.hpp"

namespace lethe {
namespace {

using Json = nlohmann::json;

std::string TestDataPath() {
  const std::string relative = "libs/data/testdata/chat_template_renders.json";
  return SourcePath(relative);
}

// The shared Llama 3.2 tokenizer folder, or "" when absent.
std::string SharedLlama3Dir() {
  const char* shared = std::getenv("LETHE_SHARED_DIR");
  if (shared == nullptr) return "";
  const std::string dir = absl::StrCat(shared, "/data/tokenizers/llama3");
  return std::filesystem::exists(dir + "/tokenizer_config.json") ? dir : "";
}

constexpr char kSharedMissing[] =
    "Llama 3 tokenizer files not found (LETHE_SHARED_DIR names the folder "
    "holding data/tokenizers/llama3)";

std::optional<std::string> OptionalString(const Json& value) {
  if (value.is_null()) return std::nullopt;
  return value.get<std::string>();
}

// Every reference render: Lethe's renderer gives the same text, or refuses
// where the real template raises.
TEST(ChatTemplateTest, RendersLikeTheModelsRealTemplates) {
  absl::StatusOr<std::string> text = ReadFileToString(TestDataPath());
  ASSERT_TRUE(text.ok()) << text.status();
  const Json renders = Json::parse(*text);
  std::map<std::string, int> cases_per_family;
  for (const Json& entry : renders["cases"]) {
    const std::string family_name = entry["family"];
    const std::string label =
        absl::StrCat(family_name, "/", entry["case"].get<std::string>());
    absl::StatusOr<ChatFamily> family = ChatFamilyFromName(family_name);
    ASSERT_TRUE(family.ok()) << family.status();
    const Json& tokens = renders["families"][family_name];
    std::vector<ChatMessage> messages;
    for (const Json& message : entry["messages"]) {
      messages.push_back({message["role"], message["content"]});
    }
    ChatRenderOptions options{
        .add_generation_prompt = entry["add_generation_prompt"],
        .date_string = entry.value("date_string", ""),
        .bos_token = OptionalString(tokens["bos_token"]),
        .eos_token = OptionalString(tokens["eos_token"])};
    absl::StatusOr<std::string> rendered =
        RenderChat(*family, messages, options);
    if (entry.contains("error")) {
      ASSERT_FALSE(rendered.ok()) << label << ": rendered " << *rendered;
      EXPECT_EQ(rendered.status().code(), absl::StatusCode::kInvalidArgument)
          << label;
      EXPECT_TRUE(absl::StrContains(rendered.status().message(),
                                    entry["error"].get<std::string>()))
          << label << ": " << rendered.status();
    } else {
      ASSERT_TRUE(rendered.ok()) << label << ": " << rendered.status();
      EXPECT_EQ(*rendered, entry["rendered"].get<std::string>()) << label;
    }
    // The same text with the family's default special tokens.
    if (rendered.ok()) {
      options.bos_token.reset();
      options.eos_token.reset();
      absl::StatusOr<std::string> defaults =
          RenderChat(*family, messages, options);
      ASSERT_TRUE(defaults.ok()) << label;
      EXPECT_EQ(*defaults, *rendered) << label;
    }
    ++cases_per_family[family_name];
  }
  // Every family, and every case of the generator, was checked.
  EXPECT_EQ(cases_per_family.size(), 9u);
  for (const auto& [family, count] : cases_per_family) {
    EXPECT_EQ(count, 10) << family;
  }
}

TEST(ChatTemplateTest, DefaultSpecialTokensAreTheReferenceTokenizers) {
  absl::StatusOr<std::string> text = ReadFileToString(TestDataPath());
  ASSERT_TRUE(text.ok()) << text.status();
  const Json families = Json::parse(*text)["families"];
  for (const auto& [name, tokens] : families.items()) {
    absl::StatusOr<ChatFamily> family = ChatFamilyFromName(name);
    ASSERT_TRUE(family.ok()) << family.status();
    const ChatSpecialTokens defaults = DefaultChatSpecialTokens(*family);
    EXPECT_EQ(defaults.bos, OptionalString(tokens["bos_token"]).value_or(""))
        << name;
    EXPECT_EQ(defaults.eos, tokens["eos_token"].get<std::string>()) << name;
  }
}

// The render given in the shared tokenizer's MANIFEST.md.
TEST(ChatTemplateTest, Llama3DateStringAndDefault) {
  const std::vector<ChatMessage> messages = {
      {"system", "You are a helpful assistant."}, {"user", "Who wrote X?"}};
  absl::StatusOr<std::string> dated =
      RenderChat(ChatFamily::kLlama3, messages,
                 {.add_generation_prompt = true, .date_string = "10 Apr 2025"});
  ASSERT_TRUE(dated.ok()) << dated.status();
  EXPECT_EQ(*dated,
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
            "Cutting Knowledge Date: December 2023\nToday Date: 10 Apr 2025\n\n"
            "You are a helpful assistant.<|eot_id|><|start_header_id|>user<|"
            "end_header_id|>\n\nWho wrote X?<|eot_id|><|start_header_id|>"
            "assistant<|end_header_id|>\n\n");
  absl::StatusOr<std::string> undated =
      RenderChat(ChatFamily::kLlama3, messages, {});
  ASSERT_TRUE(undated.ok());
  EXPECT_TRUE(absl::StrContains(*undated, "Today Date: 26 Jul 2024\n\n"));
}

TEST(ChatTemplateTest, RefusesWhatItCannotRender) {
  EXPECT_EQ(RenderChat(ChatFamily::kLlama3, {}).status().code(),
            absl::StatusCode::kInvalidArgument);
  absl::Status tool =
      RenderChat(ChatFamily::kQwen25, {{"user", "Q"}, {"tool", "42"}}).status();
  EXPECT_EQ(tool.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(tool.message(), "'tool'")) << tool;
  // Templates that check alternation.
  for (ChatFamily family : {ChatFamily::kLlama2, ChatFamily::kMistral,
                            ChatFamily::kGemma, ChatFamily::kGemma3}) {
    absl::Status status =
        RenderChat(family, {{"user", "Q"}, {"user", "Q again"}}).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument)
        << ChatFamilyName(family);
    EXPECT_TRUE(absl::StrContains(status.message(), "must alternate"))
        << status;
  }
  absl::Status gemma_system =
      RenderChat(ChatFamily::kGemma, {{"system", "S"}, {"user", "Q"}}).status();
  EXPECT_TRUE(
      absl::StrContains(gemma_system.message(), "System role not supported"))
      << gemma_system;
}

TEST(ChatTemplateTest, FamilyNamesRoundTrip) {
  for (const char* name : {"llama3", "llama2", "qwen2.5", "chatml", "mistral",
                           "zephyr", "phi3", "gemma", "gemma3"}) {
    absl::StatusOr<ChatFamily> family = ChatFamilyFromName(name);
    ASSERT_TRUE(family.ok()) << name;
    EXPECT_EQ(ChatFamilyName(*family), name);
  }
  absl::Status unknown = ChatFamilyFromName("vicuna").status();
  EXPECT_EQ(unknown.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(unknown.message(), "qwen2.5")) << unknown;
}

TEST(ChatTemplateTest, DetectsFamiliesFromMarkers) {
  // Fragments carrying each family's markers (not the real templates).
  const std::vector<std::pair<std::string, ChatFamily>> detected = {
      {"{{ '<|start_header_id|>' }}Cutting Knowledge Date: December 2023",
       ChatFamily::kLlama3},
      {"'<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud.'",
       ChatFamily::kQwen25},
      {"{{'<|im_start|>' + message['role'] + '\\n'}}", ChatFamily::kChatMl},
      {"'[INST] ' + '<<SYS>>\\n'", ChatFamily::kLlama2},
      {"{%- if loop.first and system_message is defined %}{{- ' [INST] ' }}",
       ChatFamily::kMistral},
      {"'<|system|>\\n' '<|user|>\\n' '<|end|>\\n'", ChatFamily::kPhi3},
      {"'<|user|>\\n' + eos_token '<|assistant|>'", ChatFamily::kZephyr},
      {"first_user_prefix '<start_of_turn>'", ChatFamily::kGemma3},
      {"raise_exception('System role not supported') '<start_of_turn>'",
       ChatFamily::kGemma},
  };
  for (const auto& [text, family] : detected) {
    absl::StatusOr<ChatFamily> found = DetectChatFamily(text);
    ASSERT_TRUE(found.ok()) << text << ": " << found.status();
    EXPECT_EQ(*found, family) << text;
  }
  // Variants of a family Lethe does not render, and no family at all.
  for (const std::string text : {
           "'<|start_header_id|>' + message['role']",              // Llama 3.0
           "'<|im_start|>system\\nYou are a helpful assistant.'",  // Qwen2
           "{{ bos_token }}'[INST] ' + message['content']",  // Mistral v0.1
           "\"[INST] \" [AVAILABLE_TOOLS] loop.first and system_message",
           "'<|user|>' + '<|end|>'",  // Phi-3-mini without system
           "'<start_of_turn>' + role",
           "### Instruction:\\n{{ message['content'] }}",
       }) {
    absl::Status status = DetectChatFamily(text).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kUnimplemented) << text;
  }
  absl::Status none = DetectChatFamily("{{ messages }}").status();
  for (const char* marker : {"<|start_header_id|>", "<|im_start|>", "[INST]",
                             "<start_of_turn>", "<|user|>"}) {
    EXPECT_TRUE(absl::StrContains(none.message(), marker)) << none;
  }
}

class ModelChatConfigTest : public testing::Test {
 protected:
  void SetUp() override {
    dir_ = absl::StrCat(
        testing::TempDir(), "/chat_config_",
        testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void Write(const std::string& file, const std::string& text) {
    std::ofstream(absl::StrCat(dir_, "/", file)) << text;
  }
  std::string dir_;
};

TEST_F(ModelChatConfigTest, NoConfigMeansNoTemplate) {
  absl::StatusOr<ModelChatConfig> config = ReadModelChatConfig(dir_);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->chat_template, "");
  EXPECT_FALSE(config->bos_token.has_value());
}

TEST_F(ModelChatConfigTest, ReadsStringsAddedTokensAndNamedTemplates) {
  Write("tokenizer_config.json",
        R"({"chat_template": [{"name": "tool_use", "template": "T"},
                               {"name": "default", "template": "D"}],
            "bos_token": {"content": "<s>", "lstrip": false},
            "eos_token": "</s>"})");
  absl::StatusOr<ModelChatConfig> config = ReadModelChatConfig(dir_);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->chat_template, "D");
  EXPECT_EQ(config->bos_token, "<s>");
  EXPECT_EQ(config->eos_token, "</s>");
  // chat_template.jinja wins over tokenizer_config.json.
  Write("chat_template.jinja", "{{ bos_token }}J");
  config = ReadModelChatConfig(dir_);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->chat_template, "{{ bos_token }}J");
}

TEST_F(ModelChatConfigTest, NullsAndBadTypes) {
  Write("tokenizer_config.json",
        R"({"chat_template": null, "bos_token": null, "eos_token": "x"})");
  absl::StatusOr<ModelChatConfig> config = ReadModelChatConfig(dir_);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->chat_template, "");
  EXPECT_FALSE(config->bos_token.has_value());
  for (const std::string bad :
       {R"({"chat_template": 3})", R"({"chat_template": [{"name": "x"}]})",
        R"({"bos_token": ["<s>"]})", "not json"}) {
    Write("tokenizer_config.json", bad);
    absl::Status status = ReadModelChatConfig(dir_).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_TRUE(absl::StrContains(status.message(), "tokenizer_config.json"))
        << status;
  }
}

// The real Llama 3.2 tokenizer_config.json: its template is detected as
// llama3 and its special tokens read.
TEST(ChatTemplateSharedTest, RealLlama32ConfigIsLlama3) {
  const std::string dir = SharedLlama3Dir();
  if (dir.empty()) LETHE_SKIP_WITHOUT_SHARED_DATA(kSharedMissing);
  absl::StatusOr<ModelChatConfig> config = ReadModelChatConfig(dir);
  ASSERT_TRUE(config.ok()) << config.status();
  absl::StatusOr<ChatFamily> family = DetectChatFamily(config->chat_template);
  ASSERT_TRUE(family.ok()) << family.status();
  EXPECT_EQ(*family, ChatFamily::kLlama3);
  EXPECT_EQ(config->bos_token, "<|begin_of_text|>");
  EXPECT_EQ(config->eos_token, "<|eot_id|>");
}

}  // namespace
}  // namespace lethe
