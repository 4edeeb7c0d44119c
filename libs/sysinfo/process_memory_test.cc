#include "libs/sysinfo/process_memory.h"

#include <cstring>
#include <memory>

#include "gtest/gtest.h"

namespace lethe {
namespace {

TEST(ProcessMemoryTest, ParsesTheKilobyteLinesOfAStatusText) {
  const std::map<std::string, int64_t> fields = ParseProcStatusMemory(
      "Name:\tlethe\nVmHWM:\t  2048 kB\nVmRSS:\t    12 kB\nThreads:\t4\n"
      "RssFile:\t0 kB\nBroken:\tabc kB\n");
  EXPECT_EQ(fields,
            (std::map<std::string, int64_t>{
                {"RssFile", 0}, {"VmHWM", 2048 * 1024}, {"VmRSS", 12 * 1024}}));
}

TEST(ProcessMemoryTest, ThePeakFollowsAnAllocationAndResets) {
  absl::StatusOr<int64_t> resident = ProcessMemoryBytes("VmRSS");
  ASSERT_TRUE(resident.ok()) << resident.status();
  EXPECT_GT(*resident, 0);
  EXPECT_EQ(ProcessMemoryBytes("NoSuchField").status().code(),
            absl::StatusCode::kNotFound);
  ASSERT_TRUE(ResetPeakResidentMemory().ok());
  const int64_t before = *ProcessMemoryBytes("VmHWM");
  constexpr size_t kBytes = 64 << 20;
  {
    std::unique_ptr<char[]> block(new char[kBytes]);
    std::memset(block.get(), 1, kBytes);  // Touched: resident.
    EXPECT_GE(*ProcessMemoryBytes("VmHWM"), before + int64_t{kBytes} / 2);
  }
  // Freed (a block this large is its own mapping): the peak stays until
  // reset, then falls back.
  const int64_t peak = *ProcessMemoryBytes("VmHWM");
  ASSERT_TRUE(ResetPeakResidentMemory().ok());
  EXPECT_LT(*ProcessMemoryBytes("VmHWM"), peak - int64_t{kBytes} / 2);
}

}  // namespace
}  // namespace lethe
