// The text commands of the `lethe` CLI, for checking Lethe's tokenizer and
// prompts against another stack (transformers, open-unlearning):
//
//   lethe tokenize --model=DIR --text="Who wrote it?"   ids and pieces
//   lethe prompt --model=DIR --question=Q [--answer=A]  the rendered text
//
// Neither loads the model's weights.
#ifndef LETHE_SERVICES_CLI_TEXT_COMMANDS_H_
#define LETHE_SERVICES_CLI_TEXT_COMMANDS_H_

#include <ostream>
#include <string>

#include "absl/status/status.h"
#include "libs/data/qa_example.h"

namespace lethe {

struct TokenizeCommand {
  std::string model_dir;
  std::string text;
  // As transformers' tokenizer(text) (add_special_tokens=True): the model's
  // BOS first, when it adds one.
  bool add_bos = true;
};

// Prints one line per token, "<id>\t<piece>", then "ids: [..]" (the ids as
// a JSON array) and "decoded: <text>" (decode(encode(text))).
absl::Status RunTokenize(const TokenizeCommand& command, std::ostream& out);

struct PromptCommand {
  std::string model_dir;
  std::string prompt_template = "auto";  // As JobSpec.prompt_template.
  ChatTemplateArgs chat_args;
  std::string question;
  // Empty: the prompt a model answers (with the generation prompt); else
  // the full training example, prompt and answer.
  std::string answer;
};

// Prints the exact text (nothing added, not even a newline), as
// transformers' apply_chat_template(..., tokenize=False) renders it.
absl::Status RunPrompt(const PromptCommand& command, std::ostream& out);

}  // namespace lethe

#endif  // LETHE_SERVICES_CLI_TEXT_COMMANDS_H_
