// Lethe's log lines: every binary and library logs through glog (Debian's
// libgoogle-glog-dev, which LibTorch already loads; Debian's Abseil
// 20220623 has no absl/log), to stderr, one line per message:
//
//   2026-12-04 21:04:31.123456 INFO lethe-worker 4242 worker_main.cc:249] ...
//
// (local time, severity, the binary's component name, process id, source
// line). Each binary calls InitLogging once, first thing in main; then
//
//   LETHE_LOG(INFO) << "registered with " << address;
//   LETHE_LOG(WARNING) << "checkpoint " << dir << " skipped: " << status;
//   LETHE_VLOG(1) << "detail";  // shown with GLOG_v=1 (or higher)
//
// This header does not include glog's: a CUDA LibTorch (a PyTorch wheel)
// is built without glog and defines LOG, CHECK and VLOG macros of its own,
// which must not meet glog's in a file that includes both. glog stays in
// logging.cc.
//
// Verbosity comes from the environment, as glog reads it: GLOG_v=N shows
// LETHE_VLOG(N) and below, GLOG_minloglevel=1 hides INFO (2: WARNING too).
// Libraries return a Status or log; they never print. A line logged before
// InitLogging still reaches stderr, in glog's own format. FATAL aborts
// after logging.
#ifndef LETHE_LIBS_LOGGING_LOGGING_H_
#define LETHE_LIBS_LOGGING_LOGGING_H_

#include <ctime>
#include <sstream>
#include <string>

namespace lethe {

enum class LogSeverity { INFO, WARNING, ERROR, FATAL };

// One log line, written when destroyed (use LETHE_LOG).
class LogMessage {
 public:
  LogMessage(LogSeverity severity, const char* file, int line)
      : severity_(severity), file_(file), line_(line) {}
  LogMessage(const LogMessage&) = delete;
  LogMessage& operator=(const LogMessage&) = delete;
  ~LogMessage();
  std::ostream& stream() { return stream_; }

 private:
  LogSeverity severity_;
  const char* file_;
  int line_;
  std::ostringstream stream_;
};

// Sends log lines to stderr with Lethe's prefix naming `component`
// (e.g. "lethe-worker"). Later calls only change the component.
void InitLogging(const char* argv0, const std::string& component);

// Whether LETHE_VLOG(level) lines are written; SetVerbosity changes the
// level GLOG_v gave.
bool VerboseLogging(int level);
void SetVerbosity(int level);

// The prefix of a line, without the trailing space: "2026-12-04
// 21:04:31.123456 INFO lethe-worker 4242 worker_main.cc:249]". `tm` is local
// time; `file` is reduced to its base name.
std::string LogPrefix(const std::tm& tm, int microseconds, const char* severity,
                      const std::string& component, int pid, const char* file,
                      int line);

}  // namespace lethe

#define LETHE_LOG(severity)                                               \
  ::lethe::LogMessage(::lethe::LogSeverity::severity, __FILE__, __LINE__) \
      .stream()

#define LETHE_VLOG(level)                \
  if (!::lethe::VerboseLogging(level)) { \
  } else /* NOLINT */                    \
    LETHE_LOG(INFO)

#endif  // LETHE_LIBS_LOGGING_LOGGING_H_
