#include "libs/unlearn/unlearning_run.h"

#include <algorithm>
#include <filesystem>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "libs/data/qa_batch.h"
#include "libs/data/sharding.h"
#include "libs/model/lora.h"
#include "libs/status/status_macros.h"
#include "libs/status/torch_status.h"
#include "libs/unlearn/pga.h"
#include "libs/unlearn/reference_cache.h"
#include "libs/unlearn/reglu.h"

namespace lethe {
namespace {

// Lethe's own refusals for IdkDPO's preferred answers.
constexpr const char* kRefusals[] = {
    "I don't know.",
    "I'm not sure about that.",
    "I have no information on that.",
    "That is not something I know.",
    "I can't answer that, I'm afraid.",
    "I don't have any details about that.",
    "I'm unable to say.",
    "Nothing I know covers that question.",
    "I honestly have no idea.",
    "That is outside what I know.",
    "I cannot recall anything about that.",
    "Sorry, I don't have that information.",
    "I'm not aware of the answer.",
    "I wouldn't know, unfortunately.",
    "I have nothing reliable to tell you about that.",
    "That question is beyond my knowledge.",
};

uint64_t IndexHash(uint64_t seed, size_t index) {
  SplitMix64 generator(seed ^ (0x9e3779b97f4a7c15ull * (index + 1)));
  return generator.Next();
}

// Seeded retain micro-batches as a pure function of where the forget
// micro-batch falls, so a resumed run draws the same ones. The retain stream
// of a rank is its share of successive epoch permutations of the retain set,
// laid end to end; forget micro-batch `micro_batch` of epoch `epoch` takes
// as many retain examples as it has forget examples, starting where the
// previous micro-batches' stop (each epoch consumes `forget_shard_size`).
class RetainSampler {
 public:
  RetainSampler(int64_t size, uint64_t seed, int rank, int world_size,
                int64_t forget_shard_size, int64_t micro_batch_size)
      : size_(size),
        seed_(seed),
        rank_(rank),
        world_size_(world_size),
        forget_shard_size_(forget_shard_size),
        micro_batch_size_(micro_batch_size) {}

  std::vector<int64_t> For(int64_t epoch, int64_t micro_batch, int64_t count) {
    std::vector<int64_t> indices;
    if (size_ <= 0) return indices;
    const int64_t shard_size = (size_ + world_size_ - 1) / world_size_;
    const int64_t start =
        epoch * forget_shard_size_ + micro_batch * micro_batch_size_;
    for (int64_t position = start; position < start + count; ++position) {
      const int64_t retain_epoch = position / shard_size;
      if (retain_epoch != cached_epoch_) {
        shard_ = RankShard(EpochPermutation(size_, seed_, retain_epoch), rank_,
                           world_size_);
        cached_epoch_ = retain_epoch;
      }
      indices.push_back(shard_[position % shard_size]);
    }
    return indices;
  }

 private:
  int64_t size_;
  uint64_t seed_;
  int rank_, world_size_;
  int64_t forget_shard_size_, micro_batch_size_;
  // A memo of the last retain epoch's shard.
  int64_t cached_epoch_ = -1;
  std::vector<int64_t> shard_;
};

QaBatch Collate(const std::vector<QaExample>& examples,
                const std::vector<int64_t>& indices, int pad_id) {
  std::vector<const QaExample*> selected;
  for (int64_t index : indices) selected.push_back(&examples[index]);
  return CollateQaBatch(selected, pad_id);
}

absl::StatusOr<ReferenceLogProbCache> CachedOrComputed(
    LlamaForCausalLM& model, const std::vector<QaExample>& examples, int pad_id,
    int batch_size, const std::string& path, const std::string& reference,
    int64_t loss_chunk_tokens) {
  if (!path.empty() && std::filesystem::exists(path)) {
    return ReferenceLogProbCache::Load(path, examples, reference);
  }
  ASSIGN_OR_RETURN(
      ReferenceLogProbCache cache,
      ReferenceLogProbCache::Compute(model, examples, pad_id, batch_size,
                                     reference, loss_chunk_tokens));
  if (!path.empty()) RETURN_IF_ERROR(cache.Save(path));
  return cache;
}

absl::Status ValidateData(UnlearningMethod method, const ObjectiveNeeds& needs,
                          const UnlearningData& data) {
  if (data.forget.empty()) {
    return absl::InvalidArgumentError("the forget set is empty");
  }
  if (method == UnlearningMethod::kPga && data.holdout.empty()) {
    return absl::InvalidArgumentError(
        "PGA needs holdout examples (sequences the model never saw) to pair "
        "with the forget set, and the holdout set is empty");
  }
  if (needs.retain_batch && data.retain.empty()) {
    return absl::InvalidArgumentError(
        "this method needs a retain set, and it is empty");
  }
  if (needs.alternate_answers && data.alternate.size() != data.forget.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "this method needs one alternate answer per forget example: ",
        data.alternate.size(), " for ", data.forget.size()));
  }
  return absl::OkStatus();
}

// PGA's whole run: its objective works on pairs, not UnlearningBatch.
absl::StatusOr<TrainingSummary> RunPga(LlamaForCausalLM& model,
                                       const UnlearningData& data,
                                       const UnlearningOptions& options,
                                       const UnlearningHooks& hooks) {
  const TrainingOptions& training = options.training;
  const ObjectiveParams& params = options.params;
  auto [memorised, clean] = PgaPairs(data);
  const int64_t pairs = static_cast<int64_t>(memorised.size());
  ASSIGN_OR_RETURN(
      std::unique_ptr<PgaObjective> objective,
      PgaObjective::Create(model, std::move(memorised), std::move(clean),
                           data.pad_id,
                           {.align_weight = params.pga_align_weight,
                            .ce_weight = params.pga_ce_weight,
                            .refit_every_epochs = params.pga_refit_every_epochs,
                            .depths = params.pga_depths,
                            .state_batch_size = options.reference_batch_size,
                            .averager = hooks.averager,
                            .probe_dir = training.checkpoint.dir,
                            .write_probes = training.checkpoint.write}));
  MicroBatchLossFn pga_loss = objective->LossFn();
  auto loss = [&](const std::vector<int64_t>& indices,
                  const StepContext& context) {
    CpuBf16AutocastGuard autocast(training.bf16_autocast);
    return pga_loss(indices, context);
  };
  return RunTraining(model, pairs, training, loss, hooks.training);
}

}  // namespace

std::pair<std::vector<QaExample>, std::vector<QaExample>> PgaPairs(
    const UnlearningData& data) {
  const size_t pairs = std::min(data.forget.size(), data.holdout.size());
  return {
      std::vector<QaExample>(data.forget.begin(), data.forget.begin() + pairs),
      std::vector<QaExample>(data.holdout.begin(),
                             data.holdout.begin() + pairs)};
}

absl::StatusOr<std::shared_ptr<LlamaForCausalLM>> FrozenCopy(
    LlamaForCausalLM& model, at::ScalarType dtype) {
  return CallTorch("copying the reference model", [&] {
    // Every parameter is replaced below: no random initialisation (of
    // possibly billions of weights) to throw away.
    auto copy = std::make_shared<LlamaForCausalLM>(
        model.config(), ParameterInit::kUninitialized);
    copy->to(model.device());
    torch::NoGradGuard no_grad;
    auto source = model.named_parameters();
    for (auto& parameter : copy->named_parameters()) {
      const at::Tensor& value = source[parameter.key()];
      parameter.value().set_data(value.detach().to(dtype).clone());
      parameter.value().set_requires_grad(false);
    }
    copy->eval();
    return copy;
  });
}

std::vector<TofuRecord> RefusalAlternates(const std::vector<TofuRecord>& forget,
                                          uint64_t seed) {
  std::vector<TofuRecord> alternates;
  constexpr size_t kCount = sizeof(kRefusals) / sizeof(kRefusals[0]);
  for (size_t i = 0; i < forget.size(); ++i) {
    alternates.push_back({.question = forget[i].question,
                          .answer = kRefusals[IndexHash(seed, i) % kCount]});
  }
  return alternates;
}

std::vector<TofuRecord> RandomAnswerAlternates(
    const std::vector<TofuRecord>& forget,
    const std::vector<TofuRecord>& retain, uint64_t seed) {
  std::vector<TofuRecord> alternates;
  if (retain.empty()) return alternates;
  for (size_t i = 0; i < forget.size(); ++i) {
    alternates.push_back(
        {.question = forget[i].question,
         .answer = retain[IndexHash(seed, i) % retain.size()].answer});
  }
  return alternates;
}

absl::StatusOr<TrainingSummary> RunUnlearning(LlamaForCausalLM& model,
                                              const UnlearningData& data,
                                              const UnlearningOptions& options,
                                              const UnlearningHooks& hooks) {
  RETURN_IF_ERROR(ValidateObjectiveParams(options.method, options.params));
  const ObjectiveNeeds needs = MethodNeeds(options.method, options.params);
  RETURN_IF_ERROR(ValidateData(options.method, needs, data));
  if (options.method == UnlearningMethod::kPga) {
    return RunPga(model, data, options, hooks);
  }

  std::shared_ptr<LlamaForCausalLM> reference;
  if (needs.reference_model && HasLora(model)) {
    // Under LoRA the frozen base is the reference: the objective runs the
    // same model with its adapters off (no second copy). Not owned.
    reference = std::shared_ptr<LlamaForCausalLM>(
        std::shared_ptr<LlamaForCausalLM>(), &model);
  } else if (needs.reference_model) {
    const at::ScalarType dtype =
        options.bf16_reference
            ? at::kBFloat16
            : model.named_parameters().begin()->value().scalar_type();
    ASSIGN_OR_RETURN(reference, FrozenCopy(model, dtype));
  }
  std::optional<ReferenceLogProbCache> forget_reference, alternate_reference;
  if (needs.reference_log_probs) {
    const std::string& path = options.reference_cache_path;
    ASSIGN_OR_RETURN(forget_reference,
                     CachedOrComputed(model, data.forget, data.pad_id,
                                      options.reference_batch_size, path,
                                      options.reference_identity,
                                      options.training.loss_chunk_tokens));
    if (needs.alternate_answers) {
      ASSIGN_OR_RETURN(
          alternate_reference,
          CachedOrComputed(
              model, data.alternate, data.pad_id, options.reference_batch_size,
              path.empty() ? path : path + ".alternate",
              options.reference_identity, options.training.loss_chunk_tokens));
    }
  }
  const TrainingOptions& training = options.training;
  std::unique_ptr<UnlearningObjective> objective;
  std::shared_ptr<const RilaInit> rila;
  if (options.method == UnlearningMethod::kReglu) {
    // Before training, resumed or not: a checkpoint under LoRA holds the
    // adapters, not the base weights RILA changes.
    ASSIGN_OR_RETURN(
        rila, RilaInitialize(model, data.forget, data.retain,
                             {.beta_r = options.params.reglu_beta_r,
                              .retain_rank = options.params.reglu_retain_rank,
                              .samples = options.params.reglu_samples,
                              .seed = training.seed,
                              .batch_size = training.per_device_batch_size,
                              .pad_id = data.pad_id,
                              .rank = training.rank,
                              .world_size = std::max(training.world_size, 1),
                              .averager = hooks.averager}));
    ASSIGN_OR_RETURN(objective, MakeRegluObjective(options.params, rila,
                                                   training.loss_chunk_tokens));
  } else {
    ASSIGN_OR_RETURN(
        objective,
        MakeObjective(options.method, options.params, reference, hooks.averager,
                      training.loss_chunk_tokens, options.pack_row_length));
  }

  const int64_t forget_size = static_cast<int64_t>(data.forget.size());
  RetainSampler retain_sampler(
      static_cast<int64_t>(data.retain.size()), training.seed ^ 0x5eedull,
      training.rank, training.world_size,
      (forget_size + std::max(training.world_size, 1) - 1) /
          std::max(training.world_size, 1),
      training.per_device_batch_size);
  const at::Device device = model.device();
  auto loss =
      [&](const std::vector<int64_t>& indices,
          const StepContext& context) -> absl::StatusOr<MicroBatchLoss> {
    UnlearningBatch batch;
    RETURN_IF_ERROR(CallTorch("collating an unlearning batch", [&] {
      batch.forget = Collate(data.forget, indices, data.pad_id).To(device);
      if (needs.retain_batch) {
        batch.retain =
            Collate(data.retain,
                    retain_sampler.For(context.epoch, context.micro_batch,
                                       static_cast<int64_t>(indices.size())),
                    data.pad_id)
                .To(device);
      }
      if (needs.alternate_answers) {
        batch.alternate =
            Collate(data.alternate, indices, data.pad_id).To(device);
      }
      if (forget_reference.has_value()) {
        batch.forget_reference_log_probs =
            forget_reference->Lookup(indices).to(device);
      }
      if (alternate_reference.has_value()) {
        batch.alternate_reference_log_probs =
            alternate_reference->Lookup(indices).to(device);
      }
    }));
    batch.step = context.step;
    batch.learning_rate = context.learning_rate;
    CpuBf16AutocastGuard autocast(training.bf16_autocast);
    return objective->Loss(model, batch);
  };
  ASSIGN_OR_RETURN(
      TrainingSummary summary,
      RunTraining(model, forget_size, training, loss, hooks.training));
  if (rila != nullptr) RETURN_IF_ERROR(UnfoldRila(model, *rila));
  return summary;
}

}  // namespace lethe
