// Prints the README's "what fits where" table (fit_table.h) from the
// config.json fixtures in libs/plan/testdata.
//
//   bazel run //libs/plan:what_fits -- --config_dir=$PWD/libs/plan/testdata
#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "libs/plan/fit_table.h"

ABSL_FLAG(std::string, config_dir, "libs/plan/testdata",
          "directory with llama-3.2-1b/, llama-3.2-3b/ and llama-3.1-8b/ "
          "config.json files");

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  absl::StatusOr<lethe::FitGrid> grid =
      lethe::ReadmeFitGrid(absl::GetFlag(FLAGS_config_dir));
  absl::StatusOr<std::string> table =
      grid.ok() ? lethe::WhatFitsWhereMarkdown(*grid)
                : absl::StatusOr<std::string>(grid.status());
  if (!table.ok()) {
    std::fprintf(stderr, "what_fits: %s\n", table.status().ToString().c_str());
    return 1;
  }
  std::fputs(table->c_str(), stdout);
  return 0;
}
