// Model State Arithmetic (MSA, arXiv 2506.20941; DESIGN.md "Methods"): the
// unlearned model is
//
//   theta = theta_D - alpha (theta_1 - theta_0) + beta (theta_2 - theta_0)
//
// per parameter, where theta_D is the model to unlearn, theta_0 a checkpoint
// that never saw the forget data, theta_1 theta_0 fine-tuned on the forget
// set and theta_2 theta_0 fine-tuned on a retain subsample.
//
//   RETURN_IF_ERROR(ApplyModelStateArithmetic(
//       {.target = theta_d, .base = theta_0, .forget_tuned = theta_1,
//        .retain_tuned = theta_2}, alpha, beta));
//
// The arithmetic runs in fp32 (fp64 for fp64 parameters) one parameter at a
// time and the result is cast back to the target's dtype, so the four models
// may be bf16 and memory-mapped: only one parameter's fp32 temporaries exist
// at once. The four must have the same parameter names and shapes; a
// mismatch is FAILED_PRECONDITION naming the parameter, and then the target
// is left unchanged (everything is checked before anything is written).
#ifndef LETHE_LIBS_UNLEARN_MODEL_ARITHMETIC_H_
#define LETHE_LIBS_UNLEARN_MODEL_ARITHMETIC_H_

#include <torch/nn/module.h>

#include "absl/status/status.h"

namespace lethe {

struct ModelStates {
  torch::nn::Module& target;        // theta_D; overwritten with the result.
  torch::nn::Module& base;          // theta_0.
  torch::nn::Module& forget_tuned;  // theta_1.
  torch::nn::Module& retain_tuned;  // theta_2.
};

// alpha and beta must be finite and >= 0 (INVALID_ARGUMENT otherwise).
absl::Status ApplyModelStateArithmetic(const ModelStates& states, double alpha,
                                       double beta);

}  // namespace lethe

#endif  // LETHE_LIBS_UNLEARN_MODEL_ARITHMETIC_H_
