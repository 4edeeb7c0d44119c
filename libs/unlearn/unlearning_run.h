// One unlearning run in one process (data-parallel runs give each rank its
// TrainingOptions.rank/world_size and a gradient all-reduce hook): builds what
// the method needs (the reference log-prob cache, a frozen reference copy for
// KL terms), draws one seeded retain micro-batch per forget micro-batch, and
// drives RunTraining (warm-up then decay, clipping, accumulation) over epochs
// of the forget set.
//
//   UnlearningData data{.forget = forget, .retain = retain, .pad_id = eos};
//   UnlearningOptions options{.method = UnlearningMethod::kNpoRt,
//                             .params = DefaultObjectiveParams(kNpoRt)};
//   ASSIGN_OR_RETURN(TrainingSummary summary,
//                    RunUnlearning(model, data, options));
//
// The model's parameters at the start are the reference. To resume an
// interrupted run (options.training.checkpoint), call again with the model
// as it was before unlearning: the reference is taken from it, then
// RunTraining restores the checkpoint's weights and optimizer state. Retain
// micro-batches are a pure function of (seed, epoch, micro-batch, rank,
// world size) and OFMU's penalty weight of the step, so the resumed run
// ends with the weights of an uninterrupted one.
//
// REGLU (libs/unlearn/reglu.h) needs LoRA adapters on the model
// (FAILED_PRECONDITION otherwise). Before training, resumed or not, RILA
// initialises them and changes the adapted base weights (W0 - s B0 A0;
// every rank alike, features shared through hooks.averager, which a
// data-parallel REGLU run must set); the checkpoint's adapters then replace
// RILA's on resume. After training the model is unfolded (UnfoldRila): the
// original base, up to one rounding per adapted weight, with rank-2r
// adapters [B, -B0] [A; A0] that reproduce the unlearned model, so
// SaveLoraAdapter writes a PEFT adapter for the original base and
// MergeLora gives the unlearned model. Note that during training the
// adapters switched off do NOT give the original model (REGLU has no
// reference term).
//
// PGA (libs/unlearn/pga.h) trains on PgaPairs(data): an epoch is one pass
// over the pairs; probes are refit every params.pga_refit_every_epochs
// epochs (averaged over ranks through hooks.averager) and saved in the
// checkpoint directory for an exact resume. The projection it exports with
// the model is the caller's (ExportPgaProjection).
#ifndef LETHE_LIBS_UNLEARN_UNLEARNING_RUN_H_
#define LETHE_LIBS_UNLEARN_UNLEARNING_RUN_H_

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "libs/data/qa_example.h"
#include "libs/data/tofu_dataset.h"
#include "libs/model/llama_model.h"
#include "libs/unlearn/objective.h"
#include "libs/unlearn/trainer.h"

namespace lethe {

struct UnlearningData {
  std::vector<QaExample> forget;
  std::vector<QaExample> retain;
  // The forget questions with a second answer (IdkDPO: a refusal; LLMU: a
  // random retain answer), parallel to `forget`; empty unless needed.
  std::vector<QaExample> alternate;
  // PGA's clean examples, sequences the model never saw (TOFU's holdout
  // split): forget[i] is paired with holdout[i] (PgaPairs); empty unless
  // needed.
  std::vector<QaExample> holdout;
  int pad_id = 0;
};

// PGA's pairs (memorised, clean): forget[i] with holdout[i] for i below
// min(|forget|, |holdout|), in order; forget examples past the holdout
// set's size are not used by PGA.
std::pair<std::vector<QaExample>, std::vector<QaExample>> PgaPairs(
    const UnlearningData& data);

struct UnlearningOptions {
  UnlearningMethod method = UnlearningMethod::kNpo;
  ObjectiveParams params;
  TrainingOptions training;
  int reference_batch_size = 16;
  // The frozen reference copy for KL terms in bfloat16: half the memory,
  // fast on CPUs with AMX and on GPUs.
  bool bf16_reference = false;
  // When set: the reference log-prob cache is read from this file if it
  // matches the forget examples (and reference_identity), else computed and
  // written there.
  std::string reference_cache_path;
  // Names the reference model in the cache (ReferenceLogProbCache); a cache
  // file of another reference is FAILED_PRECONDITION. Empty: not checked.
  std::string reference_identity;
  // > 0: padding-free micro-batches (MakeObjective's pack_row_length): the
  // forget, alternate and retain sequences of a micro-batch run in one
  // forward pass, packed into rows of at most this many positions. Losses
  // equal the padded ones up to rounding. 0: padded (default). Not used by
  // OFMU and REGLU, whose objectives keep padded passes.
  int64_t pack_row_length = 0;
};

struct UnlearningHooks {
  TrainingHooks training;
  // OFMU's inner all-reduce and REGLU's RILA features; empty: one process.
  TensorAverager averager;
};

absl::StatusOr<TrainingSummary> RunUnlearning(
    LlamaForCausalLM& model, const UnlearningData& data,
    const UnlearningOptions& options, const UnlearningHooks& hooks = {});

// A frozen copy of `model` (no gradients, eval mode) with its parameters in
// `dtype` (kFloat, kBFloat16, ...), for KL terms.
absl::StatusOr<std::shared_ptr<LlamaForCausalLM>> FrozenCopy(
    LlamaForCausalLM& model, at::ScalarType dtype);

// IdkDPO's preferred answers: each forget record's question with one of
// Lethe's refusal sentences, chosen by a seeded hash of its index.
std::vector<TofuRecord> RefusalAlternates(const std::vector<TofuRecord>& forget,
                                          uint64_t seed);

// LLMU's random answers: each forget question with the answer of a retain
// record chosen by a seeded hash of its index.
std::vector<TofuRecord> RandomAnswerAlternates(
    const std::vector<TofuRecord>& forget,
    const std::vector<TofuRecord>& retain, uint64_t seed);

}  // namespace lethe

#endif  // LETHE_LIBS_UNLEARN_UNLEARNING_RUN_H_
