// Whole-file reads and crash-safe whole-file writes.
//
//   ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
//   RETURN_IF_ERROR(WriteFileAtomically(path, text));
//
// WriteFileAtomically writes a temporary file next to `path`, flushes it to
// disk and renames it over `path`, so readers see the old file or the new
// one, never a part of either.
#ifndef LETHE_LIBS_FILES_FILE_IO_H_
#define LETHE_LIBS_FILES_FILE_IO_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace lethe {

// NOT_FOUND naming the path when it cannot be opened.
absl::StatusOr<std::string> ReadFileToString(const std::string& path);

// PERMISSION_DENIED or UNAVAILABLE naming the path when it cannot be written.
absl::Status WriteFileAtomically(const std::string& path,
                                 absl::string_view contents);

}  // namespace lethe

#endif  // LETHE_LIBS_FILES_FILE_IO_H_
