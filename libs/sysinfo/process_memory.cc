#include "libs/sysinfo/process_memory.h"

#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace lethe {

std::map<std::string, int64_t> ParseProcStatusMemory(absl::string_view text) {
  std::map<std::string, int64_t> fields;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    const size_t colon = line.find(':');
    if (colon == absl::string_view::npos) continue;
    absl::string_view value = line.substr(colon + 1);
    if (!absl::ConsumeSuffix(&value, " kB")) continue;
    int64_t kilobytes = 0;
    if (absl::SimpleAtoi(absl::StripAsciiWhitespace(value), &kilobytes)) {
      fields[std::string(line.substr(0, colon))] = kilobytes * 1024;
    }
  }
  return fields;
}

absl::StatusOr<std::map<std::string, int64_t>> ReadProcessMemory() {
  std::ifstream status("/proc/self/status");
  if (!status) {
    return absl::UnavailableError("cannot read /proc/self/status");
  }
  std::stringstream text;
  text << status.rdbuf();
  return ParseProcStatusMemory(text.str());
}

absl::StatusOr<int64_t> ProcessMemoryBytes(absl::string_view field) {
  absl::StatusOr<std::map<std::string, int64_t>> fields = ReadProcessMemory();
  if (!fields.ok()) return fields.status();
  const auto found = fields->find(std::string(field));
  if (found == fields->end()) {
    return absl::NotFoundError(
        absl::StrCat("/proc/self/status has no ", field));
  }
  return found->second;
}

absl::Status ResetPeakResidentMemory() {
  std::ofstream clear("/proc/self/clear_refs");
  clear << "5";
  clear.close();
  if (!clear) {
    return absl::UnavailableError(
        "cannot reset the peak resident set through /proc/self/clear_refs");
  }
  return absl::OkStatus();
}

}  // namespace lethe
