#include "libs/files/file_lock.h"

#include <unistd.h>

#include <filesystem>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace lethe {
namespace {

TEST(FileLockTest, OneHolderAtATimeAndTheRefusalNamesIt) {
  const std::string path = testing::TempDir() + "/file_lock_test.lock";
  std::filesystem::remove(path);
  absl::StatusOr<std::unique_ptr<FileLock>> first = FileLock::Acquire(path);
  ASSERT_TRUE(first.ok()) << first.status();
  // flock locks belong to an open file: a second open is refused, in this
  // process as in any other.
  absl::StatusOr<std::unique_ptr<FileLock>> second = FileLock::Acquire(path);
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(second.status().message().find(
                absl::StrCat("locked by process ", getpid())),
            std::string::npos)
      << second.status();
  first->reset();
  second = FileLock::Acquire(path);
  EXPECT_TRUE(second.ok()) << "released when destroyed: " << second.status();
}

TEST(FileLockTest, AnUnopenablePathIsAnError) {
  EXPECT_EQ(FileLock::Acquire("/nonexistent/dir/x.lock").status().code(),
            absl::StatusCode::kPermissionDenied);
}

}  // namespace
}  // namespace lethe
