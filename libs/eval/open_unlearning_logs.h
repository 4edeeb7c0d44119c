// Test-only access to open-unlearning's published TOFU evaluation logs in
// the workspace's shared reference data
// ($LETHE_SHARED_DIR/data/tofu/eval_logs/open-unlearning), used as test
// vectors. The data is not part of the project: tests skip when it is
// absent, and fail instead when LETHE_REQUIRE_SHARED is set (CI sets it: its
// machines always have the data, so a skip there would hide a lost check).
//
//   const std::string dir = OpenUnlearningLogDir();
//   if (dir.empty()) {
//     LETHE_SKIP_WITHOUT_SHARED_DATA(kOpenUnlearningLogsMissing);
//   }
//   for (const std::string& path : EvalLogPaths(dir)) { ... }
#ifndef LETHE_LIBS_EVAL_OPEN_UNLEARNING_LOGS_H_
#define LETHE_LIBS_EVAL_OPEN_UNLEARNING_LOGS_H_

#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace lethe {

// True when the environment variable LETHE_REQUIRE_SHARED is set to anything
// but "" or "0": tests that need the shared reference data then fail without
// it instead of skipping.
bool SharedDataRequired();

// In a test body (or SetUp): skips the test with `message`, or fails it with
// `message` when SharedDataRequired(). Returns from the function either way.
#define LETHE_SKIP_WITHOUT_SHARED_DATA(message)                     \
  do {                                                              \
    if (::lethe::SharedDataRequired()) {                            \
      GTEST_FAIL() << (message) << "; LETHE_REQUIRE_SHARED is set"; \
    }                                                               \
    GTEST_SKIP() << (message) << "; skipping the reference check";  \
  } while (0)

inline constexpr char kOpenUnlearningLogsMissing[] =
    "open-unlearning's TOFU logs not found (LETHE_SHARED_DIR names the folder "
    "holding data/tofu/eval_logs/open-unlearning)";

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

// open-unlearning's TOFU_SUMMARY.json for `eval_log` (and `retain_log`, which
// may be null), recomputed from the per-question values in the plainest way,
// as a check on SummarizeTofuEval that shares no code with it: means as
// sums in log order, each mia_* AUC by counting (forget, holdout) pairs,
// model_utility as n / sum(1 / x) of its nine utility values, privleak
// against the retain log's mia_min_k agg_value (0.5 without one). Null
// entries and fields are skipped. forget_quality (a KS test) is left out.
// Fails the calling test (and leaves the metric out) when a value is missing.
nlohmann::json PlainTofuSummary(const nlohmann::ordered_json& eval_log,
                                const nlohmann::ordered_json* retain_log);

// Expects `actual` to have exactly `expected`'s keys, each number within
// `relative_tolerance` of the expected one.
void ExpectSummaryNear(const nlohmann::json& actual,
                       const nlohmann::json& expected,
                       double relative_tolerance = 1e-12);

}  // namespace lethe

#endif  // LETHE_LIBS_EVAL_OPEN_UNLEARNING_LOGS_H_
