// PGA (Probe-Geometry Alignment, arXiv 2605.01699; DESIGN.md "Methods",
// PGA): the training-time loss that aligns memorised and clean sequences'
// last-token hidden states along the memorisation probe's direction, and the
// inference-time projection that removes the probe subspace from
// standardised activations. RunUnlearning trains with PgaObjective for
// UnlearningMethod::kPga, jobs write the projection next to the unlearned
// model (ExportPgaProjection), and `lethe eval`/`generate` install it
// (InstallSavedActivationProjection).
//
//   // memorised[i] (a forget sequence) is paired with clean[i] (one the
//   // model never saw: TOFU's holdout), as MeasureMemorizationSignature.
//   ASSIGN_OR_RETURN(std::unique_ptr<PgaObjective> pga,
//                    PgaObjective::Create(model, memorised, clean, pad_id,
//                                         PgaParams{}));
//   RunTraining(model, memorised.size(), options, pga->LossFn());
//
//   ASSIGN_OR_RETURN(ActivationProjection projection,
//                    FitActivationProjection(mem_states, clean_states,
//                                            {4}, /*rank=*/1));
//   RETURN_IF_ERROR(SaveActivationProjection(projection, model_dir));
//
// Training loss of a micro-batch of pairs B, depths D (PgaParams::depths):
//   align_weight * mean_{i in B, d in D} ((h^mem_{i,d} - h^clean_{i,d}) .
//   w_d)^2
//   + ce_weight * mean_{i in B} CE(clean_i)
// h_{i,d}: the hidden state at depth d (HiddenStatesByDepth's index) of the
// sequence's last real token, with gradients (through LoRA adapters);
// w_d = normalise(coef_d / scale_d): the probe's coefficients in the
// StandardScaler's space divided by the scaler's scale, i.e. ProbeDirection
// (memorization_probe.h), a unit vector in the raw activation space. So
// (h^mem - h^clean) . w_d = (z^mem - z^clean) . coef_d / ||coef_d / scale_d||
// with z = (h - mean_d) / scale_d: the standardised difference along the
// probe's coefficients; the mean cancels in the difference (DESIGN.md and
// the paper's code take the dot product on raw states with this w_d).
// CE(clean_i): token-mean NLL over clean_i's label tokens (labels !=
// kIgnoreIndex), averaged per sequence then over sequences (the paper's
// per-sequence causal-LM loss; its sequences are raw text with every token
// a label; TOFU pairs from TokenizeQa take the answer tokens only).
// The probes are fitted (FitPgaProbes) on the last-token states of ALL pairs
// (memorised label 1, clean label 0) of the current model, in eval mode
// without gradients, at the first micro-batch of epochs 0, K, 2K, ...
// (K = refit_every_epochs; the paper's refit before epochs 1, 26, 51, ...
// counted from 1).
//
// Inference-time projection at each chosen depth d:
//   x -> unstandardise((I - U_d U_d^T) standardise(x))
//      = x - scale_d * (U_d U_d^T ((x - mean_d) / scale_d)),
// mean_d, scale_d the StandardScaler of the pooled memorised and clean
// states; U_d [hidden, k] orthonormal in the standardised space: column 0
// the probe's coefficients normalised (rank 1), column t > 0 the direction
// of a probe refitted on the standardised states with U's first t columns
// projected out (ProbeDirection of that probe, made orthogonal to them and
// normalised): "k directions refit adversarially" (INLP-style). Fewer than
// k columns when a refit finds no direction left.
#ifndef LETHE_LIBS_UNLEARN_PGA_H_
#define LETHE_LIBS_UNLEARN_PGA_H_

#include <torch/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "libs/data/qa_example.h"
#include "libs/eval/memorization_probe.h"
#include "libs/model/llama_model.h"
#include "libs/unlearn/trainer.h"

namespace lethe {

// Defaults from the paper (DESIGN.md; MLDU2's PGA notebooks). The paper's
// LoRA r 16 / alpha 32 and Adam lr 1e-4 are the caller's LoRA and trainer
// settings.
struct PgaParams {
  double align_weight = 1.0;    // lambda_align.
  double ce_weight = 1.0;       // lambda_CE.
  int refit_every_epochs = 25;  // K.
  // Depths (HiddenStatesByDepth's index, 0..num_hidden_layers). Empty: 1..L,
  // every depth past the embeddings (the paper's ALIGN_LAYERS).
  std::vector<int> depths;
  ProbeOptions probe;         // C = 1, as the paper's probe.
  int state_batch_size = 32;  // Sequences per pass when refitting probes.
  // Data-parallel runs: the refitted directions are averaged over ranks, so
  // every rank aligns against the same w_d, bit for bit (each rank fits the
  // same probes from the same weights; the average removes any rounding
  // difference). Empty: one process.
  std::function<absl::Status(std::vector<at::Tensor>&)> averager;
  // Set (the run's checkpoint directory): after each refit the directions
  // are written to <probe_dir>/pga-probes-epoch-<E>.safetensors (E the
  // epoch that starts the K-epoch block), when write_probes; a run that
  // starts past step 0 (resumed from a checkpoint) reads its block's file
  // instead of refitting on the restored weights, so it ends with the
  // weights of an uninterrupted run. A missing file is refit (logged).
  std::string probe_dir;
  bool write_probes = true;
};

// The per-depth probes PGA aligns against.
struct PgaProbes {
  std::vector<int> depths;
  std::vector<LogisticProbe> probes;   // One per depth.
  std::vector<at::Tensor> directions;  // w_d: ProbeDirection, fp64 [hidden].
};

// `depths` resolved against `config` (empty -> 1..L), checked to lie in
// 0..num_hidden_layers, without repeats. INVALID_ARGUMENT otherwise.
absl::StatusOr<std::vector<int>> ResolvePgaDepths(
    const std::vector<int>& depths, int64_t num_hidden_layers);

// Probes from paired last-token states by depth (as LastTokenHiddenStates
// returns them: memorised[d], clean[d] [pairs, hidden]), at `depths`.
// INVALID_ARGUMENT for mismatched depths, shapes or an out-of-range depth.
absl::StatusOr<PgaProbes> FitPgaProbes(const std::vector<at::Tensor>& memorised,
                                       const std::vector<at::Tensor>& clean,
                                       const std::vector<int>& depths,
                                       const ProbeOptions& options = {});

// The same, from the model's current states of the pairs (eval mode, no
// gradients; the model's mode is restored).
absl::StatusOr<PgaProbes> FitPgaProbesFromModel(
    LlamaForCausalLM& model, const std::vector<QaExample>& memorised,
    const std::vector<QaExample>& clean, int pad_id,
    const std::vector<int>& depths, const ProbeOptions& options = {},
    int batch_size = 32);

// The loss above for the pairs (memorised[i], clean[i]) given, with
// components "align" and "ce" (unweighted) and tokens = clean label tokens.
// One forward pass over both halves (right-padded with pad_id); computed in
// the states' dtype, at least fp32. INVALID_ARGUMENT for mismatched or empty
// inputs, a clean example without label tokens, probes of another width.
absl::StatusOr<MicroBatchLoss> PgaLoss(
    LlamaForCausalLM& model, const std::vector<const QaExample*>& memorised,
    const std::vector<const QaExample*>& clean, const PgaProbes& probes,
    const PgaParams& params, int pad_id);

// PGA's training objective over fixed pairs, refitting its probes on
// schedule (see the top of this file).
class PgaObjective {
 public:
  // Checks the inputs (same number of pairs, at least 1; non-empty
  // examples; clean examples with label tokens; depths in range; weights
  // finite and >= 0; refit_every_epochs >= 1). The model must outlive this.
  static absl::StatusOr<std::unique_ptr<PgaObjective>> Create(
      LlamaForCausalLM& model, std::vector<QaExample> memorised,
      std::vector<QaExample> clean, int pad_id, PgaParams params);

  // The loss of pairs `indices` (positions into the pairs) at `step`,
  // refitting the probes first when step.epoch starts a new K-epoch block.
  absl::StatusOr<MicroBatchLoss> Loss(const std::vector<int64_t>& indices,
                                      const StepContext& step);
  // Loss as the trainer's callback; valid while this object lives.
  MicroBatchLossFn LossFn();
  // Refits the probes from the model now (averaging the directions over
  // ranks and writing them as PgaParams says), labelled `epoch`.
  absl::Status Refit(int epoch);

  const PgaProbes& probes() const { return probes_; }
  int fitted_epoch() const { return fitted_epoch_; }  // -1: none yet.
  int64_t pairs() const { return static_cast<int64_t>(memorised_.size()); }

 private:
  PgaObjective(LlamaForCausalLM& model, std::vector<QaExample> memorised,
               std::vector<QaExample> clean, int pad_id, PgaParams params)
      : model_(model),
        memorised_(std::move(memorised)),
        clean_(std::move(clean)),
        pad_id_(pad_id),
        params_(std::move(params)) {}

  LlamaForCausalLM& model_;
  std::vector<QaExample> memorised_;
  std::vector<QaExample> clean_;
  int pad_id_;
  PgaParams params_;
  PgaProbes probes_;
  int fitted_epoch_ = -1;
};

// The probe directions PgaObjective wrote for `epoch` in `dir`
// (PgaParams::probe_dir): depths and directions only (PgaLoss's inputs; the
// probes themselves are not kept). NOT_FOUND without the file; DATA_LOSS
// for a malformed one.
absl::StatusOr<PgaProbes> LoadPgaDirections(const std::string& dir, int epoch);

// The inference-time projection (see the top of this file); fp64, CPU.
struct ActivationProjection {
  std::vector<int> depths;
  std::vector<at::Tensor> mean;   // [hidden] per depth.
  std::vector<at::Tensor> scale;  // [hidden] per depth (1 where constant).
  std::vector<at::Tensor> basis;  // U_d [hidden, k_d], orthonormal columns.
};

// From paired last-token states by depth (as FitPgaProbes) at `depths`, at
// most `rank` directions per depth. INVALID_ARGUMENT for rank < 1 or > hidden,
// and as FitPgaProbes.
absl::StatusOr<ActivationProjection> FitActivationProjection(
    const std::vector<at::Tensor>& memorised,
    const std::vector<at::Tensor>& clean, const std::vector<int>& depths,
    int64_t rank, const ProbeOptions& options = {});

// x - scale * (U U^T ((x - mean) / scale)) over the last dimension of
// `hidden` ([..., hidden]), computed in hidden's dtype promoted to at least
// fp32, returned in hidden's dtype.
at::Tensor ProjectOutSubspace(const at::Tensor& hidden, const at::Tensor& mean,
                              const at::Tensor& scale, const at::Tensor& basis);

// The projection of depth `depth` applied to `hidden`; `hidden` itself for a
// depth the projection does not edit: the HiddenStateEdit (llama_model.h)
// InstallActivationProjection sets.
at::Tensor ApplyActivationProjection(const ActivationProjection& projection,
                                     int64_t depth, const at::Tensor& hidden);

// Files next to a model: <dir>/pga_projection.json ({"format":
// "lethe-pga-projection", "version": 1, "hidden_size", "depths": [...],
// "ranks": [...], "tensors": "pga_projection.safetensors"}) and
// <dir>/pga_projection.safetensors (F64 "depth.<d>.mean" [hidden],
// "depth.<d>.scale" [hidden], "depth.<d>.basis" [hidden, k_d]).
inline constexpr char kPgaProjectionConfig[] = "pga_projection.json";
inline constexpr char kPgaProjectionTensors[] = "pga_projection.safetensors";

absl::Status SaveActivationProjection(const ActivationProjection& projection,
                                      const std::string& dir);
// NOT_FOUND when the files are absent; INVALID_ARGUMENT / DATA_LOSS when
// they disagree with each other or are malformed.
absl::StatusOr<ActivationProjection> LoadActivationProjection(
    const std::string& dir);

// Installs `projection` on the model (LlamaForCausalLM::SetHiddenStateEdit):
// from now on every forward pass projects the states at its depths
// (ApplyActivationProjection; the tensors are moved to the model's device
// once). INVALID_ARGUMENT for a depth past the model's or another hidden
// size.
absl::Status InstallActivationProjection(LlamaForCausalLM& model,
                                         ActivationProjection projection);

// The projection saved next to a model (LoadActivationProjection(model_dir)),
// installed: true; false, and nothing changed, when the directory has none.
absl::StatusOr<bool> InstallSavedActivationProjection(
    LlamaForCausalLM& model, const std::string& model_dir);

// Fits the projection (rank `rank`, at `depths` resolved as PgaParams'
// depths) from the model's current last-token states of the pairs
// (memorised[i], clean[i]) and saves it in `dir` (SaveActivationProjection).
absl::Status ExportPgaProjection(LlamaForCausalLM& model,
                                 const std::vector<QaExample>& memorised,
                                 const std::vector<QaExample>& clean,
                                 int pad_id, const std::vector<int>& depths,
                                 int64_t rank, const std::string& dir,
                                 const ProbeOptions& options = {},
                                 int batch_size = 32);

}  // namespace lethe

#endif  // LETHE_LIBS_UNLEARN_PGA_H_
