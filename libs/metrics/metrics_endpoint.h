// Serves Prometheus metrics over HTTP (/metrics) with prometheus-cpp.
//
//   auto registry = std::make_shared<prometheus::Registry>();
//   ASSIGN_OR_RETURN(std::unique_ptr<MetricsEndpoint> endpoint,
//                    MetricsEndpoint::Start("127.0.0.1:0", registry));
//   LOG(INFO) << "metrics at " << endpoint->url();
//
// The endpoint keeps the registry alive while it serves it.
#ifndef LETHE_LIBS_METRICS_METRICS_ENDPOINT_H_
#define LETHE_LIBS_METRICS_METRICS_ENDPOINT_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "prometheus/exposer.h"
#include "prometheus/registry.h"

namespace lethe {

class MetricsEndpoint {
 public:
  // Listens on `address` ("host:port"; port 0 picks a free one).
  // INVALID_ARGUMENT for a malformed address, UNAVAILABLE when it cannot be
  // bound.
  static absl::StatusOr<std::unique_ptr<MetricsEndpoint>> Start(
      const std::string& address,
      std::shared_ptr<prometheus::Registry> registry);

  int port() const { return port_; }
  // "http://host:port/metrics".
  const std::string& url() const { return url_; }

 private:
  MetricsEndpoint(std::unique_ptr<prometheus::Exposer> exposer,
                  std::shared_ptr<prometheus::Registry> registry, int port,
                  std::string url);

  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<prometheus::Exposer> exposer_;
  int port_;
  std::string url_;
};

// The registry's current values in the Prometheus text exposition format,
// exactly as /metrics serves them.
std::string SerializeToText(prometheus::Registry& registry);

}  // namespace lethe

#endif  // LETHE_LIBS_METRICS_METRICS_ENDPOINT_H_
