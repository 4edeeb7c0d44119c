// OFMU (arXiv 2509.22483), a penalty-based bi-level unlearning objective,
// and the second-order building blocks it needs.
//
// With L_f the forget NLL and L_r the retain NLL (token means),
//   Phi(theta) = L_f - beta * cos(grad L_f, grad L_r).
// Each micro-batch first takes T ascent steps theta += eta * grad Phi (the
// inner maximisation), then returns the outer loss
//   L_r + rho_k * ||grad Phi||^2,  rho_k = rho_0 * growth^k (k: the step),
// whose gradient grad L_r + 2 rho_k H_Phi grad Phi the trainer applies.
//
// grad Phi = grad L_f - beta * (H_f a + H_r b), where a and b are the
// derivatives of the cosine with respect to the two gradients, so it needs
// Hessian-vector products: exact by double backward through LibTorch's
// autograd, or (ofmu_first_order) central finite differences of gradients,
// an approximation whose memory is that of first-order training.
//
// Data parallelism: gradients are averaged across ranks (TensorAverager)
// before the cosine and its derivatives are formed, so every rank uses the
// same a, b and grad Phi; each rank's local Hessian-vector products then
// average to the global ones through the trainer's gradient all-reduce.
#ifndef LETHE_LIBS_UNLEARN_OFMU_H_
#define LETHE_LIBS_UNLEARN_OFMU_H_

#include <torch/types.h>

#include <functional>
#include <vector>

#include "absl/status/statusor.h"
#include "libs/unlearn/objective.h"

namespace lethe {

// Recomputes a scalar loss at the parameters' current values.
using ScalarLossFn = std::function<at::Tensor()>;

// Parameters of `model` that require gradients, in registration order.
std::vector<at::Tensor> TrainableParameters(torch::nn::Module& model);

// H v, H the Hessian of `loss` at the current parameters, by double backward.
std::vector<at::Tensor> HessianVectorProduct(
    const ScalarLossFn& loss, const std::vector<at::Tensor>& parameters,
    const std::vector<at::Tensor>& vector);

// (grad L(theta + e v) - grad L(theta - e v)) / (2 e), e = epsilon / |v|;
// leaves the parameters as it found them.
std::vector<at::Tensor> FiniteDifferenceHvp(
    const ScalarLossFn& loss, const std::vector<at::Tensor>& parameters,
    const std::vector<at::Tensor>& vector, double epsilon = 1e-3);

struct PhiGradient {
  // This rank's grad Phi; graph-connected when requested, so that the outer
  // penalty can be differentiated once more.
  std::vector<at::Tensor> local;
  std::vector<at::Tensor> averaged;  // Across ranks, detached.
  double forget_loss = 0;
  double retain_loss = 0;
  double cosine = 0;  // Of the rank-averaged gradients.
};

struct PhiGradientOptions {
  double beta = 0;
  bool first_order = false;
  bool create_graph = false;  // Exact mode only.
  TensorAverager averager;    // Empty: single process.
};

absl::StatusOr<PhiGradient> ComputePhiGradient(
    const ScalarLossFn& forget_loss, const ScalarLossFn& retain_loss,
    const std::vector<at::Tensor>& parameters,
    const PhiGradientOptions& options);

class OfmuObjective : public UnlearningObjective {
 public:
  // loss_chunk_tokens > 0: L_f and L_r from hidden states in chunks
  // (libs/loss/chunked_log_probs.h), whose backward pass is differentiable,
  // so the exact Hessian-vector products work too; that double backward
  // keeps every chunk's logits for the second differentiation, so exact
  // OFMU saves little memory by it (first-order OFMU saves it all).
  OfmuObjective(const ObjectiveParams& params, TensorAverager averager,
                int64_t loss_chunk_tokens = 0);

  ObjectiveNeeds needs() const override;
  absl::StatusOr<MicroBatchLoss> Loss(LlamaForCausalLM& model,
                                      const UnlearningBatch& batch) override;

 private:
  ObjectiveParams params_;
  TensorAverager averager_;
  int64_t loss_chunk_tokens_;
};

}  // namespace lethe

#endif  // LETHE_LIBS_UNLEARN_OFMU_H_
