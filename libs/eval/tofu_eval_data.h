// The TOFU evaluation sets of one forget split, read from open-unlearning's
// TOFU dataset files (libs/data/tofu_dataset.h) and checked for what the
// evaluation's metrics need (tofu_evaluator.h), so that a missing file or
// field fails before any model runs.
//
//   ASSIGN_OR_RETURN(TofuEvalData data,
//                    ReadTofuEvalData(data_dir, "forget10"));
#ifndef LETHE_LIBS_EVAL_TOFU_EVAL_DATA_H_
#define LETHE_LIBS_EVAL_TOFU_EVAL_DATA_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "libs/data/tofu_dataset.h"

namespace lethe {

// The TOFU evaluation sets of one forget split.
struct TofuEvalData {
  std::string forget_split;              // e.g. "forget10".
  std::vector<TofuRecord> forget;        // <forget_split>_perturbed
  std::vector<TofuRecord> holdout;       // holdout<NN>
  std::vector<TofuRecord> retain;        // retain_perturbed
  std::vector<TofuRecord> real_authors;  // real_authors_perturbed
  std::vector<TofuRecord> world_facts;   // world_facts_perturbed
};

// Reads the sets of `forget_split` ("forget" + digits; its holdout set is
// "holdout" + the same digits) from `data_dir`. NOT_FOUND naming the missing
// file; INVALID_ARGUMENT naming the file and record that lacks what a metric
// needs (a paraphrased answer, perturbed answers), or an empty set.
absl::StatusOr<TofuEvalData> ReadTofuEvalData(const std::string& data_dir,
                                              const std::string& forget_split);

}  // namespace lethe

#endif  // LETHE_LIBS_EVAL_TOFU_EVAL_DATA_H_
