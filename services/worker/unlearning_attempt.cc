#include "services/worker/unlearning_attempt.h"

#include <torch/cuda.h>
#include <torch/types.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "libs/data/qa_example.h"
#include "libs/data/tofu_dataset.h"
#include "libs/dist/collective_group.h"
#include "libs/eval/tofu_evaluator.h"
#include "libs/eval/tofu_summary.h"
#include "libs/jobs/compute_device.h"
#include "libs/model/hf_checkpoint.h"
#include "libs/model/llama_model.h"
#include "libs/status/status_macros.h"
#include "libs/status/torch_status.h"
#include "libs/tokenizer/tokenizer.h"
#include "libs/unlearn/reference_cache.h"
#include "libs/unlearn/unlearning_run.h"

namespace lethe {
namespace {

constexpr int kMaxLength = 256;

// Everything the ranks load before training.
struct AttemptInputs {
  std::unique_ptr<Tokenizer> tokenizer;
  PromptTemplate prompt_template;
  std::shared_ptr<LlamaForCausalLM> model;
  UnlearningData data;
};

absl::StatusOr<AttemptInputs> LoadInputs(const lethe::v1::JobSpec& spec,
                                         UnlearningMethod method,
                                         const ObjectiveParams& params) {
  AttemptInputs inputs;
  ASSIGN_OR_RETURN(inputs.tokenizer, Tokenizer::Load(spec.tokenizer_path()));
  ASSIGN_OR_RETURN(inputs.prompt_template,
                   PromptTemplateByName(spec.prompt_template()));
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
                           kMaxLength);
  };
  inputs.data.pad_id = inputs.tokenizer->eos_id();
  ASSIGN_OR_RETURN(inputs.data.forget, tokenize(forget));
  if (needs.retain_batch) {
    ASSIGN_OR_RETURN(inputs.data.retain, tokenize(retain));
  }
  ASSIGN_OR_RETURN(inputs.data.alternate, tokenize(alternate));
  ASSIGN_OR_RETURN(inputs.model, LoadLlamaCheckpoint(spec.model_dir()));
  return inputs;
}

// Rank 0 computes (or finds) the reference log-probs the method needs and
// writes them where RunUnlearning reads them, so the other ranks load them
// instead of computing them again.
absl::Status PrepareReferenceCache(LlamaForCausalLM& model,
                                   const UnlearningData& data,
                                   const std::string& path) {
  auto ensure = [&](const std::vector<QaExample>& examples,
                    const std::string& file) -> absl::Status {
    if (ReferenceLogProbCache::Load(file, examples).ok()) {
      return absl::OkStatus();
    }
    ASSIGN_OR_RETURN(
        ReferenceLogProbCache cache,
        ReferenceLogProbCache::Compute(model, examples, data.pad_id));
    return cache.Save(file);
  };
  RETURN_IF_ERROR(ensure(data.forget, path));
  if (!data.alternate.empty()) {
    RETURN_IF_ERROR(ensure(data.alternate, path + ".alternate"));
  }
  return absl::OkStatus();
}

// This process' resident set size, from /proc/self/statm (0 if unreadable).
int64_t ResidentMemoryBytes() {
  std::ifstream statm("/proc/self/statm");
  int64_t size_pages = 0, resident_pages = 0;
  if (!(statm >> size_pages >> resident_pages)) return 0;
  return resident_pages * sysconf(_SC_PAGESIZE);
}

absl::Status SaveModel(LlamaForCausalLM& model,
                       const lethe::v1::JobSpec& spec) {
  const std::string dir = ModelOutputDir(spec);
  RETURN_IF_ERROR(SaveLlamaCheckpoint(model, dir, {}));
  std::error_code error;
  std::filesystem::copy_file(spec.tokenizer_path(), dir + "/tokenizer.model",
                             std::filesystem::copy_options::overwrite_existing,
                             error);
  if (error) {
    return absl::PermissionDeniedError(absl::StrCat(
        "copying ", spec.tokenizer_path(), " to ", dir, ": ", error.message()));
  }
  return absl::OkStatus();
}

// Evaluates the model on the spec's TOFU splits and returns the summary's
// numeric entries (forget_quality, model_utility, ...). With a group, every
// rank must call it at the same point: each evaluates its share and the
// shares are gathered over the group, so all ranks return the same summary;
// rank 0 alone writes the evaluation files.
absl::StatusOr<std::map<std::string, double>> Evaluate(
    const lethe::v1::JobSpec& spec, AttemptInputs& inputs,
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

}  // namespace

absl::StatusOr<UnlearningMethod> MethodFromSpec(lethe::v1::Method method) {
  switch (method) {
    case lethe::v1::GA:
      return UnlearningMethod::kGa;
    case lethe::v1::GRAD_DIFF:
      return UnlearningMethod::kGradDiff;
    case lethe::v1::NPO:
      return UnlearningMethod::kNpo;
    case lethe::v1::NPO_RT:
      return UnlearningMethod::kNpoRt;
    case lethe::v1::NPO_KL:
      return UnlearningMethod::kNpoKl;
    case lethe::v1::SIM_NPO:
      return UnlearningMethod::kSimNpo;
    case lethe::v1::IDK_DPO:
      return UnlearningMethod::kIdkDpo;
    case lethe::v1::LLMU:
      return UnlearningMethod::kLlmu;
    case lethe::v1::OFMU:
      return UnlearningMethod::kOfmu;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("spec.method: unknown method ", method));
  }
}

ObjectiveParams ObjectiveParamsFromSpec(UnlearningMethod method,
                                        const lethe::v1::MethodParams& spec) {
  ObjectiveParams params = DefaultObjectiveParams(method);
  if (spec.beta() != 0) params.beta = spec.beta();
  if (spec.alpha() != 0) params.alpha = spec.alpha();
  if (spec.gamma() != 0) params.gamma = spec.gamma();
  if (spec.delta() != 0) params.delta = spec.delta();
  if (spec.retain_loss() == "kl") params.retain_loss = RetainLoss::kKl;
  if (spec.random_answer_weight() != 0) {
    params.random_answer_weight = spec.random_answer_weight();
  }
  if (spec.ofmu_inner_steps() != 0) {
    params.ofmu_inner_steps = spec.ofmu_inner_steps();
  }
  if (spec.ofmu_inner_learning_rate() != 0) {
    params.ofmu_inner_learning_rate = spec.ofmu_inner_learning_rate();
  }
  if (spec.ofmu_rho() != 0) params.ofmu_rho = spec.ofmu_rho();
  if (spec.ofmu_rho_growth() != 0) {
    params.ofmu_rho_growth = spec.ofmu_rho_growth();
  }
  params.ofmu_first_order = spec.ofmu_first_order();
  return params;
}

std::string ModelOutputDir(const lethe::v1::JobSpec& spec) {
  return spec.output_dir() + "/model";
}
std::string CheckpointDir(const lethe::v1::JobSpec& spec) {
  return spec.output_dir() + "/checkpoints";
}
std::string EvalOutputDir(const lethe::v1::JobSpec& spec) {
  return spec.output_dir() + "/eval";
}

absl::StatusOr<std::string> CheckComputeDevice(const std::string& device) {
  ASSIGN_OR_RETURN(const ComputeDevice parsed, ParseComputeDevice(device));
  if (parsed.kind == lethe::v1::CPU) return parsed.Name();
  if (!torch::cuda::is_available()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "device ", device,
        ": this LibTorch has no CUDA (Debian's libtorch is CPU-only; build "
        "the worker with the CMake mirror against a CUDA LibTorch)"));
  }
  const int64_t count = static_cast<int64_t>(torch::cuda::device_count());
  if (parsed.index >= count) {
    return absl::InvalidArgumentError(
        absl::StrCat("device ", device, ": this machine has ", count,
                     " CUDA device", count == 1 ? "" : "s"));
  }
  return parsed.Name();
}

absl::Status RunUnlearningAttempt(const lethe::v1::Attempt& attempt,
                                  const ProgressReporter& report) {
  const lethe::v1::JobSpec& spec = attempt.spec();
  const int rank = attempt.rank();
  const int world_size = std::max(1, attempt.world_size());
  ASSIGN_OR_RETURN(
      const std::string device_name,
      CheckComputeDevice(attempt.device().empty() ? "cpu" : attempt.device()));
  const at::Device device(device_name);
  if (device.is_cuda() != (spec.device() == lethe::v1::CUDA)) {
    return absl::FailedPreconditionError(
        absl::StrCat("spec.device is ", lethe::v1::Device_Name(spec.device()),
                     " but this worker computes on ", device_name));
  }
  if (spec.threads_per_worker() > 0) {
    at::set_num_threads(spec.threads_per_worker());
  }
  ASSIGN_OR_RETURN(const UnlearningMethod method,
                   MethodFromSpec(spec.method()));
  const ObjectiveParams params =
      ObjectiveParamsFromSpec(method, spec.method_params());
  RETURN_IF_ERROR(ValidateObjectiveParams(method, params));

  // Rank 0 hosts the attempt's store; it must outlive the group.
  std::unique_ptr<RendezvousStore> store;
  std::unique_ptr<CollectiveGroup> group;
  if (world_size > 1 && rank == 0) {
    ASSIGN_OR_RETURN(store, RendezvousStore::Start(attempt.store_host(),
                                                   attempt.store_port()));
  }
  if (world_size > 1) {
    ASSIGN_OR_RETURN(
        group,
        CollectiveGroup::Join(
            {.store_host = attempt.store_host(),
             .store_port = attempt.store_port(),
             .prefix = attempt.store_prefix(),
             .rank = rank,
             .world_size = world_size,
             .backend = spec.backend() == lethe::v1::NCCL
                            ? CollectiveBackend::kNccl
                            : CollectiveBackend::kGloo,
             .device = device,
             .local_address = attempt.local_address().empty()
                                  ? "127.0.0.1"
                                  : attempt.local_address(),
             .timeout = absl::Milliseconds(attempt.collective_timeout_ms() > 0
                                               ? attempt.collective_timeout_ms()
                                               : 120000)}));
  }
  ASSIGN_OR_RETURN(AttemptInputs inputs, LoadInputs(spec, method, params));
  RETURN_IF_ERROR(CallTorch(absl::StrCat("moving the model to ", device_name),
                            [&] { inputs.model->to(device); }));
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
      RETURN_IF_ERROR(PrepareReferenceCache(*inputs.model, inputs.data,
                                            reference_cache_path));
      reference_cache_seconds = absl::ToDoubleSeconds(absl::Now() - start);
    }
    if (group) RETURN_IF_ERROR(group->Barrier());
  }

  UnlearningOptions options{.method = method,
                            .params = params,
                            .reference_cache_path = needs.reference_log_probs
                                                        ? reference_cache_path
                                                        : ""};
  TrainingOptions& training = options.training;
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
  training.rank = rank;
  training.world_size = world_size;
  training.checkpoint.dir = CheckpointDir(spec);
  training.checkpoint.every_steps = spec.checkpoint().every_steps();
  training.checkpoint.keep_last =
      spec.checkpoint().keep_last() > 0 ? spec.checkpoint().keep_last() : 2;
  training.checkpoint.write = rank == 0;

  UnlearningHooks hooks;
  double allreduce_seconds = 0;  // In the current step.
  if (group) {
    hooks.training.reduce_gradients = [&](std::vector<at::Tensor>& tensors) {
      const absl::Time start = absl::Now();
      const absl::Status status = group->AllReduceMean(tensors);
      allreduce_seconds += absl::ToDoubleSeconds(absl::Now() - start);
      return status;
    };
    hooks.averager = hooks.training.reduce_gradients;
  }
  double step_seconds_sum = 0;
  int64_t steps_timed = 0;
  std::map<std::string, double> latest_evaluation;
  int64_t last_step = 0;
  int64_t evaluated_step = -1;  // The step latest_evaluation measured.
  hooks.training.on_step = [&](const StepRecord& step) -> absl::Status {
    last_step = step.step;
    const double step_allreduce_seconds = std::exchange(allreduce_seconds, 0);
    if (rank != 0) return absl::OkStatus();
    step_seconds_sum += step.seconds;
    ++steps_timed;
    lethe::v1::ReportProgressRequest request;
    request.set_attempt_id(attempt.attempt_id());
    lethe::v1::Job::Progress& progress = *request.mutable_progress();
    progress.set_step(step.step);
    progress.set_total_steps(step.total_steps);
    progress.set_epoch(step.epoch);
    auto& components = *progress.mutable_loss_components();
    components["loss"] = step.loss;
    components["learning_rate"] = step.learning_rate;
    components["grad_norm"] = step.grad_norm;
    for (const auto& [name, value] : step.components) components[name] = value;
    progress.set_tokens_per_second(
        step.seconds > 0 ? step.tokens * world_size / step.seconds : 0);
    const double eta_seconds = (step.total_steps - step.step) *
                               step_seconds_sum /
                               std::max<int64_t>(1, steps_timed);
    progress.mutable_eta()->set_seconds(static_cast<int64_t>(eta_seconds));
    request.set_step_seconds(step.seconds);
    request.set_allreduce_seconds(step_allreduce_seconds);
    request.set_checkpoint_seconds(step.checkpoint_seconds);
    request.set_tokens(step.tokens * world_size);
    request.set_resident_memory_bytes(ResidentMemoryBytes());
    request.set_reference_cache_seconds(
        std::exchange(reference_cache_seconds, 0));
    ASSIGN_OR_RETURN(const bool stop, report(request));
    if (stop) {
      return absl::CancelledError(absl::StrCat("attempt ", attempt.attempt_id(),
                                               " stopped at step ", step.step,
                                               " by the coordinator"));
    }
    return absl::OkStatus();
  };
  const int every_epochs = spec.evaluation().every_epochs();
  if (spec.has_evaluation() && every_epochs > 0) {
    // Every rank evaluates its share; the next step's all-reduce waits for
    // rank 0's report.
    hooks.training.on_epoch_end = [&](int epoch) -> absl::Status {
      if ((epoch + 1) % every_epochs != 0) return absl::OkStatus();
      ASSIGN_OR_RETURN(latest_evaluation, Evaluate(spec, inputs, group.get()));
      evaluated_step = last_step;
      if (rank != 0) return absl::OkStatus();
      lethe::v1::ReportProgressRequest request;
      request.set_attempt_id(attempt.attempt_id());
      request.mutable_evaluation_summary()->insert(latest_evaluation.begin(),
                                                   latest_evaluation.end());
      request.add_log_lines(absl::StrCat("evaluated after epoch ", epoch + 1));
      return report(request).status();
    };
  }

  ASSIGN_OR_RETURN(TrainingSummary summary,
                   RunUnlearning(*inputs.model, inputs.data, options, hooks));
  // Every rank takes part in the final evaluation, unless the last epoch's
  // periodic one already measured this model (every rank saw the same steps,
  // so all of them skip it alike).
  if (spec.has_evaluation() && evaluated_step != summary.total_steps) {
    ASSIGN_OR_RETURN(latest_evaluation, Evaluate(spec, inputs, group.get()));
  }
  if (rank != 0) return absl::OkStatus();

  RETURN_IF_ERROR(SaveModel(*inputs.model, spec));
  lethe::v1::ReportProgressRequest final_report;
  final_report.set_attempt_id(attempt.attempt_id());
  final_report.add_log_lines(absl::StrCat(
      "trained to step ", summary.total_steps,
      summary.resumed_from_step > 0
          ? absl::StrCat(" (resumed from step ", summary.resumed_from_step, ")")
          : "",
      absl::StrFormat(" in %.1fs; model in ", summary.seconds),
      ModelOutputDir(spec)));
  if (spec.has_evaluation()) {
    final_report.mutable_evaluation_summary()->insert(latest_evaluation.begin(),
                                                      latest_evaluation.end());
  }
  final_report.set_output_model_dir(ModelOutputDir(spec));
  return report(final_report).status();
}

}  // namespace lethe
