#include "libs/tokenizer/hf_tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <optional>
#include <queue>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "libs/status/status_macros.h"
#include "libs/tokenizer/unicode_text.h"
#include "nlohmann/json.hpp"

namespace lethe {
namespace {

using Json = nlohmann::json;
using tokenizer_internal::AppendUtf8;
using tokenizer_internal::AppendUtf8Lossy;
using tokenizer_internal::IsValidUtf8;
using tokenizer_internal::IsWhiteSpace;
using tokenizer_internal::NextCodePoint;
using Range = std::pair<size_t, size_t>;  // [begin, end) in bytes.

// GPT-2's pre-tokenisation pattern, which ByteLevel's use_regex applies.
constexpr char kByteLevelPattern[] =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// ---------------------------------------------------------------------------
// Reading the JSON with errors that name the field.

// A JSON value with its path in the file, for messages.
struct Node {
  const Json* json;
  std::string path;
};

class Reader {
 public:
  explicit Reader(std::string source) : source_(std::move(source)) {}

  absl::Status Invalid(const Node& node, absl::string_view what) const {
    return absl::InvalidArgumentError(
        absl::StrCat(source_, ": ", node.path, " ", what));
  }
  absl::Status Unsupported(const Node& node, absl::string_view what) const {
    return absl::UnimplementedError(
        absl::StrCat(source_, ": ", node.path, " ", what));
  }

  // The member `name` of the object `node`; nullopt when absent or null.
  std::optional<Node> Member(const Node& node, const char* name) const {
    if (!node.json->is_object()) return std::nullopt;
    auto it = node.json->find(name);
    if (it == node.json->end() || it->is_null()) return std::nullopt;
    return Node{&*it, node.path.empty() ? std::string(name)
                                        : absl::StrCat(node.path, ".", name)};
  }
  absl::StatusOr<Node> Required(const Node& node, const char* name) const {
    std::optional<Node> member = Member(node, name);
    if (!member.has_value()) {
      return Invalid(Node{node.json, node.path.empty()
                                         ? std::string(name)
                                         : absl::StrCat(node.path, ".", name)},
                     "is missing");
    }
    return *member;
  }
  absl::StatusOr<std::string> String(const Node& node) const {
    if (!node.json->is_string()) return Invalid(node, "is not a string");
    return node.json->get<std::string>();
  }
  absl::StatusOr<std::string> String(const Node& node, const char* name,
                                     const std::string& fallback) const {
    std::optional<Node> member = Member(node, name);
    if (!member.has_value()) return fallback;
    return String(*member);
  }
  absl::StatusOr<bool> Bool(const Node& node, const char* name,
                            bool fallback) const {
    std::optional<Node> member = Member(node, name);
    if (!member.has_value()) return fallback;
    if (!member->json->is_boolean())
      return Invalid(*member, "is not a boolean");
    return member->json->get<bool>();
  }
  absl::StatusOr<int64_t> Int(const Node& node) const {
    if (!node.json->is_number_integer()) {
      return Invalid(node, "is not an integer");
    }
    return node.json->get<int64_t>();
  }
  absl::StatusOr<int64_t> Int(const Node& node, const char* name,
                              int64_t fallback) const {
    std::optional<Node> member = Member(node, name);
    if (!member.has_value()) return fallback;
    return Int(*member);
  }
  absl::StatusOr<std::vector<Node>> Array(const Node& node) const {
    if (!node.json->is_array()) return Invalid(node, "is not an array");
    std::vector<Node> items;
    items.reserve(node.json->size());
    for (size_t i = 0; i < node.json->size(); ++i) {
      items.push_back(
          Node{&(*node.json)[i], absl::StrCat(node.path, "[", i, "]")});
    }
    return items;
  }
  // The "type" of a component object.
  absl::StatusOr<std::string> Type(const Node& node) const {
    if (!node.json->is_object()) return Invalid(node, "is not an object");
    ASSIGN_OR_RETURN(Node type, Required(node, "type"));
    return String(type);
  }

 private:
  std::string source_;
};

// ---------------------------------------------------------------------------
// Regular expressions on PCRE2.

// Rewrites an Oniguruma pattern for PCRE2. Oniguruma's \s (which the Rust
// library uses) is Unicode's White_Space; PCRE2's, with PCRE2_UCP, also
// matches U+180E (MONGOLIAN VOWEL SEPARATOR, a space before Unicode 6.3), so
// \s and \S become explicit sets.
constexpr char kWhiteSpace[] =
    R"(\t\n\x{0B}\f\r\x{20}\x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028})"
    R"(\x{2029}\x{202F}\x{205F}\x{3000})";

std::string OnigurumaToPcre2(const std::string& pattern) {
  std::string out;
  bool in_class = false;
  for (size_t i = 0; i < pattern.size(); ++i) {
    const char c = pattern[i];
    if (c == '\\' && i + 1 < pattern.size()) {
      const char next = pattern[++i];
      if (next == 's') {
        out += in_class ? kWhiteSpace : absl::StrCat("[", kWhiteSpace, "]");
      } else if (next == 'S' && !in_class) {
        out += absl::StrCat("[^", kWhiteSpace, "]");
      } else {
        out += c;
        out += next;
      }
      continue;
    }
    if (!in_class && c == '[') {
      in_class = true;
      out += c;
      // A ']' right after '[' or '[^' is a literal.
      if (i + 1 < pattern.size() && pattern[i + 1] == '^') out += pattern[++i];
      if (i + 1 < pattern.size() && pattern[i + 1] == ']') out += pattern[++i];
      continue;
    }
    if (in_class && c == '[' && i + 1 < pattern.size() &&
        pattern[i + 1] == ':') {  // A POSIX class such as [:alpha:].
      const size_t end = pattern.find(":]", i + 2);
      if (end != std::string::npos) {
        out.append(pattern, i, end + 2 - i);
        i = end + 1;
        continue;
      }
    }
    if (in_class && c == ']') in_class = false;
    out += c;
  }
  return out;
}

class Regex {
 public:
  // Compiles an Oniguruma-style pattern; errors are returned as a message.
  static std::unique_ptr<Regex> Compile(const std::string& pattern,
                                        std::string* error) {
    const std::string translated = OnigurumaToPcre2(pattern);
    int code = 0;
    PCRE2_SIZE offset = 0;
    pcre2_code* compiled = pcre2_compile(
        reinterpret_cast<PCRE2_SPTR>(translated.data()), translated.size(),
        PCRE2_UTF | PCRE2_UCP, &code, &offset, nullptr);
    if (compiled == nullptr) {
      PCRE2_UCHAR buffer[256];
      pcre2_get_error_message(code, buffer, sizeof(buffer));
      *error = absl::StrCat(reinterpret_cast<const char*>(buffer),
                            " at offset ", offset);
      return nullptr;
    }
    // JIT is an optimisation: without it (an unsupported CPU) PCRE2
    // interprets the pattern.
    pcre2_jit_compile(compiled, PCRE2_JIT_COMPLETE);
    return std::unique_ptr<Regex>(new Regex(compiled));
  }
  ~Regex() { pcre2_code_free(code_); }
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Appends the ranges of the successive non-overlapping leftmost matches in
  // `text` (valid UTF-8). An empty match advances by one character.
  absl::Status FindAll(absl::string_view text,
                       std::vector<Range>* matches) const {
    pcre2_match_data* data =
        pcre2_match_data_create_from_pattern(code_, nullptr);
    if (data == nullptr) return absl::ResourceExhaustedError("pcre2 memory");
    absl::Status status;
    size_t offset = 0;
    const auto subject = reinterpret_cast<PCRE2_SPTR>(text.data());
    while (offset <= text.size()) {
      int rc = pcre2_match(code_, subject, text.size(), offset,
                           PCRE2_NO_UTF_CHECK, data, nullptr);
      if (rc == PCRE2_ERROR_JIT_STACKLIMIT) {
        rc = pcre2_match(code_, subject, text.size(), offset,
                         PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, data, nullptr);
      }
      if (rc == PCRE2_ERROR_NOMATCH) break;
      if (rc < 0) {
        PCRE2_UCHAR buffer[256];
        pcre2_get_error_message(rc, buffer, sizeof(buffer));
        status = absl::ResourceExhaustedError(
            absl::StrCat("regular expression matching failed: ",
                         reinterpret_cast<const char*>(buffer)));
        break;
      }
      const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(data);
      const size_t begin = ovector[0], end = ovector[1];
      matches->emplace_back(begin, end);
      if (end > begin) {
        offset = end;
      } else {
        if (begin >= text.size()) break;
        size_t next = begin;
        NextCodePoint(text, &next);
        offset = next;
      }
    }
    pcre2_match_data_free(data);
    return status;
  }

 private:
  explicit Regex(pcre2_code* code) : code_(code) {}
  pcre2_code* code_;
};

// A Split or Replace pattern: {"String": s} (literal) or {"Regex": r}.
class Pattern {
 public:
  static absl::StatusOr<Pattern> Parse(const Reader& reader, const Node& node) {
    Pattern pattern;
    if (std::optional<Node> literal = reader.Member(node, "String")) {
      ASSIGN_OR_RETURN(pattern.literal_, reader.String(*literal));
      return pattern;
    }
    if (std::optional<Node> regex = reader.Member(node, "Regex")) {
      ASSIGN_OR_RETURN(std::string text, reader.String(*regex));
      std::string error;
      pattern.regex_ = Regex::Compile(text, &error);
      if (pattern.regex_ == nullptr) {
        return reader.Invalid(*regex,
                              absl::StrCat("does not compile: ", error));
      }
      return pattern;
    }
    return reader.Invalid(node, "has neither \"String\" nor \"Regex\"");
  }

  absl::Status FindAll(absl::string_view text,
                       std::vector<Range>* matches) const {
    if (regex_ != nullptr) return regex_->FindAll(text, matches);
    if (literal_.empty()) return absl::OkStatus();
    for (size_t at = text.find(literal_); at != absl::string_view::npos;
         at = text.find(literal_, at + literal_.size())) {
      matches->emplace_back(at, at + literal_.size());
    }
    return absl::OkStatus();
  }

 private:
  std::string literal_;
  std::shared_ptr<Regex> regex_;
};

// `text` with every match of `pattern` replaced by `content`.
absl::StatusOr<std::string> ReplaceAll(const Pattern& pattern,
                                       const std::string& content,
                                       absl::string_view text) {
  std::vector<Range> matches;
  RETURN_IF_ERROR(pattern.FindAll(text, &matches));
  std::string out;
  size_t previous = 0;
  for (const Range& match : matches) {
    out.append(text.data() + previous, match.first - previous);
    out += content;
    previous = match.second;
  }
  out.append(text.data() + previous, text.size() - previous);
  return out;
}

// ---------------------------------------------------------------------------
// Splitting a piece of text as the Rust library's NormalizedString::split.

enum class SplitBehavior {
  kRemoved,
  kIsolated,
  kMergedWithPrevious,
  kMergedWithNext,
  kContiguous
};

absl::StatusOr<SplitBehavior> ParseBehavior(const Reader& reader,
                                            const Node& node) {
  ASSIGN_OR_RETURN(std::string name, reader.String(node));
  if (name == "Removed") return SplitBehavior::kRemoved;
  if (name == "Isolated") return SplitBehavior::kIsolated;
  if (name == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
  if (name == "MergedWithNext") return SplitBehavior::kMergedWithNext;
  if (name == "Contiguous") return SplitBehavior::kContiguous;
  return reader.Unsupported(node,
                            absl::StrCat("'", name, "' is not a behaviour"));
}

// A piece of text on its way to the model; `at_start` when it begins at the
// start of the input (Metaspace's prepend_scheme "first").
struct Piece {
  std::string text;
  bool at_start = false;
};

// Splits `piece` around `matches` (sorted, non-overlapping) as `behavior`
// says, appending the non-empty parts to `out`.
void SplitPiece(const Piece& piece, const std::vector<Range>& matches,
                SplitBehavior behavior, bool invert, std::vector<Piece>* out) {
  const size_t size = piece.text.size();
  // The whole text as (range, is_match).
  std::vector<std::pair<Range, bool>> parts;
  if (size == 0) {
    parts.push_back({{0, 0}, false});
  } else {
    size_t previous = 0;
    for (const Range& match : matches) {
      if (previous != match.first)
        parts.push_back({{previous, match.first}, false});
      parts.push_back({match, true});
      previous = match.second;
    }
    if (previous != size) parts.push_back({{previous, size}, false});
  }
  if (invert) {
    for (auto& part : parts) part.second = !part.second;
  }
  std::vector<std::pair<Range, bool>> splits;  // (range, remove)
  bool previous_match = false;
  switch (behavior) {
    case SplitBehavior::kRemoved:
      splits = parts;
      break;
    case SplitBehavior::kIsolated:
      for (const auto& part : parts) splits.push_back({part.first, false});
      break;
    case SplitBehavior::kContiguous:
      for (const auto& [range, is_match] : parts) {
        if (is_match == previous_match && !splits.empty()) {
          splits.back().first.second = range.second;
        } else {
          splits.push_back({range, false});
        }
        previous_match = is_match;
      }
      break;
    case SplitBehavior::kMergedWithPrevious:
      for (const auto& [range, is_match] : parts) {
        if (is_match && !previous_match && !splits.empty()) {
          splits.back().first.second = range.second;
        } else {
          splits.push_back({range, false});
        }
        previous_match = is_match;
      }
      break;
    case SplitBehavior::kMergedWithNext:
      for (auto it = parts.rbegin(); it != parts.rend(); ++it) {
        const auto& [range, is_match] = *it;
        if (is_match && !previous_match && !splits.empty()) {
          splits.back().first.first = range.first;
        } else {
          splits.push_back({range, false});
        }
        previous_match = is_match;
      }
      std::reverse(splits.begin(), splits.end());
      break;
  }
  for (const auto& [range, remove] : splits) {
    if (remove || range.second == range.first) continue;
    out->push_back(
        Piece{piece.text.substr(range.first, range.second - range.first),
              piece.at_start && range.first == 0});
  }
}

// ---------------------------------------------------------------------------
// Byte-level alphabet (GPT-2): each byte as a printable character.

struct ByteLevelAlphabet {
  std::string byte_to_text[256];
  std::unordered_map<char32_t, unsigned char> char_to_byte;

  ByteLevelAlphabet() {
    int next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) ||
                             (b >= 174 && b <= 255);
      const char32_t c = printable ? b : next++;
      AppendUtf8(c, &byte_to_text[b]);
      char_to_byte[c] = static_cast<unsigned char>(b);
    }
  }
};

const ByteLevelAlphabet& Alphabet() {
  static const ByteLevelAlphabet* const alphabet = new ByteLevelAlphabet();
  return *alphabet;
}

// ---------------------------------------------------------------------------
// Normalizers.

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual absl::Status Normalize(std::string* text) const = 0;
};

class SequenceNormalizer : public Normalizer {
 public:
  explicit SequenceNormalizer(std::vector<std::unique_ptr<Normalizer>> parts)
      : parts_(std::move(parts)) {}
  absl::Status Normalize(std::string* text) const override {
    for (const auto& part : parts_) RETURN_IF_ERROR(part->Normalize(text));
    return absl::OkStatus();
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> parts_;
};

class PrependNormalizer : public Normalizer {
 public:
  explicit PrependNormalizer(std::string prefix) : prefix_(std::move(prefix)) {}
  absl::Status Normalize(std::string* text) const override {
    if (!text->empty()) text->insert(0, prefix_);
    return absl::OkStatus();
  }

 private:
  std::string prefix_;
};

class ReplaceNormalizer : public Normalizer {
 public:
  ReplaceNormalizer(Pattern pattern, std::string content)
      : pattern_(std::move(pattern)), content_(std::move(content)) {}
  absl::Status Normalize(std::string* text) const override {
    ASSIGN_OR_RETURN(*text, ReplaceAll(pattern_, content_, *text));
    return absl::OkStatus();
  }

 private:
  Pattern pattern_;
  std::string content_;
};

class StripNormalizer : public Normalizer {
 public:
  StripNormalizer(bool left, bool right) : left_(left), right_(right) {}
  absl::Status Normalize(std::string* text) const override {
    size_t begin = 0, end = text->size();
    if (left_) {
      while (begin < end) {
        size_t next = begin;
        if (!IsWhiteSpace(NextCodePoint(*text, &next))) break;
        begin = next;
      }
    }
    if (right_) {
      while (end > begin) {
        size_t start = end - 1;
        while (start > begin &&
               (static_cast<unsigned char>((*text)[start]) & 0xC0) == 0x80) {
          --start;
        }
        size_t next = start;
        if (!IsWhiteSpace(NextCodePoint(*text, &next))) break;
        end = start;
      }
    }
    *text = text->substr(begin, end - begin);
    return absl::OkStatus();
  }

 private:
  bool left_, right_;
};

class NfcNormalizer : public Normalizer {
 public:
  absl::Status Normalize(std::string* text) const override {
    *text = tokenizer_internal::NfcNormalize(*text);
    return absl::OkStatus();
  }
};

absl::StatusOr<std::unique_ptr<Normalizer>> ParseNormalizer(
    const Reader& reader, const Node& node) {
  ASSIGN_OR_RETURN(std::string type, reader.Type(node));
  if (type == "Sequence") {
    ASSIGN_OR_RETURN(Node list, reader.Required(node, "normalizers"));
    ASSIGN_OR_RETURN(std::vector<Node> items, reader.Array(list));
    std::vector<std::unique_ptr<Normalizer>> parts;
    for (const Node& item : items) {
      ASSIGN_OR_RETURN(std::unique_ptr<Normalizer> part,
                       ParseNormalizer(reader, item));
      parts.push_back(std::move(part));
    }
    return std::unique_ptr<Normalizer>(
        new SequenceNormalizer(std::move(parts)));
  }
  if (type == "Prepend") {
    ASSIGN_OR_RETURN(Node prepend, reader.Required(node, "prepend"));
    ASSIGN_OR_RETURN(std::string prefix, reader.String(prepend));
    return std::unique_ptr<Normalizer>(new PrependNormalizer(prefix));
  }
  if (type == "Replace") {
    ASSIGN_OR_RETURN(Node pattern_node, reader.Required(node, "pattern"));
    ASSIGN_OR_RETURN(Pattern pattern, Pattern::Parse(reader, pattern_node));
    ASSIGN_OR_RETURN(Node content_node, reader.Required(node, "content"));
    ASSIGN_OR_RETURN(std::string content, reader.String(content_node));
    return std::unique_ptr<Normalizer>(
        new ReplaceNormalizer(std::move(pattern), content));
  }
  if (type == "Strip") {
    ASSIGN_OR_RETURN(bool left, reader.Bool(node, "strip_left", true));
    ASSIGN_OR_RETURN(bool right, reader.Bool(node, "strip_right", true));
    return std::unique_ptr<Normalizer>(new StripNormalizer(left, right));
  }
  if (type == "NFC") return std::unique_ptr<Normalizer>(new NfcNormalizer());
  return reader.Unsupported(
      node, absl::StrCat("type '", type,
                         "' is not supported (Lethe supports Sequence, "
                         "Prepend, Replace, Strip and NFC normalizers)"));
}

// ---------------------------------------------------------------------------
// Pre-tokenizers.

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  virtual absl::Status PreTokenize(std::vector<Piece>* pieces) const = 0;
};

class SequencePreTokenizer : public PreTokenizer {
 public:
  explicit SequencePreTokenizer(
      std::vector<std::unique_ptr<PreTokenizer>> parts)
      : parts_(std::move(parts)) {}
  absl::Status PreTokenize(std::vector<Piece>* pieces) const override {
    for (const auto& part : parts_) RETURN_IF_ERROR(part->PreTokenize(pieces));
    return absl::OkStatus();
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> parts_;
};

class SplitPreTokenizer : public PreTokenizer {
 public:
  SplitPreTokenizer(Pattern pattern, SplitBehavior behavior, bool invert)
      : pattern_(std::move(pattern)), behavior_(behavior), invert_(invert) {}
  absl::Status PreTokenize(std::vector<Piece>* pieces) const override {
    std::vector<Piece> out;
    std::vector<Range> matches;
    for (const Piece& piece : *pieces) {
      matches.clear();
      RETURN_IF_ERROR(pattern_.FindAll(piece.text, &matches));
      SplitPiece(piece, matches, behavior_, invert_, &out);
    }
    *pieces = std::move(out);
    return absl::OkStatus();
  }

 private:
  Pattern pattern_;
  SplitBehavior behavior_;
  bool invert_;
};

class ByteLevelPreTokenizer : public PreTokenizer {
 public:
  ByteLevelPreTokenizer(bool add_prefix_space, std::unique_ptr<Regex> regex)
      : add_prefix_space_(add_prefix_space), regex_(std::move(regex)) {}
  absl::Status PreTokenize(std::vector<Piece>* pieces) const override {
    std::vector<Piece> split;
    std::vector<Range> matches;
    for (Piece piece : *pieces) {
      if (add_prefix_space_ && !absl::StartsWith(piece.text, " ")) {
        piece.text.insert(0, " ");
      }
      if (regex_ == nullptr) {
        if (!piece.text.empty()) split.push_back(std::move(piece));
        continue;
      }
      matches.clear();
      RETURN_IF_ERROR(regex_->FindAll(piece.text, &matches));
      SplitPiece(piece, matches, SplitBehavior::kIsolated, false, &split);
    }
    const ByteLevelAlphabet& alphabet = Alphabet();
    for (Piece& piece : split) {
      std::string mapped;
      mapped.reserve(piece.text.size() * 2);
      for (unsigned char byte : piece.text)
        mapped += alphabet.byte_to_text[byte];
      piece.text = std::move(mapped);
    }
    *pieces = std::move(split);
    return absl::OkStatus();
  }

 private:
  bool add_prefix_space_;
  std::unique_ptr<Regex> regex_;
};

enum class PrependScheme { kAlways, kFirst, kNever };

absl::StatusOr<PrependScheme> ParsePrependScheme(const Reader& reader,
                                                 const Node& node) {
  if (std::optional<Node> scheme = reader.Member(node, "prepend_scheme")) {
    ASSIGN_OR_RETURN(std::string name, reader.String(*scheme));
    if (name == "always") return PrependScheme::kAlways;
    if (name == "first") return PrependScheme::kFirst;
    if (name == "never") return PrependScheme::kNever;
    return reader.Unsupported(*scheme,
                              absl::StrCat("'", name, "' is not a scheme"));
  }
  // Files from before prepend_scheme say add_prefix_space.
  ASSIGN_OR_RETURN(bool add, reader.Bool(node, "add_prefix_space", true));
  return add ? PrependScheme::kAlways : PrependScheme::kNever;
}

absl::StatusOr<std::string> ParseReplacement(const Reader& reader,
                                             const Node& node) {
  ASSIGN_OR_RETURN(Node replacement_node, reader.Required(node, "replacement"));
  ASSIGN_OR_RETURN(std::string replacement, reader.String(replacement_node));
  size_t end = 0;
  if (replacement.empty() || !IsValidUtf8(replacement) ||
      (NextCodePoint(replacement, &end), end != replacement.size())) {
    return reader.Invalid(replacement_node, "is not one character");
  }
  return replacement;
}

class MetaspacePreTokenizer : public PreTokenizer {
 public:
  MetaspacePreTokenizer(std::string replacement, PrependScheme scheme,
                        bool split)
      : replacement_(std::move(replacement)), scheme_(scheme), split_(split) {}
  absl::Status PreTokenize(std::vector<Piece>* pieces) const override {
    std::vector<Piece> out;
    std::vector<Range> matches;
    for (Piece piece : *pieces) {
      std::string replaced;
      for (char c : piece.text) {
        if (c == ' ') {
          replaced += replacement_;
        } else {
          replaced += c;
        }
      }
      piece.text = std::move(replaced);
      const bool prepend =
          !absl::StartsWith(piece.text, replacement_) &&
          (scheme_ == PrependScheme::kAlways ||
           (scheme_ == PrependScheme::kFirst && piece.at_start));
      if (prepend) piece.text.insert(0, replacement_);
      if (!split_) {
        if (!piece.text.empty()) out.push_back(std::move(piece));
        continue;
      }
      matches.clear();
      for (size_t at = piece.text.find(replacement_); at != std::string::npos;
           at = piece.text.find(replacement_, at + replacement_.size())) {
        matches.emplace_back(at, at + replacement_.size());
      }
      SplitPiece(piece, matches, SplitBehavior::kMergedWithNext, false, &out);
    }
    *pieces = std::move(out);
    return absl::OkStatus();
  }

 private:
  std::string replacement_;
  PrependScheme scheme_;
  bool split_;
};

class DigitsPreTokenizer : public PreTokenizer {
 public:
  explicit DigitsPreTokenizer(bool individual) : individual_(individual) {}
  absl::Status PreTokenize(std::vector<Piece>* pieces) const override {
    std::vector<Piece> out;
    std::vector<Range> matches;
    for (const Piece& piece : *pieces) {
      matches.clear();
      for (size_t i = 0; i < piece.text.size(); ++i) {
        if (piece.text[i] >= '0' && piece.text[i] <= '9') {
          matches.emplace_back(i, i + 1);
        }
      }
      SplitPiece(
          piece, matches,
          individual_ ? SplitBehavior::kIsolated : SplitBehavior::kContiguous,
          false, &out);
    }
    *pieces = std::move(out);
    return absl::OkStatus();
  }

 private:
  bool individual_;
};

absl::StatusOr<std::unique_ptr<PreTokenizer>> ParsePreTokenizer(
    const Reader& reader, const Node& node) {
  ASSIGN_OR_RETURN(std::string type, reader.Type(node));
  if (type == "Sequence") {
    ASSIGN_OR_RETURN(Node list, reader.Required(node, "pretokenizers"));
    ASSIGN_OR_RETURN(std::vector<Node> items, reader.Array(list));
    std::vector<std::unique_ptr<PreTokenizer>> parts;
    for (const Node& item : items) {
      ASSIGN_OR_RETURN(std::unique_ptr<PreTokenizer> part,
                       ParsePreTokenizer(reader, item));
      parts.push_back(std::move(part));
    }
    return std::unique_ptr<PreTokenizer>(
        new SequencePreTokenizer(std::move(parts)));
  }
  if (type == "Split") {
    ASSIGN_OR_RETURN(Node pattern_node, reader.Required(node, "pattern"));
    ASSIGN_OR_RETURN(Pattern pattern, Pattern::Parse(reader, pattern_node));
    ASSIGN_OR_RETURN(Node behavior_node, reader.Required(node, "behavior"));
    ASSIGN_OR_RETURN(SplitBehavior behavior,
                     ParseBehavior(reader, behavior_node));
    ASSIGN_OR_RETURN(bool invert, reader.Bool(node, "invert", false));
    return std::unique_ptr<PreTokenizer>(
        new SplitPreTokenizer(std::move(pattern), behavior, invert));
  }
  if (type == "ByteLevel") {
    ASSIGN_OR_RETURN(bool add_prefix_space,
                     reader.Bool(node, "add_prefix_space", true));
    ASSIGN_OR_RETURN(bool use_regex, reader.Bool(node, "use_regex", true));
    std::unique_ptr<Regex> regex;
    if (use_regex) {
      std::string error;
      regex = Regex::Compile(kByteLevelPattern, &error);
      if (regex == nullptr) return absl::InternalError(error);
    }
    return std::unique_ptr<PreTokenizer>(
        new ByteLevelPreTokenizer(add_prefix_space, std::move(regex)));
  }
  if (type == "Metaspace") {
    ASSIGN_OR_RETURN(std::string replacement, ParseReplacement(reader, node));
    ASSIGN_OR_RETURN(PrependScheme scheme, ParsePrependScheme(reader, node));
    ASSIGN_OR_RETURN(bool split, reader.Bool(node, "split", true));
    return std::unique_ptr<PreTokenizer>(
        new MetaspacePreTokenizer(replacement, scheme, split));
  }
  if (type == "Digits") {
    ASSIGN_OR_RETURN(bool individual,
                     reader.Bool(node, "individual_digits", false));
    return std::unique_ptr<PreTokenizer>(new DigitsPreTokenizer(individual));
  }
  return reader.Unsupported(
      node, absl::StrCat("type '", type,
                         "' is not supported (Lethe supports Sequence, Split, "
                         "ByteLevel, Metaspace and Digits pre-tokenizers)"));
}

// ---------------------------------------------------------------------------
// Decoders: each turns the list of token strings into another.

class Decoder {
 public:
  virtual ~Decoder() = default;
  virtual absl::Status DecodeChain(std::vector<std::string>* tokens) const = 0;
};

class SequenceDecoder : public Decoder {
 public:
  explicit SequenceDecoder(std::vector<std::unique_ptr<Decoder>> parts)
      : parts_(std::move(parts)) {}
  absl::Status DecodeChain(std::vector<std::string>* tokens) const override {
    for (const auto& part : parts_) RETURN_IF_ERROR(part->DecodeChain(tokens));
    return absl::OkStatus();
  }

 private:
  std::vector<std::unique_ptr<Decoder>> parts_;
};

class ByteLevelDecoder : public Decoder {
 public:
  absl::Status DecodeChain(std::vector<std::string>* tokens) const override {
    const ByteLevelAlphabet& alphabet = Alphabet();
    std::string bytes;
    for (const std::string& token : *tokens) {
      std::string token_bytes;
      bool all_mapped = true;
      for (size_t i = 0; i < token.size() && all_mapped;) {
        auto it = alphabet.char_to_byte.find(NextCodePoint(token, &i));
        if (it == alphabet.char_to_byte.end()) {
          all_mapped = false;
        } else {
          token_bytes += static_cast<char>(it->second);
        }
      }
      bytes += all_mapped ? token_bytes : token;
    }
    std::string text;
    AppendUtf8Lossy(bytes, &text);
    *tokens = {text};
    return absl::OkStatus();
  }
};

class ReplaceDecoder : public Decoder {
 public:
  ReplaceDecoder(Pattern pattern, std::string content)
      : pattern_(std::move(pattern)), content_(std::move(content)) {}
  absl::Status DecodeChain(std::vector<std::string>* tokens) const override {
    for (std::string& token : *tokens) {
      ASSIGN_OR_RETURN(token, ReplaceAll(pattern_, content_, token));
    }
    return absl::OkStatus();
  }

 private:
  Pattern pattern_;
  std::string content_;
};

class ByteFallbackDecoder : public Decoder {
 public:
  absl::Status DecodeChain(std::vector<std::string>* tokens) const override {
    std::vector<std::string> out;
    std::string bytes;
    auto flush = [&] {
      if (bytes.empty()) return;
      if (IsValidUtf8(bytes)) {
        out.push_back(bytes);
      } else {
        for (size_t i = 0; i < bytes.size(); ++i) out.push_back("\xEF\xBF\xBD");
      }
      bytes.clear();
    };
    for (std::string& token : *tokens) {
      unsigned int byte;
      char tail;
      if (token.size() == 6 && absl::StartsWith(token, "<0x") &&
          token[5] == '>' &&
          std::sscanf(token.c_str() + 3, "%2x%c", &byte, &tail) == 2 &&
          tail == '>' && std::isxdigit(token[3]) && std::isxdigit(token[4])) {
        bytes += static_cast<char>(byte);
        continue;
      }
      flush();
      out.push_back(std::move(token));
    }
    flush();
    *tokens = std::move(out);
    return absl::OkStatus();
  }
};

class FuseDecoder : public Decoder {
 public:
  absl::Status DecodeChain(std::vector<std::string>* tokens) const override {
    *tokens = {absl::StrJoin(*tokens, "")};
    return absl::OkStatus();
  }
};

class StripDecoder : public Decoder {
 public:
  StripDecoder(char32_t content, int start, int stop)
      : content_(content), start_(start), stop_(stop) {}
  absl::Status DecodeChain(std::vector<std::string>* tokens) const override {
    for (std::string& token : *tokens) {
      std::vector<char32_t> chars;
      for (size_t i = 0; i < token.size();) {
        chars.push_back(NextCodePoint(token, &i));
      }
      size_t begin = 0;
      for (size_t i = 0; i < chars.size() && i < static_cast<size_t>(start_);
           ++i) {
        if (chars[i] != content_) break;
        begin = i + 1;
      }
      size_t end = chars.size();
      for (int i = 0; i < stop_ && static_cast<size_t>(i) < chars.size(); ++i) {
        const size_t index = chars.size() - i - 1;
        if (chars[index] != content_) break;
        end = index;
      }
      std::string stripped;
      for (size_t i = begin; i < end && i < chars.size(); ++i) {
        AppendUtf8(chars[i], &stripped);
      }
      token = std::move(stripped);
    }
    return absl::OkStatus();
  }

 private:
  char32_t content_;
  int start_, stop_;
};

class MetaspaceDecoder : public Decoder {
 public:
  MetaspaceDecoder(char32_t replacement, PrependScheme scheme)
      : replacement_(replacement), scheme_(scheme) {}
  absl::Status DecodeChain(std::vector<std::string>* tokens) const override {
    for (size_t k = 0; k < tokens->size(); ++k) {
      std::string& token = (*tokens)[k];
      std::string out;
      for (size_t i = 0; i < token.size();) {
        const char32_t c = NextCodePoint(token, &i);
        if (c != replacement_) {
          AppendUtf8(c, &out);
        } else if (k != 0 || scheme_ == PrependScheme::kNever) {
          out += ' ';
        }
      }
      token = std::move(out);
    }
    return absl::OkStatus();
  }

 private:
  char32_t replacement_;
  PrependScheme scheme_;
};

absl::StatusOr<std::unique_ptr<Decoder>> ParseDecoder(const Reader& reader,
                                                      const Node& node) {
  ASSIGN_OR_RETURN(std::string type, reader.Type(node));
  if (type == "Sequence") {
    ASSIGN_OR_RETURN(Node list, reader.Required(node, "decoders"));
    ASSIGN_OR_RETURN(std::vector<Node> items, reader.Array(list));
    std::vector<std::unique_ptr<Decoder>> parts;
    for (const Node& item : items) {
      ASSIGN_OR_RETURN(std::unique_ptr<Decoder> part,
                       ParseDecoder(reader, item));
      parts.push_back(std::move(part));
    }
    return std::unique_ptr<Decoder>(new SequenceDecoder(std::move(parts)));
  }
  if (type == "ByteLevel")
    return std::unique_ptr<Decoder>(new ByteLevelDecoder());
  if (type == "Replace") {
    ASSIGN_OR_RETURN(Node pattern_node, reader.Required(node, "pattern"));
    ASSIGN_OR_RETURN(Pattern pattern, Pattern::Parse(reader, pattern_node));
    ASSIGN_OR_RETURN(Node content_node, reader.Required(node, "content"));
    ASSIGN_OR_RETURN(std::string content, reader.String(content_node));
    return std::unique_ptr<Decoder>(
        new ReplaceDecoder(std::move(pattern), content));
  }
  if (type == "ByteFallback") {
    return std::unique_ptr<Decoder>(new ByteFallbackDecoder());
  }
  if (type == "Fuse") return std::unique_ptr<Decoder>(new FuseDecoder());
  if (type == "Strip") {
    ASSIGN_OR_RETURN(Node content_node, reader.Required(node, "content"));
    ASSIGN_OR_RETURN(std::string content, reader.String(content_node));
    size_t end = 0;
    if (content.empty() || !IsValidUtf8(content) ||
        (NextCodePoint(content, &end), end != content.size())) {
      return reader.Invalid(content_node, "is not one character");
    }
    size_t i = 0;
    const char32_t c = NextCodePoint(content, &i);
    ASSIGN_OR_RETURN(int64_t start, reader.Int(node, "start", 0));
    ASSIGN_OR_RETURN(int64_t stop, reader.Int(node, "stop", 0));
    return std::unique_ptr<Decoder>(
        new StripDecoder(c, static_cast<int>(std::max<int64_t>(start, 0)),
                         static_cast<int>(std::max<int64_t>(stop, 0))));
  }
  if (type == "Metaspace") {
    ASSIGN_OR_RETURN(std::string replacement, ParseReplacement(reader, node));
    ASSIGN_OR_RETURN(PrependScheme scheme, ParsePrependScheme(reader, node));
    size_t i = 0;
    return std::unique_ptr<Decoder>(
        new MetaspaceDecoder(NextCodePoint(replacement, &i), scheme));
  }
  return reader.Unsupported(
      node, absl::StrCat("type '", type,
                         "' is not supported (Lethe supports Sequence, "
                         "ByteLevel, Metaspace, Replace, ByteFallback, Fuse "
                         "and Strip decoders)"));
}

// ---------------------------------------------------------------------------
// The BPE model.

class BpeModel {
 public:
  static absl::StatusOr<std::unique_ptr<BpeModel>> Parse(const Reader& reader,
                                                         const Node& node) {
    std::unique_ptr<BpeModel> model(new BpeModel());
    ASSIGN_OR_RETURN(Node vocab, reader.Required(node, "vocab"));
    if (!vocab.json->is_object())
      return reader.Invalid(vocab, "is not an object");
    model->vocab_.reserve(vocab.json->size());
    for (auto it = vocab.json->begin(); it != vocab.json->end(); ++it) {
      if (!it.value().is_number_integer() || it.value().get<int64_t>() < 0 ||
          it.value().get<int64_t>() > kMaxId) {
        return reader.Invalid(
            vocab, absl::StrCat("entry '", it.key(), "' has no valid id"));
      }
      const int id = static_cast<int>(it.value().get<int64_t>());
      model->vocab_[it.key()] = id;
      model->max_id_ = std::max(model->max_id_, id);
    }
    ASSIGN_OR_RETURN(model->prefix_,
                     reader.String(node, "continuing_subword_prefix", ""));
    ASSIGN_OR_RETURN(model->suffix_,
                     reader.String(node, "end_of_word_suffix", ""));
    ASSIGN_OR_RETURN(model->fuse_unk_, reader.Bool(node, "fuse_unk", false));
    ASSIGN_OR_RETURN(model->byte_fallback_,
                     reader.Bool(node, "byte_fallback", false));
    ASSIGN_OR_RETURN(model->ignore_merges_,
                     reader.Bool(node, "ignore_merges", false));
    if (std::optional<Node> dropout = reader.Member(node, "dropout")) {
      if (!dropout->json->is_number() || dropout->json->get<double>() != 0.0) {
        return reader.Unsupported(*dropout,
                                  "is set; Lethe's BPE has no dropout");
      }
    }
    if (std::optional<Node> unk = reader.Member(node, "unk_token")) {
      ASSIGN_OR_RETURN(std::string unk_token, reader.String(*unk));
      auto it = model->vocab_.find(unk_token);
      if (it == model->vocab_.end()) {
        return reader.Invalid(
            *unk, absl::StrCat("'", unk_token, "' is not in the vocabulary"));
      }
      model->unk_id_ = it->second;
    }
    for (int byte = 0; byte < 256; ++byte) {
      auto it = model->vocab_.find(absl::StrFormat("<0x%02X>", byte));
      model->byte_ids_[byte] = it == model->vocab_.end() ? -1 : it->second;
    }
    ASSIGN_OR_RETURN(Node merges_node, reader.Required(node, "merges"));
    ASSIGN_OR_RETURN(std::vector<Node> merges, reader.Array(merges_node));
    model->merges_.reserve(merges.size());
    for (size_t rank = 0; rank < merges.size(); ++rank) {
      const Node& merge = merges[rank];
      std::string left, right;
      if (merge.json->is_string()) {  // "a b"
        const std::string& text = merge.json->get_ref<const std::string&>();
        const size_t space = text.find(' ');
        if (space == std::string::npos) {
          return reader.Invalid(merge, "is not two tokens apart by a space");
        }
        left = text.substr(0, space);
        right = text.substr(space + 1);
      } else if (merge.json->is_array() && merge.json->size() == 2 &&
                 (*merge.json)[0].is_string() && (*merge.json)[1].is_string()) {
        left = (*merge.json)[0].get<std::string>();
        right = (*merge.json)[1].get<std::string>();
      } else {
        return reader.Invalid(merge, "is neither \"a b\" nor [a, b]");
      }
      auto a = model->vocab_.find(left);
      auto b = model->vocab_.find(right);
      if (a == model->vocab_.end() || b == model->vocab_.end()) {
        return reader.Invalid(
            merge, absl::StrCat("merges '", left, "' and '", right,
                                "', which are not both in the vocabulary"));
      }
      if (right.size() < model->prefix_.size()) {
        return reader.Invalid(merge, "is shorter than the subword prefix");
      }
      const std::string merged = left + right.substr(model->prefix_.size());
      auto merged_it = model->vocab_.find(merged);
      if (merged_it == model->vocab_.end()) {
        return reader.Invalid(merge, absl::StrCat("makes '", merged,
                                                  "', which is not in the "
                                                  "vocabulary"));
      }
      // A later duplicate replaces an earlier one, as in the Rust library.
      model->merges_[PairKey(a->second, b->second)] = {static_cast<int>(rank),
                                                       merged_it->second};
    }
    return model;
  }

  int max_id() const { return max_id_; }
  int unk_id() const { return unk_id_; }
  const std::unordered_map<std::string, int>& vocab() const { return vocab_; }

  // Appends the ids of `word` (one pre-token).
  void Tokenize(const std::string& word, std::vector<int>* ids) const {
    if (word.empty()) return;
    if (ignore_merges_) {
      auto it = vocab_.find(word);
      if (it != vocab_.end()) {
        ids->push_back(it->second);
        return;
      }
    }
    {
      absl::ReaderMutexLock lock(&mutex_);
      auto it = cache_.find(word);
      if (it != cache_.end()) {
        ids->insert(ids->end(), it->second.begin(), it->second.end());
        return;
      }
    }
    std::vector<int> word_ids = MergeWord(word);
    ids->insert(ids->end(), word_ids.begin(), word_ids.end());
    absl::MutexLock lock(&mutex_);
    if (cache_.size() < kCacheCapacity)
      cache_.emplace(word, std::move(word_ids));
  }

 private:
  static constexpr int64_t kMaxId = 1 << 26;
  static constexpr size_t kCacheCapacity = 200000;

  static uint64_t PairKey(int a, int b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) |
           static_cast<uint32_t>(b);
  }

  BpeModel() = default;

  // The Rust library's BPE::merge_word and Word::merge_all.
  std::vector<int> MergeWord(const std::string& word) const {
    struct Symbol {
      int id;
      int previous, next;
      size_t length;  // Bytes of the word it covers; 0 once merged away.
    };
    std::vector<Symbol> symbols;
    auto add = [&](int id, size_t length) {
      const int index = static_cast<int>(symbols.size());
      symbols.push_back({id, index - 1, -1, length});
      if (index > 0) symbols[index - 1].next = index;
    };
    // A pending unknown token (unk_id_) covering `unknown_length` bytes.
    bool unknown = false;
    size_t unknown_length = 0;
    for (size_t i = 0; i < word.size();) {
      const size_t begin = i;
      NextCodePoint(word, &i);
      const size_t length = i - begin;
      std::string text = word.substr(begin, length);
      if (begin > 0 && !prefix_.empty()) text = prefix_ + text;
      if (i == word.size() && !suffix_.empty()) text += suffix_;
      auto it = vocab_.find(text);
      if (it != vocab_.end()) {
        if (unknown) {
          add(unk_id_, unknown_length);
          unknown = false;
        }
        add(it->second, length);
        continue;
      }
      if (byte_fallback_ && std::all_of(text.begin(), text.end(), [&](char c) {
            return byte_ids_[static_cast<unsigned char>(c)] >= 0;
          })) {
        for (char c : text) add(byte_ids_[static_cast<unsigned char>(c)], 1);
        continue;
      }
      if (unk_id_ >= 0) {
        if (unknown && fuse_unk_) {
          unknown_length += length;
        } else {
          if (unknown) add(unk_id_, unknown_length);
          unknown = true;
          unknown_length = length;
        }
      }
    }
    if (unknown) add(unk_id_, unknown_length);

    struct Merge {
      int position, rank, new_id;
    };
    auto later = [](const Merge& a, const Merge& b) {
      return a.rank != b.rank ? a.rank > b.rank : a.position > b.position;
    };
    std::priority_queue<Merge, std::vector<Merge>, decltype(later)> queue(
        later);
    auto find = [&](int a, int b) -> const std::pair<int, int>* {
      auto it = merges_.find(PairKey(a, b));
      return it == merges_.end() ? nullptr : &it->second;
    };
    for (size_t k = 0; k + 1 < symbols.size(); ++k) {
      if (const auto* merge = find(symbols[k].id, symbols[k + 1].id)) {
        queue.push({static_cast<int>(k), merge->first, merge->second});
      }
    }
    while (!queue.empty()) {
      const Merge top = queue.top();
      queue.pop();
      Symbol& current = symbols[top.position];
      if (current.length == 0 || current.next == -1) continue;
      const int next_position = current.next;
      const Symbol right = symbols[next_position];
      const auto* merge = find(current.id, right.id);
      if (merge == nullptr || merge->second != top.new_id) continue;  // Stale.
      current.id = top.new_id;
      current.length += right.length;
      current.next = right.next;
      symbols[next_position].length = 0;
      if (right.next >= 0) symbols[right.next].previous = top.position;
      if (current.previous >= 0) {
        if (const auto* m = find(symbols[current.previous].id, current.id)) {
          queue.push({current.previous, m->first, m->second});
        }
      }
      if (current.next >= 0) {
        if (const auto* m = find(current.id, symbols[current.next].id)) {
          queue.push({top.position, m->first, m->second});
        }
      }
    }
    std::vector<int> ids;
    for (const Symbol& symbol : symbols) {
      if (symbol.length != 0) ids.push_back(symbol.id);
    }
    return ids;
  }

  std::unordered_map<std::string, int> vocab_;
  absl::flat_hash_map<uint64_t, std::pair<int, int>> merges_;  // rank, id
  std::string prefix_, suffix_;
  bool fuse_unk_ = false;
  bool byte_fallback_ = false;
  bool ignore_merges_ = false;
  int unk_id_ = -1;
  int max_id_ = -1;
  int byte_ids_[256];
  mutable absl::Mutex mutex_;
  mutable absl::flat_hash_map<std::string, std::vector<int>> cache_
      ABSL_GUARDED_BY(mutex_);
};

// ---------------------------------------------------------------------------
// Added tokens.

struct AddedToken {
  int id;
  std::string content;
  bool special, lstrip, rstrip, single_word, normalized;
};

// A part of the text: an added token's id, or text for the model (-1).
struct Segment {
  std::string text;
  int id = -1;
  size_t begin = 0;  // Offset in the text it was split from.
};

bool IsWordCharacter(char32_t c) {
  // Rust's char::is_alphanumeric or '_': letters and numbers. Outside ASCII,
  // PCRE2's \p{L} / \p{N} decide.
  if (c < 0x80) return std::isalnum(static_cast<int>(c)) || c == '_';
  static const Regex* const word = [] {
    std::string error;
    return Regex::Compile(R"(^[\p{L}\p{N}\p{Nl}]$)", &error).release();
  }();
  std::string text;
  AppendUtf8(c, &text);
  std::vector<Range> matches;
  return word->FindAll(text, &matches).ok() && !matches.empty();
}

// Splits text around added tokens as the Rust library's AddedVocabulary:
// leftmost-longest matches, then single_word, lstrip and rstrip.
class AddedTokenMatcher {
 public:
  AddedTokenMatcher() = default;
  // `contents` are the texts to match (normalised ones for tokens with
  // normalized true), parallel to `tokens`.
  AddedTokenMatcher(std::vector<const AddedToken*> tokens,
                    std::vector<std::string> contents)
      : tokens_(std::move(tokens)), contents_(std::move(contents)) {
    for (size_t k = 0; k < tokens_.size(); ++k) {
      if (contents_[k].empty()) continue;
      by_first_byte_[static_cast<unsigned char>(contents_[k][0])].push_back(k);
    }
    for (auto& candidates : by_first_byte_) {
      std::stable_sort(candidates.begin(), candidates.end(),
                       [&](size_t a, size_t b) {
                         return contents_[a].size() > contents_[b].size();
                       });
    }
  }

  bool empty() const { return tokens_.empty(); }

  void Split(const std::string& text, size_t base,
             std::vector<Segment>* out) const {
    size_t start_offset = 0;
    for (size_t i = 0; i < text.size();) {
      const auto& candidates =
          by_first_byte_[static_cast<unsigned char>(text[i])];
      const AddedToken* token = nullptr;
      size_t length = 0;
      for (size_t k : candidates) {
        if (text.compare(i, contents_[k].size(), contents_[k]) == 0) {
          token = tokens_[k];
          length = contents_[k].size();
          break;
        }
      }
      if (token == nullptr) {
        ++i;
        continue;
      }
      size_t start = i, stop = i + length;
      i = stop;  // The next match starts after this one, used or not.
      if (start < start_offset) continue;  // Overlaps a stripped space.
      if (token->single_word) {
        const bool start_space = start == 0 || !EndsWithWord(text, start);
        const bool stop_space =
            stop == text.size() || !StartsWithWord(text, stop);
        if (!start_space || !stop_space) continue;
      }
      if (token->lstrip) {
        size_t new_start = start;
        while (new_start > 0) {
          size_t previous = new_start - 1;
          while (previous > 0 &&
                 (static_cast<unsigned char>(text[previous]) & 0xC0) == 0x80) {
            --previous;
          }
          size_t next = previous;
          if (!IsWhiteSpace(NextCodePoint(text, &next))) break;
          new_start = previous;
        }
        start = std::max(new_start, start_offset);
      }
      if (token->rstrip) {
        while (stop < text.size()) {
          size_t next = stop;
          if (!IsWhiteSpace(NextCodePoint(text, &next))) break;
          stop = next;
        }
      }
      if (start_offset < start) {
        out->push_back({text.substr(start_offset, start - start_offset), -1,
                        base + start_offset});
      }
      out->push_back(
          {text.substr(start, stop - start), token->id, base + start});
      start_offset = stop;
      i = std::max(i, stop);
    }
    if (start_offset < text.size()) {
      out->push_back({text.substr(start_offset), -1, base + start_offset});
    }
  }

 private:
  static bool EndsWithWord(const std::string& text, size_t end) {
    size_t start = end - 1;
    while (start > 0 &&
           (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) {
      --start;
    }
    return IsWordCharacter(NextCodePoint(text, &start));
  }
  static bool StartsWithWord(const std::string& text, size_t begin) {
    return IsWordCharacter(NextCodePoint(text, &begin));
  }

  std::vector<const AddedToken*> tokens_;
  std::vector<std::string> contents_;
  std::vector<size_t> by_first_byte_[256];
};

}  // namespace

// ---------------------------------------------------------------------------

struct HfTokenizer::Impl {
  std::unique_ptr<BpeModel> model;
  std::unique_ptr<Normalizer> normalizer;
  std::unique_ptr<PreTokenizer> pre_tokenizer;
  std::unique_ptr<Decoder> decoder;
  std::vector<AddedToken> added_tokens;
  std::unordered_map<std::string, int> added_by_content;
  AddedTokenMatcher raw_matcher;         // normalized false
  AddedTokenMatcher normalized_matcher;  // normalized true
  std::vector<std::string> id_to_token;
  std::vector<bool> has_token;
  std::vector<bool> special;
  std::vector<int> template_prefix;  // TemplateProcessing's leading specials.
  std::optional<bool> add_bos_token;
  tokenizer_internal::SpecialTokenIds special_ids;

  int Lookup(const std::string& text) const {
    auto added = added_by_content.find(text);
    if (added != added_by_content.end()) return added->second;
    auto it = model->vocab().find(text);
    return it == model->vocab().end() ? -1 : it->second;
  }

  absl::Status EncodeText(const std::string& text, size_t offset,
                          std::vector<int>* ids) const {
    std::string normalized = text;
    if (normalizer != nullptr)
      RETURN_IF_ERROR(normalizer->Normalize(&normalized));
    std::vector<Segment> segments;
    if (normalized_matcher.empty()) {
      if (!normalized.empty()) segments.push_back({normalized, -1, 0});
    } else {
      normalized_matcher.Split(normalized, 0, &segments);
    }
    std::vector<Piece> pieces;
    for (Segment& segment : segments) {
      if (segment.id >= 0) {
        ids->push_back(segment.id);
        continue;
      }
      pieces.clear();
      pieces.push_back(
          {std::move(segment.text), offset == 0 && segment.begin == 0});
      if (pre_tokenizer != nullptr) {
        RETURN_IF_ERROR(pre_tokenizer->PreTokenize(&pieces));
      }
      for (const Piece& piece : pieces) model->Tokenize(piece.text, ids);
    }
    return absl::OkStatus();
  }
};

HfTokenizer::HfTokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
HfTokenizer::~HfTokenizer() = default;

absl::StatusOr<std::unique_ptr<HfTokenizer>> HfTokenizer::FromJson(
    absl::string_view json, const std::string& source) {
  const Json document = Json::parse(json.begin(), json.end(), nullptr,
                                    /*allow_exceptions=*/false);
  if (document.is_discarded()) {
    return absl::InvalidArgumentError(absl::StrCat(
        source, " is not valid JSON (a truncated or corrupt tokenizer.json)"));
  }
  if (!document.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, " is not a JSON object"));
  }
  const Reader reader(source);
  const Node root{&document, ""};
  auto impl = std::make_unique<Impl>();

  // Model.
  ASSIGN_OR_RETURN(Node model, reader.Required(root, "model"));
  if (!model.json->is_object())
    return reader.Invalid(model, "is not an object");
  ASSIGN_OR_RETURN(std::string model_type,
                   reader.String(model, "type",
                                 model.json->contains("merges") ? "BPE" : ""));
  if (model_type != "BPE") {
    return reader.Unsupported(
        model, absl::StrCat("type '", model_type,
                            "' is not supported (Lethe reads BPE models)"));
  }
  ASSIGN_OR_RETURN(impl->model, BpeModel::Parse(reader, model));

  // Components.
  if (std::optional<Node> node = reader.Member(root, "normalizer")) {
    ASSIGN_OR_RETURN(impl->normalizer, ParseNormalizer(reader, *node));
  }
  if (std::optional<Node> node = reader.Member(root, "pre_tokenizer")) {
    ASSIGN_OR_RETURN(impl->pre_tokenizer, ParsePreTokenizer(reader, *node));
  }
  if (std::optional<Node> node = reader.Member(root, "decoder")) {
    ASSIGN_OR_RETURN(impl->decoder, ParseDecoder(reader, *node));
  }

  // Added tokens.
  int max_id = impl->model->max_id();
  if (std::optional<Node> node = reader.Member(root, "added_tokens")) {
    ASSIGN_OR_RETURN(std::vector<Node> items, reader.Array(*node));
    for (const Node& item : items) {
      AddedToken token;
      ASSIGN_OR_RETURN(Node id, reader.Required(item, "id"));
      ASSIGN_OR_RETURN(int64_t id_value, reader.Int(id));
      if (id_value < 0 || id_value > (1 << 26)) {
        return reader.Invalid(id, "is out of range");
      }
      token.id = static_cast<int>(id_value);
      ASSIGN_OR_RETURN(Node content, reader.Required(item, "content"));
      ASSIGN_OR_RETURN(token.content, reader.String(content));
      ASSIGN_OR_RETURN(token.special, reader.Bool(item, "special", false));
      ASSIGN_OR_RETURN(token.lstrip, reader.Bool(item, "lstrip", false));
      ASSIGN_OR_RETURN(token.rstrip, reader.Bool(item, "rstrip", false));
      ASSIGN_OR_RETURN(token.single_word,
                       reader.Bool(item, "single_word", false));
      ASSIGN_OR_RETURN(token.normalized,
                       reader.Bool(item, "normalized", !token.special));
      max_id = std::max(max_id, token.id);
      impl->added_tokens.push_back(std::move(token));
    }
  }
  impl->id_to_token.resize(max_id + 1);
  impl->has_token.resize(max_id + 1, false);
  impl->special.resize(max_id + 1, false);
  for (const auto& [text, id] : impl->model->vocab()) {
    impl->id_to_token[id] = text;
    impl->has_token[id] = true;
  }
  std::vector<const AddedToken*> raw, normalized;
  std::vector<std::string> raw_contents, normalized_contents;
  for (const AddedToken& token : impl->added_tokens) {
    impl->id_to_token[token.id] = token.content;
    impl->has_token[token.id] = true;
    impl->special[token.id] = token.special;
    impl->added_by_content[token.content] = token.id;
    if (token.normalized) {
      std::string content = token.content;
      if (impl->normalizer != nullptr) {
        RETURN_IF_ERROR(impl->normalizer->Normalize(&content));
      }
      // The Rust library decodes such a token from its normalised text.
      impl->id_to_token[token.id] = content;
      normalized.push_back(&token);
      normalized_contents.push_back(std::move(content));
    } else {
      raw.push_back(&token);
      raw_contents.push_back(token.content);
    }
  }
  impl->raw_matcher =
      AddedTokenMatcher(std::move(raw), std::move(raw_contents));
  impl->normalized_matcher =
      AddedTokenMatcher(std::move(normalized), std::move(normalized_contents));

  // Post-processor: the template's leading special tokens.
  std::function<absl::Status(const Node&)> parse_post_processor =
      [&](const Node& node) -> absl::Status {
    ASSIGN_OR_RETURN(std::string type, reader.Type(node));
    if (type == "Sequence") {
      ASSIGN_OR_RETURN(Node list, reader.Required(node, "processors"));
      ASSIGN_OR_RETURN(std::vector<Node> items, reader.Array(list));
      for (const Node& item : items)
        RETURN_IF_ERROR(parse_post_processor(item));
      return absl::OkStatus();
    }
    if (type == "ByteLevel") return absl::OkStatus();  // Offsets only.
    if (type != "TemplateProcessing") {
      return reader.Unsupported(
          node, absl::StrCat("type '", type,
                             "' is not supported (Lethe supports "
                             "TemplateProcessing, ByteLevel and Sequence "
                             "post-processors)"));
    }
    ASSIGN_OR_RETURN(Node single, reader.Required(node, "single"));
    ASSIGN_OR_RETURN(std::vector<Node> pieces, reader.Array(single));
    std::optional<Node> specials = reader.Member(node, "special_tokens");
    impl->template_prefix.clear();
    for (const Node& piece : pieces) {
      if (reader.Member(piece, "Sequence").has_value()) break;
      ASSIGN_OR_RETURN(Node special, reader.Required(piece, "SpecialToken"));
      ASSIGN_OR_RETURN(Node name_node, reader.Required(special, "id"));
      ASSIGN_OR_RETURN(std::string name, reader.String(name_node));
      std::optional<Node> entry;
      if (specials.has_value()) entry = reader.Member(*specials, name.c_str());
      if (!entry.has_value()) {
        return reader.Invalid(
            name_node,
            absl::StrCat("names '", name, "', which special_tokens lacks"));
      }
      ASSIGN_OR_RETURN(Node ids_node, reader.Required(*entry, "ids"));
      ASSIGN_OR_RETURN(std::vector<Node> ids, reader.Array(ids_node));
      for (const Node& id_node : ids) {
        ASSIGN_OR_RETURN(int64_t id, reader.Int(id_node));
        if (id < 0 || id > max_id) {
          return reader.Invalid(id_node, "is outside the vocabulary");
        }
        impl->template_prefix.push_back(static_cast<int>(id));
      }
    }
    return absl::OkStatus();
  };
  if (std::optional<Node> node = reader.Member(root, "post_processor")) {
    RETURN_IF_ERROR(parse_post_processor(*node));
  }

  // Special tokens before any tokenizer_config.json.
  impl->special_ids.bos =
      impl->template_prefix.empty() ? -1 : impl->template_prefix.front();
  impl->special_ids.unk = impl->model->unk_id();
  if (std::optional<Node> padding = reader.Member(root, "padding")) {
    ASSIGN_OR_RETURN(int64_t pad, reader.Int(*padding, "pad_id", -1));
    if (pad >= 0 && pad <= max_id)
      impl->special_ids.pad = static_cast<int>(pad);
  }
  for (int id : {impl->special_ids.bos, impl->special_ids.pad}) {
    if (id >= 0) impl->special[id] = true;
  }
  return std::unique_ptr<HfTokenizer>(new HfTokenizer(std::move(impl)));
}

absl::Status HfTokenizer::ApplyConfig(
    const tokenizer_internal::TokenizerConfig& config,
    const std::string& source) {
  ASSIGN_OR_RETURN(impl_->special_ids, tokenizer_internal::ResolveSpecialTokens(
                                           config, impl_->special_ids,
                                           [this](const std::string& text) {
                                             return impl_->Lookup(text);
                                           },
                                           source));
  impl_->add_bos_token = config.add_bos_token;
  for (int id : {impl_->special_ids.bos, impl_->special_ids.eos,
                 impl_->special_ids.pad}) {
    if (id >= 0) impl_->special[id] = true;
  }
  return absl::OkStatus();
}

int HfTokenizer::vocab_size() const {
  return static_cast<int>(impl_->id_to_token.size());
}
int HfTokenizer::bos_id() const { return impl_->special_ids.bos; }
int HfTokenizer::eos_id() const { return impl_->special_ids.eos; }
int HfTokenizer::unk_id() const { return impl_->special_ids.unk; }
int HfTokenizer::pad_id() const { return impl_->special_ids.pad; }

const std::string& HfTokenizer::piece(int id) const {
  static const std::string* const kNone = new std::string();
  return id >= 0 && id < vocab_size() ? impl_->id_to_token[id] : *kNone;
}

absl::StatusOr<std::vector<int>> HfTokenizer::DoEncode(
    absl::string_view text, const EncodeOptions& options) const {
  if (!IsValidUtf8(text)) {
    return absl::InvalidArgumentError("text to encode is not valid UTF-8");
  }
  std::vector<int> ids;
  if (options.add_bos) {
    if (impl_->add_bos_token.has_value()) {
      if (*impl_->add_bos_token && impl_->special_ids.bos >= 0) {
        ids.push_back(impl_->special_ids.bos);
      }
    } else {
      ids = impl_->template_prefix;
    }
  }
  const std::string input(text);
  std::vector<Segment> segments;
  impl_->raw_matcher.Split(input, 0, &segments);
  for (const Segment& segment : segments) {
    if (segment.id >= 0) {
      ids.push_back(segment.id);
      continue;
    }
    RETURN_IF_ERROR(impl_->EncodeText(segment.text, segment.begin, &ids));
  }
  if (options.add_eos && impl_->special_ids.eos >= 0) {
    ids.push_back(impl_->special_ids.eos);
  }
  return ids;
}

absl::StatusOr<std::string> HfTokenizer::DoDecode(
    const std::vector<int>& ids, const DecodeOptions& options) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (int id : ids) {
    if (id < 0 || id >= vocab_size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("token id ", id, " is outside the vocabulary [0, ",
                       vocab_size(), ")"));
    }
    if (!impl_->has_token[id]) {
      return absl::InvalidArgumentError(
          absl::StrCat("token id ", id, " has no token in the vocabulary"));
    }
    if (options.skip_special_tokens && impl_->special[id]) continue;
    tokens.push_back(impl_->id_to_token[id]);
  }
  if (impl_->decoder == nullptr) return absl::StrJoin(tokens, " ");
  RETURN_IF_ERROR(impl_->decoder->DecodeChain(&tokens));
  return absl::StrJoin(tokens, "");
}

}  // namespace lethe
