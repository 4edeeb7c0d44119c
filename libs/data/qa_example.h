// Turning a question-answer pair into model inputs, exactly as
// open-unlearning's preprocess_chat_instance (src/data/utils.py) does for
// TOFU. Two kinds of prompt template:
//
// Tag templates ("plain", "llama2_chat"; open-unlearning's
// apply_chat_template: false): the prompt is
//   user_start_tag + question + user_end_tag + asst_start_tag
// and the full text is prompt + answer_prefix + answer; both are tokenized
// with BOS.
//
// Chat templates (a ChatFamily name, or "auto" for the model's own;
// apply_chat_template: true): the full text is the model's chat template
// (libs/data/chat_template.h) over [system?, user(question),
// assistant(answer)] without the generation prompt, and the prompt the same
// over [system?, user(question)] with it; the system message is there when
// system_prompt is not empty. Both are tokenized WITHOUT adding BOS: the
// template writes the BOS text itself (transformers' apply_chat_template
// tokenizes with add_special_tokens=False).
//
// Then, for both: the full ids are truncated to max_length tokens (keeping
// the start, so the answer's first tokens survive), EOS is appended unless
// the last id already is EOS (Llama 3's <|eot_id|>, Mistral's </s>, Phi-3.5's
// <|endoftext|> end their full text), and labels are kIgnoreIndex over as
// many tokens as the prompt has and the ids after. open-unlearning truncates
// tag-template texts (tokenizer(..., max_length, truncation=True)) but
// passes no max_length to apply_chat_template; Lethe truncates both alike,
// which changes nothing for an example that fits (all of TOFU at 512).
//
// open-unlearning's template_args per model (configs/model/*.yaml,
// locuslab/open-unlearning d3d7cf9), as Lethe's --template, --system_prompt
// and --date_string:
//   Llama-3.2-1B/3B-Instruct, Llama-3.1-8B-Instruct: llama3,
//       "You are a helpful assistant.", "10 Apr 2025"
//   Qwen2.5-1.5B/3B/7B-Instruct: qwen2.5, "You are a helpful assistant."
//   Phi-3.5-mini-instruct: phi3, "You are a helpful assistant."
//   zephyr-7b-beta: zephyr, "You are a helpful assistant." (its date_string
//       "10 Apr 2025" is unused by its template)
//   gemma-7b-it: gemma, no system prompt (its template refuses one)
//   Llama-2-7b-chat-hf: llama2_chat (tags "[INST] ", " [/INST]", "", " ";
//       not Meta's chat template, which is the "llama2" family)
//
//   const ChatTemplateArgs args = {
//       .system_prompt = "You are a helpful assistant.",
//       .date_string = "10 Apr 2025"};
//   ASSIGN_OR_RETURN(PromptTemplate chat,
//                    PromptTemplateForModel("auto", model_dir, args));
//   ASSIGN_OR_RETURN(QaExample example,
//                    TokenizeQa(tokenizer, chat, record.question,
//                               record.answer, /*max_length=*/512));
#ifndef LETHE_LIBS_DATA_QA_EXAMPLE_H_
#define LETHE_LIBS_DATA_QA_EXAMPLE_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "libs/data/chat_template.h"
#include "libs/data/tofu_dataset.h"
#include "libs/tokenizer/tokenizer.h"

namespace lethe {

inline constexpr int kIgnoreIndex = -100;

// A prompt format, as data. Tag names follow open-unlearning's template_args.
struct PromptTemplate {
  std::string name;
  std::string user_start_tag;
  std::string user_end_tag;
  std::string asst_start_tag;
  // Unused for single-turn examples (open-unlearning adds it only after
  // in-context examples); kept so templates carry all of their tags.
  std::string asst_end_tag;
  // Text between the prompt and the answer that belongs to the answer's
  // tokens (" " for the plain template, so "Answer:" + " The..." tokenizes
  // at a word boundary).
  std::string answer_prefix;

  // Chat templates only; the tags above are then empty.
  std::optional<ChatFamily> chat_family;
  // open-unlearning's template_args.system_prompt: a system message ahead of
  // the question when not empty.
  std::string system_prompt;
  // template_args.date_string (Llama 3's "Today Date"); empty: the
  // template's default, "26 Jul 2024".
  std::string date_string;
  // The tokenizer's BOS and EOS texts as the template writes them; unset:
  // the family's (DefaultChatSpecialTokens).
  std::optional<std::string> bos_token;
  std::optional<std::string> eos_token;

  bool is_chat() const { return chat_family.has_value(); }

  // A tag template's prompt text (RenderPrompt covers both kinds).
  std::string WrapPrompt(const std::string& question) const {
    return user_start_tag + question + user_end_tag + asst_start_tag;
  }
};

// What a chat template takes from the job (open-unlearning's template_args).
struct ChatTemplateArgs {
  std::string system_prompt;
  std::string date_string;
};

// "llama2_chat": open-unlearning's Llama-2-7b-chat tags
//   ("[INST] ", " [/INST]", "", " ").
// "plain": "Question: {q}\nAnswer: {a}" for Lethe's own small models.
// A ChatFamily name ("llama3", "qwen2.5", ...): that chat template with
// `args`. INVALID_ARGUMENT listing the names for any other name (including
// "auto", which needs the model: PromptTemplateForModel), for a system
// prompt with a tag template, and where the chat template refuses the
// system prompt (gemma).
absl::StatusOr<PromptTemplate> PromptTemplateByName(
    const std::string& name, const ChatTemplateArgs& args = {});

// The template for the model in `model_dir`. "auto": the model's own chat
// template (ReadModelChatConfig, DetectChatFamily: UNIMPLEMENTED naming the
// markers looked for when Lethe has no renderer for it), or "plain" when the
// model has none (its tokenizer_config.json has no chat_template, or there is
// no such file). Other names as PromptTemplateByName. A chat template takes
// the BOS and EOS texts from the model's tokenizer_config.json when it has
// them.
absl::StatusOr<PromptTemplate> PromptTemplateForModel(
    const std::string& name, const std::string& model_dir,
    const ChatTemplateArgs& args = {});

// The prompt's text, the input for generating an answer: WrapPrompt, or the
// chat template over [system?, user] with the generation prompt.
absl::StatusOr<std::string> RenderPrompt(const PromptTemplate& prompt_template,
                                         const std::string& question);
// The full example's text (prompt and answer).
absl::StatusOr<std::string> RenderExample(const PromptTemplate& prompt_template,
                                          const std::string& question,
                                          const std::string& answer);

struct QaExample {
  std::vector<int> input_ids;
  std::vector<int> labels;  // kIgnoreIndex where no loss is taken.
  int answer_tokens() const;
};

// FAILED_PRECONDITION when the tokenizer has no EOS.
absl::StatusOr<QaExample> TokenizeQa(const Tokenizer& tokenizer,
                                     const PromptTemplate& prompt_template,
                                     const std::string& question,
                                     const std::string& answer, int max_length);

// TokenizeQa over every record's question and answer, in order.
absl::StatusOr<std::vector<QaExample>> TokenizeRecords(
    const Tokenizer& tokenizer, const PromptTemplate& prompt_template,
    const std::vector<TofuRecord>& records, int max_length);

// The prompt's token ids (with BOS for tag templates, as the chat template
// writes it for chat templates), the input for generating an answer.
absl::StatusOr<std::vector<int>> TokenizePrompt(
    const Tokenizer& tokenizer, const PromptTemplate& prompt_template,
    const std::string& question, int max_length);

// TokenizeQa's last step, on the full example's ids: truncated to
// max_length, EOS appended unless the last id is `eos_id`, labels
// kIgnoreIndex over the first `prompt_length` ids.
QaExample BuildQaExample(std::vector<int> ids, size_t prompt_length, int eos_id,
                         int max_length);

}  // namespace lethe

#endif  // LETHE_LIBS_DATA_QA_EXAMPLE_H_
