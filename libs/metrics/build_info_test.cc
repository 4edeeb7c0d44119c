#include "libs/metrics/build_info.h"

#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "libs/metrics/metric_catalog.h"
#include "libs/metrics/metrics_endpoint.h"
#include "prometheus/metric_family.h"
#include "prometheus/metric_type.h"

namespace lethe {
namespace {

TEST(BuildInfoTest, ExportsComponentAndVersion) {
  prometheus::Registry registry;
  RegisterBuildInfo(registry, "worker");
  const std::string text = SerializeToText(registry);
  EXPECT_TRUE(absl::StrContains(
      text, absl::StrCat("lethe_build_info{component=\"worker\",version=\"",
                         kLetheVersion, "\"} 1\n")))
      << text;
}

std::string TypeName(prometheus::MetricType type) {
  switch (type) {
    case prometheus::MetricType::Counter:
      return "counter";
    case prometheus::MetricType::Gauge:
      return "gauge";
    case prometheus::MetricType::Histogram:
      return "histogram";
    default:
      return "other";
  }
}

// The catalog promises that every registered family has its catalog entry's
// help, type and label names (what Prometheus and the README show).
TEST(BuildInfoTest, EveryRegisteredFamilyIsRegisteredAsTheCatalogSays) {
  prometheus::Registry registry;
  RegisterBuildInfo(registry, "coordinator");
  const std::vector<prometheus::MetricFamily> families = registry.Collect();
  ASSERT_FALSE(families.empty());
  for (const prometheus::MetricFamily& family : families) {
    SCOPED_TRACE(family.name);
    ASSERT_EQ(CatalogFamilyOf(family.name), family.name)
        << "not in the catalog";
    const MetricInfo& info = CatalogMetric(family.name);
    EXPECT_EQ(family.help, info.help);
    EXPECT_EQ(TypeName(family.type), MetricTypeName(info.type));
    const std::set<std::string> expected(info.labels.begin(),
                                         info.labels.end());
    for (const prometheus::ClientMetric& metric : family.metric) {
      std::set<std::string> labels;
      for (const prometheus::ClientMetric::Label& label : metric.label) {
        labels.insert(label.name);
      }
      EXPECT_EQ(labels, expected);
    }
  }
}

}  // namespace
}  // namespace lethe
