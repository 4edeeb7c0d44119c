// Training SentencePiece BPE tokenizers for Lethe's own models, with the
// SentencePiece trainer library.
//
//   ASSIGN_OR_RETURN(std::string model_bytes,
//                    TrainTokenizer(sentences, {.vocab_size = 2000}));
//   // write model_bytes to <model_dir>/tokenizer.model
//
// Links Debian's libsentencepiece, whose private protobuf copy clashes with
// the libprotobuf LibTorch loads: never link this into a binary that also
// links LibTorch. Lethe trains tokenizers in the separate
// `lethe-train-tokenizer` program for that reason.
#ifndef LETHE_LIBS_TOKENIZER_TOKENIZER_TRAINING_H_
#define LETHE_LIBS_TOKENIZER_TOKENIZER_TRAINING_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace lethe {

struct TokenizerTrainingOptions {
  int vocab_size = 2000;
  int num_threads = 2;
};

// Trains a byte-fallback BPE model with Llama-2's conventions (unk 0, bos 1,
// eos 2, no padding token, digits split, identity normalisation, a dummy
// prefix, whitespace kept as is) on `sentences` and returns the bytes of its
// tokenizer.model. Deterministic for the same sentences and options.
absl::StatusOr<std::string> TrainTokenizer(
    const std::vector<std::string>& sentences,
    const TokenizerTrainingOptions& options);

}  // namespace lethe

#endif  // LETHE_LIBS_TOKENIZER_TOKENIZER_TRAINING_H_
