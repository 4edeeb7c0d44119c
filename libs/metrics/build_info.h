// Lethe's version and the `lethe_build_info` gauge every binary exports.
//
//   RegisterBuildInfo(*registry, "coordinator");
//   // lethe_build_info{component="coordinator",version="0.1.0"} 1
#ifndef LETHE_LIBS_METRICS_BUILD_INFO_H_
#define LETHE_LIBS_METRICS_BUILD_INFO_H_

#include <string>

#include "prometheus/registry.h"

namespace lethe {

inline constexpr char kLetheVersion[] = "0.1.0";

// Adds the constant-1 gauge lethe_build_info{component, version}.
void RegisterBuildInfo(prometheus::Registry& registry,
                       const std::string& component);

}  // namespace lethe

#endif  // LETHE_LIBS_METRICS_BUILD_INFO_H_
