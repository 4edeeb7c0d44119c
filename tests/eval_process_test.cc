// Runs the real `lethe` binary's evaluation commands as separate processes:
// `lethe tofu-summary` on open-unlearning's published logs must print their
// stored TOFU_SUMMARY.json byte for byte (skipped without the shared
// reference data), and `lethe eval` on a tiny random model must write a
// TOFU_EVAL.json and TOFU_SUMMARY.json whose summary (and `lethe
// tofu-summary`'s of that log) is open-unlearning's as computed independently
// by PlainTofuSummary.
//
// Usage: eval_process_test LETHE_BINARY
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "libs/eval/open_unlearning_logs.h"
#include "libs/eval/tofu_eval_fixture.h"
#include "libs/files/file_io.h"
#include "nlohmann/json.hpp"
#include "tests/cli_runner.h"

namespace lethe {
namespace {

std::string lethe_binary;

// The file's contents, or "" when it cannot be read.
std::string ReadFile(const std::string& path) {
  return ReadFileToString(path).value_or("");
}

TEST(TofuSummaryProcessTest, PrintsOpenUnlearningsStoredSummaries) {
  const std::string dir = OpenUnlearningLogDir();
  if (dir.empty()) LETHE_SKIP_WITHOUT_SHARED_DATA(kOpenUnlearningLogsMissing);
  int checked = 0;
  for (const ForgetRetainPair& pair : ForgetRetainPairs(dir)) {
    const CliResult result =
        RunCli(lethe_binary,
               {"tofu-summary", "--eval=" + pair.eval_dir + "/TOFU_EVAL.json",
                "--retain=" + pair.retain_dir + "/TOFU_EVAL.json"});
    ASSERT_TRUE(result.exit.success()) << result.stderr_text;
    EXPECT_EQ(result.stdout_text,
              ReadFile(pair.eval_dir + "/TOFU_SUMMARY.json") + "\n")
        << pair.eval_dir;
    // PlainTofuSummary, which the tiny-model test below relies on, agrees.
    const nlohmann::ordered_json retain =
        ReadLogOrFail(pair.retain_dir + "/TOFU_EVAL.json");
    nlohmann::json stored = ReadLogOrFail(pair.eval_dir + "/TOFU_SUMMARY.json");
    stored.erase("forget_quality");
    ExpectSummaryNear(
        stored, PlainTofuSummary(
                    ReadLogOrFail(pair.eval_dir + "/TOFU_EVAL.json"), &retain));
    ++checked;
  }
  // The retain models' own logs were summarised without a retain log.
  for (const std::string& path : EvalLogPaths(dir)) {
    const std::string eval_dir =
        std::filesystem::path(path).parent_path().string();
    if (!absl::StrContains(eval_dir, "_retain")) continue;
    const CliResult result =
        RunCli(lethe_binary, {"tofu-summary", "--eval=" + path});
    ASSERT_TRUE(result.exit.success()) << result.stderr_text;
    EXPECT_EQ(result.stdout_text,
              ReadFile(eval_dir + "/TOFU_SUMMARY.json") + "\n")
        << eval_dir;
    ExpectSummaryNear(ReadLogOrFail(eval_dir + "/TOFU_SUMMARY.json"),
                      PlainTofuSummary(ReadLogOrFail(path), nullptr));
    ++checked;
  }
  EXPECT_GE(checked, 2);
}

class EvalProcessTest : public testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::TempDir() + "/eval_process";
    std::filesystem::remove_all(dir_);
    ASSERT_TRUE(WriteTinyTofuModel(dir_ + "/model", 5).ok());
    ASSERT_TRUE(WriteTinyTofuData(dir_ + "/data", 3).ok());
  }
  std::vector<std::string> EvalArgs(const std::string& output) const {
    return {"eval",
            "--model=" + dir_ + "/model",
            "--data=" + dir_ + "/data",
            "--output=" + dir_ + "/" + output,
            "--max_new_tokens=8",
            "--batch_size=4",
            "--threads=1"};
  }
  std::string dir_;
};

TEST_F(EvalProcessTest, EvalWritesLogsThatTofuSummaryReproduces) {
  CliResult first = RunCli(lethe_binary, EvalArgs("first"));
  ASSERT_TRUE(first.exit.success()) << first.exit.ToString() << "\n"
                                    << first.stdout_text << first.stderr_text;
  const nlohmann::json first_summary = nlohmann::json::parse(
      ReadFile(dir_ + "/first/TOFU_SUMMARY.json"), nullptr, false);
  ASSERT_TRUE(first_summary.is_object());
  EXPECT_TRUE(first_summary.contains("model_utility"));
  EXPECT_FALSE(first_summary.contains("forget_quality"));
  const nlohmann::ordered_json first_log =
      ReadLogOrFail(dir_ + "/first/TOFU_EVAL.json");
  ASSERT_TRUE(first_log.is_object());
  ExpectSummaryNear(first_summary, PlainTofuSummary(first_log, nullptr));

  // Against its own log as the retain log, with itself as the MIA reference.
  std::vector<std::string> args = EvalArgs("second");
  args.push_back("--retain_logs=" + dir_ + "/first/TOFU_EVAL.json");
  args.push_back("--reference_model=" + dir_ + "/model");
  const CliResult second = RunCli(lethe_binary, args);
  ASSERT_TRUE(second.exit.success())
      << second.stdout_text << second.stderr_text;
  const std::string second_summary =
      ReadFile(dir_ + "/second/TOFU_SUMMARY.json");
  const nlohmann::json parsed =
      nlohmann::json::parse(second_summary, nullptr, false);
  ASSERT_TRUE(parsed.is_object());
  // Against an identical sample, the KS test's p-value is 1.
  EXPECT_EQ(parsed["forget_quality"].get<double>(), 1.0);
  EXPECT_EQ(parsed["mia_reference"].get<double>(), 0.5);
  const nlohmann::ordered_json second_log =
      ReadLogOrFail(dir_ + "/second/TOFU_EVAL.json");
  ASSERT_TRUE(second_log.is_object());
  const nlohmann::json expected = PlainTofuSummary(second_log, &first_log);
  nlohmann::json without_forget_quality = parsed;
  without_forget_quality.erase("forget_quality");
  ExpectSummaryNear(without_forget_quality, expected);

  const CliResult summary =
      RunCli(lethe_binary,
             {"tofu-summary", "--eval=" + dir_ + "/second/TOFU_EVAL.json",
              "--retain=" + dir_ + "/first/TOFU_EVAL.json"});
  ASSERT_TRUE(summary.exit.success()) << summary.stderr_text;
  nlohmann::json printed =
      nlohmann::json::parse(summary.stdout_text, nullptr, false);
  ASSERT_TRUE(printed.is_object()) << summary.stdout_text;
  EXPECT_EQ(printed["forget_quality"], 1.0);
  printed.erase("forget_quality");
  ExpectSummaryNear(printed, expected);
}

TEST_F(EvalProcessTest, BadInputFailsNamingWhatIsWrong) {
  std::vector<std::string> args = EvalArgs("bad");
  args.push_back("--forget_split=forget05");
  CliResult result = RunCli(lethe_binary, args);
  EXPECT_EQ(result.exit.code, 1) << result.exit.ToString();
  EXPECT_TRUE(absl::StrContains(result.stderr_text,
                                dir_ + "/data/forget05_perturbed.json"))
      << result.stderr_text;
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/bad"));

  result = RunCli(lethe_binary,
                  {"eval", "--data=" + dir_ + "/data", "--output=" + dir_});
  EXPECT_EQ(result.exit.code, 1);
  EXPECT_TRUE(absl::StrContains(result.stderr_text, "--model is required"))
      << result.stderr_text;

  result = RunCli(lethe_binary, {"tofu-summary"});
  EXPECT_EQ(result.exit.code, 1);
  EXPECT_TRUE(absl::StrContains(result.stderr_text, "--eval is required"))
      << result.stderr_text;

  const std::string missing = dir_ + "/no_such/TOFU_EVAL.json";
  result = RunCli(lethe_binary, {"tofu-summary", "--eval=" + missing});
  EXPECT_EQ(result.exit.code, 1);
  EXPECT_TRUE(absl::StrContains(result.stderr_text, missing))
      << result.stderr_text;
}

}  // namespace
}  // namespace lethe

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  if (argc != 2) {
    std::cerr << "usage: " << argv[0] << " LETHE_BINARY\n";
    return 2;
  }
  lethe::lethe_binary = argv[1];
  return RUN_ALL_TESTS();
}
