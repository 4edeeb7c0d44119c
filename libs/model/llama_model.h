// A decoder-only Llama-family causal language model in LibTorch, laid out
// exactly like Hugging Face's LlamaForCausalLM so checkpoints map one to one
// (named_parameters() yields "model.embed_tokens.weight",
// "model.layers.{i}.self_attn.q_proj.weight", ..., "lm_head.weight").
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
// Semantics follow Hugging Face's eager implementation: RMSNorm in fp32,
// rotary embeddings in the rotate_half convention with rope_theta,
// grouped-query attention (K/V heads repeated), softmax in fp32, SwiGLU MLP,
// optionally tied input/output embeddings. attention_mask is [B, T_past+T]
// with 1 for real tokens and 0 for padding; masked keys are never attended
// to. position_ids default to past_length + arange(T); for left-padded
// batches pass PositionIdsFromMask(mask).
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

#include <memory>
#include <vector>

#include "libs/model/llama_config.h"

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

class LlamaRmsNorm : public torch::nn::Module {
 public:
  LlamaRmsNorm(int64_t size, double eps);
  at::Tensor Forward(const at::Tensor& x);

 private:
  at::Tensor weight_;
  double eps_;
};

class LlamaAttention : public torch::nn::Module {
 public:
  explicit LlamaAttention(const LlamaConfig& config);
  // `mask` is additive, [B, 1, T, T_past+T]. Appends to `past_keys/values`
  // when they are non-null.
  at::Tensor Forward(const at::Tensor& x, const RotaryTables& rotary,
                     const at::Tensor& mask, at::Tensor* past_keys,
                     at::Tensor* past_values);

 private:
  int64_t num_heads_;
  int64_t num_key_value_heads_;
  int64_t head_dim_;
  torch::nn::Linear q_proj_{nullptr}, k_proj_{nullptr}, v_proj_{nullptr},
      o_proj_{nullptr};
};

class LlamaMlp : public torch::nn::Module {
 public:
  explicit LlamaMlp(const LlamaConfig& config);
  at::Tensor Forward(const at::Tensor& x);

 private:
  torch::nn::Linear gate_proj_{nullptr}, up_proj_{nullptr}, down_proj_{nullptr};
};

class LlamaDecoderLayer : public torch::nn::Module {
 public:
  explicit LlamaDecoderLayer(const LlamaConfig& config);
  at::Tensor Forward(const at::Tensor& x, const RotaryTables& rotary,
                     const at::Tensor& mask, at::Tensor* past_keys,
                     at::Tensor* past_values);

 private:
  std::shared_ptr<LlamaAttention> self_attn_;
  std::shared_ptr<LlamaMlp> mlp_;
  std::shared_ptr<LlamaRmsNorm> input_layernorm_;
  std::shared_ptr<LlamaRmsNorm> post_attention_layernorm_;
};

// Hugging Face's LlamaModel: embeddings, decoder layers, final norm.
class LlamaBackbone : public torch::nn::Module {
 public:
  explicit LlamaBackbone(const LlamaConfig& config);
  // Final hidden states, [B, T, hidden_size].
  at::Tensor Forward(const at::Tensor& input_ids,
                     const at::Tensor& attention_mask, KvCache* cache,
                     const at::Tensor& position_ids);
  torch::nn::Embedding& embed_tokens() { return embed_tokens_; }

 private:
  int64_t head_dim_;
  double rope_theta_;
  torch::nn::Embedding embed_tokens_{nullptr};
  std::vector<std::shared_ptr<LlamaDecoderLayer>> layers_;
  std::shared_ptr<LlamaRmsNorm> norm_;
};

class LlamaForCausalLM : public torch::nn::Module {
 public:
  // Weights are initialised as Hugging Face does for a new model: normal with
  // std 0.02, norms at 1. Seed with torch::manual_seed for repeatability.
  explicit LlamaForCausalLM(const LlamaConfig& config);

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
  // lm_head (or the tied embedding matrix) applied to hidden states.
  at::Tensor Logits(const at::Tensor& hidden);

  const LlamaConfig& config() const { return config_; }
  int64_t NumParameters();
  // Where the parameters live (inputs on another device are not moved).
  at::Device device();

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
