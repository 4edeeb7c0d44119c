// SentencePiece tokenizers: load a `tokenizer.model` (the format of the
// Llama-2 family) and encode/decode text; train a small BPE one for Lethe's
// own models.
//
//   ASSIGN_OR_RETURN(std::unique_ptr<Tokenizer> tokenizer,
//                    Tokenizer::Load(model_dir + "/tokenizer.model"));
//   ASSIGN_OR_RETURN(std::vector<int> ids,
//                    tokenizer->Encode("Who wrote it?", {.add_bos = true}));
//   ASSIGN_OR_RETURN(std::string text, tokenizer->Decode(ids));
#ifndef LETHE_LIBS_TOKENIZER_TOKENIZER_H_
#define LETHE_LIBS_TOKENIZER_TOKENIZER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace lethe {

namespace tokenizer_internal {
class SentencePieceAdapter;
}  // namespace tokenizer_internal

struct EncodeOptions {
  bool add_bos = false;
  bool add_eos = false;
};

class Tokenizer {
 public:
  // NOT_FOUND when the file is missing, INVALID_ARGUMENT when it is not a
  // SentencePiece model; both name the path.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> Load(
      const std::string& model_path);
  // From the bytes of a tokenizer.model.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromSerialized(
      absl::string_view serialized_model);
  ~Tokenizer();

  absl::StatusOr<std::vector<int>> Encode(
      absl::string_view text, const EncodeOptions& options = {}) const;
  // Control tokens (BOS, EOS, padding) are dropped from the text.
  absl::StatusOr<std::string> Decode(const std::vector<int>& ids) const;

  int vocab_size() const;
  int bos_id() const;
  int eos_id() const;
  int unk_id() const;
  // -1 when the model defines no padding token (as Llama-2's does not).
  int pad_id() const;

 private:
  explicit Tokenizer(
      std::unique_ptr<tokenizer_internal::SentencePieceAdapter> processor);

  std::unique_ptr<tokenizer_internal::SentencePieceAdapter> processor_;
};

struct TokenizerTrainingOptions {
  int vocab_size = 2000;
  int num_threads = 2;
};

// Trains a byte-fallback BPE model with Llama-2's conventions (unk 0, bos 1,
// eos 2, no padding token, digits split, identity normalisation) on
// `sentences` and returns the bytes of its tokenizer.model. Deterministic for
// the same sentences and options.
absl::StatusOr<std::string> TrainTokenizer(
    const std::vector<std::string>& sentences,
    const TokenizerTrainingOptions& options);

}  // namespace lethe

#endif  // LETHE_LIBS_TOKENIZER_TOKENIZER_H_
