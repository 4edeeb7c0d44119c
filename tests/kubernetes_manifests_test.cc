// The Kubernetes manifests in deploy/kubernetes: every document parses, the
// objects fit together (Service selectors pick pods that have the named
// ports, mounted volumes are declared, claims exist, workers dial the
// coordinator's Service, Prometheus annotations name a container port), and
// the containers' command lines start Lethe's real binaries: the
// coordinator's serves, and a worker with the worker container's flags
// registers with it. Only what cannot work on one machine is replaced:
// addresses and ports (free loopback ones), the pod IP and the SQLite path.
// The GPU workers (gpu-workers.yaml) request one GPU each and run
// lethe-worker with --device=cuda[:N]; here, with Debian's CPU-only LibTorch,
// that command line must get as far as the worker's CUDA check (every flag
// known), and with --device=cpu instead it must register. Each container's
// image is built by a Dockerfile in docker/ (lethe:TAG by
// docker/Dockerfile.TAG) whose last stage puts the container's command in
// /usr/local/bin.
//
// Security: pods run as non-root on a read-only root filesystem, with
// emptyDir or persistent volumes (never a Secret) where the binaries write
// (/tmp, the job store, the output roots); the coordinator runs with TLS,
// worker certificates and tokens (no --insecure) and every worker with its
// certificate, each file from a Secret volume mounted read-only (mode 0440
// or 0400) that holds the key named; probes of a TLS port are not gRPC
// (the kubelet's speak plaintext); workers check the coordinator's roots.
// The command lines are started with throwaway certificates and a tokens
// file in place of the Secrets' files, so the worker registers over mutual
// TLS.
//
// Usage: kubernetes_manifests_test COORDINATOR_BINARY WORKER_BINARY
//                                  MANIFEST_DIR
// (the Dockerfiles are read from MANIFEST_DIR/../../docker).
#include <algorithm>
#include <filesystem>
#include <iostream>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
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
#include "libs/rpc/test_certificates.h"
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

// Every container, in any workload's pods, whose command[0] is `binary`.
std::vector<const Json*> ContainersRunning(const std::string& binary) {
  std::vector<const Json*> containers;
  for (const Json* workload : Workloads()) {
    for (const Json& container : PodSpec(*workload)["containers"]) {
      if (container.contains("command") &&
          container["command"][0].get<std::string>() == binary) {
        containers.push_back(&container);
      }
    }
  }
  return containers;
}

// The value of the container's --`flag`=VALUE argument, if it has one.
std::optional<std::string> FlagValue(const Json& container,
                                     const std::string& flag) {
  std::optional<std::string> value;
  for (const Json& arg : container.value("args", Json::array())) {
    const std::string whole = arg;
    absl::string_view text = whole;
    if (absl::ConsumePrefix(&text, "--" + flag + "=")) {
      value = std::string(text);
    }
  }
  return value;
}

// The first container running `binary` with --device=`device`, or (empty
// `device`) the first running it; null when none is.
const Json* ContainerRunning(const std::string& binary,
                             const std::string& device = "") {
  for (const Json* container : ContainersRunning(binary)) {
    if (device.empty() || FlagValue(*container, "device") == device) {
      return container;
    }
  }
  return nullptr;
}

// The one Deployment named `name`; null when there is none.
const Json* DeploymentNamed(const std::string& name) {
  for (const Json* deployment : OfKind("Deployment")) {
    if ((*deployment)["metadata"].value("name", "") == name) return deployment;
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
        "Deployment/lethe-worker-cpu", "Deployment/lethe-worker-cuda",
        "PersistentVolumeClaim/lethe-data"}) {
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
  const std::vector<const Json*> workers = ContainersRunning("lethe-worker");
  ASSERT_FALSE(workers.empty());
  for (const Json* worker : workers) {
    const std::optional<std::string> coordinator =
        FlagValue(*worker, "coordinator");
    ASSERT_TRUE(coordinator.has_value()) << "workers need --coordinator";
    std::string host;
    int port = 0;
    ASSERT_TRUE(ParseHostPort(*coordinator, &host, &port).ok()) << *coordinator;
    EXPECT_EQ(service_ports[host].count(port), 1u)
        << "workers dial " << *coordinator << ", no Service port";
  }
}

// The volume of `workload`'s pods named `name` (a volumeClaimTemplate reads
// as {"persistentVolumeClaim": ...}); null when there is none.
std::optional<Json> VolumeNamed(const Json& workload, const std::string& name) {
  for (const Json& volume : PodSpec(workload).value("volumes", Json::array())) {
    if (volume.value("name", "") == name) return volume;
  }
  for (const Json& claim :
       workload["spec"].value("volumeClaimTemplates", Json::array())) {
    if (claim["metadata"].value("name", "") == name) {
      return Json{{"name", name}, {"persistentVolumeClaim", claim["spec"]}};
    }
  }
  return std::nullopt;
}

// The container's volumeMount that holds `path` (the longest mountPath
// above it); null when none does (the path is on the root filesystem).
const Json* MountHolding(const Json& container, const std::string& path) {
  const Json* best = nullptr;
  size_t best_length = 0;
  if (!container.contains("volumeMounts")) return nullptr;
  // Pointers into the container itself (value() would return a copy).
  for (const Json& mount : container["volumeMounts"]) {
    const std::string at = mount.value("mountPath", "");
    const bool holds = path == at || absl::StartsWith(path, at + "/");
    if (holds && at.size() >= best_length) {
      best = &mount;
      best_length = at.size();
    }
  }
  return best;
}

// Every container of every workload, with its workload.
std::vector<std::pair<const Json*, const Json*>> AllContainers() {
  std::vector<std::pair<const Json*, const Json*>> all;
  for (const Json* workload : Workloads()) {
    for (const Json& container : PodSpec(*workload)["containers"]) {
      all.emplace_back(workload, &container);
    }
  }
  return all;
}

// The paths a container's binary writes: /tmp, the job store's folder and
// the output roots.
std::vector<std::string> WrittenPaths(const Json& container) {
  std::vector<std::string> paths = {"/tmp"};
  if (const std::optional<std::string> database =
          FlagValue(container, "database")) {
    paths.push_back(std::filesystem::path(*database).parent_path().string());
  }
  if (const std::optional<std::string> roots =
          FlagValue(container, "allowed_output_roots")) {
    for (absl::string_view root : absl::StrSplit(*roots, ',')) {
      paths.emplace_back(root);
    }
  }
  return paths;
}

TEST(KubernetesManifestsTest, PodsRunAsNonRootOnAReadOnlyRootFilesystem) {
  int checked = 0;
  for (const auto& [workload, container] : AllContainers()) {
    const std::string what = absl::StrCat(Describe(*workload), " container ",
                                          container->value("name", "?"));
    const Json& pod =
        PodSpec(*workload).value("securityContext", Json::object());
    EXPECT_EQ(pod.value("runAsNonRoot", false), true) << what;
    EXPECT_NE(pod.value("runAsUser", 0), 0) << what;
    const Json& own = container->value("securityContext", Json::object());
    EXPECT_EQ(own.value("readOnlyRootFilesystem", false), true) << what;
    EXPECT_EQ(own.value("allowPrivilegeEscalation", true), false) << what;
    EXPECT_EQ(
        own.value("capabilities", Json::object()).value("drop", Json::array()),
        Json::array({"ALL"}))
        << what;
    // Where it writes: a writable emptyDir or persistent volume.
    for (const std::string& path : WrittenPaths(*container)) {
      const Json* mount = MountHolding(*container, path);
      ASSERT_NE(mount, nullptr)
          << what << " writes " << path << " on its read-only root";
      EXPECT_FALSE(mount->value("readOnly", false))
          << what << " writes " << path << " on a read-only mount";
      const std::optional<Json> volume =
          VolumeNamed(*workload, (*mount)["name"]);
      ASSERT_TRUE(volume.has_value()) << what << ": " << *mount;
      EXPECT_TRUE(volume->contains("emptyDir") ||
                  volume->contains("persistentVolumeClaim"))
          << what << " writes " << path << " to " << *volume;
    }
    ++checked;
  }
  EXPECT_GE(checked, 3);
}

// Files from Secrets: each flag's file lies on a read-only mount of a
// Secret volume that holds it, readable by owner and group only.
void ExpectFromReadOnlySecret(const Json& workload, const Json& container,
                              const std::string& flag) {
  const std::string what = absl::StrCat(Describe(workload), " --", flag, "=");
  const std::optional<std::string> path = FlagValue(container, flag);
  ASSERT_TRUE(path.has_value()) << Describe(workload) << " has no --" << flag;
  const Json* mount = MountHolding(container, *path);
  ASSERT_NE(mount, nullptr) << what << *path << " is on the image";
  EXPECT_EQ(mount->value("readOnly", false), true)
      << what << *path << ": mount it readOnly";
  const std::optional<Json> volume = VolumeNamed(workload, (*mount)["name"]);
  ASSERT_TRUE(volume.has_value() && volume->contains("secret"))
      << what << *path << " is not from a Secret";
  const Json& secret = (*volume)["secret"];
  EXPECT_FALSE(secret.value("secretName", "").empty()) << what << *path;
  // 0400 or 0440 (written in decimal: YAML 1.1 reads 0440 as octal, 1.2 as
  // decimal).
  const int mode = secret.value("defaultMode", 0644);
  EXPECT_TRUE(mode == 0400 || mode == 0440)
      << what << *path << ": defaultMode " << mode << " (decimal)";
  const std::string file = std::string(absl::StripPrefix(
      absl::StripPrefix(*path, (*mount)["mountPath"].get<std::string>()), "/"));
  if (secret.contains("items")) {
    bool listed = false;
    for (const Json& item : secret["items"]) {
      listed |= item.value("path", "") == file;
    }
    EXPECT_TRUE(listed) << what << *path << ": no item of the Secret is "
                        << file;
  }
}

TEST(KubernetesManifestsTest, CertificatesAndTokensComeFromReadOnlySecrets) {
  int coordinators = 0, workers = 0;
  for (const auto& [workload, container] : AllContainers()) {
    const std::string binary = (*container)["command"][0];
    std::vector<std::string> flags;
    if (binary == "lethe-coordinator") {
      flags = {"tls_cert_file", "tls_key_file", "tls_client_ca_file",
               "auth_tokens_file"};
      for (const Json& arg : (*container)["args"]) {
        EXPECT_FALSE(absl::StartsWith(arg.get<std::string>(), "--insecure"))
            << Describe(*workload) << " runs " << arg;
      }
      ++coordinators;
    } else if (binary == "lethe-worker") {
      flags = {"tls_ca_file", "tls_cert_file", "tls_key_file"};
      ++workers;
    }
    for (const std::string& flag : flags) {
      ExpectFromReadOnlySecret(*workload, *container, flag);
    }
    // The kubelet's gRPC probes speak plaintext: a TLS port never answers.
    if (FlagValue(*container, "tls_cert_file").has_value()) {
      for (const char* probe :
           {"readinessProbe", "livenessProbe", "startupProbe"}) {
        EXPECT_FALSE(container->value(probe, Json::object()).contains("grpc"))
            << Describe(*workload) << ": a gRPC " << probe
            << " of a TLS port fails";
      }
    }
  }
  EXPECT_EQ(coordinators, 1);
  EXPECT_GE(workers, 2);
}

TEST(KubernetesManifestsTest, WorkersCheckTheCoordinatorsRoots) {
  const Json* coordinator = ContainerRunning("lethe-coordinator");
  ASSERT_NE(coordinator, nullptr);
  for (const char* flag :
       {"allowed_model_roots", "allowed_data_roots", "allowed_output_roots"}) {
    const std::optional<std::string> roots = FlagValue(*coordinator, flag);
    ASSERT_TRUE(roots.has_value()) << "the coordinator has no --" << flag;
    for (const Json* worker : ContainersRunning("lethe-worker")) {
      EXPECT_EQ(FlagValue(*worker, flag), roots)
          << "a worker's --" << flag << " differs from the coordinator's";
    }
  }
}

TEST(KubernetesManifestsTest, DeploymentsSelectOnlyTheirOwnPods) {
  // Two Deployments whose selectors overlap fight over each other's pods.
  for (const Json* deployment : OfKind("Deployment")) {
    for (const Json* other : OfKind("Deployment")) {
      if (deployment == other) continue;
      EXPECT_FALSE(
          LabelsInclude((*other)["spec"]["template"]["metadata"]["labels"],
                        (*deployment)["spec"]["selector"]["matchLabels"]))
          << Describe(*deployment) << " selects the pods of "
          << Describe(*other);
    }
  }
}

// A resource quantity that is the whole number 1 (YAML's 1 or "1").
bool IsOne(const Json& quantity) {
  return (quantity.is_number_integer() && quantity.get<int>() == 1) ||
         (quantity.is_string() && quantity.get<std::string>() == "1");
}

TEST(KubernetesManifestsTest, GpuWorkersRequestOneGpuAndComputeOnIt) {
  const Json* deployment = DeploymentNamed("lethe-worker-cuda");
  ASSERT_NE(deployment, nullptr);
  const Json& containers = PodSpec(*deployment)["containers"];
  ASSERT_EQ(containers.size(), 1u);
  const Json& container = containers[0];
  EXPECT_EQ(container["command"], Json::array({"lethe-worker"}));
  const std::optional<std::string> device = FlagValue(container, "device");
  ASSERT_TRUE(device.has_value()) << "GPU workers need --device";
  absl::string_view index = *device;
  EXPECT_TRUE(*device == "cuda" ||
              (absl::ConsumePrefix(&index, "cuda:") && !index.empty() &&
               std::all_of(index.begin(), index.end(),
                           [](char c) { return c >= '0' && c <= '9'; })))
      << "--device=" << *device;
  // Extended resources go in limits; a request, when given, must equal it.
  const Json& resources = container.value("resources", Json::object());
  const Json& limits = resources.value("limits", Json::object());
  const Json& requests = resources.value("requests", Json::object());
  ASSERT_TRUE(limits.contains("nvidia.com/gpu")) << resources;
  EXPECT_TRUE(IsOne(limits["nvidia.com/gpu"])) << resources;
  ASSERT_TRUE(requests.contains("nvidia.com/gpu")) << resources;
  EXPECT_TRUE(IsOne(requests["nvidia.com/gpu"])) << resources;
  EXPECT_EQ((*deployment)["spec"]["selector"]["matchLabels"].value(
                "lethe.dev/device", ""),
            "cuda");
  // No CPU worker asks for a GPU.
  for (const Json* worker : ContainersRunning("lethe-worker")) {
    if (FlagValue(*worker, "device").value_or("cpu") != "cpu") continue;
    EXPECT_FALSE(worker->value("resources", Json::object())
                     .value("limits", Json::object())
                     .contains("nvidia.com/gpu"))
        << "a CPU worker holds a GPU";
  }
}

// `text` with its Dockerfile line continuations joined and comments dropped:
// one instruction a line.
std::vector<std::string> DockerfileInstructions(const std::string& text) {
  std::vector<std::string> instructions;
  std::string current;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (absl::StartsWith(absl::StripLeadingAsciiWhitespace(line), "#")) {
      continue;
    }
    const bool continued = absl::ConsumeSuffix(&line, "\\");
    absl::StrAppend(&current, line, " ");
    if (!continued) {
      if (!absl::StripAsciiWhitespace(current).empty()) {
        instructions.push_back(current);
      }
      current.clear();
    }
  }
  return instructions;
}

TEST(KubernetesManifestsTest, EachImageIsBuiltWithItsContainersBinary) {
  const std::filesystem::path docker_dir =
      (std::filesystem::path(manifest_dir) / ".." / ".." / "docker")
          .lexically_normal();
  int checked = 0;
  for (const Json* workload : Workloads()) {
    for (const Json& container : PodSpec(*workload)["containers"]) {
      const std::string image = container["image"];
      absl::string_view tag = image;
      ASSERT_TRUE(absl::ConsumePrefix(&tag, "lethe:"))
          << Describe(*workload) << ": image " << image << " is not lethe:TAG";
      const std::string dockerfile =
          (docker_dir / absl::StrCat("Dockerfile.", tag)).string();
      const absl::StatusOr<std::string> text = ReadFileToString(dockerfile);
      ASSERT_TRUE(text.ok()) << Describe(*workload) << ": no " << dockerfile
                             << " builds " << image << ": " << text.status();
      // The last stage (the image itself) installs or copies the container's
      // command into /usr/local/bin (the containers name it, not a path).
      std::vector<std::string> instructions = DockerfileInstructions(*text);
      const auto last_from =
          std::find_if(instructions.rbegin(), instructions.rend(),
                       [](const std::string& line) {
                         return absl::StartsWith(line, "FROM ");
                       });
      ASSERT_NE(last_from, instructions.rend()) << dockerfile;
      const std::string binary = container["command"][0];
      bool installed = false;
      for (auto it = last_from.base(); it != instructions.end(); ++it) {
        if (!absl::StrContains(*it, "/usr/local/bin")) continue;
        for (absl::string_view word :
             absl::StrSplit(*it, absl::ByAnyChar(" \t"), absl::SkipEmpty())) {
          installed |= word == binary || absl::EndsWith(word, "/" + binary);
        }
      }
      EXPECT_TRUE(installed)
          << dockerfile << " puts no " << binary << " in /usr/local/bin for "
          << Describe(*workload);
      ++checked;
    }
  }
  EXPECT_GE(checked, 3);
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

// Throwaway certificates and a tokens file standing in for the Secrets'
// files (made once).
struct LocalSecrets {
  TestCertificates certs;
  std::string tokens_file;
};
const LocalSecrets& Secrets() {
  static const LocalSecrets* secrets = [] {
    auto* made = new LocalSecrets;
    const std::string dir = testing::TempDir() + "/kubernetes_secrets";
    absl::StatusOr<TestCertificates> certs = MakeTestCertificates(dir);
    EXPECT_TRUE(certs.ok()) << certs.status();
    if (certs.ok()) made->certs = *certs;
    made->tokens_file = dir + "/tokens";
    // sha256("foo"); nothing calls the Jobs API here.
    EXPECT_TRUE(WriteFileAtomically(made->tokens_file,
                                    "2c26b46b68ffc68ff99b453c1d30413413422d706"
                                    "483bfa0f98a5e886266e7ae ops ops admin\n")
                    .ok());
    return made;
  }();
  return *secrets;
}

// A coordinator started from its container's command line on loopback.
struct LocalCoordinator {
  std::optional<Subprocess> process;
  std::string log;
  std::string grpc_address;
  std::string metrics_host;
  int metrics_port = 0;
};

// Starts the coordinator container's command line with its files in `dir`
// (created afresh); fails the test when it does not get ready.
void StartCoordinator(const std::string& dir, LocalCoordinator* coordinator) {
  const Json* container = ContainerRunning("lethe-coordinator");
  ASSERT_NE(container, nullptr);
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  const LocalSecrets& secrets = Secrets();
  std::vector<std::string> argv = LocalCommandLine(
      *container, {{"--listen", "127.0.0.1:0"},
                   {"--metrics_address", "127.0.0.1:0"},
                   {"--database", dir + "/jobs.sqlite"},
                   {"--tls_cert_file", secrets.certs.server_cert},
                   {"--tls_key_file", secrets.certs.server_key},
                   {"--tls_client_ca_file", secrets.certs.ca},
                   {"--auth_tokens_file", secrets.tokens_file}});
  argv[0] = coordinator_binary;
  argv.push_back("--ready_file=" + dir + "/ready.json");
  coordinator->log = dir + "/coordinator.log";
  absl::StatusOr<Subprocess> process = Subprocess::Start(
      argv, {},
      {.stdout_path = coordinator->log, .stderr_path = coordinator->log});
  ASSERT_TRUE(process.ok()) << process.status();
  coordinator->process = std::move(*process);
  std::string ready;
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (ready.empty() &&
         StillRunning(*coordinator->process, absl::Milliseconds(20)) &&
         absl::Now() < deadline) {
    ready = ReadFileToString(dir + "/ready.json").value_or("");
  }
  ASSERT_FALSE(ready.empty())
      << absl::StrJoin(argv, " ") << "\n"
      << ReadFileToString(coordinator->log).value_or("");
  const Json addresses = Json::parse(ready);
  coordinator->grpc_address = addresses["grpc_address"];
  ASSERT_TRUE(
      ParseHostPort(
          std::string(absl::StripSuffix(
              absl::StripPrefix(addresses["metrics_url"].get<std::string>(),
                                "http://"),
              "/metrics")),
          &coordinator->metrics_host, &coordinator->metrics_port)
          .ok())
      << addresses;
}

// Starts `container`'s worker command line against `coordinator`, with
// --device=`device` instead of the container's when `device` is given.
absl::StatusOr<Subprocess> StartWorker(const Json& container,
                                       const LocalCoordinator& coordinator,
                                       const std::string& log,
                                       std::vector<std::string>* argv,
                                       const std::string& device = "") {
  const LocalSecrets& secrets = Secrets();
  std::map<std::string, std::string> replace = {
      {"--coordinator", coordinator.grpc_address},
      {"--store_port", "0"},
      {"--metrics_address", "127.0.0.1:0"},
      {"--tls_ca_file", secrets.certs.ca},
      {"--tls_cert_file", secrets.certs.client_cert},
      {"--tls_key_file", secrets.certs.client_key}};
  if (!device.empty()) replace["--device"] = device;
  *argv = LocalCommandLine(container, replace);
  (*argv)[0] = worker_binary;
  return Subprocess::Start(*argv, {}, {.stdout_path = log, .stderr_path = log});
}

// Waits (up to a minute) until the coordinator counts `count` registered
// workers, or `worker` ends; returns the last count read.
double WaitForRegistered(const LocalCoordinator& coordinator,
                         Subprocess& worker, double count) {
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  std::optional<double> registered;
  while (registered.value_or(0) < count &&
         StillRunning(worker, absl::Milliseconds(200)) &&
         absl::Now() < deadline) {
    const absl::StatusOr<HttpResponse> metrics =
        HttpGet(coordinator.metrics_host, coordinator.metrics_port, "/metrics");
    if (metrics.ok()) {
      registered = GaugeValue(metrics->body, "lethe_workers_registered");
    }
  }
  return registered.value_or(0);
}

TEST(KubernetesManifestsTest, ContainerCommandLinesStartTheBinaries) {
  const Json* worker_container = ContainerRunning("lethe-worker", "cpu");
  ASSERT_NE(worker_container, nullptr) << "no CPU worker";
  const std::string dir = testing::TempDir() + "/kubernetes";
  LocalCoordinator coordinator;
  StartCoordinator(dir, &coordinator);
  if (HasFatalFailure()) return;

  std::vector<std::string> argv;
  const std::string worker_log = dir + "/worker.log";
  absl::StatusOr<Subprocess> worker =
      StartWorker(*worker_container, coordinator, worker_log, &argv);
  ASSERT_TRUE(worker.ok()) << worker.status();
  EXPECT_EQ(WaitForRegistered(coordinator, *worker, 1), 1)
      << absl::StrJoin(argv, " ") << "\n"
      << ReadFileToString(worker_log).value_or("")
      << ReadFileToString(coordinator.log).value_or("");
  EXPECT_TRUE(StillRunning(*worker, absl::ZeroDuration()))
      << ReadFileToString(worker_log).value_or("");
}

TEST(KubernetesManifestsTest, GpuWorkerCommandLineReachesTheDeviceCheck) {
  const Json* deployment = DeploymentNamed("lethe-worker-cuda");
  ASSERT_NE(deployment, nullptr);
  const Json& container = PodSpec(*deployment)["containers"][0];
  const std::string dir = testing::TempDir() + "/kubernetes_gpu";
  LocalCoordinator coordinator;
  StartCoordinator(dir, &coordinator);
  if (HasFatalFailure()) return;

  // As written: with a CUDA LibTorch and a GPU the worker registers; with
  // Debian's LibTorch it parses every flag and then refuses CUDA.
  std::vector<std::string> argv;
  const std::string cuda_log = dir + "/worker-cuda.log";
  absl::StatusOr<Subprocess> cuda_worker =
      StartWorker(container, coordinator, cuda_log, &argv);
  ASSERT_TRUE(cuda_worker.ok()) << cuda_worker.status();
  const double registered = WaitForRegistered(coordinator, *cuda_worker, 1);
  const std::string cuda_output = ReadFileToString(cuda_log).value_or("");
  if (registered < 1) {
    const absl::StatusOr<std::optional<ExitStatus>> exit =
        cuda_worker->WaitFor(absl::Seconds(10));
    ASSERT_TRUE(exit.ok() && exit->has_value())
        << "neither registered nor ended: " << absl::StrJoin(argv, " ") << "\n"
        << cuda_output;
    EXPECT_FALSE((*exit)->success());
    EXPECT_TRUE(absl::StrContains(cuda_output, "has no CUDA"))
        << absl::StrJoin(argv, " ") << "\n"
        << cuda_output;
  }

  // The same command line on the CPU registers: every other flag works.
  const std::string cpu_log = dir + "/worker-cpu.log";
  absl::StatusOr<Subprocess> cpu_worker =
      StartWorker(container, coordinator, cpu_log, &argv, "cpu");
  ASSERT_TRUE(cpu_worker.ok()) << cpu_worker.status();
  EXPECT_EQ(WaitForRegistered(coordinator, *cpu_worker, registered + 1),
            registered + 1)
      << absl::StrJoin(argv, " ") << "\n"
      << ReadFileToString(cpu_log).value_or("")
      << ReadFileToString(coordinator.log).value_or("");
  EXPECT_TRUE(StillRunning(*cpu_worker, absl::ZeroDuration()))
      << ReadFileToString(cpu_log).value_or("");
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
