// Lethe's metric catalog: every metric family any Lethe binary exports, with
// its type, labels and meaning. Code registers families through it (so a
// name cannot drift from the catalog), the README's table is checked
// against it, and so are the Grafana dashboard and the alert rules.
//
//   const MetricInfo& info = CatalogMetric("lethe_job_step");
//   auto& family = prometheus::BuildGauge().Name(info.name).Help(info.help)
//                      .Register(registry);
//
// Naming follows Prometheus practice: prefix lethe_, base units (seconds,
// bytes), _total for counters, _seconds for durations; labels have low
// cardinality (a job label only for jobs running now, never per step or
// per example).
#ifndef LETHE_LIBS_METRICS_METRIC_CATALOG_H_
#define LETHE_LIBS_METRICS_METRIC_CATALOG_H_

#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace lethe {

enum class MetricType { kCounter, kGauge, kHistogram };

struct MetricInfo {
  std::string name;
  MetricType type;
  std::vector<std::string> labels;
  std::string help;
  std::string exported_by;  // "coordinator", "worker" or "all".
};

// Every family, in the order the README lists them.
const std::vector<MetricInfo>& MetricCatalog();

// The catalog's entry for `name`; the program aborts for a name that is not
// in the catalog (a programming error, caught by every test that runs it).
const MetricInfo& CatalogMetric(absl::string_view name);

// "counter", "gauge", "histogram" (as in the exposition's # TYPE lines).
std::string MetricTypeName(MetricType type);

// The metric family a series or expression token belongs to: strips the
// _bucket, _sum and _count suffixes of histograms. Empty when `name` is not
// in the catalog.
std::string CatalogFamilyOf(absl::string_view name);

}  // namespace lethe

#endif  // LETHE_LIBS_METRICS_METRIC_CATALOG_H_
