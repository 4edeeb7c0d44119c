#include "libs/eval/memorization_probe.h"

#include <torch/torch.h>

#include <cmath>
#include <limits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "libs/status/status_macros.h"
#include "libs/status/torch_status.h"

namespace lethe {
namespace {

// sum(log(1 + e^f) - y f), stable for any f.
double LogisticLoss(const at::Tensor& f, const at::Tensor& y) {
  return (torch::clamp_min(f, 0) + torch::log1p(torch::exp(-f.abs())) - y * f)
      .sum()
      .item<double>();
}

absl::Status CheckRows(const at::Tensor& rows, const char* name) {
  if (!rows.defined() || rows.dim() != 2 || !rows.is_floating_point()) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, " must be a 2-D floating-point tensor"));
  }
  if (rows.size(1) == 0) {
    return absl::InvalidArgumentError(absl::StrCat(name, " has no features"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<LogisticProbe> FitLogisticProbe(const at::Tensor& rows,
                                               const at::Tensor& labels,
                                               const ProbeOptions& options) {
  RETURN_IF_ERROR(CheckRows(rows, "probe rows"));
  if (!labels.defined() || labels.dim() != 1 ||
      labels.size(0) != rows.size(0)) {
    return absl::InvalidArgumentError("probe labels must be 1-D, one per row");
  }
  if (!(options.c > 0) || !std::isfinite(options.c)) {
    return absl::InvalidArgumentError(
        absl::StrCat("probe C must be positive and finite, got ", options.c));
  }
  LogisticProbe probe;
  absl::Status status = CallTorch("fitting the memorisation probe", [&] {
    torch::NoGradGuard no_grad;
    const at::Tensor x = rows.detach().to(at::kCPU, at::kDouble);
    const at::Tensor y = labels.detach().to(at::kCPU, at::kDouble);
    const int64_t n = x.size(0);
    TORCH_CHECK(torch::logical_or(y == 0, y == 1).all().item<bool>(),
                "probe labels must be 0 or 1");
    const double positives = y.sum().item<double>();
    TORCH_CHECK(positives > 0 && positives < n,
                "probe labels need both classes");
    TORCH_CHECK(torch::isfinite(x).all().item<bool>(),
                "probe rows must be finite");

    probe.mean = x.mean(0);
    const at::Tensor deviation = x.std(0, /*unbiased=*/false);
    // scikit-learn treats a scale below 10 machine epsilons as constant.
    probe.scale =
        torch::where(deviation < 10 * std::numeric_limits<double>::epsilon(),
                     torch::ones_like(deviation), deviation);
    const at::Tensor z = (x - probe.mean) / probe.scale;

    // The weights lie in the row space of z: with K = z z^T = U L U^T and
    // F = U_r L_r^(1/2), w = z^T U_r L_r^(-1/2) beta and z w = F beta, so
    // ||w|| = ||beta|| and the problem has r + 1 unknowns.
    const at::Tensor kernel = torch::mm(z, z.t());
    auto [eigenvalues, eigenvectors] = torch::linalg_eigh(kernel);
    const double largest = eigenvalues.max().item<double>();
    const at::Tensor keep =
        eigenvalues >
        std::max(largest, 1.0) * n * std::numeric_limits<double>::epsilon();
    const at::Tensor kept_values = eigenvalues.index({keep});
    const at::Tensor kept_vectors =
        eigenvectors.index({torch::indexing::Slice(), keep});
    const at::Tensor features = kept_vectors * kept_values.sqrt();  // [n, r]
    const int64_t r = features.size(1);
    // Unknowns theta = (beta, bias); design matrix [F, 1].
    const at::Tensor design =
        torch::cat({features, torch::ones({n, 1}, at::kDouble)}, 1);
    const at::Tensor regularised = torch::cat(
        {torch::ones({r}, at::kDouble), torch::zeros({1}, at::kDouble)});
    const double c = options.c;
    auto objective = [&](const at::Tensor& theta) {
      const at::Tensor f = torch::mv(design, theta);
      return 0.5 * (regularised * theta * theta).sum().item<double>() +
             c * LogisticLoss(f, y);
    };
    at::Tensor theta = torch::zeros({r + 1}, at::kDouble);
    double value = objective(theta);
    for (int step = 0; step < options.max_newton_steps; ++step) {
      const at::Tensor p = torch::sigmoid(torch::mv(design, theta));
      const at::Tensor gradient =
          regularised * theta + c * torch::mv(design.t(), p - y);
      const at::Tensor curvature = p * (1 - p);
      const at::Tensor hessian = torch::diag(regularised) +
                                 c * torch::mm(design.t() * curvature, design);
      const at::Tensor direction =
          -torch::linalg_solve(hessian, gradient.unsqueeze(1)).squeeze(1);
      const double slope = torch::dot(gradient, direction).item<double>();
      probe.newton_steps = step + 1;
      if (-slope / 2 < options.tolerance) break;
      double t = 1;
      double next = objective(theta + direction);
      while (next > value + 0.25 * t * slope && t > 1e-12) {
        t /= 2;
        next = objective(theta + t * direction);
      }
      if (next >= value) break;  // No progress left at fp64 precision.
      theta = theta + t * direction;
      value = next;
    }
    const at::Tensor beta = theta.slice(0, 0, r);
    probe.weight =
        torch::mv(z.t(), torch::mv(kept_vectors, beta / kept_values.sqrt()));
    probe.bias = theta[r].item<double>();
  });
  if (!status.ok()) return absl::InvalidArgumentError(status.message());
  return probe;
}

at::Tensor ProbeProbabilities(const LogisticProbe& probe,
                              const at::Tensor& rows) {
  torch::NoGradGuard no_grad;
  const at::Tensor z =
      (rows.detach().to(at::kCPU, at::kDouble) - probe.mean) / probe.scale;
  return torch::sigmoid(torch::mv(z, probe.weight) + probe.bias);
}

at::Tensor ProbeDirection(const LogisticProbe& probe) {
  const at::Tensor direction = probe.weight / probe.scale;
  const double norm = direction.norm().item<double>();
  return norm > 0 ? direction / norm : direction;
}

absl::StatusOr<double> LeaveOnePairOutAccuracy(const at::Tensor& memorised,
                                               const at::Tensor& clean,
                                               const ProbeOptions& options) {
  RETURN_IF_ERROR(CheckRows(memorised, "memorised rows"));
  RETURN_IF_ERROR(CheckRows(clean, "clean rows"));
  if (!memorised.sizes().equals(clean.sizes())) {
    return absl::InvalidArgumentError(
        "memorised and clean rows must pair up (same shape)");
  }
  const int64_t pairs = memorised.size(0);
  if (pairs < 2) {
    return absl::InvalidArgumentError(
        "leave-one-pair-out needs at least 2 pairs");
  }
  const at::Tensor mem = memorised.detach().to(at::kCPU, at::kDouble);
  const at::Tensor cln = clean.detach().to(at::kCPU, at::kDouble);
  double correct = 0;
  for (int64_t i = 0; i < pairs; ++i) {
    const at::Tensor others =
        torch::cat({torch::arange(0, i), torch::arange(i + 1, pairs)});
    const at::Tensor rows =
        torch::cat({mem.index_select(0, others), cln.index_select(0, others)});
    const at::Tensor labels =
        torch::cat({torch::ones({pairs - 1}, at::kDouble),
                    torch::zeros({pairs - 1}, at::kDouble)});
    ASSIGN_OR_RETURN(const LogisticProbe probe,
                     FitLogisticProbe(rows, labels, options));
    const at::Tensor p =
        ProbeProbabilities(probe, torch::stack({mem[i], cln[i]}));
    correct += (p[0].item<double>() > 0.5 ? 1 : 0) +
               (p[1].item<double>() > 0.5 ? 0 : 1);
  }
  return correct / (2.0 * pairs);
}

}  // namespace lethe
