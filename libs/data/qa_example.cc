#include "libs/data/qa_example.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "libs/status/status_macros.h"

namespace lethe {
namespace {

std::vector<ChatMessage> ChatMessages(const PromptTemplate& prompt_template,
                                      const std::string& question,
                                      const std::string* answer) {
  std::vector<ChatMessage> messages;
  if (!prompt_template.system_prompt.empty()) {
    messages.push_back({"system", prompt_template.system_prompt});
  }
  messages.push_back({"user", question});
  if (answer != nullptr) messages.push_back({"assistant", *answer});
  return messages;
}

ChatRenderOptions ChatOptions(const PromptTemplate& prompt_template,
                              bool add_generation_prompt) {
  return {.add_generation_prompt = add_generation_prompt,
          .date_string = prompt_template.date_string,
          .bos_token = prompt_template.bos_token,
          .eos_token = prompt_template.eos_token};
}

// Tag templates tokenize with BOS; a chat template writes its own.
EncodeOptions PromptEncodeOptions(const PromptTemplate& prompt_template) {
  return {.add_bos = !prompt_template.is_chat()};
}

// Renders a prompt once so that a template refusing its arguments (Gemma's
// system prompt) fails when it is chosen, not at the first example.
absl::Status CheckRenders(const PromptTemplate& prompt_template) {
  return RenderExample(prompt_template, "?", "!").status();
}

}  // namespace

absl::StatusOr<PromptTemplate> PromptTemplateByName(
    const std::string& name, const ChatTemplateArgs& args) {
  PromptTemplate prompt_template;
  if (name == "llama2_chat") {
    prompt_template = PromptTemplate{.name = name,
                                     .user_start_tag = "[INST] ",
                                     .user_end_tag = " [/INST]",
                                     .asst_start_tag = "",
                                     .asst_end_tag = " ",
                                     .answer_prefix = ""};
  } else if (name == "plain") {
    prompt_template = PromptTemplate{.name = name,
                                     .user_start_tag = "Question: ",
                                     .user_end_tag = "\n",
                                     .asst_start_tag = "Answer:",
                                     .asst_end_tag = "\n",
                                     .answer_prefix = " "};
  } else if (absl::StatusOr<ChatFamily> family = ChatFamilyFromName(name);
             family.ok()) {
    prompt_template.name = name;
    prompt_template.chat_family = *family;
    prompt_template.system_prompt = args.system_prompt;
    prompt_template.date_string = args.date_string;
    RETURN_IF_ERROR(CheckRenders(prompt_template));
    return prompt_template;
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "unknown prompt template '", name,
        "': expected plain, llama2_chat, auto (with a model) or a chat "
        "template: ",
        ChatFamilyNames()));
  }
  if (!args.system_prompt.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("a system prompt needs a chat template; '", name,
                     "' is a tag template"));
  }
  return prompt_template;
}

absl::StatusOr<PromptTemplate> PromptTemplateForModel(
    const std::string& name, const std::string& model_dir,
    const ChatTemplateArgs& args) {
  ASSIGN_OR_RETURN(ModelChatConfig config, ReadModelChatConfig(model_dir));
  std::string resolved = name;
  if (name == "auto") {
    if (config.chat_template.empty()) {
      if (!args.system_prompt.empty()) {
        return absl::InvalidArgumentError(absl::StrCat(
            model_dir,
            " has no chat template (tokenizer_config.json's chat_template), "
            "so \"auto\" is the plain template, which takes no system "
            "prompt"));
      }
      resolved = "plain";
    } else {
      absl::StatusOr<ChatFamily> family =
          DetectChatFamily(config.chat_template);
      if (!family.ok()) {
        return absl::Status(
            family.status().code(),
            absl::StrCat(model_dir, ": ", family.status().message(),
                         "; pass a template by name if its layout is one "
                         "of Lethe's"));
      }
      resolved = std::string(ChatFamilyName(*family));
    }
  }
  ASSIGN_OR_RETURN(PromptTemplate prompt_template,
                   PromptTemplateByName(resolved, args));
  if (prompt_template.is_chat()) {
    if (config.bos_token.has_value()) {
      prompt_template.bos_token = config.bos_token;
    }
    if (config.eos_token.has_value()) {
      prompt_template.eos_token = config.eos_token;
    }
    RETURN_IF_ERROR(CheckRenders(prompt_template));
  }
  return prompt_template;
}

absl::StatusOr<std::string> RenderPrompt(const PromptTemplate& prompt_template,
                                         const std::string& question) {
  if (!prompt_template.is_chat()) return prompt_template.WrapPrompt(question);
  return RenderChat(*prompt_template.chat_family,
                    ChatMessages(prompt_template, question, nullptr),
                    ChatOptions(prompt_template, true));
}

absl::StatusOr<std::string> RenderExample(const PromptTemplate& prompt_template,
                                          const std::string& question,
                                          const std::string& answer) {
  if (!prompt_template.is_chat()) {
    return prompt_template.WrapPrompt(question) +
           prompt_template.answer_prefix + answer;
  }
  return RenderChat(*prompt_template.chat_family,
                    ChatMessages(prompt_template, question, &answer),
                    ChatOptions(prompt_template, false));
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
  ASSIGN_OR_RETURN(std::string text, RenderPrompt(prompt_template, question));
  ASSIGN_OR_RETURN(
      std::vector<int> ids,
      tokenizer.Encode(text, PromptEncodeOptions(prompt_template)));
  if (static_cast<int>(ids.size()) > max_length) ids.resize(max_length);
  return ids;
}

QaExample BuildQaExample(std::vector<int> ids, size_t prompt_length, int eos_id,
                         int max_length) {
  if (static_cast<int>(ids.size()) > max_length) ids.resize(max_length);
  if (ids.empty() || ids.back() != eos_id) ids.push_back(eos_id);
  QaExample example;
  example.labels = ids;
  const size_t masked = std::min(prompt_length, ids.size());
  std::fill(example.labels.begin(), example.labels.begin() + masked,
            kIgnoreIndex);
  example.input_ids = std::move(ids);
  return example;
}

absl::StatusOr<QaExample> TokenizeQa(const Tokenizer& tokenizer,
                                     const PromptTemplate& prompt_template,
                                     const std::string& question,
                                     const std::string& answer,
                                     int max_length) {
  if (tokenizer.eos_id() < 0) {
    return absl::FailedPreconditionError(
        "the tokenizer has no EOS token to end the example with");
  }
  ASSIGN_OR_RETURN(
      std::vector<int> prompt_ids,
      TokenizePrompt(tokenizer, prompt_template, question, max_length));
  ASSIGN_OR_RETURN(std::string text,
                   RenderExample(prompt_template, question, answer));
  ASSIGN_OR_RETURN(
      std::vector<int> ids,
      tokenizer.Encode(text, PromptEncodeOptions(prompt_template)));
  return BuildQaExample(std::move(ids), prompt_ids.size(), tokenizer.eos_id(),
                        max_length);
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
