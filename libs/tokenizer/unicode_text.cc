#include "libs/tokenizer/unicode_text.h"

#include <algorithm>
#include <cstdint>
#include <iterator>

namespace lethe::tokenizer_internal {
namespace {

struct CombiningClassEntry {
  char32_t code_point;
  uint8_t combining_class;
};
struct DecompositionEntry {
  char32_t code_point;
  char32_t first;
  char32_t second;  // 0 for a singleton.
};
struct CompositionEntry {
  char32_t first;
  char32_t second;
  char32_t composite;
};

#include "libs/tokenizer/unicode_nfc_data.inc"

// Hangul syllables compose and decompose by arithmetic (Unicode 3.12).
constexpr char32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161,
                   kTBase = 0x11A7;
constexpr int kLCount = 19, kVCount = 21, kTCount = 28;
constexpr int kNCount = kVCount * kTCount, kSCount = kLCount * kNCount;

// Length of the well-formed UTF-8 sequence at bytes[i], or 0 when the bytes
// there are ill-formed; *maximal gets the length of the longest prefix that
// could still start a well-formed sequence (at least 1).
size_t WellFormedLength(absl::string_view bytes, size_t i, size_t* maximal) {
  const auto byte = [&](size_t k) {
    return static_cast<unsigned char>(bytes[i + k]);
  };
  const unsigned char lead = byte(0);
  *maximal = 1;
  if (lead < 0x80) return 1;
  size_t length;
  unsigned char low = 0x80, high = 0xBF;  // Range of the second byte.
  if (lead >= 0xC2 && lead <= 0xDF) {
    length = 2;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    length = 3;
    if (lead == 0xE0) low = 0xA0;
    if (lead == 0xED) high = 0x9F;
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    length = 4;
    if (lead == 0xF0) low = 0x90;
    if (lead == 0xF4) high = 0x8F;
  } else {
    return 0;
  }
  for (size_t k = 1; k < length; ++k) {
    if (i + k >= bytes.size()) return 0;
    const unsigned char b = byte(k);
    const bool ok = k == 1 ? (b >= low && b <= high) : (b >= 0x80 && b <= 0xBF);
    if (!ok) return 0;
    *maximal = k + 1;
  }
  return length;
}

int CombiningClass(char32_t c) {
  if (c < 0x300) return 0;
  auto it = std::lower_bound(std::begin(kCombiningClasses),
                             std::end(kCombiningClasses), c,
                             [](const CombiningClassEntry& e, char32_t v) {
                               return e.code_point < v;
                             });
  return it != std::end(kCombiningClasses) && it->code_point == c
             ? it->combining_class
             : 0;
}

const DecompositionEntry* FindDecomposition(char32_t c) {
  auto it = std::lower_bound(
      std::begin(kDecompositions), std::end(kDecompositions), c,
      [](const DecompositionEntry& e, char32_t v) { return e.code_point < v; });
  return it != std::end(kDecompositions) && it->code_point == c ? &*it
                                                                : nullptr;
}

void Decompose(char32_t c, std::vector<char32_t>* out) {
  if (c >= kSBase && c < kSBase + kSCount) {
    const int s = static_cast<int>(c - kSBase);
    out->push_back(kLBase + s / kNCount);
    out->push_back(kVBase + (s % kNCount) / kTCount);
    if (s % kTCount != 0) out->push_back(kTBase + s % kTCount);
    return;
  }
  const DecompositionEntry* entry = c < 0xC0 ? nullptr : FindDecomposition(c);
  if (entry == nullptr) {
    out->push_back(c);
    return;
  }
  Decompose(entry->first, out);
  if (entry->second != 0) Decompose(entry->second, out);
}

// The primary composite of `first` and `second`, or 0.
char32_t Compose(char32_t first, char32_t second) {
  if (first >= kLBase && first < kLBase + kLCount && second >= kVBase &&
      second < kVBase + kVCount) {
    return kSBase + ((first - kLBase) * kVCount + (second - kVBase)) * kTCount;
  }
  if (first >= kSBase && first < kSBase + kSCount &&
      (first - kSBase) % kTCount == 0 && second > kTBase &&
      second < kTBase + kTCount) {
    return first + (second - kTBase);
  }
  auto it = std::lower_bound(
      std::begin(kCompositions), std::end(kCompositions),
      std::make_pair(first, second),
      [](const CompositionEntry& e, const std::pair<char32_t, char32_t>& v) {
        return e.first < v.first || (e.first == v.first && e.second < v.second);
      });
  return it != std::end(kCompositions) && it->first == first &&
                 it->second == second
             ? it->composite
             : 0;
}

}  // namespace

bool IsValidUtf8(absl::string_view text) {
  for (size_t i = 0; i < text.size();) {
    size_t maximal;
    const size_t length = WellFormedLength(text, i, &maximal);
    if (length == 0) return false;
    i += length;
  }
  return true;
}

char32_t NextCodePoint(absl::string_view text, size_t* i) {
  const unsigned char lead = static_cast<unsigned char>(text[*i]);
  int length = lead < 0x80 ? 1 : lead < 0xE0 ? 2 : lead < 0xF0 ? 3 : 4;
  char32_t c = length == 1   ? lead
               : length == 2 ? lead & 0x1F
               : length == 3 ? lead & 0x0F
                             : lead & 0x07;
  for (int k = 1; k < length && *i + k < text.size(); ++k) {
    c = (c << 6) | (static_cast<unsigned char>(text[*i + k]) & 0x3F);
  }
  *i += length;
  return c;
}

void AppendUtf8(char32_t c, std::string* out) {
  if (c < 0x80) {
    out->push_back(static_cast<char>(c));
  } else if (c < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (c >> 6)));
    out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else if (c < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (c >> 12)));
    out->push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (c >> 18)));
    out->push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
  }
}

void AppendUtf8Lossy(absl::string_view bytes, std::string* out) {
  for (size_t i = 0; i < bytes.size();) {
    size_t maximal;
    const size_t length = WellFormedLength(bytes, i, &maximal);
    if (length == 0) {
      out->append("\xEF\xBF\xBD");
      i += maximal;
    } else {
      out->append(bytes.data() + i, length);
      i += length;
    }
  }
}

bool IsWhiteSpace(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 ||
         c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

std::string NfcNormalize(absl::string_view text) {
  // Code points below U+0300 are NFC whatever surrounds them.
  if (std::all_of(text.begin(), text.end(), [](char c) {
        const unsigned char b = static_cast<unsigned char>(c);
        return b < 0xCC;  // Lead bytes up to U+02FF.
      })) {
    return std::string(text);
  }
  std::vector<char32_t> chars;
  chars.reserve(text.size());
  for (size_t i = 0; i < text.size();)
    Decompose(NextCodePoint(text, &i), &chars);
  // Canonical ordering: stable sort of each run of non-starters by class.
  std::vector<int> classes(chars.size());
  for (size_t k = 0; k < chars.size(); ++k)
    classes[k] = CombiningClass(chars[k]);
  for (size_t start = 0; start < chars.size();) {
    if (classes[start] == 0) {
      ++start;
      continue;
    }
    size_t end = start;
    while (end < chars.size() && classes[end] != 0) ++end;
    for (size_t k = start + 1; k < end; ++k) {  // Insertion sort: stable.
      for (size_t j = k; j > start && classes[j - 1] > classes[j]; --j) {
        std::swap(classes[j - 1], classes[j]);
        std::swap(chars[j - 1], chars[j]);
      }
    }
    start = end;
  }
  // Canonical composition.
  std::vector<char32_t> composed;
  composed.reserve(chars.size());
  int starter = -1;     // Index in `composed` of the last starter.
  int last_class = -1;  // Class of the last character appended after it.
  for (size_t k = 0; k < chars.size(); ++k) {
    const char32_t c = chars[k];
    const int cc = classes[k];
    if (starter >= 0) {
      const bool blocked =
          last_class != -1 && (last_class == 0 || last_class >= cc);
      if (!blocked) {
        const char32_t composite = Compose(composed[starter], c);
        if (composite != 0) {
          composed[starter] = composite;
          continue;
        }
      }
    }
    composed.push_back(c);
    if (cc == 0) {
      starter = static_cast<int>(composed.size()) - 1;
      last_class = -1;
    } else {
      last_class = cc;
    }
  }
  std::string out;
  out.reserve(text.size());
  for (char32_t c : composed) AppendUtf8(c, &out);
  return out;
}

}  // namespace lethe::tokenizer_internal
