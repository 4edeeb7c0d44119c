#include "libs/model/llama_config.h"

#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace lethe {
namespace {

// The config.json of a Llama-2-7b-style checkpoint.
constexpr char kLlama2Config[] = R"({
  "architectures": ["LlamaForCausalLM"],
  "bos_token_id": 1,
  "eos_token_id": 2,
  "hidden_act": "silu",
  "hidden_size": 4096,
  "initializer_range": 0.02,
  "intermediate_size": 11008,
  "max_position_embeddings": 4096,
  "model_type": "llama",
  "num_attention_heads": 32,
  "num_hidden_layers": 32,
  "num_key_value_heads": 32,
  "pretraining_tp": 1,
  "rms_norm_eps": 1e-05,
  "rope_scaling": null,
  "tie_word_embeddings": false,
  "torch_dtype": "float16",
  "transformers_version": "4.32.0.dev0",
  "use_cache": true,
  "vocab_size": 32000
})";

TEST(LlamaConfigTest, ParsesALlama2Config) {
  absl::StatusOr<LlamaConfig> config =
      ParseLlamaConfig(kLlama2Config, "config.json");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->hidden_size, 4096);
  EXPECT_EQ(config->max_position_embeddings, 4096);
  EXPECT_EQ(config->num_key_value_heads, 32);
  EXPECT_EQ(config->head_dim(), 128);
  EXPECT_DOUBLE_EQ(config->rms_norm_eps, 1e-5);
  EXPECT_EQ(config->torch_dtype, "float16");
  EXPECT_EQ(config->eos_token_ids, std::vector<int64_t>{2});
  EXPECT_FALSE(config->pad_token_id.has_value());
}

TEST(LlamaConfigTest, MissingKeyValueHeadsDefaultsToAttentionHeads) {
  absl::StatusOr<LlamaConfig> config = ParseLlamaConfig(
      R"({"hidden_size": 64, "num_attention_heads": 8})", "c.json");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->num_key_value_heads, 8);
  EXPECT_EQ(config->vocab_size, 32000);  // Hugging Face's default.
}

TEST(LlamaConfigTest, AcceptsAListOfEosIds) {
  absl::StatusOr<LlamaConfig> config =
      ParseLlamaConfig(R"({"eos_token_id": [2, 7]})", "c.json");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->eos_token_ids, (std::vector<int64_t>{2, 7}));
}

// transformers 5 moved rope_theta into rope_parameters and renamed
// torch_dtype to dtype.
TEST(LlamaConfigTest, ReadsTransformers5Keys) {
  absl::StatusOr<LlamaConfig> config = ParseLlamaConfig(
      R"({"rope_parameters": {"rope_theta": 500.0, "rope_type": "default"},
          "dtype": "bfloat16"})",
      "c.json");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->rope_theta, 500.0);
  EXPECT_EQ(config->torch_dtype, "bfloat16");
}

TEST(LlamaConfigTest, JsonRoundTripPreservesEveryField) {
  LlamaConfig config;
  config.vocab_size = 512;
  config.hidden_size = 96;
  config.intermediate_size = 256;
  config.num_hidden_layers = 3;
  config.num_attention_heads = 6;
  config.num_key_value_heads = 2;
  config.max_position_embeddings = 256;
  config.rms_norm_eps = 1e-5;
  config.rope_theta = 500000;
  config.tie_word_embeddings = true;
  config.eos_token_ids = {2};
  config.pad_token_id = 3;
  config.torch_dtype = "bfloat16";
  absl::StatusOr<LlamaConfig> parsed =
      ParseLlamaConfig(LlamaConfigToJson(config), "round trip");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(LlamaConfigToJson(*parsed), LlamaConfigToJson(config));
  EXPECT_EQ(parsed->num_key_value_heads, 2);
  EXPECT_EQ(parsed->pad_token_id, 3);
  EXPECT_DOUBLE_EQ(parsed->rope_theta, 500000);
}

// Found by fuzz/llama_config_fuzzer (written config.json read back
// differently): a Gemma config with "head_dim": null uses hidden_size /
// num_attention_heads, but the written config.json left head_dim out, which
// reads back as Gemma's default of 256.
TEST(LlamaConfigTest, GemmaWithoutHeadDimRoundTrips) {
  for (const std::string type : {"gemma", "gemma2"}) {
    const absl::StatusOr<LlamaConfig> config = ParseLlamaConfig(
        absl::StrCat(R"({"model_type": ")", type,
                     R"(", "hidden_size": 64, "num_attention_heads": 8,
                     "num_key_value_heads": 2, "head_dim": null})"),
        "c.json");
    ASSERT_TRUE(config.ok()) << config.status();
    EXPECT_EQ(config->head_dim(), 8);
    const std::string written = LlamaConfigToJson(*config);
    const absl::StatusOr<LlamaConfig> again =
        ParseLlamaConfig(written, "written.json");
    ASSERT_TRUE(again.ok()) << again.status();
    EXPECT_EQ(again->head_dim(), 8) << written;
    EXPECT_EQ(LlamaConfigToJson(*again), written);
  }
}

struct BadConfig {
  std::string json;
  absl::StatusCode code;
  std::string fragment;
};

TEST(LlamaConfigTest, RejectsWhatItCannotRunNamingTheField) {
  const std::vector<BadConfig> cases = {
      {"[1]", absl::StatusCode::kInvalidArgument, "not a JSON object"},
      {R"({"model_type": "gpt2"})", absl::StatusCode::kUnimplemented,
       "model_type"},
      {R"({"hidden_act": "relu"})", absl::StatusCode::kUnimplemented,
       "hidden_act"},
      {R"({"model_type": "gemma", "use_bidirectional_attention": true})",
       absl::StatusCode::kUnimplemented, "use_bidirectional_attention"},
      {R"({"rope_scaling": {"type": "linear", "factor": 2.0}})",
       absl::StatusCode::kUnimplemented, "rope_scaling"},
      {R"({"hidden_size": "big"})", absl::StatusCode::kInvalidArgument,
       "'hidden_size' must be an integer"},
      {R"({"hidden_size": 100, "num_attention_heads": 3})",
       absl::StatusCode::kInvalidArgument, "num_attention_heads"},
      {R"({"num_attention_heads": 32, "num_key_value_heads": 5})",
       absl::StatusCode::kInvalidArgument, "num_key_value_heads"},
      {R"({"eos_token_id": 40000})", absl::StatusCode::kInvalidArgument,
       "eos_token_id"},
      {R"({"torch_dtype": "int8"})", absl::StatusCode::kInvalidArgument,
       "torch_dtype"},
      {R"({"rms_norm_eps": 0})", absl::StatusCode::kInvalidArgument,
       "rms_norm_eps"},
      {R"({"rope_parameters": {"rope_type": "llama3", "factor": 8.0}})",
       absl::StatusCode::kInvalidArgument, "rope_parameters.low_freq_factor"},
      {R"({"rope_parameters": {"rope_type": "yarn", "factor": 8.0}})",
       absl::StatusCode::kUnimplemented, "rope_parameters.rope_type"},
      {R"({"rope_parameters": 500})", absl::StatusCode::kInvalidArgument,
       "rope_parameters"},
      {R"({"dtype": "int8"})", absl::StatusCode::kInvalidArgument, "dtype"},
      // Once a division by zero (SIGFPE) before validation.
      {R"({"num_attention_heads": 0, "head_dim": 128})",
       absl::StatusCode::kInvalidArgument, "num_attention_heads"},
      {R"({"head_dim": 0})", absl::StatusCode::kInvalidArgument, "head_dim"},
      {R"({"partial_rotary_factor": 0.5})", absl::StatusCode::kUnimplemented,
       "partial_rotary_factor"},
  };
  for (const BadConfig& bad : cases) {
    absl::StatusOr<LlamaConfig> config = ParseLlamaConfig(bad.json, "x.json");
    EXPECT_EQ(config.status().code(), bad.code) << bad.json;
    EXPECT_TRUE(absl::StrContains(config.status().message(), bad.fragment))
        << bad.json << " -> " << config.status();
    EXPECT_TRUE(absl::StrContains(config.status().message(), "x.json"))
        << config.status();
  }
}

// Found with fuzz/llama_config_fuzzer: rejecting a deeply nested value
// printed it with nlohmann's recursive dump(), and a 2 MB config.json
// overflowed the stack (SIGSEGV).
TEST(LlamaConfigTest, RejectsDeeplyNestedJsonWithoutOverflowingTheStack) {
  const int depth = 1000000;
  const std::string nested = std::string(depth, '[') + std::string(depth, ']');
  for (const std::string& text :
       {absl::StrCat(R"({"hidden_act": )", nested, "}"),
        absl::StrCat(R"({"rope_scaling": {"rope_type": "default", "x": )",
                     nested, "}}")}) {
    const absl::StatusOr<LlamaConfig> config =
        ParseLlamaConfig(text, "deep.json");
    EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_TRUE(absl::StrContains(config.status().message(),
                                  "deep.json: JSON nested deeper than 64"))
        << config.status();
  }
  // Nesting as deep as the limit is fine (and still rejected by field).
  const std::string at_limit = absl::StrCat(
      R"({"hidden_act": )", std::string(63, '['), std::string(63, ']'), "}");
  EXPECT_EQ(ParseLlamaConfig(at_limit, "c.json").status().code(),
            absl::StatusCode::kUnimplemented);
}

TEST(LlamaConfigTest, ReadsAndWritesFiles) {
  const std::string path = absl::StrCat(testing::TempDir(), "/config.json");
  LlamaConfig config;
  config.hidden_size = 32;
  config.num_attention_heads = 4;
  config.num_key_value_heads = 4;
  ASSERT_TRUE(WriteLlamaConfig(config, path).ok());
  absl::StatusOr<LlamaConfig> read = ReadLlamaConfig(path);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->hidden_size, 32);
  EXPECT_EQ(ReadLlamaConfig("/nonexistent/config.json").status().code(),
            absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace lethe
