#include "libs/tokenizer/tokenizer_config.h"

#include <tuple>
#include <utility>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace lethe::tokenizer_internal {
namespace {

using Json = nlohmann::json;

absl::Status ReadToken(const Json& config, const char* field,
                       const std::string& source, ConfigToken* token) {
  auto it = config.find(field);
  if (it == config.end()) return absl::OkStatus();
  if (it->is_null()) {
    token->state = ConfigToken::State::kNull;
    return absl::OkStatus();
  }
  const Json* text = &*it;
  if (it->is_object()) {
    auto content = it->find("content");
    if (content == it->end()) {
      return absl::InvalidArgumentError(
          absl::StrCat(source, ": ", field, " has no \"content\""));
    }
    text = &*content;
  }
  if (!text->is_string()) {
    return absl::InvalidArgumentError(absl::StrCat(
        source, ": ", field, " is neither a string, an object nor null"));
  }
  token->state = ConfigToken::State::kText;
  token->text = text->get<std::string>();
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<TokenizerConfig> ParseTokenizerConfig(
    absl::string_view json, const std::string& source) {
  const Json config = Json::parse(json.begin(), json.end(), nullptr,
                                  /*allow_exceptions=*/false);
  if (config.is_discarded() || !config.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, " is not a JSON object"));
  }
  TokenizerConfig parsed;
  for (const auto& [field, token] :
       {std::pair<const char*, ConfigToken*>{"bos_token", &parsed.bos_token},
        {"eos_token", &parsed.eos_token},
        {"pad_token", &parsed.pad_token},
        {"unk_token", &parsed.unk_token}}) {
    absl::Status status = ReadToken(config, field, source, token);
    if (!status.ok()) return status;
  }
  auto add_bos = config.find("add_bos_token");
  if (add_bos != config.end() && !add_bos->is_null()) {
    if (!add_bos->is_boolean()) {
      return absl::InvalidArgumentError(
          absl::StrCat(source, ": add_bos_token is not a boolean"));
    }
    parsed.add_bos_token = add_bos->get<bool>();
  }
  return parsed;
}

absl::StatusOr<SpecialTokenIds> ResolveSpecialTokens(
    const TokenizerConfig& config, const SpecialTokenIds& defaults,
    const std::function<int(const std::string&)>& lookup,
    const std::string& source) {
  SpecialTokenIds ids = defaults;
  for (const auto& [field, token, id] :
       {std::tuple<const char*, const ConfigToken*, int*>{
            "bos_token", &config.bos_token, &ids.bos},
        {"eos_token", &config.eos_token, &ids.eos},
        {"pad_token", &config.pad_token, &ids.pad},
        {"unk_token", &config.unk_token, &ids.unk}}) {
    switch (token->state) {
      case ConfigToken::State::kAbsent:
        break;
      case ConfigToken::State::kNull:
        *id = -1;
        break;
      case ConfigToken::State::kText:
        *id = lookup(token->text);
        if (*id < 0) {
          return absl::InvalidArgumentError(
              absl::StrCat(source, ": ", field, " '", token->text,
                           "' is not a token of the tokenizer"));
        }
        break;
    }
  }
  if (config.add_bos_token.has_value()) ids.add_bos = *config.add_bos_token;
  return ids;
}

}  // namespace lethe::tokenizer_internal
