// The Kubernetes manifests in deploy/kubernetes: every document parses, the
// objects fit together (Service selectors pick pods that have the named
// ports, mounted volumes are declared, claims exist, workers dial the
// coordinator's Service, Prometheus annotations name a container port), and
// the containers' command lines start Lethe's real binaries: the
// coordinator's serves, and a worker with the worker container's flags
// registers with it. Only what cannot work on one machine is replaced:
// addresses and ports (free loopback ones), the pod IP and the SQLite path.
//
// Usage: kubernetes_manifests_test COORDINATOR_BINARY WORKER_BINARY
//                                  MANIFEST_DIR
#include <algorithm>
#include <filesystem>
#include <iostream>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "libs/files/file_io.h"
#include "libs/net/host_port.h"
#include "libs/net/http_client.h"
#include "libs/subprocess/subprocess.h"
#include "libs/yaml/yaml_json.h"
#include "nlohmann/json.hpp"

namespace lethe {
namespace {

using Json = nlohmann::json;

std::string coordinator_binary;
std::string worker_binary;
std::string manifest_dir;

// One Kubernetes object and the file it came from.
struct Manifest {
  std::string file;
  Json object;
};

// Every document of every *.yaml file in the manifest directory.
std::vector<Manifest> ReadManifests() {
  std::vector<std::string> files;
  for (const auto& entry : std::filesystem::directory_iterator(manifest_dir)) {
    if (entry.path().extension() == ".yaml") files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  std::vector<Manifest> manifests;
  for (const std::string& file : files) {
    const absl::StatusOr<std::string> text = ReadFileToString(file);
    EXPECT_TRUE(text.ok()) << text.status();
    if (!text.ok()) continue;
    // Documents are separated by "---" lines (YamlToJson reads one).
    std::vector<std::string> documents(1);
    for (absl::string_view line : absl::StrSplit(*text, '\n')) {
      if (line == "---") {
        documents.emplace_back();
      } else {
        absl::StrAppend(&documents.back(), line, "\n");
      }
    }
    for (size_t i = 0; i < documents.size(); ++i) {
      const std::string source = absl::StrCat(file, " document ", i + 1);
      absl::StatusOr<Json> object = YamlToJson(documents[i], source);
      EXPECT_TRUE(object.ok()) << object.status();
      if (!object.ok()) continue;
      EXPECT_TRUE(object->is_object()) << source << " is not a mapping";
      if (object->is_object()) manifests.push_back({source, *object});
    }
  }
  return manifests;
}

const std::vector<Manifest>& Manifests() {
  static const auto* manifests = new std::vector<Manifest>(ReadManifests());
  return *manifests;
}

std::string Describe(const Json& object) {
  return absl::StrCat(object.value("kind", "?"), "/",
                      object["metadata"].value("name", "?"));
}

std::vector<const Json*> OfKind(const std::string& kind) {
  std::vector<const Json*> objects;
  for (const Manifest& manifest : Manifests()) {
    if (manifest.object.value("kind", "") == kind) {
      objects.push_back(&manifest.object);
    }
  }
  return objects;
}

// The Deployments and StatefulSets.
std::vector<const Json*> Workloads() {
  std::vector<const Json*> workloads = OfKind("Deployment");
  for (const Json* set : OfKind("StatefulSet")) workloads.push_back(set);
  return workloads;
}

const Json& PodSpec(const Json& workload) {
  return workload["spec"]["template"]["spec"];
}

// The first container, in any workload's pods, whose command[0] is `binary`;
// null when none is.
const Json* ContainerRunning(const std::string& binary) {
  for (const Json* workload : Workloads()) {
    for (const Json& container : PodSpec(*workload)["containers"]) {
      if (container.contains("command") &&
          container["command"][0].get<std::string>() == binary) {
        return &container;
      }
    }
  }
  return nullptr;
}

bool LabelsInclude(const Json& labels, const Json& selector) {
  for (const auto& [key, value] : selector.items()) {
    if (!labels.contains(key) || labels[key] != value) return false;
  }
  return true;
}

TEST(KubernetesManifestsTest, EveryDocumentIsAKubernetesObjectOfLethe) {
  ASSERT_GE(Manifests().size(), 4u) << "in " << manifest_dir;
  std::set<std::string> seen;
  for (const Manifest& manifest : Manifests()) {
    const Json& object = manifest.object;
    EXPECT_TRUE(object.contains("apiVersion") &&
                object["apiVersion"].is_string())
        << manifest.file;
    EXPECT_TRUE(object.contains("kind") && object["kind"].is_string())
        << manifest.file;
    ASSERT_TRUE(object.contains("metadata") &&
                object["metadata"].contains("name"))
        << manifest.file;
    EXPECT_TRUE(seen.insert(Describe(object)).second)
        << Describe(object) << " twice";
    EXPECT_EQ(
        object["metadata"]["labels"].value("app.kubernetes.io/part-of", ""),
        "lethe")
        << manifest.file;
  }
  for (const char* expected :
       {"Service/lethe-coordinator", "StatefulSet/lethe-coordinator",
        "Deployment/lethe-worker-cpu", "PersistentVolumeClaim/lethe-data"}) {
    EXPECT_EQ(seen.count(expected), 1u) << expected;
  }
}

TEST(KubernetesManifestsTest, WorkloadsSelectTheirPodsAndDeclareTheirVolumes) {
  std::set<std::string> claims;
  for (const Json* claim : OfKind("PersistentVolumeClaim")) {
    claims.insert((*claim)["metadata"]["name"]);
  }
  for (const Json* workload : Workloads()) {
    const Json& spec = (*workload)["spec"];
    EXPECT_TRUE(LabelsInclude(spec["template"]["metadata"]["labels"],
                              spec["selector"]["matchLabels"]))
        << Describe(*workload) << ": its selector misses its own pods";
    std::set<std::string> volumes;
    for (const Json& volume :
         PodSpec(*workload).value("volumes", Json::array())) {
      volumes.insert(volume["name"]);
      if (volume.contains("persistentVolumeClaim")) {
        EXPECT_EQ(claims.count(volume["persistentVolumeClaim"]["claimName"]),
                  1u)
            << Describe(*workload) << ": no claim "
            << volume["persistentVolumeClaim"]["claimName"];
      }
    }
    for (const Json& claim :
         spec.value("volumeClaimTemplates", Json::array())) {
      volumes.insert(claim["metadata"]["name"]);
    }
    for (const Json& container : PodSpec(*workload)["containers"]) {
      for (const Json& mount : container.value("volumeMounts", Json::array())) {
        EXPECT_EQ(volumes.count(mount["name"]), 1u)
            << Describe(*workload) << ": mounts undeclared volume "
            << mount["name"];
      }
      // $(NAME) in arguments must be an environment variable it defines.
      std::set<std::string> env;
      for (const Json& variable : container.value("env", Json::array())) {
        env.insert(variable["name"]);
      }
      for (const Json& arg : container["args"]) {
        const std::string text = arg;
        for (size_t at = text.find("$("); at != std::string::npos;
             at = text.find("$(", at + 2)) {
          const std::string name =
              text.substr(at + 2, text.find(')', at) - at - 2);
          EXPECT_EQ(env.count(name), 1u)
              << Describe(*workload) << ": " << text << " uses unset " << name;
        }
      }
    }
    // Prometheus' scrape annotation names one of the pod's container ports.
    const Json& annotations =
        spec["template"]["metadata"].value("annotations", Json::object());
    if (annotations.contains("prometheus.io/port")) {
      bool found = false;
      for (const Json& container : PodSpec(*workload)["containers"]) {
        for (const Json& port : container.value("ports", Json::array())) {
          found |= std::to_string(port["containerPort"].get<int>()) ==
                   annotations["prometheus.io/port"].get<std::string>();
        }
      }
      EXPECT_TRUE(found) << Describe(*workload)
                         << ": prometheus.io/port is no container port";
    }
  }
}

TEST(KubernetesManifestsTest,
     ServicesReachNamedPortsAndWorkersDialTheCoordinator) {
  std::map<std::string, std::set<int>> service_ports;
  for (const Json* service : OfKind("Service")) {
    const std::string name = (*service)["metadata"]["name"];
    int matching_pods = 0;
    for (const Json* workload : Workloads()) {
      if (!LabelsInclude((*workload)["spec"]["template"]["metadata"]["labels"],
                         (*service)["spec"]["selector"])) {
        continue;
      }
      ++matching_pods;
      for (const Json& port : (*service)["spec"]["ports"]) {
        service_ports[name].insert(port["port"].get<int>());
        bool found = false;
        for (const Json& container : PodSpec(*workload)["containers"]) {
          for (const Json& own : container.value("ports", Json::array())) {
            found |= own["name"] == port["targetPort"];
          }
        }
        EXPECT_TRUE(found) << "Service/" << name << " targets port "
                           << port["targetPort"] << " that "
                           << Describe(*workload) << " lacks";
      }
    }
    EXPECT_GT(matching_pods, 0) << "Service/" << name << " selects no pods";
  }
  for (const Json* set : OfKind("StatefulSet")) {
    EXPECT_EQ(service_ports.count((*set)["spec"]["serviceName"]), 1u)
        << Describe(*set) << ": its serviceName is no Service";
  }
  const Json* worker = ContainerRunning("lethe-worker");
  ASSERT_NE(worker, nullptr);
  std::optional<std::string> coordinator;
  for (const Json& arg : (*worker)["args"]) {
    const std::string whole = arg;
    absl::string_view text = whole;
    if (absl::ConsumePrefix(&text, "--coordinator=")) {
      coordinator = std::string(text);
    }
  }
  ASSERT_TRUE(coordinator.has_value()) << "workers need --coordinator";
  std::string host;
  int port = 0;
  ASSERT_TRUE(ParseHostPort(*coordinator, &host, &port).ok()) << *coordinator;
  EXPECT_EQ(service_ports[host].count(port), 1u)
      << "workers dial " << *coordinator << ", no Service port";
}

// The container's arguments with each flag in `replace` given that value
// instead (each must be there) and $(POD_IP) as 127.0.0.1.
std::vector<std::string> LocalCommandLine(
    const Json& container, const std::map<std::string, std::string>& replace) {
  std::vector<std::string> argv;
  for (const Json& part : container["command"]) argv.push_back(part);
  std::set<std::string> replaced;
  for (const Json& arg : container["args"]) {
    std::string text = arg;
    const std::string flag = text.substr(0, text.find('='));
    if (replace.count(flag) > 0) {
      text = absl::StrCat(flag, "=", replace.at(flag));
      replaced.insert(flag);
    }
    argv.push_back(absl::StrReplaceAll(text, {{"$(POD_IP)", "127.0.0.1"}}));
  }
  for (const auto& [flag, value] : replace) {
    EXPECT_EQ(replaced.count(flag), 1u) << "the manifest does not set " << flag;
  }
  return argv;
}

// The value of the unlabelled gauge `name` in a Prometheus text exposition.
std::optional<double> GaugeValue(const std::string& exposition,
                                 const std::string& name) {
  for (absl::string_view line : absl::StrSplit(exposition, '\n')) {
    if (!absl::ConsumePrefix(&line, name + " ")) continue;
    double value = 0;
    if (absl::SimpleAtod(line, &value)) return value;
  }
  return std::nullopt;
}

// Waits up to `wait` for `process` to end; false once it has.
bool StillRunning(Subprocess& process, absl::Duration wait) {
  const absl::StatusOr<std::optional<ExitStatus>> exit = process.WaitFor(wait);
  return exit.ok() && !exit->has_value();
}

TEST(KubernetesManifestsTest, ContainerCommandLinesStartTheBinaries) {
  const Json* coordinator_container = ContainerRunning("lethe-coordinator");
  const Json* worker_container = ContainerRunning("lethe-worker");
  ASSERT_NE(coordinator_container, nullptr);
  ASSERT_NE(worker_container, nullptr);
  const std::string dir = testing::TempDir() + "/kubernetes";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);

  std::vector<std::string> argv = LocalCommandLine(
      *coordinator_container, {{"--listen", "127.0.0.1:0"},
                               {"--metrics_address", "127.0.0.1:0"},
                               {"--database", dir + "/jobs.sqlite"}});
  argv[0] = coordinator_binary;
  argv.push_back("--ready_file=" + dir + "/ready.json");
  const std::string coordinator_log = dir + "/coordinator.log";
  absl::StatusOr<Subprocess> coordinator = Subprocess::Start(
      argv, {},
      {.stdout_path = coordinator_log, .stderr_path = coordinator_log});
  ASSERT_TRUE(coordinator.ok()) << coordinator.status();
  std::string ready;
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (ready.empty() && StillRunning(*coordinator, absl::Milliseconds(20)) &&
         absl::Now() < deadline) {
    ready = ReadFileToString(dir + "/ready.json").value_or("");
  }
  ASSERT_FALSE(ready.empty()) << absl::StrJoin(argv, " ") << "\n"
                              << ReadFileToString(coordinator_log).value_or("");
  const Json addresses = Json::parse(ready);
  std::string metrics_host;
  int metrics_port = 0;
  ASSERT_TRUE(ParseHostPort(std::string(absl::StripSuffix(
                                absl::StripPrefix(
                                    addresses["metrics_url"].get<std::string>(),
                                    "http://"),
                                "/metrics")),
                            &metrics_host, &metrics_port)
                  .ok())
      << addresses;

  argv = LocalCommandLine(*worker_container,
                          {{"--coordinator", addresses["grpc_address"]},
                           {"--store_port", "0"},
                           {"--metrics_address", "127.0.0.1:0"}});
  argv[0] = worker_binary;
  const std::string worker_log = dir + "/worker.log";
  absl::StatusOr<Subprocess> worker = Subprocess::Start(
      argv, {}, {.stdout_path = worker_log, .stderr_path = worker_log});
  ASSERT_TRUE(worker.ok()) << worker.status();
  std::optional<double> registered;
  while (registered.value_or(0) < 1 &&
         StillRunning(*worker, absl::Milliseconds(200)) &&
         absl::Now() < deadline + absl::Seconds(30)) {
    const absl::StatusOr<HttpResponse> metrics =
        HttpGet(metrics_host, metrics_port, "/metrics");
    if (metrics.ok()) {
      registered = GaugeValue(metrics->body, "lethe_workers_registered");
    }
  }
  EXPECT_EQ(registered.value_or(0), 1)
      << absl::StrJoin(argv, " ") << "\n"
      << ReadFileToString(worker_log).value_or("")
      << ReadFileToString(coordinator_log).value_or("");
  EXPECT_TRUE(StillRunning(*worker, absl::ZeroDuration()))
      << ReadFileToString(worker_log).value_or("");
}

}  // namespace
}  // namespace lethe

int main(int argc, char** argv) {
  testing::InitGoogleTest(&argc, argv);
  if (argc != 4) {
    std::cerr << "usage: kubernetes_manifests_test COORDINATOR_BINARY "
                 "WORKER_BINARY MANIFEST_DIR"
              << std::endl;
    return 2;
  }
  lethe::coordinator_binary = argv[1];
  lethe::worker_binary = argv[2];
  lethe::manifest_dir = argv[3];
  return RUN_ALL_TESTS();
}
