// One unlearning run, described by a JobSpec: the one path from a spec to an
// unlearned model. `lethe unlearn` calls it with one rank; each rank of a
// job's attempt (services/worker) calls it with the attempt's group.
//
//   v1::JobSpec spec = JobSpecWithDefaults(...);
//   RETURN_IF_ERROR(ValidateJobSpec(spec));
//   ASSIGN_OR_RETURN(JobRunResult result,
//                    RunJobSpec(spec, {.rank = 0, .world_size = 1}, {}));
//
// It loads the tokenizer, prompt template, the forget split (and the retain
// split and alternate answers when the method needs them), tokenised to
// spec.max_length, and the model (onto context.device); rank 0 computes the
// reference log-prob cache (<output_dir>/reference_log_probs.json, reused
// when it was computed for the same examples by the same reference model)
// and the other ranks wait for it; then it runs the method
// (libs/unlearn/unlearning_run.h) with checkpoints in
// <output_dir>/checkpoints, resuming from the newest one only when it was
// written by the same run (run_identity.h: model, tokenizer and data
// hashes, method, coefficients, schedule; anything else is
// FAILED_PRECONDITION naming the field that differs). With
// spec.evaluation it evaluates every evaluation.every_epochs epochs and at
// the end (sharded across the ranks; the end's is skipped when the last
// epoch's already measured the final model). Rank 0 writes the model and
// its tokenizer to <output_dir>/model, TOFU_EVAL.json and TOFU_SUMMARY.json
// to <output_dir>/eval, and <output_dir>/unlearning_log.json (the method,
// the spec and every step of the run; written at every checkpoint and at
// the end, and a resumed run keeps the steps the earlier log holds up to
// its checkpoint). With spec.lora, adapters are attached to the loaded model
// and only they train (checkpoints hold them and their optimizer state); the
// reference of KL terms is the base with adapters off; rank 0 writes the
// adapter to <output_dir>/adapter (PEFT's format) and the merged model to
// <output_dir>/model. spec.memory.activation_checkpointing recomputes each
// decoder layer in the backward pass.
//
// The spec should have passed ValidateJobSpec; fields left at zero take
// JobSpecWithDefaults' values (a job stored before a field existed runs
// with its default). What is read from disk is checked again and errors
// name the file. Every rank must call RunJobSpec with the same spec.
#ifndef LETHE_LIBS_RUN_JOB_RUN_H_
#define LETHE_LIBS_RUN_JOB_RUN_H_

#include <torch/types.h>

#include <functional>
#include <map>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "lethe/v1/job.pb.h"
#include "libs/dist/collective_group.h"
#include "libs/model/llama_model.h"
#include "libs/unlearn/trainer.h"
#include "nlohmann/json.hpp"

namespace lethe {

// Where this rank runs.
struct RunContext {
  int rank = 0;
  int world_size = 1;
  // The ranks' process group; required when world_size > 1, else ignored.
  CollectiveGroup* group = nullptr;
  at::Device device = at::kCPU;
  // The attempt's generation (lethe.v1.Attempt.generation), > 0 for a job's
  // attempt: rank 0 claims output_dir with it before writing anything and
  // checks it before every checkpoint and before saving the model
  // (libs/files/generation_fence.h), so a superseded attempt stops with
  // FAILED_PRECONDITION instead of writing over its successor. 0 (a local
  // `lethe unlearn`): no fence.
  int64_t generation = 0;
};

// One optimizer step as seen by this rank.
struct RunStep {
  StepRecord record;
  double allreduce_seconds = 0;  // Gradient all-reduce wait left after the
                                 // backward pass (the exposed part), plus
                                 // OFMU's inner all-reduces.
  // Computing the reference log-prob cache before the first step (rank 0,
  // first step of this call only; 0 otherwise).
  double reference_cache_seconds = 0;
};

struct RunCallbacks {
  // After every optimizer step, on every rank. An error stops the run and
  // is returned (e.g. CANCELLED when the coordinator asked to stop).
  std::function<absl::Status(const RunStep&)> on_step;
  // After each periodic evaluation, on every rank, with its summary's
  // numeric entries (forget_quality, model_utility, ...); `epoch` 1-based.
  std::function<absl::Status(int epoch,
                             const std::map<std::string, double>& summary)>
      on_evaluation;
  // Lines for people about the run's phases (rank 0 only).
  std::function<void(const std::string& line)> log;
};

struct JobRunResult {
  TrainingSummary training;
  // The last evaluation's numeric summary; empty without spec.evaluation.
  std::map<std::string, double> evaluation;
  std::string model_dir;  // Written by rank 0; empty on other ranks.
};

absl::StatusOr<JobRunResult> RunJobSpec(const v1::JobSpec& spec,
                                        const RunContext& context,
                                        const RunCallbacks& callbacks);

// Where a run's outputs go under spec.output_dir.
std::string ModelOutputDir(const v1::JobSpec& spec);
std::string CheckpointDir(const v1::JobSpec& spec);
// A LoRA run's adapter, in PEFT's format (its merged model is in
// ModelOutputDir).
std::string AdapterOutputDir(const v1::JobSpec& spec);
std::string EvalOutputDir(const v1::JobSpec& spec);

// One step of a training log (unlearning_log.json, training_log.json):
// step, epoch, loss, learning_rate, grad_norm, tokens, seconds and the
// loss components.
nlohmann::json StepRecordJson(const StepRecord& step);

// Writes `model` (Hugging Face layout) and copies of the tokenizer file it
// was trained with (tokenizer.json or tokenizer.model, under its own name)
// and of the tokenizer_config.json beside it, when there is one.
absl::Status SaveModelWithTokenizer(LlamaForCausalLM& model,
                                    const std::string& tokenizer_path,
                                    const std::string& output_dir);

}  // namespace lethe

#endif  // LETHE_LIBS_RUN_JOB_RUN_H_
