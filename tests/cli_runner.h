// Runs one of Lethe's binaries to completion as a separate process, for the
// process-level tests, and returns its exit status and output.
//
//   CliResult result = RunCli(lethe_binary, {"unlearn", "--method=NPO"});
//   EXPECT_TRUE(result.exit.success()) << result.stderr_text;
#ifndef LETHE_TESTS_CLI_RUNNER_H_
#define LETHE_TESTS_CLI_RUNNER_H_

#include <string>
#include <vector>

#include "libs/subprocess/subprocess.h"

namespace lethe {

struct CliResult {
  ExitStatus exit;
  std::string stdout_text;
  std::string stderr_text;
};

// Output goes through files under the test's temporary directory. A binary
// that cannot be started is a test failure and an empty result.
CliResult RunCli(const std::string& binary,
                 const std::vector<std::string>& args);

}  // namespace lethe

#endif  // LETHE_TESTS_CLI_RUNNER_H_
