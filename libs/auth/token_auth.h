// Bearer-token authentication and role-based authorisation for the Jobs
// API.
//
// The tokens file (--auth_tokens_file) holds one entry per line, four
// fields separated by spaces or tabs; blank lines and lines starting with
// '#' are ignored:
//
//   # sha256(token), hex                                            principal
//   tenant role
//   2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae alice
//   team-a submitter
//
// - The first field is the SHA-256 of the token (64 hex digits, either
//   case): `printf %s "$TOKEN" | sha256sum`. The file never holds tokens.
// - principal: 1-128 of [A-Za-z0-9._@-]; tenant: 1-64 of [A-Za-z0-9._-].
// - role: viewer (GetJob, ListJobs, WatchJob, StreamJobLogs), submitter
//   (viewer's, plus CreateJob, CancelJob, DeleteJob) or admin (submitter's,
//   over every tenant's jobs).
// - A malformed line or a token hash listed twice is INVALID_ARGUMENT
//   naming the line; a file with no entry is INVALID_ARGUMENT too.
//
// A line whose first field is the word "tenant" gives one tenant its own
// allowed roots for job paths (see path_policy.h, TenantPathPolicy):
//
//   tenant team-a model_roots=/data/a/models,/data/shared data_roots=/data/a
//
// - After the tenant name, one to three KEY=DIR[,DIR...] fields, each key
//   at most once: model_roots, data_roots, output_roots. Every DIR is an
//   absolute path (no spaces: fields are split at spaces). A kind the line
//   leaves out falls back to the coordinator's --allowed_<kind>_roots.
// - At most one tenant line per tenant, and its tenant must be named by a
//   token entry of the file (a typo would otherwise go unnoticed).
//
// Clients send "authorization: Bearer <token>" metadata. A token is looked
// up by hashing it and comparing the digest with every entry's in constant
// time (CRYPTO_memcmp, no early exit), so the time taken says nothing about
// which digest bytes matched.
//
//   ASSIGN_OR_RETURN(TokenTable tokens, TokenTable::Load(path));
//   ASSIGN_OR_RETURN(Principal caller, tokens.AuthenticateHeader(header));
//   RETURN_IF_ERROR(Authorize(caller, Access::kWrite, "CreateJob"));
#ifndef LETHE_LIBS_AUTH_TOKEN_AUTH_H_
#define LETHE_LIBS_AUTH_TOKEN_AUTH_H_

#include <array>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace lethe {

enum class Role { kViewer, kSubmitter, kAdmin };

// "viewer", "submitter", "admin".
absl::string_view RoleName(Role role);
// INVALID_ARGUMENT for anything but the three names.
absl::StatusOr<Role> ParseRole(absl::string_view name);

// A tenant's own allowed roots from a "tenant" line of the tokens file; a
// kind that is nullopt falls back to the coordinator's global roots.
struct TenantRoots {
  std::optional<std::vector<std::string>> model_roots;
  std::optional<std::vector<std::string>> data_roots;
  std::optional<std::vector<std::string>> output_roots;
  int line = 0;  // Its line in the tokens file, for messages.
};

struct Principal {
  std::string name;
  std::string tenant;
  Role role = Role::kViewer;
};

// What a call does: reads jobs, or creates, cancels or deletes them.
enum class Access { kRead, kWrite };

// OK when `principal`'s role allows `access`; otherwise PERMISSION_DENIED
// naming the principal, its role and `method`.
absl::Status Authorize(const Principal& principal, Access access,
                       absl::string_view method);

// Lower-case hex of the SHA-256 of `data` (OpenSSL's EVP).
std::string Sha256Hex(absl::string_view data);

// Lower-case hex of `bytes` bytes from OpenSSL's CSPRNG (RAND_bytes), for
// unguessable identifiers and secrets. Aborts the process if the generator
// fails (it never should: it reads the kernel's).
std::string RandomHex(size_t bytes);

// a == b in time that depends only on the sizes (CRYPTO_memcmp).
bool ConstantTimeEquals(absl::string_view a, absl::string_view b);

// True when a tenant name is 1-64 of [A-Za-z0-9._-].
bool IsValidTenant(absl::string_view tenant);

class TokenTable {
 public:
  static absl::StatusOr<TokenTable> Parse(absl::string_view text);
  // Parse of the file's contents; the file's read error otherwise.
  static absl::StatusOr<TokenTable> Load(const std::string& path);

  // The principal whose entry holds the SHA-256 of `token`;
  // UNAUTHENTICATED ("invalid token") otherwise.
  absl::StatusOr<Principal> Authenticate(absl::string_view token) const;
  // From the value of the "authorization" metadata (absent: nullopt):
  // "Bearer <token>" (the scheme in any case). UNAUTHENTICATED, saying what
  // is wrong, for a missing or malformed header or an unknown token.
  absl::StatusOr<Principal> AuthenticateHeader(
      std::optional<absl::string_view> header) const;

  size_t size() const { return entries_.size(); }
  // The tenants that have a "tenant" line, by name.
  const std::map<std::string, TenantRoots>& tenant_roots() const {
    return tenant_roots_;
  }

 private:
  struct Entry {
    std::array<unsigned char, 32> digest;
    Principal principal;
  };
  TokenTable() = default;

  std::vector<Entry> entries_;
  std::map<std::string, TenantRoots> tenant_roots_;
};

}  // namespace lethe

#endif  // LETHE_LIBS_AUTH_TOKEN_AUTH_H_
