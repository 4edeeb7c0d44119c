#include "services/cli/eval_commands.h"

#include <cmath>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "libs/eval/tofu_eval_fixture.h"
#include "libs/eval/tofu_summary.h"
#include "libs/files/file_io.h"

namespace lethe {
namespace {

std::string WriteLog(const std::string& name, const std::string& text) {
  const std::string path = testing::TempDir() + "/" + name;
  EXPECT_TRUE(WriteFileAtomically(path, text).ok());
  return path;
}

// A log with the forget-set metrics only: two questions each.
constexpr char kEvalLog[] = R"({
  "forget_Q_A_Prob": {"value_by_index": {"0": {"prob": 0.25},
                                         "1": {"prob": 0.75}}},
  "forget_truth_ratio": {"value_by_index": {"0": {"score": 0.5},
                                            "1": {"score": 0.7}}},
  "forget_quality": {"agg_value": 0.9}
})";

constexpr char kRetainLog[] = R"({
  "forget_truth_ratio": {"value_by_index": {"0": {"score": 0.1},
                                            "1": {"score": 0.2}}}
})";

TEST(RunTofuSummaryTest, PrintsTheSummaryAsOpenUnlearningWritesIt) {
  const std::string eval = WriteLog("cli_eval.json", kEvalLog);
  const std::string retain = WriteLog("cli_retain.json", kRetainLog);
  std::ostringstream out;
  ASSERT_TRUE(RunTofuSummary(eval, retain, out).ok());
  // Both forget truth ratios lie above both retain ones: D = 1, and
  // P(D >= 1) = 2 / C(4, 2).
  EXPECT_EQ(out.str(),
            "{\n    \"forget_Q_A_Prob\": 0.5,\n"
            "    \"forget_quality\": 0.3333333333333333\n}\n");
}

TEST(RunTofuSummaryTest, WithoutRetainLogLeavesOutForgetQuality) {
  const std::string eval = WriteLog("cli_eval_alone.json", kEvalLog);
  std::ostringstream out;
  ASSERT_TRUE(RunTofuSummary(eval, "", out).ok());
  EXPECT_EQ(out.str(), "{\n    \"forget_Q_A_Prob\": 0.5\n}\n");
}

TEST(RunTofuSummaryTest, ErrorsNameTheFileAndKey) {
  const std::string eval = WriteLog("cli_eval_bad.json", kEvalLog);
  const std::string retain = WriteLog("cli_retain_bad.json", "{}");
  std::ostringstream out;
  absl::Status status = RunTofuSummary(eval, retain, out);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(status.message(), retain)) << status;
  EXPECT_TRUE(absl::StrContains(status.message(), "'forget_truth_ratio'"))
      << status;
  EXPECT_TRUE(out.str().empty());

  EXPECT_EQ(RunTofuSummary(testing::TempDir() + "/none.json", "", out).code(),
            absl::StatusCode::kNotFound);
}

// A tiny random model on tiny data, with short generations.
class RunEvalTest : public testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::TempDir() + "/run_eval";
    std::filesystem::remove_all(dir_);
    ASSERT_TRUE(WriteTinyTofuModel(dir_ + "/model", 3).ok());
    ASSERT_TRUE(WriteTinyTofuData(dir_ + "/data", 2).ok());
  }
  EvalCommand Command(const std::string& output) const {
    return {.model_dir = dir_ + "/model",
            .data_dir = dir_ + "/data",
            .output_dir = dir_ + "/" + output,
            .batch_size = 4,
            .max_new_tokens = 4,
            .threads = 1};
  }
  std::string dir_;
};

TEST_F(RunEvalTest, WritesTheLogAndItsSummary) {
  std::ostringstream out;
  absl::Status status = RunEval(Command("first"), out);
  ASSERT_TRUE(status.ok()) << status << "\n" << out.str();
  absl::StatusOr<nlohmann::ordered_json> log =
      ReadTofuEvalLog(dir_ + "/first/TOFU_EVAL.json");
  ASSERT_TRUE(log.ok()) << log.status();
  absl::StatusOr<nlohmann::ordered_json> summary =
      ReadTofuEvalLog(dir_ + "/first/TOFU_SUMMARY.json");
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_TRUE(summary->contains("model_utility"));
  EXPECT_FALSE(summary->contains("forget_quality"));
  EXPECT_TRUE(absl::StrContains(out.str(), "\"model_utility\""));

  // Against a retain log, forget_quality appears: the same model gives the
  // same truth ratios, so the KS test cannot tell them apart.
  EvalCommand again = Command("second");
  again.retain_logs = dir_ + "/first/TOFU_EVAL.json";
  ASSERT_TRUE(RunEval(again, out).ok()) << out.str();
  summary = ReadTofuEvalLog(dir_ + "/second/TOFU_SUMMARY.json");
  ASSERT_TRUE(summary.ok());
  EXPECT_EQ((*summary)["forget_quality"].get<double>(), 1.0);
}

TEST_F(RunEvalTest, BadInputIsNamed) {
  std::ostringstream out;
  EvalCommand command = Command("bad");
  command.output_dir.clear();
  absl::Status status = RunEval(command, out);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(status.message(), "--output")) << status;

  command = Command("bad");
  command.forget_split = "forget01";
  status = RunEval(command, out);
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(absl::StrContains(status.message(), "forget01_perturbed.json"))
      << status;

  command = Command("bad");
  command.retain_logs = WriteLog("not_a_retain_log.json", "{}");
  status = RunEval(command, out);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(status.message(), command.retain_logs))
      << status;
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/bad"));
}

TEST_F(RunEvalTest, MemorizationProbeWritesItsFileAndLeavesTheTofuFiles) {
  std::ostringstream out;
  ASSERT_TRUE(RunEval(Command("without_probe"), out).ok()) << out.str();
  EXPECT_FALSE(
      std::filesystem::exists(dir_ + "/without_probe/MEMORIZATION_PROBE.json"));
  EXPECT_FALSE(absl::StrContains(out.str(), "memorization probe"));

  EvalCommand command = Command("with_probe");
  command.memorization_probe = true;
  std::ostringstream probe_out;
  absl::Status status = RunEval(command, probe_out);
  ASSERT_TRUE(status.ok()) << status << "\n" << probe_out.str();
  for (const char* name : {"/TOFU_EVAL.json", "/TOFU_SUMMARY.json"}) {
    absl::StatusOr<std::string> without =
        ReadFileToString(dir_ + "/without_probe" + name);
    absl::StatusOr<std::string> with =
        ReadFileToString(dir_ + "/with_probe" + name);
    ASSERT_TRUE(without.ok() && with.ok()) << name;
    EXPECT_EQ(*with, *without) << name;
  }

  absl::StatusOr<std::string> text =
      ReadFileToString(dir_ + "/with_probe/MEMORIZATION_PROBE.json");
  ASSERT_TRUE(text.ok()) << text.status();
  const nlohmann::ordered_json probe = nlohmann::ordered_json::parse(*text);
  std::vector<std::string> keys;
  for (const auto& item : probe.items()) keys.push_back(item.key());
  EXPECT_EQ(keys, (std::vector<std::string>{
                      "forget_split", "holdout_split", "pairs", "per_depth",
                      "max_accuracy", "max_depth", "chance"}));
  EXPECT_EQ(probe["forget_split"], "forget10");
  EXPECT_EQ(probe["holdout_split"], "holdout10");
  EXPECT_EQ(probe["pairs"], 2);
  EXPECT_EQ(probe["chance"], 0.5);
  // The tiny model has 2 layers: embeddings, layer 0, final norm.
  ASSERT_EQ(probe["per_depth"].size(), 3u);
  double best = -1;
  int best_depth = -1;
  for (int depth = 0; depth < 3; ++depth) {
    const double accuracy = probe["per_depth"][depth].get<double>();
    // 2 pairs: 0 to 4 rows right of 4.
    EXPECT_EQ(accuracy * 4, std::round(accuracy * 4)) << depth;
    EXPECT_GE(accuracy, 0.0);
    EXPECT_LE(accuracy, 1.0);
    if (accuracy > best) {
      best = accuracy;
      best_depth = depth;
    }
  }
  // Every sequence ends in EOS: depth 0 (its embedding) is at chance.
  EXPECT_EQ(probe["per_depth"][0], 0.5);
  EXPECT_EQ(probe["max_accuracy"], best);
  EXPECT_EQ(probe["max_depth"], best_depth);
  EXPECT_TRUE(absl::StrContains(probe_out.str(),
                                "memorization probe (forget10 vs holdout10, "
                                "2 pairs)"))
      << probe_out.str();
}

TEST_F(RunEvalTest, OnlyMemorizationProbeWritesTheSameProbeAlone) {
  EvalCommand both = Command("both");
  both.memorization_probe = true;
  std::ostringstream out;
  ASSERT_TRUE(RunEval(both, out).ok()) << out.str();
  EvalCommand alone = Command("alone");
  alone.only_memorization_probe = true;
  alone.retain_logs = dir_ + "/no_such_log.json";  // Not read.
  std::ostringstream alone_out;
  absl::Status status = RunEval(alone, alone_out);
  ASSERT_TRUE(status.ok()) << status << "\n" << alone_out.str();
  absl::StatusOr<std::string> expected =
      ReadFileToString(dir_ + "/both/MEMORIZATION_PROBE.json");
  absl::StatusOr<std::string> actual =
      ReadFileToString(dir_ + "/alone/MEMORIZATION_PROBE.json");
  ASSERT_TRUE(expected.ok() && actual.ok());
  EXPECT_EQ(*actual, *expected);
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/alone/TOFU_EVAL.json"));
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/alone/TOFU_SUMMARY.json"));
  EXPECT_FALSE(absl::StrContains(alone_out.str(), "model_utility"));
  EXPECT_TRUE(absl::StrContains(alone_out.str(), "memorization probe"));
}

TEST_F(RunEvalTest, MemorizationProbeNeedsTwoPairsBeforeAnyModelRuns) {
  ASSERT_TRUE(WriteTinyTofuData(dir_ + "/one_question", 1).ok());
  EvalCommand command = Command("one_pair");
  command.data_dir = dir_ + "/one_question";
  command.memorization_probe = true;
  std::ostringstream out;
  absl::Status status = RunEval(command, out);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(status.message(), "--memorization_probe"))
      << status;
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/one_pair"));
}

}  // namespace
}  // namespace lethe
