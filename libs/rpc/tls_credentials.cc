#include "libs/rpc/tls_credentials.h"

#include <grpcpp/security/auth_context.h>

#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "libs/files/file_io.h"
#include "libs/status/status_macros.h"

namespace lethe {
namespace {

absl::StatusOr<std::string> ReadPem(const std::string& path, const char* what) {
  absl::StatusOr<std::string> text = ReadFileToString(path);
  if (!text.ok()) {
    return absl::Status(text.status().code(),
                        absl::StrCat("reading the TLS ", what, " ", path, ": ",
                                     text.status().message()));
  }
  if (text->find("-----BEGIN") == std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("the TLS ", what, " ", path, " is not PEM"));
  }
  return text;
}

}  // namespace

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ServerCredentials(
    const ServerTlsOptions& options) {
  if (options.cert_file.empty() != options.key_file.empty()) {
    return absl::InvalidArgumentError(
        "--tls_cert_file and --tls_key_file go together");
  }
  if (options.cert_file.empty()) {
    if (!options.client_ca_file.empty()) {
      return absl::InvalidArgumentError(
          "--tls_client_ca_file needs --tls_cert_file and --tls_key_file");
    }
    return grpc::InsecureServerCredentials();
  }
  grpc::SslServerCredentialsOptions ssl;
  grpc::SslServerCredentialsOptions::PemKeyCertPair pair;
  ASSIGN_OR_RETURN(pair.cert_chain, ReadPem(options.cert_file, "certificate"));
  ASSIGN_OR_RETURN(pair.private_key, ReadPem(options.key_file, "key"));
  ssl.pem_key_cert_pairs.push_back(std::move(pair));
  if (options.client_ca_file.empty()) {
    ssl.client_certificate_request = GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE;
  } else {
    ASSIGN_OR_RETURN(ssl.pem_root_certs,
                     ReadPem(options.client_ca_file, "client CA bundle"));
    ssl.client_certificate_request =
        GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  return grpc::SslServerCredentials(ssl);
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ChannelCredentials(
    const ClientTlsOptions& options) {
  if (options.cert_file.empty() != options.key_file.empty()) {
    return absl::InvalidArgumentError(
        "--tls_cert_file and --tls_key_file go together");
  }
  if (options.ca_file.empty()) {
    if (!options.cert_file.empty()) {
      return absl::InvalidArgumentError(
          "--tls_cert_file needs --tls_ca_file (the server's CA)");
    }
    return grpc::InsecureChannelCredentials();
  }
  grpc::SslCredentialsOptions ssl;
  ASSIGN_OR_RETURN(ssl.pem_root_certs, ReadPem(options.ca_file, "CA bundle"));
  if (!options.cert_file.empty()) {
    ASSIGN_OR_RETURN(ssl.pem_cert_chain,
                     ReadPem(options.cert_file, "certificate"));
    ASSIGN_OR_RETURN(ssl.pem_private_key, ReadPem(options.key_file, "key"));
  }
  return grpc::SslCredentials(ssl);
}

bool HasVerifiedClientCertificate(const grpc::ServerContext& context) {
  const std::shared_ptr<const grpc::AuthContext> auth = context.auth_context();
  if (auth == nullptr) return false;
  // The server verifies any certificate it is given (REQUEST_AND_VERIFY),
  // so a peer certificate on the call is a verified one.
  return !auth->FindPropertyValues(GRPC_X509_PEM_CERT_PROPERTY_NAME).empty();
}

std::string ClientCertificateIdentity(const grpc::ServerContext& context) {
  if (!HasVerifiedClientCertificate(context)) return "";
  std::vector<std::string> names;
  for (const grpc::string_ref& name :
       context.auth_context()->GetPeerIdentity()) {
    names.emplace_back(name.data(), name.size());
  }
  return absl::StrJoin(names, ",");
}

}  // namespace lethe
