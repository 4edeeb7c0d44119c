// Runs `lethe prepare-benchmark` as a real process into a fresh directory, at
// a tenth of the default size and about half its epochs to keep CI short, then
// checks TOFU's protocol held: the target model learned the forget authors, the
// retain model did not, both learned the general knowledge, and both have
// TOFU evaluation logs (the target's measured against the retain model's);
// and a second run reuses the cache. (The full-size figures are in the
// README.)
//
// Usage: prepare_benchmark_test LETHE_BINARY
#include <filesystem>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "libs/data/qa_example.h"
#include "libs/data/tofu_dataset.h"
#include "libs/eval/answer_probability.h"
#include "libs/eval/tofu_summary.h"
#include "libs/files/file_io.h"
#include "libs/model/hf_checkpoint.h"
#include "libs/subprocess/subprocess.h"
#include "libs/tokenizer/tokenizer.h"

namespace lethe {
namespace {

std::string lethe_binary;

// The file's contents, or "" when it cannot be read.
std::string ReadFile(const std::string& path) {
  return ReadFileToString(path).value_or("");
}

// Runs `lethe args...` with its output in `log`; an error when it cannot be
// started or waited for.
absl::StatusOr<ExitStatus> RunLethe(const std::vector<std::string>& args,
                                    const std::string& log) {
  std::vector<std::string> argv = {lethe_binary};
  argv.insert(argv.end(), args.begin(), args.end());
  absl::StatusOr<Subprocess> process =
      Subprocess::Start(argv, {}, {.stdout_path = log, .stderr_path = log});
  if (!process.ok()) return process.status();
  return process->Wait();
}

// Mean answer probability of the model in `model_dir` on `split`.
double MeanProbabilityOn(const std::string& model_dir,
                         const std::string& data_dir,
                         const std::string& split) {
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer =
      Tokenizer::Load(model_dir + "/tokenizer.model");
  absl::StatusOr<std::shared_ptr<LlamaForCausalLM>> model =
      LoadLlamaCheckpoint(model_dir);
  absl::StatusOr<std::vector<TofuRecord>> records =
      ReadTofuSplit(data_dir, split);
  EXPECT_TRUE(tokenizer.ok() && model.ok() && records.ok());
  if (!tokenizer.ok() || !model.ok() || !records.ok()) return -1;
  absl::StatusOr<std::vector<QaExample>> examples = TokenizeRecords(
      **tokenizer, *PromptTemplateByName("plain"), *records, 128);
  EXPECT_TRUE(examples.ok()) << examples.status();
  if (!examples.ok()) return -1;
  absl::StatusOr<std::vector<AnswerProbability>> scores =
      ScoreAnswers(**model, *examples, (*tokenizer)->eos_id());
  EXPECT_TRUE(scores.ok()) << scores.status();
  return scores.ok() ? MeanProbability(*scores) : -1;
}

std::vector<std::string> PrepareArgs(const std::string& cache) {
  return {"prepare-benchmark", "--cache_dir=" + cache, "--authors=10",
          "--base_epochs=20", "--finetune_epochs=10"};
}

TEST(PrepareBenchmarkTest, TargetKnowsTheForgetSetAndRetainDoesNot) {
  const std::string cache = testing::TempDir() + "/benchmark";
  std::filesystem::remove_all(cache);
  const std::string log = testing::TempDir() + "/prepare.log";
  const absl::StatusOr<ExitStatus> first = RunLethe(PrepareArgs(cache), log);
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_TRUE(first->success()) << first->ToString() << "\n" << ReadFile(log);
  EXPECT_FALSE(std::filesystem::exists(cache + ".partial"));

  const std::string data = cache + "/data";
  const double target_forget =
      MeanProbabilityOn(cache + "/target", data, "forget10");
  const double retain_forget =
      MeanProbabilityOn(cache + "/retain", data, "forget10");
  EXPECT_GE(target_forget, 0.5);
  EXPECT_LT(retain_forget, target_forget - 0.3)
      << "the retain model never saw the forget authors";
  for (const std::string model : {"target", "retain"}) {
    EXPECT_GE(
        MeanProbabilityOn(cache + "/" + model, data, "world_facts_perturbed"),
        0.6)
        << model << " lost the general knowledge";
  }

  for (const std::string model : {"target", "retain"}) {
    absl::StatusOr<nlohmann::ordered_json> log =
        ReadTofuEvalLog(cache + "/" + model + "/TOFU_EVAL.json");
    ASSERT_TRUE(log.ok()) << log.status();
    EXPECT_TRUE(log->contains("forget_truth_ratio")) << model;
    absl::StatusOr<nlohmann::ordered_json> summary =
        ReadTofuEvalLog(cache + "/" + model + "/TOFU_SUMMARY.json");
    ASSERT_TRUE(summary.ok()) << summary.status();
    EXPECT_GT((*summary)["model_utility"].get<double>(), 0) << model;
    // Only the target is compared with a retain log.
    EXPECT_EQ(summary->contains("forget_quality"), model == "target");
  }

  // The second run finds the cache and trains nothing.
  const absl::StatusOr<ExitStatus> second = RunLethe(PrepareArgs(cache), log);
  ASSERT_TRUE(second.ok()) << second.status();
  ASSERT_TRUE(second->success()) << ReadFile(log);
  EXPECT_TRUE(
      absl::StrContains(ReadFile(log), "reusing the prepared benchmark"))
      << ReadFile(log);
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
