#include "libs/plan/memory_plan.h"

#include <algorithm>
#include <cstdio>
#include <initializer_list>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "libs/jobs/job_spec.h"
#include "libs/status/status_macros.h"

namespace lethe {
namespace {

constexpr int64_t kFp32 = 4;
constexpr int64_t kFp64 = 8;

// The resident memory of a LibTorch CPU process before it holds a tensor:
// code of libtorch_cpu, OpenBLAS, glog and the rest, the OpenMP thread
// pool's stacks, the allocator's arenas. Measured as VmHWM of
// benchmarks/memory_plan_check's child after its first tensor operation:
// 0.154 GiB with Debian's LibTorch 1.13.1 and 2 threads (plus a little for
// the threads the training loop starts).
constexpr int64_t kCpuRuntimeOverheadBytes = 170LL << 20;
// A CUDA rank: the CUDA context with LibTorch's kernels loaded (about 0.5
// GiB on an H100/H200 with CUDA 12/13), cuBLAS workspaces, and the caching
// allocator's slack. An estimate, not measured by Lethe.
constexpr int64_t kCudaRuntimeOverheadBytes = 1LL << 30;
// c10d all-reduce buckets (CollectiveGroup::kDefaultBucketBytes, 25 MiB):
// the flat bucket and the collective's own buffer.
constexpr int64_t kBucketBytes = 25LL << 20;

// The decoder's linear modules, as PEFT names them, with [in, out].
struct LinearShape {
  int64_t in = 0;
  int64_t out = 0;
};

std::vector<std::pair<std::string, LinearShape>> LayerLinears(
    const LlamaConfig& c) {
  const int64_t q = c.num_attention_heads * c.head_dim();
  const int64_t kv = c.num_key_value_heads * c.head_dim();
  return {{"q_proj", {c.hidden_size, q}},
          {"k_proj", {c.hidden_size, kv}},
          {"v_proj", {c.hidden_size, kv}},
          {"o_proj", {q, c.hidden_size}},
          {"gate_proj", {c.hidden_size, c.intermediate_size}},
          {"up_proj", {c.hidden_size, c.intermediate_size}},
          {"down_proj", {c.intermediate_size, c.hidden_size}}};
}

absl::StatusOr<int64_t> DtypeBytes(const std::string& weights_dtype,
                                   const LlamaConfig& config,
                                   std::string* resolved) {
  std::string name = absl::AsciiStrToLower(weights_dtype);
  if (name == "auto") {
    name = config.torch_dtype == "bfloat16"  ? "bf16"
           : config.torch_dtype == "float16" ? "fp16"
                                             : "fp32";
  }
  if (name.empty() || name == "fp32" || name == "float32") {
    *resolved = "fp32";
    return 4;
  }
  if (name == "bf16" || name == "bfloat16") {
    *resolved = "bf16";
    return 2;
  }
  if (name == "fp16" || name == "float16") {
    *resolved = "fp16";
    return 2;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("weights_dtype must be fp32, bf16, fp16 or auto, got \"",
                   weights_dtype, "\""));
}

// One forward pass with gradients per micro-batch and what its loss keeps
// of the [B, T, V] logits.
enum class LossKind {
  // Cross-entropy log-probs (NLL, NPO, SimNPO, DPO terms, IHL): the fp32
  // log-softmax output is saved.
  kLogProbs,
  // KL(ref || theta) on retain: log p, exp(log q) and (log q - log p) are
  // saved, and the reference's logits exist during the pass.
  kKl,
};

std::vector<LossKind> ForwardPasses(UnlearningMethod method,
                                    const ObjectiveParams& params) {
  using M = UnlearningMethod;
  switch (method) {
    case M::kGa:
    case M::kNpo:
    case M::kMsa:  // Its fine-tunes: one NLL pass.
      return {LossKind::kLogProbs};
    case M::kGradDiff:
      return {LossKind::kLogProbs, params.retain_loss == RetainLoss::kKl
                                       ? LossKind::kKl
                                       : LossKind::kLogProbs};
    case M::kNpoRt:
    case M::kSimNpo:
    case M::kIhl:
    case M::kReglu:  // Forget (IHL or -NLL) and retain NLL; ROL is tiny.
    case M::kPga:    // Forget states and holdout NLL, one pass each.
      return {LossKind::kLogProbs, LossKind::kLogProbs};
    case M::kNpoKl:
      return {LossKind::kLogProbs, LossKind::kKl};
    case M::kIdkDpo:
      return {LossKind::kLogProbs, LossKind::kLogProbs, LossKind::kLogProbs};
    case M::kLlmu:
      return {LossKind::kLogProbs, LossKind::kLogProbs, LossKind::kKl};
    case M::kOfmu:
      // Forget and retain gradients with create_graph (the Hessian-vector
      // product differentiates them again): both graphs stay alive, twice.
      return {LossKind::kLogProbs, LossKind::kLogProbs, LossKind::kLogProbs,
              LossKind::kLogProbs};
  }
  return {LossKind::kLogProbs};
}

// Bytes of the tensors one eager decoder layer saves for its backward pass,
// per token and per (token x key) score, counted from llama_model.cc:
//   input_layernorm: its input x (the residual stream), the fp32 copy of x
//     when x is not fp32 (pow and the rsqrt product save it), the
//     normalised value cast to x's dtype (the weight product saves it), and
//     its output (saved by q/k/v_proj, or their autocast copy);
//   attention: the rotated queries, the keys and values repeated to the
//     query heads (saved by the two matmuls), the merged heads (saved by
//     o_proj): 4 x heads x head_dim per token; rotary products save only
//     their cos/sin tables (which need no gradient), the score scaling
//     saves nothing;
//   per score: the fp32 softmax output, and its cast to the activation
//     dtype when that is not fp32; Gemma 2's tanh soft-cap output;
//   the residual sum h, post_attention_layernorm as above;
//   MLP: gate (saved by SiLU/GELU), the activation, up, and their product
//     (saved by down_proj): 4 x intermediate per token;
//   Gemma 2's two extra sandwich norms, each with its input.
struct LayerBytes {
  int64_t per_token = 0;  // Multiply by B x T.
  int64_t per_score = 0;  // Multiply by B x heads x T x T.
};

LayerBytes SavedLayerBytes(const LlamaConfig& c, int64_t hidden_bytes,
                           int64_t linear_bytes,
                           const std::vector<std::string>* lora_targets) {
  const int64_t h = c.hidden_size, i = c.intermediate_size;
  const int64_t q = c.num_attention_heads * c.head_dim();
  const int64_t norm_inner = (hidden_bytes == kFp32 ? 0 : kFp32) + hidden_bytes;
  const int64_t norm = norm_inner + linear_bytes;  // Plus its output.
  LayerBytes bytes;
  bytes.per_token = (hidden_bytes + norm) * h    // x, input_layernorm.
                    + 4 * linear_bytes * q       // q, k, v, merged heads.
                    + (hidden_bytes + norm) * h  // h, post-attention norm.
                    + 4 * linear_bytes * i;      // MLP.
  if (c.HasSandwichNorms()) bytes.per_token += 2 * (hidden_bytes + norm) * h;
  // Measured, not attributed to a tensor: `memory_plan_check --probe` finds
  // two more [B, T, hidden] tensors per layer than the count above (54.1 MiB
  // per layer against 50.0 for the 20M model, 80.1 against 74.0 for the
  // 100M one, batch 4 x 256).
  bytes.per_token += 2 * hidden_bytes * h;
  // LoRA: autograd saves a tensor only for a gradient it will compute, so
  // with frozen weights the norms' weight products save no normalised
  // value, and a frozen projection saves no input; an adapter saves its
  // projection's input (for A's gradient; the same tensor) and A x
  // ([B, T, rank], small, not counted). Measured by memory_plan_check
  // (lora16 on q_proj and v_proj, and on all seven).
  if (lora_targets != nullptr) {
    const auto targeted = [&](std::initializer_list<const char*> modules) {
      for (const char* module : modules) {
        if (std::find(lora_targets->begin(), lora_targets->end(), module) !=
            lora_targets->end()) {
          return true;
        }
      }
      return false;
    };
    bytes.per_token -= 2 * hidden_bytes * h;  // The two normalised values.
    if (!targeted({"q_proj", "k_proj", "v_proj"})) {
      bytes.per_token -= linear_bytes * h;  // input_layernorm's output.
    }
    if (!targeted({"o_proj"})) bytes.per_token -= linear_bytes * q;
    if (!targeted({"gate_proj", "up_proj"})) {
      bytes.per_token -= linear_bytes * h;  // post_attention_layernorm's.
    }
    if (!targeted({"down_proj"})) bytes.per_token -= linear_bytes * i;
  }
  bytes.per_score = kFp32 + (linear_bytes == kFp32 ? 0 : linear_bytes);
  if (c.attn_logit_softcapping.has_value()) bytes.per_score += linear_bytes;
  return bytes;
}

// The largest transient of one layer's backward pass beyond what it saved:
// the score gradients (the incoming gradient of the attention weights, its
// fp32 cast and the softmax's input gradient: 3 fp32 [B, heads, T, T]) or
// the MLP's [B, T, intermediate] gradients (gate, up, activation: 3).
int64_t LayerBackwardTransient(const LlamaConfig& c, int64_t batch,
                               int64_t length, int64_t linear_bytes) {
  const int64_t scores =
      3 * kFp32 * batch * c.num_attention_heads * length * length;
  const int64_t mlp = 3 * linear_bytes * batch * length * c.intermediate_size;
  return std::max(scores, mlp);
}

int64_t Positive(int value) { return std::max<int64_t>(value, 1); }

}  // namespace

int64_t MemoryPlan::training_bytes() const {
  return weights + gradients + optimizer_state + reference_model +
         method_state + activations + logits + data_parallel_buffers +
         runtime_overhead;
}

int64_t MemoryPlan::total_bytes() const {
  return std::max({training_bytes(), reference_pass_bytes, rila_bytes});
}

int64_t CountParameters(const LlamaConfig& c) {
  const int64_t h = c.hidden_size;
  const int64_t q = c.num_attention_heads * c.head_dim();
  const int64_t kv = c.num_key_value_heads * c.head_dim();
  int64_t layer = 0;
  for (const auto& [name, shape] : LayerLinears(c)) {
    layer += shape.in * shape.out;
  }
  if (c.QkvBias()) layer += q + 2 * kv;
  if (c.OutputProjectionBias()) layer += h;
  if (c.mlp_bias) layer += 2 * c.intermediate_size + h;
  layer += (c.HasSandwichNorms() ? 4 : 2) * h;  // RMSNorm weights.
  const int64_t embeddings = c.vocab_size * h;
  return embeddings * (c.tie_word_embeddings ? 1 : 2) +
         c.num_hidden_layers * layer + h;  // + the final norm.
}

absl::StatusOr<int64_t> CountLoraParameters(
    const LlamaConfig& config, int rank,
    const std::vector<std::string>& target_modules) {
  if (rank <= 0) return 0;
  const std::vector<std::string> modules =
      target_modules.empty() ? std::vector<std::string>{"q_proj", "v_proj"}
                             : target_modules;
  const auto linears = LayerLinears(config);
  std::set<std::string> seen;
  int64_t per_layer = 0;
  for (const std::string& module : modules) {
    auto it = std::find_if(linears.begin(), linears.end(),
                           [&](const auto& l) { return l.first == module; });
    if (it == linears.end()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "lora target module \"", module,
          "\" is not one of q_proj, k_proj, v_proj, o_proj, gate_proj, "
          "up_proj, down_proj"));
    }
    if (!seen.insert(module).second) continue;  // Named twice: one adapter.
    per_layer += static_cast<int64_t>(rank) * (it->second.in + it->second.out);
  }
  return per_layer * config.num_hidden_layers;
}

absl::StatusOr<MemoryPlan> PlanMemory(const LlamaConfig& config,
                                      const PlanOptions& options) {
  if (options.batch_size < 1 || options.max_length < 1 ||
      options.world_size < 1 || options.lora_rank < 0 ||
      options.loss_chunk_tokens < 0 || options.zero_stage < 0 ||
      options.zero_stage > 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        "batch_size, max_length and world_size must be >= 1, lora_rank and "
        "loss_chunk_tokens >= 0, zero_stage 0, 1 or 2; got ",
        options.batch_size, ", ", options.max_length, ", ", options.world_size,
        ", ", options.lora_rank, ", ", options.loss_chunk_tokens, ", ",
        options.zero_stage));
  }
  MemoryPlan plan;
  ASSIGN_OR_RETURN(
      const int64_t weight_bytes,
      DtypeBytes(options.weights_dtype, config, &plan.weights_dtype));
  const bool lora = options.lora_rank > 0;
  const std::vector<std::string> lora_targets =
      options.lora_target_modules.empty()
          ? std::vector<std::string>{"q_proj", "v_proj"}  // PEFT's default.
          : options.lora_target_modules;
  plan.parameters = CountParameters(config);
  ASSIGN_OR_RETURN(plan.lora_parameters,
                   CountLoraParameters(config, options.lora_rank,
                                       options.lora_target_modules));
  // Adapters are fp32 (PEFT's autocast_adapter_dtype) whatever the base.
  plan.trainable_parameters = lora ? plan.lora_parameters : plan.parameters;
  const int64_t trained_bytes = lora ? kFp32 : weight_bytes;
  // bf16 autocast applies to fp32 weights only (a bf16 model already is).
  const bool autocast = options.bf16_autocast && weight_bytes == kFp32;

  plan.weights = plan.parameters * weight_bytes + plan.lora_parameters * kFp32;
  if (autocast) plan.weights += plan.parameters * 2;  // The autocast cache.
  plan.gradients = plan.trainable_parameters * trained_bytes;
  plan.optimizer_state = 2 * plan.trainable_parameters * trained_bytes;
  if (options.zero_stage > 0) {
    // One rank's shard: fp32 moments, and fp32 master weights unless the
    // trained parameters are fp32 themselves.
    const int64_t shard = (plan.trainable_parameters + options.world_size - 1) /
                          options.world_size;
    plan.optimizer_state =
        shard * (2 * kFp32 + (trained_bytes == kFp32 ? 0 : kFp32));
    if (options.zero_stage == 2 && options.world_size > 1) {
      // The fp32 shard; full gradients only while earlier micro-batches
      // accumulate.
      plan.gradients =
          shard * kFp32 +
          (options.gradient_accumulation_steps > 1 ? plan.gradients : 0);
    }
  }

  const ObjectiveNeeds needs = MethodNeeds(options.method, options.params);
  plan.holds_reference_model = needs.reference_model && !lora;
  const int64_t reference_bytes =
      options.bf16_reference ? 2 : std::min<int64_t>(weight_bytes, kFp32);
  if (plan.holds_reference_model) {
    plan.reference_model = plan.parameters * reference_bytes;
  }

  // Activations of the training step.
  const int64_t batch = options.batch_size, length = options.max_length;
  const int64_t tokens = batch * length;
  const int64_t vocab = config.vocab_size;
  const int64_t hidden_bytes = weight_bytes;
  const int64_t linear_bytes = autocast ? 2 : weight_bytes;
  const LayerBytes layer = SavedLayerBytes(config, hidden_bytes, linear_bytes,
                                           lora ? &lora_targets : nullptr);
  const int64_t scores_per_layer =
      batch * config.num_attention_heads * length * length;
  const int64_t layer_saved =
      layer.per_token * tokens + layer.per_score * scores_per_layer;
  const int64_t norm_inner = (hidden_bytes == kFp32 ? 0 : kFp32) + hidden_bytes;
  // The final norm: its input, inner values and output (saved by lm_head).
  const int64_t final_norm =
      (hidden_bytes + norm_inner + linear_bytes) * config.hidden_size * tokens;
  const int64_t mask = hidden_bytes * batch * length * length;
  const std::vector<LossKind> passes =
      ForwardPasses(options.method, options.params);
  const int64_t pass_count = static_cast<int64_t>(passes.size());
  const int64_t layers = config.num_hidden_layers;
  int64_t saved_per_pass;
  if (options.activation_checkpointing) {
    // Each layer keeps its input; in the backward pass one layer at a time
    // is recomputed with its saved tensors.
    saved_per_pass =
        layers * hidden_bytes * config.hidden_size * tokens + final_norm;
    plan.activations = pass_count * saved_per_pass + layer_saved;
  } else {
    saved_per_pass = layers * layer_saved + final_norm;
    plan.activations = pass_count * saved_per_pass;
  }
  plan.activations +=
      mask + LayerBackwardTransient(config, batch, length, linear_bytes);

  // Logits: lm_head's output in the activation dtype, the fp32 copy of the
  // shifted logits (reshape of a narrowed view), the log-softmax output
  // (saved), and in the backward pass its gradient and the input gradient.
  const int64_t logits_dtype = linear_bytes;
  if (options.loss_chunk_tokens > 0) {
    const int64_t chunk =
        std::min<int64_t>(options.loss_chunk_tokens, tokens) * vocab;
    // Nothing [T x V] is saved; a chunk's logits, fp32 copy, log-softmax and
    // gradients exist one chunk at a time (KL: also the reference's).
    // libs/loss/chunked_log_probs upcasts a bf16/fp16 output projection to
    // fp32 once per pass: [V x hidden] fp32 for each pass.
    bool kl = false;
    for (LossKind kind : passes) kl = kl || kind == LossKind::kKl;
    plan.logits = chunk * (logits_dtype + 4 * kFp32) * (kl ? 2 : 1);
    if (weight_bytes != kFp32) {
      plan.logits += pass_count * vocab * config.hidden_size * kFp32;
    }
  } else {
    const int64_t btv = tokens * vocab;
    int64_t saved = 0, forward_peak = 0, held_logits = 0;
    for (LossKind kind : passes) {
      // During a pass: earlier passes' saved tensors, every pass's logits
      // (the objective holds them until the loss is assembled), this
      // pass's fp32 copy and log-softmax.
      const int64_t pass_saved = (kind == LossKind::kKl ? 3 : 1) * kFp32 * btv;
      held_logits += logits_dtype * btv;
      const int64_t reference_logits =
          kind == LossKind::kKl ? (reference_bytes + 2 * kFp32) * btv : 0;
      forward_peak = std::max(forward_peak, saved + held_logits + kFp32 * btv +
                                                pass_saved + reference_logits);
      saved += pass_saved;
    }
    // Backward, first pass processed: all saved, the log-softmax gradient
    // and input gradient (fp32), the logits' gradient.
    const int64_t backward_peak = saved + (2 * kFp32 + logits_dtype) * btv;
    plan.logits = std::max(forward_peak, backward_peak);
  }

  if (options.world_size > 1) plan.data_parallel_buffers = 2 * kBucketBytes;
  plan.runtime_overhead = options.device == PlanDevice::kCuda
                              ? kCudaRuntimeOverheadBytes
                              : kCpuRuntimeOverheadBytes;

  // A forward pass without gradients over `rows` sequences: one layer's
  // working set (its largest tensors: scores and softmax, the MLP's
  // intermediates).
  auto no_grad_working = [&](int64_t rows) {
    return 2 * kFp32 * rows * config.num_attention_heads * length * length +
           3 * linear_bytes * rows * length * config.intermediate_size;
  };
  if (options.method == UnlearningMethod::kReglu && lora) {
    // REGLU (libs/unlearn/reglu.cc). Held through training: each adapted
    // projection's retain basis Q_R [d_out x k] and its initial adapters
    // (for unfolding), in the adapters' dtype. Before training, RILA: the
    // per-sample sums of every adapted projection's input, fp64, for
    // reglu_samples forget and as many retain examples (at most; twice
    // while data-parallel ranks combine them), then one projection at a
    // time its fp64 weight, both sets' output features and five
    // [d_out x d_out] fp64 matrices (the covariances, Delta, the
    // eigendecomposition's copy and vectors), during a forward pass's
    // working set while measuring.
    const int64_t samples = 2 * Positive(options.params.reglu_samples);
    int64_t sums = 0, largest = 0;
    for (const std::string& module : lora_targets) {
      for (const auto& [name, shape] : LayerLinears(config)) {
        if (name != module) continue;
        const int64_t k = std::min<int64_t>(
            Positive(options.params.reglu_retain_rank), shape.out);
        plan.method_state += config.num_hidden_layers * kFp32 * shape.out * k;
        sums += config.num_hidden_layers * kFp64 * samples * shape.in;
        largest = std::max(largest,
                           kFp64 * (shape.out * shape.in + samples * shape.out +
                                    5 * shape.out * shape.out));
      }
    }
    plan.method_state += plan.lora_parameters * kFp32;
    plan.rila_bytes = plan.weights + sums * (options.world_size > 1 ? 2 : 1) +
                      std::max(largest, no_grad_working(batch)) +
                      plan.runtime_overhead;
  }

  if (needs.reference_log_probs) {
    // No gradients: one layer's working set and the batch's logits, fp32
    // copy and log-softmax.
    const int64_t ref_batch = Positive(options.reference_batch_size);
    const int64_t ref_tokens = ref_batch * length;
    const int64_t working = no_grad_working(ref_batch);
    const int64_t ref_logits = (logits_dtype + 2 * kFp32) * ref_tokens * vocab;
    plan.reference_pass_bytes =
        plan.parameters * weight_bytes + plan.reference_model +
        std::max(working, ref_logits) + plan.runtime_overhead;
  }
  return plan;
}

absl::StatusOr<PlanOptions> PlanOptionsFromSpec(const v1::JobSpec& raw) {
  const v1::JobSpec spec = JobSpecWithDefaults(raw);
  PlanOptions options;
  ASSIGN_OR_RETURN(options.method, MethodFromSpec(spec.method()));
  options.params =
      ObjectiveParamsFromSpec(options.method, spec.method_params());
  options.weights_dtype = spec.weights_dtype();
  options.bf16_autocast = spec.precision() == v1::BF16_AUTOCAST;
  options.bf16_reference = spec.bf16_reference();
  options.lora_rank = spec.lora().rank();
  options.lora_target_modules.assign(spec.lora().target_modules().begin(),
                                     spec.lora().target_modules().end());
  options.activation_checkpointing = spec.memory().activation_checkpointing();
  options.loss_chunk_tokens = spec.memory().loss_chunk_tokens();
  options.batch_size = spec.per_device_batch_size();
  options.max_length = spec.max_length();
  options.world_size = spec.world_size();
  options.zero_stage = spec.memory().zero_stage();
  options.gradient_accumulation_steps =
      std::max(1, spec.gradient_accumulation_steps());
  options.device =
      spec.device() == v1::CUDA ? PlanDevice::kCuda : PlanDevice::kCpu;
  return options;
}

absl::StatusOr<MemoryPlan> PlanMemoryForJob(const v1::JobSpec& spec) {
  if (spec.model_dir().empty()) {
    return absl::InvalidArgumentError(
        "spec.model_dir is empty: the plan needs the model's config.json");
  }
  ASSIGN_OR_RETURN(const LlamaConfig config,
                   ReadLlamaConfig(spec.model_dir() + "/config.json"));
  ASSIGN_OR_RETURN(const PlanOptions options, PlanOptionsFromSpec(spec));
  return PlanMemory(config, options);
}

std::string Gib(int64_t bytes, int decimals) {
  return absl::StrFormat("%.*f", decimals,
                         static_cast<double>(bytes) / (1LL << 30));
}

std::string FormatMemoryPlan(const MemoryPlan& plan) {
  std::string out = absl::StrFormat(
      "parameters %d (%.3fB), trained %d%s, weights %s\n", plan.parameters,
      plan.parameters / 1e9, plan.trainable_parameters,
      plan.lora_parameters > 0 ? " (LoRA adapters)" : "", plan.weights_dtype);
  const std::vector<std::pair<std::string, int64_t>> rows = {
      {"weights", plan.weights},
      {"gradients", plan.gradients},
      {"optimizer state (AdamW)", plan.optimizer_state},
      {"reference model", plan.reference_model},
      {"method state", plan.method_state},
      {"activations", plan.activations},
      {"logits", plan.logits},
      {"data-parallel buffers", plan.data_parallel_buffers},
      {"runtime overhead", plan.runtime_overhead},
  };
  absl::StrAppendFormat(&out, "%-26s %10s\n", "category", "GiB/rank");
  for (const auto& [name, bytes] : rows) {
    absl::StrAppendFormat(&out, "%-26s %10s\n", name, Gib(bytes));
  }
  absl::StrAppendFormat(&out, "%-26s %10s\n", "training total",
                        Gib(plan.training_bytes()));
  if (plan.reference_pass_bytes > 0) {
    absl::StrAppendFormat(&out, "%-26s %10s\n", "reference log-prob pass",
                          Gib(plan.reference_pass_bytes));
  }
  if (plan.rila_bytes > 0) {
    absl::StrAppendFormat(&out, "%-26s %10s\n", "RILA initialisation",
                          Gib(plan.rila_bytes));
  }
  absl::StrAppendFormat(&out, "%-26s %10s\n", "total per rank",
                        Gib(plan.total_bytes()));
  return out;
}

}  // namespace lethe
