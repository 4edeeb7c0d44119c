// Fuzzes job specs written as YAML (libs/jobs/job_spec.h ParseJobSpecYaml,
// through libs/yaml's YamlToJson), then completes and validates what parses
// (job_spec_checks.h).
#include <cstdint>
#include <string>

#include "fuzz/job_spec_checks.h"
#include "libs/jobs/job_spec.h"
#include "libs/yaml/yaml_json.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  // The converter alone first: YAML documents that are not specs too.
  const absl::StatusOr<nlohmann::json> json =
      lethe::YamlToJson(text, "spec.yaml");
  if (!json.ok()) return 0;
  const absl::StatusOr<lethe::v1::JobSpec> spec =
      lethe::ParseJobSpecYaml(text, "spec.yaml");
  if (spec.ok()) lethe::CheckParsedJobSpec(*spec);
  return 0;
}
