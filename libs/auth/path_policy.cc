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
                        const char* flag) {
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

absl::StatusOr<PathPolicy> PathPolicy::Create(const PathRoots& roots) {
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
  return PathPolicy(std::move(resolved));
}

absl::Status PathPolicy::Check(const v1::JobSpec& spec) const {
  for (const absl::Status& status : {
           CheckField("spec.model_dir", spec.model_dir(), roots_.model_roots,
                      "--allowed_model_roots"),
           CheckField("spec.tokenizer_path", spec.tokenizer_path(),
                      roots_.model_roots, "--allowed_model_roots"),
           CheckField("spec.data_dir", spec.data_dir(), roots_.data_roots,
                      "--allowed_data_roots"),
           CheckField("spec.evaluation.retain_logs_path",
                      spec.evaluation().retain_logs_path(), roots_.data_roots,
                      "--allowed_data_roots"),
           roots_.data_roots.empty()
               ? absl::OkStatus()
               : CheckSplit("spec.forget_split", spec.forget_split()),
           roots_.data_roots.empty()
               ? absl::OkStatus()
               : CheckSplit("spec.retain_split", spec.retain_split()),
           CheckField("spec.output_dir", spec.output_dir(), roots_.output_roots,
                      "--allowed_output_roots"),
       }) {
    if (!status.ok()) return status;
  }
  return absl::OkStatus();
}

}  // namespace lethe
