// An exclusive, advisory lock on a file (flock), held by one process at a
// time until it is destroyed or the process ends (a crash releases it).
// The holder writes its process id into the file, so that another process
// refused the lock can say who holds it.
//
//   ASSIGN_OR_RETURN(std::unique_ptr<FileLock> lock,
//                    FileLock::Acquire(database + ".lock"));
#ifndef LETHE_LIBS_FILES_FILE_LOCK_H_
#define LETHE_LIBS_FILES_FILE_LOCK_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace lethe {

class FileLock {
 public:
  // Creates `path` if needed and locks it without waiting.
  // FAILED_PRECONDITION naming the holder's process id when another open
  // of the file holds it; PERMISSION_DENIED when it cannot be opened.
  static absl::StatusOr<std::unique_ptr<FileLock>> Acquire(
      const std::string& path);
  ~FileLock();
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;

 private:
  explicit FileLock(int fd) : fd_(fd) {}
  int fd_;
};

}  // namespace lethe

#endif  // LETHE_LIBS_FILES_FILE_LOCK_H_
