// Reading and writing the safetensors format: an 8-byte little-endian header
// length N, N bytes of JSON header ({"name": {"dtype", "shape",
// "data_offsets": [begin, end]}, ..., "__metadata__": {string: string}}),
// then the raw little-endian tensor bytes.
//
//   ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> file,
//                    SafetensorsFile::Open(path));
//   for (const std::string& name : file->names()) {
//     ASSIGN_OR_RETURN(at::Tensor tensor, file->Get(name));  // zero-copy
//   }
//   RETURN_IF_ERROR(WriteSafetensors(out_path, {{"w", tensor}}, {}));
//
// Memory: Open maps the whole file privately (mmap MAP_PRIVATE, readable and
// writable, copy-on-write) and reads only the header. Get() copies nothing:
// its tensor views the mapping, so its pages are the page cache's, counted
// as the process's RssFile once touched and shared with every other process
// that maps or caches the file. Writing through such a view copies the
// written pages into the process's anonymous memory (RssAnon) and never
// reaches the file. GetConverted() is the copying read, for loaders that
// change the dtype tensor by tensor: it returns new memory and drops the
// pages it read from the process's resident set, so a conversion's peak is
// the converted model plus one tensor, not the file on top. Files must be
// replaced by rename (as WriteSafetensors does), never rewritten in place,
// while tensors view them: a file truncated under a live mapping makes
// reading its views fail with SIGBUS.
//
// Open memory-maps the file and validates the whole header before returning:
// every malformed file (short file, header length past the end, bad JSON,
// unknown dtype, shape/byte-count mismatch, offsets out of range,
// overlapping or leaving holes) is rejected with DATA_LOSS or
// INVALID_ARGUMENT naming the file and, where there is one, the tensor.
// Supported dtypes: F32, F16, BF16, F64, I64, I32, I16, I8, U8, BOOL.
#ifndef LETHE_LIBS_MODEL_SAFETENSORS_H_
#define LETHE_LIBS_MODEL_SAFETENSORS_H_

#include <torch/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace lethe {

struct SafetensorsEntry {
  at::ScalarType dtype;
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // Byte offsets into the data section.
  uint64_t end = 0;
};

class SafetensorsFile {
 public:
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(
      const std::string& path);
  ~SafetensorsFile();

  const std::string& path() const { return path_; }
  // Tensor names in file order (ascending data offset).
  const std::vector<std::string>& names() const { return names_; }
  const std::map<std::string, std::string>& metadata() const {
    return metadata_;
  }
  bool Contains(const std::string& name) const {
    return entries_.count(name) > 0;
  }
  // NOT_FOUND naming the file when absent.
  absl::StatusOr<SafetensorsEntry> Entry(const std::string& name) const;
  // A CPU tensor viewing the mapped bytes (copied only when misaligned). It
  // stays valid after this object is destroyed; writing to it never changes
  // the file.
  absl::StatusOr<at::Tensor> Get(const std::string& name) const;
  // A new CPU tensor holding tensor `name` converted to `dtype` (a copy even
  // when the dtypes agree). Afterwards the pages lying wholly inside the
  // tensor's bytes are dropped from this process's resident memory
  // (madvise MADV_DONTNEED; they stay in the page cache): a view from Get()
  // of the same tensor then reads the file's bytes again and loses what was
  // written through it, so call this only for tensors nobody views.
  absl::StatusOr<at::Tensor> GetConverted(const std::string& name,
                                          at::ScalarType dtype) const;
  // Whether `address` lies inside this file's mapping (so a tensor whose
  // data_ptr() it is was not copied).
  bool Maps(const void* address) const;

 private:
  class Mapping;
  SafetensorsFile(std::string path, std::shared_ptr<Mapping> mapping,
                  uint64_t data_start);

  std::string path_;
  std::shared_ptr<Mapping> mapping_;
  uint64_t data_start_;
  std::vector<std::string> names_;
  std::map<std::string, SafetensorsEntry> entries_;
  std::map<std::string, std::string> metadata_;
};

// Writes `tensors` (any device; written in the given order) and `metadata`
// to `path` atomically: a temporary file renamed into place, so readers never
// see a partial file. Names must be unique and non-empty.
absl::Status WriteSafetensors(
    const std::string& path,
    const std::vector<std::pair<std::string, at::Tensor>>& tensors,
    const std::map<std::string, std::string>& metadata = {});

// A tensor that WriteSafetensorsStreaming asks for only when it writes it,
// so that a caller converting a model (or moving it off a GPU) holds one
// converted tensor at a time.
struct SafetensorsSource {
  std::string name;
  at::ScalarType dtype;
  std::vector<int64_t> shape;
  // Called once; must return a tensor (any device, any layout) of `dtype`
  // and `shape`, else the write fails with INTERNAL.
  std::function<absl::StatusOr<at::Tensor>()> tensor;
};

// As WriteSafetensors, with each tensor produced on demand.
absl::Status WriteSafetensorsStreaming(
    const std::string& path, const std::vector<SafetensorsSource>& sources,
    const std::map<std::string, std::string>& metadata = {});

// "F32" <-> at::kFloat, etc. INVALID_ARGUMENT for an unsupported dtype.
absl::StatusOr<at::ScalarType> SafetensorsDtype(const std::string& name);
absl::StatusOr<std::string> SafetensorsDtypeName(at::ScalarType dtype);

}  // namespace lethe

#endif  // LETHE_LIBS_MODEL_SAFETENSORS_H_
