// A minimal blocking HTTP/1.0 GET client for loopback services: Lethe's
// tests and tools read /metrics endpoints and Prometheus' query API with it.
//
//   ASSIGN_OR_RETURN(HttpResponse response,
//                    HttpGet("127.0.0.1", 9090, "/api/v1/query?query=up"));
//   if (response.status_code != 200) ...
#ifndef LETHE_LIBS_NET_HTTP_CLIENT_H_
#define LETHE_LIBS_NET_HTTP_CLIENT_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace lethe {

struct HttpResponse {
  int status_code = 0;
  std::string body;
};

// GETs `path` (with its query string, already URL-encoded) from an IPv4
// host:port. UNAVAILABLE when nothing listens, DEADLINE_EXCEEDED past
// `timeout`, DATA_LOSS for a malformed response.
absl::StatusOr<HttpResponse> HttpGet(
    const std::string& host, int port, const std::string& path,
    absl::Duration timeout = absl::Seconds(10));

// Percent-encodes `text` for use inside a query string value.
std::string UrlEncode(const std::string& text);

}  // namespace lethe

#endif  // LETHE_LIBS_NET_HTTP_CLIENT_H_
