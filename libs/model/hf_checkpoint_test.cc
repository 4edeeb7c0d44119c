#include "libs/model/hf_checkpoint.h"

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
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

std::string FileBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream bytes;
  bytes << in.rdbuf();
  return bytes.str();
}

// The address ranges that map a file whose path starts with `prefix` into
// this process, from /proc/self/maps.
std::vector<std::pair<uintptr_t, uintptr_t>> MappedRanges(
    const std::string& prefix) {
  std::vector<std::pair<uintptr_t, uintptr_t>> ranges;
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    // start-end perms offset dev inode path
    const std::vector<std::string> fields =
        absl::StrSplit(line, ' ', absl::SkipEmpty());
    if (fields.size() < 6 || !absl::StartsWith(fields[5], prefix)) continue;
    const std::vector<std::string> bounds = absl::StrSplit(fields[0], '-');
    ranges.emplace_back(std::stoull(bounds[0], nullptr, 16),
                        std::stoull(bounds[1], nullptr, 16));
  }
  return ranges;
}

bool InRanges(const void* address,
              const std::vector<std::pair<uintptr_t, uintptr_t>>& ranges) {
  const auto value = reinterpret_cast<uintptr_t>(address);
  for (const auto& [begin, end] : ranges) {
    if (value >= begin && value < end) return true;
  }
  return false;
}

// A tiny model saved in bf16 (from fp32 weights redrawn to matter).
std::string Bf16Checkpoint(const std::string& name, bool tied,
                           int64_t max_shard_bytes = int64_t{5} << 30) {
  torch::manual_seed(11);
  LlamaForCausalLM model(TinyConfig(tied));
  RedrawWeights(model, 0.5);
  const std::string dir = FreshDir(name);
  EXPECT_TRUE(SaveLlamaCheckpoint(
                  model, dir,
                  {.dtype = at::kBFloat16, .max_shard_bytes = max_shard_bytes})
                  .ok());
  return dir;
}

TEST(HfCheckpointTest, AsStoredKeepsBf16InTheFileMappingWithoutACopy) {
  for (const bool tied : {false, true}) {
    SCOPED_TRACE(tied ? "tied" : "untied");
    const std::string dir =
        Bf16Checkpoint(tied ? "mapped_tied" : "mapped", tied);
    absl::StatusOr<std::shared_ptr<LlamaForCausalLM>> mapped =
        LoadLlamaCheckpoint(dir, {.weights_dtype = WeightsDtype::kAsStored});
    ASSERT_TRUE(mapped.ok()) << mapped.status();
    const auto ranges = MappedRanges(
        std::filesystem::canonical(dir + "/model.safetensors").string());
    ASSERT_FALSE(ranges.empty());
    for (const auto& parameter : (*mapped)->named_parameters()) {
      EXPECT_EQ(parameter.value().scalar_type(), at::kBFloat16)
          << parameter.key();
      EXPECT_TRUE(InRanges(parameter.value().data_ptr(), ranges))
          << parameter.key() << " was copied out of the mapping";
      EXPECT_TRUE(parameter.value().requires_grad()) << parameter.key();
    }

    // The same logits as loading in fp32 and casting the model to bf16.
    absl::StatusOr<std::shared_ptr<LlamaForCausalLM>> cast =
        LoadLlamaCheckpoint(dir);
    ASSERT_TRUE(cast.ok()) << cast.status();
    for (const auto& parameter : (*cast)->named_parameters()) {
      EXPECT_EQ(parameter.value().scalar_type(), at::kFloat);
      EXPECT_FALSE(InRanges(parameter.value().data_ptr(), ranges));
    }
    torch::NoGradGuard no_grad;
    const at::Tensor ids = torch::tensor({{3, 9, 27, 1}, {5, 5, 38, 2}});
    const at::Tensor mask = torch::tensor({{1, 1, 1, 1}, {0, 1, 1, 1}});
    const at::Tensor fp32_logits = (*cast)->Forward(ids, mask);
    (*cast)->to(at::kBFloat16);
    const at::Tensor logits = (*mapped)->Forward(ids, mask);
    EXPECT_EQ(logits.scalar_type(), at::kBFloat16);
    EXPECT_TRUE(torch::equal(logits, (*cast)->Forward(ids, mask)));
    // And close to computing in fp32 from the same (bf16-rounded) weights.
    EXPECT_LT((logits.to(at::kFloat) - fp32_logits).abs().max().item<float>(),
              0.1f * fp32_logits.abs().max().item<float>());
  }
}

TEST(HfCheckpointTest, AsStoredShardsAreMappedToo) {
  const std::string dir =
      Bf16Checkpoint("mapped_shards", /*tied=*/false, /*max_shard_bytes=*/2000);
  ASSERT_GT(FilesIn(dir).size(), 3u);
  absl::StatusOr<std::shared_ptr<LlamaForCausalLM>> model =
      LoadLlamaCheckpoint(dir, {.weights_dtype = WeightsDtype::kAsStored});
  ASSERT_TRUE(model.ok()) << model.status();
  const auto ranges =
      MappedRanges(std::filesystem::canonical(dir).string() + "/model-");
  for (const auto& parameter : (*model)->named_parameters()) {
    EXPECT_TRUE(InRanges(parameter.value().data_ptr(), ranges))
        << parameter.key();
  }
}

TEST(HfCheckpointTest, SavingAMappedBf16ModelRoundTripsTheBytes) {
  const std::string dir = Bf16Checkpoint("round_trip_bf16", /*tied=*/true);
  absl::StatusOr<std::shared_ptr<LlamaForCausalLM>> model =
      LoadLlamaCheckpoint(dir, {.weights_dtype = WeightsDtype::kAsStored});
  ASSERT_TRUE(model.ok()) << model.status();
  const std::string out = FreshDir("round_trip_bf16_out");
  ASSERT_TRUE(SaveLlamaCheckpoint(**model, out, {}).ok());
  EXPECT_EQ(FileBytes(out + "/model.safetensors"),
            FileBytes(dir + "/model.safetensors"));
  EXPECT_EQ(FileBytes(out + "/config.json"), FileBytes(dir + "/config.json"));
  EXPECT_EQ(ReadLlamaConfig(out + "/config.json")->torch_dtype, "bfloat16");

  // Saving over the directory it maps replaces the file by rename: the
  // model's weights stay readable and unchanged.
  const at::Tensor before =
      (*model)->named_parameters()["model.norm.weight"].clone();
  ASSERT_TRUE(SaveLlamaCheckpoint(**model, dir, {}).ok());
  EXPECT_TRUE(
      torch::equal((*model)->named_parameters()["model.norm.weight"], before));
  EXPECT_EQ(FileBytes(out + "/model.safetensors"),
            FileBytes(dir + "/model.safetensors"));
}

TEST(HfCheckpointTest, WritingAMappedParameterNeverChangesTheFile) {
  const std::string dir = Bf16Checkpoint("copy_on_write", /*tied=*/false);
  const std::string bytes = FileBytes(dir + "/model.safetensors");
  absl::StatusOr<std::shared_ptr<LlamaForCausalLM>> model =
      LoadLlamaCheckpoint(dir, {.weights_dtype = WeightsDtype::kAsStored});
  ASSERT_TRUE(model.ok()) << model.status();
  {
    torch::NoGradGuard no_grad;
    for (auto& parameter : (*model)->named_parameters()) {
      parameter.value().add_(1.0);
    }
  }
  EXPECT_EQ(FileBytes(dir + "/model.safetensors"), bytes);
  absl::StatusOr<std::shared_ptr<LlamaForCausalLM>> again =
      LoadLlamaCheckpoint(dir, {.weights_dtype = WeightsDtype::kAsStored});
  ASSERT_TRUE(again.ok()) << again.status();
  auto again_parameters = (*again)->named_parameters();
  for (const auto& parameter : (*model)->named_parameters()) {
    EXPECT_FALSE(
        torch::equal(parameter.value(), again_parameters[parameter.key()]))
        << parameter.key();
  }
}

TEST(HfCheckpointTest, RequestedDtypesConvertOrMap) {
  const std::string bf16_dir = Bf16Checkpoint("convert_bf16", /*tied=*/false);
  absl::StatusOr<std::shared_ptr<LlamaForCausalLM>> as_bf16 =
      LoadLlamaCheckpoint(bf16_dir, {.weights_dtype = WeightsDtype::kBFloat16});
  absl::StatusOr<std::shared_ptr<LlamaForCausalLM>> as_f16 =
      LoadLlamaCheckpoint(bf16_dir, {.weights_dtype = WeightsDtype::kFloat16});
  absl::StatusOr<std::shared_ptr<LlamaForCausalLM>> as_f64 =
      LoadLlamaCheckpoint(bf16_dir, at::kDouble);
  ASSERT_TRUE(as_bf16.ok() && as_f16.ok() && as_f64.ok());
  const auto bf16_ranges = MappedRanges(
      std::filesystem::canonical(bf16_dir + "/model.safetensors").string());
  auto f16_parameters = (*as_f16)->named_parameters();
  auto f64_parameters = (*as_f64)->named_parameters();
  for (const auto& parameter : (*as_bf16)->named_parameters()) {
    EXPECT_TRUE(InRanges(parameter.value().data_ptr(), bf16_ranges));
    const at::Tensor& f16 = f16_parameters[parameter.key()];
    EXPECT_EQ(f16.scalar_type(), at::kHalf);
    EXPECT_FALSE(InRanges(f16.data_ptr(), bf16_ranges));
    EXPECT_TRUE(torch::equal(f16, parameter.value().to(at::kHalf)));
    EXPECT_EQ(f64_parameters[parameter.key()].scalar_type(), at::kDouble);
  }
  EXPECT_EQ(LoadLlamaCheckpoint(bf16_dir, at::kLong).status().code(),
            absl::StatusCode::kInvalidArgument);
  // A braced {} is LoadOptions' default, fp32 (not the enum's 0, at::kByte).
  absl::StatusOr<std::shared_ptr<LlamaForCausalLM>> as_default =
      LoadLlamaCheckpoint(bf16_dir, {});
  ASSERT_TRUE(as_default.ok()) << as_default.status();
  EXPECT_EQ((*as_default)->parameters().front().scalar_type(), at::kFloat);

  // fp32 files under the default fp32 are mapped as well.
  torch::manual_seed(12);
  LlamaForCausalLM model(TinyConfig());
  const std::string fp32_dir = FreshDir("convert_fp32");
  ASSERT_TRUE(SaveLlamaCheckpoint(model, fp32_dir, {}).ok());
  absl::StatusOr<std::shared_ptr<LlamaForCausalLM>> fp32 =
      LoadLlamaCheckpoint(fp32_dir);
  ASSERT_TRUE(fp32.ok());
  const auto fp32_ranges = MappedRanges(
      std::filesystem::canonical(fp32_dir + "/model.safetensors").string());
  for (const auto& parameter : (*fp32)->named_parameters()) {
    EXPECT_TRUE(InRanges(parameter.value().data_ptr(), fp32_ranges));
  }
}

TEST(HfCheckpointTest, AsStoredWithMixedDtypesFollowsConfigJson) {
  auto tensors = TinyWeights();
  for (auto& [name, tensor] : tensors) {
    if (name != "model.norm.weight") tensor = tensor.to(at::kBFloat16);
  }
  const std::string dir = CheckpointWith("mixed", tensors);
  LlamaConfig config = TinyConfig();
  config.torch_dtype = "bfloat16";
  ASSERT_TRUE(WriteLlamaConfig(config, dir + "/config.json").ok());
  absl::StatusOr<std::shared_ptr<LlamaForCausalLM>> model =
      LoadLlamaCheckpoint(dir, {.weights_dtype = WeightsDtype::kAsStored});
  ASSERT_TRUE(model.ok()) << model.status();
  for (const auto& parameter : (*model)->named_parameters()) {
    EXPECT_EQ(parameter.value().scalar_type(), at::kBFloat16)
        << parameter.key();
  }
}

TEST(HfCheckpointTest, SavingKeepsTheModelsDtype) {
  torch::manual_seed(13);
  LlamaForCausalLM model(TinyConfig());
  model.to(at::kHalf);
  const std::string dir = FreshDir("keeps_f16");
  ASSERT_TRUE(SaveLlamaCheckpoint(model, dir, {}).ok());
  EXPECT_EQ(ReadLlamaConfig(dir + "/config.json")->torch_dtype, "float16");
  EXPECT_EQ((*SafetensorsFile::Open(dir + "/model.safetensors"))
                ->Entry("lm_head.weight")
                ->dtype,
            at::kHalf);
  // An explicit dtype still wins; fp64 models are stored in fp32.
  ASSERT_TRUE(SaveLlamaCheckpoint(model, dir, {.dtype = at::kFloat}).ok());
  EXPECT_EQ(ReadLlamaConfig(dir + "/config.json")->torch_dtype, "float32");
  model.to(at::kDouble);
  ASSERT_TRUE(SaveLlamaCheckpoint(model, dir, {}).ok());
  EXPECT_EQ(ReadLlamaConfig(dir + "/config.json")->torch_dtype, "float32");
}

TEST(HfCheckpointTest, WeightsDtypeNamesParse) {
  const std::vector<std::pair<std::string, WeightsDtype>> names = {
      {"", WeightsDtype::kFloat32},          {"fp32", WeightsDtype::kFloat32},
      {"float32", WeightsDtype::kFloat32},   {"bf16", WeightsDtype::kBFloat16},
      {"BFloat16", WeightsDtype::kBFloat16}, {"fp16", WeightsDtype::kFloat16},
      {"float16", WeightsDtype::kFloat16},   {"auto", WeightsDtype::kAsStored}};
  for (const auto& [text, dtype] : names) {
    absl::StatusOr<WeightsDtype> parsed = ParseWeightsDtype(text);
    ASSERT_TRUE(parsed.ok()) << text;
    EXPECT_EQ(*parsed, dtype) << text;
  }
  for (const WeightsDtype dtype :
       {WeightsDtype::kFloat32, WeightsDtype::kBFloat16, WeightsDtype::kFloat16,
        WeightsDtype::kAsStored}) {
    EXPECT_EQ(*ParseWeightsDtype(WeightsDtypeName(dtype)), dtype);
  }
  const absl::Status status = ParseWeightsDtype("int8").status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(status.message(), "'int8'")) << status;
}

}  // namespace
}  // namespace lethe
