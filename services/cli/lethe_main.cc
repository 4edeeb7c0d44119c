// lethe: the command-line client.
//
//   lethe version
//   lethe health [--coordinator=HOST:PORT]
//
// --coordinator defaults to $LETHE_COORDINATOR, then 127.0.0.1:7070.
// Exit status: 0 on success, 1 when the command failed, 2 for bad usage.
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "libs/metrics/build_info.h"

ABSL_FLAG(std::string, coordinator, "",
          "coordinator address HOST:PORT (default: $LETHE_COORDINATOR, then "
          "127.0.0.1:7070)");
ABSL_FLAG(double, timeout_seconds, 5,
          "deadline for each call to the coordinator");

namespace lethe {
namespace {

constexpr char kUsage[] =
    "Lethe's command-line client.\n"
    "Usage: lethe COMMAND [flags]\n"
    "Commands:\n"
    "  version   print Lethe's version\n"
    "  health    check that the coordinator is serving\n"
    "Flags: --coordinator=HOST:PORT, --timeout_seconds=N";

std::string CoordinatorAddress() {
  std::string address = absl::GetFlag(FLAGS_coordinator);
  if (address.empty()) {
    const char* from_environment = std::getenv("LETHE_COORDINATOR");
    address = from_environment != nullptr ? from_environment : "127.0.0.1:7070";
  }
  return address;
}

absl::Status CheckHealth() {
  using ::grpc::health::v1::Health;
  using ::grpc::health::v1::HealthCheckRequest;
  using ::grpc::health::v1::HealthCheckResponse;
  const std::string address = CoordinatorAddress();
  auto stub = Health::NewStub(
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::milliseconds(static_cast<int64_t>(
                           absl::GetFlag(FLAGS_timeout_seconds) * 1000)));
  context.set_wait_for_ready(true);
  HealthCheckResponse reply;
  const grpc::Status status =
      stub->Check(&context, HealthCheckRequest(), &reply);
  if (!status.ok()) {
    return absl::UnavailableError(absl::StrCat(
        "cannot reach the coordinator at ", address, ": ",
        status.error_message(),
        " (start one with lethe-coordinator, or set --coordinator)"));
  }
  const std::string state =
      HealthCheckResponse::ServingStatus_Name(reply.status());
  std::cout << "coordinator at " << address << ": " << state << std::endl;
  if (reply.status() != HealthCheckResponse::SERVING) {
    return absl::UnavailableError(
        absl::StrCat("coordinator at ", address, " is ", state));
  }
  return absl::OkStatus();
}

int Main(int argc, char** argv) {
  absl::SetProgramUsageMessage(kUsage);
  const std::vector<char*> positional = absl::ParseCommandLine(argc, argv);
  if (positional.size() != 2) {
    std::cerr << kUsage << std::endl;
    return 2;
  }
  const std::string command = positional[1];
  absl::Status status;
  if (command == "version") {
    std::cout << "lethe " << kLetheVersion << std::endl;
  } else if (command == "health") {
    status = CheckHealth();
  } else {
    std::cerr << "lethe: unknown command '" << command << "'\n"
              << kUsage << std::endl;
    return 2;
  }
  if (!status.ok()) {
    std::cerr << "lethe " << command << ": " << status.message() << std::endl;
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace lethe

int main(int argc, char** argv) { return lethe::Main(argc, argv); }
