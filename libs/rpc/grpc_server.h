// A gRPC server with the parts every Lethe server has: the standard health
// service (grpc.health.v1.Health), TLS or mutual TLS when configured
// (tls_credentials.h), server reflection only when asked for, and a cap on
// request size, bound to an address whose port may be 0 (the chosen port is
// read back).
//
//   JobsService jobs(...);
//   ASSIGN_OR_RETURN(std::unique_ptr<GrpcServer> server,
//                    GrpcServer::Start("127.0.0.1:0", {&jobs}));
//   LETHE_LOG(INFO) << "listening on " << server->address();
//   server->SetServing("lethe.v1.Jobs", true);
//   ...
//   server->Shutdown(absl::Seconds(5));
#ifndef LETHE_LIBS_RPC_GRPC_SERVER_H_
#define LETHE_LIBS_RPC_GRPC_SERVER_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "libs/rpc/tls_credentials.h"

namespace lethe {

struct GrpcServerOptions {
  // No files: plaintext (see tls_credentials.h).
  ServerTlsOptions tls;
  // Serve grpc.reflection.v1alpha.ServerReflection (lets anyone who can
  // call the server list its methods and messages). Reflection is process
  // wide in gRPC: turning it on for one server also turns it on for the
  // servers this process starts later that do not turn it off.
  bool reflection = false;
  // Requests larger than this are refused (RESOURCE_EXHAUSTED).
  int max_receive_message_bytes = 4 << 20;
};

class GrpcServer {
 public:
  // Serves `services` (not owned; they must outlive the server; at least
  // one) on `address` ("host:port"). INVALID_ARGUMENT for no service, a
  // malformed address or TLS options, the read error of a TLS file, UNAVAILABLE
  // when the port cannot be bound.
  static absl::StatusOr<std::unique_ptr<GrpcServer>> Start(
      const std::string& address, const std::vector<grpc::Service*>& services,
      const GrpcServerOptions& options = {});
  ~GrpcServer();

  int port() const { return port_; }
  bool tls() const { return tls_; }
  // "host:port" with the bound port.
  const std::string& address() const { return address_; }

  // Health status reported for `service` ("" is the server as a whole,
  // which starts SERVING).
  void SetServing(const std::string& service, bool serving);

  // Stops accepting calls and cancels those still running after `grace`.
  void Shutdown(absl::Duration grace);
  // Blocks until Shutdown has completed.
  void Wait();

 private:
  GrpcServer(std::unique_ptr<grpc::Server> server, std::string address,
             int port, bool tls);

  std::unique_ptr<grpc::Server> server_;
  std::string address_;
  int port_;
  bool tls_;
};

}  // namespace lethe

#endif  // LETHE_LIBS_RPC_GRPC_SERVER_H_
