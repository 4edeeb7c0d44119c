// Test-only access to open-unlearning's published TOFU evaluation logs in
// the workspace's shared reference data
// ($LETHE_SHARED_DIR/data/tofu/eval_logs/open-unlearning), used as test
// vectors. The data is not part of the project: tests skip when it is
// absent.
//
//   const std::string dir = OpenUnlearningLogDir();
//   if (dir.empty()) GTEST_SKIP() << kOpenUnlearningLogsMissing;
//   for (const std::string& path : EvalLogPaths(dir)) { ... }
#ifndef LETHE_LIBS_EVAL_OPEN_UNLEARNING_LOGS_H_
#define LETHE_LIBS_EVAL_OPEN_UNLEARNING_LOGS_H_

#include <string>
#include <vector>

#include "nlohmann/json.hpp"

namespace lethe {

inline constexpr char kOpenUnlearningLogsMissing[] =
    "open-unlearning's TOFU logs not found (LETHE_SHARED_DIR names the folder "
    "holding data/tofu/eval_logs/open-unlearning); skipping the reference "
    "check";

// The logs folder, or "" when LETHE_SHARED_DIR is unset or lacks it.
std::string OpenUnlearningLogDir();

// Every TOFU_EVAL.json below `dir`, sorted.
std::vector<std::string> EvalLogPaths(const std::string& dir);

// An unlearning target's eval folder (TOFU_EVAL.json and TOFU_SUMMARY.json)
// with the folder of the retain model's log it is compared against.
struct ForgetRetainPair {
  std::string eval_dir;
  std::string retain_dir;
};

// The pairs whose retain log is present: each full model's evals_forgetNN
// against the same model's retain(100-NN).
std::vector<ForgetRetainPair> ForgetRetainPairs(const std::string& dir);

// Parses a log keeping its key order; fails the calling test (and returns
// null) when it cannot.
nlohmann::ordered_json ReadLogOrFail(const std::string& path);

}  // namespace lethe

#endif  // LETHE_LIBS_EVAL_OPEN_UNLEARNING_LOGS_H_
