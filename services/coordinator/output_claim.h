// A job's claim on its output directory, so that two jobs never write one
// (two writers pruning each other's checkpoints, one job's model returned
// as another's). The claim is <output_dir>/.lethe-job.json, written
// atomically when the job is created: {"job": "jobs/7", "request_id": ...}.
//
//   RETURN_IF_ERROR(CheckOutputClaim(spec.output_dir(), request_id, exists));
//   ... create the job ...
//   RETURN_IF_ERROR(WriteOutputClaim(spec.output_dir(), job, request_id));
//   ... `lethe delete` ...
//   ReleaseOutputClaim(spec.output_dir(), job);
#ifndef LETHE_SERVICES_COORDINATOR_OUTPUT_CLAIM_H_
#define LETHE_SERVICES_COORDINATOR_OUTPUT_CLAIM_H_

#include <functional>
#include <string>

#include "absl/status/status.h"

namespace lethe {

// OK when nothing claims `output_dir`, when the claim was made by a
// request with the same non-empty `request_id` (a retry of it), or when
// `job_exists` says its owner is no longer stored (deleted with a record too
// damaged to name its directory): a stale claim. FAILED_PRECONDITION
// otherwise, naming the owner only when `caller_may_see` says the caller
// may see that job (unset: always), so that another tenant's job names are
// not revealed; DATA_LOSS for a claim file that does not parse.
absl::Status CheckOutputClaim(
    const std::string& output_dir, const std::string& request_id,
    const std::function<bool(const std::string& job)>& job_exists,
    const std::function<bool(const std::string& job)>& caller_may_see = {});

// Creates `output_dir` if needed and writes the claim for `job`.
absl::Status WriteOutputClaim(const std::string& output_dir,
                              const std::string& job,
                              const std::string& request_id);

// Removes the claim if it names `job` (another job's claim is kept).
void ReleaseOutputClaim(const std::string& output_dir, const std::string& job);

}  // namespace lethe

#endif  // LETHE_SERVICES_COORDINATOR_OUTPUT_CLAIM_H_
