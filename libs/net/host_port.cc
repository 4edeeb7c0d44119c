#include "libs/net/host_port.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace lethe {

absl::Status ParseHostPort(const std::string& address, std::string* host,
                           int* port) {
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos || colon == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "address '", address, "' must look like host:port, e.g. 127.0.0.1:0"));
  }
  std::string host_part = address.substr(0, colon);
  if (host_part.size() >= 2 && host_part.front() == '[' &&
      host_part.back() == ']') {
    host_part = host_part.substr(1, host_part.size() - 2);
  }
  int port_number = -1;
  if (!absl::SimpleAtoi(address.substr(colon + 1), &port_number) ||
      port_number < 0 || port_number > 65535) {
    return absl::InvalidArgumentError(absl::StrCat(
        "address '", address, "' has no port in [0, 65535] after the ':'"));
  }
  *host = host_part;
  *port = port_number;
  return absl::OkStatus();
}

}  // namespace lethe
