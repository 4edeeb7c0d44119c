#include "libs/tokenizer/tokenizer.h"

#include <sys/stat.h>

#include <map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "libs/tokenizer/sentencepiece_adapter.h"

namespace lethe {
namespace {

using tokenizer_internal::SentencePieceAdapter;

absl::Status StatusFromMessage(const std::string& message,
                               absl::string_view what) {
  if (message.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(what, ": ", message));
}

}  // namespace

Tokenizer::Tokenizer(std::unique_ptr<SentencePieceAdapter> processor)
    : processor_(std::move(processor)) {}

Tokenizer::~Tokenizer() = default;

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::Load(
    const std::string& model_path) {
  struct stat info;
  if (stat(model_path.c_str(), &info) != 0) {
    return absl::NotFoundError(
        absl::StrCat("tokenizer model '", model_path, "' does not exist"));
  }
  auto processor = std::make_unique<SentencePieceAdapter>();
  absl::Status status = StatusFromMessage(
      processor->LoadFile(model_path),
      absl::StrCat("'", model_path, "' is not a SentencePiece model"));
  if (!status.ok()) return status;
  return std::unique_ptr<Tokenizer>(new Tokenizer(std::move(processor)));
}

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromSerialized(
    absl::string_view serialized_model) {
  auto processor = std::make_unique<SentencePieceAdapter>();
  absl::Status status = StatusFromMessage(
      processor->LoadSerialized(std::string(serialized_model)),
      "bytes are not a SentencePiece model");
  if (!status.ok()) return status;
  return std::unique_ptr<Tokenizer>(new Tokenizer(std::move(processor)));
}

absl::StatusOr<std::vector<int>> Tokenizer::Encode(
    absl::string_view text, const EncodeOptions& options) const {
  std::vector<int> pieces;
  absl::Status status = StatusFromMessage(
      processor_->Encode(std::string(text), &pieces), "encoding failed");
  if (!status.ok()) return status;
  std::vector<int> ids;
  ids.reserve(pieces.size() + 2);
  if (options.add_bos) ids.push_back(bos_id());
  ids.insert(ids.end(), pieces.begin(), pieces.end());
  if (options.add_eos) ids.push_back(eos_id());
  return ids;
}

absl::StatusOr<std::string> Tokenizer::Decode(
    const std::vector<int>& ids) const {
  for (int id : ids) {
    if (id < 0 || id >= vocab_size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("token id ", id, " is outside the vocabulary [0, ",
                       vocab_size(), ")"));
    }
  }
  std::string text;
  absl::Status status =
      StatusFromMessage(processor_->Decode(ids, &text), "decoding failed");
  if (!status.ok()) return status;
  return text;
}

int Tokenizer::vocab_size() const { return processor_->vocab_size(); }
int Tokenizer::bos_id() const { return processor_->bos_id(); }
int Tokenizer::eos_id() const { return processor_->eos_id(); }
int Tokenizer::unk_id() const { return processor_->unk_id(); }
int Tokenizer::pad_id() const { return processor_->pad_id(); }

absl::StatusOr<std::string> TrainTokenizer(
    const std::vector<std::string>& sentences,
    const TokenizerTrainingOptions& options) {
  if (sentences.empty()) {
    return absl::InvalidArgumentError("cannot train a tokenizer on no text");
  }
  if (options.vocab_size < 260) {
    return absl::InvalidArgumentError(absl::StrCat(
        "vocab_size ", options.vocab_size,
        " is too small: byte fallback alone needs 256 pieces plus specials"));
  }
  const std::map<std::string, std::string> arguments = {
      {"model_type", "bpe"},
      {"vocab_size", absl::StrCat(options.vocab_size)},
      {"byte_fallback", "true"},
      {"split_digits", "true"},
      {"character_coverage", "1.0"},
      {"normalization_rule_name", "identity"},
      {"add_dummy_prefix", "true"},
      {"remove_extra_whitespaces", "false"},
      {"unk_id", "0"},
      {"bos_id", "1"},
      {"eos_id", "2"},
      {"pad_id", "-1"},
      {"hard_vocab_limit", "false"},
      {"shuffle_input_sentence", "false"},
      {"num_threads", absl::StrCat(options.num_threads)},
      {"minloglevel", "2"},
  };
  std::string serialized;
  absl::Status status = StatusFromMessage(
      tokenizer_internal::TrainSentencePiece(sentences, arguments, &serialized),
      "tokenizer training failed");
  if (!status.ok()) return status;
  return serialized;
}

}  // namespace lethe
