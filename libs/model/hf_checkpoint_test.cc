#include "libs/model/hf_checkpoint.h"

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "libs/model/safetensors.h"
#include "libs/model/tiny_llama.h"

namespace lethe {
namespace {

LlamaConfig TinyConfig(bool tied = false) {
  return LlamaConfigOf({.vocab_size = 40,
                        .hidden_size = 16,
                        .intermediate_size = 24,
                        .layers = 2,
                        .heads = 4,
                        .kv_heads = 2,
                        .tie_word_embeddings = tied});
}

std::string FreshDir(const std::string& name) {
  const std::string dir = absl::StrCat(testing::TempDir(), "/", name);
  std::filesystem::remove_all(dir);
  return dir;
}

void ExpectSameWeights(LlamaForCausalLM& a, LlamaForCausalLM& b) {
  auto b_parameters = b.named_parameters();
  ASSERT_EQ(a.named_parameters().size(), b_parameters.size());
  for (const auto& parameter : a.named_parameters()) {
    EXPECT_TRUE(torch::equal(parameter.value(), b_parameters[parameter.key()]))
        << parameter.key();
  }
}

std::vector<std::string> FilesIn(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    names.push_back(entry.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

TEST(HfCheckpointTest, SingleFileRoundTripKeepsWeightsAndOutputs) {
  torch::manual_seed(1);
  LlamaForCausalLM model(TinyConfig());
  const std::string dir = FreshDir("single");
  ASSERT_TRUE(SaveLlamaCheckpoint(model, dir, {}).ok());
  EXPECT_EQ(FilesIn(dir),
            (std::vector<std::string>{"config.json", "model.safetensors"}));
  absl::StatusOr<std::shared_ptr<LlamaForCausalLM>> loaded =
      LoadLlamaCheckpoint(dir);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  ExpectSameWeights(model, **loaded);
  torch::NoGradGuard no_grad;
  const at::Tensor ids = torch::tensor({{3, 9, 27}}, at::kLong);
  EXPECT_TRUE(torch::equal(model.Forward(ids), (*loaded)->Forward(ids)));
}

TEST(HfCheckpointTest, ShardedCheckpointLoadsToTheSameWeightsAsUnsharded) {
  torch::manual_seed(2);
  LlamaForCausalLM model(TinyConfig());
  const std::string single = FreshDir("unsharded");
  const std::string sharded = FreshDir("sharded");
  ASSERT_TRUE(SaveLlamaCheckpoint(model, single, {}).ok());
  ASSERT_TRUE(
      SaveLlamaCheckpoint(model, sharded, {.max_shard_bytes = 4000}).ok());
  const std::vector<std::string> files = FilesIn(sharded);
  EXPECT_GT(files.size(), 3u);
  EXPECT_TRUE(
      std::count(files.begin(), files.end(), "model.safetensors.index.json"));
  EXPECT_FALSE(std::count(files.begin(), files.end(), "model.safetensors"));

  absl::StatusOr<std::shared_ptr<LlamaForCausalLM>> from_single =
      LoadLlamaCheckpoint(single);
  absl::StatusOr<std::shared_ptr<LlamaForCausalLM>> from_shards =
      LoadLlamaCheckpoint(sharded);
  ASSERT_TRUE(from_single.ok()) << from_single.status();
  ASSERT_TRUE(from_shards.ok()) << from_shards.status();
  ExpectSameWeights(**from_single, **from_shards);
}

TEST(HfCheckpointTest, ResavingUnshardedRemovesOldShards) {
  torch::manual_seed(3);
  LlamaForCausalLM model(TinyConfig());
  const std::string dir = FreshDir("resave");
  ASSERT_TRUE(SaveLlamaCheckpoint(model, dir, {.max_shard_bytes = 4000}).ok());
  ASSERT_TRUE(SaveLlamaCheckpoint(model, dir, {}).ok());
  EXPECT_EQ(FilesIn(dir),
            (std::vector<std::string>{"config.json", "model.safetensors"}));
}

TEST(HfCheckpointTest, Bf16StorageRoundsWeightsAndRecordsTheDtype) {
  torch::manual_seed(4);
  LlamaForCausalLM model(TinyConfig(/*tied=*/true));
  const std::string dir = FreshDir("bf16");
  ASSERT_TRUE(SaveLlamaCheckpoint(model, dir, {.dtype = at::kBFloat16}).ok());
  absl::StatusOr<LlamaConfig> config = ReadLlamaConfig(dir + "/config.json");
  ASSERT_TRUE(config.ok());
  EXPECT_EQ(config->torch_dtype, "bfloat16");
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> file =
      SafetensorsFile::Open(dir + "/model.safetensors");
  ASSERT_TRUE(file.ok());
  EXPECT_FALSE((*file)->Contains("lm_head.weight"));  // Tied.
  EXPECT_EQ((*file)->Entry("model.norm.weight")->dtype, at::kBFloat16);

  absl::StatusOr<std::shared_ptr<LlamaForCausalLM>> loaded =
      LoadLlamaCheckpoint(dir, at::kFloat);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  auto loaded_parameters = (*loaded)->named_parameters();
  for (const auto& parameter : model.named_parameters()) {
    EXPECT_TRUE(
        torch::equal(loaded_parameters[parameter.key()],
                     parameter.value().to(at::kBFloat16).to(at::kFloat)))
        << parameter.key();
  }
}

TEST(HfCheckpointTest, IgnoresRotaryBuffersOfOldCheckpoints) {
  torch::manual_seed(5);
  LlamaForCausalLM model(TinyConfig());
  const std::string dir = FreshDir("inv_freq");
  ASSERT_TRUE(SaveLlamaCheckpoint(model, dir, {}).ok());
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  for (const auto& parameter : model.named_parameters()) {
    tensors.emplace_back(parameter.key(), parameter.value().detach());
  }
  tensors.emplace_back("model.layers.0.self_attn.rotary_emb.inv_freq",
                       torch::ones({2}));
  ASSERT_TRUE(WriteSafetensors(dir + "/model.safetensors", tensors).ok());
  EXPECT_TRUE(LoadLlamaCheckpoint(dir).ok());
}

// Writes `tensors` as the checkpoint's only weight file, with the tiny config.
std::string CheckpointWith(
    const std::string& name,
    const std::vector<std::pair<std::string, at::Tensor>>& tensors) {
  const std::string dir = FreshDir(name);
  std::filesystem::create_directories(dir);
  EXPECT_TRUE(WriteLlamaConfig(TinyConfig(), dir + "/config.json").ok());
  EXPECT_TRUE(WriteSafetensors(dir + "/model.safetensors", tensors).ok());
  return dir;
}

std::vector<std::pair<std::string, at::Tensor>> TinyWeights() {
  torch::manual_seed(6);
  LlamaForCausalLM model(TinyConfig());
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  for (const auto& parameter : model.named_parameters()) {
    tensors.emplace_back(parameter.key(), parameter.value().detach().clone());
  }
  return tensors;
}

TEST(HfCheckpointTest, MissingTensorIsNamed) {
  auto tensors = TinyWeights();
  tensors.erase(std::remove_if(tensors.begin(), tensors.end(),
                               [](const auto& entry) {
                                 return entry.first ==
                                        "model.layers.1.mlp.up_proj.weight";
                               }),
                tensors.end());
  const std::string dir = CheckpointWith("missing", tensors);
  absl::Status status = LoadLlamaCheckpoint(dir).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(status.message(),
                                "'model.layers.1.mlp.up_proj.weight'"))
      << status;
  EXPECT_TRUE(absl::StrContains(status.message(), dir)) << status;
}

TEST(HfCheckpointTest, UnexpectedTensorIsNamedWithItsFile) {
  auto tensors = TinyWeights();
  tensors.emplace_back("model.layers.2.mlp.up_proj.weight",
                       torch::ones({24, 16}));
  const std::string dir = CheckpointWith("unexpected", tensors);
  absl::Status status = LoadLlamaCheckpoint(dir).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(status.message(),
                                "'model.layers.2.mlp.up_proj.weight'"))
      << status;
  EXPECT_TRUE(absl::StrContains(status.message(), "model.safetensors"));
}

TEST(HfCheckpointTest, ShapeThatDisagreesWithConfigIsNamed) {
  auto tensors = TinyWeights();
  for (auto& [name, tensor] : tensors) {
    if (name == "model.layers.0.self_attn.k_proj.weight") {
      tensor = torch::ones({16, 16});  // Config implies 2 KV heads: [8, 16].
    }
  }
  const std::string dir = CheckpointWith("bad_shape", tensors);
  absl::Status status = LoadLlamaCheckpoint(dir).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(
      status.message(),
      "tensor 'model.layers.0.self_attn.k_proj.weight' has shape [16, 16] but"))
      << status;
  EXPECT_TRUE(absl::StrContains(status.message(), "implies [8, 16]"));
}

TEST(HfCheckpointTest, IndexNamingAMissingShardIsNotFound) {
  torch::manual_seed(7);
  LlamaForCausalLM model(TinyConfig());
  const std::string dir = FreshDir("missing_shard");
  ASSERT_TRUE(SaveLlamaCheckpoint(model, dir, {.max_shard_bytes = 4000}).ok());
  std::filesystem::remove(dir + "/model-00002-of-" +
                          FilesIn(dir)[1].substr(15, 5) + ".safetensors");
  absl::Status status = LoadLlamaCheckpoint(dir).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound) << status;
  EXPECT_TRUE(absl::StrContains(status.message(), "model-00002-of-"));
}

TEST(HfCheckpointTest, TruncatedWeightsAreDataLoss) {
  torch::manual_seed(8);
  LlamaForCausalLM model(TinyConfig());
  const std::string dir = FreshDir("truncated");
  ASSERT_TRUE(SaveLlamaCheckpoint(model, dir, {}).ok());
  const std::string path = dir + "/model.safetensors";
  std::filesystem::resize_file(path, std::filesystem::file_size(path) - 100);
  absl::Status status = LoadLlamaCheckpoint(dir).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss) << status;
  EXPECT_TRUE(absl::StrContains(status.message(), path));
}

TEST(HfCheckpointTest, DirectoryWithoutWeightsIsNotFound) {
  const std::string dir = FreshDir("no_weights");
  std::filesystem::create_directories(dir);
  ASSERT_TRUE(WriteLlamaConfig(TinyConfig(), dir + "/config.json").ok());
  EXPECT_EQ(LoadLlamaCheckpoint(dir).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(LoadLlamaCheckpoint(FreshDir("nothing")).status().code(),
            absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace lethe
