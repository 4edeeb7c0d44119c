// Hugging Face `tokenizer.json` tokenizers (Llama 3.x, Qwen2.5, Mistral and
// Llama-2 conversions, ...): Lethe's own reader and BPE encoder, following
// the Rust `tokenizers` library that transformers uses, and checked id for
// id against it (hf_tokenizer_test). Hand-written because Debian ships no
// maintained C++ library for the format (Hugging Face's own is Rust).
// Most code uses the Tokenizer interface (tokenizer.h) and LoadModelTokenizer.
//
//   ASSIGN_OR_RETURN(std::unique_ptr<HfTokenizer> tokenizer,
//                    HfTokenizer::FromJson(json_text, "'tokenizer.json'"));
//
// Supported, anything else is UNIMPLEMENTED naming the component:
// - model: BPE (vocab; merges as "a b" strings or [a, b] pairs;
//   ignore_merges; byte_fallback; unk_token with fuse_unk;
//   continuing_subword_prefix and end_of_word_suffix; no dropout).
// - normalizer: Sequence, Prepend, Replace (string or regex), Strip, NFC.
// - pre_tokenizer: Sequence, ByteLevel (add_prefix_space, use_regex), Split
//   (string or regex; every behaviour; invert), Metaspace (prepend_scheme
//   always/first/never, split), Digits.
// - added_tokens, special or not, matched in the text before normalisation
//   (normalized false) or after it (normalized true), with lstrip, rstrip
//   and single_word.
// - post_processor: TemplateProcessing, ByteLevel, Sequence of them; its
//   leading special tokens are what EncodeOptions::add_bos adds.
// - decoder: ByteLevel, Metaspace, Replace, ByteFallback, Fuse, Strip,
//   Sequence.
// Regular expressions (Split, Replace) run on PCRE2 with Unicode properties
// (\p{L}, \p{N}); \s is Unicode's White_Space, as in Oniguruma, which the
// Rust library uses. The text must be valid UTF-8. Decoding does not apply
// transformers' clean_up_tokenization_spaces.
#ifndef LETHE_LIBS_TOKENIZER_HF_TOKENIZER_H_
#define LETHE_LIBS_TOKENIZER_HF_TOKENIZER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "libs/tokenizer/tokenizer.h"
#include "libs/tokenizer/tokenizer_config.h"

namespace lethe {

class HfTokenizer final : public Tokenizer {
 public:
  // From the text of a tokenizer.json; errors name `source` and the field.
  // INVALID_ARGUMENT when the JSON is malformed, UNIMPLEMENTED for
  // components Lethe does not support.
  static absl::StatusOr<std::unique_ptr<HfTokenizer>> FromJson(
      absl::string_view json, const std::string& source);
  ~HfTokenizer() override;

  // Applies a tokenizer_config.json's special tokens (looked up among the
  // added tokens, then the vocabulary) and add_bos_token. Without one, the
  // BOS is the first special token of the TemplateProcessing template, the
  // EOS none (-1), the padding token the file's own "padding" setting and
  // the unknown token the model's unk_token.
  absl::Status ApplyConfig(const tokenizer_internal::TokenizerConfig& config,
                           const std::string& source);

  int vocab_size() const override;
  int bos_id() const override;
  int eos_id() const override;
  int unk_id() const override;
  int pad_id() const override;
  const std::string& piece(int id) const override;

 protected:
  absl::StatusOr<std::vector<int>> DoEncode(
      absl::string_view text, const EncodeOptions& options) const override;
  absl::StatusOr<std::string> DoDecode(
      const std::vector<int>& ids, const DecodeOptions& options) const override;

 private:
  struct Impl;
  explicit HfTokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace lethe

#endif  // LETHE_LIBS_TOKENIZER_HF_TOKENIZER_H_
