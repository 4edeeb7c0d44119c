#include "libs/rpc/grpc_server.h"

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/impl/codegen/client_unary_call.h>
#include <grpcpp/impl/codegen/method_handler.h>
#include <grpcpp/impl/codegen/rpc_service_method.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"
#include "libs/rpc/test_certificates.h"
#include "libs/rpc/tls_credentials.h"

namespace lethe {
namespace {

using ::grpc::health::v1::Health;
using ::grpc::health::v1::HealthCheckRequest;
using ::grpc::health::v1::HealthCheckResponse;

constexpr char kIdentityMethod[] = "/lethe.test.Peer/Identity";

// A sync service with one unary method over raw bytes: it answers with the
// caller's verified client certificate identity, UNAUTHENTICATED without one.
class PeerService final : public grpc::Service {
 public:
  PeerService() {
    AddMethod(new grpc::internal::RpcServiceMethod(
        kIdentityMethod, grpc::internal::RpcMethod::NORMAL_RPC,
        new grpc::internal::RpcMethodHandler<PeerService, grpc::ByteBuffer,
                                             grpc::ByteBuffer>(
            [](PeerService*, grpc::ServerContext* context,
               const grpc::ByteBuffer*, grpc::ByteBuffer* reply) {
              if (!HasVerifiedClientCertificate(*context)) {
                return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                                    "no client certificate");
              }
              grpc::Slice identity(ClientCertificateIdentity(*context));
              *reply = grpc::ByteBuffer(&identity, 1);
              return grpc::Status::OK;
            },
            this)));
  }
};

// A fresh PeerService for each server (kept for the whole test binary).
grpc::Service* Peer() {
  static auto* services = new std::vector<std::unique_ptr<PeerService>>();
  services->push_back(std::make_unique<PeerService>());
  return services->back().get();
}

// A unary call of `method` with an empty request; the reply's bytes go to
// `reply` when given.
grpc::Status CallRaw(const std::shared_ptr<grpc::Channel>& channel,
                     const std::string& method, std::string* reply = nullptr) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::seconds(10));
  grpc::Slice empty("");
  grpc::ByteBuffer request(&empty, 1), response;
  const grpc::Status status = grpc::internal::BlockingUnaryCall(
      channel.get(),
      grpc::internal::RpcMethod(method.c_str(),
                                grpc::internal::RpcMethod::NORMAL_RPC),
      &context, request, &response);
  if (status.ok() && reply != nullptr) {
    std::vector<grpc::Slice> slices;
    (void)response.Dump(&slices);
    reply->clear();
    for (const grpc::Slice& slice : slices) {
      reply->append(reinterpret_cast<const char*>(slice.begin()), slice.size());
    }
  }
  return status;
}

class GrpcServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<GrpcServer>> server =
        GrpcServer::Start("127.0.0.1:0", {Peer()});
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

TEST(GrpcServerStartTest, NeedsAService) {
  EXPECT_EQ(GrpcServer::Start("127.0.0.1:0", {}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(GrpcServerTest, SecondServerOnTheSamePortIsUnavailable) {
  absl::StatusOr<std::unique_ptr<GrpcServer>> clash =
      GrpcServer::Start(server_->address(), {Peer()});
  EXPECT_EQ(clash.status().code(), absl::StatusCode::kUnavailable)
      << clash.status();
}

// One health check through a fresh channel with `credentials`.
grpc::Status CheckOver(const std::string& address,
                       std::shared_ptr<grpc::ChannelCredentials> credentials) {
  auto stub = Health::NewStub(grpc::CreateChannel(address, credentials));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::seconds(10));
  HealthCheckResponse reply;
  return stub->Check(&context, HealthCheckRequest(), &reply);
}

// A unary call of reflection's (streaming) method: UNIMPLEMENTED when the
// server has no reflection service.
grpc::Status CallReflection(const std::string& address) {
  return CallRaw(
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials()),
      "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo");
}

std::shared_ptr<grpc::ChannelCredentials> Client(
    const ClientTlsOptions& options) {
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> credentials =
      ChannelCredentials(options);
  EXPECT_TRUE(credentials.ok()) << credentials.status();
  return credentials.ok() ? *credentials : nullptr;
}

TEST(GrpcServerReflectionTest, OffUnlessAskedFor) {
  absl::StatusOr<std::unique_ptr<GrpcServer>> plain =
      GrpcServer::Start("127.0.0.1:0", {Peer()});
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_EQ(CallReflection((*plain)->address()).error_code(),
            grpc::StatusCode::UNIMPLEMENTED);

  absl::StatusOr<std::unique_ptr<GrpcServer>> reflecting =
      GrpcServer::Start("127.0.0.1:0", {Peer()}, {.reflection = true});
  ASSERT_TRUE(reflecting.ok()) << reflecting.status();
  EXPECT_NE(CallReflection((*reflecting)->address()).error_code(),
            grpc::StatusCode::UNIMPLEMENTED);

  // Still off for a server started afterwards without it.
  absl::StatusOr<std::unique_ptr<GrpcServer>> after =
      GrpcServer::Start("127.0.0.1:0", {Peer()});
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(CallReflection((*after)->address()).error_code(),
            grpc::StatusCode::UNIMPLEMENTED);
}

class GrpcServerTlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    absl::StatusOr<TestCertificates> certs =
        MakeTestCertificates(absl::StrCat(testing::TempDir(), "/certs"));
    ASSERT_TRUE(certs.ok()) << certs.status();
    certs_ = new TestCertificates(*certs);
  }
  static void TearDownTestSuite() { delete certs_; }

  static TestCertificates* certs_;
};
TestCertificates* GrpcServerTlsTest::certs_ = nullptr;

TEST_F(GrpcServerTlsTest, TlsClientsOnly) {
  absl::StatusOr<std::unique_ptr<GrpcServer>> server =
      GrpcServer::Start("127.0.0.1:0", {Peer()},
                        {.tls = {.cert_file = certs_->server_cert,
                                 .key_file = certs_->server_key}});
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_TRUE((*server)->tls());
  const std::string address = (*server)->address();

  const grpc::Status tls = CheckOver(address, Client({.ca_file = certs_->ca}));
  EXPECT_TRUE(tls.ok()) << tls.error_message();
  // A plaintext client gets no answer.
  EXPECT_EQ(CheckOver(address, grpc::InsecureChannelCredentials()).error_code(),
            grpc::StatusCode::UNAVAILABLE);
  // A client that trusts another CA does not accept the server.
  EXPECT_EQ(
      CheckOver(address, Client({.ca_file = certs_->other_ca})).error_code(),
      grpc::StatusCode::UNAVAILABLE);
}

TEST_F(GrpcServerTlsTest, ClientCertificatesFromTheClientCaOnly) {
  absl::StatusOr<std::unique_ptr<GrpcServer>> server =
      GrpcServer::Start("127.0.0.1:0", {Peer()},
                        {.tls = {.cert_file = certs_->server_cert,
                                 .key_file = certs_->server_key,
                                 .client_ca_file = certs_->ca}});
  ASSERT_TRUE(server.ok()) << server.status();
  const std::string address = (*server)->address();

  const grpc::Status with_cert =
      CheckOver(address, Client({.ca_file = certs_->ca,
                                 .cert_file = certs_->client_cert,
                                 .key_file = certs_->client_key}));
  EXPECT_TRUE(with_cert.ok()) << with_cert.error_message();
  std::string identity;
  const grpc::Status identified = CallRaw(
      grpc::CreateChannel(address, Client({.ca_file = certs_->ca,
                                           .cert_file = certs_->client_cert,
                                           .key_file = certs_->client_key})),
      kIdentityMethod, &identity);
  EXPECT_TRUE(identified.ok()) << identified.error_message();
  EXPECT_EQ(identity, "lethe-test-worker");
  // Without a certificate the handshake succeeds (the Jobs API's clients
  // have none); services that need one check it per call.
  const grpc::Status without =
      CheckOver(address, Client({.ca_file = certs_->ca}));
  EXPECT_TRUE(without.ok()) << without.error_message();
  EXPECT_EQ(
      CallRaw(grpc::CreateChannel(address, Client({.ca_file = certs_->ca})),
              kIdentityMethod)
          .error_code(),
      grpc::StatusCode::UNAUTHENTICATED);
  // A certificate from another CA fails the handshake.
  EXPECT_EQ(CheckOver(address, Client({.ca_file = certs_->ca,
                                       .cert_file = certs_->other_client_cert,
                                       .key_file = certs_->other_client_key}))
                .error_code(),
            grpc::StatusCode::UNAVAILABLE);
}

TEST_F(GrpcServerTlsTest, IncompleteOrMissingFilesAreRefused) {
  EXPECT_EQ(GrpcServer::Start("127.0.0.1:0", {Peer()},
                              {.tls = {.cert_file = certs_->server_cert}})
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(GrpcServer::Start("127.0.0.1:0", {Peer()},
                              {.tls = {.client_ca_file = certs_->ca}})
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(GrpcServer::Start("127.0.0.1:0", {Peer()},
                                 {.tls = {.cert_file = "/nonexistent.pem",
                                          .key_file = certs_->server_key}})
                   .ok());
  EXPECT_FALSE(ChannelCredentials({.ca_file = "/nonexistent.pem"}).ok());
  // A key is not a CA bundle... but it is PEM; a certificate without a CA
  // bundle is refused.
  EXPECT_FALSE(ChannelCredentials({.cert_file = certs_->client_cert,
                                   .key_file = certs_->client_key})
                   .ok());
}

}  // namespace
}  // namespace lethe
