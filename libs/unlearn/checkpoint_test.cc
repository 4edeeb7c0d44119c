#include "libs/unlearn/checkpoint.h"

#include <sys/mount.h>
#include <sys/resource.h>
#include <torch/optim/adamw.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "libs/model/llama_model.h"
#include "libs/model/safetensors.h"
#include "libs/model/tiny_llama.h"

namespace lethe {
namespace {

namespace fs = std::filesystem;

// A model and an AdamW optimizer with state from a few steps.
struct Trained {
  explicit Trained(uint64_t seed, int hidden_size = 16) {
    torch::manual_seed(seed);
    model = std::make_shared<LlamaForCausalLM>(
        LlamaConfigOf({.hidden_size = hidden_size}));
    optimizer = std::make_unique<torch::optim::AdamW>(
        model->parameters(), torch::optim::AdamWOptions(1e-2));
  }
  void Step(int count) {
    for (int i = 0; i < count; ++i) {
      optimizer->zero_grad();
      const at::Tensor input = torch::randint(0, 32, {2, 5});
      model->Forward(input).pow(2).mean().backward();
      optimizer->step();
    }
  }
  std::shared_ptr<LlamaForCausalLM> model;
  std::unique_ptr<torch::optim::AdamW> optimizer;
};

std::string FreshDir(const std::string& name) {
  const std::string dir = testing::TempDir() + "/checkpoint_test_" + name;
  fs::remove_all(dir);
  return dir;
}

void ExpectSameParameters(torch::nn::Module& a, torch::nn::Module& b) {
  auto left = a.named_parameters(), right = b.named_parameters();
  ASSERT_EQ(left.size(), right.size());
  for (const auto& parameter : left) {
    EXPECT_TRUE(torch::equal(parameter.value(), right[parameter.key()]))
        << parameter.key();
  }
}

const torch::optim::AdamWParamState& StateOf(torch::optim::AdamW& optimizer,
                                             const at::Tensor& parameter) {
  return static_cast<const torch::optim::AdamWParamState&>(
      *optimizer.state().at(
          c10::guts::to_string(parameter.unsafeGetTensorImpl())));
}

TEST(CheckpointTest, RoundTripRestoresParametersAndOptimizerStateExactly) {
  const std::string root = FreshDir("round_trip");
  Trained source(1);
  source.Step(3);
  const auto write_start = std::chrono::steady_clock::now();
  absl::StatusOr<std::string> dir =
      WriteCheckpoint(root, {.step = 3, .epoch = 1, .run = {{"seed", "1"}}},
                      *source.model, *source.optimizer);
  const double write_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() -
                                    write_start)
          .count();
  ASSERT_TRUE(dir.ok()) << dir.status();
  EXPECT_EQ(*dir, root + "/checkpoint-00000003");
  for (const char* file :
       {"model.safetensors", "optimizer.pt", "trainer_state.json"}) {
    EXPECT_TRUE(fs::exists(*dir + "/" + file)) << file;
  }

  Trained target(2);  // Other weights, no optimizer state.
  const auto load_start = std::chrono::steady_clock::now();
  absl::StatusOr<LoadedCheckpoint> loaded = LoadLatestCheckpoint(
      root, *target.model, *target.optimizer, {{"seed", "1"}});
  const double load_seconds = std::chrono::duration<double>(
                                  std::chrono::steady_clock::now() - load_start)
                                  .count();
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  std::cout << "tiny model (" << source.model->NumParameters()
            << " parameters): write " << write_seconds * 1e3 << " ms, load "
            << load_seconds * 1e3 << " ms" << std::endl;
  EXPECT_EQ(loaded->dir, *dir);
  EXPECT_EQ(loaded->state.step, 3);
  EXPECT_EQ(loaded->state.epoch, 1);
  EXPECT_EQ(loaded->state.run.at("seed"), "1");
  EXPECT_TRUE(loaded->warnings.empty());
  ExpectSameParameters(*source.model, *target.model);

  const auto source_parameters = source.model->parameters();
  const auto target_parameters = target.model->parameters();
  for (size_t i = 0; i < source_parameters.size(); ++i) {
    const auto& expected = StateOf(*source.optimizer, source_parameters[i]);
    const auto& actual = StateOf(*target.optimizer, target_parameters[i]);
    EXPECT_EQ(actual.step(), expected.step());
    EXPECT_TRUE(torch::equal(actual.exp_avg(), expected.exp_avg())) << i;
    EXPECT_TRUE(torch::equal(actual.exp_avg_sq(), expected.exp_avg_sq())) << i;
  }
  // And the next steps agree bit for bit.
  torch::manual_seed(9);
  source.Step(2);
  torch::manual_seed(9);
  target.Step(2);
  ExpectSameParameters(*source.model, *target.model);
}

TEST(CheckpointTest, KeepsTheNewestKeepLast) {
  const std::string root = FreshDir("keep_last");
  Trained trained(1);
  for (int64_t step = 1; step <= 5; ++step) {
    trained.Step(1);
    ASSERT_TRUE(WriteCheckpoint(root, {.step = step}, *trained.model,
                                *trained.optimizer, /*keep_last=*/2)
                    .ok());
  }
  EXPECT_EQ(ListCheckpointSteps(root), (std::vector<int64_t>{4, 5}));
  ASSERT_TRUE(WriteCheckpoint(root, {.step = 6}, *trained.model,
                              *trained.optimizer, /*keep_last=*/0)
                  .ok());
  EXPECT_EQ(ListCheckpointSteps(root), (std::vector<int64_t>{4, 5, 6}));
}

// Writes checkpoints 2 and 4 from different weights; returns the weights of
// step 2.
std::shared_ptr<LlamaForCausalLM> WriteTwo(const std::string& root) {
  Trained trained(1);
  trained.Step(2);
  EXPECT_TRUE(
      WriteCheckpoint(root, {.step = 2}, *trained.model, *trained.optimizer)
          .ok());
  Trained at_two(3);
  {
    torch::NoGradGuard no_grad;
    auto source = trained.model->named_parameters();
    for (auto& parameter : at_two.model->named_parameters()) {
      parameter.value().copy_(source[parameter.key()]);
    }
  }
  trained.Step(2);
  EXPECT_TRUE(
      WriteCheckpoint(root, {.step = 4}, *trained.model, *trained.optimizer)
          .ok());
  return at_two.model;
}

void ExpectFallsBackToStepTwo(const std::string& root,
                              LlamaForCausalLM& expected,
                              const std::string& damaged_file) {
  Trained target(5);
  absl::StatusOr<LoadedCheckpoint> loaded =
      LoadLatestCheckpoint(root, *target.model, *target.optimizer);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->state.step, 2);
  ASSERT_EQ(loaded->warnings.size(), 1u);
  EXPECT_NE(loaded->warnings[0].find(damaged_file), std::string::npos)
      << loaded->warnings[0];
  ExpectSameParameters(expected, *target.model);
}

TEST(CheckpointTest, TruncatedModelFileFallsBackToThePreviousCheckpoint) {
  const std::string root = FreshDir("truncated");
  std::shared_ptr<LlamaForCausalLM> at_two = WriteTwo(root);
  const std::string model_file =
      root + "/checkpoint-00000004/model.safetensors";
  fs::resize_file(model_file, fs::file_size(model_file) - 7);
  ExpectFallsBackToStepTwo(root, *at_two, model_file);
}

TEST(CheckpointTest, FlippedByteFallsBackToThePreviousCheckpoint) {
  for (const char* name : {"model.safetensors", "optimizer.pt"}) {
    const std::string root = FreshDir(std::string("flipped_") + name);
    std::shared_ptr<LlamaForCausalLM> at_two = WriteTwo(root);
    const std::string path = root + "/checkpoint-00000004/" + name;
    std::fstream file(path, std::ios::in | std::ios::out | std::ios::binary);
    file.seekg(static_cast<std::streamoff>(fs::file_size(path) / 2));
    const char byte = static_cast<char>(file.get());
    file.seekp(static_cast<std::streamoff>(fs::file_size(path) / 2));
    file.put(static_cast<char>(byte ^ 0x10));
    file.close();
    ExpectFallsBackToStepTwo(root, *at_two, path);
  }
}

TEST(CheckpointTest, MissingStateFileFallsBackToThePreviousCheckpoint) {
  const std::string root = FreshDir("no_state");
  std::shared_ptr<LlamaForCausalLM> at_two = WriteTwo(root);
  const std::string path = root + "/checkpoint-00000004/trainer_state.json";
  fs::remove(path);
  ExpectFallsBackToStepTwo(root, *at_two, path);
}

TEST(CheckpointTest, LeftoverTemporaryDirectoryIsIgnoredThenRemoved) {
  const std::string root = FreshDir("leftover");
  Trained trained(1);
  trained.Step(1);
  ASSERT_TRUE(
      WriteCheckpoint(root, {.step = 1}, *trained.model, *trained.optimizer)
          .ok());
  // A crashed writer's partial checkpoint of a later step (pid 0 is never a
  // process's).
  const std::string leftover = root + "/.tmp-checkpoint-00000009-0";
  fs::create_directories(leftover);
  std::ofstream(leftover + "/model.safetensors") << "partial";
  EXPECT_EQ(ListCheckpointSteps(root), (std::vector<int64_t>{1}));

  Trained target(2);
  absl::StatusOr<LoadedCheckpoint> loaded =
      LoadLatestCheckpoint(root, *target.model, *target.optimizer);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->state.step, 1);
  EXPECT_TRUE(loaded->warnings.empty());

  ASSERT_TRUE(
      WriteCheckpoint(root, {.step = 2}, *trained.model, *trained.optimizer)
          .ok());
  EXPECT_FALSE(fs::exists(leftover));
}

// What a failed write must leave: no temporary directory, the newest intact
// checkpoint still `step`, loadable, holding `expected`'s parameters.
void ExpectOnlyIntactCheckpoint(const std::string& root, int64_t step,
                                torch::nn::Module& expected, int hidden_size) {
  for (const auto& entry : fs::directory_iterator(root)) {
    const std::string name = entry.path().filename().string();
    EXPECT_FALSE(name.rfind(".tmp-", 0) == 0) << "debris left: " << name;
  }
  EXPECT_EQ(ListCheckpointSteps(root), (std::vector<int64_t>{step}));
  Trained restored(9, hidden_size);
  absl::StatusOr<LoadedCheckpoint> loaded =
      LoadLatestCheckpoint(root, *restored.model, *restored.optimizer);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->state.step, step);
  EXPECT_TRUE(loaded->warnings.empty());
  ExpectSameParameters(*restored.model, expected);
}

// Unmounts on scope exit.
struct TmpfsMount {
  std::string dir;
  ~TmpfsMount() {
    if (!dir.empty()) umount2(dir.c_str(), MNT_DETACH);
  }
};

// A real full disk: a small tmpfs, filled up by another file, then freed.
TEST(CheckpointTest, AFullDiskFailsTheWriteAndKeepsThePreviousCheckpoint) {
  const std::string mount_point = FreshDir("full_disk");
  fs::create_directories(mount_point);
  TmpfsMount mounted;
  if (mount("tmpfs", mount_point.c_str(), "tmpfs", 0, "size=8m") != 0) {
    GTEST_SKIP() << "cannot mount a tmpfs at " << mount_point << " ("
                 << std::strerror(errno)
                 << "; needs root or CAP_SYS_ADMIN): the write-limit test "
                    "below covers the same failure without it";
  }
  mounted.dir = mount_point;
  const std::string root = mount_point + "/checkpoints";
  Trained trained(1, /*hidden_size=*/64);
  trained.Step(1);
  Trained at_step_1(1, 64);
  at_step_1.Step(1);
  ASSERT_TRUE(WriteCheckpoint(root, {.step = 1}, *trained.model,
                              *trained.optimizer, /*keep_last=*/1)
                  .ok());

  // Fill what is left of the file system.
  const std::string filler = mount_point + "/filler";
  {
    std::ofstream out(filler, std::ios::binary);
    const std::string block(1 << 16, 'x');
    while (out.write(block.data(), block.size())) {
    }
  }
  trained.Step(1);
  absl::StatusOr<std::string> failed =
      WriteCheckpoint(root, {.step = 2}, *trained.model, *trained.optimizer, 1);
  ASSERT_FALSE(failed.ok());
  EXPECT_NE(failed.status().message().find("No space left on device"),
            std::string::npos)
      << failed.status();
  EXPECT_NE(failed.status().message().find(root), std::string::npos)
      << "the error names the file: " << failed.status();
  ExpectOnlyIntactCheckpoint(root, 1, *at_step_1.model, 64);

  // Space comes back: the next write succeeds and prunes step 1.
  fs::remove(filler);
  absl::StatusOr<std::string> written =
      WriteCheckpoint(root, {.step = 2}, *trained.model, *trained.optimizer, 1);
  ASSERT_TRUE(written.ok()) << written.status();
  ExpectOnlyIntactCheckpoint(root, 2, *trained.model, 64);
}

// Write limits that fail the model file at its start, half way, and the
// optimizer state half way (it is the larger file); each leaves the previous
// checkpoint as it was. RLIMIT_FSIZE makes writes past the limit fail (EFBIG)
// without privileges.
TEST(CheckpointTest, AWriteFailingPartWayKeepsThePreviousCheckpoint) {
  const std::string root = FreshDir("write_limit");
  Trained trained(1, /*hidden_size=*/64);
  trained.Step(1);
  Trained at_step_1(1, 64);
  at_step_1.Step(1);
  ASSERT_TRUE(WriteCheckpoint(root, {.step = 1}, *trained.model,
                              *trained.optimizer, /*keep_last=*/1)
                  .ok());
  const std::string dir = CheckpointDirectory(root, 1);
  const uintmax_t model_bytes = fs::file_size(dir + "/model.safetensors");
  const uintmax_t optimizer_bytes = fs::file_size(dir + "/optimizer.pt");
  ASSERT_GT(model_bytes, 4096u);
  ASSERT_GT(optimizer_bytes, model_bytes);
  trained.Step(1);

  struct rlimit original;
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &original), 0);
  const sighandler_t previous = std::signal(SIGXFSZ, SIG_IGN);
  for (const uintmax_t limit : {uintmax_t{1000}, model_bytes / 2,
                                (model_bytes + optimizer_bytes) / 2}) {
    struct rlimit lowered = original;
    lowered.rlim_cur = limit;
    ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &lowered), 0);
    absl::StatusOr<std::string> failed = WriteCheckpoint(
        root, {.step = 2}, *trained.model, *trained.optimizer, 1);
    setrlimit(RLIMIT_FSIZE, &original);
    ASSERT_FALSE(failed.ok()) << "limit " << limit;
    EXPECT_NE(failed.status().message().find("File too large"),
              std::string::npos)
        << failed.status();
    ExpectOnlyIntactCheckpoint(root, 1, *at_step_1.model, 64);
  }
  std::signal(SIGXFSZ, previous);
}

// A LoRA run's frozen base is its input, not its state: checkpoints hold
// only the parameters that train, and restoring leaves frozen ones alone.
TEST(CheckpointTest, HoldsOnlyTheParametersThatTrain) {
  const std::string root = FreshDir("trained_only");
  Trained trained(1);
  trained.model->named_parameters()["model.embed_tokens.weight"]
      .set_requires_grad(false);
  trained.Step(2);
  absl::StatusOr<std::string> dir =
      WriteCheckpoint(root, {.step = 2}, *trained.model, *trained.optimizer);
  ASSERT_TRUE(dir.ok()) << dir.status();
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> file =
      SafetensorsFile::Open(*dir + "/model.safetensors");
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_FALSE((*file)->Contains("model.embed_tokens.weight"));
  EXPECT_TRUE((*file)->Contains("lm_head.weight"));
  EXPECT_EQ((*file)->names().size(), trained.model->parameters().size() - 1);

  Trained restored(2);
  at::Tensor frozen =
      restored.model->named_parameters()["model.embed_tokens.weight"];
  frozen.set_requires_grad(false);
  const at::Tensor frozen_before = frozen.clone();
  absl::StatusOr<LoadedCheckpoint> loaded =
      LoadLatestCheckpoint(root, *restored.model, *restored.optimizer);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_TRUE(torch::equal(frozen, frozen_before));
  EXPECT_TRUE(
      torch::equal(restored.model->named_parameters()["lm_head.weight"],
                   trained.model->named_parameters()["lm_head.weight"]));
}

TEST(CheckpointTest, RewritingAStepReplacesIt) {
  const std::string root = FreshDir("rewrite");
  Trained trained(1);
  trained.Step(1);
  ASSERT_TRUE(
      WriteCheckpoint(root, {.step = 1}, *trained.model, *trained.optimizer)
          .ok());
  trained.Step(1);
  ASSERT_TRUE(WriteCheckpoint(root, {.step = 1, .epoch = 7}, *trained.model,
                              *trained.optimizer)
                  .ok());
  absl::StatusOr<CheckpointState> state =
      VerifyCheckpoint(CheckpointDirectory(root, 1));
  ASSERT_TRUE(state.ok()) << state.status();
  EXPECT_EQ(state->epoch, 7);
}

TEST(CheckpointTest, NoCheckpointIsNotFound) {
  const std::string root = FreshDir("empty");
  Trained target(1);
  EXPECT_EQ(LoadLatestCheckpoint(root, *target.model, *target.optimizer)
                .status()
                .code(),
            absl::StatusCode::kNotFound);
  fs::create_directories(root);
  EXPECT_EQ(LoadLatestCheckpoint(root, *target.model, *target.optimizer)
                .status()
                .code(),
            absl::StatusCode::kNotFound);
}

TEST(CheckpointTest, OtherShapesAreAFailedPreconditionNamingTheTensor) {
  const std::string root = FreshDir("shapes");
  Trained trained(1);
  trained.Step(1);
  ASSERT_TRUE(
      WriteCheckpoint(root, {.step = 1}, *trained.model, *trained.optimizer)
          .ok());
  Trained wider(2, /*hidden_size=*/32);
  const at::Tensor before =
      wider.model->named_parameters()["model.norm.weight"].clone();
  absl::Status status =
      LoadLatestCheckpoint(root, *wider.model, *wider.optimizer).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
  EXPECT_NE(status.message().find("model.safetensors"), std::string::npos)
      << status;
  EXPECT_NE(status.message().find("model.embed_tokens.weight"),
            std::string::npos)
      << status;
  EXPECT_TRUE(torch::equal(wider.model->named_parameters()["model.norm.weight"],
                           before))
      << "a rejected checkpoint must leave the model alone";
}

TEST(CheckpointTest, OtherRunSettingsAreAFailedPrecondition) {
  const std::string root = FreshDir("run");
  Trained trained(1);
  ASSERT_TRUE(WriteCheckpoint(root, {.step = 1, .run = {{"seed", "1"}}},
                              *trained.model, *trained.optimizer)
                  .ok());
  absl::Status status =
      LoadLatestCheckpoint(root, *trained.model, *trained.optimizer,
                           {{"seed", "2"}})
          .status();
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
  EXPECT_NE(status.message().find("seed"), std::string::npos) << status;
  EXPECT_NE(status.message().find("trainer_state.json"), std::string::npos)
      << status;
}

// A trainer_state.json as WriteCheckpoint writes it, with `replace` applied
// to its text (each pair: the first occurrence of .first becomes .second).
std::string StateText(
    const std::vector<std::pair<std::string, std::string>>& replace = {}) {
  std::string text = R"({
 "epoch": 3,
 "files": {
  "model.safetensors": {"bytes": 32104, "crc32": 2914563190},
  "optimizer.pt": {"bytes": 70211, "crc32": 12345}
 },
 "format_version": 1,
 "run": {"seed": "1"},
 "step": 40
})";
  for (const auto& [from, to] : replace) {
    const size_t at = text.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    if (at != std::string::npos) text.replace(at, from.size(), to);
  }
  return text;
}

TEST(CheckpointStateTest, ParsesWhatWriteCheckpointWrites) {
  const absl::StatusOr<CheckpointStateFile> parsed =
      ParseCheckpointState(StateText(), "s.json");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->state.step, 40);
  EXPECT_EQ(parsed->state.epoch, 3);
  EXPECT_EQ(parsed->state.run,
            (std::map<std::string, std::string>{{"seed", "1"}}));
  ASSERT_EQ(parsed->files.size(), 2u);
  EXPECT_EQ(parsed->files.at("model.safetensors").bytes, 32104u);
  EXPECT_EQ(parsed->files.at("model.safetensors").crc32, 2914563190u);
  EXPECT_EQ(parsed->files.at("optimizer.pt").crc32, 12345u);
}

// Found by fuzz/checkpoint_state_fuzzer: numbers were read with
// nlohmann's get<int>() and friends, which truncate 1.5 to 1, wrap
// 2^32 + 1 to 1 and 2^32 + 12345 to 12345, turn -1 bytes into 2^64 - 1,
// and convert out-of-range floats (1e300) with undefined behaviour.
TEST(CheckpointStateTest, NumbersMustBeIntegersInRange) {
  for (const auto& [from, to] :
       std::vector<std::pair<std::string, std::string>>{
           {R"("format_version": 1)", R"("format_version": 4294967297)"},
           {R"("format_version": 1)", R"("format_version": 1.5)"},
           {R"("format_version": 1)", R"("format_version": 1e300)"},
           {R"("format_version": 1)",
            R"("format_version": 92233720368547758080)"},
           {R"("step": 40)", R"("step": -1)"},
           {R"("step": 40)", R"("step": 40.0)"},
           {R"("step": 40)", R"("step": 1e300)"},
           {R"("epoch": 3)", R"("epoch": -1e80)"},
           {R"("epoch": 3)", R"("epoch": "3")"},
           {R"("bytes": 32104)", R"("bytes": -1)"},
           {R"("bytes": 32104)", R"("bytes": -1.5)"},
           {R"("bytes": 32104)", R"("bytes": 18446744073709551615)"},
           {R"("crc32": 12345)", R"("crc32": 4294979641)"},
           {R"("crc32": 12345)", R"("crc32": -1)"},
           {R"("crc32": 12345)", R"("crc32": 1e20)"},
       }) {
    const absl::StatusOr<CheckpointStateFile> parsed =
        ParseCheckpointState(StateText({{from, to}}), "s.json");
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kDataLoss)
        << to << ": " << parsed.status();
    EXPECT_NE(parsed.status().message().find("s.json"), std::string::npos)
        << parsed.status();
  }
}

TEST(CheckpointStateTest, MalformedFilesAndRunAreDataLoss) {
  for (const std::string& text : {
           std::string("[]"),
           std::string("{\"format_version\": 1"),
           StateText({{R"("run": {"seed": "1"})", R"("run": {"seed": 1})"}}),
           StateText({{R"("run": {"seed": "1"})", R"("run": null)"}}),
           StateText({{R"("files": {)", R"("files": [{)"},
                      {"12345}\n }", "12345}\n }]"}}),
           StateText({{R"({"bytes": 70211, "crc32": 12345})", "7"}}),
           StateText({{R"("optimizer.pt")", R"("../optimizer.pt")"}}),
           StateText({{R"("optimizer.pt")", R"("optimizer.bin")"}}),
           StateText({{R"(, "crc32": 12345)", ""}}),
       }) {
    const absl::StatusOr<CheckpointStateFile> parsed =
        ParseCheckpointState(text, "s.json");
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kDataLoss)
        << text << "\n"
        << parsed.status();
  }
}

}  // namespace
}  // namespace lethe
