// Checks the metric catalog against Prometheus' naming practice and the text
// exposition format, and checks everything written against it: the README's
// metrics table, the Grafana dashboard (deploy/grafana/lethe.json) and the
// alerting rules (deploy/prometheus/lethe_alerts.yml). Where promtool is
// installed (Debian's `prometheus` package), it lints the exposition and
// checks the rules and the dashboard's PromQL; without it those tests skip.
#include "libs/metrics/metric_catalog.h"

#include <unistd.h>

#include <cctype>
#include <cstdlib>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "gtest/gtest.h"
#include "libs/files/file_io.h"
#include "libs/files/source_path_test_util.h"
#include "libs/metrics/build_info.h"
#include "libs/subprocess/subprocess.h"
#include "nlohmann/json.hpp"
#include "prometheus/counter.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/metric_family.h"
#include "prometheus/registry.h"
#include "prometheus/text_serializer.h"

namespace lethe {
namespace {

std::string ReadSource(const std::string& relative) {
  absl::StatusOr<std::string> text = ReadFileToString(SourcePath(relative));
  EXPECT_TRUE(text.ok()) << text.status();
  return text.value_or("");
}

// The full path of `program` on PATH, or "" when it is not installed.
std::string FindOnPath(const std::string& program) {
  const char* path = std::getenv("PATH");
  for (absl::string_view dir :
       absl::StrSplit(path != nullptr ? path : "/usr/bin:/bin", ':')) {
    if (dir.empty()) continue;
    std::string candidate = absl::StrCat(dir, "/", program);
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

struct CommandResult {
  bool success = false;
  std::string output;  // stdout and stderr together
};

// Runs `argv` (stdin from `stdin_path` when not empty) and collects its output.
CommandResult RunCommand(const std::vector<std::string>& argv,
                         const std::string& stdin_path = "") {
  static int runs = 0;
  const std::string output_path =
      absl::StrCat(testing::TempDir(), "/command_", ++runs, ".out");
  std::vector<std::string> command = argv;
  if (!stdin_path.empty()) {
    std::string line;
    for (const std::string& arg : argv) absl::StrAppend(&line, "'", arg, "' ");
    command = {"/bin/sh", "-c", absl::StrCat(line, "< '", stdin_path, "'")};
  }
  CommandResult result;
  absl::StatusOr<Subprocess> child =
      Subprocess::Start(command, {}, {output_path, output_path});
  if (!child.ok()) {
    result.output = child.status().ToString();
    return result;
  }
  absl::StatusOr<ExitStatus> exit = child->Wait();
  result.output = ReadFileToString(output_path).value_or("");
  if (!exit.ok()) {
    absl::StrAppend(&result.output, exit.status().ToString());
    return result;
  }
  result.success = exit->success();
  if (!result.success) absl::StrAppend(&result.output, exit->ToString());
  return result;
}

bool IsNameChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == ':';
}

// Every identifier that starts with lethe_ (a metric name in PromQL or in a
// rules file; label names and values never start with it here).
std::vector<std::string> LetheTokens(absl::string_view text) {
  std::vector<std::string> tokens;
  for (size_t i = text.find("lethe_"); i != absl::string_view::npos;
       i = text.find("lethe_", i + 1)) {
    if (i > 0 && IsNameChar(text[i - 1])) continue;
    size_t end = i;
    while (end < text.size() && IsNameChar(text[end])) ++end;
    tokens.emplace_back(text.substr(i, end - i));
  }
  return tokens;
}

// "" when `token` is a series of a catalog family, else the problem.
std::string CheckSeriesName(const std::string& token) {
  const std::string family = CatalogFamilyOf(token);
  if (family.empty()) return absl::StrCat(token, " is not in the catalog");
  if (CatalogMetric(family).type == MetricType::kHistogram && token == family) {
    return absl::StrCat(token,
                        " is a histogram: its series end in _bucket, _sum "
                        "or _count");
  }
  return "";
}

bool IsValidMetricName(absl::string_view name) {
  if (!absl::StartsWith(name, "lethe_") || name.size() == 6) return false;
  for (char c : name) {
    if (!(std::islower(static_cast<unsigned char>(c)) ||
          std::isdigit(static_cast<unsigned char>(c)) || c == '_')) {
      return false;
    }
  }
  return true;
}

// --- The catalog itself -----------------------------------------------------

TEST(MetricCatalogTest, NamesFollowPrometheusPractice) {
  ASSERT_FALSE(MetricCatalog().empty());
  for (const MetricInfo& info : MetricCatalog()) {
    SCOPED_TRACE(info.name);
    EXPECT_TRUE(IsValidMetricName(info.name))
        << "names match ^lethe_[a-z0-9_]+$";
    EXPECT_FALSE(absl::StrContains(info.name, "__"));
    EXPECT_FALSE(absl::EndsWith(info.name, "_"));
    const bool total = absl::EndsWith(info.name, "_total");
    switch (info.type) {
      case MetricType::kCounter:
        EXPECT_TRUE(total) << "counters end in _total";
        break;
      case MetricType::kGauge:
        EXPECT_FALSE(total) << "only counters end in _total";
        break;
      case MetricType::kHistogram:
        EXPECT_FALSE(total) << "only counters end in _total";
        EXPECT_TRUE(absl::EndsWith(info.name, "_seconds") ||
                    absl::EndsWith(info.name, "_bytes"))
            << "histograms observe base units (_seconds, _bytes)";
        break;
    }
    // Base units only.
    for (absl::string_view unit : {"_milliseconds", "_ms", "_minutes", "_hours",
                                   "_kilobytes", "_megabytes", "_percent"}) {
      EXPECT_FALSE(absl::StrContains(info.name, unit)) << unit;
    }
    EXPECT_FALSE(absl::StripAsciiWhitespace(info.help).empty());
    EXPECT_TRUE(info.exported_by == "coordinator" ||
                info.exported_by == "worker" || info.exported_by == "all")
        << info.exported_by;
  }
}

// The values each label may take, other than job (the name of a job that
// runs now; its series are removed when it ends) and term (a loss component
// of the job's method): finite sets that the registering code fixes, never
// anything per step, per example, per rank or per request.
const std::map<std::string, std::set<std::string>>& KnownLabelValues() {
  static const auto* values = new std::map<std::string, std::set<std::string>>{
      {"component", {"coordinator", "worker"}},  // RegisterBuildInfo's callers
      {"version", {kLetheVersion}},
      // v1::Job::State's names.
      {"state",
       {"QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLING", "CANCELLED"}},
      // Why the coordinator requeued or failed a job.
      {"reason",
       {"WORKER_LOST", "RANK_FAILED", "RANK_LOST", "DEADLINE_EXCEEDED",
        "COORDINATOR_RESTARTED", "CANCELLED_BY_USER"}},
      // The Jobs service's methods.
      {"method",
       {"CreateJob", "GetJob", "ListJobs", "CancelJob", "DeleteJob", "WatchJob",
        "StreamJobLogs"}},
      // absl::StatusCodeToString of the gRPC status codes.
      {"code",
       {"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED",
        "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
        "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
        "UNAUTHENTICATED"}},
      // Heartbeats (ok, error) and attempts (succeeded, failed, stopped).
      {"result", {"ok", "error", "succeeded", "failed", "stopped"}},
      // The job store's calls.
      {"operation",
       {"create", "read", "list", "transition", "update", "append_logs"}},
  };
  return *values;
}

TEST(MetricCatalogTest, LabelsHaveLowCardinality) {
  for (const MetricInfo& info : MetricCatalog()) {
    SCOPED_TRACE(info.name);
    std::set<std::string> seen;
    for (const std::string& label : info.labels) {
      EXPECT_TRUE(seen.insert(label).second) << "label " << label << " twice";
      EXPECT_NE(label, "le");
      EXPECT_FALSE(absl::StartsWith(label, "__"));
      if (label == "job") {
        EXPECT_TRUE(absl::StartsWith(info.name, "lethe_job_"))
            << "only a job's own series (removed with the job) carry its name";
        continue;
      }
      if (label == "term") {
        EXPECT_EQ(info.name, "lethe_job_loss") << "term is a loss component";
        continue;
      }
      const auto values = KnownLabelValues().find(label);
      if (values == KnownLabelValues().end()) {
        ADD_FAILURE() << "label " << label
                      << " has no known finite set of values (never per "
                         "step, per example or per rank)";
        continue;
      }
      EXPECT_LE(values->second.size(), 20u) << label;
    }
  }
}

// The registering code in this folder produces known label values only.
TEST(MetricCatalogTest, BuildInfoLabelValuesAreKnown) {
  prometheus::Registry registry;
  for (const char* component : {"coordinator", "worker"}) {
    RegisterBuildInfo(registry, component);
  }
  std::map<std::string, std::set<std::string>> produced;
  for (const prometheus::MetricFamily& family : registry.Collect()) {
    for (const prometheus::ClientMetric& metric : family.metric) {
      for (const prometheus::ClientMetric::Label& label : metric.label) {
        produced[label.name].insert(label.value);
      }
    }
  }
  EXPECT_EQ(produced.size(), 2u);
  for (const auto& [label, values] : produced) {
    for (const std::string& value : values) {
      EXPECT_EQ(KnownLabelValues().at(label).count(value), 1u)
          << label << "=\"" << value << "\"";
    }
  }
}

// Help texts that list a label's values in parentheses name known values.
TEST(MetricCatalogTest, HelpListsKnownLabelValuesOnly) {
  int lists = 0;
  for (const MetricInfo& info : MetricCatalog()) {
    if (info.labels.size() != 1) continue;
    const auto values = KnownLabelValues().find(info.labels[0]);
    if (values == KnownLabelValues().end()) continue;
    const size_t open = info.help.find('(');
    const size_t close = info.help.find(')', open);
    if (open == std::string::npos || close == std::string::npos) continue;
    const std::string list = info.help.substr(open + 1, close - open - 1);
    if (!absl::StrContains(list, ", ")) continue;
    ++lists;
    for (absl::string_view value : absl::StrSplit(list, ", ")) {
      EXPECT_EQ(values->second.count(std::string(value)), 1u)
          << info.name << ": " << value;
    }
  }
  EXPECT_GE(lists, 3);
}

TEST(MetricCatalogTest, NamesAreUniqueAndSeriesDoNotCollide) {
  // Every series name a family exposes, so that no gauge can be named like
  // a histogram's _count.
  std::map<std::string, std::string> series_owner;
  for (const MetricInfo& info : MetricCatalog()) {
    std::vector<std::string> series = {info.name};
    if (info.type == MetricType::kHistogram) {
      series = {info.name + "_bucket", info.name + "_sum",
                info.name + "_count"};
    }
    for (const std::string& name : series) {
      auto [it, inserted] = series_owner.emplace(name, info.name);
      EXPECT_TRUE(inserted)
          << name << " belongs to " << it->second << " and to " << info.name;
    }
  }
}

TEST(MetricCatalogTest, FamilyOfStripsHistogramSuffixesOnly) {
  EXPECT_EQ(CatalogFamilyOf("lethe_job_step"), "lethe_job_step");
  EXPECT_EQ(CatalogFamilyOf("lethe_api_request_duration_seconds_bucket"),
            "lethe_api_request_duration_seconds");
  EXPECT_EQ(CatalogFamilyOf("lethe_api_request_duration_seconds_count"),
            "lethe_api_request_duration_seconds");
  EXPECT_EQ(CatalogFamilyOf("lethe_job_step_count"), "");
  EXPECT_EQ(CatalogFamilyOf("lethe_no_such_metric"), "");
  EXPECT_EQ(MetricTypeName(CatalogMetric("lethe_jobs").type), "gauge");
}

// --- The exposition
// -----------------------------------------------------------

// Registers every catalog family in `registry`, with one series each.
void RegisterCatalog(prometheus::Registry& registry) {
  for (const MetricInfo& info : MetricCatalog()) {
    std::map<std::string, std::string> labels;
    for (const std::string& label : info.labels) labels[label] = "a\"b\\c";
    switch (info.type) {
      case MetricType::kCounter:
        prometheus::BuildCounter()
            .Name(info.name)
            .Help(info.help)
            .Register(registry)
            .Add(labels)
            .Increment(3);
        break;
      case MetricType::kGauge:
        prometheus::BuildGauge()
            .Name(info.name)
            .Help(info.help)
            .Register(registry)
            .Add(labels)
            .Set(0.25);
        break;
      case MetricType::kHistogram:
        prometheus::BuildHistogram()
            .Name(info.name)
            .Help(info.help)
            .Register(registry)
            .Add(labels, prometheus::Histogram::BucketBoundaries{0.01, 1, 60})
            .Observe(0.5);
        break;
    }
  }
}

struct Sample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};

struct ExposedFamily {
  std::string type;
  std::string help;  // unescaped
  std::vector<Sample> samples;
};

bool IsLabelName(absl::string_view name) {
  if (name.empty() || std::isdigit(static_cast<unsigned char>(name[0]))) {
    return false;
  }
  for (char c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_') return false;
  }
  return true;
}

bool IsMetricName(absl::string_view name) {
  if (name.empty() || std::isdigit(static_cast<unsigned char>(name[0]))) {
    return false;
  }
  for (char c : name) {
    if (!IsNameChar(c)) return false;
  }
  return true;
}

bool ParseValue(absl::string_view text, double* value) {
  if (text == "+Inf" || text == "-Inf" || text == "NaN") return true;
  return absl::SimpleAtod(text, value);
}

// Parses Prometheus' text exposition format (version 0.0.4) strictly.
absl::Status ParseExposition(absl::string_view text,
                             std::map<std::string, ExposedFamily>* families) {
  std::string current;  // the family of the latest # TYPE line
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_number;
    auto error = [&](absl::string_view what) {
      return absl::InvalidArgumentError(
          absl::StrCat("line ", line_number, ": ", what, ": ", line));
    };
    if (line.empty()) continue;
    if (absl::ConsumePrefix(&line, "# HELP ")) {
      std::pair<std::string, std::string> parts =
          absl::StrSplit(line, absl::MaxSplits(' ', 1));
      if (!IsMetricName(parts.first)) return error("bad metric name");
      std::string help;
      for (size_t i = 0; i < parts.second.size(); ++i) {
        char c = parts.second[i];
        if (c == '\\') {
          if (++i == parts.second.size()) return error("dangling escape");
          c = parts.second[i] == 'n' ? '\n' : parts.second[i];
          if (parts.second[i] != 'n' && c != '\\') {
            return error("bad escape in HELP");
          }
        }
        help.push_back(c);
      }
      ExposedFamily& family = (*families)[parts.first];
      if (!family.help.empty()) return error("second HELP");
      family.help = help;
      continue;
    }
    if (absl::ConsumePrefix(&line, "# TYPE ")) {
      std::pair<std::string, std::string> parts =
          absl::StrSplit(line, absl::MaxSplits(' ', 1));
      if (!IsMetricName(parts.first)) return error("bad metric name");
      static const std::set<std::string> kTypes = {
          "counter", "gauge", "histogram", "summary", "untyped"};
      if (kTypes.count(parts.second) == 0) return error("bad type");
      ExposedFamily& family = (*families)[parts.first];
      if (!family.type.empty() || !family.samples.empty()) {
        return error("TYPE after the family's samples or a second TYPE");
      }
      family.type = parts.second;
      current = parts.first;
      continue;
    }
    if (absl::StartsWith(line, "#")) continue;  // a comment
    Sample sample;
    size_t i = 0;
    while (i < line.size() && IsNameChar(line[i])) ++i;
    sample.name = std::string(line.substr(0, i));
    if (!IsMetricName(sample.name)) return error("bad metric name");
    if (i < line.size() && line[i] == '{') {
      ++i;
      while (i < line.size() && line[i] != '}') {
        size_t eq = line.find('=', i);
        if (eq == absl::string_view::npos) return error("label without =");
        std::string label(line.substr(i, eq - i));
        if (!IsLabelName(label)) return error("bad label name");
        i = eq + 1;
        if (i >= line.size() || line[i] != '"') return error("unquoted value");
        std::string value;
        for (++i; i < line.size() && line[i] != '"'; ++i) {
          if (line[i] == '\\') {
            if (++i == line.size()) return error("dangling escape");
            if (line[i] != '\\' && line[i] != '"' && line[i] != 'n') {
              return error("bad escape in label value");
            }
            value.push_back(line[i] == 'n' ? '\n' : line[i]);
          } else {
            value.push_back(line[i]);
          }
        }
        if (i >= line.size()) return error("unterminated label value");
        ++i;  // the closing quote
        if (!sample.labels.emplace(label, value).second) {
          return error("label twice");
        }
        if (i < line.size() && line[i] == ',') ++i;
      }
      if (i >= line.size()) return error("unterminated label set");
      ++i;  // '}'
    }
    if (i >= line.size() || line[i] != ' ') return error("no value");
    std::vector<absl::string_view> rest =
        absl::StrSplit(line.substr(i + 1), ' ');
    if (rest.empty() || rest.size() > 2) return error("bad value");
    if (!ParseValue(rest[0], &sample.value)) return error("bad value");
    int64_t timestamp;
    if (rest.size() == 2 && !absl::SimpleAtoi(rest[1], &timestamp)) {
      return error("bad timestamp");
    }
    // The sample belongs to the family of the latest TYPE line.
    if (current.empty()) return error("sample before any TYPE");
    const ExposedFamily& family = (*families)[current];
    std::set<std::string> names = {current};
    if (family.type == "histogram" || family.type == "summary") {
      names = {current + "_bucket", current + "_sum", current + "_count",
               current};
    }
    if (names.count(sample.name) == 0) {
      return error(absl::StrCat("sample outside its family ", current));
    }
    (*families)[current].samples.push_back(std::move(sample));
  }
  return absl::OkStatus();
}

std::string CatalogExposition() {
  prometheus::Registry registry;
  RegisterCatalog(registry);
  return prometheus::TextSerializer().Serialize(registry.Collect());
}

TEST(ExpositionTest, EveryFamilyParsesWithItsCatalogTypeLabelsAndHelp) {
  const std::string text = CatalogExposition();
  std::map<std::string, ExposedFamily> families;
  absl::Status parsed = ParseExposition(text, &families);
  ASSERT_TRUE(parsed.ok()) << parsed << "\n" << text;
  EXPECT_EQ(families.size(), MetricCatalog().size()) << text;
  for (const MetricInfo& info : MetricCatalog()) {
    SCOPED_TRACE(info.name);
    auto it = families.find(info.name);
    ASSERT_NE(it, families.end()) << text;
    const ExposedFamily& family = it->second;
    EXPECT_EQ(family.type, MetricTypeName(info.type));
    EXPECT_EQ(family.help, info.help);
    ASSERT_FALSE(family.samples.empty());
    int buckets = 0;
    for (const Sample& sample : family.samples) {
      EXPECT_EQ(CatalogFamilyOf(sample.name), info.name) << sample.name;
      std::set<std::string> expected(info.labels.begin(), info.labels.end());
      if (absl::EndsWith(sample.name, "_bucket")) {
        expected.insert("le");
        ++buckets;
      }
      std::set<std::string> labels;
      for (const auto& [label, value] : sample.labels) {
        labels.insert(label);
        if (label != "le") {
          EXPECT_EQ(value, "a\"b\\c") << label;
        }
      }
      EXPECT_EQ(labels, expected) << sample.name;
    }
    if (info.type == MetricType::kHistogram) {
      EXPECT_EQ(buckets, 4);  // three bounds and +Inf
      EXPECT_EQ(family.samples.size(), 6u);
    } else {
      EXPECT_EQ(family.samples.size(), 1u);
    }
  }
}

TEST(ExpositionTest, ParserRejectsMalformedText) {
  std::map<std::string, ExposedFamily> families;
  EXPECT_FALSE(ParseExposition("lethe_x 1\n", &families).ok());
  families.clear();
  EXPECT_FALSE(
      ParseExposition("# TYPE lethe_x gauge\nlethe_x{a=\"b} 1\n", &families)
          .ok());
  families.clear();
  EXPECT_FALSE(
      ParseExposition("# TYPE lethe_x gauge\nlethe_y 1\n", &families).ok());
  families.clear();
  EXPECT_FALSE(
      ParseExposition("# TYPE lethe_x gauge\nlethe_x one\n", &families).ok());
  families.clear();
  EXPECT_TRUE(
      ParseExposition("# HELP lethe_x An \\\\ x.\n# TYPE lethe_x gauge\n"
                      "lethe_x{a=\"\\\"\"} +Inf 17\n",
                      &families)
          .ok());
  EXPECT_EQ(families["lethe_x"].help, "An \\ x.");
}

TEST(ExpositionTest, PassesPromtoolLint) {
  const std::string promtool = FindOnPath("promtool");
  if (promtool.empty()) {
    GTEST_SKIP() << "promtool is not installed (Debian package prometheus)";
  }
  const std::string path = absl::StrCat(testing::TempDir(), "/metrics.txt");
  ASSERT_TRUE(WriteFileAtomically(path, CatalogExposition()).ok());
  CommandResult result = RunCommand({promtool, "check", "metrics"}, path);
  EXPECT_TRUE(result.success) << result.output;
}

// --- The README's table
// -------------------------------------------------------

struct ReadmeRow {
  std::string name, type, labels, meaning;
};

std::string Unquote(absl::string_view cell) {
  cell = absl::StripAsciiWhitespace(cell);
  absl::ConsumePrefix(&cell, "`");
  absl::ConsumeSuffix(&cell, "`");
  return std::string(cell);
}

std::string LabelsCell(const std::vector<std::string>& labels) {
  if (labels.empty()) return "";
  return absl::StrCat("`", absl::StrJoin(labels, "`, `"), "`");
}

std::string ExpectedReadmeTable() {
  std::string table =
      "| name | type | labels | meaning |\n| --- | --- | --- | --- |\n";
  for (const MetricInfo& info : MetricCatalog()) {
    absl::StrAppend(&table, "| `", info.name, "` | ", MetricTypeName(info.type),
                    " | ", LabelsCell(info.labels), " | ", info.help, " |\n");
  }
  return table;
}

TEST(ReadmeTest, MetricsTableListsExactlyTheCatalog) {
  const std::string readme = ReadSource("README.md");
  size_t start = readme.find("\n## Metrics\n");
  ASSERT_NE(start, std::string::npos) << "README.md has no ## Metrics section";
  size_t end = readme.find("\n## ", start + 1);
  absl::string_view section =
      absl::string_view(readme).substr(start, end - start);
  std::vector<ReadmeRow> rows;
  for (absl::string_view line : absl::StrSplit(section, '\n')) {
    if (!absl::StartsWith(line, "| `lethe_")) continue;
    std::vector<absl::string_view> cells = absl::StrSplit(line, " | ");
    ASSERT_EQ(cells.size(), 4u) << line;
    ASSERT_TRUE(absl::ConsumeSuffix(&cells[3], " |")) << line;
    rows.push_back({Unquote(absl::StripPrefix(cells[0], "| ")),
                    std::string(absl::StripAsciiWhitespace(cells[1])),
                    std::string(absl::StripAsciiWhitespace(cells[2])),
                    std::string(absl::StripAsciiWhitespace(cells[3]))});
  }
  const std::vector<MetricInfo>& catalog = MetricCatalog();
  bool same = rows.size() == catalog.size();
  for (size_t i = 0; i < rows.size() && i < catalog.size(); ++i) {
    SCOPED_TRACE(catalog[i].name);
    EXPECT_EQ(rows[i].name, catalog[i].name);
    EXPECT_EQ(rows[i].type, MetricTypeName(catalog[i].type));
    EXPECT_EQ(rows[i].labels, LabelsCell(catalog[i].labels));
    EXPECT_EQ(rows[i].meaning, catalog[i].help);
    same = same && rows[i].name == catalog[i].name &&
           rows[i].type == MetricTypeName(catalog[i].type) &&
           rows[i].labels == LabelsCell(catalog[i].labels) &&
           rows[i].meaning == catalog[i].help;
  }
  EXPECT_EQ(rows.size(), catalog.size());
  if (!same) {
    ADD_FAILURE() << "README.md's table should read:\n"
                  << ExpectedReadmeTable();
  }
}

// --- The Grafana dashboard
// ----------------------------------------------------

nlohmann::json ReadDashboard() {
  const std::string text = ReadSource("deploy/grafana/lethe.json");
  nlohmann::json dashboard = nlohmann::json::parse(text, nullptr, false);
  EXPECT_FALSE(dashboard.is_discarded())
      << "deploy/grafana/lethe.json is not JSON";
  return dashboard;
}

// Every panel, rows' nested panels included.
void CollectPanels(const nlohmann::json& panels,
                   std::vector<nlohmann::json>* out) {
  if (!panels.is_array()) return;
  for (const nlohmann::json& panel : panels) {
    out->push_back(panel);
    if (panel.contains("panels")) CollectPanels(panel["panels"], out);
  }
}

// The PromQL of every target and query variable, with where it comes from.
std::vector<std::pair<std::string, std::string>> DashboardExpressions(
    const nlohmann::json& dashboard) {
  std::vector<std::pair<std::string, std::string>> exprs;
  std::vector<nlohmann::json> panels;
  CollectPanels(dashboard.value("panels", nlohmann::json::array()), &panels);
  for (const nlohmann::json& panel : panels) {
    for (const nlohmann::json& target :
         panel.value("targets", nlohmann::json::array())) {
      if (target.contains("expr") && target["expr"].is_string()) {
        exprs.emplace_back(panel.value("title", "?"), target["expr"]);
      }
    }
  }
  const nlohmann::json templating = dashboard.value(
      "templating",
      nlohmann::json::object({{"list", nlohmann::json::array()}}));
  for (const nlohmann::json& variable :
       templating.value("list", nlohmann::json::array())) {
    if (variable.value("type", "") != "query") continue;
    std::string where = absl::StrCat("variable ", variable.value("name", "?"));
    if (variable.contains("definition") && variable["definition"].is_string()) {
      exprs.emplace_back(where, variable["definition"]);
    }
    const nlohmann::json query = variable.value("query", nlohmann::json());
    if (query.is_string()) exprs.emplace_back(where, query);
    if (query.is_object() && query.contains("query")) {
      exprs.emplace_back(where, query["query"]);
    }
  }
  return exprs;
}

// The uid of a panel's or target's data source ("" when it names none).
std::string DatasourceUid(const nlohmann::json& item) {
  const nlohmann::json datasource =
      item.value("datasource", nlohmann::json::object());
  return datasource.is_object() ? datasource.value("uid", "") : "";
}

TEST(GrafanaDashboardTest, HasStableUidAndDatasourceVariable) {
  const nlohmann::json dashboard = ReadDashboard();
  ASSERT_TRUE(dashboard.is_object());
  EXPECT_EQ(dashboard.value("uid", ""), "lethe-overview");
  EXPECT_EQ(dashboard.value("title", ""), "Lethe");
  EXPECT_GE(dashboard.value("schemaVersion", 0), 36);
  bool datasource_variable = false;
  bool job_variable = false;
  ASSERT_TRUE(dashboard.contains("templating"));
  for (const nlohmann::json& variable :
       dashboard.at("templating").value("list", nlohmann::json::array())) {
    if (variable.value("name", "") == "datasource") {
      datasource_variable = variable.value("type", "") == "datasource" &&
                            variable.value("query", "") == "prometheus";
    }
    if (variable.value("name", "") == "job") {
      job_variable = variable.value("definition", "") ==
                         "label_values(lethe_job_step, job)" &&
                     DatasourceUid(variable) == "${datasource}";
    }
  }
  EXPECT_TRUE(datasource_variable)
      << "a variable `datasource` of type datasource, query prometheus";
  EXPECT_TRUE(job_variable) << "a variable `job`: label_values(lethe_job_step, "
                               "job) on ${datasource}";
}

TEST(GrafanaDashboardTest, EveryPanelQueriesTheDatasourceVariable) {
  const nlohmann::json dashboard = ReadDashboard();
  std::vector<nlohmann::json> panels;
  CollectPanels(dashboard.value("panels", nlohmann::json::array()), &panels);
  ASSERT_GT(panels.size(), 10u);
  std::set<int> ids;
  for (const nlohmann::json& panel : panels) {
    const std::string title = panel.value("title", "");
    SCOPED_TRACE(title);
    EXPECT_FALSE(title.empty());
    EXPECT_TRUE(ids.insert(panel.value("id", -1)).second) << "panel id twice";
    if (panel.value("type", "") == "row") continue;
    EXPECT_EQ(DatasourceUid(panel), "${datasource}");
    const nlohmann::json targets =
        panel.value("targets", nlohmann::json::array());
    int exprs = 0;
    for (const nlohmann::json& target : targets) {
      EXPECT_EQ(DatasourceUid(target), "${datasource}");
      if (!target.value("expr", "").empty()) ++exprs;
    }
    EXPECT_GE(exprs, 1) << "a panel without a query";
  }
}

TEST(GrafanaDashboardTest, EveryExpressionNamesCatalogMetricsOnly) {
  const auto exprs = DashboardExpressions(ReadDashboard());
  ASSERT_FALSE(exprs.empty());
  std::set<std::string> families;
  for (const auto& [where, expr] : exprs) {
    std::vector<std::string> tokens = LetheTokens(expr);
    for (const std::string& token : tokens) {
      std::string problem = CheckSeriesName(token);
      EXPECT_TRUE(problem.empty())
          << where << ": " << problem << " in " << expr;
      if (problem.empty()) families.insert(CatalogFamilyOf(token));
    }
  }
  EXPECT_GT(families.size(), 20u);
}

// Grafana's variables as PromQL would see them on the dashboard.
std::string SubstituteVariables(absl::string_view expr) {
  std::string out;
  for (size_t i = 0; i < expr.size(); ++i) {
    if (expr[i] != '$') {
      out.push_back(expr[i]);
      continue;
    }
    size_t end = i + 1;
    bool braces = end < expr.size() && expr[end] == '{';
    if (braces) ++end;
    size_t name_start = end;
    while (end < expr.size() &&
           (std::isalnum(static_cast<unsigned char>(expr[end])) ||
            expr[end] == '_')) {
      ++end;
    }
    std::string name(expr.substr(name_start, end - name_start));
    if (braces && end < expr.size() && expr[end] == '}') ++end;
    out += absl::StartsWith(name, "__") ? "5m" : ".*";
    i = end - 1;
  }
  return out;
}

TEST(GrafanaDashboardTest, ExpressionsAreValidPromQL) {
  const std::string promtool = FindOnPath("promtool");
  if (promtool.empty()) {
    GTEST_SKIP() << "promtool is not installed (Debian package prometheus)";
  }
  // Each panel query as a recording rule: promtool parses its PromQL.
  std::string rules = "groups:\n  - name: dashboard\n    rules:\n";
  int n = 0;
  for (const auto& [where, expr] : DashboardExpressions(ReadDashboard())) {
    if (absl::StartsWith(expr, "label_values(")) continue;  // Grafana's own
    absl::StrAppend(&rules, "      - record: dashboard:expr_", ++n,
                    "\n        expr: |\n          ",
                    absl::StrReplaceAll(SubstituteVariables(expr),
                                        {{"\n", "\n          "}}),
                    "\n");
  }
  ASSERT_GT(n, 0);
  const std::string path =
      absl::StrCat(testing::TempDir(), "/dashboard_rules.yml");
  ASSERT_TRUE(WriteFileAtomically(path, rules).ok());
  CommandResult result = RunCommand({promtool, "check", "rules", path});
  EXPECT_TRUE(result.success) << result.output << "\n" << rules;
}

// --- The alerting rules
// -------------------------------------------------------

constexpr char kAlerts[] = "deploy/prometheus/lethe_alerts.yml";

TEST(AlertRulesTest, NameCatalogMetricsOnly) {
  const std::string text = ReadSource(kAlerts);
  std::string rules;  // without comment lines
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (absl::StartsWith(absl::StripLeadingAsciiWhitespace(line), "#")) {
      continue;
    }
    absl::StrAppend(&rules, line, "\n");
  }
  std::vector<std::string> tokens = LetheTokens(rules);
  EXPECT_FALSE(tokens.empty());
  for (const std::string& token : tokens) {
    std::string problem = CheckSeriesName(token);
    EXPECT_TRUE(problem.empty()) << problem;
  }
  for (absl::string_view alert :
       {"LetheJobStuck", "LetheWorkerDown", "LetheJobRestartsClimbing",
        "LetheForgetQualityReached"}) {
    EXPECT_TRUE(absl::StrContains(text, absl::StrCat("alert: ", alert, "\n")))
        << alert;
  }
}

TEST(AlertRulesTest, PassPromtoolCheckRules) {
  const std::string promtool = FindOnPath("promtool");
  if (promtool.empty()) {
    GTEST_SKIP() << "promtool is not installed (Debian package prometheus)";
  }
  CommandResult result =
      RunCommand({promtool, "check", "rules", SourcePath(kAlerts)});
  EXPECT_TRUE(result.success) << result.output;
  EXPECT_TRUE(absl::StrContains(result.output, "SUCCESS")) << result.output;
}

}  // namespace
}  // namespace lethe
