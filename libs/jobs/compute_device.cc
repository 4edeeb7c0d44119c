#include "libs/jobs/compute_device.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
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

}  // namespace lethe
