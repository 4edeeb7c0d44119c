// What the two job spec fuzzers do with a spec that parsed: complete and
// validate it as the coordinator does, and check that protobuf's JSON form of
// it parses back, as JSON and as YAML (a JSON flow mapping is YAML), to the
// same spec.
#ifndef LETHE_FUZZ_JOB_SPEC_CHECKS_H_
#define LETHE_FUZZ_JOB_SPEC_CHECKS_H_

#include <google/protobuf/util/field_comparator.h>
#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/message_differencer.h>

#include <string>

#include "fuzz/fuzz_check.h"
#include "libs/jobs/job_spec.h"

namespace lethe {

// Equal field for field, NaN equal to NaN ("NaN" is a valid proto3 JSON
// double), and a field left unset equal to one set to its default: -0.0
// counts as set and prints as -0, which reads back as an unset 0.
inline bool SameSpec(const v1::JobSpec& a, const v1::JobSpec& b) {
  using google::protobuf::util::MessageDifferencer;
  google::protobuf::util::DefaultFieldComparator comparator;
  comparator.set_treat_nan_as_equal(true);
  MessageDifferencer differencer;
  differencer.set_field_comparator(&comparator);
  differencer.set_message_field_comparison(MessageDifferencer::EQUIVALENT);
  return differencer.Compare(a, b);
}

inline void CheckParsedJobSpec(const v1::JobSpec& spec) {
  std::string json;
  const auto printed = google::protobuf::util::MessageToJsonString(spec, &json);
  FUZZ_CHECK(printed.ok()) << printed.ToString();
  const absl::StatusOr<v1::JobSpec> from_json =
      ParseJobSpecJson(json, "printed.json");
  FUZZ_CHECK(from_json.ok()) << from_json.status() << "\n" << json;
  FUZZ_CHECK(SameSpec(*from_json, spec)) << json;
  const absl::StatusOr<v1::JobSpec> from_yaml =
      ParseJobSpecYaml(json, "printed.yaml");
  FUZZ_CHECK(from_yaml.ok()) << from_yaml.status() << "\n" << json;
  FUZZ_CHECK(SameSpec(*from_yaml, spec)) << json << "\nreads as YAML:\n"
                                         << from_yaml->DebugString();

  const v1::JobSpec completed = JobSpecWithDefaults(spec);
  FUZZ_CHECK(SameSpec(JobSpecWithDefaults(completed), completed))
      << "JobSpecWithDefaults is not idempotent";
  ValidateJobSpec(completed).IgnoreError();
  const absl::StatusOr<UnlearningMethod> method =
      MethodFromSpec(completed.method());
  if (method.ok()) {
    ValidateObjectiveParams(
        *method, ObjectiveParamsFromSpec(*method, completed.method_params()))
        .IgnoreError();
  }
}

}  // namespace lethe

#endif  // LETHE_FUZZ_JOB_SPEC_CHECKS_H_
