#include "libs/jobs/job_state.h"

namespace lethe {

bool IsFinalState(v1::Job::State state) {
  return state == v1::Job::SUCCEEDED || state == v1::Job::FAILED ||
         state == v1::Job::CANCELLED;
}

}  // namespace lethe
