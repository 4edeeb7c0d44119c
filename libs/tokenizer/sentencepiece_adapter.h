// Internal to libs/tokenizer: the only code that includes SentencePiece's
// headers, used to train tokenizers and, in tests, as the reference that
// Lethe's own encoder is checked against. SentencePiece declares
// absl::string_view as std::string_view, which clashes with Debian's Abseil
// (its own string_view class), so this adapter speaks std types only and
// reports failures as a message string (empty on success).
#ifndef LETHE_LIBS_TOKENIZER_SENTENCEPIECE_ADAPTER_H_
#define LETHE_LIBS_TOKENIZER_SENTENCEPIECE_ADAPTER_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace sentencepiece {
class SentencePieceProcessor;
}  // namespace sentencepiece

namespace lethe::tokenizer_internal {

class SentencePieceAdapter {
 public:
  SentencePieceAdapter();
  ~SentencePieceAdapter();

  std::string LoadFile(const std::string& path);
  std::string LoadSerialized(const std::string& serialized_model);
  std::string Encode(const std::string& text, std::vector<int>* ids) const;
  std::string Decode(const std::vector<int>& ids, std::string* text) const;

  int vocab_size() const;
  int bos_id() const;
  int eos_id() const;
  int unk_id() const;
  int pad_id() const;

 private:
  std::unique_ptr<sentencepiece::SentencePieceProcessor> processor_;
};

// Runs the SentencePiece trainer with `arguments` (its flag names without
// dashes) on `sentences`; the model's bytes go to `serialized_model`.
std::string TrainSentencePiece(
    const std::vector<std::string>& sentences,
    const std::map<std::string, std::string>& arguments,
    std::string* serialized_model);

}  // namespace lethe::tokenizer_internal

#endif  // LETHE_LIBS_TOKENIZER_SENTENCEPIECE_ADAPTER_H_
