#include "libs/metrics/metrics_endpoint.h"

#include <exception>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "libs/net/host_port.h"
#include "libs/status/status_macros.h"
#include "prometheus/text_serializer.h"

namespace lethe {

MetricsEndpoint::MetricsEndpoint(std::unique_ptr<prometheus::Exposer> exposer,
                                 std::shared_ptr<prometheus::Registry> registry,
                                 int port, std::string url)
    : registry_(std::move(registry)),
      exposer_(std::move(exposer)),
      port_(port),
      url_(std::move(url)) {}

absl::StatusOr<std::unique_ptr<MetricsEndpoint>> MetricsEndpoint::Start(
    const std::string& address,
    std::shared_ptr<prometheus::Registry> registry) {
  std::string host;
  int requested_port = 0;
  RETURN_IF_ERROR(ParseHostPort(address, &host, &requested_port));
  std::unique_ptr<prometheus::Exposer> exposer;
  try {
    exposer = std::make_unique<prometheus::Exposer>(address, /*num_threads=*/2);
  } catch (const std::exception& error) {
    return absl::UnavailableError(
        absl::StrCat("cannot serve metrics on ", address, ": ", error.what()));
  }
  const std::vector<int> ports = exposer->GetListeningPorts();
  if (ports.empty() || ports.front() <= 0) {
    return absl::UnavailableError(
        absl::StrCat("metrics endpoint on ", address, " bound no port"));
  }
  exposer->RegisterCollectable(registry);
  const int port = ports.front();
  std::string url = absl::StrCat("http://", host, ":", port, "/metrics");
  return std::unique_ptr<MetricsEndpoint>(new MetricsEndpoint(
      std::move(exposer), std::move(registry), port, std::move(url)));
}

std::string SerializeToText(prometheus::Registry& registry) {
  return prometheus::TextSerializer().Serialize(registry.Collect());
}

}  // namespace lethe
