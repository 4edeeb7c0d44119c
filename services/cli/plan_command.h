// `lethe plan`: how much memory each rank of a job needs, by category
// (libs/plan/memory_plan.h), printed before anything is loaded. Reads only
// <spec.model_dir>/config.json.
//
//   ASSIGN_OR_RETURN(v1::JobSpec spec, JobSpecFromFlags());
//   ASSIGN_OR_RETURN(std::string text, PlanCommand(spec));
//   std::cout << text;
#ifndef LETHE_SERVICES_CLI_PLAN_COMMAND_H_
#define LETHE_SERVICES_CLI_PLAN_COMMAND_H_

#include <string>

#include "absl/status/statusor.h"
#include "lethe/v1/job.pb.h"

namespace lethe {

// The job's settings (after JobSpecWithDefaults), the memory table in GiB
// per rank, and what the world size means for it. INVALID_ARGUMENT for a
// spec the plan cannot read (no model_dir, unknown method or dtype);
// config.json's own errors otherwise.
absl::StatusOr<std::string> PlanCommand(const v1::JobSpec& spec);

}  // namespace lethe

#endif  // LETHE_SERVICES_CLI_PLAN_COMMAND_H_
