#include "libs/unlearn/msa.h"

#include <algorithm>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "libs/data/sharding.h"
#include "libs/status/status_macros.h"
#include "libs/status/torch_status.h"
#include "libs/unlearn/model_arithmetic.h"

namespace lethe {
namespace {

// A trainable copy of theta_0 (FrozenCopy, then unfrozen).
absl::StatusOr<std::shared_ptr<LlamaForCausalLM>> TrainableCopy(
    LlamaForCausalLM& base) {
  ASSIGN_OR_RETURN(std::shared_ptr<LlamaForCausalLM> copy,
                   FrozenCopy(base, base.parameters().front().scalar_type()));
  RETURN_IF_ERROR(CallTorch("unfreezing a copy of theta_0", [&] {
    for (at::Tensor& parameter : copy->parameters()) {
      parameter.requires_grad_(true);
    }
    copy->train();
  }));
  return copy;
}

}  // namespace

std::vector<QaExample> MsaRetainSubsample(const std::vector<QaExample>& retain,
                                          size_t forget_size, uint64_t seed) {
  const std::vector<int64_t> order =
      EpochPermutation(static_cast<int64_t>(retain.size()), seed, 0);
  std::vector<QaExample> subsample;
  const size_t count = std::min(forget_size, retain.size());
  subsample.reserve(count);
  for (size_t i = 0; i < count; ++i) subsample.push_back(retain[order[i]]);
  return subsample;
}

absl::StatusOr<TrainingSummary> RunModelStateArithmetic(
    LlamaForCausalLM& model, const UnlearningData& data,
    const MsaOptions& options, const TrainingHooks& hooks) {
  if (options.base == nullptr) {
    return absl::InvalidArgumentError("MSA needs theta_0, the base model");
  }
  if (data.forget.empty()) {
    return absl::InvalidArgumentError("MSA needs forget examples");
  }
  if (data.retain.empty() && options.beta != 0) {
    return absl::InvalidArgumentError(
        "MSA with beta != 0 needs retain examples");
  }
  const std::vector<QaExample> retain_subsample = MsaRetainSubsample(
      data.retain, data.forget.size(), options.training.seed);
  // Steps are numbered across both stages: stage 2's first step follows
  // stage 1's last. While stage 1 runs, the total counts stage 2 as just as
  // long (its examples are as many as the forget set's when the retain set
  // has enough).
  const bool two_stages = options.beta != 0;
  TrainingSummary summary;
  auto fine_tune = [&](int stage, const char* name,
                       const std::vector<QaExample>& examples)
      -> absl::StatusOr<std::shared_ptr<LlamaForCausalLM>> {
    ASSIGN_OR_RETURN(std::shared_ptr<LlamaForCausalLM> tuned,
                     TrainableCopy(*options.base));
    TrainingOptions training = options.training;
    if (!training.checkpoint.dir.empty()) {
      training.checkpoint.dir =
          absl::StrCat(training.checkpoint.dir, "/msa-", name);
      training.checkpoint.run_identity["msa_stage"] = name;
    }
    const int64_t offset = summary.total_steps;
    auto renumber = [&, stage, offset](StepRecord& step) {
      step.step += offset;
      step.total_steps =
          offset + step.total_steps * (stage == 1 && two_stages ? 2 : 1);
      step.components["msa_stage"] = stage;
    };
    TrainingHooks stage_hooks = hooks;
    stage_hooks.on_step = [&](const StepRecord& step) -> absl::Status {
      StepRecord numbered = step;
      renumber(numbered);
      return hooks.on_step ? hooks.on_step(numbered) : absl::OkStatus();
    };
    ASSIGN_OR_RETURN(
        TrainingSummary part,
        FinetuneOnQa(*tuned, examples, data.pad_id, training, stage_hooks));
    for (StepRecord& step : part.steps) {
      renumber(step);
      step.total_steps = offset + part.total_steps;
      summary.steps.push_back(std::move(step));
    }
    // Where this call started: in this stage when no earlier stage trained
    // a step in this call.
    if (summary.steps.size() == part.steps.size()) {
      summary.resumed_from_step = offset + part.resumed_from_step;
      if (!part.resumed_from.empty()) summary.resumed_from = part.resumed_from;
    }
    summary.total_steps = offset + part.total_steps;
    summary.seconds += part.seconds;
    summary.tokens += part.tokens;
    if (!part.last_checkpoint.empty()) {
      summary.last_checkpoint = part.last_checkpoint;
    }
    summary.checkpoint_warnings.insert(summary.checkpoint_warnings.end(),
                                       part.checkpoint_warnings.begin(),
                                       part.checkpoint_warnings.end());
    return tuned;
  };
  ASSIGN_OR_RETURN(const std::shared_ptr<LlamaForCausalLM> forget_tuned,
                   fine_tune(1, "forget", data.forget));
  // With beta 0 the retain vector drops out: theta_2 = theta_0 stands in.
  std::shared_ptr<LlamaForCausalLM> retain_tuned = options.base;
  if (two_stages) {
    ASSIGN_OR_RETURN(retain_tuned, fine_tune(2, "retain", retain_subsample));
  }
  RETURN_IF_ERROR(ApplyModelStateArithmetic({.target = model,
                                             .base = *options.base,
                                             .forget_tuned = *forget_tuned,
                                             .retain_tuned = *retain_tuned},
                                            options.alpha, options.beta));
  return summary;
}

}  // namespace lethe
