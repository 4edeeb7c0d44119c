#include "libs/jobs/compute_device.h"

#include <algorithm>
#include <fstream>
#include <sstream>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace lethe {

std::string ComputeDevice::Name() const {
  return kind == v1::CUDA ? absl::StrCat("cuda:", index) : "cpu";
}

absl::StatusOr<ComputeDevice> ParseComputeDevice(absl::string_view name) {
  ComputeDevice device;
  if (name == "cpu") return device;
  device.kind = v1::CUDA;
  if (name == "cuda") return device;
  absl::string_view index = name;
  // SimpleAtoi alone would also take a sign and surrounding spaces.
  if (absl::ConsumePrefix(&index, "cuda:") && !index.empty() &&
      std::all_of(index.begin(), index.end(), absl::ascii_isdigit) &&
      absl::SimpleAtoi(index, &device.index)) {
    return device;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("device \"", name, "\": expected cpu, cuda or cuda:N"));
}

namespace {

// The first number after `key` in /proc/meminfo, in bytes (it counts kB).
uint64_t MemInfoBytes(absl::string_view key) {
  std::ifstream in("/proc/meminfo");
  std::string line;
  while (std::getline(in, line)) {
    if (!absl::StartsWith(line, key)) continue;
    std::istringstream fields(line.substr(key.size()));
    uint64_t kilobytes = 0;
    if (fields >> kilobytes) return kilobytes * 1024;
  }
  return 0;
}

// The cgroup's memory limit (v2 memory.max, else v1 limit_in_bytes); 0 when
// there is none ("max") or it cannot be read.
uint64_t CgroupLimitBytes() {
  for (const char* path : {"/sys/fs/cgroup/memory.max",
                           "/sys/fs/cgroup/memory/memory.limit_in_bytes"}) {
    std::ifstream in(path);
    std::string text;
    if (!(in >> text) || text == "max") continue;
    uint64_t bytes = 0;
    if (absl::SimpleAtoi(text, &bytes) && bytes > 0) return bytes;
  }
  return 0;
}

}  // namespace

uint64_t DeviceMemoryBytes(const ComputeDevice& device) {
  if (device.kind != v1::CPU) return 0;
  const uint64_t host = MemInfoBytes("MemTotal:");
  const uint64_t limit = CgroupLimitBytes();
  if (host == 0) return limit;
  return limit > 0 ? std::min(host, limit) : host;
}

}  // namespace lethe
