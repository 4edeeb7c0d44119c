#include "libs/model/hf_checkpoint.h"

#include <sys/stat.h>

#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "libs/files/file_io.h"
#include "libs/logging/logging.h"
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

// Whether `name` is a LoRA adapter's parameter (lora.h registers lora_A
// and lora_B under the projection's Linear): not part of a checkpoint.
bool IsAdapterParameter(const std::string& name) {
  return absl::StrContains(name, ".lora_A.") ||
         absl::StrContains(name, ".lora_B.");
}

// The checkpoint's tensors in the model's parameter order (a fused tensor
// where its first part is). Adapter parameters are not among them.
std::vector<StoredTensor> CheckpointLayout(LlamaForCausalLM& model) {
  const bool fused = model.config().HasFusedCheckpointProjections();
  std::vector<StoredTensor> layout;
  for (const auto& parameter : model.named_parameters()) {
    const std::string& name = parameter.key();
    if (IsAdapterParameter(name)) continue;
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

// The checkpoint's weight files, opened on first use.
class CheckpointFiles {
 public:
  explicit CheckpointFiles(std::map<std::string, std::string> weight_map)
      : weight_map_(std::move(weight_map)) {}
  const std::map<std::string, std::string>& weight_map() const {
    return weight_map_;
  }
  // The open file holding tensor `name`; DATA_LOSS when the index names a
  // file that does not hold it.
  absl::StatusOr<const SafetensorsFile*> FileFor(const std::string& name) {
    const std::string& path = weight_map_.at(name);
    std::unique_ptr<SafetensorsFile>& file = open_[path];
    if (file == nullptr) {
      ASSIGN_OR_RETURN(file, SafetensorsFile::Open(path));
    }
    if (!file->Contains(name)) {
      return absl::DataLossError(
          absl::StrCat(path, ": the index names this file for tensor '", name,
                       "' but the file does not hold it"));
    }
    return file.get();
  }

 private:
  std::map<std::string, std::string> weight_map_;
  std::map<std::string, std::unique_ptr<SafetensorsFile>> open_;
};

// One checkpoint tensor located in its file and checked against the
// parameters it fills.
struct LocatedTensor {
  const StoredTensor* tensor;
  const SafetensorsFile* file;
  SafetensorsEntry entry;
  std::vector<at::Tensor> targets;  // The model's parameters, in order.
};

// Checks the checkpoint's tensor names and shapes against `model` and
// locates every tensor the model needs.
absl::StatusOr<std::vector<LocatedTensor>> LocateTensors(
    const std::string& dir, LlamaForCausalLM& model,
    const std::vector<StoredTensor>& layout, CheckpointFiles& files) {
  const std::string config_path = absl::StrCat(dir, "/config.json");
  std::vector<std::string> missing;
  std::set<std::string> expected;
  for (const StoredTensor& tensor : layout) {
    expected.insert(tensor.name);
    if (files.weight_map().count(tensor.name) == 0) {
      missing.push_back(tensor.name);
    }
  }
  if (!missing.empty()) {
    const size_t shown = std::min<size_t>(missing.size(), 3);
    return absl::InvalidArgumentError(absl::StrCat(
        dir, ": ", missing.size(), " tensor(s) that ", config_path,
        " implies are missing from the weights, e.g. '",
        absl::StrJoin(missing.begin(), missing.begin() + shown, "', '"), "'"));
  }
  for (const auto& [name, file] : files.weight_map()) {
    if (expected.count(name) == 0 && !IsIgnorable(name, model.config())) {
      return absl::InvalidArgumentError(absl::StrCat(
          file, ": tensor '", name, "' has no place in the model that ",
          config_path, " describes"));
    }
  }

  auto parameters = model.named_parameters();
  std::vector<LocatedTensor> located;
  located.reserve(layout.size());
  for (const StoredTensor& tensor : layout) {
    LocatedTensor entry{&tensor, nullptr, {}, {}};
    ASSIGN_OR_RETURN(entry.file, files.FileFor(tensor.name));
    ASSIGN_OR_RETURN(entry.entry, entry.file->Entry(tensor.name));
    std::vector<int64_t> expected_shape;
    for (const std::string& part : tensor.parts) {
      entry.targets.push_back(parameters[part]);
      if (expected_shape.empty()) {
        expected_shape = entry.targets.back().sizes().vec();
      } else {
        expected_shape[0] += entry.targets.back().size(0);
      }
    }
    if (entry.entry.shape != expected_shape) {
      return absl::InvalidArgumentError(
          absl::StrCat(entry.file->path(), ": tensor '", tensor.name,
                       "' has shape ", ShapeString(entry.entry.shape), " but ",
                       config_path, " implies ", ShapeString(expected_shape)));
    }
    located.push_back(std::move(entry));
  }
  return located;
}

bool IsCheckpointDtype(at::ScalarType dtype) {
  return dtype == at::kFloat || dtype == at::kBFloat16 || dtype == at::kHalf;
}

// kAsStored's dtype (see WeightsDtype).
at::ScalarType StoredDtype(const std::vector<LocatedTensor>& located,
                           const LlamaConfig& config) {
  std::set<at::ScalarType> dtypes;
  for (const LocatedTensor& tensor : located) dtypes.insert(tensor.entry.dtype);
  if (dtypes.size() == 1 && IsCheckpointDtype(*dtypes.begin())) {
    return *dtypes.begin();
  }
  if (config.torch_dtype == "bfloat16") return at::kBFloat16;
  if (config.torch_dtype == "float16") return at::kHalf;
  return at::kFloat;
}

std::string Megabytes(int64_t bytes) {
  return absl::StrFormat("%.1f MB", static_cast<double>(bytes) / 1e6);
}

// Builds the model of `dir` in `dtype`, or in the stored dtype when unset.
absl::StatusOr<std::shared_ptr<LlamaForCausalLM>> LoadCheckpoint(
    const std::string& dir, std::optional<at::ScalarType> dtype) {
  ASSIGN_OR_RETURN(LlamaConfig config,
                   ReadLlamaConfig(absl::StrCat(dir, "/config.json")));
  ASSIGN_OR_RETURN(auto weight_map, WeightMap(dir));
  CheckpointFiles files(std::move(weight_map));
  ASSIGN_OR_RETURN(std::shared_ptr<LlamaForCausalLM> model,
                   CallTorch(absl::StrCat("building the model of ", dir), [&] {
                     return std::make_shared<LlamaForCausalLM>(
                         config, ParameterInit::kUninitialized);
                   }));
  const std::vector<StoredTensor> layout = CheckpointLayout(*model);
  ASSIGN_OR_RETURN(std::vector<LocatedTensor> located,
                   LocateTensors(dir, *model, layout, files));
  const at::ScalarType target = dtype.value_or(StoredDtype(located, config));

  int64_t mapped_bytes = 0, converted_bytes = 0;
  int mapped_tensors = 0, converted_tensors = 0;
  for (LocatedTensor& tensor : located) {
    const std::string& name = tensor.tensor->name;
    at::Tensor data;
    if (tensor.entry.dtype == target) {
      ASSIGN_OR_RETURN(data, tensor.file->Get(name));
    } else {
      ASSIGN_OR_RETURN(data, tensor.file->GetConverted(name, target));
    }
    const bool mapped = tensor.file->Maps(data.data_ptr());
    (mapped ? mapped_bytes : converted_bytes) += data.nbytes();
    ++(mapped ? mapped_tensors : converted_tensors);
    RETURN_IF_ERROR(CallTorch(absl::StrCat("loading '", name, "'"), [&] {
      if (tensor.targets.size() == 1) {
        tensor.targets[0].set_data(data);
        return;
      }
      int64_t offset = 0;
      for (at::Tensor& part : tensor.targets) {
        part.set_data(data.narrow(0, offset, part.size(0)));
        offset += part.size(0);
      }
    }));
  }
  LETHE_LOG(INFO) << "loaded " << dir << " as "
                  << DtypeConfigName(target).value_or(c10::toString(target))
                  << ": " << mapped_tensors << " tensors ("
                  << Megabytes(mapped_bytes) << ") used in place from the "
                  << "mapped files, " << converted_tensors << " ("
                  << Megabytes(converted_bytes) << ") converted or copied";
  return model;
}

// Storage dtype for SaveOptions' default.
at::ScalarType ModelDtype(LlamaForCausalLM& model) {
  const std::vector<at::Tensor> parameters = model.parameters();
  if (parameters.empty()) return at::kFloat;
  const at::ScalarType dtype = parameters.front().scalar_type();
  return IsCheckpointDtype(dtype) ? dtype : at::kFloat;
}

}  // namespace

absl::StatusOr<WeightsDtype> ParseWeightsDtype(absl::string_view text) {
  const std::string lower = absl::AsciiStrToLower(text);
  if (lower.empty() || lower == "fp32" || lower == "float32") {
    return WeightsDtype::kFloat32;
  }
  if (lower == "bf16" || lower == "bfloat16") return WeightsDtype::kBFloat16;
  if (lower == "fp16" || lower == "float16") return WeightsDtype::kFloat16;
  if (lower == "auto") return WeightsDtype::kAsStored;
  return absl::InvalidArgumentError(
      absl::StrCat("weights dtype '", text,
                   "' is none of fp32 (float32), bf16 (bfloat16), fp16 "
                   "(float16) and auto (as stored)"));
}

std::string WeightsDtypeName(WeightsDtype dtype) {
  switch (dtype) {
    case WeightsDtype::kFloat32:
      return "fp32";
    case WeightsDtype::kBFloat16:
      return "bf16";
    case WeightsDtype::kFloat16:
      return "fp16";
    case WeightsDtype::kAsStored:
      return "auto";
  }
  return "fp32";
}

absl::Status LoadLlamaWeights(const std::string& dir, LlamaForCausalLM& model) {
  ASSIGN_OR_RETURN(auto weight_map, WeightMap(dir));
  CheckpointFiles files(std::move(weight_map));
  const std::vector<StoredTensor> layout = CheckpointLayout(model);
  ASSIGN_OR_RETURN(std::vector<LocatedTensor> located,
                   LocateTensors(dir, model, layout, files));
  torch::NoGradGuard no_grad;
  for (LocatedTensor& tensor : located) {
    const std::string& name = tensor.tensor->name;
    ASSIGN_OR_RETURN(at::Tensor stored, tensor.file->Get(name));
    RETURN_IF_ERROR(CallTorch(absl::StrCat("loading '", name, "'"), [&] {
      int64_t offset = 0;
      for (at::Tensor& target : tensor.targets) {
        target.copy_(stored.narrow(0, offset, target.size(0)));
        offset += target.size(0);
      }
    }));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<LlamaForCausalLM>> LoadLlamaCheckpoint(
    const std::string& dir, const LoadOptions& options) {
  switch (options.weights_dtype) {
    case WeightsDtype::kFloat32:
      return LoadCheckpoint(dir, at::kFloat);
    case WeightsDtype::kBFloat16:
      return LoadCheckpoint(dir, at::kBFloat16);
    case WeightsDtype::kFloat16:
      return LoadCheckpoint(dir, at::kHalf);
    case WeightsDtype::kAsStored:
      return LoadCheckpoint(dir, std::nullopt);
  }
  return absl::InvalidArgumentError("unknown WeightsDtype");
}

absl::StatusOr<std::shared_ptr<LlamaForCausalLM>> LoadLlamaCheckpointAs(
    const std::string& dir, at::ScalarType dtype) {
  if (!at::isFloatingType(dtype)) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot load ", dir, " into ", c10::toString(dtype),
                     " parameters: not a floating-point dtype"));
  }
  return LoadCheckpoint(dir, dtype);
}

absl::Status SaveLlamaCheckpoint(LlamaForCausalLM& model,
                                 const std::string& dir,
                                 const SaveOptions& options) {
  if (options.max_shard_bytes <= 0) {
    return absl::InvalidArgumentError("max_shard_bytes must be positive");
  }
  for (const auto& parameter : model.named_parameters()) {
    if (IsAdapterParameter(parameter.key())) {
      return absl::FailedPreconditionError(absl::StrCat(
          "cannot save ", dir, " as a plain checkpoint: the model has LoRA ",
          "adapters (", parameter.key(), "); merge them first (MergeLora) ",
          "or save the adapter alone (SaveLoraAdapter)"));
    }
  }
  const at::ScalarType dtype = options.dtype.value_or(ModelDtype(model));
  ASSIGN_OR_RETURN(std::string dtype_name, DtypeConfigName(dtype));
  std::error_code error;
  std::filesystem::create_directories(dir, error);
  if (error) {
    return absl::PermissionDeniedError(
        absl::StrCat(dir, ": cannot create: ", error.message()));
  }

  // Greedy shards of consecutive parameters. Each tensor is converted (or
  // fused, or moved off a GPU) only when the writer reaches it.
  std::vector<std::vector<SafetensorsSource>> shards(1);
  int64_t shard_bytes = 0;
  int64_t total_bytes = 0;
  auto parameters = model.named_parameters();
  for (const StoredTensor& tensor : CheckpointLayout(model)) {
    std::vector<at::Tensor> parts;
    std::vector<int64_t> shape;
    for (const std::string& part : tensor.parts) {
      parts.push_back(parameters[part]);
      if (shape.empty()) {
        shape = parts.back().sizes().vec();
      } else {
        shape[0] += parts.back().size(0);
      }
    }
    int64_t bytes = c10::elementSize(dtype);
    for (const int64_t size : shape) bytes *= size;
    if (!shards.back().empty() &&
        shard_bytes + bytes > options.max_shard_bytes) {
      shards.emplace_back();
      shard_bytes = 0;
    }
    shards.back().push_back(
        {tensor.name, dtype, shape,
         [parts, dtype]() -> absl::StatusOr<at::Tensor> {
           return CallTorch("converting weights for saving", [&] {
             std::vector<at::Tensor> converted;
             for (const at::Tensor& part : parts) {
               converted.push_back(part.detach().to(dtype));
             }
             return converted.size() == 1 ? converted[0]
                                          : torch::cat(converted, 0);
           });
         }});
    shard_bytes += bytes;
    total_bytes += bytes;
  }

  LlamaConfig config = model.config();
  config.torch_dtype = dtype_name;
  RETURN_IF_ERROR(WriteLlamaConfig(config, absl::StrCat(dir, "/config.json")));

  const std::map<std::string, std::string> metadata = {{"format", "pt"}};
  std::set<std::string> written;
  if (shards.size() == 1) {
    RETURN_IF_ERROR(WriteSafetensorsStreaming(
        absl::StrCat(dir, "/", kSingleFile), shards[0], metadata));
    written.insert(kSingleFile);
  } else {
    nlohmann::ordered_json weight_map = nlohmann::ordered_json::object();
    for (size_t i = 0; i < shards.size(); ++i) {
      const std::string file_name = absl::StrFormat(
          "model-%05d-of-%05d.safetensors", i + 1, shards.size());
      RETURN_IF_ERROR(WriteSafetensorsStreaming(
          absl::StrCat(dir, "/", file_name), shards[i], metadata));
      for (const SafetensorsSource& source : shards[i]) {
        weight_map[source.name] = file_name;
      }
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
