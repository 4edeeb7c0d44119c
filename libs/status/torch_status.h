// Turns LibTorch exceptions into absl::Status at Lethe's library boundaries.
//
// LibTorch reports errors by throwing c10::Error (and occasionally
// std::exception). Lethe's libraries never let exceptions escape:
//
//   absl::StatusOr<at::Tensor> Forward(...) {
//     return CallTorch("forward pass", [&] { return model->forward(x); });
//   }
//
// CallTorch runs `fn`, returns its value (or OkStatus for void), and maps a
// thrown exception to INTERNAL with `what` and the exception's first line.
#ifndef LETHE_LIBS_STATUS_TORCH_STATUS_H_
#define LETHE_LIBS_STATUS_TORCH_STATUS_H_

#include <exception>
#include <string>
#include <type_traits>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace lethe {

// The status for an exception thrown while doing `what`. Keeps the first line
// of the message only: c10::Error appends a C++ backtrace after it.
absl::Status StatusFromException(absl::string_view what,
                                 const std::exception& error);

template <typename Fn>
auto CallTorch(absl::string_view what, Fn&& fn)
    -> std::conditional_t<std::is_void_v<std::invoke_result_t<Fn>>,
                          absl::Status,
                          absl::StatusOr<std::invoke_result_t<Fn>>> {
  try {
    if constexpr (std::is_void_v<std::invoke_result_t<Fn>>) {
      std::forward<Fn>(fn)();
      return absl::OkStatus();
    } else {
      return std::forward<Fn>(fn)();
    }
  } catch (const std::exception& error) {
    return StatusFromException(what, error);
  }
}

}  // namespace lethe

#endif  // LETHE_LIBS_STATUS_TORCH_STATUS_H_
