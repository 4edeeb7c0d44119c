// Model State Arithmetic's training stages (MSA, arXiv 2506.20941;
// DESIGN.md "Methods"): from theta_0, a checkpoint that never saw the forget
// data,
//   theta_1 = theta_0 fine-tuned on the forget examples,
//   theta_2 = theta_0 fine-tuned on a retain subsample of the forget set's
//             size (MsaRetainSubsample),
// then the model to unlearn (theta_D) becomes
//   theta_D - alpha (theta_1 - theta_0) + beta (theta_2 - theta_0)
// (model_arithmetic.h: per parameter in fp32, rounded once).
//
//   MsaOptions options{.base = theta_0, .alpha = 1, .beta = 1,
//                      .training = fine_tune_options};
//   ASSIGN_OR_RETURN(TrainingSummary summary,
//                    RunModelStateArithmetic(theta_d, data, options));
//
// Both fine-tunes are supervised (token-mean answer NLL, FinetuneOnQa) with
// options.training (data parallel like any run: each rank passes its
// rank/world size and the gradient all-reduce hook). With
// options.training.checkpoint.dir set, each stage checkpoints in its own
// directory below it (msa-forget, msa-retain) with the run identity plus the
// stage's name, so an interrupted job resumes inside the stage it was in and
// a finished stage is restored from its last checkpoint instead of being
// trained again. theta_0 itself is never changed (each stage trains a copy);
// memory holds four models at the arithmetic (theta_D, theta_0, theta_1,
// theta_2). The returned summary lists the steps of both stages in order,
// each step's components carrying "msa_stage" (1 or 2).
#ifndef LETHE_LIBS_UNLEARN_MSA_H_
#define LETHE_LIBS_UNLEARN_MSA_H_

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "libs/data/qa_example.h"
#include "libs/model/llama_model.h"
#include "libs/unlearn/trainer.h"
#include "libs/unlearn/unlearning_run.h"

namespace lethe {

struct MsaOptions {
  // theta_0, with the same parameter names and shapes as the model.
  std::shared_ptr<LlamaForCausalLM> base;
  double alpha = 1;  // Weight of the forget vector theta_1 - theta_0.
  double beta = 1;   // Weight of the retain vector theta_2 - theta_0.
  TrainingOptions training;
};

// The retain examples theta_2 is tuned on: min(|forget|, |retain|) of them,
// the first of EpochPermutation(|retain|, seed, 0), in that order.
std::vector<QaExample> MsaRetainSubsample(const std::vector<QaExample>& retain,
                                          size_t forget_size, uint64_t seed);

absl::StatusOr<TrainingSummary> RunModelStateArithmetic(
    LlamaForCausalLM& model, const UnlearningData& data,
    const MsaOptions& options, const TrainingHooks& hooks = {});

}  // namespace lethe

#endif  // LETHE_LIBS_UNLEARN_MSA_H_
