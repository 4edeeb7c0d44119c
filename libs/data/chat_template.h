// Chat templates: the text an instruct model is prompted with, rendered
// exactly as transformers' `tokenizer.apply_chat_template(messages,
// tokenize=False, ...)` renders the model's own Jinja template (the
// `chat_template` of its tokenizer_config.json), for the families below.
//
//   ASSIGN_OR_RETURN(ChatFamily family, ChatFamilyFromName("llama3"));
//   ASSIGN_OR_RETURN(
//       std::string text,
//       RenderChat(family,
//                  {{"system", "You are a helpful assistant."},
//                   {"user", question}},
//                  {.add_generation_prompt = true,
//                   .date_string = "10 Apr 2025"}));
//   // `text` already starts with the BOS text where the template writes
//   // one: tokenize it without adding another BOS (transformers does too).
//
//   ASSIGN_OR_RETURN(ModelChatConfig config, ReadModelChatConfig(model_dir));
//   ASSIGN_OR_RETURN(ChatFamily own, DetectChatFamily(config.chat_template));
//
// Why hand-written: Lethe needs no general template engine, and Debian
// packages none for C++ (Jinja exists there only for Python, Rust and R), so
// each family's template is written out here as C++, following the real
// template's logic for system, user and assistant messages (tool calls and
// other roles are INVALID_ARGUMENT). Each family is checked against its
// model's real template rendered by two independent engines, Python's Jinja2
// configured as transformers configures it, and npm @huggingface/jinja:
// testdata/chat_template_renders.json, made by
// testdata/make_chat_template_renders.py (which names where each template
// came from). Families:
//   llama3   Llama 3.1, 3.2, 3.3 Instruct (the 3.1 and 3.2 templates). Always
//            writes a system header "Cutting Knowledge Date: December 2023\n
//            Today Date: <date_string>"; trims every text.
//   llama2   Llama-2-chat (<<SYS>> inside the first [INST]); checked against
//            transformers' Llama chat template without a default system
//            prompt, not against Meta's tokenizer_config.json itself.
//   qwen2.5  Qwen2.5 Instruct: ChatML with a default system message "You are
//            Qwen, created by Alibaba Cloud. You are a helpful assistant."
//   chatml   plain ChatML (transformers' old default), no default system.
//   mistral  Mistral-7B-Instruct-v0.2's current template (mistralai's "v1"):
//            "<s> [INST] {system}\n\n{user} [/INST] {assistant}</s>", the
//            system text folded into the first user turn; no generation
//            prompt. Mistral's variants differ: v0.1's original template has
//            no system message and no space before the answer
//            ("[INST] q [/INST]a</s> "), v0.3's ("v3") writes "[INST] q[/INST]"
//            and folds the system text into the LAST user turn. Only v0.2's
//            is implemented; DetectChatFamily refuses the others.
//   zephyr   HuggingFaceH4/zephyr-7b-beta (Mistral-based, in open-unlearning):
//            "<|user|>\n{text}</s>\n" per message.
//   phi3     Phi-3.5-mini-instruct: "<|user|>\n{text}<|end|>\n", an empty
//            system message is left out, and without a generation prompt the
//            EOS text follows the last message.
//   gemma    Gemma and Gemma 2 (-it): a system message is INVALID_ARGUMENT
//            ("System role not supported", as the template raises). Checked
//            against gemma-2-2b-it's; gemma-7b-it's, as llama.cpp's tests
//            quote it, is the same but for the leading BOS llama.cpp strips.
//   gemma3   Gemma 3 (-it): the system text and "\n\n" are folded into the
//            first user turn.
// Where the engines disagree, Lethe follows Jinja2 (transformers): Llama 2's
// empty system message still writes an empty <<SYS>> block, and `trim` strips
// Python's whitespace set (U+0085 included, U+FEFF not).
//
// Dates: Llama 3.2's template renders today's date (transformers' strftime_now,
// local time) when no date_string is passed, 3.1's and 3.3's "26 Jul 2024".
// Lethe never renders the current date: an empty date_string gives
// "26 Jul 2024". Pass one (open-unlearning passes "10 Apr 2025") to match a
// Llama 3.2 run.
#ifndef LETHE_LIBS_DATA_CHAT_TEMPLATE_H_
#define LETHE_LIBS_DATA_CHAT_TEMPLATE_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace lethe {

enum class ChatFamily {
  kLlama3,
  kLlama2,
  kQwen25,
  kChatMl,
  kMistral,
  kZephyr,
  kPhi3,
  kGemma,
  kGemma3,
};

// "llama3", "llama2", "qwen2.5", "chatml", "mistral", "zephyr", "phi3",
// "gemma", "gemma3".
absl::string_view ChatFamilyName(ChatFamily family);
// INVALID_ARGUMENT listing the names for any other name.
absl::StatusOr<ChatFamily> ChatFamilyFromName(absl::string_view name);
// Every family's name, comma-separated, for messages.
std::string ChatFamilyNames();

// The texts the template writes for the tokenizer's special tokens.
struct ChatSpecialTokens {
  std::string bos;
  std::string eos;
};
// The family's reference tokenizer's texts (tokenizer_config.json's bos_token
// and eos_token): llama3 <|begin_of_text|> <|eot_id|>; qwen2.5 and chatml
// none and <|im_end|>; llama2, mistral, zephyr <s> </s>; phi3 <s>
// <|endoftext|>; gemma, gemma3 <bos> <eos>.
ChatSpecialTokens DefaultChatSpecialTokens(ChatFamily family);

struct ChatMessage {
  std::string role;  // "system", "user" or "assistant".
  std::string content;
};

struct ChatRenderOptions {
  // Ends the text with the assistant's header, ready for the answer. Llama 2
  // and Mistral have none (their prompt already ends with [/INST]).
  bool add_generation_prompt = false;
  // Llama 3's "Today Date: ..."; empty: "26 Jul 2024" (see above). Other
  // families ignore it, as their templates do.
  std::string date_string;
  // The tokenizer's BOS and EOS texts; unset: DefaultChatSpecialTokens.
  std::optional<std::string> bos_token;
  std::optional<std::string> eos_token;
};

// The template's text for `messages`. INVALID_ARGUMENT for no messages, a
// role other than system, user and assistant, and wherever the real template
// raises (Gemma's system message; roles that do not alternate
// user/assistant after the optional system message in llama2, mistral, gemma
// and gemma3), with the template's message.
absl::StatusOr<std::string> RenderChat(ChatFamily family,
                                       const std::vector<ChatMessage>& messages,
                                       const ChatRenderOptions& options = {});

// The family of a model's chat template, from marker strings:
//   llama3   "<|start_header_id|>" and "Cutting Knowledge Date"
//   qwen2.5  "<|im_start|>" and "You are Qwen, created by Alibaba Cloud"
//   chatml   "<|im_start|>", without a built-in system message, BOS or EOS
//   llama2   "[INST]" and "<<SYS>>"
//   mistral  "[INST]", "' [INST] '" (v0.2's spacing) and "loop.first and
//            system_message", without "[AVAILABLE_TOOLS]"
//   phi3     "<|user|>", "<|end|>" and "<|system|>"
//   zephyr   "<|user|>", "<|assistant|>" and "eos_token", without "<|end|>"
//   gemma3   "<start_of_turn>" and "first_user_prefix"
//   gemma    "<start_of_turn>" and "System role not supported"
// UNIMPLEMENTED naming the markers looked for when none matches, and naming
// the variant when a family's first marker is there but the rest are not
// (Llama 3.0, Mistral v0.1/v0.3, Phi-3-mini's older template, ChatML with
// another built-in system message). A template edited but keeping these
// markers is taken for its family: pass the family by name only for models
// whose template is the family's own.
absl::StatusOr<ChatFamily> DetectChatFamily(absl::string_view chat_template);

// What a model directory says about its chat template.
struct ModelChatConfig {
  // chat_template.jinja when present (transformers saves it there since
  // 4.50), else tokenizer_config.json's `chat_template` (a string, or the
  // "default" entry of a list of {name, template}). Empty: the model has
  // none.
  std::string chat_template;
  // tokenizer_config.json's bos_token and eos_token (a string or an
  // AddedToken object's "content"); unset when absent or null.
  std::optional<std::string> bos_token;
  std::optional<std::string> eos_token;
};

// A directory without tokenizer_config.json (Lethe's own models) has no chat
// template. INVALID_ARGUMENT naming the file when it is not JSON or a field
// has the wrong type.
absl::StatusOr<ModelChatConfig> ReadModelChatConfig(
    const std::string& model_dir);

}  // namespace lethe

#endif  // LETHE_LIBS_DATA_CHAT_TEMPLATE_H_
