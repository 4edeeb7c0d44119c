#include "services/cli/plan_command.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "libs/jobs/job_spec.h"
#include "libs/plan/memory_plan.h"
#include "libs/status/status_macros.h"

namespace lethe {

absl::StatusOr<std::string> PlanCommand(const v1::JobSpec& raw) {
  const v1::JobSpec spec = JobSpecWithDefaults(raw);
  ASSIGN_OR_RETURN(const PlanOptions options, PlanOptionsFromSpec(spec));
  ASSIGN_OR_RETURN(const MemoryPlan plan, PlanMemoryForJob(spec));
  std::string out = absl::StrCat("model ", spec.model_dir(), "\n");
  absl::StrAppendFormat(
      &out,
      "method %s, %s, weights %s%s, batch %d x %d tokens, world size %d, "
      "%s\n",
      UnlearningMethodName(options.method),
      options.lora_rank > 0
          ? absl::StrCat("LoRA rank ", options.lora_rank, " on ",
                         options.lora_target_modules.empty()
                             ? std::string("q_proj, v_proj")
                             : absl::StrJoin(options.lora_target_modules, ", "))
          : std::string("full training"),
      plan.weights_dtype, options.bf16_autocast ? " (bf16 autocast)" : "",
      options.batch_size, options.max_length, options.world_size,
      options.device == PlanDevice::kCuda ? "CUDA" : "CPU");
  std::vector<std::string> savers;
  if (options.activation_checkpointing) {
    savers.push_back("activation checkpointing");
  }
  if (options.loss_chunk_tokens > 0) {
    savers.push_back(
        absl::StrCat("loss chunks of ", options.loss_chunk_tokens, " tokens"));
  }
  if (options.bf16_reference) savers.push_back("bf16 reference");
  absl::StrAppend(&out, "memory savers: ",
                  savers.empty() ? "none" : absl::StrJoin(savers, ", "),
                  "\n\n");
  absl::StrAppend(&out, FormatMemoryPlan(plan));
  if (options.world_size > 1) {
    absl::StrAppendFormat(
        &out,
        "\nEach of the %d ranks needs this much: data parallelism replicates "
        "the model (no ZeRO), %s GiB in all.\n",
        options.world_size,
        Gib(plan.total_bytes() * static_cast<int64_t>(options.world_size)));
  }
  return out;
}

}  // namespace lethe
