#include "libs/rpc/grpc_server.h"

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"

namespace lethe {
namespace {

using ::grpc::health::v1::Health;
using ::grpc::health::v1::HealthCheckRequest;
using ::grpc::health::v1::HealthCheckResponse;

class GrpcServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<GrpcServer>> server =
        GrpcServer::Start("127.0.0.1:0", {});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    stub_ = Health::NewStub(grpc::CreateChannel(
        server_->address(), grpc::InsecureChannelCredentials()));
  }

  grpc::Status Check(const std::string& service, HealthCheckResponse* reply) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::seconds(10));
    HealthCheckRequest request;
    request.set_service(service);
    return stub_->Check(&context, request, reply);
  }

  std::unique_ptr<GrpcServer> server_;
  std::unique_ptr<Health::Stub> stub_;
};

TEST_F(GrpcServerTest, BindsAChosenPortAndReportsIt) {
  EXPECT_GT(server_->port(), 0);
  EXPECT_EQ(server_->address(), "127.0.0.1:" + std::to_string(server_->port()));
}

TEST_F(GrpcServerTest, HealthCheckOverTheWireFollowsSetServing) {
  HealthCheckResponse reply;
  grpc::Status status = Check("", &reply);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(reply.status(), HealthCheckResponse::SERVING);

  server_->SetServing("lethe.v1.Jobs", false);
  status = Check("lethe.v1.Jobs", &reply);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(reply.status(), HealthCheckResponse::NOT_SERVING);

  server_->SetServing("lethe.v1.Jobs", true);
  status = Check("lethe.v1.Jobs", &reply);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(reply.status(), HealthCheckResponse::SERVING);
}

TEST_F(GrpcServerTest, UnknownServiceIsNotFound) {
  HealthCheckResponse reply;
  EXPECT_EQ(Check("no.such.Service", &reply).error_code(),
            grpc::StatusCode::NOT_FOUND);
}

TEST_F(GrpcServerTest, SecondServerOnTheSamePortIsUnavailable) {
  absl::StatusOr<std::unique_ptr<GrpcServer>> clash =
      GrpcServer::Start(server_->address(), {});
  EXPECT_EQ(clash.status().code(), absl::StatusCode::kUnavailable)
      << clash.status();
}

}  // namespace
}  // namespace lethe
