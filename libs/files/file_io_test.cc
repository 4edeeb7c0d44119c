#include "libs/files/file_io.h"

#include <filesystem>
#include <string>

#include "absl/strings/match.h"
#include "gtest/gtest.h"

namespace lethe {
namespace {

TEST(FileIoTest, WritesReplacesAndReadsBack) {
  const std::string path = testing::TempDir() + "/file_io.txt";
  ASSERT_TRUE(WriteFileAtomically(path, "first").ok());
  ASSERT_TRUE(WriteFileAtomically(path, std::string("sec\0ond", 7)).ok());
  absl::StatusOr<std::string> read = ReadFileToString(path);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(*read, std::string("sec\0ond", 7));
  // No temporary file is left behind.
  for (const auto& entry :
       std::filesystem::directory_iterator(testing::TempDir())) {
    EXPECT_FALSE(
        absl::StrContains(entry.path().filename().string(), "file_io.txt.tmp"));
  }
}

TEST(FileIoTest, ErrorsNameThePath) {
  absl::Status write = WriteFileAtomically("/nonexistent-dir/x.json", "{}");
  EXPECT_FALSE(write.ok());
  EXPECT_TRUE(absl::StrContains(write.message(), "/nonexistent-dir/x.json"));
  absl::StatusOr<std::string> read =
      ReadFileToString("/nonexistent-dir/x.json");
  EXPECT_EQ(read.status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(absl::StrContains(read.status().message(), "/nonexistent-dir"));
}

}  // namespace
}  // namespace lethe
