#include "libs/dist/gradient_ready_hooks.h"

#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace lethe {

class GradientReadyHooks::Hook : public torch::autograd::FunctionPostHook {
 public:
  Hook(const std::function<void(size_t)>* on_ready, size_t index)
      : on_ready_(on_ready), index_(index) {}

  torch::autograd::variable_list operator()(
      const torch::autograd::variable_list& outputs,
      const torch::autograd::variable_list& /*inputs*/) override {
    (*on_ready_)(index_);
    return outputs;
  }

 private:
  const std::function<void(size_t)>* on_ready_;
  size_t index_;
};

absl::StatusOr<std::unique_ptr<GradientReadyHooks>> GradientReadyHooks::Install(
    const std::vector<at::Tensor>& parameters,
    std::function<void(size_t)> on_ready) {
  for (size_t i = 0; i < parameters.size(); ++i) {
    if (!parameters[i].defined() || !parameters[i].requires_grad() ||
        !parameters[i].is_leaf()) {
      return absl::InvalidArgumentError(
          absl::StrCat("parameter ", i,
                       " is not a leaf tensor that requires a gradient, so it "
                       "has no gradient accumulator to hook"));
    }
  }
  std::unique_ptr<GradientReadyHooks> hooks(
      new GradientReadyHooks(std::move(on_ready)));
  for (size_t i = 0; i < parameters.size(); ++i) {
    std::shared_ptr<torch::autograd::Node> accumulator =
        torch::autograd::impl::grad_accumulator(parameters[i]);
    if (accumulator == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("parameter ", i, " has no gradient accumulator"));
    }
    hooks->hook_keys_.push_back(accumulator->add_post_hook(
        std::make_unique<Hook>(&hooks->on_ready_, i)));
    hooks->accumulators_.push_back(std::move(accumulator));
  }
  return hooks;
}

GradientReadyHooks::~GradientReadyHooks() {
  for (size_t i = 0; i < accumulators_.size(); ++i) {
    accumulators_[i]->del_post_hook(hook_keys_[i]);
  }
}

}  // namespace lethe
