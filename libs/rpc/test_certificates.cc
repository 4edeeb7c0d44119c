#include "libs/rpc/test_certificates.h"

#include <filesystem>
#include <string>

#include "absl/strings/str_cat.h"
#include "libs/files/file_io.h"
#include "libs/status/status_macros.h"
#include "libs/subprocess/subprocess.h"

namespace lethe {
namespace {

// Makes <name>.pem and <name>.key in `dir`: self-signed when `ca` is empty,
// else signed by <ca>.pem/<ca>.key, with the extensions `extensions`.
std::string CertificateCommands(const std::string& name, const std::string& cn,
                                const std::string& ca,
                                const std::string& extensions) {
  const std::string key_options =
      "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
  if (ca.empty()) {
    return absl::StrCat("openssl req -x509 ", key_options, " -keyout ", name,
                        ".key -out ", name, ".pem -days 2 -subj /CN=", cn,
                        "\n");
  }
  return absl::StrCat("printf '%s\\n' '", extensions, "' > ", name, ".ext\n",
                      "openssl req ", key_options, " -keyout ", name,
                      ".key -out ", name, ".csr -subj /CN=", cn, "\n",
                      "openssl x509 -req -in ", name, ".csr -CA ", ca,
                      ".pem -CAkey ", ca, ".key -CAcreateserial -out ", name,
                      ".pem -days 2 -extfile ", name, ".ext\n");
}

}  // namespace

absl::StatusOr<TestCertificates> MakeTestCertificates(const std::string& dir) {
  std::error_code error;
  std::filesystem::create_directories(dir, error);
  const std::string client_extensions =
      "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth";
  const std::string script = absl::StrCat(
      "set -e\ncd '", dir, "'\n",
      CertificateCommands("ca", "lethe-test-ca", "", ""),
      CertificateCommands("server", "lethe-test-coordinator", "ca",
                          "basicConstraints=CA:FALSE\n"
                          "extendedKeyUsage=serverAuth\n"
                          "subjectAltName=IP:127.0.0.1,DNS:localhost"),
      CertificateCommands("client", "lethe-test-worker", "ca",
                          client_extensions),
      CertificateCommands("other_ca", "lethe-test-other-ca", "", ""),
      CertificateCommands("other_client", "lethe-test-intruder", "other_ca",
                          client_extensions));
  const std::string log = absl::StrCat(dir, "/openssl.log");
  ASSIGN_OR_RETURN(Subprocess openssl,
                   Subprocess::Start({"/bin/sh", "-c", script}, {},
                                     {.stdout_path = log, .stderr_path = log}));
  ASSIGN_OR_RETURN(const ExitStatus exit, openssl.Wait());
  if (!exit.success()) {
    return absl::InternalError(
        absl::StrCat("making test certificates with openssl ", exit.ToString(),
                     ": ", ReadFileToString(log).value_or("")));
  }
  const auto path = [&](const std::string& name) {
    return absl::StrCat(dir, "/", name);
  };
  return TestCertificates{
      .ca = path("ca.pem"),
      .server_cert = path("server.pem"),
      .server_key = path("server.key"),
      .client_cert = path("client.pem"),
      .client_key = path("client.key"),
      .other_ca = path("other_ca.pem"),
      .other_client_cert = path("other_client.pem"),
      .other_client_key = path("other_client.key"),
  };
}

}  // namespace lethe
