// MetricsEndpoint in a process that has loaded LibTorch. Debian's LibTorch
// and its dependencies (OpenBLAS, glog) bring about 105 KB of static TLS,
// which made glibc refuse threads with small fixed stacks (civetweb's, inside
// prometheus-cpp's Exposer). See DEVELOPERS.md.
#include <ATen/ops/ones.h>

#include <memory>
#include <string>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "libs/metrics/metrics_endpoint.h"
#include "libs/net/http_client.h"
#include "prometheus/counter.h"

namespace lethe {
namespace {

TEST(MetricsEndpointTorchTest, ServesInAProcessWithLibTorch) {
  // Calls into libtorch_cpu so the library is really loaded, whatever the
  // linker's --as-needed setting.
  ASSERT_EQ(at::ones({2}).sum().item<float>(), 2.0f);

  auto registry = std::make_shared<prometheus::Registry>();
  prometheus::BuildCounter()
      .Name("lethe_torch_test_total")
      .Help("Test counter.")
      .Register(*registry)
      .Add({})
      .Increment(5);
  absl::StatusOr<std::unique_ptr<MetricsEndpoint>> endpoint =
      MetricsEndpoint::Start("127.0.0.1:0", registry);
  ASSERT_TRUE(endpoint.ok()) << endpoint.status();
  absl::StatusOr<HttpResponse> response =
      HttpGet("127.0.0.1", (*endpoint)->port(), "/metrics");
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->status_code, 200);
  EXPECT_TRUE(absl::StrContains(response->body, "lethe_torch_test_total 5\n"))
      << response->body;
}

}  // namespace
}  // namespace lethe
