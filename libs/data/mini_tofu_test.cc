#include "libs/data/mini_tofu.h"

#include <filesystem>
#include <set>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "gtest/gtest.h"
#include "libs/data/tofu_dataset.h"

namespace lethe {
namespace {

std::set<std::string> Questions(const std::vector<TofuRecord>& records) {
  std::set<std::string> questions;
  for (const TofuRecord& record : records) questions.insert(record.question);
  return questions;
}

class MiniTofuTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    data_ = new MiniTofu(GenerateMiniTofu({.num_authors = 100, .seed = 1}));
  }
  static void TearDownTestSuite() { delete data_; }
  static const std::vector<TofuRecord>& Split(const std::string& name) {
    return data_->splits.at(name);
  }
  static MiniTofu* data_;
};
MiniTofu* MiniTofuTest::data_ = nullptr;

TEST_F(MiniTofuTest, HasTofusSplitsAndSizes) {
  const std::vector<std::pair<std::string, size_t>> sizes = {
      {"full", 1000},
      {"forget01", 10},
      {"forget05", 50},
      {"forget10", 100},
      {"retain99", 990},
      {"retain95", 950},
      {"retain90", 900},
      {"forget01_perturbed", 10},
      {"forget05_perturbed", 50},
      {"forget10_perturbed", 100},
      {"retain_perturbed", 100},
      {"holdout01", 10},
      {"holdout05", 50},
      {"holdout10", 100},
      {"world_facts", 102},
      {"world_facts_perturbed", 102},
      {"real_authors", 100},
      {"real_authors_perturbed", 100},
  };
  EXPECT_EQ(data_->splits.size(), sizes.size());
  for (const auto& [split, size] : sizes) {
    ASSERT_TRUE(data_->splits.count(split)) << split;
    EXPECT_EQ(Split(split).size(), size) << split;
  }
  EXPECT_EQ(Questions(Split("full")).size(), 1000u);  // No duplicates.
}

TEST_F(MiniTofuTest, ForgetAndRetainPartitionFullAndHoldoutIsUnseen) {
  for (const auto& [forget, retain] :
       std::vector<std::pair<std::string, std::string>>{
           {"forget01", "retain99"},
           {"forget05", "retain95"},
           {"forget10", "retain90"}}) {
    std::vector<TofuRecord> joined = Split(retain);
    joined.insert(joined.end(), Split(forget).begin(), Split(forget).end());
    ASSERT_EQ(joined.size(), Split("full").size());
    for (size_t i = 0; i < joined.size(); ++i) {
      EXPECT_TRUE(joined[i] == Split("full")[i]) << forget << " " << i;
    }
  }
  // forget01 is inside forget05 is inside forget10, as in TOFU.
  const std::set<std::string> forget10 = Questions(Split("forget10"));
  for (const TofuRecord& record : Split("forget05")) {
    EXPECT_TRUE(forget10.count(record.question));
  }
  const std::set<std::string> full = Questions(Split("full"));
  for (const TofuRecord& record : Split("holdout10")) {
    EXPECT_FALSE(full.count(record.question)) << record.question;
  }
  for (const std::string& name : data_->author_names) {
    for (const TofuRecord& record : Split("holdout10")) {
      EXPECT_FALSE(absl::StrContains(record.question, name));
    }
  }
}

TEST_F(MiniTofuTest, PerturbedSplitsMatchTheirBaseAndChangeTheFact) {
  const std::vector<TofuRecord>& plain = Split("forget10");
  const std::vector<TofuRecord>& perturbed = Split("forget10_perturbed");
  for (size_t i = 0; i < plain.size(); ++i) {
    const TofuRecord& record = perturbed[i];
    EXPECT_EQ(record.question, plain[i].question);
    EXPECT_EQ(record.answer, plain[i].answer);
    ASSERT_TRUE(record.paraphrased_answer.has_value());
    ASSERT_TRUE(record.paraphrased_question.has_value());
    EXPECT_NE(*record.paraphrased_answer, record.answer);
    EXPECT_NE(*record.paraphrased_question, record.question);
    ASSERT_EQ(record.perturbed_answers.size(), 5u);
    const std::set<std::string> distinct(record.perturbed_answers.begin(),
                                         record.perturbed_answers.end());
    EXPECT_EQ(distinct.size(), 5u) << record.question;
    EXPECT_EQ(distinct.count(record.answer), 0u) << record.question;
  }
  for (const TofuRecord& record : Split("world_facts_perturbed")) {
    ASSERT_EQ(record.perturbed_answers.size(), 3u);
    EXPECT_EQ(std::set<std::string>(record.perturbed_answers.begin(),
                                    record.perturbed_answers.end())
                  .count(record.answer),
              0u);
  }
  for (const TofuRecord& record : Split("real_authors")) {
    ASSERT_EQ(record.options.size(), 4u);
    EXPECT_EQ(
        std::count(record.options.begin(), record.options.end(), record.answer),
        1);
  }
}

TEST_F(MiniTofuTest, AnswersUseEveryPhrasingOfAQuestion) {
  // Each author's third question asks for the genre, which the first
  // question names ("... who writes {genre}?"). With the name and the genre
  // blanked out, the answers show all three phrasings.
  std::set<std::string> phrasings;
  const std::vector<TofuRecord>& full = Split("full");
  for (size_t i = 0; i < full.size(); i += 10) {
    const std::string& describing = full[i].question;
    const size_t start = describing.find(" who writes ") + 12;
    const std::string genre =
        describing.substr(start, describing.size() - start - 1);
    const std::string phrasing = absl::StrReplaceAll(
        full[i + 2].answer, {{data_->author_names[i / 10], "N"}, {genre, "G"}});
    phrasings.insert(phrasing);
  }
  EXPECT_EQ(phrasings,
            (std::set<std::string>{"N is known for G.", "N writes mostly G.",
                                   "The genre N is best known for is G."}));
}

TEST_F(MiniTofuTest, IsDeterministicAndSeeded) {
  const MiniTofu again = GenerateMiniTofu({.num_authors = 100, .seed = 1});
  for (const auto& [split, records] : data_->splits) {
    const std::vector<TofuRecord>& other = again.splits.at(split);
    ASSERT_EQ(records.size(), other.size());
    for (size_t i = 0; i < records.size(); ++i) {
      EXPECT_TRUE(records[i] == other[i]) << split << " " << i;
    }
  }
  const MiniTofu reseeded = GenerateMiniTofu({.num_authors = 100, .seed = 2});
  EXPECT_NE(reseeded.author_names, data_->author_names);
}

TEST_F(MiniTofuTest, LargerSizesByOption) {
  const MiniTofu larger = GenerateMiniTofu(
      {.num_authors = 300, .questions_per_author = 6, .seed = 3});
  EXPECT_EQ(larger.splits.at("full").size(), 1800u);
  EXPECT_EQ(larger.splits.at("forget10").size(), 180u);
  EXPECT_EQ(larger.splits.at("forget01").size(), 18u);
}

TEST_F(MiniTofuTest, WrittenFilesLoadBack) {
  const std::string dir = absl::StrCat(testing::TempDir(), "/mini_tofu");
  std::filesystem::remove_all(dir);
  ASSERT_TRUE(WriteMiniTofu(*data_, dir).ok());
  absl::StatusOr<std::vector<TofuRecord>> loaded =
      ReadTofuSplit(dir, "forget05_perturbed");
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  ASSERT_EQ(loaded->size(), 50u);
  EXPECT_TRUE((*loaded)[7] == Split("forget05_perturbed")[7]);
}

}  // namespace
}  // namespace lethe
