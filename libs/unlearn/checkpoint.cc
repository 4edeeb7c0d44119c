#include "libs/unlearn/checkpoint.h"

#include <fcntl.h>
#include <torch/serialize/archive.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>
#include <system_error>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "libs/files/file_io.h"
#include "libs/model/safetensors.h"
#include "libs/status/status_macros.h"
#include "libs/status/torch_status.h"

namespace lethe {
namespace {

namespace fs = std::filesystem;

constexpr char kPrefix[] = "checkpoint-";
constexpr char kTemporaryPrefix[] = ".tmp-checkpoint-";
constexpr char kReplacedPrefix[] = ".old-checkpoint-";
constexpr char kModelFile[] = "model.safetensors";
constexpr char kOptimizerFile[] = "optimizer.pt";
constexpr char kStateFile[] = "trainer_state.json";

std::string PaddedStep(int64_t step) { return absl::StrFormat("%08d", step); }

std::string ErrnoText() { return strerror(errno); }

// Size and CRC32 of a file's bytes.
struct FileDigest {
  uint64_t bytes = 0;
  uint32_t crc32 = 0;
};

class Crc32Accumulator {
 public:
  void Add(const void* data, size_t size) {
    const Bytef* cursor = static_cast<const Bytef*>(data);
    digest_.bytes += size;
    while (size > 0) {
      const uInt chunk = static_cast<uInt>(std::min<size_t>(size, 1u << 30));
      crc_ = crc32(crc_, cursor, chunk);
      cursor += chunk;
      size -= chunk;
    }
    digest_.crc32 = static_cast<uint32_t>(crc_);
  }
  const FileDigest& digest() const { return digest_; }

 private:
  uLong crc_ = crc32(0L, Z_NULL, 0);
  FileDigest digest_;
};

absl::StatusOr<FileDigest> DigestFile(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return absl::NotFoundError(
        absl::StrCat(path, ": cannot open: ", ErrnoText()));
  }
  Crc32Accumulator accumulator;
  std::vector<char> buffer(1 << 20);
  while (true) {
    const ssize_t got = read(fd, buffer.data(), buffer.size());
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) {
      const std::string reason = ErrnoText();
      close(fd);
      return absl::DataLossError(absl::StrCat(path, ": cannot read: ", reason));
    }
    if (got == 0) break;
    accumulator.Add(buffer.data(), static_cast<size_t>(got));
  }
  close(fd);
  return accumulator.digest();
}

absl::Status SyncPath(const std::string& path, bool directory) {
  const int fd =
      open(path.c_str(), (directory ? O_DIRECTORY : 0) | O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return absl::UnavailableError(
        absl::StrCat(path, ": cannot open to flush: ", ErrnoText()));
  }
  const bool ok = fsync(fd) == 0;
  const std::string reason = ok ? "" : ErrnoText();
  close(fd);
  if (!ok) {
    return absl::UnavailableError(
        absl::StrCat(path, ": cannot flush to disk: ", reason));
  }
  return absl::OkStatus();
}

// Writes the optimizer's archive to `path`, flushed to disk, and returns
// the digest of the bytes written.
absl::StatusOr<FileDigest> WriteOptimizer(
    const std::string& path, const torch::optim::Optimizer& optimizer) {
  const int fd =
      open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    return absl::PermissionDeniedError(
        absl::StrCat(path, ": cannot create: ", ErrnoText()));
  }
  Crc32Accumulator accumulator;
  std::string write_error;
  absl::Status serialized = CallTorch("serializing the optimizer state", [&] {
    torch::serialize::OutputArchive archive;
    optimizer.save(archive);
    // After a failed write the callback still claims every byte: LibTorch's
    // archive writer checks the count in its destructor and a short count
    // there throws from a destructor, which terminates the process (found
    // with a full disk). The error is reported once the archive is done.
    archive.save_to([&](const void* data, size_t size) -> size_t {
      if (!write_error.empty()) return size;
      const char* cursor = static_cast<const char*>(data);
      size_t left = size;
      while (left > 0) {
        const ssize_t written = write(fd, cursor, left);
        if (written < 0 && errno == EINTR) continue;
        if (written <= 0) {
          write_error = written < 0 ? ErrnoText() : "wrote nothing";
          return size;
        }
        cursor += written;
        left -= written;
      }
      accumulator.Add(data, size);
      return size;
    });
  });
  const bool synced = serialized.ok() && write_error.empty() && fsync(fd) == 0;
  if (serialized.ok() && write_error.empty() && !synced) {
    write_error = ErrnoText();
  }
  close(fd);
  if (!write_error.empty()) {
    return absl::UnavailableError(
        absl::StrCat(path, ": cannot write: ", write_error));
  }
  if (!serialized.ok()) {
    return absl::InternalError(absl::StrCat(path, ": ", serialized.message()));
  }
  return accumulator.digest();
}

constexpr int64_t kMinInt64 = std::numeric_limits<int64_t>::min();
constexpr int64_t kMaxInt64 = std::numeric_limits<int64_t>::max();

// `object[field]` as an integer in [min, max]; DATA_LOSS naming `where` and
// the field when it is missing, not an integer (1.0 and 1e3 are not) or out
// of range. (nlohmann's get<int>() would truncate 1.5 and wrap 2^32 + 1 to
// 1, and converting an out-of-range float is undefined behaviour.)
absl::StatusOr<int64_t> IntegerField(const nlohmann::json& object,
                                     const char* field, int64_t min,
                                     int64_t max, const std::string& where) {
  if (!object.contains(field)) {
    return absl::DataLossError(absl::StrCat(where, ": ", field, " is missing"));
  }
  const nlohmann::json& value = object[field];
  bool in_range = false;
  if (value.is_number_unsigned()) {
    const uint64_t number = value.get<uint64_t>();
    in_range = max >= 0 && number <= static_cast<uint64_t>(max) &&
               (min <= 0 || number >= static_cast<uint64_t>(min));
  } else if (value.is_number_integer()) {
    const int64_t number = value.get<int64_t>();
    in_range = number >= min && number <= max;
  }
  if (!in_range) {
    return absl::DataLossError(absl::StrCat(
        where, ": ", field, " must be an integer in [", min, ", ", max,
        "], got ", value.is_number() ? value.dump() : value.type_name()));
  }
  return value.get<int64_t>();
}

// The step of a checkpoint directory name, or -1.
int64_t StepOfName(const std::string& name) {
  if (!absl::StartsWith(name, kPrefix)) return -1;
  const std::string digits = name.substr(sizeof(kPrefix) - 1);
  if (digits.size() < 8 ||
      !std::all_of(digits.begin(), digits.end(),
                   [](char c) { return c >= '0' && c <= '9'; })) {
    return -1;
  }
  int64_t step = -1;
  return absl::SimpleAtoi(digits, &step) ? step : -1;
}

// The parameters a checkpoint holds: those that train. Frozen ones (a LoRA
// run's base model) are the run's input, not its state.
torch::OrderedDict<std::string, at::Tensor> TrainedParameters(
    const torch::nn::Module& model) {
  torch::OrderedDict<std::string, at::Tensor> trained;
  for (const auto& parameter : model.named_parameters()) {
    if (parameter.value().requires_grad()) {
      trained.insert(parameter.key(), parameter.value());
    }
  }
  return trained;
}

std::string ShapeText(at::IntArrayRef shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

// Every trained parameter has a tensor of the same shape and dtype in
// `file`, and the file has no other tensors.
absl::Status CheckTensorsMatch(const SafetensorsFile& file,
                               torch::nn::Module& model) {
  const auto parameters = TrainedParameters(model);
  for (const auto& parameter : parameters) {
    const std::string& name = parameter.key();
    if (!file.Contains(name)) {
      return absl::FailedPreconditionError(
          absl::StrCat(file.path(), ": has no tensor \"", name,
                       "\", which the model has: the checkpoint was written "
                       "for another model"));
    }
    ASSIGN_OR_RETURN(const SafetensorsEntry entry, file.Entry(name));
    const at::Tensor& value = parameter.value();
    if (!value.sizes().equals(entry.shape) ||
        entry.dtype != value.scalar_type()) {
      return absl::FailedPreconditionError(absl::StrCat(
          file.path(), ": tensor \"", name, "\" is ",
          c10::toString(entry.dtype), ShapeText(entry.shape),
          " but the model's is ", c10::toString(value.scalar_type()),
          ShapeText(value.sizes()),
          ": the checkpoint was written for another model"));
    }
  }
  for (const std::string& name : file.names()) {
    if (!parameters.contains(name)) {
      return absl::FailedPreconditionError(
          absl::StrCat(file.path(), ": tensor \"", name,
                       "\" is not a parameter of the model: the checkpoint "
                       "was written for another model"));
    }
  }
  return absl::OkStatus();
}

absl::Status RestoreFrom(const std::string& dir, torch::nn::Module& model,
                         torch::optim::Optimizer& optimizer) {
  const std::string model_path = absl::StrCat(dir, "/", kModelFile);
  const std::string optimizer_path = absl::StrCat(dir, "/", kOptimizerFile);
  ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> file,
                   SafetensorsFile::Open(model_path));
  RETURN_IF_ERROR(CheckTensorsMatch(*file, model));

  c10::optional<torch::Device> device;
  for (const auto& group : optimizer.param_groups()) {
    if (!group.params().empty()) {
      device = group.params().front().device();
      break;
    }
  }
  torch::serialize::InputArchive archive;
  absl::Status parsed = CallTorch("reading the optimizer state", [&] {
    archive.load_from(optimizer_path, device);
  });
  if (!parsed.ok()) {
    return absl::DataLossError(
        absl::StrCat(optimizer_path, ": ", parsed.message()));
  }
  absl::Status loaded = CallTorch("restoring the optimizer state",
                                  [&] { optimizer.load(archive); });
  if (!loaded.ok()) {
    return absl::FailedPreconditionError(absl::StrCat(
        optimizer_path, ": does not fit this optimizer: ", loaded.message()));
  }

  for (auto& parameter : TrainedParameters(model)) {
    ASSIGN_OR_RETURN(const at::Tensor value, file->Get(parameter.key()));
    absl::Status copied = CallTorch("restoring a parameter", [&] {
      torch::NoGradGuard no_grad;
      parameter.value().copy_(value);
    });
    if (!copied.ok()) {
      return absl::InternalError(absl::StrCat(model_path, ": tensor \"",
                                              parameter.key(),
                                              "\": ", copied.message()));
    }
  }
  return absl::OkStatus();
}

void RemoveQuietly(const fs::path& path) {
  std::error_code ignored;
  fs::remove_all(path, ignored);
}

// Deletes all but the newest `keep_last` checkpoints, and other processes'
// temporary directories.
void Prune(const std::string& root, int keep_last) {
  std::vector<int64_t> steps = ListCheckpointSteps(root);
  if (keep_last > 0 && static_cast<int>(steps.size()) > keep_last) {
    for (size_t i = 0; i + keep_last < steps.size(); ++i) {
      RemoveQuietly(CheckpointDirectory(root, steps[i]));
    }
  }
  const std::string own_suffix = absl::StrCat("-", getpid());
  std::error_code error;
  for (const auto& entry : fs::directory_iterator(root, error)) {
    const std::string name = entry.path().filename().string();
    if ((absl::StartsWith(name, kTemporaryPrefix) ||
         absl::StartsWith(name, kReplacedPrefix)) &&
        !absl::EndsWith(name, own_suffix)) {
      RemoveQuietly(entry.path());
    }
  }
}

}  // namespace

std::string CheckpointDirectory(const std::string& root, int64_t step) {
  return absl::StrCat(root, "/", kPrefix, PaddedStep(step));
}

std::vector<int64_t> ListCheckpointSteps(const std::string& root) {
  std::vector<int64_t> steps;
  std::error_code error;
  for (const auto& entry : fs::directory_iterator(root, error)) {
    const int64_t step = StepOfName(entry.path().filename().string());
    if (step >= 0 && entry.is_directory(error)) steps.push_back(step);
  }
  std::sort(steps.begin(), steps.end());
  return steps;
}

absl::StatusOr<CheckpointStateFile> ParseCheckpointState(
    const std::string& text, const std::string& source) {
  const nlohmann::json json = nlohmann::json::parse(text, nullptr, false);
  if (json.is_discarded() || !json.is_object()) {
    return absl::DataLossError(absl::StrCat(source, ": not a JSON object"));
  }
  CheckpointStateFile parsed;
  ASSIGN_OR_RETURN(
      const int64_t version,
      IntegerField(json, "format_version", kMinInt64, kMaxInt64, source));
  if (version != kCheckpointFormatVersion) {
    return absl::DataLossError(absl::StrCat(
        source, ": format_version ", version, " is not ",
        kCheckpointFormatVersion, ", the version this program reads"));
  }
  ASSIGN_OR_RETURN(parsed.state.step,
                   IntegerField(json, "step", 0, kMaxInt64, source));
  ASSIGN_OR_RETURN(parsed.state.epoch,
                   IntegerField(json, "epoch", 0, kMaxInt64, source));
  if (json.contains("run")) {
    const nlohmann::json& run = json["run"];
    if (!run.is_object()) {
      return absl::DataLossError(absl::StrCat(source, ": run is a ",
                                              run.type_name(),
                                              ", not an object of strings"));
    }
    for (const auto& [key, value] : run.items()) {
      if (!value.is_string()) {
        return absl::DataLossError(absl::StrCat(source, ": run.", key, " is a ",
                                                value.type_name(),
                                                ", not a string"));
      }
      parsed.state.run[key] = value.get<std::string>();
    }
  }
  if (!json.contains("files") || !json["files"].is_object()) {
    return absl::DataLossError(
        absl::StrCat(source, ": files is missing or not an object"));
  }
  const nlohmann::json& files = json["files"];
  for (const char* required : {kModelFile, kOptimizerFile}) {
    if (!files.contains(required)) {
      return absl::DataLossError(absl::StrCat(source, ": lists no ", required));
    }
  }
  for (const auto& [name, expected] : files.items()) {
    if (name.empty() || name.find('/') != std::string::npos || name == "." ||
        name == "..") {
      return absl::DataLossError(
          absl::StrCat(source, ": bad file name \"", name, "\""));
    }
    const std::string where = absl::StrCat(source, ": files.", name);
    if (!expected.is_object()) {
      return absl::DataLossError(absl::StrCat(where, " is not an object"));
    }
    CheckpointFileRecord& record = parsed.files[name];
    ASSIGN_OR_RETURN(const int64_t bytes,
                     IntegerField(expected, "bytes", 0, kMaxInt64, where));
    ASSIGN_OR_RETURN(const int64_t crc32,
                     IntegerField(expected, "crc32", 0, 0xFFFFFFFF, where));
    record.bytes = static_cast<uint64_t>(bytes);
    record.crc32 = static_cast<uint32_t>(crc32);
  }
  return parsed;
}

absl::StatusOr<CheckpointState> VerifyCheckpoint(const std::string& dir) {
  const std::string state_path = absl::StrCat(dir, "/", kStateFile);
  ASSIGN_OR_RETURN(const std::string text, ReadFileToString(state_path));
  ASSIGN_OR_RETURN(CheckpointStateFile parsed,
                   ParseCheckpointState(text, state_path));
  for (const auto& [name, expected] : parsed.files) {
    const std::string path = absl::StrCat(dir, "/", name);
    ASSIGN_OR_RETURN(const FileDigest digest, DigestFile(path));
    if (digest.bytes != expected.bytes) {
      return absl::DataLossError(absl::StrCat(path, ": ", digest.bytes,
                                              " bytes, ", expected.bytes,
                                              " expected (truncated?)"));
    }
    if (digest.crc32 != expected.crc32) {
      return absl::DataLossError(
          absl::StrFormat("%s: CRC32 %08x, %08x expected (corrupted)", path,
                          digest.crc32, expected.crc32));
    }
  }
  if (StepOfName(fs::path(dir).filename().string()) != parsed.state.step) {
    return absl::DataLossError(absl::StrCat(state_path, ": step ",
                                            parsed.state.step,
                                            " does not match its directory"));
  }
  return std::move(parsed.state);
}

absl::StatusOr<std::string> WriteCheckpoint(
    const std::string& root, const CheckpointState& state,
    const torch::nn::Module& model, const torch::optim::Optimizer& optimizer,
    int keep_last, const std::function<absl::Status()>& may_commit,
    const std::map<std::string, std::string>& staged_files) {
  if (state.step < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(root, ": checkpoint step ", state.step, " < 0"));
  }
  std::error_code error;
  fs::create_directories(root, error);
  if (error) {
    return absl::PermissionDeniedError(
        absl::StrCat(root, ": cannot create: ", error.message()));
  }
  const std::string final_dir = CheckpointDirectory(root, state.step);
  const std::string temporary = absl::StrCat(
      root, "/", kTemporaryPrefix, PaddedStep(state.step), "-", getpid());
  RemoveQuietly(temporary);
  fs::create_directory(temporary, error);
  if (error) {
    return absl::PermissionDeniedError(
        absl::StrCat(temporary, ": cannot create: ", error.message()));
  }
  auto write_files = [&]() -> absl::Status {
    nlohmann::json files = nlohmann::json::object();
    const std::string model_path = absl::StrCat(temporary, "/", kModelFile);
    std::vector<std::pair<std::string, at::Tensor>> tensors;
    for (const auto& parameter : TrainedParameters(model)) {
      tensors.emplace_back(parameter.key(), parameter.value().detach());
    }
    RETURN_IF_ERROR(WriteSafetensors(model_path, tensors,
                                     {{"step", std::to_string(state.step)}}));
    ASSIGN_OR_RETURN(const FileDigest model_digest, DigestFile(model_path));
    files[kModelFile] = {{"bytes", model_digest.bytes},
                         {"crc32", model_digest.crc32}};

    ASSIGN_OR_RETURN(
        const FileDigest optimizer_digest,
        WriteOptimizer(absl::StrCat(temporary, "/", kOptimizerFile),
                       optimizer));
    files[kOptimizerFile] = {{"bytes", optimizer_digest.bytes},
                             {"crc32", optimizer_digest.crc32}};

    for (const auto& [name, staged] : staged_files) {
      if (name.empty() || name.find('/') != std::string::npos ||
          name == kModelFile || name == kOptimizerFile || name == kStateFile ||
          name == "." || name == "..") {
        return absl::InvalidArgumentError(
            absl::StrCat(staged, ": bad checkpoint file name \"", name, "\""));
      }
      const std::string path = absl::StrCat(temporary, "/", name);
      if (std::rename(staged.c_str(), path.c_str()) != 0) {
        return absl::UnavailableError(absl::StrCat(
            staged, ": cannot move into ", temporary, ": ", ErrnoText()));
      }
      ASSIGN_OR_RETURN(const FileDigest digest, DigestFile(path));
      files[name] = {{"bytes", digest.bytes}, {"crc32", digest.crc32}};
    }

    const nlohmann::json json = {{"format_version", kCheckpointFormatVersion},
                                 {"step", state.step},
                                 {"epoch", state.epoch},
                                 {"run", state.run},
                                 {"files", files}};
    RETURN_IF_ERROR(WriteFileAtomically(
        absl::StrCat(temporary, "/", kStateFile), json.dump(1) + "\n"));
    return SyncPath(temporary, /*directory=*/true);
  };
  absl::Status written = write_files();
  if (written.ok() && may_commit) written = may_commit();
  if (!written.ok()) {
    RemoveQuietly(temporary);
    for (const auto& [name, staged] : staged_files) RemoveQuietly(staged);
    return written;
  }

  // A checkpoint of the same step (one found damaged, say) is moved aside
  // first: rename() cannot replace a non-empty directory.
  const std::string replaced = absl::StrCat(
      root, "/", kReplacedPrefix, PaddedStep(state.step), "-", getpid());
  const bool had_old = fs::exists(final_dir, error);
  if (had_old) {
    RemoveQuietly(replaced);
    if (std::rename(final_dir.c_str(), replaced.c_str()) != 0) {
      const std::string reason = ErrnoText();
      RemoveQuietly(temporary);
      return absl::UnavailableError(
          absl::StrCat(final_dir, ": cannot move aside: ", reason));
    }
  }
  if (std::rename(temporary.c_str(), final_dir.c_str()) != 0) {
    const std::string reason = ErrnoText();
    RemoveQuietly(temporary);
    return absl::UnavailableError(
        absl::StrCat(final_dir, ": cannot rename ", temporary, ": ", reason));
  }
  RETURN_IF_ERROR(SyncPath(root, /*directory=*/true));
  if (had_old) RemoveQuietly(replaced);
  Prune(root, keep_last);
  return final_dir;
}

std::string OptimizerShardFileName(int rank, int world_size) {
  return absl::StrCat("optimizer_shard_", rank, "_of_", world_size);
}

absl::StatusOr<LoadedCheckpoint> LoadLatestCheckpoint(
    const std::string& root, torch::nn::Module& model,
    torch::optim::Optimizer& optimizer,
    const std::map<std::string, std::string>& expected_run) {
  LoadedCheckpoint loaded;
  std::vector<int64_t> steps = ListCheckpointSteps(root);
  for (auto step = steps.rbegin(); step != steps.rend(); ++step) {
    const std::string dir = CheckpointDirectory(root, *step);
    absl::StatusOr<CheckpointState> state = VerifyCheckpoint(dir);
    if (!state.ok()) {
      loaded.warnings.push_back(absl::StrCat(
          "skipping damaged checkpoint ", dir, ": ", state.status().message()));
      continue;
    }
    for (const auto& [key, value] : expected_run) {
      auto found = state->run.find(key);
      if (found == state->run.end() || found->second != value) {
        return absl::FailedPreconditionError(absl::StrCat(
            dir, "/", kStateFile, ": written by a run with ", key, " = ",
            found == state->run.end() ? "(unset)" : found->second,
            ", this run has ", value,
            "; resume with the same settings or use another checkpoint "
            "directory"));
      }
    }
    RETURN_IF_ERROR(RestoreFrom(dir, model, optimizer));
    loaded.dir = dir;
    loaded.state = *std::move(state);
    return loaded;
  }
  return absl::NotFoundError(
      loaded.warnings.empty()
          ? absl::StrCat(root, ": no checkpoint")
          : absl::StrCat(root, ": no intact checkpoint; ",
                         absl::StrJoin(loaded.warnings, "; ")));
}

}  // namespace lethe
