// glog's custom prefixes exist in Debian's libglog 0.6 (the library exports
// InitGoogleLogging with a prefix callback) but its header hides them
// unless this is defined.
#define GLOG_CUSTOM_PREFIX_SUPPORT 1
#include "libs/logging/logging.h"

#include <glog/logging.h>
#include <unistd.h>

#include <cstring>
#include <ctime>
#include <mutex>
#include <ostream>

#include "absl/strings/str_format.h"

namespace lethe {
namespace {

std::mutex component_mutex;
std::string* component_name = nullptr;  // Guarded by component_mutex.

void WritePrefix(std::ostream& out, const google::LogMessageInfo& info,
                 void* /*data*/) {
  std::string component;
  {
    std::lock_guard<std::mutex> lock(component_mutex);
    if (component_name != nullptr) component = *component_name;
  }
  out << LogPrefix(info.time.tm(), info.time.usec(), info.severity, component,
                   static_cast<int>(getpid()), info.filename, info.line_number);
}

}  // namespace

LogMessage::~LogMessage() {
  const std::string text = stream_.str();
  switch (severity_) {
    case LogSeverity::INFO:
      google::LogMessage(file_, line_, google::GLOG_INFO).stream() << text;
      break;
    case LogSeverity::WARNING:
      google::LogMessage(file_, line_, google::GLOG_WARNING).stream() << text;
      break;
    case LogSeverity::ERROR:
      google::LogMessage(file_, line_, google::GLOG_ERROR).stream() << text;
      break;
    case LogSeverity::FATAL:
      google::LogMessageFatal(file_, line_).stream() << text;
      break;
  }
}

bool VerboseLogging(int level) { return FLAGS_v >= level; }

void SetVerbosity(int level) { FLAGS_v = level; }

std::string LogPrefix(const std::tm& tm, int microseconds, const char* severity,
                      const std::string& component, int pid, const char* file,
                      int line) {
  const char* slash = std::strrchr(file, '/');
  return absl::StrFormat(
      "%04d-%02d-%02d %02d:%02d:%02d.%06d %s %s %d %s:%d]", tm.tm_year + 1900,
      tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, microseconds,
      severity, component, pid, slash != nullptr ? slash + 1 : file, line);
}

void InitLogging(const char* argv0, const std::string& component) {
  {
    std::lock_guard<std::mutex> lock(component_mutex);
    if (component_name == nullptr) {
      component_name = new std::string(component);
    } else {
      *component_name = component;
    }
  }
  FLAGS_logtostderr = true;
  FLAGS_colorlogtostderr = false;
  if (!google::IsGoogleLoggingInitialized()) {
    google::InitGoogleLogging(argv0, &WritePrefix, nullptr);
  }
}

}  // namespace lethe
