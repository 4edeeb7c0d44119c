#include "libs/files/file_io.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"

namespace lethe {

absl::StatusOr<std::string> ReadFileToString(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot read"));
  std::stringstream contents;
  contents << in.rdbuf();
  return contents.str();
}

absl::Status WriteFileAtomically(const std::string& path,
                                 absl::string_view contents) {
  const std::string temporary = absl::StrCat(path, ".tmp.", getpid());
  const int fd =
      open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    return absl::PermissionDeniedError(
        absl::StrCat(temporary, ": cannot create: ", strerror(errno)));
  }
  const char* cursor = contents.data();
  size_t left = contents.size();
  bool ok = true;
  while (ok && left > 0) {
    const ssize_t written = write(fd, cursor, left);
    if (written < 0 && errno == EINTR) continue;
    ok = written > 0;
    if (ok) {
      cursor += written;
      left -= written;
    }
  }
  ok = ok && fsync(fd) == 0;
  const int saved_errno = errno;
  close(fd);
  if (!ok || std::rename(temporary.c_str(), path.c_str()) != 0) {
    const std::string reason = strerror(ok ? errno : saved_errno);
    unlink(temporary.c_str());
    return absl::UnavailableError(
        absl::StrCat(path, ": cannot write: ", reason));
  }
  return absl::OkStatus();
}

}  // namespace lethe
