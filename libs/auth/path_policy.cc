#include "libs/auth/path_policy.h"

#include <filesystem>
#include <system_error>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace lethe {
namespace {

namespace fs = std::filesystem;

// `path` with symbolic links resolved as far as it exists and without "."
// or ".."; "" when it cannot be resolved.
std::string Resolve(const std::string& path) {
  std::error_code error;
  const fs::path resolved = fs::weakly_canonical(fs::path(path), error);
  if (error) return "";
  return resolved.lexically_normal().string();
}

bool IsUnder(const std::string& path, const std::string& root) {
  if (path == root) return true;
  const std::string prefix =
      absl::EndsWith(root, "/") ? root : absl::StrCat(root, "/");
  return absl::StartsWith(path, prefix);
}

absl::Status CheckField(const std::string& field, const std::string& path,
                        const std::vector<std::string>& roots,
                        const std::string& flag) {
  if (roots.empty() || path.empty()) return absl::OkStatus();
  const absl::Status denied = absl::PermissionDeniedError(
      absl::StrCat(field, " must be an absolute path under one of ",
                   absl::StrJoin(roots, ", "), " (", flag, ")"));
  if (!fs::path(path).is_absolute()) return denied;
  const std::string resolved = Resolve(path);
  if (resolved.empty()) return denied;
  for (const std::string& root : roots) {
    if (IsUnder(resolved, root)) return absl::OkStatus();
  }
  return denied;
}

absl::Status CheckSplit(const std::string& field, const std::string& split) {
  if (absl::StrContains(split, '/') || absl::StrContains(split, "..")) {
    return absl::PermissionDeniedError(
        absl::StrCat(field, " must be a file name inside data_dir"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<PathPolicy> PathPolicy::Create(const PathRoots& roots,
                                              PathRootLabels labels) {
  PathRoots resolved;
  const auto resolve_all = [](const std::vector<std::string>& in,
                              std::vector<std::string>& out) -> absl::Status {
    for (const std::string& root : in) {
      if (root.empty() || !fs::path(root).is_absolute()) {
        return absl::InvalidArgumentError(
            absl::StrCat("allowed root \"", root, "\" is not absolute"));
      }
      const std::string path = Resolve(root);
      if (path.empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat("allowed root \"", root, "\" cannot be resolved"));
      }
      out.push_back(path);
    }
    return absl::OkStatus();
  };
  if (absl::Status s = resolve_all(roots.model_roots, resolved.model_roots);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = resolve_all(roots.data_roots, resolved.data_roots);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = resolve_all(roots.output_roots, resolved.output_roots);
      !s.ok()) {
    return s;
  }
  return PathPolicy(std::move(resolved), std::move(labels));
}

absl::Status PathPolicy::Check(const v1::JobSpec& spec) const {
  for (const absl::Status& status : {
           CheckField("spec.model_dir", spec.model_dir(), roots_.model_roots,
                      labels_.model),
           CheckField("spec.tokenizer_path", spec.tokenizer_path(),
                      roots_.model_roots, labels_.model),
           CheckField("spec.data_dir", spec.data_dir(), roots_.data_roots,
                      labels_.data),
           CheckField("spec.evaluation.retain_logs_path",
                      spec.evaluation().retain_logs_path(), roots_.data_roots,
                      labels_.data),
           roots_.data_roots.empty()
               ? absl::OkStatus()
               : CheckSplit("spec.forget_split", spec.forget_split()),
           roots_.data_roots.empty()
               ? absl::OkStatus()
               : CheckSplit("spec.retain_split", spec.retain_split()),
           CheckField("spec.output_dir", spec.output_dir(), roots_.output_roots,
                      labels_.output),
       }) {
    if (!status.ok()) return status;
  }
  return absl::OkStatus();
}

absl::StatusOr<TenantPathPolicy> TenantPathPolicy::Create(
    const PathRoots& global,
    const std::map<std::string, TenantRoots>& tenants) {
  absl::StatusOr<PathPolicy> global_policy = PathPolicy::Create(global);
  if (!global_policy.ok()) return global_policy.status();
  TenantPathPolicy policy(*std::move(global_policy));
  const PathRoots& outer = policy.global_.roots();
  for (const auto& [tenant, own] : tenants) {
    const std::string where = absl::StrCat("tokens file line ", own.line,
                                           ": tenant \"", tenant, "\"");
    // Each kind: the tenant's own roots, which must lie within the global
    // ones, or else the global ones.
    PathRoots roots;
    PathRootLabels labels;
    const auto pick = [&](const std::optional<std::vector<std::string>>& mine,
                          const std::vector<std::string>& resolved_global,
                          const std::vector<std::string>& given_global,
                          const std::string& kind,
                          std::vector<std::string>& out,
                          std::string& label) -> absl::Status {
      if (!mine.has_value()) {
        out = given_global;
        return absl::OkStatus();
      }
      label = absl::StrCat(kind, "_roots of tenant \"", tenant,
                           "\" (--auth_tokens_file)");
      for (const std::string& root : *mine) {
        if (!fs::path(root).is_absolute()) {
          return absl::InvalidArgumentError(absl::StrCat(
              where, ": ", kind, "_roots \"", root, "\" is not absolute"));
        }
        const std::string resolved = Resolve(root);
        bool inside = resolved_global.empty();
        for (const std::string& outer_root : resolved_global) {
          inside |= !resolved.empty() && IsUnder(resolved, outer_root);
        }
        if (!inside) {
          return absl::InvalidArgumentError(absl::StrCat(
              where, ": ", kind, "_roots \"", root,
              "\" is not under --allowed_", kind, "_roots (",
              absl::StrJoin(resolved_global, ", "),
              "): a tenant's roots must lie within the coordinator's"));
        }
      }
      out = *mine;
      return absl::OkStatus();
    };
    for (const absl::Status& status :
         {pick(own.model_roots, outer.model_roots, global.model_roots, "model",
               roots.model_roots, labels.model),
          pick(own.data_roots, outer.data_roots, global.data_roots, "data",
               roots.data_roots, labels.data),
          pick(own.output_roots, outer.output_roots, global.output_roots,
               "output", roots.output_roots, labels.output)}) {
      if (!status.ok()) return status;
    }
    absl::StatusOr<PathPolicy> tenant_policy =
        PathPolicy::Create(roots, std::move(labels));
    if (!tenant_policy.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": ", tenant_policy.status().message()));
    }
    policy.tenants_.emplace(tenant, *std::move(tenant_policy));
  }
  return policy;
}

const PathPolicy& TenantPathPolicy::For(const std::string& tenant) const {
  const auto found = tenants_.find(tenant);
  return found == tenants_.end() ? global_ : found->second;
}

bool TenantPathPolicy::restricts_anything() const {
  if (global_.restricts_anything()) return true;
  for (const auto& [tenant, policy] : tenants_) {
    if (policy.restricts_anything()) return true;
  }
  return false;
}

}  // namespace lethe
