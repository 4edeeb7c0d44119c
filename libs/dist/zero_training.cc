#include "libs/dist/zero_training.h"

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "libs/dist/sharded_optimizer.h"
#include "libs/status/status_macros.h"
#include "libs/status/torch_status.h"

namespace lethe {
namespace {

class ZeroOptimizer : public ShardedTrainingOptimizer {
 public:
  ZeroOptimizer(CollectiveGroup& group, std::unique_ptr<ShardedAdamW> optimizer,
                at::Device device)
      : group_(group), optimizer_(std::move(optimizer)), device_(device) {}

  absl::Status PrepareForBackward() override {
    return optimizer_->PrepareForBackward();
  }
  absl::Status ReduceGradients() override {
    return optimizer_->ReduceGradients();
  }
  absl::StatusOr<double> Step(double learning_rate,
                              double max_grad_norm) override {
    return optimizer_->Step(learning_rate, max_grad_norm);
  }
  absl::Status SaveShard(const std::string& path) override {
    return optimizer_->Save(path);
  }
  absl::Status LoadShard(const std::string& path) override {
    return optimizer_->Load(path);
  }
  absl::StatusOr<bool> AllRanksOk(bool ok) override {
    std::vector<at::Tensor> failures;
    RETURN_IF_ERROR(CallTorch("counting the ranks that failed", [&] {
      failures.push_back(
          torch::full({1}, ok ? 0.0 : 1.0,
                      at::TensorOptions().dtype(at::kFloat).device(device_)));
    }));
    RETURN_IF_ERROR(group_.AllReduceSum(failures));
    return CallTorch("reading the failures",
                     [&] { return failures.front().item<double>() == 0; });
  }

 private:
  CollectiveGroup& group_;
  std::unique_ptr<ShardedAdamW> optimizer_;
  at::Device device_;
};

}  // namespace

ShardedOptimizerFactory ZeroOptimizerFactory(CollectiveGroup& group,
                                             int64_t bucket_bytes) {
  return [&group, bucket_bytes](
             const std::vector<TrainableParameter>& parameters, int zero_stage)
             -> absl::StatusOr<std::unique_ptr<ShardedTrainingOptimizer>> {
    std::vector<ShardedParameter> sharded;
    for (const TrainableParameter& parameter : parameters) {
      sharded.push_back({.name = parameter.name,
                         .tensor = parameter.tensor,
                         .weight_decay = parameter.weight_decay});
    }
    if (sharded.empty()) {
      return absl::InvalidArgumentError("ZeRO with no trainable parameters");
    }
    const at::Device device = sharded.front().tensor.device();
    ASSIGN_OR_RETURN(std::unique_ptr<ShardedAdamW> optimizer,
                     ShardedAdamW::Create(
                         group, std::move(sharded),
                         {.stage = zero_stage, .bucket_bytes = bucket_bytes}));
    return std::make_unique<ZeroOptimizer>(group, std::move(optimizer), device);
  };
}

}  // namespace lethe
