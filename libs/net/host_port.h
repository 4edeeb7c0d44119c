// "host:port" addresses as Lethe's flags take them ("127.0.0.1:0",
// "[::1]:50051", "coordinator.lethe.svc:7070").
//
//   std::string host; int port;
//   RETURN_IF_ERROR(ParseHostPort(flag_value, &host, &port));
#ifndef LETHE_LIBS_NET_HOST_PORT_H_
#define LETHE_LIBS_NET_HOST_PORT_H_

#include <string>

#include "absl/status/status.h"

namespace lethe {

// Splits `address` into host (IPv6 brackets removed) and port. Port 0 is
// allowed (bind to any free port). INVALID_ARGUMENT naming the address when
// it is malformed or the port is outside [0, 65535].
absl::Status ParseHostPort(const std::string& address, std::string* host,
                           int* port);

}  // namespace lethe

#endif  // LETHE_LIBS_NET_HOST_PORT_H_
