// Reading a YAML document as JSON, through libyaml.
//
//   ASSIGN_OR_RETURN(nlohmann::json value, YamlToJson(text, "spec.yaml"));
//
// The text holds at most one YAML document (an empty text is null).
// Mappings become objects, sequences arrays. Plain scalars resolve as in
// YAML 1.2's core schema: null, Null, NULL, ~ and the empty scalar are null;
// true/True/TRUE and false/False/FALSE are booleans; [-+]?[0-9]+, 0o[0-7]+
// and 0x[0-9a-fA-F]+ are integers; decimals with an optional exponent and
// [-+]?.inf/.Inf/.INF and .nan/.NaN/.NAN are floats (kept as IEEE
// infinities and NaN); anything else is a string. Quoted and block scalars
// are strings unless a tag says otherwise (!!int '12' is 12).
//
// Anchors and aliases work: an alias stands for a copy of the node anchored
// last before it. Copies count against kMaxYamlAliasExpansion (nodes plus
// string bytes, over the whole document), so a small file cannot expand into
// a huge value. Mapping keys are scalars and become the object's keys as
// written (`1: x` is {"1": "x"}).
//
// INVALID_ARGUMENT, as "SOURCE:LINE:COLUMN: problem" (1-based), for what
// libyaml rejects (its problem text and context), and for: duplicate keys,
// more than one document, tags other than the standard !!null, !!bool,
// !!int, !!float, !!str, !!seq, !!map (and the non-specific "!"), a scalar
// that does not fit its tag, integers beyond 64 bits, keys that are not
// scalars, YAML 1.1 merge keys (<<), aliases to anchors not defined before
// them (recursive aliases included), nesting deeper than kMaxYamlDepth,
// and aliases expanding past kMaxYamlAliasExpansion. RESOURCE_EXHAUSTED
// when libyaml runs out of memory.
#ifndef LETHE_LIBS_YAML_YAML_JSON_H_
#define LETHE_LIBS_YAML_YAML_JSON_H_

#include <cstddef>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"

namespace lethe {

inline constexpr int kMaxYamlDepth = 256;
inline constexpr size_t kMaxYamlAliasExpansion = size_t{1} << 20;

// `source_name` (a file name) only labels error messages.
absl::StatusOr<nlohmann::json> YamlToJson(absl::string_view text,
                                          absl::string_view source_name);

}  // namespace lethe

#endif  // LETHE_LIBS_YAML_YAML_JSON_H_
