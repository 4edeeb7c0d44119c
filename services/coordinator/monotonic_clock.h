// The coordinator's clock for heartbeats, timeouts and backoffs: the
// monotonic clock (std::chrono::steady_clock) expressed as absl::Time, so
// that a step of the wall clock (NTP, an operator) neither drops every
// worker nor keeps a dead one. Its values are only for differences with
// each other: they are not dates and never meet absl::Now()'s.
#ifndef LETHE_SERVICES_COORDINATOR_MONOTONIC_CLOCK_H_
#define LETHE_SERVICES_COORDINATOR_MONOTONIC_CLOCK_H_

#include <chrono>

#include "absl/time/time.h"

namespace lethe {

inline absl::Time MonotonicNow() {
  return absl::UnixEpoch() +
         absl::FromChrono(std::chrono::steady_clock::now().time_since_epoch());
}

}  // namespace lethe

#endif  // LETHE_SERVICES_COORDINATOR_MONOTONIC_CLOCK_H_
