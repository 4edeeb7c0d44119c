// Fuzzes SentencePiece tokenizer.model files (libs/tokenizer/tokenizer.h
// Tokenizer::FromSerialized). A model it accepts must encode text (a few
// fixed strings and the input's own first bytes) to ids inside its
// vocabulary, and decode them and every id back without error.
#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "fuzz/fuzz_check.h"
#include "libs/tokenizer/tokenizer.h"

namespace {

void CheckRoundTrip(const lethe::Tokenizer& tokenizer, absl::string_view text) {
  const absl::StatusOr<std::vector<int>> ids =
      tokenizer.Encode(text, {.add_bos = true, .add_eos = true});
  FUZZ_CHECK(ids.ok()) << ids.status();
  for (int id : *ids) {
    FUZZ_CHECK(id >= 0 && id < tokenizer.vocab_size())
        << "id " << id << " outside [0, " << tokenizer.vocab_size() << ")";
  }
  for (bool skip : {true, false}) {
    const absl::StatusOr<std::string> decoded =
        tokenizer.Decode(*ids, {.skip_special_tokens = skip});
    FUZZ_CHECK(decoded.ok()) << decoded.status();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view bytes(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<std::unique_ptr<lethe::Tokenizer>> tokenizer =
      lethe::Tokenizer::FromSerialized(bytes);
  if (!tokenizer.ok()) return 0;
  const lethe::Tokenizer& t = **tokenizer;
  const int vocab_size = t.vocab_size();
  FUZZ_CHECK(vocab_size > 0);
  // Special ids index embeddings (padding included) when they are >= 0.
  // (Negative ids other than -1 pass: every user tests for < 0.)
  for (int id : {t.bos_id(), t.eos_id(), t.unk_id(), t.pad_id()}) {
    FUZZ_CHECK(id < vocab_size)
        << "special id " << id << " outside the vocabulary of " << vocab_size;
  }
  for (absl::string_view text :
       {absl::string_view(""), absl::string_view("Who wrote it?"),
        absl::string_view("  two  spaces, caf\xC3\xA9 \xE2\x96\x81 \xFF\x80"),
        bytes.substr(0, 64)}) {
    CheckRoundTrip(t, text);
  }
  std::vector<int> every_id;
  for (int id = 0; id < std::min(vocab_size, 4096); ++id) {
    every_id.push_back(id);
    t.piece(id);
  }
  FUZZ_CHECK(t.Decode(every_id).ok());
  FUZZ_CHECK(!t.Decode({vocab_size}).ok());
  FUZZ_CHECK(!t.Decode({-1}).ok());
  return 0;
}
