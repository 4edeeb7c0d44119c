// Observability end to end: Debian's real Prometheus server scrapes a local
// coordinator and its workers (found through the coordinator's file_sd
// targets file) while a short job runs; the test then asks Prometheus'
// HTTP query API what it saw.
//
// Usage: prometheus_e2e_test COORDINATOR_BINARY
#include <arpa/inet.h>
#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "lethe/v1/jobs_service.grpc.pb.h"
#include "libs/eval/tofu_eval_fixture.h"
#include "libs/files/file_io.h"
#include "libs/net/http_client.h"
#include "libs/subprocess/subprocess.h"
#include "nlohmann/json.hpp"

namespace lethe {
namespace {

std::string coordinator_binary;

int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(address);
  bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address));
  getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  close(fd);
  return ntohs(address.sin_port);
}

// Waits until `path` holds a non-empty file; returns its contents.
std::string WaitForFile(const std::string& path, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    absl::StatusOr<std::string> text = ReadFileToString(path);
    if (text.ok() && !text->empty()) return *text;
    absl::SleepFor(absl::Milliseconds(50));
  }
  return "";
}

// The value of an instant query's first sample; nullopt when the query
// succeeded with an empty result; an error when the query itself failed
// (Prometheus unreachable, a bad query, a malformed answer).
absl::StatusOr<std::optional<double>> Query(int prometheus_port,
                                            const std::string& promql) {
  absl::StatusOr<HttpResponse> response =
      HttpGet("127.0.0.1", prometheus_port,
              absl::StrCat("/api/v1/query?query=", UrlEncode(promql)));
  if (!response.ok()) return response.status();
  const nlohmann::json json =
      nlohmann::json::parse(response->body, nullptr, false);
  if (response->status_code != 200 || !json.is_object() ||
      json.value("status", "") != "success") {
    return absl::UnknownError(absl::StrCat(
        promql, ": HTTP ", response->status_code, ": ", response->body));
  }
  const nlohmann::json result = json.value("data", nlohmann::json::object())
                                    .value("result", nlohmann::json());
  if (!result.is_array()) {
    return absl::UnknownError(
        absl::StrCat(promql, ": no result list in ", response->body));
  }
  if (result.empty()) return std::nullopt;
  const nlohmann::json& value = result[0].value("value", nlohmann::json());
  double number;
  if (!value.is_array() || value.size() != 2 || !value[1].is_string() ||
      !absl::SimpleAtod(value[1].get<std::string>(), &number)) {
    return absl::UnknownError(
        absl::StrCat(promql, ": malformed sample in ", response->body));
  }
  return number;
}

// The value of an instant query's first sample; NaN (and a test failure)
// when the query fails or has no sample.
double Value(int prometheus_port, const std::string& promql) {
  absl::StatusOr<std::optional<double>> value = Query(prometheus_port, promql);
  if (!value.ok()) {
    ADD_FAILURE() << value.status();
    return NAN;
  }
  if (!value->has_value()) {
    ADD_FAILURE() << promql << ": no sample";
    return NAN;
  }
  return **value;
}

// Whether the query succeeds with exactly `expected` as its first sample
// (nullopt: an empty result).
bool QueryIs(int prometheus_port, const std::string& promql,
             std::optional<double> expected) {
  absl::StatusOr<std::optional<double>> value = Query(prometheus_port, promql);
  return value.ok() && *value == expected;
}

TEST(PrometheusEndToEndTest, PrometheusSeesTheJobProgressAndEveryScrapeWorks) {
  if (!std::filesystem::exists("/usr/bin/prometheus")) {
    GTEST_SKIP() << "Debian's prometheus is not installed "
                    "(tools/install_deps.sh installs it)";
  }
  const std::string dir =
      (std::filesystem::path(testing::TempDir()) / "prometheus_e2e")
          .lexically_normal();
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  ASSERT_TRUE(WriteTinyTofuModel(dir + "/model", 7).ok());
  ASSERT_TRUE(WriteTinyTofuData(dir + "/data", 16).ok());
  std::filesystem::copy_file(dir + "/data/forget10_perturbed.json",
                             dir + "/data/forget10.json");
  std::filesystem::copy_file(dir + "/data/retain_perturbed.json",
                             dir + "/data/retain90.json");

  const std::string targets = dir + "/workers.json";
  const std::string log = dir + "/coordinator.log";
  absl::StatusOr<Subprocess> coordinator = Subprocess::Start(
      {coordinator_binary, "--listen=127.0.0.1:0",
       "--metrics_address=127.0.0.1:0", "--database=" + dir + "/jobs.sqlite",
       "--local_workers=2", "--worker_threads=1",
       "--worker_targets_file=" + targets,
       "--ready_file=" + dir + "/ready.json"},
      {}, {.stdout_path = log, .stderr_path = log});
  ASSERT_TRUE(coordinator.ok()) << coordinator.status();
  const std::string ready = WaitForFile(dir + "/ready.json", absl::Seconds(30));
  ASSERT_FALSE(ready.empty()) << ReadFileToString(log).value_or("");
  const nlohmann::json addresses = nlohmann::json::parse(ready);
  const std::string grpc_address = addresses["grpc_address"];
  std::string metrics_url = addresses["metrics_url"];
  const std::string coordinator_target =
      metrics_url.substr(7, metrics_url.find("/metrics") - 7);
  // Both workers registered with their /metrics addresses.
  auto worker_targets = [&] {
    const std::string text = ReadFileToString(targets).value_or("[]");
    const nlohmann::json json = nlohmann::json::parse(text, nullptr, false);
    return json.is_array() && !json.empty() ? json[0]["targets"].size()
                                            : size_t{0};
  };
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (absl::Now() < deadline && worker_targets() < 2) {
    absl::SleepFor(absl::Milliseconds(100));
  }
  ASSERT_EQ(worker_targets(), 2u) << ReadFileToString(targets).value_or("");

  const int prometheus_port = FreePort();
  const std::string config = absl::StrCat(
      "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
      "scrape_configs:\n"
      "  - job_name: lethe-coordinator\n    honor_labels: true\n"
      "    static_configs:\n      - targets: ['",
      coordinator_target,
      "']\n"
      "  - job_name: lethe-worker\n    honor_labels: true\n"
      "    file_sd_configs:\n      - files: ['",
      targets, "']\n        refresh_interval: 1s\n");
  ASSERT_TRUE(WriteFileAtomically(dir + "/prometheus.yml", config).ok());
  const std::string prometheus_log = dir + "/prometheus.log";
  absl::StatusOr<Subprocess> prometheus = Subprocess::Start(
      {"/usr/bin/prometheus", "--config.file=" + dir + "/prometheus.yml",
       "--storage.tsdb.path=" + dir + "/tsdb",
       absl::StrCat("--web.listen-address=127.0.0.1:", prometheus_port)},
      {}, {.stdout_path = prometheus_log, .stderr_path = prometheus_log});
  ASSERT_TRUE(prometheus.ok()) << prometheus.status();
  // Prometheus is ready once it has scraped all three targets.
  const absl::Time ready_deadline = absl::Now() + absl::Seconds(60);
  while (absl::Now() < ready_deadline &&
         !QueryIs(prometheus_port, "count(up == 1)", 3)) {
    absl::SleepFor(absl::Milliseconds(250));
  }
  ASSERT_EQ(Value(prometheus_port, "count(up == 1)"), 3)
      << ReadFileToString(prometheus_log).value_or("");

  // A job long enough for several scrapes.
  auto jobs = v1::Jobs::NewStub(
      grpc::CreateChannel(grpc_address, grpc::InsecureChannelCredentials()));
  v1::JobSpec spec;
  spec.set_model_dir(dir + "/model");
  spec.set_data_dir(dir + "/data");
  spec.set_forget_split("forget10");
  spec.set_method(v1::NPO_RT);
  spec.mutable_optimizer()->set_learning_rate(1e-3);
  // The forget set has 2 examples: one step an epoch (about 15 ms here), so
  // 300 epochs last several 1 s scrape intervals even on an idle machine
  // (40 epochs once finished between two scrapes).
  spec.set_num_epochs(300);
  spec.set_per_device_batch_size(2);
  spec.set_world_size(2);
  spec.set_threads_per_worker(1);
  spec.mutable_checkpoint()->set_every_steps(100);
  spec.set_output_dir(dir + "/job");
  v1::Job job;
  {
    grpc::ClientContext context;
    v1::CreateJobRequest request;
    *request.mutable_spec() = spec;
    const grpc::Status status = jobs->CreateJob(&context, request, &job);
    ASSERT_TRUE(status.ok()) << status.error_message();
  }
  const absl::Time job_deadline = absl::Now() + absl::Seconds(120);
  while (absl::Now() < job_deadline) {
    grpc::ClientContext context;
    v1::GetJobRequest request;
    request.set_name(job.name());
    ASSERT_TRUE(jobs->GetJob(&context, request, &job).ok());
    if (job.state() == v1::Job::SUCCEEDED || job.state() == v1::Job::FAILED) {
      break;
    }
    absl::SleepFor(absl::Milliseconds(200));
  }
  ASSERT_EQ(job.state(), v1::Job::SUCCEEDED) << job.DebugString();

  // The final scrapes: wait (bounded) until Prometheus has seen the job end
  // on the coordinator and the job's series gone from the workers.
  const std::string selector = absl::StrCat("{job=\"", job.name(), "\"}");
  const std::string finished = "lethe_jobs_finished_total{state=\"SUCCEEDED\"}";
  const std::string succeeded = "lethe_jobs{state=\"SUCCEEDED\"}";
  const std::string step = absl::StrCat("lethe_job_step", selector);
  const absl::Time scraped_deadline = absl::Now() + absl::Seconds(30);
  while (absl::Now() < scraped_deadline &&
         !(QueryIs(prometheus_port, finished, 1) &&
           QueryIs(prometheus_port, succeeded, 1) &&
           QueryIs(prometheus_port, step, std::nullopt))) {
    absl::SleepFor(absl::Milliseconds(250));
  }

  EXPECT_GT(Value(prometheus_port, absl::StrCat("max_over_time(lethe_job_step",
                                                selector, "[10m])")),
            5);
  EXPECT_GT(Value(prometheus_port,
                  absl::StrCat("count(count_over_time(lethe_job_loss", selector,
                               "[10m]))")),
            1)
      << "expected the loss and its components";
  EXPECT_GT(Value(prometheus_port,
                  absl::StrCat("max_over_time(lethe_job_tokens_total", selector,
                               "[10m])")),
            0);
  EXPECT_EQ(Value(prometheus_port, finished), 1);
  EXPECT_EQ(Value(prometheus_port, succeeded), 1);
  // Job series end with the job: the query succeeds with no sample.
  const absl::StatusOr<std::optional<double>> step_now =
      Query(prometheus_port, step);
  ASSERT_TRUE(step_now.ok()) << step_now.status();
  EXPECT_FALSE(step_now->has_value()) << step << " = " << **step_now;
  EXPECT_GE(Value(prometheus_port,
                  "sum(lethe_worker_heartbeats_total{result=\"ok\"})"),
            2);
  // No scrape of any target failed while the job ran.
  EXPECT_EQ(Value(prometheus_port, "min(min_over_time(up[10m]))"), 1);
  EXPECT_EQ(Value(prometheus_port, "count(up{job=\"lethe-worker\"})"), 2);
  EXPECT_TRUE(prometheus->Signal(SIGTERM).ok());
  EXPECT_TRUE(coordinator->Signal(SIGTERM).ok());
}

}  // namespace
}  // namespace lethe

int main(int argc, char** argv) {
  testing::InitGoogleTest(&argc, argv);
  if (argc != 2) {
    std::cerr << "usage: prometheus_e2e_test COORDINATOR_BINARY" << std::endl;
    return 2;
  }
  lethe::coordinator_binary = argv[1];
  return RUN_ALL_TESTS();
}
