// Early-return helpers for absl::Status and absl::StatusOr<T>.
//
// Debian's Abseil (20220623) predates Abseil's own macros, so Lethe has this
// small pair:
//
//   absl::Status Load(const std::string& path) {
//     RETURN_IF_ERROR(CheckReadable(path));
//     ASSIGN_OR_RETURN(std::string bytes, ReadFile(path));
//     ...
//   }
//
// RETURN_IF_ERROR(expr) returns the status of `expr` from the enclosing
// function when it is not OK. ASSIGN_OR_RETURN(lhs, expr) evaluates a
// StatusOr, returns its status when not OK, and otherwise moves its value
// into `lhs` (which may be a declaration).
#ifndef LETHE_LIBS_STATUS_STATUS_MACROS_H_
#define LETHE_LIBS_STATUS_STATUS_MACROS_H_

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define RETURN_IF_ERROR(expr)                          \
  do {                                                 \
    ::absl::Status lethe_status_macro_status = (expr); \
    if (!lethe_status_macro_status.ok()) {             \
      return lethe_status_macro_status;                \
    }                                                  \
  } while (false)

#define LETHE_STATUS_MACROS_CONCAT_INNER(a, b) a##b
#define LETHE_STATUS_MACROS_CONCAT(a, b) LETHE_STATUS_MACROS_CONCAT_INNER(a, b)

#define ASSIGN_OR_RETURN(lhs, expr) \
  LETHE_ASSIGN_OR_RETURN_IMPL(      \
      LETHE_STATUS_MACROS_CONCAT(lethe_status_macro_or, __LINE__), lhs, expr)

#define LETHE_ASSIGN_OR_RETURN_IMPL(statusor, lhs, expr) \
  auto statusor = (expr);                                \
  if (!statusor.ok()) {                                  \
    return std::move(statusor).status();                 \
  }                                                      \
  lhs = std::move(statusor).value()

#endif  // LETHE_LIBS_STATUS_STATUS_MACROS_H_
