// Checks Lethe's tokenizer.json reader against Hugging Face's tokenizers
// library (the Rust one that transformers uses, through its npm binding):
// testdata/ holds the ids it gave (make_hf_vectors.cjs) for hard strings
// under Meta's Llama 3.2 tokenizer, for every TOFU question and answer (as
// hashes), and for three small tokenizers of other shapes that the script
// writes: SentencePiece-style BPE with byte fallback and a Prepend/Replace
// normaliser, the same with a Metaspace pre-tokenizer, the same without byte
// fallback (fused unknowns) and with Split/Digits pre-tokenizers, Qwen2-style
// byte-level BPE with NFC, and GPT-2-style byte-level BPE with added tokens
// that strip spaces or match whole words only. The Llama 3 checks need the
// shared reference data
// ($LETHE_SHARED_DIR/data/tokenizers/llama3 and data/tofu).
#include "libs/tokenizer/hf_tokenizer.h"

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "libs/eval/open_unlearning_logs.h"
#include "libs/files/source_path_test_util.h"
#include "libs/tokenizer/tokenizer.h"
#include "libs/tokenizer/tokenizer_training.h"
#include "libs/tokenizer/unicode_text.h"
#include "nlohmann/json.hpp"

namespace lethe {
namespace {

using Json = nlohmann::json;
using tokenizer_internal::AppendUtf8Lossy;
using tokenizer_internal::NfcNormalize;

constexpr int kBeginOfText = 128000;
constexpr int kEotId = 128009;

std::string TestDataDir() {
  const std::string relative = "libs/tokenizer/testdata";
  return SourcePath(relative);
}

// $LETHE_SHARED_DIR/<relative> when it exists, else "".
std::string SharedPath(const std::string& relative) {
  const char* shared = std::getenv("LETHE_SHARED_DIR");
  if (shared == nullptr) return "";
  const std::string path = absl::StrCat(shared, "/", relative);
  return std::filesystem::exists(path) ? path : "";
}

constexpr char kLlama3Missing[] =
    "Llama 3 tokenizer not found (LETHE_SHARED_DIR names the folder holding "
    "data/tokenizers/llama3)";

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream bytes;
  bytes << in.rdbuf();
  return bytes.str();
}

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

std::vector<Json> ReadJsonLines(const std::string& path) {
  std::vector<Json> rows;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty()) rows.push_back(Json::parse(line));
  }
  return rows;
}

// As make_hf_vectors.cjs: FNV-1a 64 over the ids as little-endian uint32.
std::string HashIds(const std::vector<int>& ids) {
  uint64_t hash = 0xcbf29ce484222325ULL;
  for (int id : ids) {
    for (int k = 0; k < 4; ++k) {
      hash ^= (static_cast<uint32_t>(id) >> (8 * k)) & 0xff;
      hash *= 0x100000001b3ULL;
    }
  }
  char text[17];
  std::snprintf(text, sizeof(text), "%016llx",
                static_cast<unsigned long long>(hash));
  return text;
}

std::string Printable(const std::string& text) { return Json(text).dump(); }

// What decode(encode(text)) must give, when the check applies.
using RoundTrip = std::function<std::string(const std::string&)>;

// Encodes and decodes every row of a vectors file ({text, ids, plain,
// decoded}) and compares with the reference, and with `round_trip` (unless
// null) decode(encode(text)) keeping special tokens; returns the rows checked.
int ExpectMatchesVectors(const Tokenizer& tokenizer, const std::string& path,
                         const RoundTrip& round_trip) {
  const std::vector<Json> rows = ReadJsonLines(path);
  EXPECT_FALSE(rows.empty()) << path;
  int checked = 0;
  for (const Json& row : rows) {
    const std::string text = row["text"].get<std::string>();
    const std::vector<int> ids = row["ids"].get<std::vector<int>>();
    const std::vector<int> plain = row["plain"].get<std::vector<int>>();
    absl::StatusOr<std::vector<int>> with_bos =
        tokenizer.Encode(text, {.add_bos = true});
    if (!with_bos.ok()) {
      ADD_FAILURE() << path << ": " << with_bos.status();
      return checked;
    }
    EXPECT_EQ(*with_bos, ids) << path << ": " << Printable(text);
    absl::StatusOr<std::vector<int>> without = tokenizer.Encode(text);
    if (!without.ok()) {
      ADD_FAILURE() << path << ": " << without.status();
      return checked;
    }
    EXPECT_EQ(*without, plain) << path << ": " << Printable(text);
    absl::StatusOr<std::string> decoded = tokenizer.Decode(ids);
    if (!decoded.ok()) {
      ADD_FAILURE() << path << ": " << decoded.status();
      return checked;
    }
    EXPECT_EQ(*decoded, row["decoded"].get<std::string>())
        << path << ": decoding " << Printable(text);
    if (round_trip != nullptr) {
      absl::StatusOr<std::string> round =
          tokenizer.Decode(plain, {.skip_special_tokens = false});
      if (!round.ok()) {
        ADD_FAILURE() << path << ": " << round.status();
        return checked;
      }
      EXPECT_EQ(*round, round_trip(text))
          << path << ": round trip of " << Printable(text);
    }
    ++checked;
  }
  return checked;
}

// --- Llama 3.2 (shared reference data) --------------------------------------

class Llama3Test : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(SharedPath("data/tokenizers/llama3"));
    if (dir_->empty()) return;
    const auto start = std::chrono::steady_clock::now();
    absl::StatusOr<std::unique_ptr<Tokenizer>> loaded =
        LoadModelTokenizer(*dir_);
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    std::printf(
        "loaded the Llama 3 tokenizer in %.2f s\n",
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
            .count());
    tokenizer_ = loaded->release();
  }
  static void TearDownTestSuite() {
    delete tokenizer_;
    tokenizer_ = nullptr;
    delete dir_;
  }
  void SetUp() override {
    if (dir_->empty()) LETHE_SKIP_WITHOUT_SHARED_DATA(kLlama3Missing);
    ASSERT_NE(tokenizer_, nullptr);
  }

  static std::string* dir_;
  static Tokenizer* tokenizer_;
};
std::string* Llama3Test::dir_ = nullptr;
Tokenizer* Llama3Test::tokenizer_ = nullptr;

TEST_F(Llama3Test, SpecialTokensComeFromTheConfig) {
  EXPECT_EQ(tokenizer_->vocab_size(), 128256);
  EXPECT_EQ(tokenizer_->bos_id(), kBeginOfText);
  EXPECT_EQ(tokenizer_->eos_id(), kEotId);  // Instruct: <|eot_id|>.
  EXPECT_EQ(tokenizer_->pad_id(), -1);
  EXPECT_EQ(tokenizer_->unk_id(), -1);
  EXPECT_EQ(tokenizer_->piece(kBeginOfText), "<|begin_of_text|>");
  EXPECT_EQ(tokenizer_->piece(kEotId), "<|eot_id|>");
  EXPECT_EQ(tokenizer_->piece(1917), "\xC4\xA0world");  // "Ġworld"
  EXPECT_EQ(tokenizer_->piece(-1), "");
  EXPECT_EQ(tokenizer_->piece(128256), "");
}

TEST_F(Llama3Test, MatchesMetaExamples) {
  int checked = 0;
  for (const Json& row : ReadJsonLines(*dir_ + "/examples.jsonl")) {
    const std::string text = row["text"].get<std::string>();
    absl::StatusOr<std::vector<int>> ids =
        tokenizer_->Encode(text, {.add_bos = true});
    ASSERT_TRUE(ids.ok()) << ids.status();
    EXPECT_EQ(*ids, row["ids"].get<std::vector<int>>()) << Printable(text);
    std::vector<std::string> pieces;
    for (int id : *ids) pieces.push_back(tokenizer_->piece(id));
    EXPECT_EQ(pieces, row["tokens"].get<std::vector<std::string>>());
    ++checked;
  }
  EXPECT_EQ(checked, 20);
}

TEST_F(Llama3Test, MatchesHuggingFaceOnHardStrings) {
  EXPECT_GE(ExpectMatchesVectors(*tokenizer_,
                                 TestDataDir() + "/llama3_hard_strings.jsonl",
                                 [](const std::string& text) { return text; }),
            150);
}

TEST_F(Llama3Test, MatchesHuggingFaceOnEveryTofuQuestionAndAnswer) {
  const std::string tofu = SharedPath("data/tofu/full.json");
  if (tofu.empty()) {
    LETHE_SKIP_WITHOUT_SHARED_DATA("TOFU's full.json not found");
  }
  std::vector<std::string> texts;
  for (const Json& record : ReadJsonLines(tofu)) {
    texts.push_back(record["question"].get<std::string>());
    texts.push_back(record["answer"].get<std::string>());
  }
  std::vector<std::string> expected;  // "<count> <hash>" per text
  std::ifstream in(TestDataDir() + "/llama3_tofu_ids.txt");
  std::string index, field, count, hash;
  while (in >> index >> field >> count >> hash) {
    expected.push_back(count + " " + hash);
  }
  ASSERT_EQ(expected.size(), texts.size())
      << "llama3_tofu_ids.txt and TOFU's full.json differ in length";

  const auto start = std::chrono::steady_clock::now();
  std::vector<std::vector<int>> encoded;
  encoded.reserve(texts.size());
  for (const std::string& text : texts) {
    absl::StatusOr<std::vector<int>> ids = tokenizer_->Encode(text);
    ASSERT_TRUE(ids.ok()) << ids.status();
    encoded.push_back(*std::move(ids));
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  size_t tokens = 0, mismatches = 0;
  for (size_t i = 0; i < texts.size(); ++i) {
    tokens += encoded[i].size();
    const std::string got =
        absl::StrCat(encoded[i].size(), " ", HashIds(encoded[i]));
    if (got != expected[i] && ++mismatches <= 10) {
      ADD_FAILURE() << "TOFU string " << i << " " << Printable(texts[i]) << ": "
                    << got << ", reference " << expected[i];
    }
    absl::StatusOr<std::string> decoded = tokenizer_->Decode(encoded[i]);
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    EXPECT_EQ(*decoded, texts[i]) << "round trip of TOFU string " << i;
  }
  EXPECT_EQ(mismatches, 0u);
  std::printf("encoded %zu TOFU strings (%zu tokens) in %.3f s\n", texts.size(),
              tokens, seconds);
  // Generous: catches a quadratic slip, not a slow machine.
  EXPECT_LT(seconds, 20.0);
}

TEST_F(Llama3Test, EncodesFromManyThreadsAlike) {
  const std::vector<Json> rows =
      ReadJsonLines(TestDataDir() + "/llama3_hard_strings.jsonl");
  std::vector<std::thread> threads;
  std::vector<int> failures(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < 3; ++round) {
        for (const Json& row : rows) {
          absl::StatusOr<std::vector<int>> ids =
              tokenizer_->Encode(row["text"].get<std::string>());
          if (!ids.ok() || *ids != row["plain"].get<std::vector<int>>()) {
            ++failures[t];
          }
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(failures, std::vector<int>(4, 0));
}

TEST_F(Llama3Test, LoadingTheJsonFileAlsoReadsTheConfigBesideIt) {
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer =
      Tokenizer::Load(*dir_ + "/tokenizer.json");
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  EXPECT_EQ((*tokenizer)->eos_id(), kEotId);
  EXPECT_EQ(*ModelTokenizerFileName(*dir_), "tokenizer.json");
  EXPECT_EQ(
      *ModelTokenizerFileNames(*dir_),
      (std::vector<std::string>{"tokenizer.json", "tokenizer_config.json"}));
}

TEST_F(Llama3Test, ChatTemplateTextEncodesToSpecialTokens) {
  absl::StatusOr<std::vector<int>> ids = tokenizer_->Encode(
      "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi"
      "<|eot_id|>");
  ASSERT_TRUE(ids.ok());
  ASSERT_GE(ids->size(), 4u);
  EXPECT_EQ(ids->front(), kBeginOfText);
  EXPECT_EQ((*ids)[1], 128006);  // <|start_header_id|>
  EXPECT_EQ(ids->back(), kEotId);
  EXPECT_EQ(*tokenizer_->Decode(*ids), "user\n\nHi");
}

TEST_F(Llama3Test, AddEosAppendsTheConfiguredEos) {
  absl::StatusOr<std::vector<int>> ids =
      tokenizer_->Encode("Hi", {.add_bos = true, .add_eos = true});
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(*ids, (std::vector<int>{kBeginOfText, 13347, kEotId}));
}

// --- Small tokenizers of other shapes (testdata only)
// -------------------------

class SyntheticTokenizerTest : public testing::TestWithParam<std::string> {};

TEST_P(SyntheticTokenizerTest, MatchesHuggingFace) {
  const std::string name = GetParam();
  const std::string json =
      ReadFile(absl::StrCat(TestDataDir(), "/", name, "_tokenizer.json"));
  ASSERT_FALSE(json.empty());
  absl::StatusOr<std::unique_ptr<HfTokenizer>> tokenizer =
      HfTokenizer::FromJson(json, name);
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  EXPECT_GE(
      ExpectMatchesVectors(
          **tokenizer, absl::StrCat(TestDataDir(), "/", name, "_vectors.jsonl"),
          // The byte-level shape loses nothing but NFC's changes.
          name == "qwen_style" ? RoundTrip(NfcNormalize) : nullptr),
      200);
}

INSTANTIATE_TEST_SUITE_P(Shapes, SyntheticTokenizerTest,
                         testing::Values("sp_style", "metaspace", "sp_unk",
                                         "qwen_style", "gpt2_style"));

TEST(SyntheticTokenizerTest, SentencePieceStyleSpecialsAndByteFallback) {
  absl::StatusOr<std::unique_ptr<HfTokenizer>> tokenizer =
      HfTokenizer::FromJson(
          ReadFile(TestDataDir() + "/sp_style_tokenizer.json"), "sp_style");
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  EXPECT_EQ((*tokenizer)->bos_id(), 1);   // From the template.
  EXPECT_EQ((*tokenizer)->eos_id(), -1);  // Only a config names it.
  EXPECT_EQ((*tokenizer)->unk_id(), 0);
  absl::StatusOr<std::vector<int>> ids = (*tokenizer)->Encode("中");
  ASSERT_TRUE(ids.ok());
  std::vector<std::string> pieces;
  for (int id : *ids) pieces.push_back((*tokenizer)->piece(id));
  EXPECT_EQ(pieces, (std::vector<std::string>{"\xE2\x96\x81", "<0xE4>",
                                              "<0xB8>", "<0xAD>"}));
  EXPECT_EQ(*(*tokenizer)->Decode(*ids), "中");
}

// --- Model folders and tokenizer_config.json ---------------------------------

class ModelFolderTest : public testing::Test {
 protected:
  void SetUp() override {
    dir_ = absl::StrCat(
        testing::TempDir(), "/model_",
        testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void WriteSpStyle() {
    WriteFile(dir_ + "/tokenizer.json",
              ReadFile(TestDataDir() + "/sp_style_tokenizer.json"));
  }
  std::string dir_;
};

TEST_F(ModelFolderTest, ConfigSetsSpecialTokensAndAddBos) {
  WriteSpStyle();
  WriteFile(dir_ + "/tokenizer_config.json", R"({
      "bos_token": {"__type": "AddedToken", "content": "<s>"},
      "eos_token": "</s>", "pad_token": "<unk>", "add_bos_token": false,
      "chat_template": "ignored"})");
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer =
      LoadModelTokenizer(dir_);
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  EXPECT_EQ((*tokenizer)->bos_id(), 1);
  EXPECT_EQ((*tokenizer)->eos_id(), 2);
  EXPECT_EQ((*tokenizer)->pad_id(), 0);
  absl::StatusOr<std::vector<int>> ids =
      (*tokenizer)->Encode("a", {.add_bos = true, .add_eos = true});
  ASSERT_TRUE(ids.ok());
  EXPECT_NE(ids->front(), 1);  // add_bos_token false.
  EXPECT_EQ(ids->back(), 2);
}

TEST_F(ModelFolderTest, NullTokensInTheConfigMeanNone) {
  WriteSpStyle();
  WriteFile(dir_ + "/tokenizer_config.json",
            R"({"bos_token": null, "eos_token": "</s>"})");
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer =
      LoadModelTokenizer(dir_);
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  EXPECT_EQ((*tokenizer)->bos_id(), -1);
  // The template still adds <s>, as transformers would.
  EXPECT_EQ((*tokenizer)->Encode("a", {.add_bos = true})->front(), 1);
}

TEST_F(ModelFolderTest, ConfigErrorsNameTheFileAndField) {
  WriteSpStyle();
  WriteFile(dir_ + "/tokenizer_config.json", R"({"eos_token": "<|nope|>"})");
  absl::Status status = LoadModelTokenizer(dir_).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("tokenizer_config.json"), std::string::npos)
      << status;
  EXPECT_NE(status.message().find("eos_token '<|nope|>'"), std::string::npos)
      << status;
  WriteFile(dir_ + "/tokenizer_config.json", R"({"add_bos_token": "yes"})");
  status = LoadModelTokenizer(dir_).status();
  EXPECT_NE(status.message().find("add_bos_token"), std::string::npos)
      << status;
  WriteFile(dir_ + "/tokenizer_config.json", R"({"eos_token": )");
  EXPECT_EQ(LoadModelTokenizer(dir_).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(ModelFolderTest, PrefersTokenizerJsonAndFallsBackToTokenizerModel) {
  absl::StatusOr<std::string> model = TrainTokenizer(
      {"Mira Okafor writes mystery novels.", "Kenji Sato writes poetry."},
      {.vocab_size = 300, .num_threads = 1});
  ASSERT_TRUE(model.ok()) << model.status();
  WriteFile(dir_ + "/tokenizer.model", *model);
  EXPECT_EQ(*ModelTokenizerFileName(dir_), "tokenizer.model");
  absl::StatusOr<std::unique_ptr<Tokenizer>> sentencepiece =
      LoadModelTokenizer(dir_);
  ASSERT_TRUE(sentencepiece.ok()) << sentencepiece.status();
  EXPECT_EQ((*sentencepiece)->vocab_size(), 300);

  WriteSpStyle();
  EXPECT_EQ(*ModelTokenizerFileName(dir_), "tokenizer.json");
  EXPECT_EQ(*ModelTokenizerFileNames(dir_),
            std::vector<std::string>{"tokenizer.json"});
  absl::StatusOr<std::unique_ptr<Tokenizer>> hf = LoadModelTokenizer(dir_);
  ASSERT_TRUE(hf.ok()) << hf.status();
  EXPECT_NE((*hf)->vocab_size(), 300);
  EXPECT_EQ((*hf)->piece(1), "<s>");
}

TEST_F(ModelFolderTest, TokenizerModelConfigAppliesToo) {
  absl::StatusOr<std::string> model = TrainTokenizer(
      {"Mira Okafor writes mystery novels.", "Kenji Sato writes poetry."},
      {.vocab_size = 300, .num_threads = 1});
  ASSERT_TRUE(model.ok()) << model.status();
  WriteFile(dir_ + "/tokenizer.model", *model);
  WriteFile(dir_ + "/tokenizer_config.json",
            R"({"pad_token": "</s>", "add_bos_token": false})");
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer =
      Tokenizer::Load(dir_ + "/tokenizer.model");
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  EXPECT_EQ((*tokenizer)->pad_id(), 2);
  EXPECT_NE((*tokenizer)->Encode("poetry", {.add_bos = true})->front(), 1);
}

TEST_F(ModelFolderTest, MissingFilesAreNotFound) {
  absl::Status status = LoadModelTokenizer(dir_).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_NE(status.message().find(dir_), std::string::npos) << status;
  WriteSpStyle();
  status = Tokenizer::Load(dir_ + "/tokenizer.model").status();
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_NE(status.message().find("has tokenizer.json"), std::string::npos)
      << status;
}

// --- Malformed and unsupported files ----------------------------------------

// The sp_style tokenizer.json with `edit` applied.
std::string EditedSpStyle(const std::function<void(Json*)>& edit) {
  Json json = Json::parse(ReadFile(TestDataDir() + "/sp_style_tokenizer.json"));
  edit(&json);
  return json.dump();
}

void ExpectError(const std::string& json, absl::StatusCode code,
                 const std::vector<std::string>& named) {
  absl::Status status = HfTokenizer::FromJson(json, "'t.json'").status();
  EXPECT_EQ(status.code(), code) << status;
  for (const std::string& text : named) {
    EXPECT_NE(status.message().find(text), std::string::npos)
        << "'" << text << "' not in: " << status;
  }
}

TEST(MalformedTokenizerTest, ErrorsNameTheFieldAndFile) {
  const std::string good = ReadFile(TestDataDir() + "/sp_style_tokenizer.json");
  ExpectError(good.substr(0, good.size() / 2),
              absl::StatusCode::kInvalidArgument,
              {"'t.json'", "not valid JSON"});
  ExpectError("[1, 2]", absl::StatusCode::kInvalidArgument,
              {"not a JSON object"});
  ExpectError(
      EditedSpStyle([](Json* j) { (*j)["model"]["type"] = "WordPiece"; }),
      absl::StatusCode::kUnimplemented, {"'t.json'", "model", "WordPiece"});
  ExpectError(EditedSpStyle([](Json* j) { j->erase("model"); }),
              absl::StatusCode::kInvalidArgument, {"model is missing"});
  ExpectError(EditedSpStyle([](Json* j) {
                (*j)["pre_tokenizer"] = {{"type", "BertPreTokenizer"}};
              }),
              absl::StatusCode::kUnimplemented,
              {"pre_tokenizer", "BertPreTokenizer"});
  ExpectError(EditedSpStyle([](Json* j) {
                (*j)["normalizer"]["normalizers"][1] = {{"type", "Lowercase"}};
              }),
              absl::StatusCode::kUnimplemented,
              {"normalizer.normalizers[1]", "Lowercase"});
  ExpectError(EditedSpStyle([](Json* j) {
                (*j)["decoder"] = {{"type", "WordPiece"}};
              }),
              absl::StatusCode::kUnimplemented, {"decoder", "WordPiece"});
  ExpectError(EditedSpStyle([](Json* j) {
                (*j)["post_processor"] = {{"type", "RobertaProcessing"}};
              }),
              absl::StatusCode::kUnimplemented,
              {"post_processor", "RobertaProcessing"});
  ExpectError(EditedSpStyle([](Json* j) {
                (*j)["model"]["merges"][0] = "nosuchtoken other";
              }),
              absl::StatusCode::kInvalidArgument,
              {"model.merges[0]", "nosuchtoken"});
  ExpectError(EditedSpStyle([](Json* j) { (*j)["model"]["merges"][3] = 7; }),
              absl::StatusCode::kInvalidArgument, {"model.merges[3]"});
  ExpectError(EditedSpStyle([](Json* j) { (*j)["model"]["dropout"] = 0.1; }),
              absl::StatusCode::kUnimplemented, {"model.dropout"});
  ExpectError(EditedSpStyle([](Json* j) {
                (*j)["pre_tokenizer"] = {{"type", "Split"},
                                         {"pattern", {{"Regex", "(unclosed"}}},
                                         {"behavior", "Isolated"},
                                         {"invert", false}};
              }),
              absl::StatusCode::kInvalidArgument,
              {"pre_tokenizer.pattern.Regex", "does not compile"});
  ExpectError(
      EditedSpStyle([](Json* j) { (*j)["added_tokens"][0]["id"] = "zero"; }),
      absl::StatusCode::kInvalidArgument,
      {"added_tokens[0].id", "not an integer"});
}

TEST(MalformedTokenizerTest, BadInputIsInvalidArgument) {
  absl::StatusOr<std::unique_ptr<HfTokenizer>> tokenizer =
      HfTokenizer::FromJson(
          ReadFile(TestDataDir() + "/qwen_style_tokenizer.json"), "qwen_style");
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  EXPECT_EQ((*tokenizer)->Encode("bad \xC3\x28 utf-8").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      (*tokenizer)->Decode({0, (*tokenizer)->vocab_size()}).status().code(),
      absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*tokenizer)->Decode({-1}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// --- Unicode helpers
// ----------------------------------------------------------

TEST(UnicodeTextTest, NfcComposesReordersAndKeepsCompatibilityForms) {
  EXPECT_EQ(NfcNormalize("plain ASCII"), "plain ASCII");
  EXPECT_EQ(NfcNormalize("e\xCC\x81"), "\xC3\xA9");              // e + U+0301
  EXPECT_EQ(NfcNormalize("\xE2\x84\xAB"), "\xC3\x85");           // U+212B -> Å
  EXPECT_EQ(NfcNormalize("e\xCC\x82\xCC\xA3"), "\xE1\xBB\x87");  // -> ệ
  EXPECT_EQ(NfcNormalize("\xE1\x84\x80\xE1\x85\xA1\xE1\x86\xA8"),
            "\xEA\xB0\x81");                                // jamo -> 각
  EXPECT_EQ(NfcNormalize("\xEF\xAC\x81"), "\xEF\xAC\x81");  // ﬁ stays
  EXPECT_EQ(NfcNormalize("caf\xC3\xA9 \xE4\xB8\xAD"),
            "caf\xC3\xA9 \xE4\xB8\xAD");
}

TEST(UnicodeTextTest, LossyDecodingReplacesMaximalIllFormedParts) {
  auto lossy = [](const std::string& bytes) {
    std::string out;
    AppendUtf8Lossy(bytes, &out);
    return out;
  };
  const std::string r = "\xEF\xBF\xBD";
  EXPECT_EQ(lossy("a\xF0\x9F\x98"
                  "b"),
            "a" + r + "b");  // Truncated emoji.
  EXPECT_EQ(lossy("\xC0\x80"), r + r);
  EXPECT_EQ(lossy("\xED\xA0\x80"), r + r + r);  // A surrogate.
  EXPECT_EQ(lossy("\xF0\x9F\x98\x80"), "\xF0\x9F\x98\x80");
}

}  // namespace
}  // namespace lethe
