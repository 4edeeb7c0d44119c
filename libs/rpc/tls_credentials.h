// TLS for Lethe's gRPC servers and clients, from PEM files.
//
// Server: a certificate and key make the port TLS-only (a plaintext client
// fails its handshake). With a client CA bundle as well, the server asks
// every client for a certificate and verifies any it is given against that
// bundle (a certificate from another CA fails the handshake); a client
// may still connect without one, and services that require one check
// HasVerifiedClientCertificate per call. So one port serves both the Jobs
// API (server TLS + bearer tokens) and the worker registry (mutual TLS).
//
// Client: with a CA bundle the channel is TLS and the server's certificate
// must chain to it and name the host dialled (DNS or IP subject
// alternative name); a certificate and key are presented when given.
// Without a CA bundle the channel is plaintext.
//
//   ASSIGN_OR_RETURN(auto credentials,
//                    ChannelCredentials({.ca_file = "ca.pem"}));
//   auto channel = grpc::CreateChannel("coordinator:7070", credentials);
#ifndef LETHE_LIBS_RPC_TLS_CREDENTIALS_H_
#define LETHE_LIBS_RPC_TLS_CREDENTIALS_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace lethe {

struct ServerTlsOptions {
  std::string cert_file;  // PEM certificate chain; empty: plaintext.
  std::string key_file;   // PEM private key; with cert_file only.
  // PEM CA bundle for client certificates; needs cert_file and key_file.
  std::string client_ca_file;
};

// Insecure credentials when no file is named; INVALID_ARGUMENT for an
// incomplete set (a key without a certificate, a client CA without TLS);
// the read error of a file that cannot be read.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ServerCredentials(
    const ServerTlsOptions& options);

struct ClientTlsOptions {
  std::string ca_file;    // PEM CA bundle for the server; empty: plaintext.
  std::string cert_file;  // PEM client certificate chain (mutual TLS).
  std::string key_file;   // Its private key.
};

// Like ServerCredentials: a certificate needs its key and a CA bundle.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ChannelCredentials(
    const ClientTlsOptions& options);

// True when the call came over TLS with a client certificate that the
// server verified against its client CA bundle.
bool HasVerifiedClientCertificate(const grpc::ServerContext& context);

// The verified client certificate's identity (its subject alternative names
// or, without them, its common name, comma-separated); "" without one.
std::string ClientCertificateIdentity(const grpc::ServerContext& context);

}  // namespace lethe

#endif  // LETHE_LIBS_RPC_TLS_CREDENTIALS_H_
