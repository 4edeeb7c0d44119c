#include "libs/model/activation_checkpoint.h"

#include <ATen/Context.h>
#include <ATen/autocast_mode.h>
#include <ATen/core/Generator.h>
#include <ATen/core/ivalue.h>
#include <torch/autograd.h>
#include <torch/version.h>

#include <mutex>
#include <optional>
#include <utility>

namespace lethe {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// The autocast settings of the CPU and of CUDA, read and written with the
// API of the LibTorch at hand (2.4 made it device-generic, as in
// llama_model.cc).
struct AutocastState {
  bool cpu_enabled = false;
  at::ScalarType cpu_dtype = at::kBFloat16;
  bool cuda_enabled = false;
  at::ScalarType cuda_dtype = at::kHalf;

  static AutocastState Current() {
    AutocastState state;
#if TORCH_VERSION_MAJOR > 2 || \
    (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
    state.cpu_enabled = at::autocast::is_autocast_enabled(at::kCPU);
    state.cpu_dtype = at::autocast::get_autocast_dtype(at::kCPU);
    state.cuda_enabled = at::autocast::is_autocast_enabled(at::kCUDA);
    state.cuda_dtype = at::autocast::get_autocast_dtype(at::kCUDA);
#else
    state.cpu_enabled = at::autocast::is_cpu_enabled();
    state.cpu_dtype = at::autocast::get_autocast_cpu_dtype();
    state.cuda_enabled = at::autocast::is_enabled();
    state.cuda_dtype = at::autocast::get_autocast_gpu_dtype();
#endif
    return state;
  }

  void Apply() const {
#if TORCH_VERSION_MAJOR > 2 || \
    (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
    at::autocast::set_autocast_enabled(at::kCPU, cpu_enabled);
    at::autocast::set_autocast_dtype(at::kCPU, cpu_dtype);
    at::autocast::set_autocast_enabled(at::kCUDA, cuda_enabled);
    at::autocast::set_autocast_dtype(at::kCUDA, cuda_dtype);
#else
    at::autocast::set_cpu_enabled(cpu_enabled);
    at::autocast::set_autocast_cpu_dtype(cpu_dtype);
    at::autocast::set_enabled(cuda_enabled);
    at::autocast::set_autocast_gpu_dtype(cuda_dtype);
#endif
  }
};

// Applies `state` for its lifetime, then restores the thread's settings
// (and clears autocast's cast cache, as leaving an autocast region does).
class ScopedAutocast {
 public:
  explicit ScopedAutocast(const AutocastState& state)
      : previous_(AutocastState::Current()),
        nested_(state.cpu_enabled || state.cuda_enabled) {
    state.Apply();
    if (nested_) at::autocast::increment_nesting();
  }
  ~ScopedAutocast() {
    if (nested_ && at::autocast::decrement_nesting() == 0) {
      at::autocast::clear_cache();
    }
    previous_.Apply();
  }
  ScopedAutocast(const ScopedAutocast&) = delete;
  ScopedAutocast& operator=(const ScopedAutocast&) = delete;

 private:
  AutocastState previous_;
  bool nested_;
};

// The default generators' states: the CPU's and, for an input on an
// accelerator, that device's.
struct RandomState {
  at::Tensor cpu;
  std::optional<at::Device> device;
  at::Tensor device_state;
};

at::Tensor GeneratorState(const at::Device& device) {
  at::Generator generator = at::globalContext().defaultGenerator(device);
  std::lock_guard<std::mutex> lock(generator.mutex());
  return generator.get_state();
}

void SetGeneratorState(const at::Device& device, const at::Tensor& state) {
  at::Generator generator = at::globalContext().defaultGenerator(device);
  std::lock_guard<std::mutex> lock(generator.mutex());
  generator.set_state(state);
}

RandomState CaptureRandomState(std::optional<at::Device> device) {
  RandomState state;
  state.cpu = GeneratorState(at::Device(at::kCPU));
  if (device.has_value()) {
    state.device = device;
    state.device_state = GeneratorState(*device);
  }
  return state;
}

void RestoreRandomState(const RandomState& state) {
  SetGeneratorState(at::Device(at::kCPU), state.cpu);
  if (state.device.has_value()) {
    SetGeneratorState(*state.device, state.device_state);
  }
}

// Sets the generators to `saved` for its lifetime, then puts back the
// states they had, so recomputing consumes no random numbers.
class ScopedRandomState {
 public:
  explicit ScopedRandomState(const RandomState& saved)
      : current_(CaptureRandomState(saved.device)) {
    RestoreRandomState(saved);
  }
  ~ScopedRandomState() { RestoreRandomState(current_); }
  ScopedRandomState(const ScopedRandomState&) = delete;
  ScopedRandomState& operator=(const ScopedRandomState&) = delete;

 private:
  RandomState current_;
};

// What the backward pass needs besides the saved input.
struct CheckpointState : torch::CustomClassHolder {
  std::function<at::Tensor(const at::Tensor&)> function;
  std::vector<at::Tensor> parameters;  // Those that require a gradient.
  RandomState random;
  AutocastState autocast;
};

struct CheckpointFunction : torch::autograd::Function<CheckpointFunction> {
  // Runs under no-grad (Function::apply turns grad mode off). `parameters`
  // are inputs only so that the engine routes their gradients.
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& input,
                            at::TensorList /*parameters*/,
                            const c10::intrusive_ptr<CheckpointState>& state) {
    ctx->save_for_backward({input});
    ctx->saved_data["state"] = at::IValue::make_capsule(state);
    return state->function(input);
  }

  static variable_list backward(AutogradContext* ctx,
                                variable_list grad_outputs) {
    TORCH_CHECK(!at::GradMode::is_enabled(),
                "activation checkpointing is differentiable only once: a "
                "backward pass with create_graph=true (double backward, "
                "Hessian-vector products) is not supported; turn "
                "activation checkpointing off for it");
    const c10::intrusive_ptr<CheckpointState> state =
        c10::static_intrusive_pointer_cast<CheckpointState>(
            ctx->saved_data["state"].toCapsule());
    const variable_list saved = ctx->get_saved_variables();
    const size_t count = state->parameters.size();

    const bool input_needs_grad = ctx->needs_input_grad(0);
    at::Tensor input = saved[0].detach();
    input.requires_grad_(input_needs_grad);
    at::Tensor output;
    {
      ScopedRandomState random(state->random);
      ScopedAutocast autocast(state->autocast);
      at::AutoGradMode grad_mode(true);
      output = state->function(input);
    }

    // Gradients for the input, each parameter, and the state (none).
    variable_list result(count + 2);
    std::vector<size_t> slots;
    variable_list wrt;
    if (input_needs_grad) {
      slots.push_back(0);
      wrt.push_back(input);
    }
    for (size_t i = 0; i < count; ++i) {
      if (ctx->needs_input_grad(i + 1)) {
        slots.push_back(i + 1);
        wrt.push_back(state->parameters[i]);
      }
    }
    if (wrt.empty() || !output.requires_grad()) return result;
    const variable_list grads = torch::autograd::grad(
        {output}, wrt, {grad_outputs[0]}, /*retain_graph=*/false,
        /*create_graph=*/false, /*allow_unused=*/true);
    for (size_t i = 0; i < slots.size(); ++i) result[slots[i]] = grads[i];
    return result;
  }
};

}  // namespace

at::Tensor CheckpointedCall(
    std::function<at::Tensor(const at::Tensor&)> function,
    const at::Tensor& input, const std::vector<at::Tensor>& parameters) {
  std::vector<at::Tensor> trainable;
  for (const at::Tensor& parameter : parameters) {
    if (parameter.requires_grad()) trainable.push_back(parameter);
  }
  if (!at::GradMode::is_enabled() ||
      (!input.requires_grad() && trainable.empty())) {
    return function(input);
  }
  auto state = c10::make_intrusive<CheckpointState>();
  state->function = std::move(function);
  state->parameters = trainable;
  state->random = CaptureRandomState(
      input.device().is_cpu() ? std::nullopt
                              : std::optional<at::Device>(input.device()));
  state->autocast = AutocastState::Current();
  return CheckpointFunction::apply(input, at::TensorList(trainable), state);
}

}  // namespace lethe
