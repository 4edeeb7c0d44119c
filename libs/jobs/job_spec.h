// Reading, completing and checking a forget request (lethe.v1.JobSpec).
//
// A spec goes through three steps before the coordinator stores it:
//
//   ASSIGN_OR_RETURN(lethe::v1::JobSpec spec,
//                    ParseJobSpecJson(text, "spec.json"));
//   spec = JobSpecWithDefaults(std::move(spec));
//   RETURN_IF_ERROR(ValidateJobSpec(spec));
//
// ParseJobSpecJson reads proto3 JSON: lowerCamelCase and original field
// names, enum names ("NPO_RT"), Durations as "3600s". Unknown fields and bad
// values are INVALID_ARGUMENT naming the source. ParseJobSpecYaml reads the
// same spec written as YAML, and ReadJobSpecFile picks one of the two by the
// file's extension.
//
// JobSpecWithDefaults fills fields left at zero/empty so the stored spec says
// exactly what will run (see its comment for the list).
//
// ValidateJobSpec returns the first problem it finds. Every error message
// starts with the field's path, e.g.
//   "spec.optimizer.learning_rate: must be positive and finite, got -1".
// output_dir may not be, contain or lie inside model_dir or data_dir.
// Bad values are INVALID_ARGUMENT; files and directories the spec names that
// do not exist are NOT_FOUND naming the path. It reads the file system
// (model_dir, tokenizer_path, data_dir, the split files, retain_logs_path,
// output_dir's parent), so it should run where the workers will see the same
// paths.
#ifndef LETHE_LIBS_JOBS_JOB_SPEC_H_
#define LETHE_LIBS_JOBS_JOB_SPEC_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "lethe/v1/job.pb.h"
#include "libs/unlearn/objective_params.h"

namespace lethe {

// Parses proto3 JSON into a JobSpec. `source_name` (a file name, "request")
// only labels error messages.
absl::StatusOr<v1::JobSpec> ParseJobSpecJson(absl::string_view json,
                                             absl::string_view source_name);

// Parses a spec written as YAML (libs/yaml/yaml_json.h): the fields and
// values of the JSON form, with YAML's syntax; the same spec gives the same
// JobSpec as ParseJobSpecJson. Floats may also be .inf, -.inf and .nan.
// YAML errors name the source, line and column; the top level must be a
// mapping; field errors read as ParseJobSpecJson's.
absl::StatusOr<v1::JobSpec> ParseJobSpecYaml(absl::string_view yaml,
                                             absl::string_view source_name);

// Reads a spec file by its extension (any case): .json with
// ParseJobSpecJson, .yaml or .yml with ParseJobSpecYaml. Another extension
// is INVALID_ARGUMENT (the file is not read); a file that cannot be read is
// NOT_FOUND.
absl::StatusOr<v1::JobSpec> ReadJobSpecFile(const std::string& path);

// Fills fields left at their zero value with Lethe's defaults:
//   tokenizer_path               <model_dir>/tokenizer.model
//   retain_split                 TOFU's complement of forget_split when it is
//                                "forgetNN" (forget01 -> retain99,
//                                forget05 -> retain95, forget10 -> retain90)
//   holdout_split                PGA only: holdoutNN for forgetNN
//   prompt_template              "plain"
//   optimizer.learning_rate      1e-5 (0 is never a usable rate)
//   optimizer (when absent)      weight_decay 0.01, warmup_epochs 1,
//                                max_grad_norm 1; once the message is
//                                present its zeros are taken literally (no
//                                decay, no warm-up, no clipping)
//   num_epochs                   5, when num_epochs and max_steps are both 0
//   per_device_batch_size        4
//   gradient_accumulation_steps  1
//   world_size                   1
//   device                       CPU
//   backend                      GLOO on CPU, NCCL on CUDA
//   threads_per_worker           0 (kept: the worker's own thread count)
//   max_length                   256
//   precision                    FP32
//   checkpoint.keep_last         2
//   run_policy (when absent)     max_restarts 2
// Method parameters stay as given: a coefficient left out takes the
// method's default (ObjectiveParamsFromSpec), one that is set (0 included)
// is used. Fields already set are never changed.
v1::JobSpec JobSpecWithDefaults(v1::JobSpec spec);

// Checks a spec after JobSpecWithDefaults; OK when the job can be scheduled.
// The method's coefficients are checked as the objective will use them
// (ValidateObjectiveParams), so a job that would fail at its first step
// (NPO with beta 0) is refused when it is submitted.
absl::Status ValidateJobSpec(const v1::JobSpec& spec);

// The one mapping from a spec's method to the objective's. INVALID_ARGUMENT
// for METHOD_UNSPECIFIED or a number the enum does not know.
absl::StatusOr<UnlearningMethod> MethodFromSpec(v1::Method method);

// The objective's coefficients for `method`: DefaultObjectiveParams(method)
// with every coefficient the spec sets (has_*) replacing its default, 0
// included. Unchecked; ValidateObjectiveParams checks the result.
ObjectiveParams ObjectiveParamsFromSpec(UnlearningMethod method,
                                        const v1::MethodParams& params);

}  // namespace lethe

#endif  // LETHE_LIBS_JOBS_JOB_SPEC_H_
