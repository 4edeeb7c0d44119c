// Test fixtures for TOFU evaluation that need no trained model and no
// libsentencepiece: a character-level SentencePiece BPE tokenizer (built by
// hand in the tokenizer.model wire format), a tiny random Llama model
// directory and a tiny TOFU data directory with every evaluation set.
//
//   ASSIGN_OR_RETURN(std::unique_ptr<Tokenizer> tokenizer,
//                    Tokenizer::FromSerialized(CharacterTokenizerModel()));
//   RETURN_IF_ERROR(WriteTinyTofuModel(dir + "/model", /*seed=*/1));
//   RETURN_IF_ERROR(WriteTinyTofuData(dir + "/data", /*questions_per_set=*/3));
#ifndef LETHE_LIBS_EVAL_TOFU_EVAL_FIXTURE_H_
#define LETHE_LIBS_EVAL_TOFU_EVAL_FIXTURE_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"

namespace lethe {

// The bytes of a tokenizer.model: <unk>, <s>, </s>, then one piece per
// character (the SentencePiece space, newline and printable ASCII) and no
// merges, so every character is one token.
std::string CharacterTokenizerModel();

// A randomly initialised (seeded) TinyLlamaConfig model (libs/model/
// tiny_llama.h) in Hugging Face layout with CharacterTokenizerModel() as its
// tokenizer.model.
absl::Status WriteTinyTofuModel(const std::string& dir, uint64_t seed);

// forget10_perturbed, holdout10, retain_perturbed, real_authors_perturbed and
// world_facts_perturbed from the embedded mini-TOFU generator, at most
// `questions_per_set` questions each.
absl::Status WriteTinyTofuData(const std::string& dir, int questions_per_set);

}  // namespace lethe

#endif  // LETHE_LIBS_EVAL_TOFU_EVAL_FIXTURE_H_
