// Tests only: where a file of the source tree is, for tests that read
// checked-in data (testdata/ folders, README.md). Under `bazel test` it is in
// the runfiles, $TEST_SRCDIR/$TEST_WORKSPACE/<relative>; in the CMake mirror,
// whose test targets define LETHE_SOURCE_DIR, in the source directory;
// otherwise <relative> itself, from the current directory.
//
//   const std::string dir = SourcePath("libs/plan/testdata");
#ifndef LETHE_LIBS_FILES_SOURCE_PATH_TEST_UTIL_H_
#define LETHE_LIBS_FILES_SOURCE_PATH_TEST_UTIL_H_

#include <cstdlib>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace lethe {

inline std::string SourcePath(absl::string_view relative) {
  if (const char* srcdir = std::getenv("TEST_SRCDIR")) {  // bazel test
    const char* workspace = std::getenv("TEST_WORKSPACE");
    return absl::StrCat(srcdir, "/", workspace != nullptr ? workspace : "lethe",
                        "/", relative);
  }
#ifdef LETHE_SOURCE_DIR  // The CMake mirror defines it.
  return absl::StrCat(LETHE_SOURCE_DIR, "/", relative);
#else
  return std::string(relative);
#endif
}

}  // namespace lethe

#endif  // LETHE_LIBS_FILES_SOURCE_PATH_TEST_UTIL_H_
