#include "libs/eval/tofu_eval_data.h"

#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "libs/data/tofu_dataset.h"
#include "libs/eval/tofu_eval_fixture.h"

namespace lethe {
namespace {

class ReadTofuEvalDataTest : public testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::TempDir() + "/read_tofu_eval_data";
    std::filesystem::remove_all(dir_);
    ASSERT_TRUE(WriteTinyTofuData(dir_, 2).ok());
  }
  std::string dir_;
};

TEST_F(ReadTofuEvalDataTest, ReadsEverySet) {
  absl::StatusOr<TofuEvalData> data = ReadTofuEvalData(dir_, "forget10");
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_EQ(data->forget.size(), 2u);
  EXPECT_EQ(data->holdout.size(), 2u);
  EXPECT_EQ(data->world_facts.size(), 2u);
}

TEST_F(ReadTofuEvalDataTest, MissingFilesAreNamed) {
  absl::StatusOr<TofuEvalData> data = ReadTofuEvalData(dir_, "forget05");
  EXPECT_EQ(data.status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(absl::StrContains(data.status().message(),
                                dir_ + "/forget05_perturbed.json"))
      << data.status();
  std::filesystem::remove(dir_ + "/holdout10.json");
  data = ReadTofuEvalData(dir_, "forget10");
  EXPECT_EQ(data.status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(absl::StrContains(data.status().message(), "holdout10.json"))
      << data.status();
}

TEST_F(ReadTofuEvalDataTest, RecordsWithoutPerturbationsAreNamed) {
  std::vector<TofuRecord> records = *ReadTofuSplit(dir_, "retain_perturbed");
  records[1].paraphrased_answer.reset();
  ASSERT_TRUE(WriteTofuFile(dir_ + "/retain_perturbed.json", records).ok());
  absl::StatusOr<TofuEvalData> data = ReadTofuEvalData(dir_, "forget10");
  EXPECT_EQ(data.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(data.status().message(),
                                dir_ + "/retain_perturbed.json: record 1"))
      << data.status();
  EXPECT_TRUE(absl::StrContains(data.status().message(), "paraphrased_answer"));

  // A plain forget split (no perturbations) where the perturbed one belongs.
  records = *ReadTofuSplit(dir_, "holdout10");
  ASSERT_TRUE(WriteTofuFile(dir_ + "/forget10_perturbed.json", records).ok());
  data = ReadTofuEvalData(dir_, "forget10");
  EXPECT_EQ(data.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(data.status().message(),
                                "forget10_perturbed.json: record 0"))
      << data.status();
}

TEST_F(ReadTofuEvalDataTest, RealAuthorsNeedPerturbedAnswersOnly) {
  std::vector<TofuRecord> records =
      *ReadTofuSplit(dir_, "real_authors_perturbed");
  // No paraphrase is fine: the answer plays it.
  for (TofuRecord& record : records) record.paraphrased_answer.reset();
  ASSERT_TRUE(
      WriteTofuFile(dir_ + "/real_authors_perturbed.json", records).ok());
  ASSERT_TRUE(ReadTofuEvalData(dir_, "forget10").ok());

  records[1].perturbed_answers.clear();
  ASSERT_TRUE(
      WriteTofuFile(dir_ + "/real_authors_perturbed.json", records).ok());
  const absl::Status status = ReadTofuEvalData(dir_, "forget10").status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(
      absl::StrContains(status.message(),
                        "real_authors_perturbed.json: record 1 has no "
                        "perturbed_answer, which the truth ratio of the real "
                        "authors set needs"))
      << status;
}

TEST_F(ReadTofuEvalDataTest, EmptySetsAreInvalid) {
  ASSERT_TRUE(WriteTofuFile(dir_ + "/world_facts_perturbed.json", {}).ok());
  const absl::Status status = ReadTofuEvalData(dir_, "forget10").status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(
      status.message(),
      "world_facts_perturbed.json: no questions (the world facts set)"))
      << status;
}

TEST_F(ReadTofuEvalDataTest, SplitNamesMustNameTheirHoldout) {
  EXPECT_EQ(ReadTofuEvalData(dir_, "retain90").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ReadTofuEvalData(dir_, "forget").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ReadTofuEvalData(dir_, "forget1x").status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace lethe
