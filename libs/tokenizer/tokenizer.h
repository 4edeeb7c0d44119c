// SentencePiece BPE tokenizers (`tokenizer.model`, the format of the Llama-2
// family and of Lethe's own models): load, encode, decode.
//
//   ASSIGN_OR_RETURN(std::unique_ptr<Tokenizer> tokenizer,
//                    Tokenizer::Load(model_dir + "/tokenizer.model"));
//   ASSIGN_OR_RETURN(std::vector<int> ids,
//                    tokenizer->Encode("Who wrote it?", {.add_bos = true}));
//   ASSIGN_OR_RETURN(std::string text, tokenizer->Decode(ids));
//
// This is Lethe's own reader of the model file and its own BPE encoder,
// checked token for token against libsentencepiece in tokenizer_test:
// Debian's libsentencepiece carries a private copy of protobuf whose symbols
// clash with the libprotobuf that LibTorch loads, so the two libraries cannot
// share a process (see DEVELOPERS.md). Supported: BPE models with identity
// normalisation (no precompiled character map), byte fallback, user-defined
// symbols, unused pieces. Anything else is rejected as UNIMPLEMENTED.
#ifndef LETHE_LIBS_TOKENIZER_TOKENIZER_H_
#define LETHE_LIBS_TOKENIZER_TOKENIZER_H_

#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace lethe {

struct EncodeOptions {
  bool add_bos = false;
  bool add_eos = false;
};

class Tokenizer {
 public:
  // NOT_FOUND when the file is missing; INVALID_ARGUMENT when it is not a
  // SentencePiece model; UNIMPLEMENTED for features Lethe does not support.
  // Errors name the path.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> Load(
      const std::string& model_path);
  // From the bytes of a tokenizer.model.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromSerialized(
      absl::string_view serialized_model);

  absl::StatusOr<std::vector<int>> Encode(
      absl::string_view text, const EncodeOptions& options = {}) const;
  // Control tokens (BOS, EOS, padding) are dropped from the text; ids
  // outside the vocabulary are INVALID_ARGUMENT.
  absl::StatusOr<std::string> Decode(const std::vector<int>& ids) const;

  int vocab_size() const { return static_cast<int>(pieces_.size()); }
  int bos_id() const { return bos_id_; }
  int eos_id() const { return eos_id_; }
  int unk_id() const { return unk_id_; }
  // -1 when the model defines no padding token (as Llama-2's does not).
  int pad_id() const { return pad_id_; }
  const std::string& piece(int id) const { return pieces_[id].text; }

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

  Tokenizer() = default;
  static absl::StatusOr<std::unique_ptr<Tokenizer>> Parse(
      absl::string_view bytes, const std::string& source);
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
  int unk_id_ = 0;
  int bos_id_ = 1;
  int eos_id_ = 2;
  int pad_id_ = -1;
  std::string unk_surface_ = " \xE2\x81\x87 ";  // " ⁇ "
};

}  // namespace lethe

#endif  // LETHE_LIBS_TOKENIZER_TOKENIZER_H_
