// How much memory one rank of an unlearning run needs, from the model's
// config.json and the job's settings, before anything is loaded: the
// coordinator checks a job against its workers with it at CreateJob, and
// `lethe plan` prints it.
//
//   ASSIGN_OR_RETURN(MemoryPlan plan, PlanMemoryForJob(spec));
//   if (plan.total_bytes() > worker_memory_bytes) { ...refuse... }
//   std::cout << FormatMemoryPlan(plan);
//
// The plan counts bytes per rank by category. Parameters are counted
// exactly from the config (equal to LlamaForCausalLM::NumParameters() for
// every family); the rest follows what Lethe's trainer holds:
//   weights           every parameter in the weights dtype (fp32, or bf16 /
//                     fp16 with spec.weights_dtype; "auto" is the config's
//                     torch_dtype), plus fp32 LoRA adapters; with bf16
//                     autocast also the autocast cache's bf16 weight copies.
//   gradients         one per trained parameter, in its dtype.
//   optimizer_state   AdamW's two moments per trained parameter, in the
//                     parameter's dtype (LibTorch's AdamW allocates them
//                     with zeros_like: fp32 for fp32 weights and adapters,
//                     bf16 for a bf16 model trained in bf16).
//   reference_model   the frozen copy that KL retain terms read (NPO_KL,
//                     LLMU, GradDiff with retain_loss "kl"), in bf16 with
//                     bf16_reference; none with LoRA (the reference is the
//                     base with the adapters off) and none for the methods
//                     that only read cached reference log-probs (NPO,
//                     NPO_RT, IdkDPO) or need no reference (GA, SimNPO, ...).
//   method_state      what a method keeps besides the model: REGLU's retain
//                     bases Q_R [d_out x k] per adapted projection and its
//                     initial adapters (fp32).
//   activations       what the decoder layers' eager forward passes save for
//                     the backward pass (counted tensor by tensor in
//                     memory_plan.cc), for every forward pass the method
//                     makes per micro-batch (NPO_RT: forget and retain), plus
//                     the largest transient of one layer's backward pass.
//                     With activation checkpointing: each layer's input,
//                     plus one layer recomputed.
//   logits            [tokens x vocabulary] tensors of the loss (log-softmax
//                     outputs, the fp32 copy, their gradients); with
//                     loss_chunk_tokens a chunk's worth instead.
//   runtime_overhead  the process itself: LibTorch's code, thread pools,
//                     allocator (measured on CPU by
//                     benchmarks/memory_plan_check), or the CUDA context.
// Before training, methods that cache reference log-probs (NPO family,
// IdkDPO) run the model over the forget set without gradients in batches of
// 16; that pass's peak (weights + its logits) is reference_pass_bytes.
// REGLU's RILA initialisation, before training, holds fp64 per-sample sums of
// every adapted projection's input (2 x reglu_samples rows) and one
// projection's fp64 covariances at a time: rila_bytes. The plan's total is
// the largest of the phases.
//
// Data parallelism replicates the model: weights and gradients per rank do
// not shrink with world_size; it adds the all-reduce's gradient buckets.
// With zero_stage 1 or 2 (libs/dist/sharded_optimizer.h) optimizer_state is
// one rank's shard, ceil(trainable / world_size) elements of fp32 moments
// (8 bytes) plus fp32 master weights (4 bytes) when the trained parameters
// are not fp32. Stage 1 keeps full-size gradients. Stage 2 reduces each
// gradient bucket to its owners during the last micro-batch's backward pass
// and releases it, so a rank holds its fp32 gradient shard (4 bytes an
// element) and the buckets in flight (data_parallel_buffers); with
// gradient accumulation the earlier micro-batches still accumulate full
// gradients, which the plan then counts as well.
//
// The plan counts live tensor bytes. Checked against peak RSS of real runs
// on the CPU (benchmarks/memory_plan_check, fp32 and bf16 full training,
// with and without a reference model, ~20M and ~100M parameters): within
// 1% when glibc gives freed tensor memory back to the system
// (M_MMAP_THRESHOLD fixed at 1 MiB, e.g. MALLOC_MMAP_THRESHOLD_=1048576).
// With glibc's default (a threshold that grows to 32 MiB, so tensors below
// it live in heaps that are not given back) peak RSS is higher than the
// live bytes by 4-40% (more for larger models): a CPU worker that keeps
// the default needs that headroom. CUDA ranks use LibTorch's caching
// allocator, whose fragmentation is not modelled beyond the fixed overhead.
// LoRA, activation checkpointing, loss chunking and bf16 autocast are
// estimated from the same tensor accounting (libs/model/lora.h,
// activation_checkpoint.h, libs/loss/chunked_log_probs.h), not measured
// here.
#ifndef LETHE_LIBS_PLAN_MEMORY_PLAN_H_
#define LETHE_LIBS_PLAN_MEMORY_PLAN_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "lethe/v1/job.pb.h"
#include "libs/model/llama_config.h"
#include "libs/unlearn/objective_params.h"

namespace lethe {

enum class PlanDevice { kCpu, kCuda };

struct PlanOptions {
  UnlearningMethod method = UnlearningMethod::kNpo;
  // retain_loss decides whether GradDiff keeps a reference model.
  ObjectiveParams params;
  // "fp32" (also ""), "bf16", "fp16", or "auto" (config.torch_dtype).
  std::string weights_dtype = "fp32";
  bool bf16_autocast = false;
  bool bf16_reference = false;
  // LoRA adapters instead of full training when lora_rank > 0; target
  // modules are PEFT's names (empty: q_proj and v_proj).
  int lora_rank = 0;
  std::vector<std::string> lora_target_modules;
  bool activation_checkpointing = false;
  int loss_chunk_tokens = 0;  // 0: the whole batch's logits.
  int batch_size = 4;         // Per device (one micro-batch).
  int max_length = 256;       // Tokens per example; planned as all full.
  int world_size = 1;
  // ZeRO: 0 replicated AdamW; 1 or 2 shard its state over world_size ranks.
  int zero_stage = 0;
  int gradient_accumulation_steps = 1;  // Stage 2 keeps full gradients if > 1.
  int reference_batch_size = 16;  // The reference log-prob pass's batches.
  PlanDevice device = PlanDevice::kCpu;
};

struct MemoryPlan {
  int64_t parameters = 0;            // Of the model (as NumParameters()).
  int64_t lora_parameters = 0;       // Adapters added (0 without LoRA).
  int64_t trainable_parameters = 0;  // Parameters the optimizer updates.
  std::string weights_dtype;         // "fp32", "bf16" or "fp16", resolved.
  bool holds_reference_model = false;
  // Bytes per rank during training, by category.
  int64_t weights = 0;
  int64_t gradients = 0;
  int64_t optimizer_state = 0;
  int64_t reference_model = 0;
  int64_t method_state = 0;
  int64_t activations = 0;
  int64_t logits = 0;
  int64_t data_parallel_buffers = 0;
  int64_t runtime_overhead = 0;
  // Peak of the reference log-prob pass before training (0 when the method
  // caches none): weights, reference model, that pass's activations and
  // logits, runtime overhead.
  int64_t reference_pass_bytes = 0;
  // Peak of REGLU's RILA initialisation before training (0 for other
  // methods): weights, the input sums, one projection's fp64 work.
  int64_t rila_bytes = 0;

  // The sum of the categories above.
  int64_t training_bytes() const;
  // The largest of training_bytes(), reference_pass_bytes and rila_bytes:
  // what one rank must have.
  int64_t total_bytes() const;
};

// The model's parameter count, exactly as LlamaForCausalLM builds it
// (embeddings once when tied, q/k/v/o with grouped-query shapes and the
// family's biases, gated MLP, RMSNorm weights, Gemma 2's sandwich norms).
int64_t CountParameters(const LlamaConfig& config);

// rank * (in + out) per targeted module per layer. INVALID_ARGUMENT for a
// module name PEFT's Llama layout does not have.
absl::StatusOr<int64_t> CountLoraParameters(
    const LlamaConfig& config, int rank,
    const std::vector<std::string>& target_modules);

// INVALID_ARGUMENT naming the field for an unknown weights dtype, a LoRA
// module name, or sizes below 1.
absl::StatusOr<MemoryPlan> PlanMemory(const LlamaConfig& config,
                                      const PlanOptions& options);

// The options a job spec describes (after JobSpecWithDefaults: batch 4,
// max_length 256, world size 1, ...).
absl::StatusOr<PlanOptions> PlanOptionsFromSpec(const v1::JobSpec& spec);

// Reads <spec.model_dir>/config.json and plans the job's ranks. This is the
// coordinator's CreateJob check: compare total_bytes() with the memory one
// worker has (host RAM for a CPU job, GPU memory for a CUDA one).
absl::StatusOr<MemoryPlan> PlanMemoryForJob(const v1::JobSpec& spec);

// A table of the categories in GiB, the total per rank, and the parameter
// counts, ending with a newline.
std::string FormatMemoryPlan(const MemoryPlan& plan);

// Bytes as GiB with `decimals` decimals, e.g. "12.34".
std::string Gib(int64_t bytes, int decimals = 2);

}  // namespace lethe

#endif  // LETHE_LIBS_PLAN_MEMORY_PLAN_H_
