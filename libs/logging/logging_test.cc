#include "libs/logging/logging.h"

#include <unistd.h>

#include <regex>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace lethe {
namespace {

TEST(LogPrefixTest, ShowsTimeSeverityComponentPidAndSourceLine) {
  std::tm tm = {};
  tm.tm_year = 2026 - 1900;
  tm.tm_mon = 11;  // December.
  tm.tm_mday = 4;
  tm.tm_hour = 9;
  tm.tm_min = 5;
  tm.tm_sec = 7;
  EXPECT_EQ(LogPrefix(tm, 42, "WARNING", "lethe-worker", 4242,
                      "services/worker/worker_main.cc", 249),
            "2026-12-04 09:05:07.000042 WARNING lethe-worker 4242 "
            "worker_main.cc:249]");
  EXPECT_EQ(LogPrefix(tm, 0, "INFO", "c", 1, "plain.cc", 1),
            "2026-12-04 09:05:07.000000 INFO c 1 plain.cc:1]");
}

// What a binary's stderr shows after InitLogging: each line with Lethe's
// prefix, VLOG hidden until the verbosity is raised.
TEST(InitLoggingTest, LinesCarryThePrefixAndVerbosityGatesVlog) {
  InitLogging("logging_test", "logging-test");
  testing::internal::CaptureStderr();
  LETHE_LOG(INFO) << "first message";
  LETHE_LOG(WARNING) << "second message";
  LETHE_VLOG(1) << "hidden detail";
  SetVerbosity(1);
  LETHE_VLOG(1) << "shown detail";
  SetVerbosity(0);
  const std::string output = testing::internal::GetCapturedStderr();
  const std::string pid = absl::StrCat(getpid());
  const std::string prefix = R"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6} )";
  for (const auto& [severity, message] :
       {std::pair<std::string, std::string>{"INFO", "first message"},
        {"WARNING", "second message"},
        {"INFO", "shown detail"}}) {
    const std::regex line(
        absl::StrCat("(^|\n)", prefix, severity, " logging-test ", pid,
                     R"( logging_test\.cc:\d+\] )", message, "\n"));
    EXPECT_TRUE(std::regex_search(output, line))
        << severity << " " << message << " in:\n"
        << output;
  }
  EXPECT_EQ(output.find("hidden detail"), std::string::npos) << output;
}

TEST(InitLoggingTest, FatalLogsThenAborts) {
  InitLogging("logging_test", "logging-test");
  EXPECT_DEATH(LETHE_LOG(FATAL) << "cannot go on", "cannot go on");
}

}  // namespace
}  // namespace lethe
