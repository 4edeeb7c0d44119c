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
// - A refusal is PERMISSION_DENIED naming the field and the allowed roots,
//   never the path or whether it exists; the answer is the same for a path
//   that exists and one that does not.
#ifndef LETHE_LIBS_AUTH_PATH_POLICY_H_
#define LETHE_LIBS_AUTH_PATH_POLICY_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "lethe/v1/job.pb.h"

namespace lethe {

struct PathRoots {
  std::vector<std::string> model_roots;
  std::vector<std::string> data_roots;
  std::vector<std::string> output_roots;
};

class PathPolicy {
 public:
  // INVALID_ARGUMENT for a relative or empty root.
  static absl::StatusOr<PathPolicy> Create(const PathRoots& roots);

  absl::Status Check(const v1::JobSpec& spec) const;

  bool restricts_anything() const {
    return !roots_.model_roots.empty() || !roots_.data_roots.empty() ||
           !roots_.output_roots.empty();
  }

 private:
  explicit PathPolicy(PathRoots resolved) : roots_(std::move(resolved)) {}

  PathRoots roots_;  // Resolved.
};

}  // namespace lethe

#endif  // LETHE_LIBS_AUTH_PATH_POLICY_H_
