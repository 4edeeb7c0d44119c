// REGLU (Representation-Guided LoRA Unlearning, arXiv 2604.17396;
// DESIGN.md "Methods"): the RILA initialisation of a model's LoRA adapters
// and the loss with the ROL regulariser. RunUnlearning (unlearning_run.h)
// does all of it for UnlearningMethod::kReglu; the pieces are here.
//
//   // The model carries LoRA adapters (lora.h), the base frozen.
//   ASSIGN_OR_RETURN(std::shared_ptr<const RilaInit> init,
//                    RilaInitialize(model, forget, retain, rila_options));
//   ASSIGN_OR_RETURN(std::unique_ptr<UnlearningObjective> objective,
//                    MakeRegluObjective(params, init));
//   ... train the adapters with `objective` ...
//   RETURN_IF_ERROR(UnfoldRila(model, *init));  // adapters for the original
//                                               // base; see below
//
// RILA, per LoRA-wrapped projection W0 (d_out x d_in, bias b):
//   H = the projection's base outputs W0 x_t + b summed over each sample's
//       real (attention-mask) tokens, prompt and answer, one row per sample,
//       for reglu_samples forget and reglu_samples retain examples (the
//       first of a seeded permutation of each set: RilaSampleIndices);
//   C = H^T H / n + 1e-4 I (uncentred, float64), C_F and C_R;
//   Q = the top-r eigenvectors of (1 - beta_R) C_F - beta_R C_R;
//   B = Q, A = Q^T W0, W0 <- W0 - s B A (s the adapter's scaling), so the
//   model computes what it computed before (up to one rounding of W0);
//   Q_R = the top-k eigenvectors of C_R, kept (frozen) for ROL.
// H is computed exactly as S W0^T + T b from S, the per-sample token sums of
// the projection's input (recorded in one forward pass over every layer with
// the adapters off), in float64. r > d_out (or k > d_out) is cut to d_out:
// the remaining columns of B (rows of A) are zero.
// Eigenvectors come from torch::linalg_eigh, ordered by decreasing
// eigenvalue, each with the sign that makes its largest-magnitude entry
// positive (eigh's sign is arbitrary; this makes it a function of the
// matrix).
//
// Data parallel (options.world_size > 1): the chosen samples are split
// among the ranks by position (rank i takes positions i, i + N, ...); each
// rank writes its rows of S into a zero matrix of all rows and
// options.averager (the job's all-reduce mean) sums them, so every rank
// holds the bit-identical features of all samples, hence the same
// covariances, eigenvectors, adapters and updated base weights (which are
// not in checkpoints under LoRA, so they must agree by construction). This
// is the covariance average the method asks for (C is linear in the rows'
// outer products), moving N x d rows instead of d x d matrices, and the
// result does not depend on the world size beyond rounding.
//
// Resume: RILA is a function of the initial model and the data, so an
// interrupted run calls it again on the model as it was before unlearning
// (restoring the modified base weights, which LoRA checkpoints do not
// hold), then the checkpoint's adapters replace RILA's.
//
// The ROL term is lambda * sum over adapted projections of
// ||B^T Q_R||_F^2, B the adapter's lora_B weight [d_out, r], computed with
// CPU autocast off. MakeRegluObjective adds it to every micro-batch's loss
// (the trainer averages micro-batches and ranks, so it counts once per
// step); its value is the component "rol" (unweighted).
//
// After training, W0 holds W0 - s B0 A0 (B0, A0: RILA's adapters): a PEFT
// adapter of B and A alone would NOT reproduce the model on the original
// base. UnfoldRila turns the model back into "original base + adapter":
// W0 <- W0 + s B0 A0 (the original base up to one rounding) and each
// adapter becomes rank 2r with lora_A = [A; A0], lora_B = [B, -B0] and the
// same scaling (lora_alpha doubled, or times sqrt(2) with rslora), so that
// SaveLoraAdapter writes a PEFT adapter that reproduces the unlearned model
// on the original base, and MergeLora the unlearned model itself.
#ifndef LETHE_LIBS_UNLEARN_REGLU_H_
#define LETHE_LIBS_UNLEARN_REGLU_H_

#include <torch/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "libs/data/qa_example.h"
#include "libs/model/llama_model.h"
#include "libs/unlearn/objective.h"
#include "libs/unlearn/objective_params.h"

namespace lethe {

inline constexpr double kRilaRidge = 1e-4;

struct RilaOptions {
  double beta_r = 0.7;        // ObjectiveParams::reglu_beta_r.
  int64_t retain_rank = 128;  // k of Q_R.
  int64_t samples = 256;      // Per set (fewer when a set is smaller).
  uint64_t seed = 0;          // Chooses the samples.
  int64_t batch_size = 8;     // Examples per forward pass.
  int pad_id = 0;
  int rank = 0;
  int world_size = 1;
  // Averages tensors over the ranks; required when world_size > 1.
  TensorAverager averager;
};

// RILA's result for one adapted projection.
struct RilaLayer {
  std::string path;         // e.g. "model.layers.0.self_attn.q_proj".
  at::Tensor retain_basis;  // Q_R [d_out, k], the adapter's dtype.
  at::Tensor init_a;        // A0 [r, d_in], as set on the adapter.
  at::Tensor init_b;        // B0 [d_out, r], as set on the adapter.
  double scaling = 0;       // s of the adapter.
};

struct RilaInit {
  std::vector<RilaLayer> layers;  // In LoraAdaptedModules order.
};

// The positions of `size` examples RILA measures: the first
// min(count, size) of EpochPermutation(size, seed, 0).
std::vector<int64_t> RilaSampleIndices(int64_t size, int64_t count,
                                       uint64_t seed);

// The eigenvectors of the symmetric matrix `symmetric` (any floating dtype;
// computed in float64) for its `count` largest eigenvalues, as the columns
// of a float64 [n, count] tensor, largest first, signs as above. Requires
// 1 <= count <= n.
at::Tensor TopEigenvectors(const at::Tensor& symmetric, int64_t count);

// C = H^T H / n + ridge I in float64, H [n, d] the per-sample features.
at::Tensor RilaCovariance(const at::Tensor& features,
                          double ridge = kRilaRidge);

// Initialises every adapter of `model` as above and returns Q_R and the
// initial adapters. The model must carry LoRA adapters
// (FAILED_PRECONDITION otherwise); forget and retain must be non-empty
// (INVALID_ARGUMENT). Runs in no-grad mode, adapters swapped out for the
// measurement and put back; on error the model may be partly initialised.
absl::StatusOr<std::shared_ptr<const RilaInit>> RilaInitialize(
    LlamaForCausalLM& model, const std::vector<QaExample>& forget,
    const std::vector<QaExample>& retain, const RilaOptions& options);

// sum over init.layers of ||B^T Q_R||_F^2 for the model's current lora_B
// weights, differentiable, in B's dtype. FAILED_PRECONDITION when a layer
// has no adapter (or one of another shape).
absl::StatusOr<at::Tensor> RetainOrthogonalLoss(LlamaForCausalLM& model,
                                                const RilaInit& init);

// REGLU's loss: MakeRegluDataObjective's gamma * forget + alpha * retain
// NLL, plus params.reglu_rol_weight * RetainOrthogonalLoss.
absl::StatusOr<std::unique_ptr<UnlearningObjective>> MakeRegluObjective(
    const ObjectiveParams& params, std::shared_ptr<const RilaInit> init,
    int64_t loss_chunk_tokens = 0);

// See the top of this file. FAILED_PRECONDITION when the model's adapters
// are not those RILA initialised (paths or shapes).
absl::Status UnfoldRila(LlamaForCausalLM& model, const RilaInit& init);

}  // namespace lethe

#endif  // LETHE_LIBS_UNLEARN_REGLU_H_
