// Unlearning objectives: the loss an unlearning step minimises, built from a
// forget batch, a retain batch and cached reference values. Definitions
// follow ../shared/DESIGN.md ("Methods"), the NPO paper and open-unlearning;
// every coefficient is in ObjectiveParams.
//
//   ASSIGN_OR_RETURN(std::unique_ptr<UnlearningObjective> objective,
//                    MakeObjective(UnlearningMethod::kNpoRt,
//                                  DefaultObjectiveParams(kNpoRt), nullptr));
//   ObjectiveNeeds needs = objective->needs();  // what the batch must carry
//   ASSIGN_OR_RETURN(MicroBatchLoss loss, objective->Loss(model, batch));
//
// Sequence log-probabilities are summed over answer tokens (no length
// normalisation) except in SimNPO. Closed forms are exposed for tests and for
// anyone checking the maths: NpoLoss, SimNpoLoss, DpoLoss, RetainKl (IHL's
// InvertedHingeLoss is in libs/loss/sequence_loss.h).
//
// IHL = gamma * InvertedHingeLoss(forget) + alpha * TokenMeanNll(retain): the
// hinge is averaged over every answer token of the micro-batch (as ReGLU's
// code, which flattens the batch's answer positions), not per sequence;
// gamma = alpha = 1 by default (ReGLU: forget_loss + retain_loss). Like GA's
// token mean, the average is per micro-batch and rank; gradients are then
// averaged over micro-batches and ranks as for every method.
//
// REGLU's data terms are gamma * forget + alpha * TokenMeanNll(retain), the
// forget term IHL (as above) or -TokenMeanNll(forget) (reglu_forget_loss);
// its ROL term needs the retain subspaces of its RILA initialisation, so
// MakeObjective refuses REGLU and MakeRegluObjective (libs/unlearn/reglu.h)
// assembles the whole loss from MakeRegluDataObjective and ROL.
//
// Differences from open-unlearning's trainers, on purpose:
//  - Lethe's NPO has no retain term; open-unlearning's "NPO" trainer adds
//    alpha * retain NLL, which is Lethe's NPO_RT.
//  - KL(reference || model) on retain data averages over answer tokens;
//    open-unlearning averages over every position, prompt and padding too.
#ifndef LETHE_LIBS_UNLEARN_OBJECTIVE_H_
#define LETHE_LIBS_UNLEARN_OBJECTIVE_H_

#include <torch/types.h>

#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "libs/data/qa_batch.h"
#include "libs/model/llama_model.h"
#include "libs/unlearn/objective_params.h"
#include "libs/unlearn/trainer.h"

namespace lethe {

// Everything one micro-batch of an unlearning step can use. Only the parts
// named by the objective's ObjectiveNeeds must be set.
struct UnlearningBatch {
  QaBatch forget;
  at::Tensor forget_reference_log_probs;     // [B] summed, fp64.
  std::optional<QaBatch> alternate;          // Same questions, other answers.
  at::Tensor alternate_reference_log_probs;  // [B] summed, fp64.
  std::optional<QaBatch> retain;
  int64_t step = 0;            // 0-based optimizer step (OFMU's rho).
  double learning_rate = 0.0;  // Scheduled rate of this step.
};

// Replaces a list of tensors by their average over data-parallel ranks; the
// identity in single-process runs.
using TensorAverager = std::function<absl::Status(std::vector<at::Tensor>&)>;

class UnlearningObjective {
 public:
  virtual ~UnlearningObjective() = default;
  virtual ObjectiveNeeds needs() const = 0;
  // The loss to minimise for this micro-batch, with named components
  // ("forget_loss", "retain_loss", "npo_weight_mean", ...). May update the
  // model's parameters in place before returning (OFMU's inner loop).
  virtual absl::StatusOr<MicroBatchLoss> Loss(LlamaForCausalLM& model,
                                              const UnlearningBatch& batch) = 0;
};

// `reference` is the frozen pre-unlearning model, required when
// needs().reference_model (KL retain terms) and ignored otherwise.
// `averager` averages OFMU's inner gradients across ranks (may be empty).
// `loss_chunk_tokens` > 0: answer log-probs and NLLs (not IHL's hinge nor
// the KL terms, which need full distributions) are computed from the final
// hidden states that many answer tokens at a time
// (libs/loss/chunked_log_probs.h), equal up to rounding; 0: from the full
// logits, as before.
// `pack_row_length` > 0: padding-free batches. The batch parts whose terms
// are answer log-probs or NLLs (forget, except under IHL's hinge;
// IdkDPO's and LLMU's alternates; an NLL retain term) run together in one
// forward pass over rows of at most that many positions, each holding
// several whole sequences with positions restarting at 0 and attention
// kept within each sequence (libs/data/packed_batch.h), and the output layer
// runs on answer positions only (libs/loss/packed_log_probs.h). Losses and
// gradients equal the padded computation's up to rounding (the order of
// summation). KL and hinge terms, and OFMU, keep padded passes. 0: off.
absl::StatusOr<std::unique_ptr<UnlearningObjective>> MakeObjective(
    UnlearningMethod method, const ObjectiveParams& params,
    std::shared_ptr<LlamaForCausalLM> reference,
    TensorAverager averager = nullptr, int64_t loss_chunk_tokens = 0,
    int64_t pack_row_length = 0);

// REGLU's forget and retain terms without ROL (see the top of this file);
// for MakeRegluObjective.
absl::StatusOr<std::unique_ptr<UnlearningObjective>> MakeRegluDataObjective(
    const ObjectiveParams& params, int64_t loss_chunk_tokens = 0,
    int64_t pack_row_length = 0);

// (2/beta) * mean(log(1 + exp(beta * (log_probs - reference_log_probs)))).
// Its gradient with respect to log_probs[i] is W_i / B with
// W = 2 * sigmoid(beta * (log_probs - reference_log_probs)).
at::Tensor NpoLoss(const at::Tensor& log_probs,
                   const at::Tensor& reference_log_probs, double beta);

// -(2/beta) * mean(log sigmoid(-beta * (log_probs / lengths) - beta *
// delta)), i.e. open-unlearning's -(2/beta) logsigmoid(beta * (nll/|y| -
// delta)).
at::Tensor SimNpoLoss(const at::Tensor& log_probs, const at::Tensor& lengths,
                      double beta, double delta);

// -(2/beta) * mean(log sigmoid(beta * ((win - win_ref) - (lose - lose_ref)))).
at::Tensor DpoLoss(const at::Tensor& win_log_probs,
                   const at::Tensor& win_reference_log_probs,
                   const at::Tensor& lose_log_probs,
                   const at::Tensor& lose_reference_log_probs, double beta);

// Mean over answer-token positions (label != kIgnoreIndex, shifted as in
// TokenNll) of KL(reference || model) of the next-token distributions.
at::Tensor RetainKl(const at::Tensor& logits,
                    const at::Tensor& reference_logits,
                    const at::Tensor& labels);

}  // namespace lethe

#endif  // LETHE_LIBS_UNLEARN_OBJECTIVE_H_
