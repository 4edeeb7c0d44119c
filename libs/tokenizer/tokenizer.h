// Tokenizers of Lethe's models: the interface every tokenizer implements and
// the loaders that pick an implementation from the files of a model folder.
//
//   ASSIGN_OR_RETURN(std::unique_ptr<Tokenizer> tokenizer,
//                    LoadModelTokenizer(model_dir));
//   ASSIGN_OR_RETURN(std::vector<int> ids,
//                    tokenizer->Encode("Who wrote it?", {.add_bos = true}));
//   ASSIGN_OR_RETURN(std::string text, tokenizer->Decode(ids));
//
// Two file formats, both read by Lethe's own code (no tokenizer library):
// - `tokenizer.model`, SentencePiece BPE (Llama-2 and Lethe's own models):
//   sentencepiece_tokenizer.h. Debian's libsentencepiece cannot share a
//   process with LibTorch (see DEVELOPERS.md).
// - `tokenizer.json`, Hugging Face's format (Llama 3.x, Qwen2.5, Mistral,
//   ...): hf_tokenizer.h. Debian ships no maintained C++ library for it.
// A model folder's `tokenizer_config.json`, when present, sets the special
// tokens (bos_token, eos_token, pad_token, unk_token) and add_bos_token, as
// transformers' AutoTokenizer does: Llama-3.2-Instruct's EOS is <|eot_id|>.
//
// Encoding and decoding are thread-safe on a const Tokenizer.
#ifndef LETHE_LIBS_TOKENIZER_TOKENIZER_H_
#define LETHE_LIBS_TOKENIZER_TOKENIZER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace lethe {

struct EncodeOptions {
  // Begin with the model's BOS: its bos_id(), unless tokenizer_config.json
  // says add_bos_token false; for a tokenizer.json without that setting, the
  // special tokens its TemplateProcessing post-processor puts before the
  // text (none for Qwen2.5, <|begin_of_text|> for Llama 3), which is what
  // transformers adds with add_special_tokens=True.
  bool add_bos = false;
  // End with eos_id() (nothing when the tokenizer has no EOS).
  bool add_eos = false;
};

struct DecodeOptions {
  // Drop special tokens (BOS, EOS, padding, a tokenizer.json's added tokens
  // marked special) from the text. With false a tokenizer.json's special
  // tokens decode to their text, and SentencePiece control pieces to theirs.
  bool skip_special_tokens = true;
};

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Loads `path` by its format: a file named *.json (or whose bytes start
  // with '{') is a Hugging Face tokenizer.json, anything else a SentencePiece
  // tokenizer.model. A tokenizer_config.json in the same folder, when there
  // is one, sets the special tokens. NOT_FOUND when the file is missing;
  // INVALID_ARGUMENT when it is malformed; UNIMPLEMENTED for features Lethe
  // does not support, naming them. Errors name the path.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> Load(
      const std::string& path);
  // From the bytes of a SentencePiece tokenizer.model.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromSerialized(
      absl::string_view serialized_model);

  // INVALID_ARGUMENT when `text` is not valid UTF-8 (tokenizer.json only;
  // SentencePiece models take any bytes).
  absl::StatusOr<std::vector<int>> Encode(
      absl::string_view text, const EncodeOptions& options = {}) const {
    return DoEncode(text, options);
  }
  // Ids outside [0, vocab_size()) are INVALID_ARGUMENT.
  absl::StatusOr<std::string> Decode(const std::vector<int>& ids,
                                     const DecodeOptions& options = {}) const {
    return DoDecode(ids, options);
  }

  // One more than the largest id.
  virtual int vocab_size() const = 0;
  // -1 for a token the tokenizer does not have.
  virtual int bos_id() const = 0;
  virtual int eos_id() const = 0;
  virtual int unk_id() const = 0;
  virtual int pad_id() const = 0;
  // The token's text in the tokenizer's own spelling (SentencePiece's "▁",
  // byte-level BPE's "Ġ"); "" for an id without one.
  virtual const std::string& piece(int id) const = 0;

 protected:
  virtual absl::StatusOr<std::vector<int>> DoEncode(
      absl::string_view text, const EncodeOptions& options) const = 0;
  virtual absl::StatusOr<std::string> DoDecode(
      const std::vector<int>& ids, const DecodeOptions& options) const = 0;
};

// The tokenizer of the model in `model_dir`, from tokenizer.json when the
// folder has one (as transformers' AutoTokenizer prefers it), else from
// tokenizer.model, with tokenizer_config.json applied when present.
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadModelTokenizer(
    const std::string& model_dir);

// The name of the tokenizer file LoadModelTokenizer reads in `model_dir`:
// "tokenizer.json" or "tokenizer.model". NOT_FOUND naming the folder when it
// has neither.
absl::StatusOr<std::string> ModelTokenizerFileName(
    const std::string& model_dir);

// The names of every file in `model_dir` that LoadModelTokenizer reads (the
// tokenizer file, then tokenizer_config.json when present): what to copy for
// a model written elsewhere to tokenize alike.
absl::StatusOr<std::vector<std::string>> ModelTokenizerFileNames(
    const std::string& model_dir);

}  // namespace lethe

#endif  // LETHE_LIBS_TOKENIZER_TOKENIZER_H_
