#include "tests/cli_runner.h"

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "libs/files/file_io.h"

namespace lethe {

CliResult RunCli(const std::string& binary,
                 const std::vector<std::string>& args) {
  static int runs = 0;
  const std::string base =
      absl::StrCat(testing::TempDir(), "/cli_run_", runs++);
  std::vector<std::string> argv = {binary};
  argv.insert(argv.end(), args.begin(), args.end());
  absl::StatusOr<Subprocess> cli = Subprocess::Start(
      argv, {}, {.stdout_path = base + ".out", .stderr_path = base + ".err"});
  EXPECT_TRUE(cli.ok()) << cli.status();
  if (!cli.ok()) return {};
  absl::StatusOr<ExitStatus> exit = cli->Wait();
  EXPECT_TRUE(exit.ok()) << exit.status();
  return {exit.value_or(ExitStatus{}),
          ReadFileToString(base + ".out").value_or(""),
          ReadFileToString(base + ".err").value_or("")};
}

}  // namespace lethe
