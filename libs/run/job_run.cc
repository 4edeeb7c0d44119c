#include "libs/run/job_run.h"

#include <google/protobuf/util/json_util.h>
#include <torch/utils.h>

#include <filesystem>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "libs/data/qa_example.h"
#include "libs/data/tofu_dataset.h"
#include "libs/dist/collective_group.h"
#include "libs/dist/overlapped_reducer.h"
#include "libs/dist/zero_training.h"
#include "libs/eval/tofu_evaluator.h"
#include "libs/eval/tofu_summary.h"
#include "libs/files/file_io.h"
#include "libs/files/generation_fence.h"
#include "libs/jobs/job_spec.h"
#include "libs/model/hf_checkpoint.h"
#include "libs/model/lora.h"
#include "libs/run/run_identity.h"
#include "libs/status/status_macros.h"
#include "libs/status/torch_status.h"
#include "libs/tokenizer/tokenizer.h"
#include "libs/unlearn/msa.h"
#include "libs/unlearn/pga.h"
#include "libs/unlearn/reference_cache.h"
#include "libs/unlearn/unlearning_run.h"
#include "nlohmann/json.hpp"

namespace lethe {
namespace {

// Everything the ranks load before training.
struct RunInputs {
  std::unique_ptr<Tokenizer> tokenizer;
  PromptTemplate prompt_template;
  std::shared_ptr<LlamaForCausalLM> model;
  UnlearningData data;
};

absl::StatusOr<RunInputs> LoadInputs(const v1::JobSpec& spec,
                                     UnlearningMethod method,
                                     const ObjectiveParams& params) {
  RunInputs inputs;
  ASSIGN_OR_RETURN(inputs.tokenizer, Tokenizer::Load(spec.tokenizer_path()));
  ASSIGN_OR_RETURN(
      inputs.prompt_template,
      PromptTemplateForModel(spec.prompt_template(), spec.model_dir(),
                             {.system_prompt = spec.system_prompt(),
                              .date_string = spec.date_string()}));
  const ObjectiveNeeds needs = MethodNeeds(method, params);
  ASSIGN_OR_RETURN(std::vector<TofuRecord> forget,
                   ReadTofuSplit(spec.data_dir(), spec.forget_split()));
  std::vector<TofuRecord> retain;
  if (needs.retain_batch || method == UnlearningMethod::kLlmu) {
    ASSIGN_OR_RETURN(retain,
                     ReadTofuSplit(spec.data_dir(), spec.retain_split()));
  }
  std::vector<TofuRecord> alternate;
  if (method == UnlearningMethod::kIdkDpo) {
    alternate = RefusalAlternates(forget, spec.optimizer().seed());
  } else if (method == UnlearningMethod::kLlmu) {
    alternate = RandomAnswerAlternates(forget, retain, spec.optimizer().seed());
  }
  auto tokenize = [&](const std::vector<TofuRecord>& records) {
    return TokenizeRecords(*inputs.tokenizer, inputs.prompt_template, records,
                           spec.max_length());
  };
  inputs.data.pad_id = inputs.tokenizer->eos_id();
  ASSIGN_OR_RETURN(inputs.data.forget, tokenize(forget));
  if (method == UnlearningMethod::kPga) {
    ASSIGN_OR_RETURN(std::vector<TofuRecord> holdout,
                     ReadTofuSplit(spec.data_dir(), spec.holdout_split()));
    ASSIGN_OR_RETURN(inputs.data.holdout, tokenize(holdout));
  }
  if (needs.retain_batch) {
    ASSIGN_OR_RETURN(inputs.data.retain, tokenize(retain));
  }
  ASSIGN_OR_RETURN(inputs.data.alternate, tokenize(alternate));
  ASSIGN_OR_RETURN(const WeightsDtype weights_dtype,
                   ParseWeightsDtype(spec.weights_dtype()));
  ASSIGN_OR_RETURN(
      inputs.model,
      LoadLlamaCheckpoint(spec.model_dir(), {.weights_dtype = weights_dtype}));
  // A token id past the embedding is a crash on CPU and a device assert on
  // CUDA: refuse the pair before anything runs.
  const int64_t model_vocab = inputs.model->config().vocab_size;
  if (inputs.tokenizer->vocab_size() > model_vocab) {
    return absl::FailedPreconditionError(absl::StrCat(
        spec.tokenizer_path(), " has ", inputs.tokenizer->vocab_size(),
        " tokens but ", spec.model_dir(), "/config.json's vocab_size is ",
        model_vocab, ": the tokenizer is not this model's"));
  }
  return inputs;
}

// Rank 0 computes (or finds) the reference log-probs the method needs and
// writes them where RunUnlearning reads them, so the other ranks load them
// instead of computing them again.
absl::Status PrepareReferenceCache(LlamaForCausalLM& model,
                                   const UnlearningData& data,
                                   const std::string& path,
                                   const std::string& reference,
                                   int64_t loss_chunk_tokens) {
  auto ensure = [&](const std::vector<QaExample>& examples,
                    const std::string& file) -> absl::Status {
    // A cache of other examples or another reference model is replaced.
    if (ReferenceLogProbCache::Load(file, examples, reference).ok()) {
      return absl::OkStatus();
    }
    ASSIGN_OR_RETURN(
        ReferenceLogProbCache cache,
        ReferenceLogProbCache::Compute(model, examples, data.pad_id, 16,
                                       reference, loss_chunk_tokens));
    return cache.Save(file);
  };
  RETURN_IF_ERROR(ensure(data.forget, path));
  if (!data.alternate.empty()) {
    RETURN_IF_ERROR(ensure(data.alternate, path + ".alternate"));
  }
  return absl::OkStatus();
}

// Evaluates the model on the spec's TOFU splits and returns the summary's
// numeric entries (forget_quality, model_utility, ...). With a group, every
// rank must call it at the same point: each evaluates its share and the
// shares are gathered over the group, so all ranks return the same summary;
// rank 0 alone writes the evaluation files.
absl::StatusOr<std::map<std::string, double>> Evaluate(const v1::JobSpec& spec,
                                                       RunInputs& inputs,
                                                       CollectiveGroup* group) {
  ASSIGN_OR_RETURN(TofuEvalData data,
                   ReadTofuEvalData(spec.data_dir(), spec.forget_split()));
  std::optional<nlohmann::ordered_json> retain_log;
  if (!spec.evaluation().retain_logs_path().empty()) {
    ASSIGN_OR_RETURN(retain_log,
                     ReadTofuEvalLog(spec.evaluation().retain_logs_path()));
  }
  TofuEvalOptions options;
  if (group != nullptr) {
    options.sharding = {.rank = group->rank(),
                        .world_size = group->world_size(),
                        .all_gather = [group](const std::string& mine) {
                          return group->AllGatherBytes(mine);
                        }};
  }
  TofuEvaluator evaluator(*inputs.model, *inputs.tokenizer,
                          inputs.prompt_template, std::move(options));
  ASSIGN_OR_RETURN(
      TofuEvalResult result,
      evaluator.Evaluate(data, retain_log ? &*retain_log : nullptr));
  inputs.model->train();
  if (group == nullptr || group->rank() == 0) {
    RETURN_IF_ERROR(WriteTofuEvalFiles(result, EvalOutputDir(spec)));
  }
  std::map<std::string, double> summary;
  for (const auto& [name, value] : result.summary.items()) {
    if (value.is_number()) summary[name] = value.get<double>();
  }
  return summary;
}

TrainingOptions TrainingFromSpec(const v1::JobSpec& spec,
                                 const RunContext& context) {
  TrainingOptions training;
  training.learning_rate = spec.optimizer().learning_rate();
  training.weight_decay = spec.optimizer().weight_decay();
  training.warmup_epochs = spec.optimizer().warmup_epochs();
  training.max_grad_norm = spec.optimizer().max_grad_norm();
  training.seed = spec.optimizer().seed();
  training.num_epochs = spec.num_epochs();
  training.max_steps = spec.max_steps();
  training.per_device_batch_size = spec.per_device_batch_size();
  training.gradient_accumulation_steps = spec.gradient_accumulation_steps();
  training.threads = spec.threads_per_worker();
  training.bf16_autocast = spec.precision() == v1::BF16_AUTOCAST;
  training.loss_chunk_tokens = spec.memory().loss_chunk_tokens();
  // One rank has nothing to shard: ZeRO only with a group.
  training.zero_stage = context.world_size > 1 ? spec.memory().zero_stage() : 0;
  training.rank = context.rank;
  training.world_size = context.world_size;
  training.checkpoint.dir = CheckpointDir(spec);
  training.checkpoint.every_steps = spec.checkpoint().every_steps();
  training.checkpoint.keep_last =
      spec.checkpoint().keep_last() > 0 ? spec.checkpoint().keep_last() : 2;
  training.checkpoint.write = context.rank == 0;
  return training;
}

// <output_dir>/unlearning_log.json: what ran and every step of this call.
// Written at every checkpoint and at the end, so that the log a resumed run
// finds covers the steps up to its checkpoint.
absl::Status WriteRunLog(const v1::JobSpec& spec, UnlearningMethod method,
                         const TrainingSummary& summary) {
  std::string spec_json;
  google::protobuf::util::JsonPrintOptions print;
  print.preserve_proto_field_names = true;
  if (!google::protobuf::util::MessageToJsonString(spec, &spec_json, print)
           .ok()) {
    return absl::InternalError("cannot print the job spec as JSON");
  }
  const std::string path = spec.output_dir() + "/unlearning_log.json";
  nlohmann::json steps = nlohmann::json::array();
  if (summary.resumed_from_step > 0) {
    // Keep the steps the interrupted run logged up to the checkpoint.
    const absl::StatusOr<std::string> previous = ReadFileToString(path);
    const nlohmann::json old =
        previous.ok() ? nlohmann::json::parse(*previous, nullptr, false)
                      : nlohmann::json();
    if (old.is_object() && old.contains("steps") && old["steps"].is_array()) {
      for (const nlohmann::json& step : old["steps"]) {
        if (step.value("step", int64_t{0}) <= summary.resumed_from_step) {
          steps.push_back(step);
        }
      }
    }
  }
  for (const StepRecord& step : summary.steps) {
    steps.push_back(StepRecordJson(step));
  }
  const nlohmann::json log = {{"method", UnlearningMethodName(method)},
                              {"spec", nlohmann::json::parse(spec_json)},
                              {"total_steps", summary.total_steps},
                              {"resumed_from_step", summary.resumed_from_step},
                              {"seconds", summary.seconds},
                              {"steps", steps}};
  return WriteFileAtomically(path, log.dump(1) + "\n");
}

}  // namespace

nlohmann::json StepRecordJson(const StepRecord& step) {
  nlohmann::json json = {
      {"step", step.step},           {"epoch", step.epoch},
      {"loss", step.loss},           {"learning_rate", step.learning_rate},
      {"grad_norm", step.grad_norm}, {"tokens", step.tokens},
      {"seconds", step.seconds}};
  if (!step.components.empty()) json["components"] = step.components;
  return json;
}

std::string ModelOutputDir(const v1::JobSpec& spec) {
  return spec.output_dir() + "/model";
}
std::string AdapterOutputDir(const v1::JobSpec& spec) {
  return spec.output_dir() + "/adapter";
}

std::string CheckpointDir(const v1::JobSpec& spec) {
  return spec.output_dir() + "/checkpoints";
}
std::string EvalOutputDir(const v1::JobSpec& spec) {
  return spec.output_dir() + "/eval";
}

absl::Status SaveModelWithTokenizer(LlamaForCausalLM& model,
                                    const std::string& tokenizer_path,
                                    const std::string& output_dir) {
  RETURN_IF_ERROR(SaveLlamaCheckpoint(model, output_dir, {}));
  // The tokenizer file under its own name, and the tokenizer_config.json
  // beside it (special tokens, chat template) when there is one.
  const std::filesystem::path source(tokenizer_path);
  std::vector<std::filesystem::path> files = {source};
  const std::filesystem::path config =
      source.parent_path() / "tokenizer_config.json";
  std::error_code error;
  if (std::filesystem::exists(config, error)) files.push_back(config);
  for (const std::filesystem::path& file : files) {
    std::filesystem::copy_file(
        file, std::filesystem::path(output_dir) / file.filename(),
        std::filesystem::copy_options::overwrite_existing, error);
    if (error) {
      return absl::PermissionDeniedError(absl::StrCat("copying ", file.string(),
                                                      " to ", output_dir, ": ",
                                                      error.message()));
    }
  }
  return absl::OkStatus();
}

namespace {

// Rank 0 hashes the run's inputs and the other ranks take its identity: a
// large model is read once per attempt, not once per rank. Rank 0 sends its
// error instead when it has one, so that no rank waits in the gather.
absl::StatusOr<RunIdentity> SharedRunIdentity(const v1::JobSpec& spec, int rank,
                                              CollectiveGroup* group) {
  if (group == nullptr) return ComputeRunIdentity(spec);
  std::string mine;
  if (rank == 0) {
    const absl::StatusOr<RunIdentity> computed = ComputeRunIdentity(spec);
    nlohmann::json message;
    if (computed.ok()) {
      message = {{"fields", computed->fields},
                 {"reference", computed->reference}};
    } else {
      message = {{"error", computed.status().ToString()}};
    }
    mine = message.dump();
  }
  ASSIGN_OR_RETURN(const std::vector<std::string> all,
                   group->AllGatherBytes(mine));
  const nlohmann::json message =
      nlohmann::json::parse(all.at(0), nullptr, /*allow_exceptions=*/false);
  if (!message.is_object()) {
    return absl::InternalError("rank 0 sent no run identity");
  }
  if (message.contains("error")) {
    return absl::FailedPreconditionError(
        absl::StrCat("rank 0 could not compute the run identity: ",
                     message["error"].get<std::string>()));
  }
  RunIdentity identity;
  identity.fields =
      message.at("fields").get<std::map<std::string, std::string>>();
  identity.reference = message.at("reference").get<std::string>();
  return identity;
}

// The trainer's gradient averaging for data-parallel ranks: all-reduces
// overlapped with the backward pass (libs/dist/overlapped_reducer.h). Adds
// the wait that remains after the backward pass (the exposed all-reduce
// time) to *exposed_seconds.
class TimedOverlappedReducer : public BackwardGradientReducer {
 public:
  TimedOverlappedReducer(std::unique_ptr<OverlappedReducer> reducer,
                         double* exposed_seconds)
      : reducer_(std::move(reducer)), exposed_seconds_(exposed_seconds) {}

  absl::Status PrepareForBackward(const at::Tensor& loss) override {
    return reducer_->PrepareForBackward(loss);
  }
  absl::Status FinishBackward() override {
    const absl::Time start = absl::Now();
    const absl::Status status = reducer_->FinishBackward();
    *exposed_seconds_ += absl::ToDoubleSeconds(absl::Now() - start);
    return status;
  }

 private:
  std::unique_ptr<OverlappedReducer> reducer_;
  double* exposed_seconds_;
};

// The spec's LoRA settings as PEFT's (alpha 0: PEFT's default, 8).
LoraConfig LoraConfigFromSpec(const v1::LoraSpec& lora) {
  return {.rank = lora.rank(),
          .alpha = lora.alpha() > 0 ? lora.alpha() : 8,
          .dropout = lora.dropout(),
          .target_modules = {lora.target_modules().begin(),
                             lora.target_modules().end()}};
}

// Activation checkpointing and LoRA adapters, as the spec asks. The
// adapters' initialisation is drawn from the spec's seed, so every rank
// starts with the same ones; everything else is frozen.
absl::Status PrepareModelForTraining(const v1::JobSpec& spec,
                                     LlamaForCausalLM& model) {
  model.SetActivationCheckpointing(spec.memory().activation_checkpointing());
  if (spec.lora().rank() == 0) return absl::OkStatus();
  torch::manual_seed(spec.optimizer().seed());
  RETURN_IF_ERROR(AttachLora(model, LoraConfigFromSpec(spec.lora())));
  FreezeAllButLora(model);
  return absl::OkStatus();
}

// MSA (libs/unlearn/msa.h): fine-tunes copies of theta_0
// (spec.base_model_dir, loaded like the model) and combines them into
// `model`. The periodic evaluation is dropped (its epochs are fine-tunes of
// theta_0, not of the model), and the stages' checkpoints leave alpha and
// beta out of their identity: the fine-tunes do not depend on them, so a
// job rerun with other weights reuses them.
absl::StatusOr<TrainingSummary> RunMsa(
    const v1::JobSpec& spec, const RunContext& context,
    const ObjectiveParams& params, TrainingOptions training,
    TrainingHooks hooks, LlamaForCausalLM& model, const UnlearningData& data) {
  hooks.on_epoch_end = nullptr;
  training.checkpoint.run_identity.erase("alpha");
  training.checkpoint.run_identity.erase("beta");
  ASSIGN_OR_RETURN(const WeightsDtype weights_dtype,
                   ParseWeightsDtype(spec.weights_dtype()));
  ASSIGN_OR_RETURN(std::shared_ptr<LlamaForCausalLM> base,
                   LoadLlamaCheckpoint(spec.base_model_dir(),
                                       {.weights_dtype = weights_dtype}));
  RETURN_IF_ERROR(
      CallTorch(absl::StrCat("moving theta_0 to ", context.device.str()),
                [&] { base->to(context.device); }));
  return RunModelStateArithmetic(model, data,
                                 {.base = base,
                                  .alpha = params.alpha,
                                  .beta = params.beta,
                                  .training = std::move(training)},
                                 hooks);
}

}  // namespace

absl::StatusOr<JobRunResult> RunJobSpec(const v1::JobSpec& given,
                                        const RunContext& context,
                                        const RunCallbacks& callbacks) {
  // A job stored before a field existed runs with that field's default.
  const v1::JobSpec spec = JobSpecWithDefaults(given);
  const int rank = context.rank;
  const int world_size = std::max(1, context.world_size);
  CollectiveGroup* group = world_size > 1 ? context.group : nullptr;
  if (world_size > 1 && group == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a run of ", world_size, " ranks needs their process group"));
  }
  auto log = [&](const std::string& line) {
    if (rank == 0 && callbacks.log) callbacks.log(line);
  };
  ASSIGN_OR_RETURN(const UnlearningMethod method,
                   MethodFromSpec(spec.method()));
  const ObjectiveParams params =
      ObjectiveParamsFromSpec(method, spec.method_params());
  RETURN_IF_ERROR(ValidateObjectiveParams(method, params));
  if (spec.threads_per_worker() > 0) {
    at::set_num_threads(spec.threads_per_worker());
  }

  const int64_t generation = context.generation;
  if (rank == 0 && generation > 0) {
    RETURN_IF_ERROR(ClaimGeneration(spec.output_dir(), generation));
  }
  auto still_current = [&]() -> absl::Status {
    return generation > 0 ? CheckGeneration(spec.output_dir(), generation)
                          : absl::OkStatus();
  };
  ASSIGN_OR_RETURN(const RunIdentity identity,
                   SharedRunIdentity(spec, rank, group));
  ASSIGN_OR_RETURN(RunInputs inputs, LoadInputs(spec, method, params));
  RETURN_IF_ERROR(
      CallTorch(absl::StrCat("moving the model to ", context.device.str()),
                [&] { inputs.model->to(context.device); }));
  RETURN_IF_ERROR(PrepareModelForTraining(spec, *inputs.model));
  if (method == UnlearningMethod::kPga &&
      params.pga_projection_rank > inputs.model->config().hidden_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        "spec.method_params.pga_projection_rank ", params.pga_projection_rank,
        " exceeds the model's hidden size ",
        inputs.model->config().hidden_size));
  }
  log(absl::StrFormat(
      "unlearning %s/%s from %s (%.2fM parameters) with %s: %d forget, %d "
      "%s examples, %d rank%s",
      spec.data_dir(), spec.forget_split(), spec.model_dir(),
      inputs.model->NumParameters() / 1e6, UnlearningMethodName(method),
      inputs.data.forget.size(),
      method == UnlearningMethod::kPga ? inputs.data.holdout.size()
                                       : inputs.data.retain.size(),
      method == UnlearningMethod::kPga ? "holdout" : "retain", world_size,
      world_size == 1 ? "" : "s"));
  std::error_code error;
  std::filesystem::create_directories(CheckpointDir(spec), error);
  if (error) {
    return absl::PermissionDeniedError(
        absl::StrCat("creating ", CheckpointDir(spec), ": ", error.message()));
  }
  const std::string reference_cache_path =
      spec.output_dir() + "/reference_log_probs.json";
  const ObjectiveNeeds needs = MethodNeeds(method, params);
  double reference_cache_seconds = 0;
  if (needs.reference_log_probs) {
    if (rank == 0) {
      const absl::Time start = absl::Now();
      RETURN_IF_ERROR(PrepareReferenceCache(
          *inputs.model, inputs.data, reference_cache_path, identity.reference,
          spec.memory().loss_chunk_tokens()));
      reference_cache_seconds = absl::ToDoubleSeconds(absl::Now() - start);
    }
    if (group != nullptr) RETURN_IF_ERROR(group->Barrier());
  }

  UnlearningOptions options{.method = method,
                            .params = params,
                            .training = TrainingFromSpec(spec, context),
                            .bf16_reference = spec.bf16_reference(),
                            .reference_cache_path = needs.reference_log_probs
                                                        ? reference_cache_path
                                                        : "",
                            .reference_identity = identity.reference};
  options.pack_row_length = spec.memory().pack_row_length();
  options.training.checkpoint.run_identity = identity.fields;
  options.training.checkpoint.may_commit = still_current;
  UnlearningHooks hooks;
  // In the current step: the gradient all-reduce's wait after the backward
  // pass, and OFMU's inner all-reduces.
  double allreduce_seconds = 0;
  if (group != nullptr) {
    // Blocking all-reduces: OFMU's inner averages and the trainer's check
    // that the ranks resumed from the same step.
    hooks.training.reduce_gradients = [&](std::vector<at::Tensor>& tensors) {
      const absl::Time start = absl::Now();
      const absl::Status status = group->AllReduceMean(tensors);
      allreduce_seconds += absl::ToDoubleSeconds(absl::Now() - start);
      return status;
    };
    hooks.averager = hooks.training.reduce_gradients;
    // ZeRO, when the spec asks for it (training.zero_stage > 0): AdamW's
    // state sharded over the ranks (libs/dist/zero_training.h).
    hooks.training.sharded_optimizer = ZeroOptimizerFactory(*group);
    // The step's gradients: overlapped with the last backward pass.
    hooks.training.overlapped_reducer =
        [&](const std::vector<at::Tensor>& parameters)
        -> absl::StatusOr<std::unique_ptr<BackwardGradientReducer>> {
      ASSIGN_OR_RETURN(std::unique_ptr<OverlappedReducer> reducer,
                       OverlappedReducer::Create(*group, parameters));
      return std::make_unique<TimedOverlappedReducer>(std::move(reducer),
                                                      &allreduce_seconds);
    };
  }
  int64_t last_step = 0;
  // This call's steps so far, for the log written at each checkpoint.
  TrainingSummary so_far;
  hooks.training.on_step = [&](const StepRecord& step) -> absl::Status {
    last_step = step.step;
    if (so_far.steps.empty()) so_far.resumed_from_step = step.step - 1;
    so_far.steps.push_back(step);
    so_far.total_steps = step.total_steps;
    so_far.seconds += step.seconds;
    if (rank == 0 && !step.checkpoint.empty()) {
      RETURN_IF_ERROR(WriteRunLog(spec, method, so_far));
    }
    RunStep run_step{
        .record = step,
        .allreduce_seconds = std::exchange(allreduce_seconds, 0),
        .reference_cache_seconds = std::exchange(reference_cache_seconds, 0)};
    return callbacks.on_step ? callbacks.on_step(run_step) : absl::OkStatus();
  };
  JobRunResult result;
  int64_t evaluated_step = -1;  // The step result.evaluation measured.
  const int every_epochs = spec.evaluation().every_epochs();
  if (spec.has_evaluation() && every_epochs > 0) {
    hooks.training.on_epoch_end = [&](int epoch) -> absl::Status {
      if ((epoch + 1) % every_epochs != 0) return absl::OkStatus();
      ASSIGN_OR_RETURN(result.evaluation, Evaluate(spec, inputs, group));
      evaluated_step = last_step;
      return callbacks.on_evaluation
                 ? callbacks.on_evaluation(epoch + 1, result.evaluation)
                 : absl::OkStatus();
    };
  }

  if (method == UnlearningMethod::kMsa) {
    ASSIGN_OR_RETURN(result.training,
                     RunMsa(spec, context, params, options.training,
                            hooks.training, *inputs.model, inputs.data));
  } else {
    ASSIGN_OR_RETURN(result.training,
                     RunUnlearning(*inputs.model, inputs.data, options, hooks));
  }
  // Every rank takes part in the final evaluation, unless the last epoch's
  // periodic one already measured this model (every rank saw the same steps,
  // so all of them skip it alike).
  if (spec.has_evaluation() && evaluated_step != result.training.total_steps) {
    ASSIGN_OR_RETURN(result.evaluation, Evaluate(spec, inputs, group));
  }
  if (rank != 0) return result;
  result.model_dir = ModelOutputDir(spec);
  RETURN_IF_ERROR(still_current());
  if (HasLora(*inputs.model)) {
    RETURN_IF_ERROR(SaveLoraAdapter(*inputs.model, AdapterOutputDir(spec),
                                    {.base_model = spec.model_dir()}));
    RETURN_IF_ERROR(MergeLora(*inputs.model));
  }
  RETURN_IF_ERROR(SaveModelWithTokenizer(*inputs.model, spec.tokenizer_path(),
                                         result.model_dir));
  if (method == UnlearningMethod::kPga && params.pga_projection_rank > 0) {
    // Fitted on the unlearned (merged) model's states: what remains of the
    // signature is what the projection removes at inference.
    auto [memorised, clean] = PgaPairs(inputs.data);
    RETURN_IF_ERROR(ExportPgaProjection(
        *inputs.model, memorised, clean, inputs.data.pad_id, params.pga_depths,
        params.pga_projection_rank, result.model_dir));
    log(absl::StrCat("wrote PGA's rank-", params.pga_projection_rank,
                     " activation projection to ", result.model_dir, "/",
                     kPgaProjectionConfig));
  }
  RETURN_IF_ERROR(WriteRunLog(spec, method, result.training));
  return result;
}

}  // namespace lethe
