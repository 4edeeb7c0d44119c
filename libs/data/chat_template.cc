#include "libs/data/chat_template.h"

#include <sys/stat.h>

#include <array>
#include <cstdint>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "libs/files/file_io.h"
#include "libs/status/status_macros.h"
#include "nlohmann/json.hpp"

namespace lethe {
namespace {

using Json = nlohmann::json;

constexpr std::array<std::pair<ChatFamily, const char*>, 9> kFamilyNames = {{
    {ChatFamily::kLlama3, "llama3"},
    {ChatFamily::kLlama2, "llama2"},
    {ChatFamily::kQwen25, "qwen2.5"},
    {ChatFamily::kChatMl, "chatml"},
    {ChatFamily::kMistral, "mistral"},
    {ChatFamily::kZephyr, "zephyr"},
    {ChatFamily::kPhi3, "phi3"},
    {ChatFamily::kGemma, "gemma"},
    {ChatFamily::kGemma3, "gemma3"},
}};

// Llama 3.1's (and 3.3's) date when none is passed.
constexpr char kLlama3DefaultDate[] = "26 Jul 2024";
constexpr char kQwenDefaultSystem[] =
    "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.";
// The templates' own exception messages.
constexpr char kAlternate[] =
    "Conversation roles must alternate user/assistant/user/assistant/...";
constexpr char kMistralAlternate[] =
    "After the optional system message, conversation roles must alternate "
    "user/assistant/user/assistant/...";
constexpr char kMistralRoles[] =
    "Only user and assistant roles are supported, with the exception of an "
    "initial optional system message!";
constexpr char kGemmaSystem[] = "System role not supported";

// Python's str.isspace() set, which Jinja2's `trim` and str.strip() remove.
bool IsPythonSpace(uint32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 ||
         c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) ||
         c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
         c == 0x3000;
}

// Decodes `s`, one UTF-8 sequence; false when it is not one.
bool DecodeUtf8(absl::string_view s, uint32_t* code_point) {
  const auto byte = [&](size_t i) { return static_cast<uint8_t>(s[i]); };
  if (s.size() == 1 && byte(0) < 0x80) {
    *code_point = byte(0);
    return true;
  }
  int continuation;
  uint32_t value;
  if (s.size() == 2 && (byte(0) & 0xE0) == 0xC0) {
    continuation = 1;
    value = byte(0) & 0x1F;
  } else if (s.size() == 3 && (byte(0) & 0xF0) == 0xE0) {
    continuation = 2;
    value = byte(0) & 0x0F;
  } else if (s.size() == 4 && (byte(0) & 0xF8) == 0xF0) {
    continuation = 3;
    value = byte(0) & 0x07;
  } else {
    return false;
  }
  for (int i = 1; i <= continuation; ++i) {
    if ((byte(i) & 0xC0) != 0x80) return false;
    value = (value << 6) | (byte(i) & 0x3F);
  }
  *code_point = value;
  return true;
}

size_t Utf8Length(uint8_t lead) {
  if (lead < 0x80) return 1;
  if ((lead & 0xE0) == 0xC0) return 2;
  if ((lead & 0xF0) == 0xE0) return 3;
  if ((lead & 0xF8) == 0xF0) return 4;
  return 0;
}

// Jinja2's `trim` filter and Python's str.strip(): Unicode whitespace off
// both ends. Bytes that are not valid UTF-8 count as text.
std::string PyStrip(absl::string_view text) {
  size_t begin = 0;
  while (begin < text.size()) {
    const size_t length = Utf8Length(static_cast<uint8_t>(text[begin]));
    uint32_t c;
    if (length == 0 || begin + length > text.size() ||
        !DecodeUtf8(text.substr(begin, length), &c) || !IsPythonSpace(c)) {
      break;
    }
    begin += length;
  }
  size_t end = text.size();
  while (end > begin) {
    size_t start = end - 1;
    while (start > begin &&
           (static_cast<uint8_t>(text[start]) & 0xC0) == 0x80 &&
           end - start < 4) {
      --start;
    }
    uint32_t c;
    if (!DecodeUtf8(text.substr(start, end - start), &c) || !IsPythonSpace(c)) {
      break;
    }
    end = start;
  }
  return std::string(text.substr(begin, end - begin));
}

absl::Status TemplateError(ChatFamily family, absl::string_view message) {
  return absl::InvalidArgumentError(
      absl::StrCat(ChatFamilyName(family), " chat template: ", message));
}

bool IsUser(const ChatMessage& message) { return message.role == "user"; }
bool IsSystem(const ChatMessage& message) { return message.role == "system"; }
bool IsAssistant(const ChatMessage& message) {
  return message.role == "assistant";
}

std::string RenderLlama3(const std::vector<ChatMessage>& messages,
                         const ChatRenderOptions& options,
                         const ChatSpecialTokens& tokens) {
  size_t first = 0;
  std::string system;
  if (IsSystem(messages[0])) {
    system = PyStrip(messages[0].content);
    first = 1;
  }
  std::string out = absl::StrCat(
      tokens.bos, "<|start_header_id|>system<|end_header_id|>\n\n",
      "Cutting Knowledge Date: December 2023\n", "Today Date: ",
      options.date_string.empty() ? kLlama3DefaultDate : options.date_string,
      "\n\n", system, "<|eot_id|>");
  for (size_t i = first; i < messages.size(); ++i) {
    absl::StrAppend(&out, "<|start_header_id|>", messages[i].role,
                    "<|end_header_id|>\n\n", PyStrip(messages[i].content),
                    "<|eot_id|>");
  }
  if (options.add_generation_prompt) {
    absl::StrAppend(&out, "<|start_header_id|>assistant<|end_header_id|>\n\n");
  }
  return out;
}

absl::StatusOr<std::string> RenderLlama2(
    const std::vector<ChatMessage>& messages, const ChatSpecialTokens& tokens) {
  // Jinja2 takes "" != false as true: an empty system text still makes a
  // <<SYS>> block.
  const bool has_system = IsSystem(messages[0]);
  const size_t first = has_system ? 1 : 0;
  std::string out;
  for (size_t i = first; i < messages.size(); ++i) {
    const ChatMessage& message = messages[i];
    const size_t index = i - first;
    if (IsUser(message) != (index % 2 == 0)) {
      return TemplateError(ChatFamily::kLlama2, kAlternate);
    }
    const std::string content =
        index == 0 && has_system
            ? absl::StrCat("<<SYS>>\n", messages[0].content, "\n<</SYS>>\n\n",
                           message.content)
            : message.content;
    if (IsUser(message)) {
      absl::StrAppend(&out, tokens.bos, "[INST] ", PyStrip(content),
                      " [/INST]");
    } else if (IsSystem(message)) {
      absl::StrAppend(&out, "<<SYS>>\n", PyStrip(content), "\n<</SYS>>\n\n");
    } else {
      absl::StrAppend(&out, " ", PyStrip(content), " ", tokens.eos);
    }
  }
  return out;
}

std::string RenderChatMl(const std::vector<ChatMessage>& messages,
                         const ChatRenderOptions& options,
                         bool qwen_default_system) {
  std::string out;
  size_t first = 0;
  if (qwen_default_system) {
    // Qwen2.5 writes the first system message, or its own, ahead of the rest.
    absl::StrAppend(
        &out, "<|im_start|>system\n",
        IsSystem(messages[0]) ? messages[0].content : kQwenDefaultSystem,
        "<|im_end|>\n");
    if (IsSystem(messages[0])) first = 1;
  }
  for (size_t i = first; i < messages.size(); ++i) {
    absl::StrAppend(&out, "<|im_start|>", messages[i].role, "\n",
                    messages[i].content, "<|im_end|>\n");
  }
  if (options.add_generation_prompt) {
    absl::StrAppend(&out, "<|im_start|>assistant\n");
  }
  return out;
}

absl::StatusOr<std::string> RenderMistral(
    const std::vector<ChatMessage>& messages, const ChatSpecialTokens& tokens) {
  const bool has_system = IsSystem(messages[0]);
  const size_t first = has_system ? 1 : 0;
  std::string out = tokens.bos;
  for (size_t i = first; i < messages.size(); ++i) {
    const ChatMessage& message = messages[i];
    const size_t index = i - first;
    if (IsUser(message) != (index % 2 == 0)) {
      return TemplateError(ChatFamily::kMistral, kMistralAlternate);
    }
    if (IsUser(message)) {
      absl::StrAppend(&out, " [INST] ",
                      index == 0 && has_system
                          ? absl::StrCat(messages[0].content, "\n\n")
                          : "",
                      message.content, " [/INST]");
    } else if (IsAssistant(message)) {
      absl::StrAppend(&out, " ", message.content, tokens.eos);
    } else {
      return TemplateError(ChatFamily::kMistral, kMistralRoles);
    }
  }
  return out;
}

std::string RenderZephyr(const std::vector<ChatMessage>& messages,
                         const ChatRenderOptions& options,
                         const ChatSpecialTokens& tokens) {
  std::string out;
  for (const ChatMessage& message : messages) {
    absl::StrAppend(&out, "<|", message.role, "|>\n", message.content,
                    tokens.eos, "\n");
  }
  if (options.add_generation_prompt) absl::StrAppend(&out, "<|assistant|>\n");
  return out;
}

std::string RenderPhi3(const std::vector<ChatMessage>& messages,
                       const ChatRenderOptions& options,
                       const ChatSpecialTokens& tokens) {
  std::string out;
  for (const ChatMessage& message : messages) {
    if (IsSystem(message) && message.content.empty()) continue;
    absl::StrAppend(&out, "<|", message.role, "|>\n", message.content,
                    "<|end|>\n");
  }
  absl::StrAppend(
      &out, options.add_generation_prompt ? "<|assistant|>\n" : tokens.eos);
  return out;
}

// Gemma and Gemma 2 (`fold_system` false) refuse a system message; Gemma 3
// writes its text and "\n\n" at the start of the first turn.
absl::StatusOr<std::string> RenderGemma(
    ChatFamily family, const std::vector<ChatMessage>& messages,
    const ChatRenderOptions& options, const ChatSpecialTokens& tokens,
    bool fold_system) {
  size_t first = 0;
  std::string prefix;
  if (IsSystem(messages[0])) {
    if (!fold_system) return TemplateError(family, kGemmaSystem);
    prefix = absl::StrCat(messages[0].content, "\n\n");
    first = 1;
  }
  std::string out = tokens.bos;
  for (size_t i = first; i < messages.size(); ++i) {
    const ChatMessage& message = messages[i];
    const size_t index = i - first;
    if (IsUser(message) != (index % 2 == 0)) {
      return TemplateError(family, kAlternate);
    }
    absl::StrAppend(&out, "<start_of_turn>",
                    IsAssistant(message) ? "model" : message.role, "\n",
                    index == 0 ? prefix : "", PyStrip(message.content),
                    "<end_of_turn>\n");
  }
  if (options.add_generation_prompt) {
    absl::StrAppend(&out, "<start_of_turn>model\n");
  }
  return out;
}

bool Exists(const std::string& path) {
  struct stat info;
  return stat(path.c_str(), &info) == 0;
}

// A special token's text: a string, an AddedToken's {"content": ...}, or
// null/absent (unset). Returns what is wrong, or "".
std::string ReadTokenText(const Json& config, const char* field,
                          std::optional<std::string>* out) {
  if (!config.contains(field) || config[field].is_null()) return "";
  const Json& value = config[field];
  if (value.is_string()) {
    *out = value.get<std::string>();
    return "";
  }
  if (value.is_object() && value.contains("content") &&
      value["content"].is_string()) {
    *out = value["content"].get<std::string>();
    return "";
  }
  return absl::StrCat("'", field,
                      "' must be a string or an object with a string "
                      "'content'");
}

// tokenizer_config.json's chat_template; returns what is wrong, or "".
std::string ReadChatTemplate(const Json& config, std::string* out) {
  if (!config.contains("chat_template") || config["chat_template"].is_null()) {
    return "";
  }
  const Json& value = config["chat_template"];
  if (value.is_string()) {
    *out = value.get<std::string>();
    return "";
  }
  if (value.is_array()) {
    for (const Json& entry : value) {
      if (entry.is_object() && entry.contains("name") &&
          entry["name"] == "default" && entry.contains("template") &&
          entry["template"].is_string()) {
        *out = entry["template"].get<std::string>();
        return "";
      }
    }
    return "'chat_template' is a list without a \"default\" template";
  }
  return "'chat_template' must be a string or a list of {name, template}";
}

}  // namespace

absl::string_view ChatFamilyName(ChatFamily family) {
  for (const auto& [known, name] : kFamilyNames) {
    if (known == family) return name;
  }
  return "unknown";
}

std::string ChatFamilyNames() {
  std::vector<std::string> names;
  for (const auto& entry : kFamilyNames) names.push_back(entry.second);
  return absl::StrJoin(names, ", ");
}

absl::StatusOr<ChatFamily> ChatFamilyFromName(absl::string_view name) {
  for (const auto& [family, known] : kFamilyNames) {
    if (name == known) return family;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown chat template family '", name,
                   "': expected one of ", ChatFamilyNames()));
}

ChatSpecialTokens DefaultChatSpecialTokens(ChatFamily family) {
  switch (family) {
    case ChatFamily::kLlama3:
      return {"<|begin_of_text|>", "<|eot_id|>"};
    case ChatFamily::kQwen25:
    case ChatFamily::kChatMl:
      return {"", "<|im_end|>"};
    case ChatFamily::kPhi3:
      return {"<s>", "<|endoftext|>"};
    case ChatFamily::kGemma:
    case ChatFamily::kGemma3:
      return {"<bos>", "<eos>"};
    case ChatFamily::kLlama2:
    case ChatFamily::kMistral:
    case ChatFamily::kZephyr:
      break;
  }
  return {"<s>", "</s>"};
}

absl::StatusOr<std::string> RenderChat(ChatFamily family,
                                       const std::vector<ChatMessage>& messages,
                                       const ChatRenderOptions& options) {
  if (messages.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        ChatFamilyName(family), " chat template: no messages to render"));
  }
  for (const ChatMessage& message : messages) {
    if (!IsSystem(message) && !IsUser(message) && !IsAssistant(message)) {
      return absl::InvalidArgumentError(absl::StrCat(
          ChatFamilyName(family), " chat template: role '", message.role,
          "' is not supported (Lethe renders system, user and assistant)"));
    }
  }
  ChatSpecialTokens tokens = DefaultChatSpecialTokens(family);
  if (options.bos_token.has_value()) tokens.bos = *options.bos_token;
  if (options.eos_token.has_value()) tokens.eos = *options.eos_token;
  switch (family) {
    case ChatFamily::kLlama3:
      return RenderLlama3(messages, options, tokens);
    case ChatFamily::kLlama2:
      return RenderLlama2(messages, tokens);
    case ChatFamily::kQwen25:
      return RenderChatMl(messages, options, /*qwen_default_system=*/true);
    case ChatFamily::kChatMl:
      return RenderChatMl(messages, options, /*qwen_default_system=*/false);
    case ChatFamily::kMistral:
      return RenderMistral(messages, tokens);
    case ChatFamily::kZephyr:
      return RenderZephyr(messages, options, tokens);
    case ChatFamily::kPhi3:
      return RenderPhi3(messages, options, tokens);
    case ChatFamily::kGemma:
      return RenderGemma(family, messages, options, tokens,
                         /*fold_system=*/false);
    case ChatFamily::kGemma3:
      return RenderGemma(family, messages, options, tokens,
                         /*fold_system=*/true);
  }
  return absl::InternalError("unhandled chat template family");
}

absl::StatusOr<ChatFamily> DetectChatFamily(absl::string_view chat_template) {
  const auto has = [&](absl::string_view marker) {
    return absl::StrContains(chat_template, marker);
  };
  const auto variant = [](absl::string_view what) {
    return absl::UnimplementedError(
        absl::StrCat("chat template not supported: ", what));
  };
  if (has("<|start_header_id|>")) {
    if (has("Cutting Knowledge Date")) return ChatFamily::kLlama3;
    return variant(
        "a Llama 3 template without Llama 3.1's system header \"Cutting "
        "Knowledge Date\" (Llama 3.0?)");
  }
  if (has("<|im_start|>")) {
    if (has("You are Qwen, created by Alibaba Cloud")) {
      return ChatFamily::kQwen25;
    }
    if (has("<|im_start|>system") || has("bos_token") || has("eos_token")) {
      return variant(
          "a ChatML template with its own system message, BOS or EOS "
          "(neither Qwen2.5's nor plain ChatML)");
    }
    return ChatFamily::kChatMl;
  }
  if (has("[INST]")) {
    if (has("<<SYS>>")) return ChatFamily::kLlama2;
    if (has("' [INST] '") && has("loop.first and system_message") &&
        !has("[AVAILABLE_TOOLS]")) {
      return ChatFamily::kMistral;
    }
    return variant(
        "a Mistral template other than Mistral-7B-Instruct-v0.2's (v0.1's "
        "without a system message, v0.3's and later ones differ)");
  }
  if (has("<start_of_turn>")) {
    if (has("first_user_prefix")) return ChatFamily::kGemma3;
    if (has("System role not supported")) return ChatFamily::kGemma;
    return variant("a Gemma template other than Gemma 1, 2 or 3's");
  }
  if (has("<|user|>")) {
    if (has("<|end|>")) {
      if (has("<|system|>")) return ChatFamily::kPhi3;
      return variant(
          "a Phi-3 template without a system message (not Phi-3.5's)");
    }
    if (has("<|assistant|>") && has("eos_token")) return ChatFamily::kZephyr;
    return variant(
        "a <|user|> template that is neither Phi-3.5's nor "
        "Zephyr's");
  }
  return absl::UnimplementedError(
      "chat template not supported: it has none of the markers Lethe looks "
      "for (\"<|start_header_id|>\" Llama 3, \"<|im_start|>\" Qwen2.5/ChatML, "
      "\"[INST]\" Llama 2/Mistral, \"<start_of_turn>\" Gemma, \"<|user|>\" "
      "Phi-3.5/Zephyr)");
}

absl::StatusOr<ModelChatConfig> ReadModelChatConfig(
    const std::string& model_dir) {
  ModelChatConfig config;
  const std::string config_path =
      absl::StrCat(model_dir, "/tokenizer_config.json");
  if (Exists(config_path)) {
    ASSIGN_OR_RETURN(std::string text, ReadFileToString(config_path));
    const Json json = Json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (json.is_discarded() || !json.is_object()) {
      return absl::InvalidArgumentError(
          absl::StrCat(config_path, ": not a JSON object"));
    }
    for (const std::string& problem :
         {ReadChatTemplate(json, &config.chat_template),
          ReadTokenText(json, "bos_token", &config.bos_token),
          ReadTokenText(json, "eos_token", &config.eos_token)}) {
      if (!problem.empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat(config_path, ": ", problem));
      }
    }
  }
  const std::string jinja_path =
      absl::StrCat(model_dir, "/chat_template.jinja");
  if (Exists(jinja_path)) {
    ASSIGN_OR_RETURN(config.chat_template, ReadFileToString(jinja_path));
  }
  return config;
}

}  // namespace lethe
