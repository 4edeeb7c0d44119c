#include "libs/yaml/yaml_json.h"

#include <yaml.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "libs/status/status_macros.h"

namespace lethe {
namespace {

constexpr absl::string_view kStandardTagPrefix = "tag:yaml.org,2002:";

// "tag:yaml.org,2002:int" -> "!!int"; other tags as written.
std::string ShortTag(absl::string_view tag) {
  if (absl::StartsWith(tag, kStandardTagPrefix)) {
    return absl::StrCat("!!", tag.substr(kStandardTagPrefix.size()));
  }
  return std::string(tag);
}

std::string Text(const yaml_char_t* text, size_t length) {
  return std::string(reinterpret_cast<const char*>(text), length);
}

std::optional<std::string> OptionalText(const yaml_char_t* text) {
  if (text == nullptr) return std::nullopt;
  return std::string(reinterpret_cast<const char*>(text));
}

// --- YAML 1.2 core schema --------------------------------------------------

bool IsCoreNull(absl::string_view s) {
  return s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL";
}

std::optional<bool> CoreBool(absl::string_view s) {
  if (s == "true" || s == "True" || s == "TRUE") return true;
  if (s == "false" || s == "False" || s == "FALSE") return false;
  return std::nullopt;
}

bool AllDigits(absl::string_view s, int base) {
  if (s.empty()) return false;
  for (const char c : s) {
    const bool ok = base == 16  ? absl::ascii_isxdigit(c)
                    : base == 8 ? c >= '0' && c <= '7'
                                : absl::ascii_isdigit(c);
    if (!ok) return false;
  }
  return true;
}

// Digits already checked by AllDigits; false on overflow.
bool ParseUnsigned(absl::string_view digits, int base, uint64_t* value) {
  uint64_t result = 0;
  for (const char c : digits) {
    const uint64_t digit =
        absl::ascii_isdigit(c) ? c - '0' : absl::ascii_tolower(c) - 'a' + 10;
    if (result > (std::numeric_limits<uint64_t>::max() - digit) / base) {
      return false;
    }
    result = result * base + digit;
  }
  *value = result;
  return true;
}

enum class IntForm { kNotInt, kInt, kOutOfRange };

// [-+]?[0-9]+ | 0o[0-7]+ | 0x[0-9a-fA-F]+, as int64 when it fits, else
// uint64 (non-negative values only).
IntForm CoreInt(absl::string_view s, nlohmann::json* value) {
  int base = 10;
  bool negative = false;
  absl::string_view digits = s;
  if (absl::StartsWith(s, "0o")) {
    base = 8;
    digits.remove_prefix(2);
  } else if (absl::StartsWith(s, "0x")) {
    base = 16;
    digits.remove_prefix(2);
  } else if (!s.empty() && (s[0] == '-' || s[0] == '+')) {
    negative = s[0] == '-';
    digits.remove_prefix(1);
  }
  if (!AllDigits(digits, base)) return IntForm::kNotInt;
  uint64_t magnitude = 0;
  if (!ParseUnsigned(digits, base, &magnitude)) return IntForm::kOutOfRange;
  constexpr uint64_t kMaxInt64 = std::numeric_limits<int64_t>::max();
  if (negative) {
    if (magnitude > kMaxInt64 + 1) return IntForm::kOutOfRange;
    *value = magnitude == kMaxInt64 + 1 ? std::numeric_limits<int64_t>::min()
                                        : -static_cast<int64_t>(magnitude);
  } else if (magnitude <= kMaxInt64) {
    *value = static_cast<int64_t>(magnitude);
  } else {
    *value = magnitude;
  }
  return IntForm::kInt;
}

// [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?
bool IsCoreDecimalFloat(absl::string_view s) {
  size_t i = 0;
  auto digits = [&] {
    const size_t start = i;
    while (i < s.size() && absl::ascii_isdigit(s[i])) ++i;
    return i - start;
  };
  if (i < s.size() && (s[i] == '-' || s[i] == '+')) ++i;
  const size_t integer_digits = digits();
  size_t fraction_digits = 0;
  if (i < s.size() && s[i] == '.') {
    ++i;
    fraction_digits = digits();
  }
  if (integer_digits == 0 && fraction_digits == 0) return false;
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < s.size() && (s[i] == '-' || s[i] == '+')) ++i;
    if (digits() == 0) return false;
  }
  return i == s.size();
}

std::optional<double> CoreFloat(absl::string_view s) {
  absl::string_view unsigned_part = s;
  double sign = 1;
  if (!s.empty() && (s[0] == '-' || s[0] == '+')) {
    sign = s[0] == '-' ? -1 : 1;
    unsigned_part.remove_prefix(1);
  }
  if (unsigned_part == ".inf" || unsigned_part == ".Inf" ||
      unsigned_part == ".INF") {
    return sign * std::numeric_limits<double>::infinity();
  }
  if (s == ".nan" || s == ".NaN" || s == ".NAN") {
    return std::numeric_limits<double>::quiet_NaN();
  }
  double value = 0;
  if (IsCoreDecimalFloat(s) && absl::SimpleAtod(s, &value)) return value;
  return std::nullopt;
}

// Nodes plus string bytes: what copying `value` costs.
size_t Weight(const nlohmann::json& value) {
  if (value.is_string()) return 1 + value.get_ref<const std::string&>().size();
  size_t weight = 1;
  if (value.is_object()) {
    for (const auto& [key, child] : value.items()) {
      weight += key.size() + Weight(child);
    }
  } else if (value.is_array()) {
    for (const nlohmann::json& child : value) weight += Weight(child);
  }
  return weight;
}

// --- The converter ---------------------------------------------------------

// One libyaml event, deleted when it goes out of scope.
class Event {
 public:
  Event() = default;
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  ~Event() {
    if (parsed_) yaml_event_delete(&event_);
  }

  const yaml_event_t& operator*() const { return event_; }
  const yaml_event_t* operator->() const { return &event_; }

 private:
  friend class Converter;
  yaml_event_t event_{};
  bool parsed_ = false;
};

// A node copied by aliases; `scalar_text` is set for scalars, which may
// also be used as mapping keys.
struct Anchored {
  nlohmann::json value;
  size_t weight;
  std::optional<std::string> scalar_text;
};

class Converter {
 public:
  Converter(absl::string_view text, absl::string_view source_name)
      : text_(text), source_name_(source_name) {
    initialized_ = yaml_parser_initialize(&parser_) != 0;
    if (initialized_) {
      yaml_parser_set_input_string(
          &parser_, reinterpret_cast<const unsigned char*>(text_.data()),
          text_.size());
      yaml_parser_set_encoding(&parser_, YAML_UTF8_ENCODING);
    }
  }
  Converter(const Converter&) = delete;
  Converter& operator=(const Converter&) = delete;
  ~Converter() {
    if (initialized_) yaml_parser_delete(&parser_);
  }

  absl::StatusOr<nlohmann::json> Convert() {
    if (!initialized_) {
      return absl::ResourceExhaustedError(
          absl::StrCat(source_name_, ": cannot initialise libyaml"));
    }
    Event stream_start;
    RETURN_IF_ERROR(Next(stream_start));
    Event document_start;
    RETURN_IF_ERROR(Next(document_start));
    if (document_start->type == YAML_STREAM_END_EVENT) return nullptr;
    Event root_start;
    RETURN_IF_ERROR(Next(root_start));
    ASSIGN_OR_RETURN(nlohmann::json root, Node(root_start, 1));
    Event document_end;
    RETURN_IF_ERROR(Next(document_end));
    Event after;
    RETURN_IF_ERROR(Next(after));
    if (after->type != YAML_STREAM_END_EVENT) {
      return ErrorAt(after->start_mark,
                     "a second document; only one document is supported");
    }
    return root;
  }

 private:
  absl::Status Next(Event& event) {
    if (yaml_parser_parse(&parser_, &event.event_) == 0) return ParserError();
    event.parsed_ = true;
    return absl::OkStatus();
  }

  absl::Status ErrorAt(const yaml_mark_t& mark,
                       absl::string_view problem) const {
    return absl::InvalidArgumentError(absl::StrCat(
        source_name_, ":", mark.line + 1, ":", mark.column + 1, ": ", problem));
  }

  absl::Status ParserError() const {
    if (parser_.error == YAML_MEMORY_ERROR) {
      return absl::ResourceExhaustedError(
          absl::StrCat(source_name_, ": libyaml ran out of memory"));
    }
    const char* problem =
        parser_.problem != nullptr ? parser_.problem : "malformed YAML";
    if (parser_.error == YAML_READER_ERROR) {
      // Reader errors carry a byte offset instead of a mark.
      yaml_mark_t mark{};
      const size_t offset = std::min(parser_.problem_offset, text_.size());
      for (size_t i = 0; i < offset; ++i) {
        if (text_[i] == '\n') {
          ++mark.line;
          mark.column = 0;
        } else {
          ++mark.column;
        }
      }
      std::string message = problem;
      if (parser_.problem_value != -1) {
        absl::StrAppend(&message, " (byte 0x",
                        absl::Hex(parser_.problem_value, absl::kZeroPad2), ")");
      }
      return ErrorAt(mark, message);
    }
    std::string message = problem;
    if (parser_.context != nullptr) {
      absl::StrAppend(&message, " (", parser_.context, " at line ",
                      parser_.context_mark.line + 1, ", column ",
                      parser_.context_mark.column + 1, ")");
    }
    return ErrorAt(parser_.problem_mark, message);
  }

  // Converts the node that `first` starts, reading up to its end.
  absl::StatusOr<nlohmann::json> Node(const Event& first, int depth) {
    if (depth > kMaxYamlDepth) {
      return ErrorAt(first->start_mark, absl::StrCat("nesting deeper than ",
                                                     kMaxYamlDepth, " levels"));
    }
    switch (first->type) {
      case YAML_ALIAS_EVENT: {
        ASSIGN_OR_RETURN(const Anchored* anchored, Alias(first));
        return anchored->value;
      }
      case YAML_SCALAR_EVENT: {
        ASSIGN_OR_RETURN(nlohmann::json value, Scalar(first));
        Remember(first->data.scalar.anchor, value,
                 Text(first->data.scalar.value, first->data.scalar.length));
        return value;
      }
      case YAML_SEQUENCE_START_EVENT: {
        RETURN_IF_ERROR(CheckCollectionTag(
            first, first->data.sequence_start.tag, YAML_SEQ_TAG));
        nlohmann::json array = nlohmann::json::array();
        while (true) {
          Event item;
          RETURN_IF_ERROR(Next(item));
          if (item->type == YAML_SEQUENCE_END_EVENT) break;
          ASSIGN_OR_RETURN(nlohmann::json value, Node(item, depth + 1));
          array.push_back(std::move(value));
        }
        Remember(first->data.sequence_start.anchor, array, std::nullopt);
        return array;
      }
      case YAML_MAPPING_START_EVENT: {
        RETURN_IF_ERROR(CheckCollectionTag(first, first->data.mapping_start.tag,
                                           YAML_MAP_TAG));
        ASSIGN_OR_RETURN(nlohmann::json object, Mapping(depth));
        Remember(first->data.mapping_start.anchor, object, std::nullopt);
        return object;
      }
      default:
        return ErrorAt(first->start_mark, "unexpected YAML event");
    }
  }

  absl::StatusOr<nlohmann::json> Mapping(int depth) {
    nlohmann::json object = nlohmann::json::object();
    std::map<std::string, size_t, std::less<>> key_lines;
    while (true) {
      Event key_event;
      RETURN_IF_ERROR(Next(key_event));
      if (key_event->type == YAML_MAPPING_END_EVENT) break;
      ASSIGN_OR_RETURN(std::string key, Key(key_event));
      const size_t line = key_event->start_mark.line + 1;
      if (const auto [it, inserted] = key_lines.emplace(key, line); !inserted) {
        return ErrorAt(key_event->start_mark,
                       absl::StrCat("duplicate key \"", key,
                                    "\" (first at line ", it->second, ")"));
      }
      Event value_event;
      RETURN_IF_ERROR(Next(value_event));
      ASSIGN_OR_RETURN(object[key], Node(value_event, depth + 1));
    }
    return object;
  }

  // A mapping key: a scalar's text, or an alias of a scalar.
  absl::StatusOr<std::string> Key(const Event& event) {
    if (event->type == YAML_ALIAS_EVENT) {
      ASSIGN_OR_RETURN(const Anchored* anchored, Alias(event));
      if (!anchored->scalar_text.has_value()) {
        return ErrorAt(event->start_mark,
                       "an alias used as a mapping key must name a scalar");
      }
      return *anchored->scalar_text;
    }
    if (event->type != YAML_SCALAR_EVENT) {
      return ErrorAt(event->start_mark, "mapping keys must be scalars");
    }
    const auto& scalar = event->data.scalar;
    std::string key = Text(scalar.value, scalar.length);
    if (key == "<<" && scalar.style == YAML_PLAIN_SCALAR_STYLE &&
        scalar.tag == nullptr) {
      return ErrorAt(event->start_mark,
                     "merge keys (<<) are not supported; write the fields out");
    }
    ASSIGN_OR_RETURN(nlohmann::json value, Scalar(event));
    Remember(scalar.anchor, value, key);
    return key;
  }

  absl::StatusOr<const Anchored*> Alias(const Event& event) {
    const std::string name = OptionalText(event->data.alias.anchor).value();
    const auto it = anchors_.find(name);
    if (it == anchors_.end()) {
      return ErrorAt(event->start_mark,
                     absl::StrCat("alias *", name,
                                  " names no anchor defined before it "
                                  "(recursive aliases are not supported)"));
    }
    alias_expansion_ += it->second.weight;
    if (alias_expansion_ > kMaxYamlAliasExpansion) {
      return ErrorAt(
          event->start_mark,
          absl::StrCat("aliases expand to more than ", kMaxYamlAliasExpansion,
                       " nodes and string bytes"));
    }
    return &it->second;
  }

  void Remember(const yaml_char_t* anchor, const nlohmann::json& value,
                std::optional<std::string> scalar_text) {
    if (anchor == nullptr) return;
    anchors_[*OptionalText(anchor)] =
        Anchored{value, Weight(value), std::move(scalar_text)};
  }

  absl::Status CheckCollectionTag(const Event& event, const yaml_char_t* tag,
                                  absl::string_view expected) {
    const std::optional<std::string> name = OptionalText(tag);
    if (!name.has_value() || *name == "!" || *name == expected) {
      return absl::OkStatus();
    }
    return ErrorAt(
        event->start_mark,
        absl::StrCat(
            "unsupported tag ", ShortTag(*name), " on a ",
            event->type == YAML_SEQUENCE_START_EVENT ? "sequence" : "mapping",
            " (only ", ShortTag(expected), ")"));
  }

  absl::StatusOr<nlohmann::json> Scalar(const Event& event) {
    const auto& scalar = event->data.scalar;
    const std::string text = Text(scalar.value, scalar.length);
    const std::optional<std::string> tag = OptionalText(scalar.tag);
    if (!tag.has_value()) {
      if (scalar.style == YAML_PLAIN_SCALAR_STYLE) {
        return Resolve(event, text, std::nullopt);
      }
      return text;
    }
    if (*tag == "!" || *tag == YAML_STR_TAG) return text;
    if (*tag == YAML_NULL_TAG || *tag == YAML_BOOL_TAG ||
        *tag == YAML_INT_TAG || *tag == YAML_FLOAT_TAG) {
      return Resolve(event, text, *tag);
    }
    return ErrorAt(event->start_mark,
                   absl::StrCat("unsupported tag ", ShortTag(*tag),
                                " (only !!null, !!bool, !!int, !!float, !!str, "
                                "!!seq and !!map)"));
  }

  // Resolves `text` by the core schema; with `tag`, it must be of that type.
  absl::StatusOr<nlohmann::json> Resolve(const Event& event,
                                         const std::string& text,
                                         std::optional<absl::string_view> tag) {
    auto wants = [&](absl::string_view type) {
      return !tag.has_value() || *tag == type;
    };
    if (wants(YAML_NULL_TAG) && IsCoreNull(text)) return nullptr;
    if (wants(YAML_BOOL_TAG)) {
      if (const std::optional<bool> value = CoreBool(text)) return *value;
    }
    if (wants(YAML_INT_TAG) || wants(YAML_FLOAT_TAG)) {
      nlohmann::json value;
      switch (CoreInt(text, &value)) {
        case IntForm::kInt:
          if (wants(YAML_INT_TAG)) return value;
          return value.get<double>();
        case IntForm::kOutOfRange:
          if (wants(YAML_INT_TAG)) {
            return ErrorAt(
                event->start_mark,
                absl::StrCat("integer ", text, " does not fit in 64 bits"));
          }
          break;
        case IntForm::kNotInt:
          break;
      }
    }
    if (wants(YAML_FLOAT_TAG)) {
      if (const std::optional<double> value = CoreFloat(text)) return *value;
    }
    if (!tag.has_value()) return text;
    return ErrorAt(
        event->start_mark,
        absl::StrCat("\"", text, "\" is not a valid ", ShortTag(*tag)));
  }

  absl::string_view text_;
  std::string source_name_;
  yaml_parser_t parser_{};
  bool initialized_ = false;
  std::map<std::string, Anchored, std::less<>> anchors_;
  size_t alias_expansion_ = 0;
};

}  // namespace

absl::StatusOr<nlohmann::json> YamlToJson(absl::string_view text,
                                          absl::string_view source_name) {
  return Converter(text, source_name).Convert();
}

}  // namespace lethe
