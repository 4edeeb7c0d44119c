#include "libs/auth/token_auth.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <cstdlib>
#include <memory>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "libs/files/file_io.h"
#include "libs/status/status_macros.h"

namespace lethe {
namespace {

constexpr char kBearer[] = "bearer ";

// SHA-256 of `data`; false only if OpenSSL fails.
bool Sha256(absl::string_view data, std::array<unsigned char, 32>& digest) {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> context(
      EVP_MD_CTX_new(), &EVP_MD_CTX_free);
  unsigned int length = 0;
  return context != nullptr &&
         EVP_DigestInit_ex(context.get(), EVP_sha256(), nullptr) == 1 &&
         EVP_DigestUpdate(context.get(), data.data(), data.size()) == 1 &&
         EVP_DigestFinal_ex(context.get(), digest.data(), &length) == 1 &&
         length == digest.size();
}

bool AllOf(absl::string_view text, size_t max_size,
           absl::string_view extra_characters) {
  if (text.empty() || text.size() > max_size) return false;
  for (const char c : text) {
    if (!absl::ascii_isalnum(c) && !absl::StrContains(extra_characters, c)) {
      return false;
    }
  }
  return true;
}

bool IsHex(absl::string_view text) {
  for (const char c : text) {
    if (!absl::ascii_isxdigit(c)) return false;
  }
  return true;
}

// Parses the fields after "tenant NAME" of a tenant line into `roots`;
// INVALID_ARGUMENT saying what is wrong (without the line number).
absl::Status ParseTenantRoots(const std::vector<absl::string_view>& fields,
                              TenantRoots& roots) {
  if (fields.size() < 3) {
    return absl::InvalidArgumentError(
        "a tenant line needs the tenant and at least one of model_roots=, "
        "data_roots=, output_roots=");
  }
  for (size_t i = 2; i < fields.size(); ++i) {
    const std::pair<absl::string_view, absl::string_view> key_value =
        absl::StrSplit(fields[i], absl::MaxSplits('=', 1));
    std::optional<std::vector<std::string>>* kind = nullptr;
    if (key_value.first == "model_roots") {
      kind = &roots.model_roots;
    } else if (key_value.first == "data_roots") {
      kind = &roots.data_roots;
    } else if (key_value.first == "output_roots") {
      kind = &roots.output_roots;
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("\"", fields[i],
                       "\" is not model_roots=, data_roots= or output_roots="));
    }
    if (kind->has_value()) {
      return absl::InvalidArgumentError(
          absl::StrCat(key_value.first, " is given twice"));
    }
    std::vector<std::string> dirs;
    for (absl::string_view dir : absl::StrSplit(key_value.second, ',')) {
      if (dir.empty() || dir[0] != '/') {
        return absl::InvalidArgumentError(
            absl::StrCat(key_value.first,
                         " must be a comma-separated list of absolute "
                         "directories, got \"",
                         key_value.second, "\""));
      }
      dirs.emplace_back(dir);
    }
    *kind = std::move(dirs);
  }
  return absl::OkStatus();
}

}  // namespace

absl::string_view RoleName(Role role) {
  switch (role) {
    case Role::kViewer:
      return "viewer";
    case Role::kSubmitter:
      return "submitter";
    case Role::kAdmin:
      return "admin";
  }
  return "unknown";
}

absl::StatusOr<Role> ParseRole(absl::string_view name) {
  for (const Role role : {Role::kViewer, Role::kSubmitter, Role::kAdmin}) {
    if (name == RoleName(role)) return role;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "role \"", name, "\" is not one of viewer, submitter, admin"));
}

absl::Status Authorize(const Principal& principal, Access access,
                       absl::string_view method) {
  if (access == Access::kRead || principal.role != Role::kViewer) {
    return absl::OkStatus();
  }
  return absl::PermissionDeniedError(absl::StrCat(
      "principal \"", principal.name, "\" (role ", RoleName(principal.role),
      ") may not call ", method, ": it needs role submitter or admin"));
}

std::string Sha256Hex(absl::string_view data) {
  std::array<unsigned char, 32> digest{};
  if (!Sha256(data, digest)) return "";
  return absl::BytesToHexString(absl::string_view(
      reinterpret_cast<const char*>(digest.data()), digest.size()));
}

std::string RandomHex(size_t bytes) {
  std::string random(bytes, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(random.data()),
                 static_cast<int>(bytes)) != 1) {
    std::abort();  // No randomness: never hand out guessable secrets.
  }
  return absl::BytesToHexString(random);
}

bool ConstantTimeEquals(absl::string_view a, absl::string_view b) {
  return a.size() == b.size() &&
         CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

bool IsValidTenant(absl::string_view tenant) {
  return AllOf(tenant, 64, "._-");
}

absl::StatusOr<TokenTable> TokenTable::Parse(absl::string_view text) {
  TokenTable table;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_number;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line[0] == '#') continue;
    const std::vector<absl::string_view> fields =
        absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    const auto bad = [&](absl::string_view why) {
      return absl::InvalidArgumentError(
          absl::StrCat("tokens file line ", line_number, ": ", why));
    };
    if (fields[0] == "tenant") {
      if (fields.size() < 2 || !IsValidTenant(fields[1])) {
        return bad("the tenant must be 1-64 of [A-Za-z0-9._-]");
      }
      const std::string tenant(fields[1]);
      if (const auto it = table.tenant_roots_.find(tenant);
          it != table.tenant_roots_.end()) {
        return bad(absl::StrCat("tenant \"", tenant,
                                "\" already has its roots on line ",
                                it->second.line));
      }
      TenantRoots roots;
      roots.line = line_number;
      if (absl::Status parsed = ParseTenantRoots(fields, roots); !parsed.ok()) {
        return bad(parsed.message());
      }
      table.tenant_roots_.emplace(tenant, std::move(roots));
      continue;
    }
    if (fields.size() != 4) {
      return bad(
          absl::StrCat("expected 4 fields (sha256 principal tenant role), got ",
                       fields.size()));
    }
    if (fields[0].size() != 64 || !IsHex(fields[0])) {
      return bad("the first field must be the token's SHA-256, 64 hex digits");
    }
    if (!AllOf(fields[1], 128, "._@-")) {
      return bad("the principal must be 1-128 of [A-Za-z0-9._@-]");
    }
    if (!IsValidTenant(fields[2])) {
      return bad("the tenant must be 1-64 of [A-Za-z0-9._-]");
    }
    absl::StatusOr<Role> role = ParseRole(fields[3]);
    if (!role.ok()) return bad(role.status().message());
    Entry entry;
    const std::string digest = absl::HexStringToBytes(fields[0]);
    std::copy(digest.begin(), digest.end(), entry.digest.begin());
    for (const Entry& other : table.entries_) {
      if (other.digest == entry.digest) {
        return bad(absl::StrCat("the token hash of principal \"", fields[1],
                                "\" is already listed for \"",
                                other.principal.name, "\""));
      }
    }
    entry.principal = {std::string(fields[1]), std::string(fields[2]), *role};
    table.entries_.push_back(std::move(entry));
  }
  if (table.entries_.empty()) {
    return absl::InvalidArgumentError(
        "the tokens file lists no token: every call would be refused");
  }
  for (const auto& [tenant, roots] : table.tenant_roots_) {
    bool named = false;
    for (const Entry& entry : table.entries_) {
      named |= entry.principal.tenant == tenant;
    }
    if (!named) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tokens file line ", roots.line, ": no token belongs to tenant \"",
          tenant, "\" (a misspelt tenant?)"));
    }
  }
  return table;
}

absl::StatusOr<TokenTable> TokenTable::Load(const std::string& path) {
  ASSIGN_OR_RETURN(const std::string text, ReadFileToString(path));
  absl::StatusOr<TokenTable> table = Parse(text);
  if (!table.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": ", table.status().message()));
  }
  return table;
}

absl::StatusOr<Principal> TokenTable::Authenticate(
    absl::string_view token) const {
  std::array<unsigned char, 32> digest{};
  if (token.empty() || !Sha256(token, digest)) {
    return absl::UnauthenticatedError("invalid token");
  }
  // Every entry is compared, whatever matched, in constant time each.
  const Entry* found = nullptr;
  for (const Entry& entry : entries_) {
    const bool equal =
        CRYPTO_memcmp(entry.digest.data(), digest.data(), digest.size()) == 0;
    if (equal) found = &entry;
  }
  if (found == nullptr) return absl::UnauthenticatedError("invalid token");
  return found->principal;
}

absl::StatusOr<Principal> TokenTable::AuthenticateHeader(
    std::optional<absl::string_view> header) const {
  if (!header.has_value()) {
    return absl::UnauthenticatedError(
        "this coordinator requires a token: send \"authorization: Bearer "
        "<token>\" metadata (lethe: --token or LETHE_TOKEN)");
  }
  absl::string_view value = absl::StripAsciiWhitespace(*header);
  if (value.size() <= sizeof(kBearer) - 1 ||
      !absl::StartsWithIgnoreCase(value, kBearer)) {
    return absl::UnauthenticatedError(
        "the authorization metadata must be \"Bearer <token>\"");
  }
  value.remove_prefix(sizeof(kBearer) - 1);
  return Authenticate(absl::StripAsciiWhitespace(value));
}

}  // namespace lethe
