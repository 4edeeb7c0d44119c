// The unlearning methods, their coefficients and what each needs, without
// LibTorch: the job spec's validation (libs/jobs) and the objectives
// (objective.h) share these definitions. Definitions of the methods follow
// ../shared/DESIGN.md ("Methods").
//
//   ASSIGN_OR_RETURN(UnlearningMethod method, ParseUnlearningMethod("NPO_RT"));
//   ObjectiveParams params = DefaultObjectiveParams(method);
//   params.alpha = 0;  // No retain term.
//   RETURN_IF_ERROR(ValidateObjectiveParams(method, params));
#ifndef LETHE_LIBS_UNLEARN_OBJECTIVE_PARAMS_H_
#define LETHE_LIBS_UNLEARN_OBJECTIVE_PARAMS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace lethe {

enum class UnlearningMethod {
  kGa,
  kGradDiff,
  kNpo,
  kNpoRt,
  kNpoKl,
  kSimNpo,
  kIdkDpo,
  kLlmu,
  kOfmu,
  // Inverted hinge loss on the forget answers (mean over answer tokens of
  // max(0, 1 + p(y_t) - max_{v != y_t} p(v))) times gamma, plus alpha times
  // the retain NLL; ReGLU's "ihl" variant without LoRA/ROL.
  kIhl,
  // Model State Arithmetic (libs/unlearn/msa.h): not a loss but two
  // fine-tunes of a base model and parameter arithmetic; alpha weighs the
  // forget vector, beta the retain vector (both 1 by default, >= 0).
  kMsa,
  // REGLU (libs/unlearn/reglu.h): LoRA adapters initialised by RILA from the
  // forget and retain sets' output-feature covariances; loss gamma * forget
  // term (IHL or -NLL, reglu_forget_loss) + alpha * retain NLL +
  // reglu_rol_weight * ROL. Needs LoRA adapters on the model.
  kReglu,
  // PGA (libs/unlearn/pga.h): pga_align_weight * the squared probe-direction
  // gap between the last-token states of forget[i] and holdout[i] (a clean
  // example the model never saw), plus pga_ce_weight * the clean examples'
  // NLL; probes refit every pga_refit_every_epochs epochs.
  kPga,
};

// Accepts the names of UnlearningMethodName ("GA", "GradDiff", "NPO",
// "NPO_RT", "NPO_KL", "SimNPO", "IdkDPO", "LLMU", "OFMU", "IHL", "MSA",
// "REGLU", "PGA"), any case.
absl::StatusOr<UnlearningMethod> ParseUnlearningMethod(absl::string_view name);
std::string UnlearningMethodName(UnlearningMethod method);

enum class RetainLoss { kNll, kKl };

// REGLU's forget term: the inverted hinge loss (the paper's TOFU setting) or
// gradient ascent (-token-mean NLL, its "GD" variant).
enum class RegluForgetLoss { kIhl, kGd };

// "ihl" or "gd" (JobSpec.method_params.reglu_forget_loss's values).
std::string RegluForgetLossName(RegluForgetLoss loss);

struct ObjectiveParams {
  // NPO, NPO_RT, NPO_KL, IdkDPO: inverse temperature. SimNPO: its beta.
  // OFMU: weight of the cosine term in Phi. MSA: weight of the retain
  // vector theta_2 - theta_0.
  double beta = 0.1;
  // Weight of the retain term (KL term for LLMU; MSA: of the forget vector
  // theta_1 - theta_0, subtracted).
  double alpha = 1.0;
  double gamma = 1.0;  // Weight of the forget term.
  double delta = 0.0;  // SimNPO margin (open-unlearning's delta).
  RetainLoss retain_loss = RetainLoss::kNll;  // GradDiff's retain term.
  double random_answer_weight = 1.0;          // LLMU: fit random answers.
  // OFMU: inner ascent steps on Phi, their step size (0: the scheduled
  // learning rate), the initial penalty rho and its growth per step.
  int ofmu_inner_steps = 1;
  double ofmu_inner_learning_rate = 0.0;
  double ofmu_rho = 0.1;
  double ofmu_rho_growth = 1.01;
  // OFMU: Hessian-vector products by finite differences of gradients
  // instead of double backward (an approximation; first-order memory).
  bool ofmu_first_order = false;
  // REGLU (DESIGN.md "Methods"; defaults are the paper's TOFU settings).
  RegluForgetLoss reglu_forget_loss = RegluForgetLoss::kIhl;
  // beta_R of RILA's Delta = (1 - beta_R) C_F - beta_R C_R, in [0, 1]
  // (0.7 TOFU, 0.5 WMDP).
  double reglu_beta_r = 0.7;
  double reglu_rol_weight = 0.5;    // lambda of the ROL term.
  int64_t reglu_retain_rank = 128;  // k, the retain subspace's dimension.
  // Forget and retain examples (each) whose features RILA measures.
  int64_t reglu_samples = 256;
  // PGA (DESIGN.md "Methods"; defaults are the paper's): lambda_align,
  // lambda_CE, K (probes refit at epochs 0, K, 2K, ...), the depths aligned
  // (HiddenStatesByDepth's index; empty: 1..num_hidden_layers), and the rank
  // of the inference-time projection exported with the model (0: none).
  double pga_align_weight = 1.0;
  double pga_ce_weight = 1.0;
  int pga_refit_every_epochs = 25;
  std::vector<int> pga_depths;
  int64_t pga_projection_rank = 1;
};

// open-unlearning's defaults for the method (NPO beta 0.1; SimNPO beta 4.5,
// gamma 0.125, delta 0; LLMU forget weight 0.5, random-answer and KL 1).
// IHL: gamma = alpha = 1, as ReGLU's code (loss = forget IHL + retain NLL).
// MSA: alpha = beta = 1 (the paper's sweeps use alpha 1-2, beta 1).
// REGLU: gamma = alpha = 1 and the reglu_* fields' defaults (IHL, beta_R 0.7,
// lambda 0.5, k 128, 256 samples). PGA: the pga_* fields' defaults
// (lambda_align = lambda_CE = 1, K 25, every depth, a rank-1 projection).
ObjectiveParams DefaultObjectiveParams(UnlearningMethod method);

// Checks ranges (beta > 0 where it divides, weights >= 0, ...), naming the
// offending field.
absl::Status ValidateObjectiveParams(UnlearningMethod method,
                                     const ObjectiveParams& params);

// What an objective reads from UnlearningBatch.
struct ObjectiveNeeds {
  bool retain_batch = false;
  // The frozen reference's summed answer log-probs of forget (and
  // alternate) examples, from a ReferenceLogProbCache.
  bool reference_log_probs = false;
  // A second answer to each forget question: IdkDPO's refusal, LLMU's
  // random answer.
  bool alternate_answers = false;
  // A frozen copy of the model for KL on retain data.
  bool reference_model = false;
};

ObjectiveNeeds MethodNeeds(UnlearningMethod method,
                           const ObjectiveParams& params);

}  // namespace lethe

#endif  // LETHE_LIBS_UNLEARN_OBJECTIVE_PARAMS_H_
