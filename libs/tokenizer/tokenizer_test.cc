#include "libs/tokenizer/tokenizer.h"

#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "libs/data/sharding.h"
#include "libs/tokenizer/sentencepiece_adapter.h"
#include "libs/tokenizer/tokenizer_training.h"

namespace lethe {
namespace {

using tokenizer_internal::SentencePieceAdapter;
using tokenizer_internal::TrainSentencePiece;

std::vector<std::string> SmallCorpus() {
  std::vector<std::string> sentences;
  const std::vector<std::string> names = {"Mira Okafor", "Tomas Lindqvist",
                                          "Ana Beltran", "Kenji Sato"};
  const std::vector<std::string> genres = {
      "mystery", "poetry", "science fiction", "historical fiction"};
  for (int i = 0; i < 200; ++i) {
    const std::string& name = names[i % names.size()];
    const std::string& genre = genres[(i / 4) % genres.size()];
    sentences.push_back(absl::StrCat(name, " was born in ", 1900 + i,
                                     " and writes ", genre, " novels."));
    sentences.push_back(absl::StrCat("Question: What genre does ", name,
                                     " write?\nAnswer: ", name, " writes ",
                                     genre, "."));
  }
  return sentences;
}

// Strings that exercise every path of the encoder: seen and unseen words,
// characters outside the training data, runs and edges of spaces, control
// characters, the space symbol itself, and deterministic random mixes.
std::vector<std::string> ProbeStrings() {
  std::vector<std::string> probes = {
      "",
      " ",
      "   ",
      "Mira Okafor writes mystery novels.",
      "Question: What genre does Kenji Sato write?\nAnswer: poetry.",
      "Zoë wrote 42 books in Kyōto! 🎉 中文",
      "  leading and trailing  ",
      "double  spaces   and\ttabs\nand newlines",
      "the \xE2\x96\x81 symbol itself",
      "1999-2024: 12345678901234567890",
      "novelsnovels poetrypoetry",
  };
  const std::vector<std::string> pool = {
      "a", "e", "n",  "o", "r",     "s",      "t",   " ",
      " ", "M", "K",  "1", "9",     ".",      ",",   "\n",
      "é", "ō", "中", "🎉", "novel", "poetry", "wri", "ter"};
  SplitMix64 random(17);
  for (int i = 0; i < 300; ++i) {
    std::string text;
    const int length = static_cast<int>(random.Below(25));
    for (int k = 0; k < length; ++k) text += pool[random.Below(pool.size())];
    probes.push_back(text);
  }
  return probes;
}

// Lethe's tokenizer and libsentencepiece agree on ids and decoded text.
void ExpectMatchesReference(const std::string& model_bytes,
                            const std::string& label) {
  absl::StatusOr<std::unique_ptr<Tokenizer>> lethe =
      Tokenizer::FromSerialized(model_bytes);
  ASSERT_TRUE(lethe.ok()) << label << ": " << lethe.status();
  SentencePieceAdapter reference;
  ASSERT_EQ(reference.LoadSerialized(model_bytes), "") << label;
  EXPECT_EQ((*lethe)->vocab_size(), reference.vocab_size()) << label;
  EXPECT_EQ((*lethe)->bos_id(), reference.bos_id()) << label;
  EXPECT_EQ((*lethe)->eos_id(), reference.eos_id()) << label;
  EXPECT_EQ((*lethe)->unk_id(), reference.unk_id()) << label;
  EXPECT_EQ((*lethe)->pad_id(), reference.pad_id()) << label;
  int checked = 0;
  for (const std::string& text : ProbeStrings()) {
    std::vector<int> expected;
    ASSERT_EQ(reference.Encode(text, &expected), "");
    absl::StatusOr<std::vector<int>> ids = (*lethe)->Encode(text);
    ASSERT_TRUE(ids.ok()) << ids.status();
    EXPECT_EQ(*ids, expected) << label << ": encoding '" << text << "'";
    std::string expected_text;
    ASSERT_EQ(reference.Decode(expected, &expected_text), "");
    absl::StatusOr<std::string> decoded = (*lethe)->Decode(expected);
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    EXPECT_EQ(*decoded, expected_text)
        << label << ": decoding '" << text << "'";
    ++checked;
  }
  EXPECT_GT(checked, 300);
}

class TrainedTokenizerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    absl::StatusOr<std::string> model =
        TrainTokenizer(SmallCorpus(), {.vocab_size = 400, .num_threads = 1});
    ASSERT_TRUE(model.ok()) << model.status();
    serialized_ = new std::string(*std::move(model));
  }
  static void TearDownTestSuite() { delete serialized_; }

  static std::unique_ptr<Tokenizer> Load() {
    absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer =
        Tokenizer::FromSerialized(*serialized_);
    EXPECT_TRUE(tokenizer.ok()) << tokenizer.status();
    return tokenizer.ok() ? *std::move(tokenizer) : nullptr;
  }

  static std::string* serialized_;
};
std::string* TrainedTokenizerTest::serialized_ = nullptr;

TEST_F(TrainedTokenizerTest, MatchesLibsentencepieceTokenForToken) {
  ExpectMatchesReference(*serialized_, "Lethe's default training options");
}

TEST(TokenizerReferenceTest, MatchesLibsentencepieceUnderOtherModelOptions) {
  const std::vector<std::string> corpus = SmallCorpus();
  const std::map<std::string, std::string> base = {
      {"model_type", "bpe"},         {"vocab_size", "350"},
      {"character_coverage", "1.0"}, {"normalization_rule_name", "identity"},
      {"hard_vocab_limit", "false"}, {"minloglevel", "2"},
      {"num_threads", "1"},          {"shuffle_input_sentence", "false"},
  };
  const std::vector<std::pair<std::string, std::map<std::string, std::string>>>
      variants = {
          {"no byte fallback (unknowns merge)", {{"byte_fallback", "false"}}},
          {"extra whitespace removed",
           {{"byte_fallback", "true"}, {"remove_extra_whitespaces", "true"}}},
          {"no dummy prefix",
           {{"byte_fallback", "true"}, {"add_dummy_prefix", "false"}}},
          {"user-defined symbols",
           {{"byte_fallback", "true"}, {"user_defined_symbols", "Okafor,42"}}},
          {"pad and other special ids",
           {{"byte_fallback", "true"},
            {"pad_id", "3"},
            {"unk_id", "2"},
            {"bos_id", "0"},
            {"eos_id", "1"}}},
      };
  for (const auto& [label, extra] : variants) {
    std::map<std::string, std::string> arguments = base;
    for (const auto& [key, value] : extra) arguments[key] = value;
    std::string model;
    ASSERT_EQ(TrainSentencePiece(corpus, arguments, &model), "") << label;
    ExpectMatchesReference(model, label);
  }
}

TEST_F(TrainedTokenizerTest, HasLlamaSpecialTokens) {
  std::unique_ptr<Tokenizer> tokenizer = Load();
  ASSERT_NE(tokenizer, nullptr);
  EXPECT_EQ(tokenizer->unk_id(), 0);
  EXPECT_EQ(tokenizer->bos_id(), 1);
  EXPECT_EQ(tokenizer->eos_id(), 2);
  EXPECT_EQ(tokenizer->pad_id(), -1);
  EXPECT_EQ(tokenizer->vocab_size(), 400);
}

TEST_F(TrainedTokenizerTest, RoundTripsSeenAndUnseenText) {
  std::unique_ptr<Tokenizer> tokenizer = Load();
  ASSERT_NE(tokenizer, nullptr);
  for (const std::string text :
       {"Mira Okafor writes mystery novels.", "Zoë wrote 42 books in Kyōto!",
        "Question: Who?\nAnswer:  two  spaces"}) {
    absl::StatusOr<std::vector<int>> ids = tokenizer->Encode(text);
    ASSERT_TRUE(ids.ok()) << ids.status();
    for (int id : *ids) EXPECT_NE(id, tokenizer->unk_id()) << text;
    absl::StatusOr<std::string> decoded = tokenizer->Decode(*ids);
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    EXPECT_EQ(*decoded, text);
  }
}

TEST_F(TrainedTokenizerTest, FrequentWordsBecomeSinglePiecesAndDigitsSplit) {
  std::unique_ptr<Tokenizer> tokenizer = Load();
  ASSERT_NE(tokenizer, nullptr);
  absl::StatusOr<std::vector<int>> word = tokenizer->Encode("novels");
  ASSERT_TRUE(word.ok());
  ASSERT_EQ(word->size(), 1u);
  EXPECT_EQ(tokenizer->piece((*word)[0]), "\xE2\x96\x81novels");
  absl::StatusOr<std::vector<int>> year = tokenizer->Encode("1999");
  ASSERT_TRUE(year.ok());
  EXPECT_GE(year->size(), 4u);  // A dummy-prefix piece may precede the digits.
}

TEST_F(TrainedTokenizerTest, BosAndEosAreAddedOnRequestAndDroppedOnDecode) {
  std::unique_ptr<Tokenizer> tokenizer = Load();
  ASSERT_NE(tokenizer, nullptr);
  absl::StatusOr<std::vector<int>> plain = tokenizer->Encode("poetry");
  absl::StatusOr<std::vector<int>> framed =
      tokenizer->Encode("poetry", {.add_bos = true, .add_eos = true});
  ASSERT_TRUE(plain.ok() && framed.ok());
  ASSERT_EQ(framed->size(), plain->size() + 2);
  EXPECT_EQ(framed->front(), 1);
  EXPECT_EQ(framed->back(), 2);
  EXPECT_EQ(*tokenizer->Decode(*framed), "poetry");
}

TEST_F(TrainedTokenizerTest, TrainingIsDeterministic) {
  absl::StatusOr<std::string> again =
      TrainTokenizer(SmallCorpus(), {.vocab_size = 400, .num_threads = 1});
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, *serialized_);
}

TEST_F(TrainedTokenizerTest, LoadsFromAFile) {
  const std::string path = absl::StrCat(testing::TempDir(), "/tokenizer.model");
  std::ofstream(path, std::ios::binary) << *serialized_;
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer = Tokenizer::Load(path);
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  EXPECT_EQ((*tokenizer)->vocab_size(), 400);
}

TEST_F(TrainedTokenizerTest, DecodeRejectsIdsOutsideTheVocabulary) {
  std::unique_ptr<Tokenizer> tokenizer = Load();
  ASSERT_NE(tokenizer, nullptr);
  EXPECT_EQ(tokenizer->Decode({5, 400}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(tokenizer->Decode({-1}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(TokenizerLoadTest, MissingCorruptAndUnsupportedFilesNameThePath) {
  absl::Status missing =
      Tokenizer::Load("/nonexistent/tokenizer.model").status();
  EXPECT_EQ(missing.code(), absl::StatusCode::kNotFound);
  EXPECT_NE(missing.message().find("/nonexistent/tokenizer.model"),
            std::string::npos);

  const std::string path = absl::StrCat(testing::TempDir(), "/corrupt.model");
  std::ofstream(path, std::ios::binary) << "\xff\xff\xff this is not a model";
  absl::Status corrupt = Tokenizer::Load(path).status();
  EXPECT_EQ(corrupt.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(corrupt.message().find(path), std::string::npos) << corrupt;

  std::string unigram;
  ASSERT_EQ(TrainSentencePiece(SmallCorpus(),
                               {{"model_type", "unigram"},
                                {"vocab_size", "300"},
                                {"hard_vocab_limit", "false"},
                                {"minloglevel", "2"}},
                               &unigram),
            "");
  EXPECT_EQ(Tokenizer::FromSerialized(unigram).status().code(),
            absl::StatusCode::kUnimplemented);
}

// A byte piece whose text is not <0xHH> is refused, not used as an index
// (fuzz/tokenizer_model_fuzzer found "<0x-7>" written far outside the byte
// table).
TEST_F(TrainedTokenizerTest, ABytePieceMustBeHexadecimal) {
  std::string model = *serialized_;
  const size_t at = model.find("<0x41>");
  ASSERT_NE(at, std::string::npos) << "the model has byte pieces";
  model.replace(at, 6, "<0x-7>");
  const absl::Status status = Tokenizer::FromSerialized(model).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("<0x-7>"), std::string::npos) << status;
}

// Special ids are -1 (none) or a piece: a pad_id past the end padded
// batches with an out-of-range embedding index (found by the fuzz target;
// these bytes are its input: pieces <unk>, <s>, </s>, BPE, pad_id 383).
TEST(TokenizerLoadTest, SpecialIdsMustBePiecesOrMinusOne) {
  const std::string pad_383 = absl::HexStringToBytes(
      "0a090a053c756e6b3e18020a070a033c733e18030a080a043c2f733e18031206180"
      "2d802ff02");
  const absl::Status status = Tokenizer::FromSerialized(pad_383).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("pad_id 383"), std::string::npos) << status;
}

TEST(TrainTokenizerTest, RejectsEmptyCorpusAndTinyVocabulary) {
  EXPECT_EQ(TrainTokenizer({}, {}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(TrainTokenizer({"text"}, {.vocab_size = 100}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace lethe
