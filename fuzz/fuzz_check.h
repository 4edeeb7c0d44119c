// FUZZ_CHECK(condition) << message: an invariant of a parser's result. When
// it does not hold, the message goes to stderr and the process aborts, so
// libFuzzer saves the input as a crash like any sanitizer finding.
#ifndef LETHE_FUZZ_FUZZ_CHECK_H_
#define LETHE_FUZZ_FUZZ_CHECK_H_

#include <cstdlib>
#include <iostream>
#include <sstream>

namespace lethe {

class FuzzCheckFailure {
 public:
  FuzzCheckFailure(const char* file, int line, const char* condition) {
    stream_ << file << ":" << line << ": FUZZ_CHECK(" << condition
            << ") failed: ";
  }
  ~FuzzCheckFailure() {
    std::cerr << stream_.str() << std::endl;
    std::abort();
  }
  std::ostream& stream() { return stream_; }

 private:
  std::ostringstream stream_;
};

}  // namespace lethe

#define FUZZ_CHECK(condition) \
  if (condition) {            \
  } else                      \
    ::lethe::FuzzCheckFailure(__FILE__, __LINE__, #condition).stream()

#endif  // LETHE_FUZZ_FUZZ_CHECK_H_
