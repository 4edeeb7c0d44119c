// Runs the real `lethe unlearn` as a separate process on a tiny random model
// and tiny TOFU data: it must write a loadable Hugging Face model (in
// <output>/model) that moved away from the forget answers, a JSON log of
// every step's loss components, and the reference log-prob cache and final
// checkpoint that a rerun reuses; bad input must fail with a message naming
// what is wrong.
//
// Usage: unlearn_process_test LETHE_BINARY
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "libs/data/tofu_dataset.h"
#include "libs/eval/tofu_eval_fixture.h"
#include "libs/files/file_io.h"
#include "libs/model/hf_checkpoint.h"
#include "nlohmann/json.hpp"
#include "tests/cli_runner.h"

namespace lethe {
namespace {

std::string lethe_binary;

class UnlearnProcessTest : public testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::TempDir() + "/unlearn_process";
    std::filesystem::remove_all(dir_);
    ASSERT_TRUE(WriteTinyTofuModel(dir_ + "/model", 3).ok());
    ASSERT_TRUE(WriteTinyTofuData(dir_ + "/data", 8).ok());
  }

  std::vector<std::string> Args(const std::string& method,
                                const std::string& output) {
    return {"unlearn",
            "--model=" + dir_ + "/model",
            "--data=" + dir_ + "/data",
            "--forget_split=forget10_perturbed",
            "--retain_split=retain_perturbed",
            "--method=" + method,
            "--epochs=2",
            "--batch_size=4",
            "--learning_rate=1e-2",
            "--warmup_epochs=0",
            "--threads=1",
            "--output=" + output};
  }

  std::string dir_;
};

TEST_F(UnlearnProcessTest, WritesModelLogAndReusableReferenceCache) {
  const std::string output = dir_ + "/npo_rt";
  CliResult result = RunCli(lethe_binary, Args("NPO_RT", output));
  ASSERT_TRUE(result.exit.success())
      << result.exit.ToString() << "\n"
      << result.stdout_text << result.stderr_text;
  EXPECT_TRUE(LoadLlamaCheckpoint(output + "/model").ok());
  EXPECT_TRUE(std::filesystem::exists(output + "/model/tokenizer.model"));
  const nlohmann::json log = nlohmann::json::parse(
      ReadFileToString(output + "/unlearning_log.json").value_or("{}"));
  EXPECT_EQ(log.value("method", ""), "NPO_RT");
  ASSERT_TRUE(log.contains("steps"));
  absl::StatusOr<std::vector<TofuRecord>> forget =
      ReadTofuSplit(dir_ + "/data", "forget10_perturbed");
  ASSERT_TRUE(forget.ok());
  ASSERT_EQ(log["steps"].size(), 2 * ((forget->size() + 3) / 4))
      << "two epochs of batches of 4";
  const nlohmann::json& first = log["steps"][0];
  // At the reference the NPO weight is 1, up to rounding: the reference
  // log-probs are cached from padded batches, the step packs its sequences
  // (a different summation order, about 1e-7 relative in a log-prob).
  EXPECT_NEAR(first["components"]["npo_weight_mean"].get<double>(), 1.0, 1e-5)
      << "at the reference the NPO weight is 1";
  EXPECT_TRUE(first["components"].contains("retain_nll"));
  const nlohmann::json& last = log["steps"].back();
  EXPECT_LT(last["components"]["forget_log_prob_mean"].get<double>(),
            first["components"]["forget_log_prob_mean"].get<double>());

  const std::string cache = output + "/reference_log_probs.json";
  ASSERT_TRUE(std::filesystem::exists(cache));
  const auto written = std::filesystem::last_write_time(cache);
  result = RunCli(lethe_binary, Args("NPO_RT", output));
  ASSERT_TRUE(result.exit.success()) << result.stderr_text;
  EXPECT_EQ(std::filesystem::last_write_time(cache), written)
      << "the rerun must reuse the cache, not rewrite it";
  EXPECT_TRUE(absl::StrContains(
      result.stdout_text,
      absl::StrCat("resumed from step ", log["steps"].size())))
      << "the rerun resumes from the final checkpoint: " << result.stdout_text;
  const nlohmann::json rerun_log = nlohmann::json::parse(
      ReadFileToString(output + "/unlearning_log.json").value_or("{}"));
  EXPECT_EQ(rerun_log["steps"], log["steps"])
      << "the resumed run's log keeps the steps before its checkpoint";
}

// The reproduction of "a job's result is always its own": a second run with
// another method into the same output directory used to "resume" from the
// first run's final checkpoint and hand back its model as its own.
TEST_F(UnlearnProcessTest, AnotherRunIntoTheSameOutputIsRefused) {
  const std::string output = dir_ + "/shared_output";
  CliResult result = RunCli(lethe_binary, Args("NPO_RT", output));
  ASSERT_TRUE(result.exit.success()) << result.stderr_text;
  const std::string model = output + "/model/model.safetensors";
  const std::string before = ReadFileToString(model).value_or("");
  result = RunCli(lethe_binary, Args("GA", output));
  EXPECT_FALSE(result.exit.success()) << result.stdout_text;
  EXPECT_TRUE(absl::StrContains(result.stderr_text, "method = NPO_RT") &&
              absl::StrContains(result.stderr_text, "this run has GA"))
      << result.stderr_text;
  EXPECT_EQ(ReadFileToString(model).value_or(""), before)
      << "the refused run must leave the first run's model as it was";
}

TEST_F(UnlearnProcessTest, BadInputNamesTheProblem) {
  CliResult result = RunCli(lethe_binary, Args("RMU", dir_ + "/bad"));
  EXPECT_FALSE(result.exit.success());
  EXPECT_TRUE(absl::StrContains(result.stderr_text, "unknown method"))
      << result.stderr_text;

  std::vector<std::string> args = Args("NPO", dir_ + "/bad");
  args[3] = "--forget_split=forget99";
  result = RunCli(lethe_binary, args);
  EXPECT_FALSE(result.exit.success());
  EXPECT_TRUE(absl::StrContains(result.stderr_text, "forget99"))
      << result.stderr_text;

  args = Args("NPO", dir_ + "/bad");
  args.push_back("--beta=-1");
  result = RunCli(lethe_binary, args);
  EXPECT_FALSE(result.exit.success());
  EXPECT_TRUE(absl::StrContains(result.stderr_text, "beta"))
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
