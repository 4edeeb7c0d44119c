#include "libs/files/generation_fence.h"

#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "gtest/gtest.h"
#include "libs/files/file_io.h"

namespace lethe {
namespace {

std::string NewDir(const std::string& name) {
  const std::string dir = testing::TempDir() + "/" + name;
  std::filesystem::remove_all(dir);
  return dir;
}

TEST(GenerationFenceTest, NewerGenerationsWinAndOlderOnesAreRefused) {
  const std::string dir = NewDir("fence_order");
  EXPECT_EQ(*RecordedGeneration(dir), 0) << "nothing recorded yet";
  EXPECT_TRUE(CheckGeneration(dir, 1).ok());
  ASSERT_TRUE(ClaimGeneration(dir, 1).ok());
  EXPECT_EQ(*RecordedGeneration(dir), 1);
  EXPECT_TRUE(ClaimGeneration(dir, 1).ok()) << "a claim may be repeated";
  ASSERT_TRUE(ClaimGeneration(dir, 3).ok());
  EXPECT_EQ(*RecordedGeneration(dir), 3);

  const absl::Status stale = CheckGeneration(dir, 1);
  EXPECT_EQ(stale.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(stale.message().find("superseded by attempt generation 3"),
            std::string::npos)
      << stale;
  EXPECT_EQ(ClaimGeneration(dir, 2).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(*RecordedGeneration(dir), 3) << "a refused claim changes nothing";
  EXPECT_TRUE(CheckGeneration(dir, 3).ok());
  EXPECT_TRUE(CheckGeneration(dir, 4).ok());
  EXPECT_EQ(ClaimGeneration(dir, 0).code(), absl::StatusCode::kInvalidArgument);
}

TEST(GenerationFenceTest, AGarbledRecordIsDataLossNotAFreshStart) {
  const std::string dir = NewDir("fence_garbled");
  std::filesystem::create_directories(dir);
  ASSERT_TRUE(WriteFileAtomically(dir + "/.lethe-generation", "7x\n").ok());
  EXPECT_EQ(RecordedGeneration(dir).status().code(),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ(CheckGeneration(dir, 9).code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(ClaimGeneration(dir, 9).code(), absl::StatusCode::kDataLoss);
}

// Claims racing from many processes leave the highest generation recorded.
TEST(GenerationFenceTest, RacingClaimsFromProcessesKeepTheNewest) {
  const std::string dir = NewDir("fence_race");
  std::filesystem::create_directories(dir);
  constexpr int kProcesses = 16;
  for (int round = 0; round < 5; ++round) {
    pid_t children[kProcesses];
    for (int i = 0; i < kProcesses; ++i) {
      children[i] = fork();
      ASSERT_GE(children[i], 0);
      if (children[i] == 0) {
        const absl::Status claimed =
            ClaimGeneration(dir, round * kProcesses + i + 1);
        _exit(claimed.ok() || absl::IsFailedPrecondition(claimed) ? 0 : 1);
      }
    }
    for (pid_t child : children) {
      int status = 0;
      ASSERT_EQ(waitpid(child, &status, 0), child);
      EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    EXPECT_EQ(*RecordedGeneration(dir), (round + 1) * kProcesses);
  }
}

}  // namespace
}  // namespace lethe
