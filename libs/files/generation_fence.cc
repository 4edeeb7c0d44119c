#include "libs/files/generation_fence.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "libs/files/file_io.h"
#include "libs/status/status_macros.h"

namespace lethe {
namespace {

constexpr char kRecordName[] = ".lethe-generation";
constexpr char kLockName[] = ".lethe-generation.lock";

std::string RecordPath(const std::string& dir) {
  return dir + "/" + kRecordName;
}

absl::Status Superseded(int64_t recorded, int64_t generation,
                        const std::string& dir) {
  return absl::FailedPreconditionError(
      absl::StrCat(dir, ": this attempt (generation ", generation,
                   ") was superseded by attempt generation ", recorded,
                   "; it stops without writing"));
}

// Holds an exclusive flock on the directory's lock file while alive.
class ScopedFlock {
 public:
  static absl::StatusOr<ScopedFlock> Take(const std::string& path) {
    const int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
      return absl::PermissionDeniedError(
          absl::StrCat("opening ", path, ": ", std::strerror(errno)));
    }
    while (flock(fd, LOCK_EX) != 0) {
      if (errno == EINTR) continue;
      const int error = errno;
      close(fd);
      return absl::InternalError(
          absl::StrCat("locking ", path, ": ", std::strerror(error)));
    }
    return ScopedFlock(fd);
  }
  ScopedFlock(ScopedFlock&& other) : fd_(other.fd_) { other.fd_ = -1; }
  ScopedFlock& operator=(ScopedFlock&&) = delete;
  ~ScopedFlock() {
    if (fd_ >= 0) close(fd_);  // Releases the lock.
  }

 private:
  explicit ScopedFlock(int fd) : fd_(fd) {}
  int fd_;
};

}  // namespace

absl::StatusOr<int64_t> RecordedGeneration(const std::string& dir) {
  const std::string path = RecordPath(dir);
  std::error_code error;
  if (!std::filesystem::exists(path, error)) return 0;
  ASSIGN_OR_RETURN(const std::string text, ReadFileToString(path));
  int64_t generation = 0;
  if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(text), &generation) ||
      generation < 0) {
    return absl::DataLossError(
        absl::StrCat(path, ": not an attempt generation: \"", text, "\""));
  }
  return generation;
}

absl::Status ClaimGeneration(const std::string& dir, int64_t generation) {
  if (generation <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("attempt generation must be positive, got ", generation));
  }
  std::error_code error;
  std::filesystem::create_directories(dir, error);
  if (error) {
    return absl::PermissionDeniedError(
        absl::StrCat("creating ", dir, ": ", error.message()));
  }
  ASSIGN_OR_RETURN(ScopedFlock lock, ScopedFlock::Take(dir + "/" + kLockName));
  ASSIGN_OR_RETURN(const int64_t recorded, RecordedGeneration(dir));
  if (recorded > generation) return Superseded(recorded, generation, dir);
  if (recorded == generation) return absl::OkStatus();
  return WriteFileAtomically(RecordPath(dir), absl::StrCat(generation, "\n"));
}

absl::Status CheckGeneration(const std::string& dir, int64_t generation) {
  ASSIGN_OR_RETURN(const int64_t recorded, RecordedGeneration(dir));
  if (recorded > generation) return Superseded(recorded, generation, dir);
  return absl::OkStatus();
}

}  // namespace lethe
