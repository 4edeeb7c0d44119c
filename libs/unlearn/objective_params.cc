#include "libs/unlearn/objective_params.h"

#include <cmath>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "libs/status/status_macros.h"

namespace lethe {
namespace {

constexpr std::pair<UnlearningMethod, const char*> kMethodNames[] = {
    {UnlearningMethod::kGa, "GA"},
    {UnlearningMethod::kGradDiff, "GradDiff"},
    {UnlearningMethod::kNpo, "NPO"},
    {UnlearningMethod::kNpoRt, "NPO_RT"},
    {UnlearningMethod::kNpoKl, "NPO_KL"},
    {UnlearningMethod::kSimNpo, "SimNPO"},
    {UnlearningMethod::kIdkDpo, "IdkDPO"},
    {UnlearningMethod::kLlmu, "LLMU"},
    {UnlearningMethod::kOfmu, "OFMU"},
    {UnlearningMethod::kIhl, "IHL"},
    {UnlearningMethod::kMsa, "MSA"},
    {UnlearningMethod::kReglu, "REGLU"},
    {UnlearningMethod::kPga, "PGA"},
};

absl::Status CheckNonNegative(double value, const char* field) {
  if (!(value >= 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " must be >= 0, got ", value));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<UnlearningMethod> ParseUnlearningMethod(absl::string_view name) {
  for (const auto& [method, method_name] : kMethodNames) {
    if (absl::EqualsIgnoreCase(name, method_name)) return method;
  }
  std::string known;
  for (const auto& [method, method_name] : kMethodNames) {
    absl::StrAppend(&known, known.empty() ? "" : ", ", method_name);
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown unlearning method '", name, "' (known: ", known, ")"));
}

std::string RegluForgetLossName(RegluForgetLoss loss) {
  return loss == RegluForgetLoss::kIhl ? "ihl" : "gd";
}

std::string UnlearningMethodName(UnlearningMethod method) {
  for (const auto& [known, name] : kMethodNames) {
    if (known == method) return name;
  }
  return "UNKNOWN";
}

ObjectiveNeeds MethodNeeds(UnlearningMethod method,
                           const ObjectiveParams& params) {
  ObjectiveNeeds needs;
  switch (method) {
    case UnlearningMethod::kGa:
      break;
    case UnlearningMethod::kGradDiff:
      needs.retain_batch = true;
      needs.reference_model = params.retain_loss == RetainLoss::kKl;
      break;
    case UnlearningMethod::kNpo:
      needs.reference_log_probs = true;
      break;
    case UnlearningMethod::kNpoRt:
    case UnlearningMethod::kSimNpo:
      needs.retain_batch = true;
      needs.reference_log_probs = method == UnlearningMethod::kNpoRt;
      break;
    case UnlearningMethod::kNpoKl:
      needs.retain_batch = true;
      needs.reference_log_probs = true;
      needs.reference_model = true;
      break;
    case UnlearningMethod::kIdkDpo:
      needs.retain_batch = true;
      needs.reference_log_probs = true;
      needs.alternate_answers = true;
      break;
    case UnlearningMethod::kLlmu:
      needs.retain_batch = true;
      needs.alternate_answers = true;
      needs.reference_model = true;
      break;
    case UnlearningMethod::kOfmu:
    case UnlearningMethod::kIhl:
    case UnlearningMethod::kReglu:
      needs.retain_batch = true;
      break;
    case UnlearningMethod::kMsa:
      // The retain subsample theta_2 is tuned on; beta 0 drops it.
      needs.retain_batch = params.beta != 0;
      break;
    case UnlearningMethod::kPga:
      // Its clean examples are UnlearningData::holdout, not retain batches.
      break;
  }
  return needs;
}

ObjectiveParams DefaultObjectiveParams(UnlearningMethod method) {
  ObjectiveParams params;
  if (method == UnlearningMethod::kSimNpo) {
    params.beta = 4.5;
    params.gamma = 0.125;
  } else if (method == UnlearningMethod::kLlmu) {
    params.gamma = 0.5;
  } else if (method == UnlearningMethod::kMsa) {
    params.beta = 1.0;
  }
  return params;
}

absl::Status ValidateObjectiveParams(UnlearningMethod method,
                                     const ObjectiveParams& params) {
  const bool beta_divides = method == UnlearningMethod::kNpo ||
                            method == UnlearningMethod::kNpoRt ||
                            method == UnlearningMethod::kNpoKl ||
                            method == UnlearningMethod::kSimNpo ||
                            method == UnlearningMethod::kIdkDpo;
  if (beta_divides && !(params.beta > 0)) {
    return absl::InvalidArgumentError(absl::StrCat("beta must be > 0 for ",
                                                   UnlearningMethodName(method),
                                                   ", got ", params.beta));
  }
  RETURN_IF_ERROR(CheckNonNegative(params.alpha, "alpha"));
  RETURN_IF_ERROR(CheckNonNegative(params.gamma, "gamma"));
  RETURN_IF_ERROR(
      CheckNonNegative(params.random_answer_weight, "random_answer_weight"));
  if (method == UnlearningMethod::kMsa) {
    RETURN_IF_ERROR(CheckNonNegative(params.beta, "beta"));
    if (!std::isfinite(params.alpha) || !std::isfinite(params.beta)) {
      return absl::InvalidArgumentError(
          absl::StrCat("MSA's alpha and beta must be finite, got ",
                       params.alpha, " and ", params.beta));
    }
  }
  if (method == UnlearningMethod::kReglu) {
    if (!(params.reglu_beta_r >= 0 && params.reglu_beta_r <= 1)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "reglu_beta_r must be in [0, 1], got ", params.reglu_beta_r));
    }
    if (!(params.reglu_rol_weight >= 0 &&
          std::isfinite(params.reglu_rol_weight))) {
      return absl::InvalidArgumentError(
          absl::StrCat("reglu_rol_weight must be >= 0 and finite, got ",
                       params.reglu_rol_weight));
    }
    if (params.reglu_retain_rank < 1) {
      return absl::InvalidArgumentError(absl::StrCat(
          "reglu_retain_rank must be >= 1, got ", params.reglu_retain_rank));
    }
    if (params.reglu_samples < 1) {
      return absl::InvalidArgumentError(absl::StrCat(
          "reglu_samples must be >= 1, got ", params.reglu_samples));
    }
  }
  if (method == UnlearningMethod::kPga) {
    for (const auto& [value, field] :
         {std::pair{params.pga_align_weight, "pga_align_weight"},
          std::pair{params.pga_ce_weight, "pga_ce_weight"}}) {
      if (!(value >= 0 && std::isfinite(value))) {
        return absl::InvalidArgumentError(
            absl::StrCat(field, " must be >= 0 and finite, got ", value));
      }
    }
    if (params.pga_refit_every_epochs < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("pga_refit_every_epochs must be >= 1, got ",
                       params.pga_refit_every_epochs));
    }
    for (const int depth : params.pga_depths) {
      if (depth < 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("pga_depths must be >= 0, got ", depth));
      }
    }
    if (params.pga_projection_rank < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("pga_projection_rank must be >= 0, got ",
                       params.pga_projection_rank));
    }
  }
  if (method == UnlearningMethod::kOfmu) {
    RETURN_IF_ERROR(CheckNonNegative(params.beta, "beta"));
    RETURN_IF_ERROR(
        CheckNonNegative(params.ofmu_inner_steps, "ofmu_inner_steps"));
    RETURN_IF_ERROR(CheckNonNegative(params.ofmu_inner_learning_rate,
                                     "ofmu_inner_learning_rate"));
    RETURN_IF_ERROR(CheckNonNegative(params.ofmu_rho, "ofmu_rho"));
    if (!(params.ofmu_rho_growth >= 1)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "ofmu_rho_growth must be >= 1, got ", params.ofmu_rho_growth));
    }
  }
  return absl::OkStatus();
}

}  // namespace lethe
