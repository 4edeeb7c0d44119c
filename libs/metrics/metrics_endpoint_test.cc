#include "libs/metrics/metrics_endpoint.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "prometheus/counter.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"

namespace lethe {
namespace {

// A plain HTTP/1.0 GET over a loopback socket: the response, headers and all.
std::string HttpGet(int port, const std::string& path) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  EXPECT_GE(fd, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)),
            0);
  const std::string request =
      absl::StrCat("GET ", path, " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
  EXPECT_EQ(write(fd, request.data(), request.size()),
            static_cast<ssize_t>(request.size()));
  std::string response;
  char buffer[4096];
  ssize_t n;
  while ((n = read(fd, buffer, sizeof(buffer))) > 0) response.append(buffer, n);
  close(fd);
  return response;
}

std::shared_ptr<prometheus::Registry> RegistryWithOneOfEach() {
  auto registry = std::make_shared<prometheus::Registry>();
  prometheus::BuildCounter()
      .Name("lethe_test_requests_total")
      .Help("Requests handled.")
      .Register(*registry)
      .Add({{"method", "GetJob"}})
      .Increment(3);
  prometheus::BuildGauge()
      .Name("lethe_test_queue_length")
      .Help("Jobs waiting.")
      .Register(*registry)
      .Add({})
      .Set(7);
  prometheus::BuildHistogram()
      .Name("lethe_test_step_seconds")
      .Help("Step time.")
      .Register(*registry)
      .Add({}, prometheus::Histogram::BucketBoundaries{0.1, 1.0})
      .Observe(0.5);
  return registry;
}

TEST(SerializeToTextTest, WritesTheTextExpositionFormat) {
  std::shared_ptr<prometheus::Registry> registry = RegistryWithOneOfEach();
  const std::string text = SerializeToText(*registry);
  EXPECT_TRUE(absl::StrContains(
      text, "# TYPE lethe_test_requests_total counter\n"))
      << text;
  EXPECT_TRUE(absl::StrContains(
      text, "lethe_test_requests_total{method=\"GetJob\"} 3\n"))
      << text;
  EXPECT_TRUE(absl::StrContains(text, "lethe_test_queue_length 7\n")) << text;
  EXPECT_TRUE(absl::StrContains(
      text, "lethe_test_step_seconds_bucket{le=\"0.1\"} 0\n"))
      << text;
  EXPECT_TRUE(absl::StrContains(
      text, "lethe_test_step_seconds_bucket{le=\"1\"} 1\n"))
      << text;
  EXPECT_TRUE(absl::StrContains(text, "lethe_test_step_seconds_sum 0.5\n"))
      << text;
}

TEST(MetricsEndpointTest, ServesTheRegistryOverHttp) {
  std::shared_ptr<prometheus::Registry> registry = RegistryWithOneOfEach();
  absl::StatusOr<std::unique_ptr<MetricsEndpoint>> endpoint =
      MetricsEndpoint::Start("127.0.0.1:0", registry);
  ASSERT_TRUE(endpoint.ok()) << endpoint.status();
  ASSERT_GT((*endpoint)->port(), 0);
  EXPECT_EQ((*endpoint)->url(),
            absl::StrCat("http://127.0.0.1:", (*endpoint)->port(), "/metrics"));

  const std::string response = HttpGet((*endpoint)->port(), "/metrics");
  EXPECT_TRUE(absl::StartsWith(response, "HTTP/1.1 200")) << response;
  EXPECT_TRUE(absl::StrContains(
      response, "lethe_test_requests_total{method=\"GetJob\"} 3\n"))
      << response;
}

TEST(MetricsEndpointTest, BusyPortIsUnavailable) {
  auto registry = std::make_shared<prometheus::Registry>();
  absl::StatusOr<std::unique_ptr<MetricsEndpoint>> first =
      MetricsEndpoint::Start("127.0.0.1:0", registry);
  ASSERT_TRUE(first.ok()) << first.status();
  absl::StatusOr<std::unique_ptr<MetricsEndpoint>> second =
      MetricsEndpoint::Start(absl::StrCat("127.0.0.1:", (*first)->port()),
                             registry);
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable)
      << second.status();
}

TEST(MetricsEndpointTest, MalformedAddressIsInvalid) {
  EXPECT_EQ(MetricsEndpoint::Start("no-port", nullptr).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace lethe
