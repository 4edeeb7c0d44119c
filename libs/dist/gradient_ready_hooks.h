// Tells its owner each time autograd has accumulated a parameter's gradient:
// a post-hook on every parameter's AccumulateGrad node calls
// `on_ready(index)` (the parameter's index in the list given) on the
// thread running the backward pass, for as long as the object lives; the
// destructor removes the hooks. The overlapped gradient all-reduce and
// ZeRO 2's sharded reduce start their buckets from it.
//
//   ASSIGN_OR_RETURN(std::unique_ptr<GradientReadyHooks> hooks,
//                    GradientReadyHooks::Install(
//                        parameters, [this](size_t i) { OnReady(i); }));
//
// Parameters must be leaves that require a gradient (else INVALID_ARGUMENT
// naming the index). A parameter whose AccumulateGrad does not run in a
// backward pass (unused, or a pass that computes no parameter gradient, as
// torch::autograd::grad does) is not reported. The owner destroys the
// hooks before whatever `on_ready` uses.
#ifndef LETHE_LIBS_DIST_GRADIENT_READY_HOOKS_H_
#define LETHE_LIBS_DIST_GRADIENT_READY_HOOKS_H_

#include <torch/csrc/autograd/function.h>
#include <torch/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"

namespace lethe {

class GradientReadyHooks {
 public:
  static absl::StatusOr<std::unique_ptr<GradientReadyHooks>> Install(
      const std::vector<at::Tensor>& parameters,
      std::function<void(size_t)> on_ready);
  ~GradientReadyHooks();
  GradientReadyHooks(const GradientReadyHooks&) = delete;
  GradientReadyHooks& operator=(const GradientReadyHooks&) = delete;

  // The parameters' AccumulateGrad nodes, in the order given.
  const std::vector<std::shared_ptr<torch::autograd::Node>>& accumulators()
      const {
    return accumulators_;
  }

 private:
  class Hook;
  explicit GradientReadyHooks(std::function<void(size_t)> on_ready)
      : on_ready_(std::move(on_ready)) {}

  std::function<void(size_t)> on_ready_;
  // Kept alive so that the hooks stay on the nodes the engine uses.
  std::vector<std::shared_ptr<torch::autograd::Node>> accumulators_;
  std::vector<uintptr_t> hook_keys_;
};

}  // namespace lethe

#endif  // LETHE_LIBS_DIST_GRADIENT_READY_HOOKS_H_
