#include "libs/unlearn/trainer.h"

#include <torch/nn/utils/clip_grad.h>
#include <torch/optim/adamw.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "libs/data/qa_batch.h"
#include "libs/data/sharding.h"
#include "libs/logging/logging.h"
#include "libs/loss/chunked_log_probs.h"
#include "libs/model/llama_model.h"
#include "libs/status/status_macros.h"
#include "libs/status/torch_status.h"
#include "libs/unlearn/checkpoint.h"

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
  if (!options.example_lengths.empty() &&
      static_cast<int64_t>(options.example_lengths.size()) != num_examples) {
    return absl::InvalidArgumentError(
        absl::StrCat(options.example_lengths.size(), " example lengths for ",
                     num_examples, " examples"));
  }
  if (options.length_window_batches < 1) {
    return absl::InvalidArgumentError("length_window_batches must be >= 1");
  }
  if (options.loss_chunk_tokens < 0) {
    return absl::InvalidArgumentError("loss_chunk_tokens must be >= 0");
  }
  if (options.zero_stage < 0 || options.zero_stage > 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("zero_stage must be 0, 1 or 2, got ", options.zero_stage));
  }
  if (options.checkpoint.every_steps < 0) {
    return absl::InvalidArgumentError("checkpoint.every_steps must be >= 0");
  }
  return absl::OkStatus();
}

// The global RNG seed of optimizer step `step` (0-based), so that anything a
// loss draws from LibTorch's generator is the same in a resumed run.
uint64_t StepSeed(uint64_t seed, int64_t step) {
  SplitMix64 generator(
      seed ^ (0x632be59bd9b4e019ULL * static_cast<uint64_t>(step + 1)));
  return generator.Next();
}

// What a resumed run must share with the run that wrote the checkpoint for
// the same data order and schedule.
std::map<std::string, std::string> RunDescription(
    const TrainingOptions& options, int64_t num_examples, int64_t total_steps) {
  std::map<std::string, std::string> description = {
      {"seed", std::to_string(options.seed)},
      {"num_examples", std::to_string(num_examples)},
      {"per_device_batch_size", std::to_string(options.per_device_batch_size)},
      {"gradient_accumulation_steps",
       std::to_string(options.gradient_accumulation_steps)},
      {"world_size", std::to_string(options.world_size)},
      {"total_steps", std::to_string(total_steps)},
  };
  for (const auto& [field, value] : options.checkpoint.run_identity) {
    description.emplace(field, value);
  }
  // Only when sharding, so checkpoints of replicated runs stay resumable.
  if (options.zero_stage > 0) {
    description["zero_stage"] = std::to_string(options.zero_stage);
  }
  // Only when grouping, so checkpoints of plain runs stay resumable.
  if (!options.example_lengths.empty()) {
    description["length_window_batches"] =
        std::to_string(options.length_window_batches);
  }
  return description;
}

// This rank's examples of `epoch`, in order.
std::vector<int64_t> EpochShard(const TrainingOptions& options,
                                int64_t num_examples, int epoch) {
  const std::vector<int64_t> order =
      options.example_lengths.empty()
          ? EpochPermutation(num_examples, options.seed, epoch)
          : LengthGroupedPermutation(
                options.example_lengths, options.seed, epoch,
                static_cast<int64_t>(options.per_device_batch_size) *
                    options.world_size,
                options.length_window_batches);
  return RankShard(order, options.rank, options.world_size);
}

// Data-parallel ranks must resume from the same step (they would otherwise
// diverge silently): checked with one all-reduce of the step.
absl::Status CheckRanksAgree(int64_t start_step, const std::string& dir,
                             const TrainingOptions& options,
                             const std::vector<at::Tensor>& parameters,
                             const GradientReducer& reduce) {
  if (!reduce || options.world_size < 2) return absl::OkStatus();
  std::vector<at::Tensor> probe;
  RETURN_IF_ERROR(CallTorch("checking the resumed step across ranks", [&] {
    probe.push_back(torch::full(
        {1}, static_cast<double>(start_step),
        at::TensorOptions()
            .dtype(at::kDouble)
            .device(parameters.empty() ? at::Device(at::kCPU)
                                       : parameters.front().device())));
  }));
  RETURN_IF_ERROR(reduce(probe));
  ASSIGN_OR_RETURN(const double mean,
                   CallTorch("reading the resumed step",
                             [&] { return probe.front().item<double>(); }));
  if (mean != static_cast<double>(start_step)) {
    return absl::FailedPreconditionError(absl::StrCat(
        dir, ": rank ", options.rank, " resumed from step ", start_step,
        " but the ranks' mean step is ", mean,
        ": every rank must see the same checkpoints (a shared directory)"));
  }
  return absl::OkStatus();
}

// A ZeRO checkpoint resumes only at the world size that wrote it: the
// newest checkpoint's optimizer shards name theirs.
absl::Status CheckShardWorldSize(const std::string& root, int world_size) {
  const std::vector<int64_t> steps = ListCheckpointSteps(root);
  if (steps.empty()) return absl::OkStatus();
  const std::string dir = CheckpointDirectory(root, steps.back());
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator(dir, error)) {
    const std::string name = entry.path().filename().string();
    const size_t of = name.rfind("_of_");
    int written = 0;
    if (name.rfind("optimizer_shard_", 0) != 0 || of == std::string::npos ||
        !absl::SimpleAtoi(name.substr(of + 4), &written)) {
      continue;
    }
    if (written != world_size) {
      return absl::FailedPreconditionError(absl::StrCat(
          dir, " holds the optimizer shards of a ", written,
          "-rank ZeRO run; this run has ", world_size,
          " ranks: a ZeRO checkpoint resumes only at the world size that "
          "wrote it (resharding is not supported)"));
    }
  }
  return absl::OkStatus();
}

// A sharded run's checkpoint: every rank stages its optimizer shard, rank 0
// moves them into the checkpoint it commits; the ranks agree on the outcome
// twice, so that all of them succeed or all fail. Returns the directory.
absl::StatusOr<std::string> WriteShardedCheckpoint(
    const TrainingOptions& options, const CheckpointState& state,
    const torch::nn::Module& model, const torch::optim::Optimizer& optimizer,
    ShardedTrainingOptimizer& sharded) {
  const CheckpointOptions& checkpoint = options.checkpoint;
  auto staged_path = [&](int rank) {
    return absl::StrCat(checkpoint.dir, "/.staged-", state.step, "-",
                        OptimizerShardFileName(rank, options.world_size));
  };
  const std::string mine = staged_path(options.rank);
  std::error_code error;
  std::filesystem::create_directories(checkpoint.dir, error);
  const absl::Status saved =
      error ? absl::PermissionDeniedError(absl::StrCat(
                  checkpoint.dir, ": cannot create: ", error.message()))
            : sharded.SaveShard(mine);
  ASSIGN_OR_RETURN(const bool all_saved, sharded.AllRanksOk(saved.ok()));
  if (!saved.ok() || !all_saved) {
    std::error_code ignored;
    std::filesystem::remove(mine, ignored);
    if (!saved.ok()) return saved;
    return absl::UnavailableError(
        absl::StrCat("checkpoint of step ", state.step,
                     ": another rank could not write its optimizer shard"));
  }
  absl::StatusOr<std::string> committed =
      CheckpointDirectory(checkpoint.dir, state.step);
  if (options.rank == 0) {
    std::map<std::string, std::string> staged;
    for (int rank = 0; rank < options.world_size; ++rank) {
      staged[OptimizerShardFileName(rank, options.world_size)] =
          staged_path(rank);
    }
    committed =
        WriteCheckpoint(checkpoint.dir, state, model, optimizer,
                        checkpoint.keep_last, checkpoint.may_commit, staged);
  }
  ASSIGN_OR_RETURN(const bool all_committed,
                   sharded.AllRanksOk(committed.ok()));
  if (!committed.ok()) return committed.status();
  if (!all_committed) {
    return absl::UnavailableError(absl::StrCat(
        "checkpoint of step ", state.step, ": rank 0 could not commit it"));
  }
  return committed;
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
  if (hooks.overlapped_reducer && !hooks.reduce_gradients &&
      options.world_size > 1) {
    return absl::InvalidArgumentError(
        "hooks.overlapped_reducer needs hooks.reduce_gradients too: the "
        "ranks' resumed steps are checked with it");
  }
  if (options.zero_stage > 0 && !hooks.sharded_optimizer) {
    return absl::InvalidArgumentError(
        "zero_stage > 0 needs hooks.sharded_optimizer");
  }
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
  std::vector<TrainableParameter> trainable;
  for (const auto& parameter : model.named_parameters()) {
    if (!parameter.value().requires_grad()) continue;
    const bool is_norm = parameter.key().find("norm") != std::string::npos;
    (is_norm ? not_decayed : decayed).push_back(parameter.value());
    all_parameters.push_back(parameter.value());
    trainable.push_back({.name = parameter.key(),
                         .tensor = parameter.value(),
                         .weight_decay = is_norm ? 0.0 : options.weight_decay});
  }
  // With ZeRO the replicated optimizer below never steps, so it never
  // allocates state; it only gives the checkpoint its (empty) optimizer.pt.
  std::unique_ptr<ShardedTrainingOptimizer> sharded;
  if (options.zero_stage > 0) {
    ASSIGN_OR_RETURN(sharded,
                     hooks.sharded_optimizer(trainable, options.zero_stage));
    if (sharded == nullptr) {
      return absl::InternalError("hooks.sharded_optimizer made no optimizer");
    }
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
  const CheckpointOptions& checkpoint = options.checkpoint;
  const std::map<std::string, std::string> run_description =
      RunDescription(options, num_examples, total_steps);
  int64_t start_step = 0;
  if (!checkpoint.dir.empty() && sharded != nullptr) {
    RETURN_IF_ERROR(CheckShardWorldSize(checkpoint.dir, options.world_size));
  }
  if (!checkpoint.dir.empty()) {
    absl::StatusOr<LoadedCheckpoint> loaded =
        LoadLatestCheckpoint(checkpoint.dir, model, optimizer, run_description);
    if (loaded.ok()) {
      start_step = loaded->state.step;
      summary.resumed_from_step = start_step;
      summary.resumed_from = loaded->dir;
      summary.checkpoint_warnings = loaded->warnings;
      if (sharded != nullptr) {
        const std::string shard = absl::StrCat(
            loaded->dir, "/",
            OptimizerShardFileName(options.rank, options.world_size));
        if (!std::filesystem::exists(shard)) {
          return absl::FailedPreconditionError(absl::StrCat(
              loaded->dir, " holds no optimizer shard for rank ", options.rank,
              " of ", options.world_size,
              " (written by a run without ZeRO, or with another world "
              "size?)"));
        }
        RETURN_IF_ERROR(sharded->LoadShard(shard));
      }
    } else if (absl::IsNotFound(loaded.status())) {
      if (!ListCheckpointSteps(checkpoint.dir).empty()) {
        summary.checkpoint_warnings.push_back(
            std::string(loaded.status().message()));
      }
    } else {
      return loaded.status();
    }
    for (const std::string& warning : summary.checkpoint_warnings) {
      LETHE_LOG(WARNING) << warning;
    }
    if (start_step > total_steps) {
      return absl::FailedPreconditionError(
          absl::StrCat(summary.resumed_from, ": step ", start_step,
                       " is past the run's ", total_steps, " steps"));
    }
    RETURN_IF_ERROR(CheckRanksAgree(start_step, checkpoint.dir, options,
                                    all_parameters, hooks.reduce_gradients));
  }

  std::unique_ptr<BackwardGradientReducer> overlapped;
  if (hooks.overlapped_reducer && start_step < total_steps &&
      options.zero_stage != 2) {
    ASSIGN_OR_RETURN(overlapped, hooks.overlapped_reducer(all_parameters));
    if (overlapped == nullptr) {
      return absl::InternalError("hooks.overlapped_reducer made no reducer");
    }
  }

  int64_t step = start_step;
  const int start_epoch = static_cast<int>(start_step / steps_per_epoch);
  model.train();
  for (int epoch = start_epoch; step < total_steps; ++epoch) {
    const std::vector<int64_t> shard = EpochShard(options, num_examples, epoch);
    int64_t first_micro = epoch == start_epoch
                              ? (start_step % steps_per_epoch) *
                                    options.gradient_accumulation_steps
                              : 0;
    for (; first_micro < micro_batches_per_epoch && step < total_steps;
         first_micro += options.gradient_accumulation_steps) {
      const auto step_start = std::chrono::steady_clock::now();
      torch::manual_seed(StepSeed(options.seed, step));
      const int64_t micro_count =
          std::min<int64_t>(options.gradient_accumulation_steps,
                            micro_batches_per_epoch - first_micro);
      StepRecord record;
      record.step = step + 1;
      record.total_steps = total_steps;
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
        ASSIGN_OR_RETURN(MicroBatchLoss micro_loss,
                         loss(indices, {.step = step,
                                        .epoch = epoch,
                                        .learning_rate = record.learning_rate,
                                        .micro_batch = micro}));
        ASSIGN_OR_RETURN(
            const at::Tensor scaled, CallTorch("scaling the loss", [&] {
              return micro_loss.loss / static_cast<double>(micro_count);
            }));
        if (overlapped != nullptr && micro + 1 == first_micro + micro_count) {
          RETURN_IF_ERROR(overlapped->PrepareForBackward(scaled));
        }
        if (options.zero_stage == 2 && micro + 1 == first_micro + micro_count) {
          RETURN_IF_ERROR(sharded->PrepareForBackward());
        }
        RETURN_IF_ERROR(CallTorch("backward pass", [&] { scaled.backward(); }));
        record.loss += micro_loss.loss.item<double>() / micro_count;
        record.tokens += micro_loss.tokens;
        for (const auto& [name, value] : micro_loss.components) {
          record.components[name] += value / micro_count;
        }
      }
      // ZeRO-2 released the gradients it reduced; nothing to fill.
      std::vector<at::Tensor> gradients;
      if (options.zero_stage != 2) {
        for (at::Tensor& parameter : all_parameters) {
          if (!parameter.grad().defined()) {
            parameter.mutable_grad() = torch::zeros_like(parameter);
          }
          gradients.push_back(parameter.grad());
        }
      }
      if (options.zero_stage == 2) {
        RETURN_IF_ERROR(sharded->ReduceGradients());
      } else if (overlapped != nullptr) {
        RETURN_IF_ERROR(overlapped->FinishBackward());
      } else if (hooks.reduce_gradients) {
        RETURN_IF_ERROR(hooks.reduce_gradients(gradients));
      }
      if (sharded != nullptr) {
        ASSIGN_OR_RETURN(
            record.grad_norm,
            sharded->Step(record.learning_rate, options.max_grad_norm));
      } else {
        RETURN_IF_ERROR(CallTorch("optimizer step", [&] {
          record.grad_norm = options.max_grad_norm > 0
                                 ? torch::nn::utils::clip_grad_norm_(
                                       all_parameters, options.max_grad_norm)
                                 : torch::nn::utils::clip_grad_norm_(
                                       all_parameters,
                                       std::numeric_limits<double>::infinity());
          for (auto& group : optimizer.param_groups()) {
            static_cast<torch::optim::AdamWOptions&>(group.options())
                .lr(record.learning_rate);
          }
          optimizer.step();
        }));
      }
      ++step;
      const auto step_end = std::chrono::steady_clock::now();
      record.seconds =
          std::chrono::duration<double>(step_end - step_start).count();
      if (!checkpoint.dir.empty() && (checkpoint.write || sharded != nullptr) &&
          (step == total_steps || (checkpoint.every_steps > 0 &&
                                   step % checkpoint.every_steps == 0))) {
        const CheckpointState state = {
            .step = step, .epoch = epoch, .run = run_description};
        if (sharded != nullptr) {
          ASSIGN_OR_RETURN(record.checkpoint,
                           WriteShardedCheckpoint(options, state, model,
                                                  optimizer, *sharded));
        } else {
          ASSIGN_OR_RETURN(
              record.checkpoint,
              WriteCheckpoint(checkpoint.dir, state, model, optimizer,
                              checkpoint.keep_last, checkpoint.may_commit));
        }
        record.checkpoint_seconds =
            std::chrono::duration<double>(std::chrono::steady_clock::now() -
                                          step_end)
                .count();
        summary.last_checkpoint = record.checkpoint;
      }
      summary.tokens += record.tokens;
      summary.steps.push_back(std::move(record));
      if (hooks.on_step) RETURN_IF_ERROR(hooks.on_step(summary.steps.back()));
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

std::vector<int64_t> ExampleLengths(const std::vector<QaExample>& examples) {
  std::vector<int64_t> lengths;
  lengths.reserve(examples.size());
  for (const QaExample& example : examples) {
    lengths.push_back(static_cast<int64_t>(example.input_ids.size()));
  }
  return lengths;
}

absl::StatusOr<TrainingSummary> FinetuneOnQa(
    LlamaForCausalLM& model, const std::vector<QaExample>& examples, int pad_id,
    const TrainingOptions& options, const TrainingHooks& hooks) {
  auto loss = [&](const std::vector<int64_t>& indices,
                  const StepContext&) -> absl::StatusOr<MicroBatchLoss> {
    std::vector<const QaExample*> batch_examples;
    for (int64_t index : indices) batch_examples.push_back(&examples[index]);
    return CallTorch("fine-tuning forward pass", [&] {
      const QaBatch batch =
          CollateQaBatch(batch_examples, pad_id).To(model.device());
      CpuBf16AutocastGuard autocast(options.bf16_autocast);
      at::Tensor nll =
          ModelTokenMeanNll(model, batch, options.loss_chunk_tokens);
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
