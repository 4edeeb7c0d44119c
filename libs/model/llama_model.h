// A decoder-only causal language model in LibTorch for the Hugging Face
// families LlamaConfig describes (Llama, Mistral, Qwen2, Phi-3, Gemma,
// Gemma 2), laid out exactly like transformers' LlamaForCausalLM so
// checkpoints map one to one (named_parameters() yields
// "model.embed_tokens.weight", "model.layers.{i}.self_attn.q_proj.weight",
// ..., "lm_head.weight"; Phi-3's fused qkv_proj/gate_up_proj are split and
// re-fused by hf_checkpoint.h, so the model always has q/k/v and gate/up).
//
//   auto model = std::make_shared<LlamaForCausalLM>(config);
//   at::Tensor logits = model->Forward(input_ids, attention_mask);  // [B,T,V]
//
//   // Incremental decoding with a KV cache:
//   KvCache cache;
//   logits = model->Forward(prompt_ids, {}, &cache);
//   logits = model->Forward(next_id, {}, &cache);
//
// Greedy decoding on top of it lives in libs/model/generation.h.
//
// Hooks for training (LoRA itself lives in libs/model/lora.h):
//   - Every decoder-layer projection (q/k/v/o_proj, gate/up/down_proj) is a
//     torch::nn::Linear with an optional LinearAdapter whose output is added
//     to the projection's; Projections() lists them by their module path.
//   - SetActivationCheckpointing(true): in a forward pass with grad mode on
//     and no KV cache, each decoder layer keeps only its input and is
//     recomputed in the backward pass (libs/model/activation_checkpoint.h);
//     logits and every parameter's gradient are the same as without it. Not
//     twice differentiable: a backward pass with create_graph (OFMU's
//     Hessian-vector products) throws; callers validate against that first.
//
// Semantics follow transformers' eager implementations: RMSNorm in fp32
// (Gemma: x_normalized * (1 + w), cast after the product), rotary embeddings
// in the rotate_half convention with rope_theta and optional llama3
// frequency scaling, grouped-query attention (K/V heads repeated), optional
// q/k/v/o biases (Qwen2), a band mask on sliding-window layers (Mistral,
// Phi-3, Qwen2, Gemma 2: key s is visible to query t when t - window < s <=
// t, by index in the sequence), Gemma 2's tanh soft-capping, softmax in
// fp32, a gated MLP with SiLU or GELU, Gemma's sqrt(hidden_size) embedding
// scale (rounded to the hidden dtype), optionally tied input/output
// embeddings (one parameter). attention_mask is [B, T_past+T] with 1 for real
// tokens and 0 for padding; masked keys are never attended to. position_ids
// default to past_length + arange(T); for left-padded batches pass
// PositionIdsFromMask(mask).
//
// Parameters take the dtype of whatever the constructor or a loader puts
// there (hf_checkpoint.h can leave bf16/f16 weights in their stored dtype):
// the forward pass runs in the parameters' dtype, with RMSNorm, rotary
// angles and softmax computed in fp32 and the rotary tables and the additive
// mask cast to the hidden dtype, as transformers does for bf16 models.
//
// Methods throw c10::Error on misuse (wrong shapes, token ids outside the
// vocabulary), like any LibTorch module; callers at library boundaries wrap
// them with CallTorch.
#ifndef LETHE_LIBS_MODEL_LLAMA_MODEL_H_
#define LETHE_LIBS_MODEL_LLAMA_MODEL_H_

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/types.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "libs/model/llama_config.h"
#include "libs/model/packed_attention.h"

namespace lethe {

// Per-layer keys and values seen so far, [B, num_key_value_heads, T, d].
struct KvCache {
  std::vector<at::Tensor> keys;
  std::vector<at::Tensor> values;
  int64_t length() const { return keys.empty() ? 0 : keys[0].size(2); }
};

// Rotary embedding tables for positions [B, T]: cos and sin, each
// [B, 1, T, head_dim], in `dtype` (computed in at least fp32).
struct RotaryTables {
  at::Tensor cos;
  at::Tensor sin;
};
// transformers' inverse frequencies, [head_dim / 2], in at least fp32:
// rope_theta^(-2i/head_dim), then, for rope_type "llama3", divided by
// `factor` where the wavelength 2*pi/f exceeds original_max_position_embeddings
// / low_freq_factor, kept where it is below original_max_position_embeddings /
// high_freq_factor, and blended in between with
// smooth = (original_max_position_embeddings / wavelength - low_freq_factor) /
//          (high_freq_factor - low_freq_factor):
// (1 - smooth) * f / factor + smooth * f.
at::Tensor RotaryInverseFrequencies(int64_t head_dim, double rope_theta,
                                    const RopeScaling& scaling,
                                    at::ScalarType dtype,
                                    const at::Device& device);
RotaryTables ComputeRotaryTables(const at::Tensor& position_ids,
                                 const at::Tensor& inverse_frequencies,
                                 at::ScalarType dtype);
RotaryTables ComputeRotaryTables(const at::Tensor& position_ids,
                                 int64_t head_dim, double rope_theta,
                                 at::ScalarType dtype);

// Hugging Face's apply_rotary_pos_emb for one tensor x of [B, H, T, d].
at::Tensor ApplyRotaryEmbedding(const at::Tensor& x,
                                const RotaryTables& tables);
at::Tensor ApplyRotaryEmbedding(const at::Tensor& x,
                                const at::Tensor& position_ids,
                                double rope_theta);

// cumsum(mask) - 1, clamped at 0: positions for left-padded batches.
at::Tensor PositionIdsFromMask(const at::Tensor& attention_mask);

// How a model's constructor fills the parameters.
enum class ParameterInit {
  // Hugging Face's initialisation (see LlamaForCausalLM's constructor).
  kRandom,
  // Allocated with their shapes but never written: no page of them is
  // touched, so they take no resident memory. For loaders that replace
  // every parameter's data (set_data) before the model is used; reading one
  // before that returns garbage.
  kUninitialized,
};

class LlamaRmsNorm : public torch::nn::Module {
 public:
  // `offset` (Gemma): the output is x_normalized * (1 + weight), computed in
  // fp32 and cast afterwards, and the weight starts at 0.
  LlamaRmsNorm(int64_t size, double eps, bool offset = false);
  at::Tensor Forward(const at::Tensor& x);

 private:
  at::Tensor weight_;
  double eps_;
  bool offset_;
};

// An addition to one projection's output (the hook LoRA attaches through):
// the projection returns linear(x) + Delta(x), computed in the promoted dtype
// of the two and cast back to linear(x)'s dtype (as PEFT adds an fp32
// adapter's output to a bf16 layer's). Whoever installs an adapter registers
// its parameters (lora.h registers them under the projection's Linear).
class LinearAdapter {
 public:
  virtual ~LinearAdapter() = default;
  // An undefined tensor adds nothing (a disabled adapter).
  virtual at::Tensor Delta(const at::Tensor& x) = 0;
};

// One projection: a Linear and its optional adapter.
struct AdaptableLinear {
  torch::nn::Linear linear{nullptr};
  std::shared_ptr<LinearAdapter> adapter;
  at::Tensor Forward(const at::Tensor& x);
};

// A projection by its place in the model, for code that attaches adapters.
struct NamedProjection {
  std::string path;  // Module path, e.g. "model.layers.0.self_attn.q_proj".
  std::string name;  // The last component, e.g. "q_proj".
  int64_t layer;
  AdaptableLinear* projection;  // Owned by the model.
};

// Which keys each query of one layer attends to: an additive mask
// [B, 1, T, T_past+T], or, when `segments` is set (packed rows on the CPU,
// no KV cache), causally within each segment and `window`
// (a sliding layer's), computed by PackedCausalAttention without a mask.
struct AttentionPattern {
  at::Tensor mask;
  std::shared_ptr<const std::vector<PackedSegment>> segments;
  std::optional<int64_t> window;
};

class LlamaAttention : public torch::nn::Module {
 public:
  explicit LlamaAttention(const LlamaConfig& config,
                          ParameterInit init = ParameterInit::kRandom);
  // Appends to `past_keys/values` when they are non-null (mask patterns
  // only).
  at::Tensor Forward(const at::Tensor& x, const RotaryTables& rotary,
                     const AttentionPattern& pattern, at::Tensor* past_keys,
                     at::Tensor* past_values);
  // q_proj, k_proj, v_proj, o_proj, by name.
  std::vector<std::pair<std::string, AdaptableLinear*>> Projections();

 private:
  int64_t num_heads_;
  int64_t num_key_value_heads_;
  int64_t head_dim_;
  // Scores are divided by sqrt(this): head_dim, or Gemma 2's
  // query_pre_attn_scalar.
  double score_divisor_squared_;
  std::optional<double> softcap_;
  AdaptableLinear q_proj_, k_proj_, v_proj_, o_proj_;
};

class LlamaMlp : public torch::nn::Module {
 public:
  explicit LlamaMlp(const LlamaConfig& config,
                    ParameterInit init = ParameterInit::kRandom);
  at::Tensor Forward(const at::Tensor& x);
  // gate_proj, up_proj, down_proj, by name.
  std::vector<std::pair<std::string, AdaptableLinear*>> Projections();

 private:
  std::string activation_;
  AdaptableLinear gate_proj_, up_proj_, down_proj_;
};

class LlamaDecoderLayer : public torch::nn::Module {
 public:
  LlamaDecoderLayer(const LlamaConfig& config, int64_t layer_index,
                    ParameterInit init = ParameterInit::kRandom);
  // `pattern` is the one for this layer (full or sliding window).
  at::Tensor Forward(const at::Tensor& x, const RotaryTables& rotary,
                     const AttentionPattern& pattern, at::Tensor* past_keys,
                     at::Tensor* past_values);
  bool sliding() const { return sliding_; }
  // "self_attn.q_proj", ..., "mlp.down_proj".
  std::vector<std::pair<std::string, AdaptableLinear*>> Projections();

 private:
  bool sliding_;
  std::shared_ptr<LlamaAttention> self_attn_;
  std::shared_ptr<LlamaMlp> mlp_;
  std::shared_ptr<LlamaRmsNorm> input_layernorm_;
  std::shared_ptr<LlamaRmsNorm> post_attention_layernorm_;
  // Gemma 2 only.
  std::shared_ptr<LlamaRmsNorm> pre_feedforward_layernorm_;
  std::shared_ptr<LlamaRmsNorm> post_feedforward_layernorm_;
};

// Replaces the hidden state at `depth` (HiddenStatesByDepth's index) by the
// tensor it returns, of the same shape and dtype, in every forward pass.
using HiddenStateEdit =
    std::function<at::Tensor(int64_t depth, const at::Tensor& hidden)>;

// Hugging Face's LlamaModel: embeddings, decoder layers, final norm.
class LlamaBackbone : public torch::nn::Module {
 public:
  explicit LlamaBackbone(const LlamaConfig& config,
                         ParameterInit init = ParameterInit::kRandom);
  // Final hidden states, [B, T, hidden_size].
  at::Tensor Forward(const at::Tensor& input_ids,
                     const at::Tensor& attention_mask, KvCache* cache,
                     const at::Tensor& position_ids);
  // Packed rows (LlamaForCausalLM::ForwardHiddenPacked).
  at::Tensor ForwardPacked(const at::Tensor& input_ids,
                           const at::Tensor& position_ids,
                           const at::Tensor& segment_ids);
  // The hidden states at every depth (LlamaForCausalLM::HiddenStatesByDepth).
  std::vector<at::Tensor> HiddenStatesByDepth(const at::Tensor& input_ids,
                                              const at::Tensor& attention_mask,
                                              const at::Tensor& position_ids);
  // The input embeddings of `input_ids`, scaled for Gemma.
  at::Tensor Embed(const at::Tensor& input_ids);
  torch::nn::Embedding& embed_tokens() { return embed_tokens_; }
  const std::vector<std::shared_ptr<LlamaDecoderLayer>>& layers() const {
    return layers_;
  }
  void SetActivationCheckpointing(bool enabled) {
    activation_checkpointing_ = enabled;
  }
  bool activation_checkpointing() const { return activation_checkpointing_; }
  void SetHiddenStateEdit(HiddenStateEdit edit) {
    hidden_state_edit_ = std::move(edit);
  }

 private:
  // How packed rows run: `segments` is set when the layers attend segment
  // by segment (kernel_applies: the dtype, device and settings allow it;
  // PackedSegmentsFromIds finds runs). `kept` is set when the rows also
  // hold padding (segment id 0): the padding is dropped and the sequences
  // run as one row (the flat indices into [B * T] kept, on the ids' device;
  // `segments` are then in that row), so that no layer computes padding
  // positions.
  struct PackedRowsPlan {
    std::shared_ptr<const std::vector<PackedSegment>> segments;
    at::Tensor kept;
  };
  PackedRowsPlan PlanPackedRows(const at::Tensor& segment_ids,
                                bool kernel_applies) const;
  at::ScalarType EmbeddingDtype() const;
  // Forward's computation; when `by_depth` is not null, also appends the
  // input of every decoder layer and then the final (normed) state to it.
  at::Tensor Run(const at::Tensor& input_ids, const at::Tensor& attention_mask,
                 KvCache* cache, const at::Tensor& position_ids,
                 const at::Tensor& segment_ids,
                 std::vector<at::Tensor>* by_depth);

  bool activation_checkpointing_ = false;
  HiddenStateEdit hidden_state_edit_;
  int64_t head_dim_;
  double rope_theta_;
  RopeScaling rope_scaling_;
  std::optional<int64_t> sliding_window_;
  double embedding_scale_;  // 1 except for Gemma.
  torch::nn::Embedding embed_tokens_{nullptr};
  std::vector<std::shared_ptr<LlamaDecoderLayer>> layers_;
  std::shared_ptr<LlamaRmsNorm> norm_;
};

class LlamaForCausalLM : public torch::nn::Module {
 public:
  // Weights are initialised as Hugging Face does for a new model: normal with
  // std 0.02, biases at 0, norms at 1 (Gemma: 0, meaning a scale of 1).
  // Seed with torch::manual_seed for repeatability. With kUninitialized the
  // parameters are left unwritten (see ParameterInit).
  explicit LlamaForCausalLM(const LlamaConfig& config,
                            ParameterInit init = ParameterInit::kRandom);

  // Logits, [B, T, vocab_size], in the dtype of the computation.
  at::Tensor Forward(const at::Tensor& input_ids,
                     const at::Tensor& attention_mask = {},
                     KvCache* cache = nullptr,
                     const at::Tensor& position_ids = {});
  // Final hidden states (before lm_head), [B, T, hidden_size].
  at::Tensor ForwardHidden(const at::Tensor& input_ids,
                           const at::Tensor& attention_mask = {},
                           KvCache* cache = nullptr,
                           const at::Tensor& position_ids = {});
  // Final hidden states of packed rows [B, T] holding several whole
  // sequences each (libs/data/packed_batch.h): position_ids restart at 0 per
  // sequence and segment_ids [B, T] name each position's sequence, so that
  // a query attends only to earlier keys of its own segment (a block-
  // diagonal causal mask; sliding windows still apply, by index, which
  // within a segment is the position). Every sequence's hidden states equal
  // those of running it alone, up to rounding. No KV cache. Segment id 0
  // marks padding, whose hidden states have no meaning. Float and double
  // models on the CPU (not under bf16 autocast) attend segment by segment
  // (packed_attention.h), padding dropped before the first layer (its
  // hidden states are zeros) and the rows' sequences run as one row; other
  // dtypes and devices attend through the mask.
  at::Tensor ForwardHiddenPacked(const at::Tensor& input_ids,
                                 const at::Tensor& position_ids,
                                 const at::Tensor& segment_ids);
  // The hidden states at every depth, as transformers' output_hidden_states
  // returns them: num_hidden_layers + 1 tensors [B, T, hidden_size], entry 0
  // the input embeddings (scaled, for Gemma), entry i (0 < i < L) the output
  // of decoder layer i - 1, entry L the final norm of the last layer's
  // output (equal to ForwardHidden's). One forward pass, no KV cache;
  // positions under attention_mask 0 hold values of no meaning. Forward and
  // ForwardHidden keep none of these.
  std::vector<at::Tensor> HiddenStatesByDepth(
      const at::Tensor& input_ids, const at::Tensor& attention_mask = {},
      const at::Tensor& position_ids = {});
  // lm_head (or the tied embedding matrix) applied to hidden states, then
  // Gemma 2's final soft-capping.
  at::Tensor Logits(const at::Tensor& hidden);

  const LlamaConfig& config() const { return config_; }
  int64_t NumParameters();
  // Where the parameters live (inputs on another device are not moved).
  at::Device device();

  // Every decoder-layer projection, layer by layer, in module order
  // (self_attn.q_proj, k_proj, v_proj, o_proj, mlp.gate_proj, up_proj,
  // down_proj).
  std::vector<NamedProjection> Projections();

  // Activation checkpointing per decoder layer (see the top of this file).
  // Off by default. Whatever changes a layer's computation (adapters on or
  // off, train/eval mode) must not change between a forward pass and its
  // backward pass, which recomputes the layers; the random state is
  // restored for the recomputation, so dropout draws the same masks.
  void SetActivationCheckpointing(bool enabled);
  bool activation_checkpointing() const;

  // An edit of the hidden states at every depth (e.g. PGA's inference-time
  // projection, libs/unlearn/pga.h), applied in every pass (Forward,
  // ForwardHidden, packed rows, HiddenStatesByDepth, which returns the edited
  // states) where depth d's state is formed: before decoder layer d for
  // d < L, after the final norm for d = L. Position-wise edits give the same
  // results with and without a KV cache. Empty (the default): none.
  void SetHiddenStateEdit(HiddenStateEdit edit);

 private:
  LlamaConfig config_;
  std::shared_ptr<LlamaBackbone> model_;
  torch::nn::Linear lm_head_{nullptr};
};

// Makes CPU matmuls inside its scope run in bfloat16 (autocast), as
// torch.autocast("cpu", dtype=torch.bfloat16) does; restores the previous
// state on destruction. With enabled=false it changes nothing.
class CpuBf16AutocastGuard {
 public:
  explicit CpuBf16AutocastGuard(bool enabled = true);
  ~CpuBf16AutocastGuard();
  CpuBf16AutocastGuard(const CpuBf16AutocastGuard&) = delete;
  CpuBf16AutocastGuard& operator=(const CpuBf16AutocastGuard&) = delete;

 private:
  bool active_;
  bool previous_enabled_;
  at::ScalarType previous_dtype_;
};

}  // namespace lethe

#endif  // LETHE_LIBS_MODEL_LLAMA_MODEL_H_
