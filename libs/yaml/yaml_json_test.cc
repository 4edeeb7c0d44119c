#include "libs/yaml/yaml_json.h"

#include <cmath>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace lethe {
namespace {

struct Case {
  const char* yaml;
  // The expected value as JSON text. Compared through dump(), so integers
  // and floats differ (1 is not 1.0).
  const char* json;
};

std::string Dump(const absl::StatusOr<nlohmann::json>& value) {
  if (!value.ok()) return absl::StrCat("error: ", value.status().ToString());
  return value->dump();
}

TEST(YamlToJsonTest, ConvertsLikeTheCoreSchema) {
  const Case cases[] = {
      // Structure.
      {"a: 1\nb: two\n", R"({"a":1,"b":"two"})"},
      {"- 1\n- [2, 3]\n- {x: y}\n", R"([1,[2,3],{"x":"y"}])"},
      {"outer:\n  inner:\n    - a\n    - b: c\n",
       R"({"outer":{"inner":["a",{"b":"c"}]}})"},
      {"{a: [1, {b: null}], c: []}", R"({"a":[1,{"b":null}],"c":[]})"},
      {"# comment\na: 1  # trailing\n", R"({"a":1})"},
      {"---\na: 1\n...\n", R"({"a":1})"},
      {"", "null"},
      {"# only a comment\n", "null"},
      {"---\n", "null"},
      {"plain text", R"("plain text")"},
      // Null.
      {"[~, null, Null, NULL, nULL, nul]",
       R"([null,null,null,null,"nULL","nul"])"},
      {"a:\nb: ~\n", R"({"a":null,"b":null})"},
      // Booleans: YAML 1.1's yes/no/on/off are strings.
      {"[true, True, TRUE, false, False, FALSE, tRUE]",
       R"([true,true,true,false,false,false,"tRUE"])"},
      {"[yes, no, on, off, y, n]", R"(["yes","no","on","off","y","n"])"},
      // Integers.
      {"[0, -17, +5, 0123, 0o17, 0x1F, 0xff]", "[0,-17,5,123,15,31,255]"},
      {"[9223372036854775807, -9223372036854775808, 18446744073709551615]",
       "[9223372036854775807,-9223372036854775808,18446744073709551615]"},
      {"[0b101, 1_000, -0x1, 0o8, 0x, 12a]",
       R"(["0b101","1_000","-0x1","0o8","0x","12a"])"},
      // Floats.
      {"[1.5, -0.25, .5, 5., 1e3, 1E-3, +1.0e+2, 2.5e-1]",
       "[1.5,-0.25,0.5,5.0,1000.0,0.001,100.0,0.25]"},
      {"[1.2.3, e5, ., 1e, inf, nan, 1e+, .e1]",
       R"(["1.2.3","e5",".","1e","inf","nan","1e+",".e1"])"},
      // Quoted and block scalars are strings.
      {R"(["1", '2', "true", 'null', '', "0x1F"])",
       R"(["1","2","true","null","","0x1F"])"},
      {"a: |\n  12\n  13\nb: >-\n  x\n  y\n", R"({"a":"12\n13\n","b":"x y"})"},
      {"a: \"caf\\u00e9\"\nb: café\n", R"({"a":"café","b":"café"})"},
      {"\"a: b\": 'it''s'", R"({"a: b":"it's"})"},
      // Keys are the scalar's text.
      {"1: a\ntrue: b\n~: c\n'q': d\n",
       R"({"1":"a","true":"b","q":"d","~":"c"})"},
      // Standard tags.
      {"[!!str 12, !!str true, !!int '12', !!int 0x10, !!float 1, "
       "!!float '2.5', !!bool 'false', !!null '', ! 12, !!str ~]",
       R"(["12","true",12,16,1.0,2.5,false,null,"12","~"])"},
      {"a: !!seq [1]\nb: !!map {c: 1}\nc: ! {d: 2}\n",
       R"({"a":[1],"b":{"c":1},"c":{"d":2}})"},
      {"%TAG !e! tag:yaml.org,2002:\n---\n!e!int '7'\n", "7"},
      // Anchors and aliases.
      {"base: &b {lr: 0.1, seed: 3}\nrun: *b\n",
       R"({"base":{"lr":0.1,"seed":3},"run":{"lr":0.1,"seed":3}})"},
      {"- &s hello\n- *s\n- &s bye\n- *s\n",
       R"(["hello","hello","bye","bye"])"},
      {"- {&k name: 1}\n- {*k : 2}\n", R"([{"name":1},{"name":2}])"},
      {"- &n 5\n- *n\n", "[5,5]"},
  };
  for (const Case& c : cases) {
    const absl::StatusOr<nlohmann::json> value = YamlToJson(c.yaml, "t.yaml");
    EXPECT_EQ(Dump(value), nlohmann::json::parse(c.json).dump()) << "YAML:\n"
                                                                 << c.yaml;
  }
}

TEST(YamlToJsonTest, KeepsInfinitiesAndNan) {
  const absl::StatusOr<nlohmann::json> value =
      YamlToJson("[.inf, -.Inf, +.INF, .nan, .NaN, .NAN, 1e999]", "t.yaml");
  ASSERT_TRUE(value.ok()) << value.status();
  ASSERT_EQ(value->size(), 7);
  const double inf = std::numeric_limits<double>::infinity();
  EXPECT_EQ((*value)[0].get<double>(), inf);
  EXPECT_EQ((*value)[1].get<double>(), -inf);
  EXPECT_EQ((*value)[2].get<double>(), inf);
  for (int i = 3; i < 6; ++i) {
    ASSERT_TRUE((*value)[i].is_number_float()) << i;
    EXPECT_TRUE(std::isnan((*value)[i].get<double>())) << i;
  }
  EXPECT_EQ((*value)[6].get<double>(), inf);
}

TEST(YamlToJsonTest, ErrorsNameSourceLineAndColumn) {
  const std::string deep =
      std::string(kMaxYamlDepth + 1, '[') + std::string(kMaxYamlDepth + 1, ']');
  std::string laughs = "a: &a [x, x, x, x, x, x, x, x, x, x]\n";
  for (char level = 'b'; level <= 'g'; ++level) {
    const char previous = level - 1;
    absl::StrAppend(&laughs, std::string(1, level), ": &",
                    std::string(1, level), " [");
    for (int i = 0; i < 10; ++i) {
      absl::StrAppend(&laughs, i > 0 ? ", *" : "*", std::string(1, previous));
    }
    absl::StrAppend(&laughs, "]\n");
  }
  const struct {
    std::string yaml;
    std::string message;
  } cases[] = {
      // Lethe's checks.
      {"a: 1\nb: 2\na: 3\n",
       "t.yaml:3:1: duplicate key \"a\" (first at line 1)"},
      {"x:\n  - {k: 1, k: 2}\n",
       "t.yaml:2:12: duplicate key \"k\" (first at line 2)"},
      {"a: 1\n---\nb: 2\n",
       "t.yaml:2:1: a second document; only one document is supported"},
      {"a: !!binary aGVsbG8=\n",
       "t.yaml:1:4: unsupported tag !!binary (only !!null, !!bool, !!int, "
       "!!float, !!str, !!seq and !!map)"},
      {"a:\n  b: !custom x\n",
       "t.yaml:2:6: unsupported tag !custom (only !!null, !!bool, !!int, "
       "!!float, !!str, !!seq and !!map)"},
      {"a: !!int abc\n", "t.yaml:1:4: \"abc\" is not a valid !!int"},
      {"a: !!bool yes\n", "t.yaml:1:4: \"yes\" is not a valid !!bool"},
      {"a: !!null x\n", "t.yaml:1:4: \"x\" is not a valid !!null"},
      {"a: !!float x\n", "t.yaml:1:4: \"x\" is not a valid !!float"},
      {"a: !!seq {b: 1}\n",
       "t.yaml:1:4: unsupported tag !!seq on a mapping (only !!map)"},
      {"a: !!map [1]\n",
       "t.yaml:1:4: unsupported tag !!map on a sequence (only !!seq)"},
      {"a: !!seq x\n",
       "t.yaml:1:4: unsupported tag !!seq (only !!null, !!bool, !!int, "
       "!!float, !!str, !!seq and !!map)"},
      {"n: 18446744073709551616\n",
       "t.yaml:1:4: integer 18446744073709551616 does not fit in 64 bits"},
      {"n: -9223372036854775809\n",
       "t.yaml:1:4: integer -9223372036854775809 does not fit in 64 bits"},
      {"? [1]\n: x\n", "t.yaml:1:3: mapping keys must be scalars"},
      {"{a: 1}: x\n", "t.yaml:1:1: mapping keys must be scalars"},
      {"- &l [1]\n- {*l : x}\n",
       "t.yaml:2:4: an alias used as a mapping key must name a scalar"},
      {"a: 1\nb: *nope\n",
       "t.yaml:2:4: alias *nope names no anchor defined before it (recursive "
       "aliases are not supported)"},
      {"a: &x [1, *x]\n",
       "t.yaml:1:11: alias *x names no anchor defined before it (recursive "
       "aliases are not supported)"},
      {"base: &b {x: 1}\nrun:\n  <<: *b\n",
       "t.yaml:3:3: merge keys (<<) are not supported; write the fields out"},
      {deep, absl::StrCat("t.yaml:1:", kMaxYamlDepth + 1,
                          ": nesting deeper than ", kMaxYamlDepth, " levels")},
      {laughs,
       "t.yaml:6:20: aliases expand to more than 1048576 nodes and "
       "string bytes"},
      // libyaml's own problems, with its context.
      {"a: b: c\n",
       "t.yaml:1:5: mapping values are not allowed in this context"},
      {"a: [1, 2\n",
       "t.yaml:2:1: did not find expected ',' or ']' (while parsing a flow "
       "sequence at line 1, column 4)"},
      {"a: 1\n b: 2\n",
       "t.yaml:2:3: mapping values are not allowed in this context"},
      {"key: 'unterminated\n",
       "t.yaml:2:1: found unexpected end of stream (while scanning a quoted "
       "scalar at line 1, column 6)"},
      {"a:\n\tb: 1\n",
       "t.yaml:2:1: found character that cannot start any token (while "
       "scanning for the next token at line 2, column 1)"},
      {"a: *\n",
       "t.yaml:1:5: did not find expected alphabetic or numeric character "
       "(while scanning an alias at line 1, column 4)"},
      {"a: 1\nb: \xff\n",
       "t.yaml:2:4: invalid leading UTF-8 octet (byte 0xff)"},
  };
  for (const auto& c : cases) {
    const absl::StatusOr<nlohmann::json> value = YamlToJson(c.yaml, "t.yaml");
    EXPECT_EQ(value.status().code(), absl::StatusCode::kInvalidArgument)
        << c.yaml;
    EXPECT_EQ(std::string(value.status().message()), c.message) << "YAML:\n"
                                                                << c.yaml;
  }
}

TEST(YamlToJsonTest, AliasesWithinTheLimitExpand) {
  // 10^4 copies of a 2-node list: well inside kMaxYamlAliasExpansion.
  std::string yaml = "a: &a [x]\n";
  for (char level = 'b'; level <= 'e'; ++level) {
    absl::StrAppend(&yaml, std::string(1, level), ": &", std::string(1, level),
                    " [");
    for (int i = 0; i < 10; ++i) {
      absl::StrAppend(&yaml, i > 0 ? ", *" : "*", std::string(1, level - 1));
    }
    absl::StrAppend(&yaml, "]\n");
  }
  const absl::StatusOr<nlohmann::json> value = YamlToJson(yaml, "t.yaml");
  ASSERT_TRUE(value.ok()) << value.status();
  EXPECT_EQ((*value)["e"][9][9][9][9][0], "x");
}

}  // namespace
}  // namespace lethe
