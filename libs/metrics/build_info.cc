#include "libs/metrics/build_info.h"

#include "prometheus/gauge.h"

namespace lethe {

void RegisterBuildInfo(prometheus::Registry& registry,
                       const std::string& component) {
  prometheus::BuildGauge()
      .Name("lethe_build_info")
      .Help("Always 1; labels name the Lethe component and version.")
      .Register(registry)
      .Add({{"component", component}, {"version", kLetheVersion}})
      .Set(1);
}

}  // namespace lethe
