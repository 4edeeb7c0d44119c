// SentencePiece BPE tokenizers (`tokenizer.model`, the format of the Llama-2
// family and of Lethe's own models): load, encode, decode. Most code uses
// the Tokenizer interface (tokenizer.h) and Tokenizer::Load instead.
//
//   ASSIGN_OR_RETURN(std::unique_ptr<SentencePieceTokenizer> tokenizer,
//                    SentencePieceTokenizer::FromSerialized(bytes, path));
//
// This is Lethe's own reader of the model file and its own BPE encoder,
// checked token for token against libsentencepiece in tokenizer_test:
// Debian's libsentencepiece carries a private copy of protobuf whose symbols
// clash with the libprotobuf that LibTorch loads, so the two libraries cannot
// share a process (see DEVELOPERS.md). Supported: BPE models with identity
// normalisation (no precompiled character map), byte fallback, user-defined
// symbols, unused pieces. Anything else is rejected as UNIMPLEMENTED.
#ifndef LETHE_LIBS_TOKENIZER_SENTENCEPIECE_TOKENIZER_H_
#define LETHE_LIBS_TOKENIZER_SENTENCEPIECE_TOKENIZER_H_

#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "libs/tokenizer/tokenizer.h"
#include "libs/tokenizer/tokenizer_config.h"

namespace lethe {

class SentencePieceTokenizer final : public Tokenizer {
 public:
  // From the bytes of a tokenizer.model; errors name `source`.
  // INVALID_ARGUMENT when they are not a SentencePiece model; UNIMPLEMENTED
  // for features Lethe does not support.
  static absl::StatusOr<std::unique_ptr<SentencePieceTokenizer>> FromSerialized(
      absl::string_view serialized_model, const std::string& source);

  // Applies a tokenizer_config.json's special tokens (looked up by piece
  // text) and add_bos_token. Errors name `source`.
  absl::Status ApplyConfig(const tokenizer_internal::TokenizerConfig& config,
                           const std::string& source);

  int vocab_size() const override { return static_cast<int>(pieces_.size()); }
  int bos_id() const override { return special_.bos; }
  int eos_id() const override { return special_.eos; }
  int unk_id() const override { return special_.unk; }
  // -1 when the model defines no padding token (as Llama-2's does not).
  int pad_id() const override { return special_.pad; }
  const std::string& piece(int id) const override;

 protected:
  absl::StatusOr<std::vector<int>> DoEncode(
      absl::string_view text, const EncodeOptions& options) const override;
  // Control pieces (BOS, EOS, padding) are dropped from the text unless
  // options.skip_special_tokens is false.
  absl::StatusOr<std::string> DoDecode(
      const std::vector<int>& ids, const DecodeOptions& options) const override;

 private:
  enum class PieceType {
    kNormal = 1,
    kUnknown,
    kControl,
    kUserDefined,
    kUnused,
    kByte
  };
  struct Piece {
    std::string text;
    float score = 0;
    PieceType type = PieceType::kNormal;
  };

  SentencePieceTokenizer() = default;
  std::string Normalize(absl::string_view text) const;

  std::vector<Piece> pieces_;
  // Text of normal, user-defined and unused pieces -> id (mergeable).
  std::unordered_map<std::string, int> mergeable_;
  // Text of every piece -> id.
  std::unordered_map<std::string, int> by_text_;
  std::vector<std::string> user_defined_;  // Matched before characters.
  int byte_ids_[256];
  bool byte_fallback_ = false;
  bool add_dummy_prefix_ = true;
  bool remove_extra_whitespaces_ = true;
  bool escape_whitespaces_ = true;
  tokenizer_internal::SpecialTokenIds special_ = {
      .bos = 1, .eos = 2, .unk = 0, .pad = -1, .add_bos = true};
  std::string unk_surface_ = " \xE2\x81\x87 ";  // " ⁇ "
};

}  // namespace lethe

#endif  // LETHE_LIBS_TOKENIZER_SENTENCEPIECE_TOKENIZER_H_
