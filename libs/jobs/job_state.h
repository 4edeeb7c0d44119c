// Facts about a job's lifecycle states (lethe.v1.Job.State) that every side
// shares: the store, the coordinator and the CLI client, which does not link
// the store.
#ifndef LETHE_LIBS_JOBS_JOB_STATE_H_
#define LETHE_LIBS_JOBS_JOB_STATE_H_

#include "lethe/v1/job.pb.h"

namespace lethe {

// SUCCEEDED, FAILED and CANCELLED: a job in one of them never changes again.
bool IsFinalState(v1::Job::State state);

}  // namespace lethe

#endif  // LETHE_LIBS_JOBS_JOB_STATE_H_
