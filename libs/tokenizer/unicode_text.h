// Internal to libs/tokenizer: the Unicode text handling that tokenizer.json
// tokenizers need and that the C++ standard library lacks: UTF-8 decoding
// and validation, lossy decoding of byte strings as Rust's
// String::from_utf8_lossy does it, White_Space, and NFC normalisation.
//
//   if (!IsValidUtf8(text)) return absl::InvalidArgumentError(...);
//   std::string composed = NfcNormalize(text);
//
// NFC uses tables generated from Python's unicodedata
// (make_unicode_nfc_data.py; its Unicode version is named in
// unicode_nfc_data.inc).
#ifndef LETHE_LIBS_TOKENIZER_UNICODE_TEXT_H_
#define LETHE_LIBS_TOKENIZER_UNICODE_TEXT_H_

#include <cstddef>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace lethe::tokenizer_internal {

// Whether `text` is well-formed UTF-8 (no surrogates, overlongs or code
// points above U+10FFFF).
bool IsValidUtf8(absl::string_view text);

// The code point starting at text[*i] of valid UTF-8; advances *i past it.
char32_t NextCodePoint(absl::string_view text, size_t* i);

void AppendUtf8(char32_t code_point, std::string* out);

// Appends `bytes` decoded as UTF-8, each maximal ill-formed subsequence
// becoming one U+FFFD (Unicode's recommended practice, as Rust's
// String::from_utf8_lossy).
void AppendUtf8Lossy(absl::string_view bytes, std::string* out);

// Unicode's White_Space property (Rust's char::is_whitespace).
bool IsWhiteSpace(char32_t c);

// `text` (valid UTF-8) in Normalization Form C.
std::string NfcNormalize(absl::string_view text);

}  // namespace lethe::tokenizer_internal

#endif  // LETHE_LIBS_TOKENIZER_UNICODE_TEXT_H_
