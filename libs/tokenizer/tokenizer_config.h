// Internal to libs/tokenizer: the settings of a Hugging Face
// tokenizer_config.json that Lethe's tokenizers apply (the special tokens and
// whether a BOS is added), and how they become ids.
//
//   ASSIGN_OR_RETURN(TokenizerConfig config,
//                    ParseTokenizerConfig(json_text, path));
//   ASSIGN_OR_RETURN(SpecialTokenIds ids,
//                    ResolveSpecialTokens(config, defaults, lookup, path));
//
// Each token setting is a string, an object whose "content" is the string
// (transformers' AddedToken), or null (no such token); a setting that is
// absent leaves the tokenizer file's own choice.
#ifndef LETHE_LIBS_TOKENIZER_TOKENIZER_CONFIG_H_
#define LETHE_LIBS_TOKENIZER_TOKENIZER_CONFIG_H_

#include <functional>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace lethe::tokenizer_internal {

struct ConfigToken {
  enum class State { kAbsent, kNull, kText };
  State state = State::kAbsent;
  std::string text;
};

struct TokenizerConfig {
  ConfigToken bos_token;
  ConfigToken eos_token;
  ConfigToken pad_token;
  ConfigToken unk_token;
  std::optional<bool> add_bos_token;
};

// INVALID_ARGUMENT naming `source` and the field when the JSON is malformed
// or a setting has the wrong type.
absl::StatusOr<TokenizerConfig> ParseTokenizerConfig(absl::string_view json,
                                                     const std::string& source);

struct SpecialTokenIds {
  int bos = -1;
  int eos = -1;
  int unk = -1;
  int pad = -1;
  bool add_bos = true;  // Whether EncodeOptions::add_bos adds the BOS.
};

// `defaults` with the settings of `config` applied; `lookup` gives a token's
// id from its text (-1 when the tokenizer has no such token, which is
// INVALID_ARGUMENT naming `source` and the field).
absl::StatusOr<SpecialTokenIds> ResolveSpecialTokens(
    const TokenizerConfig& config, const SpecialTokenIds& defaults,
    const std::function<int(const std::string&)>& lookup,
    const std::string& source);

}  // namespace lethe::tokenizer_internal

#endif  // LETHE_LIBS_TOKENIZER_TOKENIZER_CONFIG_H_
