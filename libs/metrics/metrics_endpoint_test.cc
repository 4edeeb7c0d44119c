#include "libs/metrics/metrics_endpoint.h"

#include <memory>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "libs/net/http_client.h"
#include "prometheus/counter.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"

namespace lethe {
namespace {

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
  EXPECT_TRUE(
      absl::StrContains(text, "# TYPE lethe_test_requests_total counter\n"))
      << text;
  EXPECT_TRUE(absl::StrContains(
      text, "lethe_test_requests_total{method=\"GetJob\"} 3\n"))
      << text;
  EXPECT_TRUE(absl::StrContains(text, "lethe_test_queue_length 7\n")) << text;
  EXPECT_TRUE(
      absl::StrContains(text, "lethe_test_step_seconds_bucket{le=\"0.1\"} 0\n"))
      << text;
  EXPECT_TRUE(
      absl::StrContains(text, "lethe_test_step_seconds_bucket{le=\"1\"} 1\n"))
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

  absl::StatusOr<HttpResponse> response =
      HttpGet("127.0.0.1", (*endpoint)->port(), "/metrics");
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->status_code, 200);
  // The exposer adds its own exposer_* families before the registry's.
  EXPECT_TRUE(absl::EndsWith(response->body, SerializeToText(*registry)))
      << response->body;
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
