// Throwaway certificates for tests, made at test time with Debian's
// `openssl` command (keys are never committed): a CA, a server certificate
// for 127.0.0.1 and localhost, a client certificate from the same CA, and a
// second CA with a client certificate of its own (the "wrong CA").
//
//   absl::StatusOr<TestCertificates> certs = MakeTestCertificates(dir);
//   ServerTlsOptions tls{certs->server_cert, certs->server_key, certs->ca};
#ifndef LETHE_LIBS_RPC_TEST_CERTIFICATES_H_
#define LETHE_LIBS_RPC_TEST_CERTIFICATES_H_

#include <string>

#include "absl/status/statusor.h"

namespace lethe {

// Paths of PEM files.
struct TestCertificates {
  std::string ca;
  std::string server_cert, server_key;
  std::string client_cert, client_key;  // CN lethe-test-worker.
  std::string other_ca;
  std::string other_client_cert, other_client_key;  // Signed by other_ca.
};

// Writes the files into `dir` (created if missing). INTERNAL with openssl's
// output when it fails.
absl::StatusOr<TestCertificates> MakeTestCertificates(const std::string& dir);

}  // namespace lethe

#endif  // LETHE_LIBS_RPC_TEST_CERTIFICATES_H_
