#include "libs/tokenizer/sentencepiece_tokenizer.h"

#include <cstdint>
#include <cstring>
#include <functional>
#include <queue>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"

namespace lethe {
namespace {

constexpr char kSpaceSymbol[] = "\xE2\x96\x81";  // U+2581 "▁"

// A cursor over protobuf wire-format bytes; enough of the format to read
// sentencepiece's ModelProto.
class WireReader {
 public:
  explicit WireReader(absl::string_view bytes) : bytes_(bytes) {}
  bool done() const { return position_ >= bytes_.size(); }

  // Reads a field header; false on malformed input.
  bool Tag(int* field, int* wire_type) {
    uint64_t key;
    if (!Varint(&key)) return false;
    *field = static_cast<int>(key >> 3);
    *wire_type = static_cast<int>(key & 7);
    return *field > 0;
  }
  bool Varint(uint64_t* value) {
    *value = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (position_ >= bytes_.size()) return false;
      const uint8_t byte = static_cast<uint8_t>(bytes_[position_++]);
      *value |= static_cast<uint64_t>(byte & 0x7f) << shift;
      if ((byte & 0x80) == 0) return true;
    }
    return false;
  }
  bool Bytes(absl::string_view* value) {
    uint64_t length;
    if (!Varint(&length) || length > bytes_.size() - position_) return false;
    *value = bytes_.substr(position_, length);
    position_ += length;
    return true;
  }
  bool Fixed32(uint32_t* value) {
    if (bytes_.size() - position_ < 4) return false;
    std::memcpy(value, bytes_.data() + position_, 4);
    position_ += 4;
    return true;
  }
  bool Skip(int wire_type) {
    uint64_t unused;
    absl::string_view unused_bytes;
    uint32_t unused32;
    switch (wire_type) {
      case 0:
        return Varint(&unused);
      case 1:
        if (bytes_.size() - position_ < 8) return false;
        position_ += 8;
        return true;
      case 2:
        return Bytes(&unused_bytes);
      case 5:
        return Fixed32(&unused32);
      default:
        return false;
    }
  }

 private:
  absl::string_view bytes_;
  size_t position_ = 0;
};

// Length in bytes of the UTF-8 character starting with `lead` (1 for bytes
// that cannot start one, as SentencePiece treats them).
size_t Utf8Length(unsigned char lead) {
  if (lead < 0x80) return 1;
  if ((lead & 0xE0) == 0xC0) return 2;
  if ((lead & 0xF0) == 0xE0) return 3;
  if ((lead & 0xF8) == 0xF0) return 4;
  return 1;
}

// Whether `text` starting at `i` holds a complete, valid UTF-8 character of
// `length` bytes.
bool ValidUtf8At(absl::string_view text, size_t i, size_t length) {
  if (i + length > text.size()) return false;
  for (size_t k = 1; k < length; ++k) {
    if ((static_cast<unsigned char>(text[i + k]) & 0xC0) != 0x80) return false;
  }
  return true;
}

// Appends bytes decoded as UTF-8, each invalid byte becoming U+FFFD.
void AppendBytesAsUtf8(const std::string& bytes, std::string* out) {
  size_t i = 0;
  while (i < bytes.size()) {
    const size_t length = Utf8Length(static_cast<unsigned char>(bytes[i]));
    if (static_cast<unsigned char>(bytes[i]) >= 0x80 &&
        (length == 1 || !ValidUtf8At(bytes, i, length))) {
      out->append("\xEF\xBF\xBD");
      ++i;
      continue;
    }
    out->append(bytes, i, length);
    i += length;
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<SentencePieceTokenizer>>
SentencePieceTokenizer::FromSerialized(absl::string_view bytes,
                                       const std::string& source) {
  auto malformed = [&](absl::string_view what) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, " is not a SentencePiece model: ", what));
  };
  std::unique_ptr<SentencePieceTokenizer> tokenizer(
      new SentencePieceTokenizer());
  int model_type = 1;  // UNIGRAM, the format's default.
  std::string normalizer_name;
  absl::string_view charmap;
  WireReader model(bytes);
  while (!model.done()) {
    int field, wire_type;
    if (!model.Tag(&field, &wire_type)) return malformed("bad field header");
    absl::string_view message;
    if (wire_type != 2 || field > 3) {
      if (!model.Skip(wire_type)) return malformed("truncated field");
      continue;
    }
    if (!model.Bytes(&message)) return malformed("truncated message");
    WireReader reader(message);
    if (field == 1) {  // SentencePiece piece.
      Piece piece;
      while (!reader.done()) {
        int piece_field, piece_wire;
        if (!reader.Tag(&piece_field, &piece_wire))
          return malformed("bad piece");
        absl::string_view text;
        uint32_t score_bits;
        uint64_t type;
        if (piece_field == 1 && piece_wire == 2 && reader.Bytes(&text)) {
          piece.text = std::string(text);
        } else if (piece_field == 2 && piece_wire == 5 &&
                   reader.Fixed32(&score_bits)) {
          std::memcpy(&piece.score, &score_bits, 4);
        } else if (piece_field == 3 && piece_wire == 0 &&
                   reader.Varint(&type)) {
          if (type < 1 || type > 6) return malformed("unknown piece type");
          piece.type = static_cast<PieceType>(type);
        } else if (!reader.Skip(piece_wire)) {
          return malformed("truncated piece");
        }
      }
      tokenizer->pieces_.push_back(std::move(piece));
      continue;
    }
    while (!reader.done()) {
      int spec_field, spec_wire;
      if (!reader.Tag(&spec_field, &spec_wire)) return malformed("bad spec");
      uint64_t value = 0;
      absl::string_view text;
      if (spec_wire == 0) {
        if (!reader.Varint(&value)) return malformed("truncated spec");
        const int as_int = static_cast<int>(static_cast<int64_t>(value));
        if (field == 2) {  // TrainerSpec.
          switch (spec_field) {
            case 3:
              model_type = as_int;
              break;
            case 35:
              tokenizer->byte_fallback_ = value != 0;
              break;
            case 40:
              tokenizer->special_.unk = as_int;
              break;
            case 41:
              tokenizer->special_.bos = as_int;
              break;
            case 42:
              tokenizer->special_.eos = as_int;
              break;
            case 43:
              tokenizer->special_.pad = as_int;
              break;
            case 24:
              if (value != 0) {
                return absl::UnimplementedError(absl::StrCat(
                    source, ": treat_whitespace_as_suffix is not supported"));
              }
              break;
          }
        } else {  // NormalizerSpec.
          switch (spec_field) {
            case 3:
              tokenizer->add_dummy_prefix_ = value != 0;
              break;
            case 4:
              tokenizer->remove_extra_whitespaces_ = value != 0;
              break;
            case 5:
              tokenizer->escape_whitespaces_ = value != 0;
              break;
          }
        }
      } else if (spec_wire == 2) {
        if (!reader.Bytes(&text)) return malformed("truncated spec");
        if (field == 2 && spec_field == 44)
          tokenizer->unk_surface_ = std::string(text);
        if (field == 3 && spec_field == 1) normalizer_name = std::string(text);
        if (field == 3 && spec_field == 2) charmap = text;
      } else if (!reader.Skip(spec_wire)) {
        return malformed("truncated spec");
      }
    }
  }
  if (tokenizer->pieces_.empty()) return malformed("no pieces");
  if (model_type != 2) {
    return absl::UnimplementedError(absl::StrCat(
        source, ": model type ", model_type,
        " is not BPE (2); Lethe reads BPE models such as Llama-2's"));
  }
  if (!charmap.empty()) {
    return absl::UnimplementedError(absl::StrCat(
        source, ": normalizer '", normalizer_name,
        "' uses a character map; Lethe supports identity normalisation"));
  }
  const int size = tokenizer->vocab_size();
  // -1 means "none"; anything else must be a piece (an id past the end was
  // an embedding lookup out of range once it padded a batch: found by
  // fuzz/tokenizer_model_fuzzer).
  for (const auto& [name, id] :
       {std::pair<const char*, int>{"unk_id", tokenizer->special_.unk},
        {"bos_id", tokenizer->special_.bos},
        {"eos_id", tokenizer->special_.eos},
        {"pad_id", tokenizer->special_.pad}}) {
    if (id < -1 || id >= size) {
      return malformed(
          absl::StrCat(name, " ", id, " is not in [-1, ", size, ")"));
    }
  }
  if (tokenizer->special_.unk < 0) return malformed("no unknown-token id");
  std::fill(std::begin(tokenizer->byte_ids_), std::end(tokenizer->byte_ids_),
            -1);
  for (int id = 0; id < size; ++id) {
    const Piece& piece = tokenizer->pieces_[id];
    tokenizer->by_text_.emplace(piece.text, id);
    switch (piece.type) {
      case PieceType::kNormal:
      case PieceType::kUnused:
        tokenizer->mergeable_.emplace(piece.text, id);
        break;
      case PieceType::kUserDefined:
        tokenizer->mergeable_.emplace(piece.text, id);
        tokenizer->user_defined_.push_back(piece.text);
        break;
      case PieceType::kByte: {
        // Exactly "<0xHH>": sscanf's %X would take "<0x-7>" as a huge
        // index (found by fuzz/tokenizer_model_fuzzer).
        const std::string& text = piece.text;
        int byte = -1;
        if (text.size() == 6 && absl::StartsWith(text, "<0x") &&
            text[5] == '>' && absl::ascii_isxdigit(text[3]) &&
            absl::ascii_isxdigit(text[4])) {
          byte = std::stoi(text.substr(3, 2), nullptr, 16);
        }
        if (byte < 0 || byte > 255) {
          return malformed(absl::StrCat("byte piece ", id, " is \"",
                                        absl::CHexEscape(text),
                                        "\", not <0xHH>"));
        }
        tokenizer->byte_ids_[byte] = id;
        break;
      }
      default:
        break;
    }
  }
  if (tokenizer->byte_fallback_) {
    for (int byte = 0; byte < 256; ++byte) {
      if (tokenizer->byte_ids_[byte] < 0) {
        return malformed(absl::StrFormat(
            "byte fallback is on but piece <0x%02X> is missing", byte));
      }
    }
  }
  return tokenizer;
}

std::string SentencePieceTokenizer::Normalize(absl::string_view text) const {
  std::string normalized;
  if (text.empty()) return normalized;
  const std::string space = escape_whitespaces_ ? kSpaceSymbol : " ";
  if (remove_extra_whitespaces_) {
    // Drop leading and trailing spaces and collapse runs of them.
    const size_t first = text.find_first_not_of(' ');
    if (first == absl::string_view::npos) return normalized;
    text.remove_prefix(first);
    const size_t last = text.find_last_not_of(' ');
    text = text.substr(0, last + 1);
  }
  if (add_dummy_prefix_) normalized += space;
  bool previous_space = false;
  for (char c : text) {
    if (c == ' ') {
      if (!(remove_extra_whitespaces_ && previous_space)) normalized += space;
      previous_space = true;
    } else {
      normalized += c;
      previous_space = false;
    }
  }
  return normalized;
}

absl::StatusOr<std::vector<int>> SentencePieceTokenizer::DoEncode(
    absl::string_view text, const EncodeOptions& options) const {
  const std::string normalized = Normalize(text);

  // Symbols: user-defined pieces (longest match) or single UTF-8 characters,
  // linked in a list that merges shorten.
  struct Symbol {
    size_t begin, length;
    int previous, next;
    bool frozen;
  };
  std::vector<Symbol> symbols;
  for (size_t i = 0; i < normalized.size();) {
    size_t length = 0;
    bool frozen = false;
    for (const std::string& symbol : user_defined_) {
      if (symbol.size() > length &&
          normalized.compare(i, symbol.size(), symbol) == 0) {
        length = symbol.size();
        frozen = true;
      }
    }
    if (!frozen) {
      length = std::min(Utf8Length(static_cast<unsigned char>(normalized[i])),
                        normalized.size() - i);
    }
    const int index = static_cast<int>(symbols.size());
    symbols.push_back({i, length, index - 1, -1, frozen});
    if (index > 0) symbols[index - 1].next = index;
    i += length;
  }

  // Greedy BPE: repeatedly merge the adjacent pair forming the
  // highest-scoring piece, leftmost first among equal scores.
  struct Candidate {
    float score;
    int left, right;
    size_t length;
  };
  auto lower_priority = [](const Candidate& a, const Candidate& b) {
    return a.score < b.score || (a.score == b.score && a.left > b.left);
  };
  std::priority_queue<Candidate, std::vector<Candidate>,
                      decltype(lower_priority)>
      agenda(lower_priority);
  std::unordered_map<std::string, std::pair<std::string, std::string>> splits;
  auto consider = [&](int left, int right) {
    if (left < 0 || right < 0 || symbols[left].frozen ||
        symbols[right].frozen) {
      return;
    }
    const std::string merged = normalized.substr(
        symbols[left].begin, symbols[left].length + symbols[right].length);
    auto it = mergeable_.find(merged);
    if (it == mergeable_.end()) return;
    agenda.push({pieces_[it->second].score, left, right, merged.size()});
    if (pieces_[it->second].type == PieceType::kUnused) {
      splits[merged] = {
          normalized.substr(symbols[left].begin, symbols[left].length),
          normalized.substr(symbols[right].begin, symbols[right].length)};
    }
  };
  for (size_t i = 1; i < symbols.size(); ++i) consider(i - 1, i);
  while (!agenda.empty()) {
    const Candidate top = agenda.top();
    agenda.pop();
    Symbol& left = symbols[top.left];
    Symbol& right = symbols[top.right];
    if (left.length == 0 || right.length == 0 ||
        left.length + right.length != top.length || left.next != top.right) {
      continue;  // Stale: one side was merged away since.
    }
    left.length += right.length;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].previous = top.left;
    right.length = 0;
    consider(left.previous, top.left);
    consider(top.left, left.next);
  }

  std::vector<int> ids;
  if (options.add_bos && special_.add_bos && special_.bos >= 0) {
    ids.push_back(special_.bos);
  }
  bool previous_unknown = false;
  std::function<void(const std::string&)> emit = [&](const std::string& text) {
    auto it = by_text_.find(text);
    const bool known = it != by_text_.end() &&
                       pieces_[it->second].type != PieceType::kControl &&
                       pieces_[it->second].type != PieceType::kByte;
    if (known && pieces_[it->second].type == PieceType::kUnused) {
      auto split = splits.find(text);
      if (split != splits.end()) {
        emit(split->second.first);
        emit(split->second.second);
        return;
      }
    }
    if (known && pieces_[it->second].type != PieceType::kUnknown) {
      ids.push_back(it->second);
      previous_unknown = false;
      return;
    }
    if (byte_fallback_) {
      for (unsigned char byte : text) ids.push_back(byte_ids_[byte]);
      previous_unknown = false;
      return;
    }
    // Without byte fallback a run of unknown symbols becomes one unknown.
    if (!previous_unknown) ids.push_back(special_.unk);
    previous_unknown = true;
  };
  for (int index = symbols.empty() ? -1 : 0; index >= 0;
       index = symbols[index].next) {
    emit(normalized.substr(symbols[index].begin, symbols[index].length));
  }
  if (options.add_eos && special_.eos >= 0) ids.push_back(special_.eos);
  return ids;
}

absl::StatusOr<std::string> SentencePieceTokenizer::DoDecode(
    const std::vector<int>& ids, const DecodeOptions& options) const {
  std::string text;
  std::string pending_bytes;
  bool first_text = true;
  auto append_piece = [&](absl::string_view piece) {
    std::string decoded = absl::StrReplaceAll(piece, {{kSpaceSymbol, " "}});
    if (first_text && add_dummy_prefix_ && !decoded.empty() &&
        decoded[0] == ' ') {
      decoded.erase(0, 1);
    }
    first_text = false;
    text += decoded;
  };
  auto flush_bytes = [&] {
    if (pending_bytes.empty()) return;
    std::string decoded;
    AppendBytesAsUtf8(pending_bytes, &decoded);
    pending_bytes.clear();
    append_piece(decoded);
  };
  for (int id : ids) {
    if (id < 0 || id >= vocab_size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("token id ", id, " is outside the vocabulary [0, ",
                       vocab_size(), ")"));
    }
    const Piece& piece = pieces_[id];
    if (piece.type == PieceType::kByte) {
      unsigned int byte = 0;
      std::sscanf(piece.text.c_str(), "<0x%02X>", &byte);
      pending_bytes += static_cast<char>(byte);
      continue;
    }
    flush_bytes();
    if (piece.type == PieceType::kControl) {
      if (!options.skip_special_tokens) {
        text += piece.text;
        first_text = false;
      }
      continue;
    }
    if (piece.type == PieceType::kUnknown) {
      text += unk_surface_;
      first_text = false;
      continue;
    }
    append_piece(piece.text);
  }
  flush_bytes();
  return text;
}

const std::string& SentencePieceTokenizer::piece(int id) const {
  static const std::string* const kNone = new std::string();
  return id >= 0 && id < vocab_size() ? pieces_[id].text : *kNone;
}

absl::Status SentencePieceTokenizer::ApplyConfig(
    const tokenizer_internal::TokenizerConfig& config,
    const std::string& source) {
  auto lookup = [this](const std::string& text) {
    auto it = by_text_.find(text);
    return it == by_text_.end() ? -1 : it->second;
  };
  absl::StatusOr<tokenizer_internal::SpecialTokenIds> special =
      tokenizer_internal::ResolveSpecialTokens(config, special_, lookup,
                                               source);
  if (!special.ok()) return special.status();
  if (special->unk < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        source, ": unk_token null is not supported for tokenizer.model"));
  }
  special_ = *special;
  return absl::OkStatus();
}

}  // namespace lethe
