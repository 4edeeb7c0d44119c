#include "libs/unlearn/ofmu.h"

#include <torch/csrc/autograd/autograd.h>

#include <cmath>
#include <utility>

#include "libs/loss/chunked_log_probs.h"
#include "libs/status/status_macros.h"
#include "libs/status/torch_status.h"

namespace lethe {
namespace {

using Vectors = std::vector<at::Tensor>;

// d loss / d parameters; zeros for parameters the loss does not reach.
Vectors Gradient(const at::Tensor& loss, const Vectors& parameters,
                 bool create_graph) {
  Vectors gradients = torch::autograd::grad(
      {loss}, parameters, /*grad_outputs=*/{}, /*retain_graph=*/create_graph,
      create_graph, /*allow_unused=*/true);
  for (size_t i = 0; i < gradients.size(); ++i) {
    if (!gradients[i].defined()) gradients[i] = at::zeros_like(parameters[i]);
  }
  return gradients;
}

Vectors Detached(const Vectors& tensors) {
  Vectors detached;
  for (const at::Tensor& tensor : tensors) {
    detached.push_back(tensor.detach().clone());
  }
  return detached;
}

at::Tensor Dot(const Vectors& x, const Vectors& y) {
  at::Tensor sum = at::zeros({}, x[0].options().dtype(at::kDouble));
  for (size_t i = 0; i < x.size(); ++i) {
    sum = sum + (x[i].to(at::kDouble) * y[i].to(at::kDouble)).sum();
  }
  return sum;
}

void AddInPlace(const Vectors& parameters, const Vectors& direction,
                double scale) {
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < parameters.size(); ++i) {
    parameters[i].add_(direction[i], scale);
  }
}

Vectors Scaled(const Vectors& x, double scale) {
  Vectors result;
  for (const at::Tensor& tensor : x) result.push_back(tensor * scale);
  return result;
}

Vectors Sum(const Vectors& x, const Vectors& y) {
  Vectors result;
  for (size_t i = 0; i < x.size(); ++i) result.push_back(x[i] + y[i]);
  return result;
}

// CallTorch around a function that itself returns a StatusOr.
template <typename T>
absl::StatusOr<T> Flatten(absl::StatusOr<absl::StatusOr<T>> nested) {
  if (!nested.ok()) return nested.status();
  return *std::move(nested);
}

absl::StatusOr<Vectors> Averaged(Vectors tensors,
                                 const TensorAverager& averager) {
  if (averager) RETURN_IF_ERROR(averager(tensors));
  return tensors;
}

}  // namespace

std::vector<at::Tensor> TrainableParameters(torch::nn::Module& model) {
  Vectors parameters;
  for (const at::Tensor& parameter : model.parameters()) {
    if (parameter.requires_grad()) parameters.push_back(parameter);
  }
  return parameters;
}

std::vector<at::Tensor> HessianVectorProduct(
    const ScalarLossFn& loss, const std::vector<at::Tensor>& parameters,
    const std::vector<at::Tensor>& vector) {
  const Vectors gradient = Gradient(loss(), parameters, /*create_graph=*/true);
  return Gradient(Dot(gradient, Detached(vector)), parameters,
                  /*create_graph=*/false);
}

std::vector<at::Tensor> FiniteDifferenceHvp(
    const ScalarLossFn& loss, const std::vector<at::Tensor>& parameters,
    const std::vector<at::Tensor>& vector, double epsilon) {
  const double norm = std::sqrt(Dot(vector, vector).item<double>());
  if (norm == 0) {
    Vectors zeros;
    for (const at::Tensor& parameter : parameters) {
      zeros.push_back(at::zeros_like(parameter));
    }
    return zeros;
  }
  const double step = epsilon / norm;
  AddInPlace(parameters, vector, step);
  const Vectors plus = Gradient(loss(), parameters, false);
  AddInPlace(parameters, vector, -2 * step);
  const Vectors minus = Gradient(loss(), parameters, false);
  AddInPlace(parameters, vector, step);
  Vectors product;
  for (size_t i = 0; i < plus.size(); ++i) {
    product.push_back((plus[i] - minus[i]) / (2 * step));
  }
  return product;
}

namespace {

absl::StatusOr<PhiGradient> PhiGradientOrError(
    const ScalarLossFn& forget_loss, const ScalarLossFn& retain_loss,
    const std::vector<at::Tensor>& parameters,
    const PhiGradientOptions& options) {
  const bool exact = !options.first_order;
  PhiGradient result;
  const at::Tensor forget = forget_loss();
  const at::Tensor retain = retain_loss();
  result.forget_loss = forget.item<double>();
  result.retain_loss = retain.item<double>();
  const Vectors forget_gradient = Gradient(forget, parameters, exact);
  const Vectors retain_gradient = Gradient(retain, parameters, exact);
  ASSIGN_OR_RETURN(const Vectors global_forget,
                   Averaged(Detached(forget_gradient), options.averager));
  ASSIGN_OR_RETURN(const Vectors global_retain,
                   Averaged(Detached(retain_gradient), options.averager));

  // cos = <f, r> / (|f| |r|); d cos/d f = r/(|f||r|) - cos f/|f|^2, and
  // symmetrically for r.
  const double forget_norm =
      std::sqrt(Dot(global_forget, global_forget).item<double>());
  const double retain_norm =
      std::sqrt(Dot(global_retain, global_retain).item<double>());
  const bool degenerate = forget_norm == 0 || retain_norm == 0;
  const double norms = forget_norm * retain_norm;
  result.cosine =
      degenerate ? 0 : Dot(global_forget, global_retain).item<double>() / norms;

  Vectors phi = forget_gradient;
  if (options.beta != 0 && !degenerate) {
    const Vectors a = Sum(
        Scaled(global_retain, 1 / norms),
        Scaled(global_forget, -result.cosine / (forget_norm * forget_norm)));
    const Vectors b = Sum(
        Scaled(global_forget, 1 / norms),
        Scaled(global_retain, -result.cosine / (retain_norm * retain_norm)));
    Vectors curvature;
    if (exact) {
      const at::Tensor contraction =
          Dot(forget_gradient, a) + Dot(retain_gradient, b);
      curvature = Gradient(contraction, parameters, options.create_graph);
    } else {
      curvature = Sum(FiniteDifferenceHvp(forget_loss, parameters, a),
                      FiniteDifferenceHvp(retain_loss, parameters, b));
    }
    phi = Sum(phi, Scaled(curvature, -options.beta));
  }
  if (!options.create_graph) phi = Detached(phi);
  result.local = phi;
  ASSIGN_OR_RETURN(result.averaged, Averaged(Detached(phi), options.averager));
  return result;
}

}  // namespace

absl::StatusOr<PhiGradient> ComputePhiGradient(
    const ScalarLossFn& forget_loss, const ScalarLossFn& retain_loss,
    const std::vector<at::Tensor>& parameters,
    const PhiGradientOptions& options) {
  return Flatten(CallTorch("OFMU gradient of Phi", [&] {
    return PhiGradientOrError(forget_loss, retain_loss, parameters, options);
  }));
}

OfmuObjective::OfmuObjective(const ObjectiveParams& params,
                             TensorAverager averager, int64_t loss_chunk_tokens)
    : params_(params),
      averager_(std::move(averager)),
      loss_chunk_tokens_(loss_chunk_tokens) {}

ObjectiveNeeds OfmuObjective::needs() const {
  return MethodNeeds(UnlearningMethod::kOfmu, params_);
}

absl::StatusOr<MicroBatchLoss> OfmuObjective::Loss(
    LlamaForCausalLM& model, const UnlearningBatch& batch) {
  if (!batch.retain.has_value()) {
    return absl::InvalidArgumentError("OFMU needs a retain batch");
  }
  const QaBatch& retain = *batch.retain;
  const Vectors parameters = TrainableParameters(model);
  const ScalarLossFn forget_loss = [&] {
    return ModelTokenMeanNll(model, batch.forget, loss_chunk_tokens_);
  };
  const ScalarLossFn retain_loss = [&] {
    return ModelTokenMeanNll(model, retain, loss_chunk_tokens_);
  };
  const double inner_rate = params_.ofmu_inner_learning_rate > 0
                                ? params_.ofmu_inner_learning_rate
                                : batch.learning_rate;
  const double rho =
      params_.ofmu_rho * std::pow(params_.ofmu_rho_growth, batch.step);

  MicroBatchLoss out;
  out.tokens = batch.forget.real_tokens() + retain.real_tokens();
  PhiGradientOptions options{.beta = params_.beta,
                             .first_order = params_.ofmu_first_order,
                             .averager = averager_};
  for (int t = 0; t < params_.ofmu_inner_steps; ++t) {
    ASSIGN_OR_RETURN(
        const PhiGradient inner,
        ComputePhiGradient(forget_loss, retain_loss, parameters, options));
    AddInPlace(parameters, inner.averaged, inner_rate);
    out.components["inner_forget_nll"] = inner.forget_loss;
    out.components["inner_cosine"] = inner.cosine;
  }
  return Flatten(
      CallTorch("OFMU outer step", [&]() -> absl::StatusOr<MicroBatchLoss> {
        options.create_graph = !params_.ofmu_first_order;
        at::Tensor penalty_surrogate;
        double penalty = 0;
        if (rho == 0) {
          penalty_surrogate = at::zeros({}, parameters[0].options());
        } else {
          ASSIGN_OR_RETURN(const PhiGradient outer,
                           ComputePhiGradient(forget_loss, retain_loss,
                                              parameters, options));
          penalty = rho * Dot(outer.averaged, outer.averaged).item<double>();
          out.components["forget_nll"] = outer.forget_loss;
          out.components["cosine"] = outer.cosine;
          if (params_.ofmu_first_order) {
            // d/dtheta ||grad Phi||^2 = 2 H_Phi grad Phi, approximated by a
            // central difference of grad Phi along itself; the linear surrogate
            // <theta, w> carries that vector w into the backward pass.
            const double norm = std::sqrt(penalty / rho);
            const double step = norm > 0 ? 1e-3 / norm : 0;
            Vectors curvature = Scaled(outer.averaged, 0);
            if (step > 0) {
              AddInPlace(parameters, outer.averaged, step);
              ASSIGN_OR_RETURN(PhiGradient plus,
                               ComputePhiGradient(forget_loss, retain_loss,
                                                  parameters, options));
              AddInPlace(parameters, outer.averaged, -2 * step);
              ASSIGN_OR_RETURN(PhiGradient minus,
                               ComputePhiGradient(forget_loss, retain_loss,
                                                  parameters, options));
              AddInPlace(parameters, outer.averaged, step);
              curvature = Scaled(Sum(plus.local, Scaled(minus.local, -1)),
                                 1 / (2 * step));
            }
            penalty_surrogate = Dot(parameters, Scaled(curvature, 2 * rho));
          } else {
            // Gradient 2 rho H_Phi v with v the averaged grad Phi: this rank's
            // share of the exact penalty gradient.
            penalty_surrogate = 2 * rho * Dot(outer.local, outer.averaged);
          }
        }
        // After the finite differences above, which move the parameters in
        // place and so would invalidate an earlier graph.
        const at::Tensor retain_value = retain_loss();
        out.components["retain_nll"] = retain_value.item<double>();
        out.components["penalty"] = penalty;
        out.components["rho"] = rho;
        out.loss = retain_value + penalty_surrogate.to(retain_value.dtype()) -
                   penalty_surrogate.detach().to(retain_value.dtype()) +
                   penalty;
        return out;
      }));
}

}  // namespace lethe
