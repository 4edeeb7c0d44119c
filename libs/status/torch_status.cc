#include "libs/status/torch_status.h"

#include "absl/strings/str_cat.h"

namespace lethe {

absl::Status StatusFromException(absl::string_view what,
                                 const std::exception& error) {
  absl::string_view message = error.what();
  const size_t newline = message.find('\n');
  if (newline != absl::string_view::npos) message = message.substr(0, newline);
  return absl::InternalError(absl::StrCat(what, " failed: ", message));
}

}  // namespace lethe
