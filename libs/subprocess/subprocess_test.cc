#include "libs/subprocess/subprocess.h"

#include <signal.h>

#include <optional>
#include <string>

#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "libs/files/file_io.h"

namespace lethe {
namespace {

// The file's contents, or "" when it cannot be read.
std::string ReadFile(const std::string& path) {
  return ReadFileToString(path).value_or("");
}

TEST(SubprocessTest, ReportsExitCode) {
  absl::StatusOr<Subprocess> child =
      Subprocess::Start({"/bin/sh", "-c", "exit 3"});
  ASSERT_TRUE(child.ok()) << child.status();
  absl::StatusOr<ExitStatus> exit = child->Wait();
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_TRUE(exit->exited);
  EXPECT_EQ(exit->code, 3);
  EXPECT_FALSE(exit->success());
  EXPECT_EQ(exit->ToString(), "exited with code 3");
}

TEST(SubprocessTest, PassesExtraEnvironmentOverridingInherited) {
  setenv("LETHE_SUBPROCESS_TEST_VALUE", "inherited", 1);
  absl::StatusOr<Subprocess> child = Subprocess::Start(
      {"sh", "-c", "test \"$LETHE_SUBPROCESS_TEST_VALUE\" = overridden"},
      {{"LETHE_SUBPROCESS_TEST_VALUE", "overridden"}});
  ASSERT_TRUE(child.ok()) << child.status();
  absl::StatusOr<ExitStatus> exit = child->Wait();
  ASSERT_TRUE(exit.ok());
  EXPECT_TRUE(exit->success()) << exit->ToString();
}

TEST(SubprocessTest, WaitForTimesOutThenSignalKills) {
  absl::StatusOr<Subprocess> child = Subprocess::Start({"sleep", "30"});
  ASSERT_TRUE(child.ok()) << child.status();
  absl::StatusOr<std::optional<ExitStatus>> early =
      child->WaitFor(absl::Milliseconds(50));
  ASSERT_TRUE(early.ok());
  EXPECT_FALSE(early->has_value());
  EXPECT_TRUE(child->running());

  ASSERT_TRUE(child->Signal(SIGKILL).ok());
  absl::StatusOr<std::optional<ExitStatus>> late =
      child->WaitFor(absl::Seconds(10));
  ASSERT_TRUE(late.ok());
  ASSERT_TRUE(late->has_value());
  EXPECT_FALSE((*late)->exited);
  EXPECT_EQ((*late)->signal, SIGKILL);
  EXPECT_EQ(child->Signal(SIGTERM).code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(SubprocessTest, RedirectsOutputToFiles) {
  const std::string out = testing::TempDir() + "/subprocess_out.txt";
  const std::string both = testing::TempDir() + "/subprocess_both.txt";
  absl::StatusOr<Subprocess> child =
      Subprocess::Start({"sh", "-c", "echo to-out; echo to-err >&2"}, {},
                        {.stdout_path = out, .stderr_path = ""});
  ASSERT_TRUE(child.ok()) << child.status();
  ASSERT_TRUE(child->Wait().ok());
  EXPECT_EQ(ReadFile(out), "to-out\n");

  child = Subprocess::Start({"sh", "-c", "echo to-out; echo to-err >&2"}, {},
                            {.stdout_path = both, .stderr_path = both});
  ASSERT_TRUE(child.ok()) << child.status();
  ASSERT_TRUE(child->Wait().ok());
  EXPECT_EQ(ReadFile(both), "to-out\nto-err\n");

  // A replacement appends after its predecessor; a plain start truncates.
  child = Subprocess::Start({"sh", "-c", "echo again"}, {},
                            {.stdout_path = both, .append = true});
  ASSERT_TRUE(child.ok()) << child.status();
  ASSERT_TRUE(child->Wait().ok());
  EXPECT_EQ(ReadFile(both), "to-out\nto-err\nagain\n");
  child =
      Subprocess::Start({"sh", "-c", "echo fresh"}, {}, {.stdout_path = both});
  ASSERT_TRUE(child.ok()) << child.status();
  ASSERT_TRUE(child->Wait().ok());
  EXPECT_EQ(ReadFile(both), "fresh\n");
}

TEST(SubprocessTest, MissingProgramIsNotFound) {
  absl::StatusOr<Subprocess> child =
      Subprocess::Start({"/nonexistent/lethe-no-such-program"});
  EXPECT_EQ(child.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(child.status().message().find("lethe-no-such-program"),
            std::string::npos);
}

TEST(SubprocessTest, DestructorKillsRunningChild) {
  pid_t pid = -1;
  {
    absl::StatusOr<Subprocess> child = Subprocess::Start({"sleep", "30"});
    ASSERT_TRUE(child.ok());
    pid = child->pid();
  }
  // Reaped by the destructor: the pid no longer names our child.
  EXPECT_EQ(kill(pid, 0), -1);
}

}  // namespace
}  // namespace lethe
