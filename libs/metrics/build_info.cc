#include "libs/metrics/build_info.h"

#include "libs/metrics/metric_catalog.h"
#include "prometheus/gauge.h"

namespace lethe {

void RegisterBuildInfo(prometheus::Registry& registry,
                       const std::string& component) {
  const MetricInfo& info = CatalogMetric("lethe_build_info");
  prometheus::BuildGauge()
      .Name(info.name)
      .Help(info.help)
      .Register(registry)
      .Add({{"component", component}, {"version", kLetheVersion}})
      .Set(1);
}

}  // namespace lethe
