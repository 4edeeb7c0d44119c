// Fuzzes the safetensors reader (libs/model/safetensors.h): every input
// becomes a file opened with SafetensorsFile::Open. Every file Open accepts
// must hold tensors that Get can view, each with non-negative dimensions and
// exactly the bytes its data_offsets name.
//
// Two input forms: a whole file (its first byte is the low byte of the
// header length), or, when the input starts with '{', the header JSON up to
// its last '}' followed by the data section; the fuzzer then writes the
// length in front, so that mutating the JSON does not break the length.
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "fuzz/fuzz_check.h"
#include "fuzz/memory_file.h"
#include "libs/model/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static lethe::MemoryFile* const file = new lethe::MemoryFile();
  std::vector<uint8_t> framed;
  if (size > 0 && data[0] == '{') {
    const uint8_t* last = data + size;
    while (last > data && last[-1] != '}') --last;
    const uint64_t header_size = last - data;
    framed.resize(8 + size);
    for (int i = 0; i < 8; ++i) framed[i] = (header_size >> (8 * i)) & 0xff;
    std::memcpy(framed.data() + 8, data, size);
    data = framed.data();
    size = framed.size();
  }
  file->Set(data, size);
  absl::StatusOr<std::unique_ptr<lethe::SafetensorsFile>> opened =
      lethe::SafetensorsFile::Open(file->path());
  if (!opened.ok()) return 0;
  const lethe::SafetensorsFile& safetensors = **opened;

  FUZZ_CHECK(size >= 8);
  uint64_t header_size = 0;
  std::memcpy(&header_size, data, 8);  // Little-endian hosts only.
  const uint64_t data_start = 8 + header_size;
  uint64_t previous_end = 0;
  for (const std::string& name : safetensors.names()) {
    FUZZ_CHECK(safetensors.Contains(name)) << name;
    absl::StatusOr<lethe::SafetensorsEntry> entry = safetensors.Entry(name);
    FUZZ_CHECK(entry.ok()) << entry.status();
    FUZZ_CHECK(entry->begin == previous_end) << name;
    previous_end = entry->end;
    for (int64_t dimension : entry->shape) {
      FUZZ_CHECK(dimension >= 0) << name << " has dimension " << dimension;
    }
    absl::StatusOr<at::Tensor> tensor = safetensors.Get(name);
    FUZZ_CHECK(tensor.ok())
        << "accepted tensor " << name << " cannot be read: " << tensor.status();
    FUZZ_CHECK(tensor->scalar_type() == entry->dtype) << name;
    FUZZ_CHECK(tensor->sizes().equals(entry->shape)) << name;
    const uint64_t bytes = entry->end - entry->begin;
    FUZZ_CHECK(static_cast<uint64_t>(tensor->nbytes()) == bytes)
        << name << ": " << tensor->nbytes() << " bytes, offsets span " << bytes;
    FUZZ_CHECK(data_start + entry->end <= size) << name;
    if (bytes > 0) {
      const at::Tensor contiguous = tensor->contiguous();
      FUZZ_CHECK(std::memcmp(contiguous.data_ptr(),
                             data + data_start + entry->begin, bytes) == 0)
          << name << ": the tensor does not view the file's bytes";
    }
  }
  FUZZ_CHECK(data_start + previous_end == size);
  return 0;
}
