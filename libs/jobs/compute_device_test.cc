#include "libs/jobs/compute_device.h"

#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace lethe {
namespace {

TEST(ParseComputeDeviceTest, ReadsTheCpuAndGpusAndNormalisesTheName) {
  struct Case {
    const char* name;
    v1::Device kind;
    int index;
    const char* normalised;
  };
  for (const Case& c :
       {Case{"cpu", v1::CPU, 0, "cpu"}, Case{"cuda", v1::CUDA, 0, "cuda:0"},
        Case{"cuda:0", v1::CUDA, 0, "cuda:0"},
        Case{"cuda:7", v1::CUDA, 7, "cuda:7"},
        Case{"cuda:12", v1::CUDA, 12, "cuda:12"}}) {
    const absl::StatusOr<ComputeDevice> device = ParseComputeDevice(c.name);
    ASSERT_TRUE(device.ok()) << c.name << ": " << device.status();
    EXPECT_EQ(device->kind, c.kind) << c.name;
    EXPECT_EQ(device->index, c.index) << c.name;
    EXPECT_EQ(device->Name(), c.normalised) << c.name;
  }
}

TEST(ParseComputeDeviceTest, RejectsEverythingElseNamingIt) {
  for (const char* bad :
       {"", "gpu", "CPU", "cuda:", "cuda:x", "cuda:-1", "cuda:+1", "cuda: 1",
        "cuda:1 ", "cuda:99999999999", "cpu:0", "tpu", "cpu cuda", "cuda0"}) {
    const absl::StatusOr<ComputeDevice> device = ParseComputeDevice(bad);
    EXPECT_EQ(device.status().code(), absl::StatusCode::kInvalidArgument)
        << "\"" << bad << "\"";
    EXPECT_EQ(
        device.status().message(),
        absl::StrCat("device \"", bad, "\": expected cpu, cuda or cuda:N"));
  }
}

// The CPU's memory is at most the machine's physical memory (counted here
// by sysconf, independently of /proc/meminfo) and more than nothing; a
// CUDA device's is unknown in this build.
TEST(DeviceMemoryBytesTest, CpuMemoryIsBoundedByPhysicalMemory) {
  const uint64_t physical = static_cast<uint64_t>(sysconf(_SC_PHYS_PAGES)) *
                            static_cast<uint64_t>(sysconf(_SC_PAGE_SIZE));
  const uint64_t cpu = DeviceMemoryBytes({.kind = v1::CPU});
  EXPECT_GT(cpu, uint64_t{64} << 20);
  EXPECT_LE(cpu, physical);
  EXPECT_EQ(DeviceMemoryBytes({.kind = v1::CUDA, .index = 0}), 0u);
}

}  // namespace
}  // namespace lethe
