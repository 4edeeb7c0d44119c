// A fence on a job's output directory against stale writers. Each attempt
// of a job carries a generation that only grows (the job store counts the
// attempts it starts); the newest generation that claimed the directory is
// recorded in <dir>/.lethe-generation. An attempt claims the directory
// before it writes anything and checks it again before every checkpoint and
// before saving the model: an attempt that finds a newer generation there
// has been replaced (its worker was cut off and the job restarted
// elsewhere) and must stop without writing.
//
//   RETURN_IF_ERROR(ClaimGeneration(output_dir, attempt.generation()));
//   ...
//   RETURN_IF_ERROR(CheckGeneration(output_dir, attempt.generation()));
//   WriteCheckpoint(...);
//
// Claims from processes on one machine are serialised with flock; across
// machines on a shared file system the check narrows the window to the
// time between the check and the write (the worker also stops its own
// attempt when it loses the coordinator, see worker_main.cc).
#ifndef LETHE_LIBS_FILES_GENERATION_FENCE_H_
#define LETHE_LIBS_FILES_GENERATION_FENCE_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace lethe {

// The generation recorded in `dir`; 0 when none is.
// DATA_LOSS when the record is not a number.
absl::StatusOr<int64_t> RecordedGeneration(const std::string& dir);

// Records `generation` (> 0) as the newest writer of `dir` (created if
// needed). FAILED_PRECONDITION naming both generations when a newer one is
// already recorded; claiming the recorded generation again is OK.
absl::Status ClaimGeneration(const std::string& dir, int64_t generation);

// OK while no generation newer than `generation` is recorded in `dir`;
// else FAILED_PRECONDITION ("superseded by attempt generation N").
absl::Status CheckGeneration(const std::string& dir, int64_t generation);

}  // namespace lethe

#endif  // LETHE_LIBS_FILES_GENERATION_FENCE_H_
