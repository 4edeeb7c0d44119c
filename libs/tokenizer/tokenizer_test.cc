#include "libs/tokenizer/tokenizer.h"

#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace lethe {
namespace {

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

class TrainedTokenizerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    absl::StatusOr<std::string> model =
        TrainTokenizer(SmallCorpus(), {.vocab_size = 400, .num_threads = 1});
    ASSERT_TRUE(model.ok()) << model.status();
    serialized_ = new std::string(*std::move(model));
  }
  static void TearDownTestSuite() { delete serialized_; }

  static std::string* serialized_;
};
std::string* TrainedTokenizerTest::serialized_ = nullptr;

TEST_F(TrainedTokenizerTest, HasLlamaSpecialTokens) {
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer =
      Tokenizer::FromSerialized(*serialized_);
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  EXPECT_EQ((*tokenizer)->unk_id(), 0);
  EXPECT_EQ((*tokenizer)->bos_id(), 1);
  EXPECT_EQ((*tokenizer)->eos_id(), 2);
  EXPECT_EQ((*tokenizer)->pad_id(), -1);
  EXPECT_EQ((*tokenizer)->vocab_size(), 400);
}

TEST_F(TrainedTokenizerTest, RoundTripsSeenAndUnseenText) {
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer =
      Tokenizer::FromSerialized(*serialized_);
  ASSERT_TRUE(tokenizer.ok());
  // Byte fallback covers characters never seen in training.
  for (const std::string text :
       {"Mira Okafor writes mystery novels.", "Zoë wrote 42 books in Kyōto!",
        "Question: Who?\nAnswer:  two  spaces"}) {
    absl::StatusOr<std::vector<int>> ids = (*tokenizer)->Encode(text);
    ASSERT_TRUE(ids.ok()) << ids.status();
    for (int id : *ids) EXPECT_NE(id, (*tokenizer)->unk_id()) << text;
    absl::StatusOr<std::string> decoded = (*tokenizer)->Decode(*ids);
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    EXPECT_EQ(*decoded, text);
  }
}

TEST_F(TrainedTokenizerTest, FrequentWordsBecomeSinglePiecesAndDigitsSplit) {
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer =
      Tokenizer::FromSerialized(*serialized_);
  ASSERT_TRUE(tokenizer.ok());
  absl::StatusOr<std::vector<int>> word = (*tokenizer)->Encode("novels");
  ASSERT_TRUE(word.ok());
  EXPECT_EQ(word->size(), 1u);
  absl::StatusOr<std::vector<int>> year = (*tokenizer)->Encode("1999");
  ASSERT_TRUE(year.ok());
  // A dummy-prefix piece may precede the four single digits.
  EXPECT_GE(year->size(), 4u);
}

TEST_F(TrainedTokenizerTest, BosAndEosAreAddedOnRequestAndDroppedOnDecode) {
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer =
      Tokenizer::FromSerialized(*serialized_);
  ASSERT_TRUE(tokenizer.ok());
  absl::StatusOr<std::vector<int>> plain = (*tokenizer)->Encode("poetry");
  absl::StatusOr<std::vector<int>> framed =
      (*tokenizer)->Encode("poetry", {.add_bos = true, .add_eos = true});
  ASSERT_TRUE(plain.ok() && framed.ok());
  ASSERT_EQ(framed->size(), plain->size() + 2);
  EXPECT_EQ(framed->front(), 1);
  EXPECT_EQ(framed->back(), 2);
  EXPECT_EQ(*(*tokenizer)->Decode(*framed), "poetry");
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
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer =
      Tokenizer::FromSerialized(*serialized_);
  ASSERT_TRUE(tokenizer.ok());
  EXPECT_EQ((*tokenizer)->Decode({5, 400}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*tokenizer)->Decode({-1}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(TokenizerLoadTest, MissingAndCorruptFilesNameThePath) {
  absl::Status missing =
      Tokenizer::Load("/nonexistent/tokenizer.model").status();
  EXPECT_EQ(missing.code(), absl::StatusCode::kNotFound);
  EXPECT_NE(missing.message().find("/nonexistent/tokenizer.model"),
            std::string::npos);

  const std::string path = absl::StrCat(testing::TempDir(), "/corrupt.model");
  std::ofstream(path, std::ios::binary) << "this is not a protobuf";
  absl::Status corrupt = Tokenizer::Load(path).status();
  EXPECT_EQ(corrupt.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(corrupt.message().find(path), std::string::npos) << corrupt;
}

TEST(TrainTokenizerTest, RejectsEmptyCorpusAndTinyVocabulary) {
  EXPECT_EQ(TrainTokenizer({}, {}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(TrainTokenizer({"text"}, {.vocab_size = 100}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace lethe
