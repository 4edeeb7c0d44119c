#include "libs/rpc/grpc_server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/impl/server_builder_option.h>
#include <grpcpp/impl/server_builder_plugin.h>

#include <algorithm>
#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "libs/net/host_port.h"
#include "libs/status/status_macros.h"

namespace lethe {
namespace {

// Removes gRPC's reflection plugin from one server's builder: the plugin's
// factory is registered process wide once libgrpc++_reflection is loaded.
class WithoutReflection final : public grpc::ServerBuilderOption {
 public:
  void UpdateArguments(grpc::ChannelArguments*) override {}
  void UpdatePlugins(std::vector<std::unique_ptr<grpc::ServerBuilderPlugin>>*
                         plugins) override {
    plugins->erase(
        std::remove_if(plugins->begin(), plugins->end(),
                       [](const std::unique_ptr<grpc::ServerBuilderPlugin>& p) {
                         return p->name() == "proto_server_reflection";
                       }),
        plugins->end());
  }
};

}  // namespace

GrpcServer::GrpcServer(std::unique_ptr<grpc::Server> server,
                       std::string address, int port, bool tls)
    : server_(std::move(server)),
      address_(std::move(address)),
      port_(port),
      tls_(tls) {}

GrpcServer::~GrpcServer() { Shutdown(absl::ZeroDuration()); }

absl::StatusOr<std::unique_ptr<GrpcServer>> GrpcServer::Start(
    const std::string& address, const std::vector<grpc::Service*>& services,
    const GrpcServerOptions& options) {
  std::string host;
  int requested_port = 0;
  RETURN_IF_ERROR(ParseHostPort(address, &host, &requested_port));
  if (services.empty()) {
    return absl::InvalidArgumentError(
        "a gRPC server needs at least one service");
  }
  ASSIGN_OR_RETURN(const std::shared_ptr<grpc::ServerCredentials> credentials,
                   ServerCredentials(options.tls));

  grpc::EnableDefaultHealthCheckService(true);
  if (options.reflection) {
    grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  }
  grpc::ServerBuilder builder;
  if (!options.reflection) {
    builder.SetOption(std::make_unique<WithoutReflection>());
  }
  builder.SetMaxReceiveMessageSize(options.max_receive_message_bytes);
  // gRPC sets SO_REUSEPORT by default, which lets a second server silently
  // share a port with a running one; Lethe wants the bind to fail instead.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  int bound_port = 0;
  builder.AddListeningPort(address, credentials, &bound_port);
  for (grpc::Service* service : services) builder.RegisterService(service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || bound_port == 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot serve gRPC on ", address,
                     ": the address is in use or not local to this machine"));
  }
  const std::string bound_address = absl::StrCat(
      host.find(':') == std::string::npos ? host : absl::StrCat("[", host, "]"),
      ":", bound_port);
  return std::unique_ptr<GrpcServer>(
      new GrpcServer(std::move(server), bound_address, bound_port,
                     !options.tls.cert_file.empty()));
}

void GrpcServer::SetServing(const std::string& service, bool serving) {
  server_->GetHealthCheckService()->SetServingStatus(service, serving);
}

void GrpcServer::Shutdown(absl::Duration grace) {
  if (server_ == nullptr) return;
  server_->Shutdown(
      std::chrono::system_clock::now() +
      std::chrono::milliseconds(absl::ToInt64Milliseconds(grace)));
}

void GrpcServer::Wait() { server_->Wait(); }

}  // namespace lethe
