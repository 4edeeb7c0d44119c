// Lethe's log lines: every binary and library logs through glog (Debian's
// libgoogle-glog-dev, which LibTorch already loads; Debian's Abseil
// 20220623 has no absl/log), to stderr, one line per message:
//
//   2026-12-04 21:04:31.123456 INFO lethe-worker 4242 worker_main.cc:249] ...
//
// (local time, severity, the binary's component name, process id, source
// line). Each binary calls InitLogging once, first thing in main; then
//
//   LOG(INFO) << "registered with " << address;
//   LOG(WARNING) << "checkpoint " << dir << " skipped: " << status;
//   VLOG(1) << "detail";  // shown with GLOG_v=1 (or higher) in the environment
//
// Verbosity comes from the environment, as glog reads it: GLOG_v=N shows
// VLOG(N) and below, GLOG_minloglevel=1 hides INFO (2: WARNING too).
// Libraries return a Status or log; they never print. A line logged before
// InitLogging still reaches stderr, in glog's own format.
#ifndef LETHE_LIBS_LOGGING_LOGGING_H_
#define LETHE_LIBS_LOGGING_LOGGING_H_

#include <glog/logging.h>

#include <string>

namespace lethe {

// Sends glog's lines to stderr with Lethe's prefix naming `component`
// (e.g. "lethe-worker"). Later calls only change the component.
void InitLogging(const char* argv0, const std::string& component);

// The prefix of a line, without the trailing space: "2026-12-04
// 21:04:31.123456 INFO lethe-worker 4242 worker_main.cc:249]". `tm` is local
// time; `file` is reduced to its base name.
std::string LogPrefix(const std::tm& tm, int microseconds, const char* severity,
                      const std::string& component, int pid, const char* file,
                      int line);

}  // namespace lethe

#endif  // LETHE_LIBS_LOGGING_LOGGING_H_
