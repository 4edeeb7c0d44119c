#include "libs/model/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "libs/status/status_macros.h"
#include "libs/status/torch_status.h"
#include "nlohmann/json.hpp"

namespace lethe {
namespace {

constexpr uint64_t kMaxHeaderBytes = 100 << 20;  // As the reference reader.

const std::vector<std::pair<std::string, at::ScalarType>>& DtypeTable() {
  static const auto* table =
      new std::vector<std::pair<std::string, at::ScalarType>>{
          {"F32", at::kFloat},  {"F16", at::kHalf}, {"BF16", at::kBFloat16},
          {"F64", at::kDouble}, {"I64", at::kLong}, {"I32", at::kInt},
          {"I16", at::kShort},  {"I8", at::kChar},  {"U8", at::kByte},
          {"BOOL", at::kBool},
      };
  return *table;
}

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

}  // namespace

absl::StatusOr<at::ScalarType> SafetensorsDtype(const std::string& name) {
  for (const auto& [text, dtype] : DtypeTable()) {
    if (text == name) return dtype;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unsupported safetensors dtype '", name, "'"));
}

absl::StatusOr<std::string> SafetensorsDtypeName(at::ScalarType dtype) {
  for (const auto& [text, type] : DtypeTable()) {
    if (type == dtype) return text;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "dtype ", c10::toString(dtype), " cannot be stored in safetensors"));
}

// A read-only file mapped copy-on-write into memory.
class SafetensorsFile::Mapping {
 public:
  Mapping(void* data, size_t size) : data_(data), size_(size) {}
  ~Mapping() {
    if (data_ != nullptr && size_ > 0) munmap(data_, size_);
  }
  const uint8_t* bytes() const { return static_cast<const uint8_t*>(data_); }
  uint8_t* mutable_bytes() { return static_cast<uint8_t*>(data_); }
  size_t size() const { return size_; }
  bool Contains(const void* address) const {
    const auto* byte = static_cast<const uint8_t*>(address);
    return byte >= bytes() && byte < bytes() + size_;
  }
  // Drops the pages lying wholly inside bytes [offset, offset + length) from
  // the resident set; later reads fault them in from the file again. Pages
  // shared with a neighbouring range are kept. Best effort: an madvise
  // failure only leaves the pages resident.
  void DropPages(uint64_t offset, uint64_t length) {
    const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
    const uint64_t begin = (offset + page - 1) / page * page;
    const uint64_t end = (offset + length) / page * page;
    if (end > begin) {
      madvise(mutable_bytes() + begin, end - begin, MADV_DONTNEED);
    }
  }

 private:
  void* data_;
  size_t size_;
};

SafetensorsFile::SafetensorsFile(std::string path,
                                 std::shared_ptr<Mapping> mapping,
                                 uint64_t data_start)
    : path_(std::move(path)),
      mapping_(std::move(mapping)),
      data_start_(data_start) {}

SafetensorsFile::~SafetensorsFile() = default;

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(
    const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) {
      return absl::NotFoundError(absl::StrCat(path, ": no such file"));
    }
    return absl::PermissionDeniedError(
        absl::StrCat(path, ": cannot open: ", strerror(errno)));
  }
  struct stat info;
  if (fstat(fd, &info) != 0) {
    close(fd);
    return absl::InternalError(
        absl::StrCat(path, ": fstat: ", strerror(errno)));
  }
  const uint64_t file_size = static_cast<uint64_t>(info.st_size);
  if (file_size < 8) {
    close(fd);
    return absl::DataLossError(
        absl::StrCat(path, ": truncated: ", file_size,
                     " bytes, too short for the 8-byte header length"));
  }
  void* data =
      mmap(nullptr, file_size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  close(fd);
  if (data == MAP_FAILED) {
    return absl::InternalError(absl::StrCat(path, ": mmap: ", strerror(errno)));
  }
  auto mapping = std::make_shared<Mapping>(data, file_size);

  uint64_t header_size = 0;
  for (int i = 7; i >= 0; --i) {
    header_size = (header_size << 8) | mapping->bytes()[i];
  }
  if (header_size > kMaxHeaderBytes) {
    return absl::DataLossError(
        absl::StrCat(path, ": header length ", header_size, " exceeds the ",
                     kMaxHeaderBytes, "-byte limit (not a safetensors file?)"));
  }
  if (header_size > file_size - 8) {
    return absl::DataLossError(
        absl::StrCat(path, ": header length ", header_size,
                     " runs past the end of the ", file_size, "-byte file"));
  }
  const std::string header_text(
      reinterpret_cast<const char*>(mapping->bytes() + 8), header_size);
  nlohmann::json header =
      nlohmann::json::parse(header_text, nullptr, /*allow_exceptions=*/false);
  if (header.is_discarded() || !header.is_object()) {
    return absl::DataLossError(
        absl::StrCat(path, ": header is not a JSON object"));
  }

  const uint64_t data_start = 8 + header_size;
  const uint64_t data_size = file_size - data_start;
  std::unique_ptr<SafetensorsFile> file(
      new SafetensorsFile(path, mapping, data_start));

  for (auto& [name, value] : header.items()) {
    if (name == "__metadata__") {
      if (!value.is_object()) {
        return absl::DataLossError(
            absl::StrCat(path, ": __metadata__ is not an object"));
      }
      for (auto& [key, text] : value.items()) {
        if (!text.is_string()) {
          return absl::DataLossError(absl::StrCat(
              path, ": __metadata__ value for '", key, "' is not a string"));
        }
        file->metadata_[key] = text.get<std::string>();
      }
      continue;
    }
    const std::string where = absl::StrCat(path, ": tensor '", name, "'");
    if (!value.is_object() || !value.contains("dtype") ||
        !value.contains("shape") || !value.contains("data_offsets") ||
        !value["dtype"].is_string() || !value["shape"].is_array() ||
        !value["data_offsets"].is_array() ||
        value["data_offsets"].size() != 2) {
      return absl::DataLossError(
          absl::StrCat(where,
                       ": needs dtype (string), shape (array) and data_offsets "
                       "([begin, end])"));
    }
    SafetensorsEntry entry;
    absl::StatusOr<at::ScalarType> dtype =
        SafetensorsDtype(value["dtype"].get<std::string>());
    if (!dtype.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": ", dtype.status().message()));
    }
    entry.dtype = *dtype;
    uint64_t elements = 1;
    // The product of the non-zero dimensions must fit in int64_t too: a 0
    // elsewhere makes the tensor empty, but LibTorch's sizes are int64_t
    // (2^64 - 1 would read as -1) and its strides multiply the others.
    uint64_t nonzero_elements = 1;
    for (const auto& dimension : value["shape"]) {
      if (!dimension.is_number_unsigned()) {
        return absl::DataLossError(
            absl::StrCat(where, ": shape holds a non-natural number"));
      }
      const uint64_t size = dimension.get<uint64_t>();
      if (size != 0 &&
          nonzero_elements > std::numeric_limits<int64_t>::max() / size) {
        return absl::DataLossError(absl::StrCat(where, ": shape overflows"));
      }
      if (size != 0) nonzero_elements *= size;
      elements *= size;
      entry.shape.push_back(static_cast<int64_t>(size));
    }
    for (const auto& offset : value["data_offsets"]) {
      if (!offset.is_number_unsigned()) {
        return absl::DataLossError(
            absl::StrCat(where, ": data_offsets hold a non-natural number"));
      }
    }
    entry.begin = value["data_offsets"][0].get<uint64_t>();
    entry.end = value["data_offsets"][1].get<uint64_t>();
    if (entry.begin > entry.end || entry.end > data_size) {
      return absl::DataLossError(
          absl::StrCat(where, ": data_offsets [", entry.begin, ", ", entry.end,
                       "] fall outside the ", data_size,
                       "-byte data section (file truncated?)"));
    }
    // Checked before multiplying: elements * element size can wrap around
    // (2^61 doubles "need" 0 bytes) and let a huge shape through.
    const uint64_t element_size = c10::elementSize(entry.dtype);
    if (elements > std::numeric_limits<uint64_t>::max() / element_size) {
      return absl::DataLossError(absl::StrCat(
          where, ": shape ", ShapeString(entry.shape), " of ",
          value["dtype"].get<std::string>(), " overflows a 64-bit size"));
    }
    const uint64_t expected_bytes = elements * element_size;
    if (entry.end - entry.begin != expected_bytes) {
      return absl::DataLossError(absl::StrCat(
          where, ": shape ", ShapeString(entry.shape), " of ",
          value["dtype"].get<std::string>(), " needs ", expected_bytes,
          " bytes but data_offsets span ", entry.end - entry.begin));
    }
    file->entries_[name] = std::move(entry);
    file->names_.push_back(name);
  }

  // Tensors must tile the data section exactly: no overlaps, no holes.
  std::sort(file->names_.begin(), file->names_.end(),
            [&](const std::string& a, const std::string& b) {
              const SafetensorsEntry& x = file->entries_[a];
              const SafetensorsEntry& y = file->entries_[b];
              return std::tie(x.begin, x.end, a) < std::tie(y.begin, y.end, b);
            });
  uint64_t cursor = 0;
  for (const std::string& name : file->names_) {
    const SafetensorsEntry& entry = file->entries_[name];
    if (entry.begin < cursor) {
      return absl::DataLossError(
          absl::StrCat(path, ": tensor '", name, "' at bytes [", entry.begin,
                       ", ", entry.end, ") overlaps the tensor before it"));
    }
    if (entry.begin > cursor) {
      return absl::DataLossError(
          absl::StrCat(path, ": tensor '", name, "' starts at byte ",
                       entry.begin, ", leaving a hole after byte ", cursor));
    }
    cursor = entry.end;
  }
  if (cursor != data_size) {
    return absl::DataLossError(
        absl::StrCat(path, ": ", data_size - cursor,
                     " trailing bytes after the last tensor"));
  }
  return file;
}

absl::StatusOr<SafetensorsEntry> SafetensorsFile::Entry(
    const std::string& name) const {
  auto it = entries_.find(name);
  if (it == entries_.end()) {
    return absl::NotFoundError(
        absl::StrCat(path_, ": no tensor named '", name, "'"));
  }
  return it->second;
}

absl::StatusOr<at::Tensor> SafetensorsFile::Get(const std::string& name) const {
  ASSIGN_OR_RETURN(SafetensorsEntry entry, Entry(name));
  uint8_t* bytes = mapping_->mutable_bytes() + data_start_ + entry.begin;
  const size_t alignment = c10::elementSize(entry.dtype);
  return CallTorch(absl::StrCat(path_, ": reading tensor '", name, "'"), [&] {
    std::shared_ptr<Mapping> keep_alive = mapping_;
    at::Tensor view = torch::from_blob(
        bytes, entry.shape, [keep_alive](void*) {},
        torch::TensorOptions().dtype(entry.dtype));
    if (reinterpret_cast<uintptr_t>(bytes) % alignment != 0) {
      return view.clone();
    }
    return view;
  });
}

absl::StatusOr<at::Tensor> SafetensorsFile::GetConverted(
    const std::string& name, at::ScalarType dtype) const {
  ASSIGN_OR_RETURN(SafetensorsEntry entry, Entry(name));
  ASSIGN_OR_RETURN(at::Tensor view, Get(name));
  ASSIGN_OR_RETURN(at::Tensor converted,
                   CallTorch(absl::StrCat(path_, ": converting tensor '", name,
                                          "' to ", c10::toString(dtype)),
                             [&] {
                               return view.to(dtype, /*non_blocking=*/false,
                                              /*copy=*/true);
                             }));
  view = at::Tensor();
  mapping_->DropPages(data_start_ + entry.begin, entry.end - entry.begin);
  return converted;
}

bool SafetensorsFile::Maps(const void* address) const {
  return mapping_->Contains(address);
}

absl::Status WriteSafetensors(
    const std::string& path,
    const std::vector<std::pair<std::string, at::Tensor>>& tensors,
    const std::map<std::string, std::string>& metadata) {
  std::vector<SafetensorsSource> sources;
  sources.reserve(tensors.size());
  for (const auto& [name, tensor] : tensors) {
    const at::Tensor* source = &tensor;
    sources.push_back({name, tensor.scalar_type(), tensor.sizes().vec(),
                       [source] { return *source; }});
  }
  return WriteSafetensorsStreaming(path, sources, metadata);
}

absl::Status WriteSafetensorsStreaming(
    const std::string& path, const std::vector<SafetensorsSource>& sources,
    const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const SafetensorsSource& source : sources) {
    const std::string& name = source.name;
    if (name.empty() || name == "__metadata__" || header.contains(name)) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": tensor name '", name, "' is empty, reserved or repeated"));
    }
    ASSIGN_OR_RETURN(std::string dtype_name,
                     SafetensorsDtypeName(source.dtype));
    uint64_t bytes = c10::elementSize(source.dtype);
    for (const int64_t size : source.shape) {
      if (size < 0) {
        return absl::InvalidArgumentError(
            absl::StrCat(path, ": tensor '", name, "' has shape ",
                         ShapeString(source.shape)));
      }
      bytes *= static_cast<uint64_t>(size);
    }
    header[name] = {{"dtype", dtype_name},
                    {"shape", source.shape},
                    {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string header_text = header.dump();
  // Pad with spaces so the data section starts 8-byte aligned.
  header_text.append((8 - header_text.size() % 8) % 8, ' ');

  const std::string temporary = absl::StrCat(path, ".tmp.", getpid());
  const int fd =
      open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    return absl::PermissionDeniedError(
        absl::StrCat(temporary, ": cannot create: ", strerror(errno)));
  }
  auto write_all = [&](const void* data, size_t size) -> bool {
    const char* cursor = static_cast<const char*>(data);
    while (size > 0) {
      const ssize_t written = write(fd, cursor, size);
      if (written < 0) {
        if (errno == EINTR) continue;
        return false;
      }
      cursor += written;
      size -= written;
    }
    return true;
  };
  uint8_t length_bytes[8];
  for (int i = 0; i < 8; ++i) {
    length_bytes[i] = static_cast<uint8_t>(header_text.size() >> (8 * i));
  }
  bool ok = write_all(length_bytes, 8) &&
            write_all(header_text.data(), header_text.size());
  absl::Status produced = absl::OkStatus();
  for (const SafetensorsSource& source : sources) {
    if (!ok) break;
    // One tensor at a time: produced, moved to the CPU, written, released.
    absl::StatusOr<at::Tensor> tensor = source.tensor();
    if (tensor.ok()) {
      tensor = CallTorch(absl::StrCat(path, ": preparing '", source.name, "'"),
                         [&] { return tensor->detach().cpu().contiguous(); });
    }
    if (tensor.ok() && (tensor->scalar_type() != source.dtype ||
                        tensor->sizes() != at::IntArrayRef(source.shape))) {
      tensor = absl::InternalError(absl::StrCat(
          path, ": tensor '", source.name, "' was announced as ",
          c10::toString(source.dtype), " ", ShapeString(source.shape),
          " but is ", c10::toString(tensor->scalar_type()), " ",
          ShapeString(tensor->sizes().vec())));
    }
    if (!tensor.ok()) {
      produced = tensor.status();
      break;
    }
    ok = write_all(tensor->data_ptr(), tensor->nbytes());
  }
  ok = ok && produced.ok() && fsync(fd) == 0;
  const int saved_errno = errno;
  close(fd);
  if (!produced.ok()) {
    unlink(temporary.c_str());
    return produced;
  }
  if (!ok || rename(temporary.c_str(), path.c_str()) != 0) {
    const std::string reason = strerror(ok ? errno : saved_errno);
    unlink(temporary.c_str());
    return absl::UnavailableError(
        absl::StrCat(path, ": cannot write: ", reason));
  }
  return absl::OkStatus();
}

}  // namespace lethe
