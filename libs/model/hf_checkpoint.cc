#include "libs/model/hf_checkpoint.h"

#include <sys/stat.h>

#include <filesystem>
#include <map>
#include <set>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "libs/files/file_io.h"
#include "libs/model/llama_config.h"
#include "libs/model/safetensors.h"
#include "libs/status/status_macros.h"
#include "libs/status/torch_status.h"
#include "nlohmann/json.hpp"

namespace lethe {
namespace {

constexpr char kSingleFile[] = "model.safetensors";
constexpr char kIndexFile[] = "model.safetensors.index.json";

bool Exists(const std::string& path) {
  struct stat info;
  return stat(path.c_str(), &info) == 0;
}

std::string ShapeString(at::IntArrayRef shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

// Tensors a checkpoint may carry that Lethe's model has no parameter for.
bool IsIgnorable(const std::string& name, const LlamaConfig& config) {
  return absl::EndsWith(name, ".rotary_emb.inv_freq") ||
         (config.tie_word_embeddings && name == "lm_head.weight");
}

absl::StatusOr<std::string> DtypeConfigName(at::ScalarType dtype) {
  switch (dtype) {
    case at::kFloat:
      return std::string("float32");
    case at::kBFloat16:
      return std::string("bfloat16");
    case at::kHalf:
      return std::string("float16");
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("checkpoints store float32, bfloat16 or float16, not ",
                       c10::toString(dtype)));
  }
}

// Maps each tensor name to the file holding it, from the index or the
// single file.
absl::StatusOr<std::map<std::string, std::string>> WeightMap(
    const std::string& dir) {
  const std::string index_path = absl::StrCat(dir, "/", kIndexFile);
  const std::string single_path = absl::StrCat(dir, "/", kSingleFile);
  std::map<std::string, std::string> weight_map;
  if (Exists(single_path)) {
    ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> file,
                     SafetensorsFile::Open(single_path));
    for (const std::string& name : file->names()) {
      weight_map[name] = single_path;
    }
    return weight_map;
  }
  if (!Exists(index_path)) {
    if (Exists(absl::StrCat(dir, "/pytorch_model.bin"))) {
      return absl::UnimplementedError(absl::StrCat(
          dir,
          " holds pytorch_model.bin; Lethe reads safetensors only "
          "(convert with save_pretrained(..., safe_serialization=True))"));
    }
    return absl::NotFoundError(
        absl::StrCat(dir, " has neither ", kSingleFile, " nor ", kIndexFile));
  }
  ASSIGN_OR_RETURN(const std::string text, ReadFileToString(index_path));
  const nlohmann::json index =
      nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (index.is_discarded() || !index.is_object() ||
      !index.contains("weight_map") || !index["weight_map"].is_object()) {
    return absl::DataLossError(
        absl::StrCat(index_path, ": not a JSON object with a weight_map"));
  }
  for (const auto& [name, file] : index["weight_map"].items()) {
    if (!file.is_string() ||
        file.get<std::string>().find('/') != std::string::npos) {
      return absl::DataLossError(
          absl::StrCat(index_path, ": weight_map entry for '", name,
                       "' must be a file name in the same directory"));
    }
    weight_map[name] = absl::StrCat(dir, "/", file.get<std::string>());
  }
  return weight_map;
}

// One tensor of the checkpoint: the model parameters `parts`, concatenated
// along dimension 0 (one part for every family but Phi-3's fused
// projections).
struct StoredTensor {
  std::string name;
  std::vector<std::string> parts;
};

// The checkpoint's tensors in the model's parameter order (a fused tensor
// where its first part is).
std::vector<StoredTensor> CheckpointLayout(LlamaForCausalLM& model) {
  const bool fused = model.config().HasFusedCheckpointProjections();
  std::vector<StoredTensor> layout;
  for (const auto& parameter : model.named_parameters()) {
    const std::string& name = parameter.key();
    if (fused) {
      // Phi-3: qkv_proj = [q_proj; k_proj; v_proj], gate_up_proj =
      // [gate_proj; up_proj] (Phi3MLP chunks it gate first).
      const std::vector<std::pair<std::string, std::vector<std::string>>>
          groups = {
              {"self_attn.qkv_proj",
               {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"}},
              {"mlp.gate_up_proj", {"mlp.gate_proj", "mlp.up_proj"}}};
      bool grouped = false;
      for (const auto& [fused_name, members] : groups) {
        for (size_t i = 0; i < members.size(); ++i) {
          const std::string member = absl::StrCat(".", members[i], ".");
          const size_t at = name.find(member);
          if (at == std::string::npos) continue;
          grouped = true;
          if (i != 0) break;  // Listed with its group's first member.
          const std::string prefix = name.substr(0, at + 1);
          const std::string suffix = name.substr(at + member.size());
          StoredTensor tensor{absl::StrCat(prefix, fused_name, ".", suffix),
                              {}};
          for (const std::string& part : members) {
            tensor.parts.push_back(absl::StrCat(prefix, part, ".", suffix));
          }
          layout.push_back(std::move(tensor));
          break;
        }
        if (grouped) break;
      }
      if (grouped) continue;
    }
    layout.push_back({name, {name}});
  }
  return layout;
}

}  // namespace

absl::Status LoadLlamaWeights(const std::string& dir, LlamaForCausalLM& model) {
  ASSIGN_OR_RETURN(auto weight_map, WeightMap(dir));
  auto parameters = model.named_parameters();
  const std::vector<StoredTensor> layout = CheckpointLayout(model);
  const std::string config_path = absl::StrCat(dir, "/config.json");

  std::vector<std::string> missing;
  std::set<std::string> expected;
  for (const StoredTensor& tensor : layout) {
    expected.insert(tensor.name);
    if (weight_map.count(tensor.name) == 0) missing.push_back(tensor.name);
  }
  if (!missing.empty()) {
    const size_t shown = std::min<size_t>(missing.size(), 3);
    return absl::InvalidArgumentError(absl::StrCat(
        dir, ": ", missing.size(), " tensor(s) that ", config_path,
        " implies are missing from the weights, e.g. '",
        absl::StrJoin(missing.begin(), missing.begin() + shown, "', '"), "'"));
  }
  for (const auto& [name, file] : weight_map) {
    if (expected.count(name) == 0 && !IsIgnorable(name, model.config())) {
      return absl::InvalidArgumentError(absl::StrCat(
          file, ": tensor '", name, "' has no place in the model that ",
          config_path, " describes"));
    }
  }

  std::map<std::string, std::unique_ptr<SafetensorsFile>> open_files;
  torch::NoGradGuard no_grad;
  for (const StoredTensor& tensor : layout) {
    const std::string& name = tensor.name;
    const std::string& path = weight_map[name];
    if (open_files.count(path) == 0) {
      ASSIGN_OR_RETURN(open_files[path], SafetensorsFile::Open(path));
    }
    const SafetensorsFile& file = *open_files[path];
    if (!file.Contains(name)) {
      return absl::DataLossError(
          absl::StrCat(path, ": the index names this file for tensor '", name,
                       "' but the file does not hold it"));
    }
    ASSIGN_OR_RETURN(at::Tensor stored, file.Get(name));
    std::vector<at::Tensor> targets;
    std::vector<int64_t> expected_shape;
    for (const std::string& part : tensor.parts) {
      targets.push_back(parameters[part]);
      if (expected_shape.empty()) {
        expected_shape = targets.back().sizes().vec();
      } else {
        expected_shape[0] += targets.back().size(0);
      }
    }
    if (stored.sizes() != at::IntArrayRef(expected_shape)) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": tensor '", name, "' has shape ", ShapeString(stored.sizes()),
          " but ", config_path, " implies ", ShapeString(expected_shape)));
    }
    RETURN_IF_ERROR(CallTorch(absl::StrCat("loading '", name, "'"), [&] {
      int64_t offset = 0;
      for (at::Tensor& target : targets) {
        target.copy_(stored.narrow(0, offset, target.size(0)));
        offset += target.size(0);
      }
    }));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<LlamaForCausalLM>> LoadLlamaCheckpoint(
    const std::string& dir, at::ScalarType dtype) {
  ASSIGN_OR_RETURN(LlamaConfig config,
                   ReadLlamaConfig(absl::StrCat(dir, "/config.json")));
  ASSIGN_OR_RETURN(std::shared_ptr<LlamaForCausalLM> model,
                   CallTorch(absl::StrCat("building the model of ", dir), [&] {
                     auto built = std::make_shared<LlamaForCausalLM>(config);
                     built->to(dtype);
                     return built;
                   }));
  RETURN_IF_ERROR(LoadLlamaWeights(dir, *model));
  return model;
}

absl::Status SaveLlamaCheckpoint(LlamaForCausalLM& model,
                                 const std::string& dir,
                                 const SaveOptions& options) {
  if (options.max_shard_bytes <= 0) {
    return absl::InvalidArgumentError("max_shard_bytes must be positive");
  }
  ASSIGN_OR_RETURN(std::string dtype_name, DtypeConfigName(options.dtype));
  std::error_code error;
  std::filesystem::create_directories(dir, error);
  if (error) {
    return absl::PermissionDeniedError(
        absl::StrCat(dir, ": cannot create: ", error.message()));
  }

  // Greedy shards of consecutive parameters.
  std::vector<std::vector<std::pair<std::string, at::Tensor>>> shards(1);
  int64_t shard_bytes = 0;
  int64_t total_bytes = 0;
  auto parameters = model.named_parameters();
  for (const StoredTensor& tensor : CheckpointLayout(model)) {
    ASSIGN_OR_RETURN(
        at::Tensor stored, CallTorch("converting weights for saving", [&] {
          std::vector<at::Tensor> parts;
          for (const std::string& part : tensor.parts) {
            parts.push_back(parameters[part].detach().to(options.dtype));
          }
          return parts.size() == 1 ? parts[0] : torch::cat(parts, 0);
        }));
    const int64_t bytes = stored.nbytes();
    if (!shards.back().empty() &&
        shard_bytes + bytes > options.max_shard_bytes) {
      shards.emplace_back();
      shard_bytes = 0;
    }
    shards.back().emplace_back(tensor.name, std::move(stored));
    shard_bytes += bytes;
    total_bytes += bytes;
  }

  LlamaConfig config = model.config();
  config.torch_dtype = dtype_name;
  RETURN_IF_ERROR(WriteLlamaConfig(config, absl::StrCat(dir, "/config.json")));

  const std::map<std::string, std::string> metadata = {{"format", "pt"}};
  std::set<std::string> written;
  if (shards.size() == 1) {
    RETURN_IF_ERROR(WriteSafetensors(absl::StrCat(dir, "/", kSingleFile),
                                     shards[0], metadata));
    written.insert(kSingleFile);
  } else {
    nlohmann::ordered_json weight_map = nlohmann::ordered_json::object();
    for (size_t i = 0; i < shards.size(); ++i) {
      const std::string file_name = absl::StrFormat(
          "model-%05d-of-%05d.safetensors", i + 1, shards.size());
      RETURN_IF_ERROR(WriteSafetensors(absl::StrCat(dir, "/", file_name),
                                       shards[i], metadata));
      for (const auto& [name, tensor] : shards[i]) weight_map[name] = file_name;
      written.insert(file_name);
    }
    nlohmann::ordered_json index;
    index["metadata"] = {{"total_size", total_bytes}};
    index["weight_map"] = weight_map;
    RETURN_IF_ERROR(WriteFileAtomically(absl::StrCat(dir, "/", kIndexFile),
                                        index.dump(2) + "\n"));
    written.insert(kIndexFile);
  }

  // Weight files of an earlier save would make the directory ambiguous.
  for (const auto& entry : std::filesystem::directory_iterator(dir, error)) {
    const std::string name = entry.path().filename().string();
    const bool weight_file = name == kSingleFile || name == kIndexFile ||
                             (absl::StartsWith(name, "model-") &&
                              absl::EndsWith(name, ".safetensors"));
    if (weight_file && written.count(name) == 0) {
      std::filesystem::remove(entry.path(), error);
    }
  }
  return absl::OkStatus();
}

}  // namespace lethe
