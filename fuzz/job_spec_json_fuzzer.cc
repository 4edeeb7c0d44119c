// Fuzzes job specs written as JSON (libs/jobs/job_spec.h ParseJobSpecJson),
// then completes and validates what parses (job_spec_checks.h).
#include <cstdint>
#include <string>

#include "fuzz/job_spec_checks.h"
#include "libs/jobs/job_spec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  const absl::StatusOr<lethe::v1::JobSpec> spec =
      lethe::ParseJobSpecJson(text, "spec.json");
  if (spec.ok()) lethe::CheckParsedJobSpec(*spec);
  return 0;
}
