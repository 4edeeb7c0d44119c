#include "libs/model/llama_model.h"

#include <ATen/autocast_mode.h>
#include <torch/version.h>

#include <cmath>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "libs/model/activation_checkpoint.h"

namespace lethe {
namespace {

// LibTorch 2.4 replaced the per-device autocast functions (set_cpu_enabled,
// ...) with device-generic ones and deprecated the old ones for removal; the
// wheels' LibTorch (2.x) and Debian's (1.13) each get the API they have.
#if TORCH_VERSION_MAJOR > 2 || \
    (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
bool IsCpuAutocastEnabled() {
  return at::autocast::is_autocast_enabled(at::kCPU);
}
void SetCpuAutocastEnabled(bool enabled) {
  at::autocast::set_autocast_enabled(at::kCPU, enabled);
}
at::ScalarType CpuAutocastDtype() {
  return at::autocast::get_autocast_dtype(at::kCPU);
}
void SetCpuAutocastDtype(at::ScalarType dtype) {
  at::autocast::set_autocast_dtype(at::kCPU, dtype);
}
#else
bool IsCpuAutocastEnabled() { return at::autocast::is_cpu_enabled(); }
void SetCpuAutocastEnabled(bool enabled) {
  at::autocast::set_cpu_enabled(enabled);
}
at::ScalarType CpuAutocastDtype() {
  return at::autocast::get_autocast_cpu_dtype();
}
void SetCpuAutocastDtype(at::ScalarType dtype) {
  at::autocast::set_autocast_cpu_dtype(dtype);
}
#endif

// Precision for norms and softmax: fp32, or fp64 for fp64 models (so that
// gradients of fp64 models can be checked against finite differences).
at::ScalarType AtLeastFloat(at::ScalarType dtype) {
  return dtype == at::kDouble ? at::kDouble : at::kFloat;
}

at::Tensor RotateHalf(const at::Tensor& x) {
  const int64_t half = x.size(-1) / 2;
  return torch::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
}

// [B, kv_heads, T, d] -> [B, kv_heads * repeats, T, d], each K/V head repeated
// `repeats` times consecutively (Hugging Face's repeat_kv).
at::Tensor RepeatKeyValueHeads(const at::Tensor& x, int64_t repeats) {
  if (repeats == 1) return x;
  const int64_t batch = x.size(0), heads = x.size(1), length = x.size(2),
                dim = x.size(3);
  return x.unsqueeze(2)
      .expand({batch, heads, repeats, length, dim})
      .reshape({batch, heads * repeats, length, dim});
}

// A large negative value `dtype` can hold: float's lowest (also for double,
// as before), or the 16-bit type's own lowest, since float's overflows it.
at::Scalar MaskValue(at::ScalarType dtype) {
  if (dtype == at::kBFloat16) {
    return at::Scalar(std::numeric_limits<c10::BFloat16>::lowest());
  }
  if (dtype == at::kHalf) {
    return at::Scalar(std::numeric_limits<c10::Half>::lowest());
  }
  return at::Scalar(std::numeric_limits<float>::lowest());
}

// Additive mask [B, 1, T, past + T]: 0 where query t may attend key s (s is
// not in the future, not padding and, with a window W, t - W < s),
// MaskValue(dtype) elsewhere. Positions are indices in the sequence.
// With `segment_ids` ([B, T], no past), query t may attend key s only when
// both carry the same segment id (packed rows: one id per sequence).
at::Tensor BuildAttentionMask(const at::Tensor& attention_mask, int64_t batch,
                              int64_t length, int64_t past_length,
                              std::optional<int64_t> window,
                              at::ScalarType dtype, const at::Device& device,
                              const at::Tensor& segment_ids = {}) {
  const int64_t total = past_length + length;
  const auto index_options =
      torch::TensorOptions().dtype(at::kLong).device(device);
  const at::Tensor query_positions =
      torch::arange(past_length, total, index_options).unsqueeze(1);
  const at::Tensor key_positions =
      torch::arange(total, index_options).unsqueeze(0);
  at::Tensor allowed = key_positions <= query_positions;
  if (window.has_value()) {
    allowed = allowed.logical_and(key_positions > query_positions - *window);
  }
  allowed = allowed.unsqueeze(0).unsqueeze(0).expand({batch, 1, length, total});
  if (attention_mask.defined()) {
    TORCH_CHECK(attention_mask.dim() == 2 && attention_mask.size(0) == batch &&
                    attention_mask.size(1) == total,
                "attention_mask must be [batch, past + length] = [", batch,
                ", ", total, "], got ", attention_mask.sizes());
    allowed = allowed.logical_and(
        attention_mask.to(device).to(at::kBool).view({batch, 1, 1, total}));
  }
  if (segment_ids.defined()) {
    TORCH_CHECK(past_length == 0, "segment_ids cannot be used with a KV cache");
    TORCH_CHECK(segment_ids.dim() == 2 && segment_ids.size(0) == batch &&
                    segment_ids.size(1) == length,
                "segment_ids must be [batch, length] = [", batch, ", ", length,
                "], got ", segment_ids.sizes());
    const at::Tensor segments = segment_ids.to(device);
    allowed = allowed.logical_and(segments.view({batch, 1, length, 1}) ==
                                  segments.view({batch, 1, 1, length}));
  }
  at::Tensor mask =
      torch::zeros({batch, 1, length, total},
                   torch::TensorOptions().dtype(dtype).device(device));
  return mask.masked_fill(allowed.logical_not(), MaskValue(dtype));
}

torch::nn::Linear MakeLinear(int64_t in, int64_t out, bool bias,
                             ParameterInit init) {
  if (init == ParameterInit::kRandom) {
    return torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(bias));
  }
  // torch::nn::Linear's constructor always runs kaiming_uniform_ over its
  // weight, which would touch every page. Built with no output features
  // (one input feature keeps kaiming's fan-in finite) it initialises
  // nothing; then the parameters get their real shapes, unwritten.
  torch::nn::Linear linear(torch::nn::LinearOptions(1, 0).bias(bias));
  linear->weight.set_data(torch::empty({out, in}));
  if (bias) linear->bias.set_data(torch::empty({out}));
  linear->options.in_features(in).out_features(out);
  return linear;
}

}  // namespace

at::Tensor AdaptableLinear::Forward(const at::Tensor& x) {
  at::Tensor output = linear->forward(x);
  if (adapter == nullptr) return output;
  const at::Tensor delta = adapter->Delta(x);
  if (!delta.defined()) return output;
  return (output + delta).to(output.scalar_type());
}

at::Tensor RotaryInverseFrequencies(int64_t head_dim, double rope_theta,
                                    const RopeScaling& scaling,
                                    at::ScalarType dtype,
                                    const at::Device& device) {
  const auto options =
      torch::TensorOptions().dtype(AtLeastFloat(dtype)).device(device);
  at::Tensor inverse_frequency =
      1.0 /
      torch::pow(rope_theta, torch::arange(0, head_dim, 2, options) / head_dim);
  if (scaling.rope_type != "llama3") return inverse_frequency;
  // transformers' _compute_llama3_parameters.
  const double low_freq_wavelength =
      scaling.original_max_position_embeddings / scaling.low_freq_factor;
  const double high_freq_wavelength =
      scaling.original_max_position_embeddings / scaling.high_freq_factor;
  const at::Tensor wavelength = 2 * M_PI / inverse_frequency;
  const at::Tensor low = wavelength > low_freq_wavelength;
  const at::Tensor high = wavelength < high_freq_wavelength;
  const at::Tensor smooth =
      (scaling.original_max_position_embeddings / wavelength -
       scaling.low_freq_factor) /
      (scaling.high_freq_factor - scaling.low_freq_factor);
  const at::Tensor blended = (1 - smooth) * inverse_frequency / scaling.factor +
                             smooth * inverse_frequency;
  at::Tensor scaled =
      torch::where(low, inverse_frequency / scaling.factor, inverse_frequency);
  return torch::where(low.logical_or(high), scaled, blended);
}

RotaryTables ComputeRotaryTables(const at::Tensor& position_ids,
                                 const at::Tensor& inverse_frequencies,
                                 at::ScalarType dtype) {
  const at::ScalarType angle_dtype = AtLeastFloat(dtype);
  // [B, T, d/2] -> [B, T, d]
  const at::Tensor frequencies =
      position_ids.to(angle_dtype).unsqueeze(-1) *
      inverse_frequencies.to(position_ids.device()).to(angle_dtype);
  const at::Tensor angles = torch::cat({frequencies, frequencies}, -1);
  return {.cos = angles.cos().to(dtype).unsqueeze(1),
          .sin = angles.sin().to(dtype).unsqueeze(1)};
}

RotaryTables ComputeRotaryTables(const at::Tensor& position_ids,
                                 int64_t head_dim, double rope_theta,
                                 at::ScalarType dtype) {
  return ComputeRotaryTables(
      position_ids,
      RotaryInverseFrequencies(head_dim, rope_theta, RopeScaling(), dtype,
                               position_ids.device()),
      dtype);
}

at::Tensor ApplyRotaryEmbedding(const at::Tensor& x,
                                const RotaryTables& tables) {
  return x * tables.cos.to(x.scalar_type()) +
         RotateHalf(x) * tables.sin.to(x.scalar_type());
}

at::Tensor ApplyRotaryEmbedding(const at::Tensor& x,
                                const at::Tensor& position_ids,
                                double rope_theta) {
  return ApplyRotaryEmbedding(
      x, ComputeRotaryTables(position_ids, x.size(-1), rope_theta,
                             x.scalar_type()));
}

at::Tensor PositionIdsFromMask(const at::Tensor& attention_mask) {
  return (attention_mask.to(at::kLong).cumsum(-1) - 1).clamp_min(0);
}

LlamaRmsNorm::LlamaRmsNorm(int64_t size, double eps, bool offset)
    : eps_(eps), offset_(offset) {
  weight_ = register_parameter(
      "weight", offset ? torch::zeros({size}) : torch::ones({size}));
}

at::Tensor LlamaRmsNorm::Forward(const at::Tensor& x) {
  const at::ScalarType wide_dtype = AtLeastFloat(x.scalar_type());
  const at::Tensor wide = x.to(wide_dtype);
  const at::Tensor variance = wide.pow(2).mean(-1, /*keepdim=*/true);
  const at::Tensor normalized = wide * torch::rsqrt(variance + eps_);
  if (offset_) {
    // Gemma: (x * (1 + w)) in fp32, then cast (Llama casts, then scales).
    return (normalized * (1.0 + weight_.to(wide_dtype))).to(x.scalar_type());
  }
  return weight_ * normalized.to(x.scalar_type());
}

LlamaAttention::LlamaAttention(const LlamaConfig& config, ParameterInit init)
    : num_heads_(config.num_attention_heads),
      num_key_value_heads_(config.num_key_value_heads),
      head_dim_(config.head_dim()),
      score_divisor_squared_(config.query_pre_attn_scalar.value_or(
          static_cast<double>(config.head_dim()))),
      softcap_(config.attn_logit_softcapping) {
  const bool qkv_bias = config.QkvBias();
  q_proj_.linear = register_module(
      "q_proj",
      MakeLinear(config.hidden_size, num_heads_ * head_dim_, qkv_bias, init));
  k_proj_.linear = register_module(
      "k_proj", MakeLinear(config.hidden_size, num_key_value_heads_ * head_dim_,
                           qkv_bias, init));
  v_proj_.linear = register_module(
      "v_proj", MakeLinear(config.hidden_size, num_key_value_heads_ * head_dim_,
                           qkv_bias, init));
  o_proj_.linear = register_module(
      "o_proj", MakeLinear(num_heads_ * head_dim_, config.hidden_size,
                           config.OutputProjectionBias(), init));
}

std::vector<std::pair<std::string, AdaptableLinear*>>
LlamaAttention::Projections() {
  return {{"q_proj", &q_proj_},
          {"k_proj", &k_proj_},
          {"v_proj", &v_proj_},
          {"o_proj", &o_proj_}};
}

at::Tensor LlamaAttention::Forward(const at::Tensor& x,
                                   const RotaryTables& rotary,
                                   const AttentionPattern& pattern,
                                   at::Tensor* past_keys,
                                   at::Tensor* past_values) {
  const int64_t batch = x.size(0), length = x.size(1);
  at::Tensor queries = q_proj_.Forward(x)
                           .view({batch, length, num_heads_, head_dim_})
                           .transpose(1, 2);
  at::Tensor keys = k_proj_.Forward(x)
                        .view({batch, length, num_key_value_heads_, head_dim_})
                        .transpose(1, 2);
  at::Tensor values =
      v_proj_.Forward(x)
          .view({batch, length, num_key_value_heads_, head_dim_})
          .transpose(1, 2);
  queries = ApplyRotaryEmbedding(queries, rotary);
  keys = ApplyRotaryEmbedding(keys, rotary);
  if (pattern.segments != nullptr) {
    TORCH_CHECK(past_keys == nullptr, "segment attention takes no KV cache");
    return o_proj_.Forward(PackedCausalAttention(
        queries, keys, values, *pattern.segments,
        1.0 / std::sqrt(score_divisor_squared_), pattern.window, softcap_));
  }
  const at::Tensor& mask = pattern.mask;
  if (past_keys != nullptr) {
    if (past_keys->defined()) {
      keys = torch::cat({*past_keys, keys.to(past_keys->scalar_type())}, 2);
      values =
          torch::cat({*past_values, values.to(past_values->scalar_type())}, 2);
    }
    *past_keys = keys;
    *past_values = values;
  }
  const int64_t repeats = num_heads_ / num_key_value_heads_;
  keys = RepeatKeyValueHeads(keys, repeats);
  values = RepeatKeyValueHeads(values, repeats);

  at::Tensor scores =
      torch::matmul(queries, keys.transpose(2, 3).to(queries.scalar_type())) /
      std::sqrt(score_divisor_squared_);
  if (softcap_.has_value()) {
    scores = torch::tanh(scores / *softcap_) * *softcap_;
  }
  scores = scores + mask.to(scores.scalar_type());
  const at::Tensor weights =
      torch::softmax(scores, -1, AtLeastFloat(scores.scalar_type()))
          .to(queries.scalar_type());
  const at::Tensor attended =
      torch::matmul(weights, values.to(queries.scalar_type()))
          .transpose(1, 2)
          .reshape({batch, length, num_heads_ * head_dim_});
  return o_proj_.Forward(attended);
}

LlamaMlp::LlamaMlp(const LlamaConfig& config, ParameterInit init)
    : activation_(config.hidden_act) {
  gate_proj_.linear = register_module(
      "gate_proj", MakeLinear(config.hidden_size, config.intermediate_size,
                              config.mlp_bias, init));
  up_proj_.linear = register_module(
      "up_proj", MakeLinear(config.hidden_size, config.intermediate_size,
                            config.mlp_bias, init));
  down_proj_.linear = register_module(
      "down_proj", MakeLinear(config.intermediate_size, config.hidden_size,
                              config.mlp_bias, init));
}

std::vector<std::pair<std::string, AdaptableLinear*>> LlamaMlp::Projections() {
  return {{"gate_proj", &gate_proj_},
          {"up_proj", &up_proj_},
          {"down_proj", &down_proj_}};
}

at::Tensor LlamaMlp::Forward(const at::Tensor& x) {
  const at::Tensor gate = gate_proj_.Forward(x);
  at::Tensor activated;
  if (activation_ == "gelu_pytorch_tanh") {
    activated = torch::gelu(gate, "tanh");
  } else if (activation_ == "gelu") {
    activated = torch::gelu(gate);
  } else {
    TORCH_CHECK(activation_ == "silu", "unknown activation ", activation_);
    activated = torch::silu(gate);
  }
  return down_proj_.Forward(activated * up_proj_.Forward(x));
}

LlamaDecoderLayer::LlamaDecoderLayer(const LlamaConfig& config,
                                     int64_t layer_index, ParameterInit init)
    : sliding_(config.IsSlidingLayer(layer_index)) {
  const bool offset = config.IsGemmaFamily();
  auto norm = [&] {
    return std::make_shared<LlamaRmsNorm>(config.hidden_size,
                                          config.rms_norm_eps, offset);
  };
  self_attn_ = register_module("self_attn",
                               std::make_shared<LlamaAttention>(config, init));
  mlp_ = register_module("mlp", std::make_shared<LlamaMlp>(config, init));
  input_layernorm_ = register_module("input_layernorm", norm());
  post_attention_layernorm_ =
      register_module("post_attention_layernorm", norm());
  if (config.HasSandwichNorms()) {
    pre_feedforward_layernorm_ =
        register_module("pre_feedforward_layernorm", norm());
    post_feedforward_layernorm_ =
        register_module("post_feedforward_layernorm", norm());
  }
}

std::vector<std::pair<std::string, AdaptableLinear*>>
LlamaDecoderLayer::Projections() {
  std::vector<std::pair<std::string, AdaptableLinear*>> projections;
  for (const auto& [name, projection] : self_attn_->Projections()) {
    projections.emplace_back("self_attn." + name, projection);
  }
  for (const auto& [name, projection] : mlp_->Projections()) {
    projections.emplace_back("mlp." + name, projection);
  }
  return projections;
}

at::Tensor LlamaDecoderLayer::Forward(const at::Tensor& x,
                                      const RotaryTables& rotary,
                                      const AttentionPattern& pattern,
                                      at::Tensor* past_keys,
                                      at::Tensor* past_values) {
  const at::Tensor attended = self_attn_->Forward(
      input_layernorm_->Forward(x), rotary, pattern, past_keys, past_values);
  if (pre_feedforward_layernorm_ == nullptr) {
    const at::Tensor hidden = x + attended;
    return hidden + mlp_->Forward(post_attention_layernorm_->Forward(hidden));
  }
  // Gemma 2: every sub-block's output is normalised before the residual.
  const at::Tensor hidden = x + post_attention_layernorm_->Forward(attended);
  return hidden + post_feedforward_layernorm_->Forward(mlp_->Forward(
                      pre_feedforward_layernorm_->Forward(hidden)));
}

LlamaBackbone::LlamaBackbone(const LlamaConfig& config, ParameterInit init)
    : head_dim_(config.head_dim()),
      rope_theta_(config.rope_theta),
      rope_scaling_(config.rope_scaling),
      sliding_window_(config.sliding_window),
      embedding_scale_(config.IsGemmaFamily()
                           ? std::sqrt(static_cast<double>(config.hidden_size))
                           : 1.0) {
  torch::nn::EmbeddingOptions embedding_options(config.vocab_size,
                                                config.hidden_size);
  if (init == ParameterInit::kUninitialized) {
    // A given weight is taken as is; the default one is drawn from N(0, 1).
    embedding_options._weight(
        torch::empty({config.vocab_size, config.hidden_size}));
  }
  embed_tokens_ =
      register_module("embed_tokens", torch::nn::Embedding(embedding_options));
  torch::nn::ModuleList layers;
  for (int64_t i = 0; i < config.num_hidden_layers; ++i) {
    layers_.push_back(std::make_shared<LlamaDecoderLayer>(config, i, init));
    layers->push_back(layers_.back());
  }
  register_module("layers", layers);
  norm_ = register_module("norm", std::make_shared<LlamaRmsNorm>(
                                      config.hidden_size, config.rms_norm_eps,
                                      config.IsGemmaFamily()));
}

at::Tensor LlamaBackbone::Embed(const at::Tensor& input_ids) {
  at::Tensor hidden = embed_tokens_->forward(input_ids);
  if (embedding_scale_ != 1.0) {
    // transformers rounds the normaliser to the hidden dtype first
    // (sqrt(3072) = 55.43 becomes 55.5 in bfloat16).
    hidden = hidden * torch::scalar_tensor(embedding_scale_, hidden.options());
  }
  return hidden;
}

at::Tensor LlamaBackbone::Forward(const at::Tensor& input_ids,
                                  const at::Tensor& attention_mask,
                                  KvCache* cache,
                                  const at::Tensor& position_ids) {
  return Run(input_ids, attention_mask, cache, position_ids, {}, nullptr);
}

at::Tensor LlamaBackbone::ForwardPacked(const at::Tensor& input_ids,
                                        const at::Tensor& position_ids,
                                        const at::Tensor& segment_ids) {
  TORCH_CHECK(position_ids.defined() && segment_ids.defined(),
              "packed rows need position_ids and segment_ids");
  return Run(input_ids, {}, nullptr, position_ids, segment_ids, nullptr);
}

std::vector<at::Tensor> LlamaBackbone::HiddenStatesByDepth(
    const at::Tensor& input_ids, const at::Tensor& attention_mask,
    const at::Tensor& position_ids) {
  std::vector<at::Tensor> by_depth;
  by_depth.reserve(layers_.size() + 1);
  // Run appends the layers' inputs; the final state comes last.
  at::Tensor last =
      Run(input_ids, attention_mask, nullptr, position_ids, {}, &by_depth);
  by_depth.push_back(std::move(last));
  return by_depth;
}

at::Tensor LlamaBackbone::Run(const at::Tensor& input_ids,
                              const at::Tensor& attention_mask, KvCache* cache,
                              const at::Tensor& position_ids,
                              const at::Tensor& segment_ids,
                              std::vector<at::Tensor>* by_depth) {
  TORCH_CHECK(input_ids.dim() == 2, "input_ids must be [batch, length], got ",
              input_ids.sizes());
  const int64_t batch = input_ids.size(0), length = input_ids.size(1);
  const int64_t past_length = cache != nullptr ? cache->length() : 0;
  if (cache != nullptr && cache->keys.empty()) {
    cache->keys.resize(layers_.size());
    cache->values.resize(layers_.size());
  }
  const PackedRowsPlan packed = PlanPackedRows(
      segment_ids,
      cache == nullptr && !IsCpuAutocastEnabled() &&
          PackedCausalAttentionSupports(input_ids.device(), EmbeddingDtype()));
  at::Tensor hidden = Embed(
      packed.kept.defined()
          ? input_ids.reshape({-1}).index_select(0, packed.kept).unsqueeze(0)
          : input_ids);
  // Like attention_mask, position_ids may come from another device (a batch
  // built on the CPU for a model on a GPU): moved to the ids' device.
  at::Tensor positions = position_ids.defined()
                             ? position_ids.to(input_ids.device())
                             : position_ids;
  if (!positions.defined()) {
    positions =
        torch::arange(
            past_length, past_length + length,
            torch::TensorOptions().dtype(at::kLong).device(input_ids.device()))
            .unsqueeze(0)
            .expand({batch, length});
  }
  if (packed.kept.defined()) {
    positions =
        positions.reshape({-1}).index_select(0, packed.kept).unsqueeze(0);
  }
  AttentionPattern full_pattern, sliding_pattern;
  bool full_ready = false, sliding_ready = false;
  for (const auto& layer : layers_) {
    bool& ready = layer->sliding() ? sliding_ready : full_ready;
    if (ready) continue;
    ready = true;
    AttentionPattern& pattern =
        layer->sliding() ? sliding_pattern : full_pattern;
    if (packed.segments != nullptr) {
      pattern.segments = packed.segments;
      if (layer->sliding()) pattern.window = sliding_window_;
      continue;
    }
    pattern.mask =
        BuildAttentionMask(attention_mask, batch, length, past_length,
                           layer->sliding() ? sliding_window_ : std::nullopt,
                           hidden.scalar_type(), hidden.device(), segment_ids);
  }
  // One rotary table for every layer of this pass.
  const RotaryTables rotary = ComputeRotaryTables(
      positions,
      RotaryInverseFrequencies(head_dim_, rope_theta_, rope_scaling_,
                               hidden.scalar_type(), hidden.device()),
      hidden.scalar_type());
  const bool checkpoint = activation_checkpointing_ && cache == nullptr &&
                          at::GradMode::is_enabled();
  for (size_t i = 0; i < layers_.size(); ++i) {
    const std::shared_ptr<LlamaDecoderLayer>& layer = layers_[i];
    const AttentionPattern& pattern =
        layer->sliding() ? sliding_pattern : full_pattern;
    if (hidden_state_edit_) {
      hidden = hidden_state_edit_(static_cast<int64_t>(i), hidden);
    }
    if (by_depth != nullptr) by_depth->push_back(hidden);
    if (checkpoint) {
      hidden = CheckpointedCall(
          [layer, rotary, pattern](const at::Tensor& input) {
            return layer->Forward(input, rotary, pattern, nullptr, nullptr);
          },
          hidden, layer->parameters());
      continue;
    }
    hidden = layer->Forward(hidden, rotary, pattern,
                            cache != nullptr ? &cache->keys[i] : nullptr,
                            cache != nullptr ? &cache->values[i] : nullptr);
  }
  at::Tensor normed = norm_->Forward(hidden);
  if (hidden_state_edit_) {
    normed = hidden_state_edit_(static_cast<int64_t>(layers_.size()), normed);
  }
  if (packed.kept.defined()) {
    // Back to the rows; padding positions hold zeros.
    return torch::zeros({batch * length, normed.size(-1)}, normed.options())
        .index_copy(0, packed.kept, normed[0])
        .view({batch, length, normed.size(-1)});
  }
  return normed;
}

at::ScalarType LlamaBackbone::EmbeddingDtype() const {
  return embed_tokens_->weight.scalar_type();
}

LlamaBackbone::PackedRowsPlan LlamaBackbone::PlanPackedRows(
    const at::Tensor& segment_ids, bool kernel_applies) const {
  PackedRowsPlan plan;
  if (!segment_ids.defined() || !kernel_applies) return plan;
  const at::Tensor ids = segment_ids.to(at::kCPU).to(at::kLong).contiguous();
  std::optional<std::vector<PackedSegment>> runs = PackedSegmentsFromIds(ids);
  if (!runs.has_value()) return plan;
  const int64_t width = ids.size(1);
  const int64_t* id = ids.data_ptr<int64_t>();
  std::vector<PackedSegment> sequences;
  std::vector<int64_t> kept;
  for (const PackedSegment& run : *runs) {
    if (id[run.row * width + run.start] == 0) continue;  // Padding.
    sequences.push_back({.row = 0,
                         .start = static_cast<int64_t>(kept.size()),
                         .length = run.length});
    for (int64_t i = 0; i < run.length; ++i) {
      kept.push_back(run.row * width + run.start + i);
    }
  }
  if (!kept.empty() && static_cast<int64_t>(kept.size()) < ids.numel()) {
    plan.kept =
        torch::tensor(kept, torch::dtype(at::kLong)).to(segment_ids.device());
    plan.segments = std::make_shared<const std::vector<PackedSegment>>(
        std::move(sequences));
    return plan;
  }
  plan.segments =
      std::make_shared<const std::vector<PackedSegment>>(*std::move(runs));
  return plan;
}

LlamaForCausalLM::LlamaForCausalLM(const LlamaConfig& config,
                                   ParameterInit init)
    : config_(config) {
  model_ =
      register_module("model", std::make_shared<LlamaBackbone>(config, init));
  if (!config.tie_word_embeddings) {
    lm_head_ = register_module("lm_head",
                               MakeLinear(config.hidden_size, config.vocab_size,
                                          /*bias=*/false, init));
  }
  if (init == ParameterInit::kUninitialized) return;
  torch::NoGradGuard no_grad;
  for (auto& parameter : named_parameters()) {
    const std::string& name = parameter.key();
    if (name.find("norm") != std::string::npos) continue;
    if (name.size() >= 5 && name.compare(name.size() - 5, 5, ".bias") == 0) {
      parameter.value().zero_();
    } else {
      parameter.value().normal_(0.0, 0.02);
    }
  }
}

void LlamaForCausalLM::SetHiddenStateEdit(HiddenStateEdit edit) {
  model_->SetHiddenStateEdit(std::move(edit));
}

at::Tensor LlamaForCausalLM::ForwardHidden(const at::Tensor& input_ids,
                                           const at::Tensor& attention_mask,
                                           KvCache* cache,
                                           const at::Tensor& position_ids) {
  return model_->Forward(input_ids, attention_mask, cache, position_ids);
}

at::Tensor LlamaForCausalLM::ForwardHiddenPacked(
    const at::Tensor& input_ids, const at::Tensor& position_ids,
    const at::Tensor& segment_ids) {
  return model_->ForwardPacked(input_ids, position_ids, segment_ids);
}

std::vector<at::Tensor> LlamaForCausalLM::HiddenStatesByDepth(
    const at::Tensor& input_ids, const at::Tensor& attention_mask,
    const at::Tensor& position_ids) {
  return model_->HiddenStatesByDepth(input_ids, attention_mask, position_ids);
}

at::Tensor LlamaForCausalLM::Logits(const at::Tensor& hidden) {
  at::Tensor logits =
      config_.tie_word_embeddings
          ? torch::matmul(hidden, model_->embed_tokens()->weight.t())
          : lm_head_->forward(hidden);
  if (config_.final_logit_softcapping.has_value()) {
    const double cap = *config_.final_logit_softcapping;
    logits = torch::tanh(logits / cap) * cap;
  }
  return logits;
}

at::Tensor LlamaForCausalLM::Forward(const at::Tensor& input_ids,
                                     const at::Tensor& attention_mask,
                                     KvCache* cache,
                                     const at::Tensor& position_ids) {
  return Logits(ForwardHidden(input_ids, attention_mask, cache, position_ids));
}

at::Device LlamaForCausalLM::device() { return parameters().front().device(); }

std::vector<NamedProjection> LlamaForCausalLM::Projections() {
  std::vector<NamedProjection> projections;
  const auto& layers = model_->layers();
  for (size_t i = 0; i < layers.size(); ++i) {
    for (const auto& [name, projection] : layers[i]->Projections()) {
      const size_t dot = name.rfind('.');
      projections.push_back({"model.layers." + std::to_string(i) + "." + name,
                             name.substr(dot + 1), static_cast<int64_t>(i),
                             projection});
    }
  }
  return projections;
}

void LlamaForCausalLM::SetActivationCheckpointing(bool enabled) {
  model_->SetActivationCheckpointing(enabled);
}

bool LlamaForCausalLM::activation_checkpointing() const {
  return model_->activation_checkpointing();
}

int64_t LlamaForCausalLM::NumParameters() {
  int64_t total = 0;
  for (const at::Tensor& parameter : parameters()) total += parameter.numel();
  return total;
}

CpuBf16AutocastGuard::CpuBf16AutocastGuard(bool enabled)
    : active_(enabled),
      previous_enabled_(IsCpuAutocastEnabled()),
      previous_dtype_(CpuAutocastDtype()) {
  if (!active_) return;
  SetCpuAutocastEnabled(true);
  SetCpuAutocastDtype(at::kBFloat16);
  at::autocast::increment_nesting();
}

CpuBf16AutocastGuard::~CpuBf16AutocastGuard() {
  if (!active_) return;
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  SetCpuAutocastEnabled(previous_enabled_);
  SetCpuAutocastDtype(previous_dtype_);
}

}  // namespace lethe
