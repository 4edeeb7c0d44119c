// This process's memory as Linux reports it in /proc/self/status (VmRSS,
// VmHWM, RssAnon, RssFile, ...), for benchmarks and tests that measure peak
// or resident memory, and the reset of the peak (VmHWM) through
// /proc/self/clear_refs.
//
//   RETURN_IF_ERROR(ResetPeakResidentMemory());
//   ... work ...
//   ASSIGN_OR_RETURN(int64_t peak, ProcessMemoryBytes("VmHWM"));
#ifndef LETHE_LIBS_SYSINFO_PROCESS_MEMORY_H_
#define LETHE_LIBS_SYSINFO_PROCESS_MEMORY_H_

#include <cstdint>
#include <map>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace lethe {

// The "Name:   1234 kB" lines of a /proc/<pid>/status text, in bytes, by
// name; other lines are skipped.
std::map<std::string, int64_t> ParseProcStatusMemory(absl::string_view text);

// ParseProcStatusMemory of /proc/self/status; UNAVAILABLE when it cannot be
// read (not Linux).
absl::StatusOr<std::map<std::string, int64_t>> ReadProcessMemory();

// One field of ReadProcessMemory(), e.g. "VmHWM"; NOT_FOUND when absent.
absl::StatusOr<int64_t> ProcessMemoryBytes(absl::string_view field);

// Sets VmHWM back to the current resident set (Linux >= 4.0).
absl::Status ResetPeakResidentMemory();

}  // namespace lethe

#endif  // LETHE_LIBS_SYSINFO_PROCESS_MEMORY_H_
