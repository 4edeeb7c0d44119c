#include "libs/unlearn/reglu.h"

#include <ATen/autocast_mode.h>
#include <torch/linalg.h>
#include <torch/version.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <tuple>
#include <utility>

#include "absl/strings/str_cat.h"
#include "libs/data/qa_batch.h"
#include "libs/data/sharding.h"
#include "libs/model/lora.h"
#include "libs/status/status_macros.h"
#include "libs/status/torch_status.h"

namespace lethe {
namespace {

// Distinct sample choices for the two sets from one seed.
constexpr uint64_t kForgetSampleSalt = 0x52494c41'464f5247ull;  // "RILAFORG"
constexpr uint64_t kRetainSampleSalt = 0x52494c41'52455441ull;  // "RILARETA"

// Turns CPU autocast off for its lifetime (ROL's products stay in the
// adapters' dtype inside a bf16-autocast step). The same version split as
// llama_model.cc's CpuBf16AutocastGuard: LibTorch 2.4 replaced the per-device
// functions.
class ScopedCpuAutocastOff {
 public:
  ScopedCpuAutocastOff() : was_enabled_(Enabled()) {
    if (was_enabled_) SetEnabled(false);
  }
  ~ScopedCpuAutocastOff() {
    if (was_enabled_) SetEnabled(true);
  }
  ScopedCpuAutocastOff(const ScopedCpuAutocastOff&) = delete;
  ScopedCpuAutocastOff& operator=(const ScopedCpuAutocastOff&) = delete;

 private:
#if TORCH_VERSION_MAJOR > 2 || \
    (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
  static bool Enabled() { return at::autocast::is_autocast_enabled(at::kCPU); }
  static void SetEnabled(bool enabled) {
    at::autocast::set_autocast_enabled(at::kCPU, enabled);
  }
#else
  static bool Enabled() { return at::autocast::is_cpu_enabled(); }
  static void SetEnabled(bool enabled) {
    at::autocast::set_cpu_enabled(enabled);
  }
#endif
  bool was_enabled_;
};

// Stands in for a projection's LoRA adapter while RILA measures: adds
// nothing (the projection computes its base output) and writes, for each
// sample of the batch, the sum of the projection's input over the sample's
// real tokens into the rows `rows` of `*sums` (float64).
class InputSumRecorder : public LinearAdapter {
 public:
  void Target(at::Tensor* sums, const at::Tensor& mask,
              const at::Tensor& rows) {
    sums_ = sums;
    mask_ = mask;
    rows_ = rows;
  }

  at::Tensor Delta(const at::Tensor& x) override {
    const at::Tensor summed =
        (x.to(at::kDouble) * mask_.unsqueeze(-1)).sum(/*dim=*/1);
    sums_->index_copy_(0, rows_, summed);
    return {};
  }

 private:
  at::Tensor* sums_ = nullptr;
  at::Tensor mask_;  // [B, T] float64, 1 on real tokens.
  at::Tensor rows_;  // [B] int64.
};

// An adapted projection and the measurements RILA takes of it.
struct Measured {
  NamedProjection projection;
  std::shared_ptr<LinearAdapter> adapter;  // The LoRA adapter, set aside.
  std::shared_ptr<InputSumRecorder> recorder;
  at::Tensor forget_sums;  // [N_F, d_in] float64.
  at::Tensor retain_sums;  // [N_R, d_in] float64.
};

// Puts the LoRA adapters back, whatever happens in between.
class AdapterRestorer {
 public:
  explicit AdapterRestorer(std::vector<Measured>& measured)
      : measured_(measured) {}
  ~AdapterRestorer() {
    for (Measured& m : measured_) m.projection.projection->adapter = m.adapter;
  }
  AdapterRestorer(const AdapterRestorer&) = delete;
  AdapterRestorer& operator=(const AdapterRestorer&) = delete;

 private:
  std::vector<Measured>& measured_;
};

// Runs this rank's share of `positions` (indices into `examples`) through
// the model, each recorder writing into the rows of the sums `which` selects
// and `counts` receiving each sample's real-token count.
void MeasureSet(LlamaForCausalLM& model, const std::vector<QaExample>& examples,
                const std::vector<int64_t>& positions,
                at::Tensor Measured::*which, std::vector<Measured>& measured,
                at::Tensor& counts, const RilaOptions& options) {
  const at::Device device = model.device();
  std::vector<int64_t> mine;
  for (int64_t p = options.rank; p < static_cast<int64_t>(positions.size());
       p += options.world_size) {
    mine.push_back(p);
  }
  const int64_t batch_size = std::max<int64_t>(1, options.batch_size);
  for (size_t start = 0; start < mine.size(); start += batch_size) {
    const size_t end = std::min(mine.size(), start + batch_size);
    std::vector<const QaExample*> batch_examples;
    std::vector<int64_t> rows;
    for (size_t i = start; i < end; ++i) {
      batch_examples.push_back(&examples[positions[mine[i]]]);
      rows.push_back(mine[i]);
    }
    const QaBatch batch =
        CollateQaBatch(batch_examples, options.pad_id).To(device);
    const at::Tensor mask = batch.attention_mask.to(at::kDouble);
    const at::Tensor row_tensor =
        torch::tensor(rows, torch::dtype(at::kLong)).to(device);
    for (Measured& m : measured) {
      m.recorder->Target(&(m.*which), mask, row_tensor);
    }
    model.ForwardHidden(batch.input_ids, batch.attention_mask);
    counts.index_copy_(0, row_tensor, mask.sum(/*dim=*/1));
  }
}

// The top `count` eigenvectors, cut to the matrix's size, zero-padded to
// `columns` columns.
at::Tensor PaddedTopEigenvectors(const at::Tensor& symmetric, int64_t count,
                                 int64_t columns) {
  const int64_t n = symmetric.size(0);
  const at::Tensor top = TopEigenvectors(symmetric, std::min(count, n));
  if (top.size(1) == columns) return top;
  at::Tensor padded = at::zeros({n, columns}, top.options());
  padded.narrow(1, 0, top.size(1)).copy_(top);
  return padded;
}

// The adapters' weights by parameter name.
std::map<std::string, at::Tensor> LoraWeights(LlamaForCausalLM& model) {
  std::map<std::string, at::Tensor> weights;
  for (auto& [name, tensor] : LoraParameters(model)) weights[name] = tensor;
  return weights;
}

absl::StatusOr<std::pair<at::Tensor, at::Tensor>> AdapterOf(
    const std::map<std::string, at::Tensor>& weights, const RilaLayer& layer) {
  const auto a = weights.find(layer.path + ".lora_A.weight");
  const auto b = weights.find(layer.path + ".lora_B.weight");
  if (a == weights.end() || b == weights.end()) {
    return absl::FailedPreconditionError(
        absl::StrCat(layer.path,
                     " has no LoRA adapter, but RILA "
                     "initialised one there"));
  }
  if (a->second.sizes() != layer.init_a.sizes() ||
      b->second.sizes() != layer.init_b.sizes()) {
    return absl::FailedPreconditionError(absl::StrCat(
        layer.path, "'s LoRA adapter is not the one RILA initialised (shape)"));
  }
  return std::make_pair(a->second, b->second);
}

class RegluObjective : public UnlearningObjective {
 public:
  RegluObjective(std::unique_ptr<UnlearningObjective> data_terms,
                 std::shared_ptr<const RilaInit> init, double rol_weight)
      : data_terms_(std::move(data_terms)),
        init_(std::move(init)),
        rol_weight_(rol_weight) {}

  ObjectiveNeeds needs() const override { return data_terms_->needs(); }

  absl::StatusOr<MicroBatchLoss> Loss(LlamaForCausalLM& model,
                                      const UnlearningBatch& batch) override {
    ASSIGN_OR_RETURN(MicroBatchLoss out, data_terms_->Loss(model, batch));
    ASSIGN_OR_RETURN(const at::Tensor rol, RetainOrthogonalLoss(model, *init_));
    RETURN_IF_ERROR(CallTorch("REGLU's ROL term", [&] {
      out.components["rol"] = rol.item<double>();
      out.loss = out.loss + rol_weight_ * rol;
    }));
    return out;
  }

 private:
  std::unique_ptr<UnlearningObjective> data_terms_;
  std::shared_ptr<const RilaInit> init_;
  double rol_weight_;
};

}  // namespace

std::vector<int64_t> RilaSampleIndices(int64_t size, int64_t count,
                                       uint64_t seed) {
  std::vector<int64_t> order = EpochPermutation(size, seed, 0);
  order.resize(static_cast<size_t>(std::clamp<int64_t>(count, 0, size)));
  return order;
}

at::Tensor TopEigenvectors(const at::Tensor& symmetric, int64_t count) {
  const int64_t n = symmetric.size(0);
  TORCH_CHECK(symmetric.dim() == 2 && symmetric.size(1) == n,
              "TopEigenvectors needs a square matrix");
  TORCH_CHECK(count >= 1 && count <= n, "TopEigenvectors: count ", count,
              " outside [1, ", n, "]");
  // eigh: ascending eigenvalues, from the lower triangle only.
  const at::Tensor vectors =
      std::get<1>(torch::linalg_eigh(symmetric.to(at::kDouble), "L"));
  const at::Tensor top = vectors.narrow(1, n - count, count).flip({1});
  const at::Tensor pivots =
      top.gather(0, top.abs().argmax(/*dim=*/0).unsqueeze(0));
  return (top * (1.0 - 2.0 * (pivots < 0).to(at::kDouble))).contiguous();
}

at::Tensor RilaCovariance(const at::Tensor& features, double ridge) {
  const at::Tensor h = features.to(at::kDouble);
  const int64_t d = h.size(1);
  return h.t().mm(h) / static_cast<double>(h.size(0)) +
         ridge * at::eye(d, h.options());
}

absl::StatusOr<std::shared_ptr<const RilaInit>> RilaInitialize(
    LlamaForCausalLM& model, const std::vector<QaExample>& forget,
    const std::vector<QaExample>& retain, const RilaOptions& options) {
  if (!HasLora(model)) {
    return absl::FailedPreconditionError(
        "REGLU trains LoRA adapters: attach them first (spec.lora, "
        "--lora_rank; the paper adapts every projection, r 32, alpha 64)");
  }
  if (forget.empty() || retain.empty()) {
    return absl::InvalidArgumentError(
        "RILA needs forget and retain examples; a set is empty");
  }
  if (options.world_size < 1 || options.rank < 0 ||
      options.rank >= options.world_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        "rank ", options.rank, " of world size ", options.world_size));
  }
  if (options.world_size > 1 && !options.averager) {
    return absl::InvalidArgumentError(
        "a data-parallel RILA needs the ranks' averager to share features");
  }
  if (!(options.beta_r >= 0 && options.beta_r <= 1) ||
      options.retain_rank < 1 || options.samples < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "RILA: beta_r must be in [0, 1], retain_rank and samples >= 1; got ",
        options.beta_r, ", ", options.retain_rank, ", ", options.samples));
  }
  ASSIGN_OR_RETURN(const LoraConfig lora, AttachedLoraConfig(model));
  const double scaling = lora.Scaling();
  const std::vector<int64_t> forget_positions =
      RilaSampleIndices(static_cast<int64_t>(forget.size()), options.samples,
                        options.seed ^ kForgetSampleSalt);
  const std::vector<int64_t> retain_positions =
      RilaSampleIndices(static_cast<int64_t>(retain.size()), options.samples,
                        options.seed ^ kRetainSampleSalt);
  const int64_t n_forget = static_cast<int64_t>(forget_positions.size());
  const int64_t n_retain = static_cast<int64_t>(retain_positions.size());

  std::vector<Measured> measured;
  at::Tensor forget_counts, retain_counts;
  {
    torch::NoGradGuard no_grad;
    AdapterRestorer restorer(measured);
    RETURN_IF_ERROR(CallTorch("measuring RILA's features", [&] {
      const auto options64 =
          torch::TensorOptions().dtype(at::kDouble).device(model.device());
      for (const NamedProjection& projection : model.Projections()) {
        if (projection.projection->adapter == nullptr) continue;
        const int64_t in = projection.projection->linear->weight.size(1);
        Measured m{.projection = projection,
                   .adapter = projection.projection->adapter,
                   .recorder = std::make_shared<InputSumRecorder>(),
                   .forget_sums = at::zeros({n_forget, in}, options64),
                   .retain_sums = at::zeros({n_retain, in}, options64)};
        measured.push_back(std::move(m));
      }
      for (Measured& m : measured) {
        m.projection.projection->adapter = m.recorder;
      }
      forget_counts = at::zeros({n_forget}, options64);
      retain_counts = at::zeros({n_retain}, options64);
      MeasureSet(model, forget, forget_positions, &Measured::forget_sums,
                 measured, forget_counts, options);
      MeasureSet(model, retain, retain_positions, &Measured::retain_sums,
                 measured, retain_counts, options);
    }));
  }

  if (options.world_size > 1) {
    // Each rank filled its own rows and left the others zero: the average
    // times the world size is every row, the same bits on every rank.
    std::vector<at::Tensor> shared = {forget_counts, retain_counts};
    for (Measured& m : measured) {
      shared.push_back(m.forget_sums);
      shared.push_back(m.retain_sums);
    }
    RETURN_IF_ERROR(options.averager(shared));
    RETURN_IF_ERROR(CallTorch("collecting RILA's features", [&] {
      const double world = options.world_size;
      forget_counts = at::round(shared[0] * world);
      retain_counts = at::round(shared[1] * world);
      for (size_t i = 0; i < measured.size(); ++i) {
        measured[i].forget_sums = shared[2 + 2 * i] * world;
        measured[i].retain_sums = shared[3 + 2 * i] * world;
      }
    }));
  }

  auto init = std::make_shared<RilaInit>();
  const std::map<std::string, at::Tensor> weights = LoraWeights(model);
  for (Measured& m : measured) {
    const std::string& path = m.projection.path;
    const auto a = weights.find(path + ".lora_A.weight");
    const auto b = weights.find(path + ".lora_B.weight");
    if (a == weights.end() || b == weights.end()) {
      return absl::InternalError(
          absl::StrCat(path, ": an adapter without LoRA weights"));
    }
    RETURN_IF_ERROR(CallTorch(absl::StrCat("RILA of ", path), [&] {
      torch::NoGradGuard no_grad;
      at::Tensor weight = m.projection.projection->linear->weight;
      const at::Tensor& bias = m.projection.projection->linear->bias;
      const at::Tensor w = weight.to(at::kDouble);
      // H = S W0^T + T b: the base outputs summed over each sample's tokens.
      auto features = [&](const at::Tensor& sums, const at::Tensor& counts) {
        at::Tensor h = sums.mm(w.t());
        if (bias.defined()) {
          h = h + counts.unsqueeze(1) * bias.to(at::kDouble).unsqueeze(0);
        }
        return h;
      };
      const at::Tensor retain_covariance =
          RilaCovariance(features(m.retain_sums, retain_counts));
      const at::Tensor delta =
          (1 - options.beta_r) *
              RilaCovariance(features(m.forget_sums, forget_counts)) -
          options.beta_r * retain_covariance;
      at::Tensor lora_a = a->second;
      at::Tensor lora_b = b->second;
      const int64_t r = lora_b.size(1);
      const at::Tensor q = PaddedTopEigenvectors(delta, r, r);
      // Rounded to the adapters' dtype first, so that the base update
      // cancels exactly what the adapters will add.
      const at::Tensor b0 = q.to(lora_b.scalar_type());
      const at::Tensor a0 = q.t().mm(w).to(lora_a.scalar_type());
      lora_b.copy_(b0);
      lora_a.copy_(a0);
      weight.copy_((w - scaling * b0.to(at::kDouble).mm(a0.to(at::kDouble)))
                       .to(weight.scalar_type()));
      const int64_t k =
          std::min(options.retain_rank, retain_covariance.size(0));
      init->layers.push_back(
          {.path = path,
           .retain_basis =
               TopEigenvectors(retain_covariance, k).to(lora_b.scalar_type()),
           .init_a = a0.clone(),
           .init_b = b0.clone(),
           .scaling = scaling});
      m.forget_sums = at::Tensor();
      m.retain_sums = at::Tensor();
    }));
  }
  return std::shared_ptr<const RilaInit>(std::move(init));
}

absl::StatusOr<at::Tensor> RetainOrthogonalLoss(LlamaForCausalLM& model,
                                                const RilaInit& init) {
  const std::map<std::string, at::Tensor> weights = LoraWeights(model);
  std::vector<at::Tensor> bs;
  for (const RilaLayer& layer : init.layers) {
    ASSIGN_OR_RETURN(auto adapter, AdapterOf(weights, layer));
    bs.push_back(adapter.second);
  }
  if (bs.empty()) {
    return absl::FailedPreconditionError("RILA initialised no adapter");
  }
  return CallTorch("REGLU's ROL term", [&] {
    ScopedCpuAutocastOff autocast_off;
    at::Tensor total;
    for (size_t i = 0; i < bs.size(); ++i) {
      const at::Tensor basis =
          init.layers[i].retain_basis.to(bs[i].device(), bs[i].scalar_type());
      const at::Tensor term = bs[i].t().mm(basis).pow(2).sum();
      total = total.defined() ? total + term : term;
    }
    return total;
  });
}

absl::StatusOr<std::unique_ptr<UnlearningObjective>> MakeRegluObjective(
    const ObjectiveParams& params, std::shared_ptr<const RilaInit> init,
    int64_t loss_chunk_tokens) {
  if (init == nullptr || init->layers.empty()) {
    return absl::InvalidArgumentError(
        "REGLU's objective needs RILA's result (RilaInitialize)");
  }
  ASSIGN_OR_RETURN(std::unique_ptr<UnlearningObjective> data_terms,
                   MakeRegluDataObjective(params, loss_chunk_tokens));
  return std::unique_ptr<UnlearningObjective>(std::make_unique<RegluObjective>(
      std::move(data_terms), std::move(init), params.reglu_rol_weight));
}

absl::Status UnfoldRila(LlamaForCausalLM& model, const RilaInit& init) {
  ASSIGN_OR_RETURN(const LoraConfig config, AttachedLoraConfig(model));
  const std::map<std::string, at::Tensor> weights = LoraWeights(model);
  if (weights.size() != 2 * init.layers.size()) {
    return absl::FailedPreconditionError(absl::StrCat("the model has ",
                                                      weights.size() / 2,
                                                      " LoRA adapters, RILA "
                                                      "initialised ",
                                                      init.layers.size()));
  }
  std::map<std::string, AdaptableLinear*> projections;
  for (const NamedProjection& projection : model.Projections()) {
    projections[projection.path] = projection.projection;
  }
  // The trained adapters, before the model's are replaced.
  std::vector<std::pair<at::Tensor, at::Tensor>> trained;
  for (const RilaLayer& layer : init.layers) {
    ASSIGN_OR_RETURN(auto adapter, AdapterOf(weights, layer));
    trained.emplace_back(adapter.first.detach().clone(),
                         adapter.second.detach().clone());
  }
  RETURN_IF_ERROR(CallTorch("restoring the base weights RILA changed", [&] {
    torch::NoGradGuard no_grad;
    for (const RilaLayer& layer : init.layers) {
      at::Tensor weight = projections.at(layer.path)->linear->weight;
      weight.copy_(
          (weight.to(at::kDouble) +
           layer.scaling *
               layer.init_b.to(at::kDouble).mm(layer.init_a.to(at::kDouble)))
              .to(weight.scalar_type()));
    }
  }));
  RETURN_IF_ERROR(RemoveLora(model));
  LoraConfig wide = config;
  wide.rank = 2 * config.rank;
  // The same scaling at twice the rank.
  wide.alpha =
      config.use_rslora ? config.alpha * std::sqrt(2.0) : 2 * config.alpha;
  RETURN_IF_ERROR(AttachLora(model, wide));
  const std::map<std::string, at::Tensor> wide_weights = LoraWeights(model);
  return CallTorch("writing the unfolded adapters", [&] {
    torch::NoGradGuard no_grad;
    for (size_t i = 0; i < init.layers.size(); ++i) {
      const RilaLayer& layer = init.layers[i];
      at::Tensor a = wide_weights.at(layer.path + ".lora_A.weight");
      at::Tensor b = wide_weights.at(layer.path + ".lora_B.weight");
      a.copy_(at::cat({trained[i].first, layer.init_a.to(a.device())}, 0));
      b.copy_(at::cat({trained[i].second, -layer.init_b.to(b.device())}, 1));
    }
  });
}

}  // namespace lethe
