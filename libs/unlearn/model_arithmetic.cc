#include "libs/unlearn/model_arithmetic.h"

#include <torch/torch.h>

#include <cmath>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "libs/status/torch_status.h"

namespace lethe {
namespace {

std::string ShapeText(const at::Tensor& tensor) {
  std::string text = "[";
  for (int64_t i = 0; i < tensor.dim(); ++i) {
    absl::StrAppend(&text, i == 0 ? "" : ", ", tensor.size(i));
  }
  return text + "]";
}

}  // namespace

absl::Status ApplyModelStateArithmetic(const ModelStates& states, double alpha,
                                       double beta) {
  if (!std::isfinite(alpha) || alpha < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("MSA alpha must be finite and >= 0, got ", alpha));
  }
  if (!std::isfinite(beta) || beta < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("MSA beta must be finite and >= 0, got ", beta));
  }
  const auto target = states.target.named_parameters();
  struct Source {
    const char* role;
    torch::OrderedDict<std::string, at::Tensor> parameters;
  };
  const std::vector<Source> sources = {
      {"theta_0 (the base)", states.base.named_parameters()},
      {"theta_1 (tuned on the forget set)",
       states.forget_tuned.named_parameters()},
      {"theta_2 (tuned on the retain set)",
       states.retain_tuned.named_parameters()},
  };
  for (const Source& source : sources) {
    if (source.parameters.size() != target.size()) {
      return absl::FailedPreconditionError(
          absl::StrCat(source.role, " has ", source.parameters.size(),
                       " parameters, the model to unlearn ", target.size()));
    }
    for (const auto& parameter : target) {
      const at::Tensor* other = source.parameters.find(parameter.key());
      if (other == nullptr) {
        return absl::FailedPreconditionError(absl::StrCat(
            source.role, " has no parameter \"", parameter.key(), "\""));
      }
      if (!other->sizes().equals(parameter.value().sizes())) {
        return absl::FailedPreconditionError(absl::StrCat(
            source.role, ": parameter \"", parameter.key(), "\" is ",
            ShapeText(*other), ", the model to unlearn's is ",
            ShapeText(parameter.value())));
      }
    }
  }
  return CallTorch("model state arithmetic", [&] {
    torch::NoGradGuard no_grad;
    for (const auto& parameter : target) {
      at::Tensor value = parameter.value();
      const at::ScalarType compute =
          value.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
      auto get = [&](const Source& source) {
        return source.parameters[parameter.key()].to(value.device(), compute);
      };
      // Out of place throughout: to() returns the parameter itself when it
      // already has the compute dtype, and the sources must stay as they are.
      const at::Tensor base = get(sources[0]);
      const at::Tensor result = value.to(compute) -
                                alpha * (get(sources[1]) - base) +
                                beta * (get(sources[2]) - base);
      value.copy_(result);
    }
  });
}

}  // namespace lethe
