// Fuzzes TOFU split files (libs/data/tofu_dataset.h ReadTofuFile): the input
// is a whole file, JSON Lines or one JSON array.
#include <cstdint>
#include <string>
#include <vector>

#include "fuzz/fuzz_check.h"
#include "fuzz/memory_file.h"
#include "libs/data/tofu_dataset.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static lethe::MemoryFile* const file = new lethe::MemoryFile();
  file->Set(data, size);
  absl::StatusOr<std::vector<lethe::TofuRecord>> records =
      lethe::ReadTofuFile(file->path());
  if (!records.ok()) return 0;
  for (const lethe::TofuRecord& record : *records) {
    FUZZ_CHECK(record.options.size() <= 4) << record.options.size();
    FUZZ_CHECK(record == record);
  }
  return 0;
}
