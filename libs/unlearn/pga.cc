#include "libs/unlearn/pga.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "libs/data/qa_batch.h"
#include "libs/eval/memorization_signature.h"
#include "libs/logging/logging.h"
#include "libs/loss/sequence_loss.h"
#include "libs/model/safetensors.h"
#include "libs/status/status_macros.h"
#include "libs/status/torch_status.h"
#include "nlohmann/json.hpp"

namespace lethe {
namespace {

int LabelTokens(const QaExample& example) {
  int count = 0;
  // Labels are shifted inside the loss: the first position predicts nothing.
  for (size_t t = 1; t < example.labels.size(); ++t) {
    if (example.labels[t] != kIgnoreIndex) ++count;
  }
  return count;
}

absl::Status CheckPairs(size_t memorised, size_t clean) {
  if (memorised != clean) {
    return absl::InvalidArgumentError(
        absl::StrCat("PGA needs one clean sequence per memorised one, got ",
                     memorised, " memorised and ", clean, " clean"));
  }
  if (memorised == 0) {
    return absl::InvalidArgumentError("PGA needs at least one pair");
  }
  return absl::OkStatus();
}

absl::Status CheckExamples(const std::vector<const QaExample*>& memorised,
                           const std::vector<const QaExample*>& clean) {
  RETURN_IF_ERROR(CheckPairs(memorised.size(), clean.size()));
  for (size_t i = 0; i < memorised.size(); ++i) {
    if (memorised[i]->input_ids.empty() || clean[i]->input_ids.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("PGA pair ", i, " has an empty sequence"));
    }
    if (LabelTokens(*clean[i]) == 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "clean sequence ", i,
          " has no label tokens: PGA's CE(clean) needs at least one"));
    }
  }
  return absl::OkStatus();
}

// Checks paired states by depth and that `depths` index them.
absl::Status CheckStates(const std::vector<at::Tensor>& memorised,
                         const std::vector<at::Tensor>& clean,
                         const std::vector<int>& depths) {
  if (memorised.empty() || memorised.size() != clean.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("memorised and clean states need the same depths, got ",
                     memorised.size(), " and ", clean.size()));
  }
  RETURN_IF_ERROR(
      ResolvePgaDepths(depths, static_cast<int64_t>(memorised.size()) - 1)
          .status());
  if (depths.empty()) {
    return absl::InvalidArgumentError("no depths chosen");
  }
  for (const int d : depths) {
    const at::Tensor& a = memorised[d];
    const at::Tensor& b = clean[d];
    if (!a.defined() || !b.defined() || a.dim() != 2 ||
        a.sizes() != b.sizes() || !a.is_floating_point() ||
        !b.is_floating_point()) {
      return absl::InvalidArgumentError(
          absl::StrCat("depth ", d,
                       ": memorised and clean states must be floating "
                       "[pairs, hidden] tensors of one shape"));
    }
    if (a.size(0) < 1 || a.size(1) < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("depth ", d, ": no pairs or no features"));
    }
  }
  return absl::OkStatus();
}

// Rows [2N, hidden] (memorised first) and labels [2N] (1 then 0), fp64.
std::pair<at::Tensor, at::Tensor> PooledRows(const at::Tensor& memorised,
                                             const at::Tensor& clean) {
  const at::Tensor rows = torch::cat({memorised.detach(), clean.detach()}, 0)
                              .to(at::kCPU, at::kDouble);
  const int64_t n = memorised.size(0);
  const at::Tensor labels = torch::cat(
      {torch::ones({n}, torch::kDouble), torch::zeros({n}, torch::kDouble)});
  return {rows, labels};
}

std::string ProbeFile(const std::string& dir, int epoch) {
  return (std::filesystem::path(dir) /
          absl::StrCat("pga-probes-epoch-", epoch, ".safetensors"))
      .string();
}

std::string TensorName(int depth, const char* part) {
  return absl::StrCat("depth.", depth, ".", part);
}

}  // namespace

absl::StatusOr<std::vector<int>> ResolvePgaDepths(
    const std::vector<int>& depths, int64_t num_hidden_layers) {
  std::vector<int> resolved = depths;
  if (resolved.empty()) {
    for (int64_t d = 1; d <= num_hidden_layers; ++d) {
      resolved.push_back(static_cast<int>(d));
    }
  }
  std::set<int> seen;
  for (const int d : resolved) {
    if (d < 0 || d > num_hidden_layers) {
      return absl::InvalidArgumentError(
          absl::StrCat("PGA depth ", d,
                       " is out of range: depths run from 0 (the "
                       "embeddings) to ",
                       num_hidden_layers, " (the final norm)"));
    }
    if (!seen.insert(d).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("PGA depth ", d, " is chosen twice"));
    }
  }
  if (resolved.empty()) {
    return absl::InvalidArgumentError("the model has no depth past 0");
  }
  return resolved;
}

absl::StatusOr<PgaProbes> FitPgaProbes(const std::vector<at::Tensor>& memorised,
                                       const std::vector<at::Tensor>& clean,
                                       const std::vector<int>& depths,
                                       const ProbeOptions& options) {
  RETURN_IF_ERROR(CheckStates(memorised, clean, depths));
  PgaProbes result;
  for (const int d : depths) {
    const auto [rows, labels] = PooledRows(memorised[d], clean[d]);
    absl::StatusOr<LogisticProbe> probe =
        FitLogisticProbe(rows, labels, options);
    if (!probe.ok()) {
      return absl::Status(probe.status().code(),
                          absl::StrCat("PGA probe at depth ", d, ": ",
                                       probe.status().message()));
    }
    result.depths.push_back(d);
    result.directions.push_back(ProbeDirection(*probe));
    result.probes.push_back(*std::move(probe));
  }
  return result;
}

absl::StatusOr<PgaProbes> FitPgaProbesFromModel(
    LlamaForCausalLM& model, const std::vector<QaExample>& memorised,
    const std::vector<QaExample>& clean, int pad_id,
    const std::vector<int>& depths, const ProbeOptions& options,
    int batch_size) {
  RETURN_IF_ERROR(CheckPairs(memorised.size(), clean.size()));
  ASSIGN_OR_RETURN(const std::vector<int> resolved,
                   ResolvePgaDepths(depths, model.config().num_hidden_layers));
  ASSIGN_OR_RETURN(const std::vector<at::Tensor> memorised_states,
                   LastTokenHiddenStates(model, memorised, pad_id, batch_size));
  ASSIGN_OR_RETURN(const std::vector<at::Tensor> clean_states,
                   LastTokenHiddenStates(model, clean, pad_id, batch_size));
  return FitPgaProbes(memorised_states, clean_states, resolved, options);
}

absl::StatusOr<MicroBatchLoss> PgaLoss(
    LlamaForCausalLM& model, const std::vector<const QaExample*>& memorised,
    const std::vector<const QaExample*>& clean, const PgaProbes& probes,
    const PgaParams& params, int pad_id) {
  RETURN_IF_ERROR(CheckExamples(memorised, clean));
  if (probes.depths.empty() ||
      probes.depths.size() != probes.directions.size()) {
    return absl::InvalidArgumentError("PGA probes are missing or malformed");
  }
  RETURN_IF_ERROR(
      ResolvePgaDepths(probes.depths, model.config().num_hidden_layers)
          .status());
  const int64_t hidden = model.config().hidden_size;
  for (size_t j = 0; j < probes.directions.size(); ++j) {
    const at::Tensor& w = probes.directions[j];
    if (!w.defined() || w.dim() != 1 || w.size(0) != hidden) {
      return absl::InvalidArgumentError(
          absl::StrCat("PGA probe direction at depth ", probes.depths[j],
                       " must be [", hidden, "] (the model's hidden size)"));
    }
  }
  int64_t clean_tokens = 0;
  for (const QaExample* example : clean) clean_tokens += LabelTokens(*example);
  return CallTorch("computing the PGA loss", [&]() -> MicroBatchLoss {
    const int64_t n = static_cast<int64_t>(memorised.size());
    std::vector<const QaExample*> all = memorised;
    all.insert(all.end(), clean.begin(), clean.end());
    const at::Device device = model.device();
    const QaBatch batch = CollateQaBatch(all, pad_id).To(device);
    const std::vector<at::Tensor> states =
        model.HiddenStatesByDepth(batch.input_ids, batch.attention_mask);
    // Right padding: each sequence's last real token.
    const at::Tensor last = batch.attention_mask.sum(1) - 1;
    const at::Tensor rows = torch::arange(
        2 * n, torch::TensorOptions().dtype(at::kLong).device(device));
    const at::ScalarType compute =
        states.back().scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
    at::Tensor squares =
        torch::zeros({}, torch::TensorOptions().dtype(compute).device(device));
    for (size_t j = 0; j < probes.depths.size(); ++j) {
      const at::Tensor state =
          states[probes.depths[j]].index({rows, last}).to(compute);
      const at::Tensor difference =
          state.slice(0, 0, n) - state.slice(0, n, 2 * n);
      const at::Tensor along =
          torch::mv(difference, probes.directions[j].to(device, compute));
      squares = squares + along.pow(2).sum();
    }
    const at::Tensor align =
        squares / static_cast<double>(n * probes.depths.size());
    // CE(clean): per-sequence token-mean NLL, then the mean over sequences.
    const at::Tensor clean_labels = batch.labels.slice(0, n, 2 * n);
    const at::Tensor logits = model.Logits(states.back().slice(0, n, 2 * n));
    const at::Tensor nll = TokenNll(logits, clean_labels);
    const at::Tensor counts =
        (clean_labels.slice(1, 1) != kIgnoreIndex).sum(1).to(nll.scalar_type());
    const at::Tensor ce = (nll.sum(1) / counts).mean().to(compute);
    MicroBatchLoss result;
    result.loss = params.align_weight * align + params.ce_weight * ce;
    result.tokens = clean_tokens;
    result.components["align"] = align.item<double>();
    result.components["ce"] = ce.item<double>();
    return result;
  });
}

absl::StatusOr<std::unique_ptr<PgaObjective>> PgaObjective::Create(
    LlamaForCausalLM& model, std::vector<QaExample> memorised,
    std::vector<QaExample> clean, int pad_id, PgaParams params) {
  RETURN_IF_ERROR(CheckPairs(memorised.size(), clean.size()));
  std::vector<const QaExample*> memorised_ptrs, clean_ptrs;
  for (size_t i = 0; i < memorised.size(); ++i) {
    memorised_ptrs.push_back(&memorised[i]);
    clean_ptrs.push_back(&clean[i]);
  }
  RETURN_IF_ERROR(CheckExamples(memorised_ptrs, clean_ptrs));
  for (const auto& [name, value] :
       {std::pair<const char*, double>{"align_weight", params.align_weight},
        {"ce_weight", params.ce_weight}}) {
    if (!std::isfinite(value) || value < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "PGA's ", name, " must be finite and >= 0, got ", value));
    }
  }
  if (params.refit_every_epochs < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("PGA's refit_every_epochs must be at least 1, got ",
                     params.refit_every_epochs));
  }
  if (params.state_batch_size < 1) {
    return absl::InvalidArgumentError("PGA's state_batch_size must be >= 1");
  }
  ASSIGN_OR_RETURN(
      params.depths,
      ResolvePgaDepths(params.depths, model.config().num_hidden_layers));
  return std::unique_ptr<PgaObjective>(
      new PgaObjective(model, std::move(memorised), std::move(clean), pad_id,
                       std::move(params)));
}

absl::Status PgaObjective::Refit(int epoch) {
  ASSIGN_OR_RETURN(
      PgaProbes probes,
      FitPgaProbesFromModel(model_, memorised_, clean_, pad_id_, params_.depths,
                            params_.probe, params_.state_batch_size));
  if (params_.averager) {
    RETURN_IF_ERROR(params_.averager(probes.directions));
  }
  if (!params_.probe_dir.empty() && params_.write_probes) {
    std::vector<std::pair<std::string, at::Tensor>> tensors;
    for (size_t j = 0; j < probes.depths.size(); ++j) {
      tensors.emplace_back(TensorName(probes.depths[j], "direction"),
                           probes.directions[j].to(at::kCPU, at::kDouble));
    }
    std::error_code error;
    std::filesystem::create_directories(params_.probe_dir, error);
    RETURN_IF_ERROR(WriteSafetensors(ProbeFile(params_.probe_dir, epoch),
                                     tensors, {{"format", "pt"}}));
  }
  probes_ = std::move(probes);
  fitted_epoch_ = epoch;
  return absl::OkStatus();
}

absl::StatusOr<PgaProbes> LoadPgaDirections(const std::string& dir, int epoch) {
  const std::string path = ProbeFile(dir, epoch);
  if (!std::filesystem::exists(path)) {
    return absl::NotFoundError(absl::StrCat("no PGA probes at ", path));
  }
  ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> file,
                   SafetensorsFile::Open(path));
  PgaProbes probes;
  std::map<int, at::Tensor> by_depth;
  for (const std::string& name : file->names()) {
    int depth = -1;
    char tail[16] = {0};
    if (std::sscanf(name.c_str(), "depth.%d.%15s", &depth, tail) != 2 ||
        std::string(tail) != "direction" || depth < 0) {
      return absl::DataLossError(
          absl::StrCat(path, ": unexpected tensor '", name, "'"));
    }
    ASSIGN_OR_RETURN(const at::Tensor tensor, file->Get(name));
    if (tensor.scalar_type() != at::kDouble || tensor.dim() != 1) {
      return absl::DataLossError(
          absl::StrCat(path, ": ", name, " must be a F64 vector"));
    }
    by_depth[depth] = tensor.clone();  // Independent of the mapping.
  }
  if (by_depth.empty()) {
    return absl::DataLossError(absl::StrCat(path, " holds no directions"));
  }
  for (auto& [depth, direction] : by_depth) {
    probes.depths.push_back(depth);
    probes.directions.push_back(std::move(direction));
  }
  return probes;
}

absl::StatusOr<MicroBatchLoss> PgaObjective::Loss(
    const std::vector<int64_t>& indices, const StepContext& step) {
  if (indices.empty()) {
    return absl::InvalidArgumentError("PGA micro-batch has no pairs");
  }
  std::vector<const QaExample*> memorised, clean;
  for (const int64_t i : indices) {
    if (i < 0 || i >= pairs()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "PGA pair index ", i, " is out of range (", pairs(), " pairs)"));
    }
    memorised.push_back(&memorised_[i]);
    clean.push_back(&clean_[i]);
  }
  const int block = step.epoch / params_.refit_every_epochs;
  if (fitted_epoch_ < 0 ||
      fitted_epoch_ / params_.refit_every_epochs != block) {
    const int block_start = block * params_.refit_every_epochs;
    bool restored = false;
    // The block's first micro-batch refits on the weights it starts from,
    // resumed or not.
    const bool block_begins =
        step.epoch == block_start && step.micro_batch == 0;
    if (fitted_epoch_ < 0 && step.step > 0 && !block_begins &&
        !params_.probe_dir.empty()) {
      // Resumed inside the block: its probes were fitted on the weights at
      // its start, which the checkpoint no longer holds.
      absl::StatusOr<PgaProbes> saved =
          LoadPgaDirections(params_.probe_dir, block_start);
      if (saved.ok()) {
        ASSIGN_OR_RETURN(const std::vector<int> depths,
                         ResolvePgaDepths(params_.depths,
                                          model_.config().num_hidden_layers));
        std::vector<int> sorted = depths;
        std::sort(sorted.begin(), sorted.end());
        if (saved->depths != sorted) {  // Saved in increasing depth.
          return absl::FailedPreconditionError(
              absl::StrCat(ProbeFile(params_.probe_dir, block_start),
                           " holds other depths than this run aligns"));
        }
        PgaProbes ordered;
        for (const int depth : depths) {
          const size_t j =
              std::find(sorted.begin(), sorted.end(), depth) - sorted.begin();
          ordered.depths.push_back(depth);
          ordered.directions.push_back(saved->directions[j]);
        }
        probes_ = std::move(ordered);
        fitted_epoch_ = block_start;
        restored = true;
      } else if (absl::IsNotFound(saved.status())) {
        LETHE_LOG(WARNING) << saved.status().message()
                           << ": refitting on the restored weights (the run "
                              "may differ from an uninterrupted one)";
      } else {
        return saved.status();
      }
    }
    if (!restored) RETURN_IF_ERROR(Refit(block_start));
  }
  return PgaLoss(model_, memorised, clean, probes_, params_, pad_id_);
}

MicroBatchLossFn PgaObjective::LossFn() {
  return [this](const std::vector<int64_t>& indices, const StepContext& step) {
    return Loss(indices, step);
  };
}

absl::StatusOr<ActivationProjection> FitActivationProjection(
    const std::vector<at::Tensor>& memorised,
    const std::vector<at::Tensor>& clean, const std::vector<int>& depths,
    int64_t rank, const ProbeOptions& options) {
  RETURN_IF_ERROR(CheckStates(memorised, clean, depths));
  const int64_t hidden = memorised[depths.front()].size(1);
  if (rank < 1 || rank > hidden) {
    return absl::InvalidArgumentError(absl::StrCat(
        "PGA projection rank must be in 1..", hidden, ", got ", rank));
  }
  ActivationProjection projection;
  for (const int d : depths) {
    const auto [rows, labels] = PooledRows(memorised[d], clean[d]);
    ASSIGN_OR_RETURN(const LogisticProbe first,
                     FitLogisticProbe(rows, labels, options));
    at::Tensor basis = torch::zeros({rows.size(1), 0}, torch::kDouble);
    absl::Status refit_status;
    RETURN_IF_ERROR(CallTorch("fitting the PGA projection", [&] {
      torch::NoGradGuard no_grad;
      const at::Tensor z = (rows - first.mean) / first.scale;
      for (int64_t t = 0; t < rank; ++t) {
        at::Tensor v;
        if (t == 0) {
          v = first.weight.clone();
        } else {
          const at::Tensor projected =
              z - torch::matmul(torch::matmul(z, basis), basis.t());
          absl::StatusOr<LogisticProbe> refit =
              FitLogisticProbe(projected, labels, options);
          if (!refit.ok()) {
            refit_status = refit.status();
            return;
          }
          v = ProbeDirection(*refit);
        }
        // Orthogonal to the columns so far (twice, for rounding).
        for (int pass = 0; pass < 2 && basis.size(1) > 0; ++pass) {
          v = v - torch::mv(basis, torch::mv(basis.t(), v));
        }
        const double norm = v.norm().item<double>();
        if (!(norm > 1e-12)) break;  // No direction left.
        basis = torch::cat({basis, (v / norm).unsqueeze(1)}, 1);
      }
    }));
    RETURN_IF_ERROR(refit_status);
    projection.depths.push_back(d);
    projection.mean.push_back(first.mean);
    projection.scale.push_back(first.scale);
    projection.basis.push_back(basis);
  }
  return projection;
}

at::Tensor ProjectOutSubspace(const at::Tensor& hidden, const at::Tensor& mean,
                              const at::Tensor& scale,
                              const at::Tensor& basis) {
  const at::ScalarType compute =
      hidden.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  const at::Device device = hidden.device();
  const at::Tensor x = hidden.to(compute);
  const at::Tensor mu = mean.to(device, compute);
  const at::Tensor sigma = scale.to(device, compute);
  const at::Tensor u = basis.to(device, compute);
  const at::Tensor z = (x - mu) / sigma;
  const at::Tensor removed = torch::matmul(torch::matmul(z, u), u.t());
  return (x - sigma * removed).to(hidden.scalar_type());
}

at::Tensor ApplyActivationProjection(const ActivationProjection& projection,
                                     int64_t depth, const at::Tensor& hidden) {
  for (size_t j = 0; j < projection.depths.size(); ++j) {
    if (projection.depths[j] == depth) {
      return ProjectOutSubspace(hidden, projection.mean[j], projection.scale[j],
                                projection.basis[j]);
    }
  }
  return hidden;
}

absl::Status SaveActivationProjection(const ActivationProjection& projection,
                                      const std::string& dir) {
  const size_t count = projection.depths.size();
  if (count == 0 || projection.mean.size() != count ||
      projection.scale.size() != count || projection.basis.size() != count) {
    return absl::InvalidArgumentError(
        "a PGA projection needs mean, scale and basis for each depth");
  }
  const int64_t hidden = projection.mean[0].numel();
  nlohmann::json config;
  config["format"] = "lethe-pga-projection";
  config["version"] = 1;
  config["hidden_size"] = hidden;
  config["tensors"] = kPgaProjectionTensors;
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  std::vector<int64_t> ranks;
  for (size_t j = 0; j < count; ++j) {
    const int d = projection.depths[j];
    const at::Tensor& basis = projection.basis[j];
    if (projection.mean[j].dim() != 1 || projection.mean[j].numel() != hidden ||
        projection.scale[j].dim() != 1 ||
        projection.scale[j].numel() != hidden || basis.dim() != 2 ||
        basis.size(0) != hidden) {
      return absl::InvalidArgumentError(absl::StrCat(
          "PGA projection at depth ", d, ": mean and scale must be [", hidden,
          "] and the basis [", hidden, ", k]"));
    }
    ranks.push_back(basis.size(1));
    tensors.emplace_back(TensorName(d, "mean"),
                         projection.mean[j].to(at::kCPU, at::kDouble));
    tensors.emplace_back(TensorName(d, "scale"),
                         projection.scale[j].to(at::kCPU, at::kDouble));
    tensors.emplace_back(TensorName(d, "basis"),
                         basis.to(at::kCPU, at::kDouble).contiguous());
  }
  config["depths"] = projection.depths;
  config["ranks"] = ranks;
  std::error_code error;
  std::filesystem::create_directories(dir, error);
  if (error) {
    return absl::InternalError(
        absl::StrCat("cannot create ", dir, ": ", error.message()));
  }
  RETURN_IF_ERROR(WriteSafetensors(
      (std::filesystem::path(dir) / kPgaProjectionTensors).string(), tensors,
      {{"format", "pt"}}));
  const std::filesystem::path path =
      std::filesystem::path(dir) / kPgaProjectionConfig;
  const std::filesystem::path temporary = path.string() + ".tmp";
  {
    std::ofstream out(temporary);
    out << config.dump(2) << "\n";
    if (!out) {
      return absl::InternalError(
          absl::StrCat("cannot write ", temporary.string()));
    }
  }
  std::filesystem::rename(temporary, path, error);
  if (error) {
    return absl::InternalError(absl::StrCat(
        "cannot rename into ", path.string(), ": ", error.message()));
  }
  return absl::OkStatus();
}

absl::StatusOr<ActivationProjection> LoadActivationProjection(
    const std::string& dir) {
  const std::filesystem::path config_path =
      std::filesystem::path(dir) / kPgaProjectionConfig;
  std::ifstream in(config_path);
  if (!in) {
    return absl::NotFoundError(
        absl::StrCat("no PGA projection at ", config_path.string()));
  }
  std::stringstream text;
  text << in.rdbuf();
  const nlohmann::json config =
      nlohmann::json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
  const std::string where = config_path.string();
  if (!config.is_object() ||
      config.value("format", "") != std::string("lethe-pga-projection")) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, " is not a lethe-pga-projection config"));
  }
  if (config.value("version", 0) != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": unsupported version (this build reads 1)"));
  }
  if (!config.contains("depths") || !config["depths"].is_array() ||
      !config.contains("ranks") || !config["ranks"].is_array() ||
      config["depths"].size() != config["ranks"].size() ||
      config["depths"].empty() || !config.contains("hidden_size") ||
      !config["hidden_size"].is_number_integer()) {
    return absl::InvalidArgumentError(absl::StrCat(
        where, ": needs hidden_size and equally long depths and ranks"));
  }
  const int64_t hidden = config["hidden_size"].get<int64_t>();
  ASSIGN_OR_RETURN(
      std::unique_ptr<SafetensorsFile> file,
      SafetensorsFile::Open(
          (std::filesystem::path(dir) / kPgaProjectionTensors).string()));
  ActivationProjection projection;
  for (size_t j = 0; j < config["depths"].size(); ++j) {
    if (!config["depths"][j].is_number_integer() ||
        !config["ranks"][j].is_number_integer()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": depths and ranks must be integers"));
    }
    const int d = config["depths"][j].get<int>();
    const int64_t k = config["ranks"][j].get<int64_t>();
    const std::vector<std::pair<const char*, std::vector<int64_t>>> parts = {
        {"mean", {hidden}}, {"scale", {hidden}}, {"basis", {hidden, k}}};
    std::vector<at::Tensor> loaded;
    for (const auto& [part, shape] : parts) {
      ASSIGN_OR_RETURN(const at::Tensor tensor, file->Get(TensorName(d, part)));
      if (tensor.scalar_type() != at::kDouble ||
          tensor.sizes() != at::IntArrayRef(shape)) {
        return absl::DataLossError(absl::StrCat(
            file->path(), ": ", TensorName(d, part), " must be F64 [",
            absl::StrJoin(shape, ", "), "] as ", where, " says"));
      }
      loaded.push_back(tensor.clone());  // Independent of the mapping.
    }
    projection.depths.push_back(d);
    projection.mean.push_back(loaded[0]);
    projection.scale.push_back(loaded[1]);
    projection.basis.push_back(loaded[2]);
  }
  return projection;
}

absl::Status ExportPgaProjection(LlamaForCausalLM& model,
                                 const std::vector<QaExample>& memorised,
                                 const std::vector<QaExample>& clean,
                                 int pad_id, const std::vector<int>& depths,
                                 int64_t rank, const std::string& dir,
                                 const ProbeOptions& options, int batch_size) {
  RETURN_IF_ERROR(CheckPairs(memorised.size(), clean.size()));
  ASSIGN_OR_RETURN(const std::vector<int> resolved,
                   ResolvePgaDepths(depths, model.config().num_hidden_layers));
  ASSIGN_OR_RETURN(std::vector<at::Tensor> memorised_states,
                   LastTokenHiddenStates(model, memorised, pad_id, batch_size));
  ASSIGN_OR_RETURN(std::vector<at::Tensor> clean_states,
                   LastTokenHiddenStates(model, clean, pad_id, batch_size));
  ASSIGN_OR_RETURN(ActivationProjection projection,
                   FitActivationProjection(memorised_states, clean_states,
                                           resolved, rank, options));
  return SaveActivationProjection(projection, dir);
}

absl::Status InstallActivationProjection(LlamaForCausalLM& model,
                                         ActivationProjection projection) {
  const int64_t hidden = model.config().hidden_size;
  for (size_t j = 0; j < projection.depths.size(); ++j) {
    const int depth = projection.depths[j];
    if (depth < 0 || depth > model.config().num_hidden_layers) {
      return absl::InvalidArgumentError(absl::StrCat(
          "the PGA projection edits depth ", depth,
          "; the model has depths 0..", model.config().num_hidden_layers));
    }
    if (projection.mean[j].numel() != hidden ||
        projection.basis[j].size(0) != hidden) {
      return absl::InvalidArgumentError(
          absl::StrCat("the PGA projection at depth ", depth, " is ",
                       projection.basis[j].size(0),
                       " wide; the model's hidden size is ", hidden));
    }
  }
  RETURN_IF_ERROR(CallTorch("moving the PGA projection", [&] {
    const at::Device device = model.device();
    for (size_t j = 0; j < projection.depths.size(); ++j) {
      projection.mean[j] = projection.mean[j].to(device);
      projection.scale[j] = projection.scale[j].to(device);
      projection.basis[j] = projection.basis[j].to(device);
    }
  }));
  auto shared =
      std::make_shared<const ActivationProjection>(std::move(projection));
  model.SetHiddenStateEdit([shared](int64_t depth, const at::Tensor& hidden) {
    return ApplyActivationProjection(*shared, depth, hidden);
  });
  return absl::OkStatus();
}

absl::StatusOr<bool> InstallSavedActivationProjection(
    LlamaForCausalLM& model, const std::string& model_dir) {
  absl::StatusOr<ActivationProjection> projection =
      LoadActivationProjection(model_dir);
  if (absl::IsNotFound(projection.status())) return false;
  if (!projection.ok()) return projection.status();
  RETURN_IF_ERROR(InstallActivationProjection(model, *std::move(projection)));
  return true;
}

}  // namespace lethe
