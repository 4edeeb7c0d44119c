#include "libs/tokenizer/tokenizer_training.h"

#include <map>

#include "absl/strings/str_cat.h"
#include "libs/tokenizer/sentencepiece_adapter.h"

namespace lethe {

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
  const std::string problem =
      tokenizer_internal::TrainSentencePiece(sentences, arguments, &serialized);
  if (!problem.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("tokenizer training failed: ", problem));
  }
  return serialized;
}

}  // namespace lethe
