// A file that holds a fuzz input, for parsers whose entry point takes a
// path: an anonymous in-memory file (memfd), named by /proc/self/fd/N and
// rewritten for every input, so no disk I/O and nothing left behind.
#ifndef LETHE_FUZZ_MEMORY_FILE_H_
#define LETHE_FUZZ_MEMORY_FILE_H_

#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace lethe {

class MemoryFile {
 public:
  MemoryFile() : fd_(memfd_create("lethe-fuzz-input", MFD_CLOEXEC)) {
    if (fd_ < 0) {
      std::perror("memfd_create");
      std::abort();
    }
    path_ = "/proc/self/fd/" + std::to_string(fd_);
  }
  MemoryFile(const MemoryFile&) = delete;
  MemoryFile& operator=(const MemoryFile&) = delete;

  // Replaces the file's contents with `size` bytes from `data`.
  void Set(const uint8_t* data, size_t size) {
    if (ftruncate(fd_, 0) != 0 ||
        pwrite(fd_, data, size, 0) != static_cast<ssize_t>(size)) {
      std::perror("memfd write");
      std::abort();
    }
  }
  const std::string& path() const { return path_; }

 private:
  int fd_;
  std::string path_;
};

}  // namespace lethe

#endif  // LETHE_FUZZ_MEMORY_FILE_H_
