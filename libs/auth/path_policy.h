// Which paths a job may name: the coordinator's --allowed_model_roots,
// --allowed_data_roots and --allowed_output_roots, checked at CreateJob
// before anything looks at the files.
//
//   ASSIGN_OR_RETURN(PathPolicy policy,
//                    PathPolicy::Create({.model_roots = {"/data/models"},
//                                        .data_roots = {"/data/sets"},
//                                        .output_roots = {"/data/out"}}));
//   RETURN_IF_ERROR(policy.Check(spec));  // PERMISSION_DENIED or OK
//
// Contract:
// - A kind with no roots is not restricted (today's behaviour).
// - model_dir and tokenizer_path must lie under a model root; data_dir and
//   evaluation.retain_logs_path under a data root; output_dir under an
//   output root. Empty fields are not checked (the spec's own validation
//   says whether they are required); relative paths are refused.
// - Paths are resolved as far as they exist, symbolic links included
//   (std::filesystem::weakly_canonical), and "." and ".." removed, so a
//   link inside a root that points outside it does not get out. Roots are
//   resolved once, when the policy is made.
// - forget_split and retain_split name files inside data_dir: with data
//   roots, a split containing '/' or ".." is refused.
// - A refusal is PERMISSION_DENIED naming the field and the allowed roots
//   (and where they come from: the flag, or the labels given), never the
//   path or whether it exists; the answer is the same for a path that
//   exists and one that does not.
//
// Per tenant (TenantPathPolicy): the tokens file may give a tenant its own
// roots of a kind (token_auth.h, "tenant" lines); its jobs are checked
// against those, and against the global --allowed_<kind>_roots for the
// kinds it does not name. A tenant's roots must lie within the global
// roots of their kind (when there are any): Create refuses one that does
// not, so a tenant's roots narrow the global ones, never widen them.
//
//   ASSIGN_OR_RETURN(TenantPathPolicy paths,
//                    TenantPathPolicy::Create(global, tokens.tenant_roots()));
//   RETURN_IF_ERROR(paths.Check(caller.tenant, spec));
//   const PathRoots& sent = paths.For(job.tenant()).roots();  // to workers
#ifndef LETHE_LIBS_AUTH_PATH_POLICY_H_
#define LETHE_LIBS_AUTH_PATH_POLICY_H_

#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "lethe/v1/job.pb.h"
#include "libs/auth/token_auth.h"

namespace lethe {

struct PathRoots {
  std::vector<std::string> model_roots;
  std::vector<std::string> data_roots;
  std::vector<std::string> output_roots;
};

// Where each kind's roots come from, as a refusal names it.
struct PathRootLabels {
  std::string model = "--allowed_model_roots";
  std::string data = "--allowed_data_roots";
  std::string output = "--allowed_output_roots";
};

class PathPolicy {
 public:
  // INVALID_ARGUMENT for a relative or empty root.
  static absl::StatusOr<PathPolicy> Create(const PathRoots& roots,
                                           PathRootLabels labels = {});

  absl::Status Check(const v1::JobSpec& spec) const;

  bool restricts_anything() const {
    return !roots_.model_roots.empty() || !roots_.data_roots.empty() ||
           !roots_.output_roots.empty();
  }
  // The roots, resolved (symbolic links and ".." removed).
  const PathRoots& roots() const { return roots_; }

 private:
  PathPolicy(PathRoots resolved, PathRootLabels labels)
      : roots_(std::move(resolved)), labels_(std::move(labels)) {}

  PathRoots roots_;  // Resolved.
  PathRootLabels labels_;
};

// The global roots and each tenant's own (see the top of this file).
class TenantPathPolicy {
 public:
  // INVALID_ARGUMENT for a relative root, or for a tenant root that is not
  // under any global root of its kind (naming the tenant, its tokens file
  // line and the global flag).
  static absl::StatusOr<TenantPathPolicy> Create(
      const PathRoots& global,
      const std::map<std::string, TenantRoots>& tenants);

  // The policy of `tenant`'s jobs: its own roots where it has them, the
  // global ones for the other kinds (and for tenants without a line).
  const PathPolicy& For(const std::string& tenant) const;
  absl::Status Check(const std::string& tenant, const v1::JobSpec& spec) const {
    return For(tenant).Check(spec);
  }

  // False when no tenant and no global flag restricts any path.
  bool restricts_anything() const;

 private:
  explicit TenantPathPolicy(PathPolicy global) : global_(std::move(global)) {}

  PathPolicy global_;
  std::map<std::string, PathPolicy> tenants_;
};

}  // namespace lethe

#endif  // LETHE_LIBS_AUTH_PATH_POLICY_H_
