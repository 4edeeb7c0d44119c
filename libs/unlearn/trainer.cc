#include "libs/unlearn/trainer.h"

#include <torch/nn/utils/clip_grad.h>
#include <torch/optim/adamw.h>

#include <algorithm>
#include <chrono>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "libs/data/qa_batch.h"
#include "libs/data/sharding.h"
#include "libs/model/llama_model.h"
#include "libs/status/status_macros.h"
#include "libs/status/torch_status.h"
#include "libs/unlearn/sequence_loss.h"

namespace lethe {
namespace {

absl::Status ValidateOptions(const TrainingOptions& options,
                             int64_t num_examples) {
  if (num_examples <= 0) {
    return absl::InvalidArgumentError("no training examples");
  }
  if (options.per_device_batch_size < 1) {
    return absl::InvalidArgumentError("per_device_batch_size must be >= 1");
  }
  if (options.gradient_accumulation_steps < 1) {
    return absl::InvalidArgumentError(
        "gradient_accumulation_steps must be >= 1");
  }
  if (options.num_epochs < 1 && options.max_steps <= 0) {
    return absl::InvalidArgumentError(
        "num_epochs must be >= 1 unless max_steps bounds the run");
  }
  if (!(options.learning_rate >= 0) || !(options.weight_decay >= 0) ||
      !(options.warmup_epochs >= 0)) {
    return absl::InvalidArgumentError(
        "learning_rate, weight_decay and warmup_epochs must be >= 0");
  }
  if (options.world_size < 1 || options.rank < 0 ||
      options.rank >= options.world_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        "rank ", options.rank, " is outside [0, ", options.world_size, ")"));
  }
  return absl::OkStatus();
}

}  // namespace

double LinearWarmupDecay(int64_t step, int64_t warmup_steps,
                         int64_t total_steps) {
  if (step < warmup_steps) {
    return static_cast<double>(step) / std::max<int64_t>(1, warmup_steps);
  }
  return std::max(0.0, static_cast<double>(total_steps - step) /
                           std::max<int64_t>(1, total_steps - warmup_steps));
}

absl::StatusOr<TrainingSummary> RunTraining(torch::nn::Module& model,
                                            int64_t num_examples,
                                            const TrainingOptions& options,
                                            const MicroBatchLossFn& loss,
                                            const TrainingHooks& hooks) {
  RETURN_IF_ERROR(ValidateOptions(options, num_examples));
  if (options.threads > 0) at::set_num_threads(options.threads);
  torch::manual_seed(options.seed);

  const int64_t shard_size =
      (num_examples + options.world_size - 1) / options.world_size;
  const int64_t micro_batches_per_epoch =
      (shard_size + options.per_device_batch_size - 1) /
      options.per_device_batch_size;
  const int64_t steps_per_epoch =
      (micro_batches_per_epoch + options.gradient_accumulation_steps - 1) /
      options.gradient_accumulation_steps;
  int64_t total_steps = steps_per_epoch * std::max(options.num_epochs, 1);
  if (options.max_steps > 0) {
    total_steps = options.num_epochs >= 1
                      ? std::min(total_steps, options.max_steps)
                      : options.max_steps;
  }
  const int64_t warmup_steps = static_cast<int64_t>(
      std::llround(options.warmup_epochs * steps_per_epoch));

  std::vector<at::Tensor> decayed, not_decayed, all_parameters;
  for (const auto& parameter : model.named_parameters()) {
    if (!parameter.value().requires_grad()) continue;
    (parameter.key().find("norm") != std::string::npos ? not_decayed : decayed)
        .push_back(parameter.value());
    all_parameters.push_back(parameter.value());
  }
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(decayed,
                      std::make_unique<torch::optim::AdamWOptions>(
                          torch::optim::AdamWOptions(options.learning_rate)
                              .weight_decay(options.weight_decay)));
  groups.emplace_back(
      not_decayed,
      std::make_unique<torch::optim::AdamWOptions>(
          torch::optim::AdamWOptions(options.learning_rate).weight_decay(0.0)));
  torch::optim::AdamW optimizer(
      groups, torch::optim::AdamWOptions(options.learning_rate));

  TrainingSummary summary;
  summary.total_steps = total_steps;
  const auto run_start = std::chrono::steady_clock::now();
  int64_t step = 0;
  model.train();
  for (int epoch = 0; step < total_steps; ++epoch) {
    const std::vector<int64_t> shard =
        RankShard(EpochPermutation(num_examples, options.seed, epoch),
                  options.rank, options.world_size);
    int64_t first_micro = 0;
    for (; first_micro < micro_batches_per_epoch && step < total_steps;
         first_micro += options.gradient_accumulation_steps) {
      const auto step_start = std::chrono::steady_clock::now();
      const int64_t micro_count =
          std::min<int64_t>(options.gradient_accumulation_steps,
                            micro_batches_per_epoch - first_micro);
      StepRecord record;
      record.step = step + 1;
      record.epoch = epoch;
      record.learning_rate = options.learning_rate *
                             LinearWarmupDecay(step, warmup_steps, total_steps);
      optimizer.zero_grad();
      for (int64_t micro = first_micro; micro < first_micro + micro_count;
           ++micro) {
        const int64_t begin = micro * options.per_device_batch_size;
        const int64_t end = std::min<int64_t>(
            begin + options.per_device_batch_size, shard_size);
        const std::vector<int64_t> indices(shard.begin() + begin,
                                           shard.begin() + end);
        ASSIGN_OR_RETURN(
            MicroBatchLoss micro_loss,
            loss(indices, {.step = step,
                           .epoch = epoch,
                           .learning_rate = record.learning_rate}));
        RETURN_IF_ERROR(CallTorch("backward pass", [&] {
          (micro_loss.loss / static_cast<double>(micro_count)).backward();
        }));
        record.loss += micro_loss.loss.item<double>() / micro_count;
        record.tokens += micro_loss.tokens;
        for (const auto& [name, value] : micro_loss.components) {
          record.components[name] += value / micro_count;
        }
      }
      std::vector<at::Tensor> gradients;
      for (at::Tensor& parameter : all_parameters) {
        if (!parameter.grad().defined()) {
          parameter.mutable_grad() = torch::zeros_like(parameter);
        }
        gradients.push_back(parameter.grad());
      }
      if (hooks.reduce_gradients) {
        RETURN_IF_ERROR(hooks.reduce_gradients(gradients));
      }
      RETURN_IF_ERROR(CallTorch("optimizer step", [&] {
        record.grad_norm =
            options.max_grad_norm > 0
                ? torch::nn::utils::clip_grad_norm_(all_parameters,
                                                    options.max_grad_norm)
                : torch::nn::utils::clip_grad_norm_(
                      all_parameters, std::numeric_limits<double>::infinity());
        for (auto& group : optimizer.param_groups()) {
          static_cast<torch::optim::AdamWOptions&>(group.options())
              .lr(record.learning_rate);
        }
        optimizer.step();
      }));
      ++step;
      record.seconds = std::chrono::duration<double>(
                           std::chrono::steady_clock::now() - step_start)
                           .count();
      summary.tokens += record.tokens;
      if (hooks.on_step) hooks.on_step(record);
      summary.steps.push_back(std::move(record));
    }
    if (first_micro >= micro_batches_per_epoch && hooks.on_epoch_end) {
      RETURN_IF_ERROR(hooks.on_epoch_end(epoch));
    }
  }
  summary.seconds = std::chrono::duration<double>(
                        std::chrono::steady_clock::now() - run_start)
                        .count();
  return summary;
}

absl::StatusOr<TrainingSummary> FinetuneOnQa(
    LlamaForCausalLM& model, const std::vector<QaExample>& examples, int pad_id,
    const TrainingOptions& options, const TrainingHooks& hooks) {
  auto loss = [&](const std::vector<int64_t>& indices,
                  const StepContext&) -> absl::StatusOr<MicroBatchLoss> {
    std::vector<const QaExample*> batch_examples;
    for (int64_t index : indices) batch_examples.push_back(&examples[index]);
    return CallTorch("fine-tuning forward pass", [&] {
      const QaBatch batch = CollateQaBatch(batch_examples, pad_id);
      CpuBf16AutocastGuard autocast(options.bf16_autocast);
      at::Tensor nll = TokenMeanNll(
          model.Forward(batch.input_ids, batch.attention_mask), batch.labels);
      MicroBatchLoss result;
      result.loss = nll;
      result.tokens = batch.real_tokens();
      result.components["nll"] = nll.item<double>();
      return result;
    });
  };
  return RunTraining(model, static_cast<int64_t>(examples.size()), options,
                     loss, hooks);
}

}  // namespace lethe
