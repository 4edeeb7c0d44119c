// Activation checkpointing (gradient checkpointing) for one function of one
// tensor, as torch.utils.checkpoint does it (LibTorch's C++ API has none):
//
//   at::Tensor y = CheckpointedCall(
//       [layer](const at::Tensor& h) { return layer->Forward(h); }, x,
//       layer->parameters());
//
// The forward pass runs `function` without recording a graph, so none of
// its intermediate tensors are kept; only `input` is saved. The backward
// pass runs `function` again on a detached copy of `input`, with gradients
// on, and differentiates that (torch::autograd::grad) with respect to the
// input and to each tensor of `parameters` that requires a gradient. Those
// gradients are returned to the autograd engine as the gradients of the
// call's inputs, so parameters accumulate them in .grad exactly as they
// would without checkpointing (and torch::autograd::grad over a graph
// containing the call returns them too).
//
// Contract:
//   - `parameters` must list every tensor that `function` uses and that may
//     need a gradient (a module's parameters()); gradients of tensors it
//     captures without listing them are lost. Tensors that require no
//     gradient (frozen weights, masks) may be listed or not.
//   - `function` must compute the same thing when called again: the CPU
//     random generator (and, for CUDA inputs, the input device's generator)
//     is set back to its state at the forward pass for the recomputation and
//     restored afterwards, so dropout draws the same masks; the CPU and CUDA
//     autocast settings of the forward pass are reapplied. Anything else it
//     reads (a module's train/eval flag, an adapter switch) must not change
//     between the forward and the backward pass.
//   - Differentiable once: a backward pass with create_graph=true (double
//     backward, e.g. Hessian-vector products) throws c10::Error. Callers that
//     need it (OFMU) must not enable checkpointing; job validation refuses the
//     combination.
//   - When grad mode is off, or neither `input` nor any parameter requires a
//     gradient, `function(input)` is returned as is.
// Errors are c10::Error (thrown), as from any LibTorch operation.
#ifndef LETHE_LIBS_MODEL_ACTIVATION_CHECKPOINT_H_
#define LETHE_LIBS_MODEL_ACTIVATION_CHECKPOINT_H_

#include <torch/types.h>

#include <functional>
#include <vector>

namespace lethe {

at::Tensor CheckpointedCall(
    std::function<at::Tensor(const at::Tensor&)> function,
    const at::Tensor& input, const std::vector<at::Tensor>& parameters);

}  // namespace lethe

#endif  // LETHE_LIBS_MODEL_ACTIVATION_CHECKPOINT_H_
