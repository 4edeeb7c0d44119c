#include "libs/data/tofu_dataset.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace lethe {
namespace {

std::string WriteText(const std::string& name, const std::string& text) {
  const std::string path = absl::StrCat(testing::TempDir(), "/", name);
  std::ofstream(path, std::ios::binary) << text;
  return path;
}

TEST(TofuDatasetTest, ReadsJsonLinesWithEveryField) {
  const std::string path = WriteText(
      "lines.json",
      R"({"question":"Q1?","answer":"A1.","paraphrased_answer":"P1.",)"
      R"("perturbed_answer":["X1.","Y1."],"paraphrased_question":"PQ1?"})"
      "\n\n"
      R"({"question":"Q2?","option1":"a","option2":"b","option3":"c",)"
      R"("option4":"d","answer":"b"})"
      "\n");
  absl::StatusOr<std::vector<TofuRecord>> records = ReadTofuFile(path);
  ASSERT_TRUE(records.ok()) << records.status();
  ASSERT_EQ(records->size(), 2u);
  EXPECT_EQ((*records)[0].question, "Q1?");
  EXPECT_EQ((*records)[0].paraphrased_answer, "P1.");
  EXPECT_EQ((*records)[0].paraphrased_question, "PQ1?");
  EXPECT_EQ((*records)[0].perturbed_answers,
            (std::vector<std::string>{"X1.", "Y1."}));
  EXPECT_EQ((*records)[1].options,
            (std::vector<std::string>{"a", "b", "c", "d"}));
  EXPECT_FALSE((*records)[1].paraphrased_answer.has_value());
}

TEST(TofuDatasetTest, ReadsASingleJsonArray) {
  const std::string path =
      WriteText("array.json",
                R"([{"question":"When was X born?","answer":"In 1931."},)"
                R"({"question":"Where?","answer":"Bangkok \/ Thailand."}])");
  absl::StatusOr<std::vector<TofuRecord>> records = ReadTofuFile(path);
  ASSERT_TRUE(records.ok()) << records.status();
  ASSERT_EQ(records->size(), 2u);
  EXPECT_EQ((*records)[1].answer, "Bangkok / Thailand.");
}

TEST(TofuDatasetTest, WriteThenReadRoundTrips) {
  TofuRecord full;
  full.question = "Who wrote \"Ember\"?";
  full.answer = "Mira Okafor wrote it.\nTwice.";
  full.paraphrased_answer = "It was Mira Okafor.";
  full.paraphrased_question = "Ember's author?";
  full.perturbed_answers = {"Kenji Sato wrote it.", "Ana Beltran wrote it."};
  TofuRecord options;
  options.question = "Pick one";
  options.answer = "b";
  options.options = {"a", "b", "c", "d"};
  const std::string path = absl::StrCat(testing::TempDir(), "/written.json");
  ASSERT_TRUE(WriteTofuFile(path, {full, options}).ok());
  absl::StatusOr<std::vector<TofuRecord>> records = ReadTofuFile(path);
  ASSERT_TRUE(records.ok()) << records.status();
  ASSERT_EQ(records->size(), 2u);
  EXPECT_TRUE((*records)[0] == full);
  EXPECT_TRUE((*records)[1] == options);
}

TEST(TofuDatasetTest, MalformedLinesNameFileAndLine) {
  struct Case {
    std::string text;
    std::string fragment;
  };
  const std::vector<Case> cases = {
      {"{\"question\":\"Q\",\"answer\":\"A\"}\n{\"question\":\"Q\"\n",
       ":2: not valid JSON"},
      {"{\"question\":\"Q\",\"answer\":\"A\"}\n\n{\"question\":\"Q\"}\n",
       ":3: missing required field 'answer'"},
      {"{\"question\":7,\"answer\":\"A\"}\n",
       ":1: field 'question' must be a string"},
      {"{\"question\":\"Q\",\"answer\":\"A\",\"perturbed_answer\":[1]}\n",
       "'perturbed_answer' must hold strings only"},
      {"[1, 2]", ": record 0: record is not a JSON object"},
      {"[{\"question\":\"Q\",\"answer\":\"A\"},", "not a valid JSON array"},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    const std::string path =
        WriteText(absl::StrCat("bad", i, ".json"), cases[i].text);
    absl::StatusOr<std::vector<TofuRecord>> records = ReadTofuFile(path);
    EXPECT_EQ(records.status().code(), absl::StatusCode::kInvalidArgument)
        << cases[i].text;
    EXPECT_TRUE(
        absl::StrContains(records.status().message(),
                          path + cases[i].fragment) ||
        absl::StrContains(records.status().message(), cases[i].fragment))
        << records.status();
    EXPECT_TRUE(absl::StrContains(records.status().message(), path));
  }
}

TEST(TofuDatasetTest, SplitLookupTriesJsonThenJsonl) {
  const std::string dir = absl::StrCat(testing::TempDir(), "/splits");
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/only_jsonl.jsonl")
      << R"({"question":"Q","answer":"A"})";
  absl::StatusOr<std::vector<TofuRecord>> records =
      ReadTofuSplit(dir, "only_jsonl");
  ASSERT_TRUE(records.ok()) << records.status();
  EXPECT_EQ(records->size(), 1u);
  absl::Status missing = ReadTofuSplit(dir, "forget10").status();
  EXPECT_EQ(missing.code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(absl::StrContains(missing.message(), "forget10.json"));
}

// The real TOFU files, when the workspace's shared data is present.
TEST(TofuDatasetTest, RealTofuSplitsHaveTheirPublishedSizes) {
  const char* shared = std::getenv("LETHE_SHARED_DIR");
  const std::string dir =
      shared != nullptr ? absl::StrCat(shared, "/data/tofu") : std::string();
  if (dir.empty() || !std::filesystem::exists(dir + "/full.json")) {
    const std::string message =
        absl::StrCat("TOFU data not found at '", dir,
                     "' (LETHE_SHARED_DIR names the folder holding data/tofu)");
    // CI sets LETHE_REQUIRE_SHARED (it always has the data): fail there.
    const char* required = std::getenv("LETHE_REQUIRE_SHARED");
    if (required != nullptr && std::string(required) != "" &&
        std::string(required) != "0") {
      FAIL() << message << "; LETHE_REQUIRE_SHARED is set";
    }
    GTEST_SKIP() << message << "; skipping the real-data check";
  }
  const std::vector<std::pair<std::string, size_t>> expected = {
      {"full", 4000},
      {"forget10", 400},
      {"retain90", 3600},
      {"forget10_perturbed", 400},
      {"retain_perturbed", 400},
      {"real_authors_perturbed", 100},
      {"world_facts_perturbed", 117},
      {"real_authors", 100},
      {"holdout10", 400},
  };
  for (const auto& [split, size] : expected) {
    absl::StatusOr<std::vector<TofuRecord>> records = ReadTofuSplit(dir, split);
    ASSERT_TRUE(records.ok()) << records.status();
    EXPECT_EQ(records->size(), size) << split;
  }
  absl::StatusOr<std::vector<TofuRecord>> perturbed =
      ReadTofuSplit(dir, "forget10_perturbed");
  ASSERT_TRUE(perturbed.ok());
  for (const TofuRecord& record : *perturbed) {
    EXPECT_EQ(record.perturbed_answers.size(), 5u);
    EXPECT_TRUE(record.paraphrased_answer.has_value());
  }
  absl::StatusOr<std::vector<TofuRecord>> world =
      ReadTofuSplit(dir, "world_facts_perturbed");
  ASSERT_TRUE(world.ok());
  EXPECT_EQ(world->front().perturbed_answers.size(), 3u);
  absl::StatusOr<std::vector<TofuRecord>> real =
      ReadTofuSplit(dir, "real_authors");
  ASSERT_TRUE(real.ok());
  EXPECT_EQ(real->front().options.size(), 4u);
}

}  // namespace
}  // namespace lethe
