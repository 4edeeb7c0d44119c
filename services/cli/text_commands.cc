#include "services/cli/text_commands.h"

#include <memory>
#include <vector>

#include "absl/strings/str_join.h"
#include "libs/status/status_macros.h"
#include "libs/tokenizer/tokenizer.h"

namespace lethe {
namespace {

absl::Status RequireModel(const std::string& model_dir) {
  if (model_dir.empty())
    return absl::InvalidArgumentError("--model is required");
  return absl::OkStatus();
}

}  // namespace

absl::Status RunTokenize(const TokenizeCommand& command, std::ostream& out) {
  RETURN_IF_ERROR(RequireModel(command.model_dir));
  ASSIGN_OR_RETURN(std::unique_ptr<Tokenizer> tokenizer,
                   LoadModelTokenizer(command.model_dir));
  ASSIGN_OR_RETURN(
      const std::vector<int> ids,
      tokenizer->Encode(command.text, {.add_bos = command.add_bos}));
  for (const int id : ids) out << id << "\t" << tokenizer->piece(id) << "\n";
  ASSIGN_OR_RETURN(const std::string decoded,
                   tokenizer->Decode(ids, {.skip_special_tokens = true}));
  out << "ids: [" << absl::StrJoin(ids, ", ") << "]\n"
      << "decoded: " << decoded << "\n";
  return absl::OkStatus();
}

absl::Status RunPrompt(const PromptCommand& command, std::ostream& out) {
  RETURN_IF_ERROR(RequireModel(command.model_dir));
  if (command.question.empty()) {
    return absl::InvalidArgumentError("--question is required");
  }
  ASSIGN_OR_RETURN(
      const PromptTemplate prompt_template,
      PromptTemplateForModel(command.prompt_template, command.model_dir,
                             command.chat_args));
  if (command.answer.empty()) {
    ASSIGN_OR_RETURN(const std::string text,
                     RenderPrompt(prompt_template, command.question));
    out << text;
  } else {
    ASSIGN_OR_RETURN(
        const std::string text,
        RenderExample(prompt_template, command.question, command.answer));
    out << text;
  }
  return absl::OkStatus();
}

}  // namespace lethe
