#include "libs/loss/chunked_log_probs.h"

#include <ATen/autocast_mode.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "libs/data/qa_example.h"

namespace lethe {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// How one pass projects and normalises.
struct ChunkSpec {
  int64_t chunk_tokens;
  double softcap;          // <= 0: none.
  at::ScalarType compute;  // Softmax dtype: fp32 or fp64.
  at::ScalarType matmul;   // Projection dtype (autocast's, or compute).
};

ChunkSpec SpecFrom(const AutogradContext& ctx) {
  return {.chunk_tokens = ctx.saved_data.at("chunk_tokens").toInt(),
          .softcap = ctx.saved_data.at("softcap").toDouble(),
          .compute =
              static_cast<at::ScalarType>(ctx.saved_data.at("compute").toInt()),
          .matmul =
              static_cast<at::ScalarType>(ctx.saved_data.at("matmul").toInt())};
}

// Logits of a chunk of hidden rows, [c, V] in spec.compute; `tanh_out` (when
// soft-capped and non-null) receives tanh(a / cap), whose derivative the
// backward pass needs.
at::Tensor ProjectChunk(const at::Tensor& hidden_chunk,
                        const at::Tensor& weight_matmul, const ChunkSpec& spec,
                        at::Tensor* tanh_out) {
  at::Tensor logits =
      at::mm(hidden_chunk.to(spec.matmul), weight_matmul.t()).to(spec.compute);
  if (spec.softcap > 0) {
    at::Tensor tanh = at::tanh(logits / spec.softcap);
    if (tanh_out != nullptr) *tanh_out = tanh;
    logits = tanh * spec.softcap;
  }
  return logits;
}

// log p(target) per row; the backward pass recomputes each chunk's logits.
// Inputs: hidden [N, H], weight [V, H], targets [N] int64.
class ChunkedLogProbFunction
    : public torch::autograd::Function<ChunkedLogProbFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& hidden,
                            const at::Tensor& weight, const at::Tensor& targets,
                            int64_t chunk_tokens, double softcap,
                            int64_t compute, int64_t matmul) {
    // The dtypes are explicit; autocast must not change them again.
    c10::impl::ExcludeDispatchKeyGuard no_autocast(
        c10::autocast_dispatch_keyset);
    ctx->save_for_backward({hidden, weight, targets});
    ctx->saved_data["chunk_tokens"] = chunk_tokens;
    ctx->saved_data["softcap"] = softcap;
    ctx->saved_data["compute"] = compute;
    ctx->saved_data["matmul"] = matmul;
    const ChunkSpec spec = SpecFrom(*ctx);
    const int64_t rows = hidden.size(0);
    at::Tensor out = at::empty({rows}, hidden.options().dtype(spec.compute));
    const at::Tensor weight_matmul = weight.to(spec.matmul);
    for (int64_t begin = 0; begin < rows; begin += spec.chunk_tokens) {
      const int64_t count = std::min(spec.chunk_tokens, rows - begin);
      const at::Tensor logits = ProjectChunk(hidden.narrow(0, begin, count),
                                             weight_matmul, spec, nullptr);
      const at::Tensor target_logits =
          logits.gather(1, targets.narrow(0, begin, count).unsqueeze(1))
              .squeeze(1);
      out.narrow(0, begin, count)
          .copy_(target_logits - at::logsumexp(logits, /*dim=*/{1}));
    }
    return out;
  }

  // d log p(y) / d z = onehot(y) - softmax(z); through the soft-cap
  // z = cap tanh(a / cap), d z / d a = 1 - tanh^2. Under create_graph (grad
  // mode on here) it is written with out-of-place differentiable operations,
  // so that this backward can itself be differentiated; otherwise in place,
  // to keep one [chunk, V] buffer.
  static variable_list backward(AutogradContext* ctx,
                                variable_list grad_outputs) {
    c10::impl::ExcludeDispatchKeyGuard no_autocast(
        c10::autocast_dispatch_keyset);
    const variable_list saved = ctx->get_saved_variables();
    const at::Tensor& hidden = saved[0];
    const at::Tensor& weight = saved[1];
    const at::Tensor& targets = saved[2];
    const ChunkSpec spec = SpecFrom(*ctx);
    const bool hidden_grad = ctx->needs_input_grad(0);
    const bool weight_grad = ctx->needs_input_grad(1);
    const at::Tensor grad = grad_outputs[0].to(spec.compute);
    const bool graph = at::GradMode::is_enabled();
    const int64_t rows = hidden.size(0);
    const at::Tensor weight_matmul = weight.to(spec.matmul);

    std::vector<at::Tensor> hidden_grads;
    at::Tensor weight_grad_sum;
    if (weight_grad && !graph) {
      weight_grad_sum =
          at::zeros(weight.sizes(), weight.options().dtype(spec.compute));
    }
    for (int64_t begin = 0; begin < rows; begin += spec.chunk_tokens) {
      const int64_t count = std::min(spec.chunk_tokens, rows - begin);
      const at::Tensor hidden_chunk = hidden.narrow(0, begin, count);
      at::Tensor tanh;
      at::Tensor logits =
          ProjectChunk(hidden_chunk, weight_matmul, spec, &tanh);
      const at::Tensor chunk_grad = grad.narrow(0, begin, count).unsqueeze(1);
      const at::Tensor chunk_targets =
          targets.narrow(0, begin, count).unsqueeze(1);
      at::Tensor logit_grad;
      if (graph) {
        logit_grad = (-at::softmax(logits, /*dim=*/1) * chunk_grad)
                         .scatter_add(1, chunk_targets, chunk_grad);
        if (spec.softcap > 0) logit_grad = logit_grad * (1 - tanh * tanh);
      } else {
        // The same in place: one [chunk, V] buffer besides the logits.
        logit_grad = at::softmax(logits, /*dim=*/1);
        logits.reset();
        logit_grad.mul_(-chunk_grad).scatter_add_(1, chunk_targets, chunk_grad);
        if (spec.softcap > 0) logit_grad.mul_(1 - tanh.square_());
      }
      const at::Tensor logit_grad_matmul = logit_grad.to(spec.matmul);
      if (hidden_grad) {
        hidden_grads.push_back(at::mm(logit_grad_matmul, weight_matmul));
      }
      if (weight_grad) {
        const at::Tensor hidden_matmul = hidden_chunk.to(spec.matmul);
        if (graph) {
          const at::Tensor term =
              at::mm(logit_grad_matmul.t(), hidden_matmul).to(spec.compute);
          weight_grad_sum =
              weight_grad_sum.defined() ? weight_grad_sum + term : term;
        } else if (spec.matmul == spec.compute) {
          weight_grad_sum.addmm_(logit_grad_matmul.t(), hidden_matmul);
        } else {
          weight_grad_sum.add_(at::mm(logit_grad_matmul.t(), hidden_matmul));
        }
      }
    }
    at::Tensor hidden_result;
    if (hidden_grad) {
      hidden_result = hidden_grads.empty()
                          ? at::zeros_like(hidden)
                          : at::cat(hidden_grads).to(hidden.scalar_type());
    }
    at::Tensor weight_result;
    if (weight_grad) {
      weight_result = weight_grad_sum.defined()
                          ? weight_grad_sum.to(weight.scalar_type())
                          : at::zeros_like(weight);
    }
    return {hidden_result, weight_result, at::Tensor(), at::Tensor(),
            at::Tensor(),  at::Tensor(),  at::Tensor()};
  }
};

at::ScalarType ComputeDtype(const at::Tensor& hidden,
                            const at::Tensor& weight) {
  return hidden.scalar_type() == at::kDouble ||
                 weight.scalar_type() == at::kDouble
             ? at::kDouble
             : at::kFloat;
}

// The dtype the plain path's projection would run in: autocast's for fp32
// inputs while autocast is on for their device, else the compute dtype.
at::ScalarType MatmulDtype(const at::Tensor& hidden, at::ScalarType compute) {
  if (compute != at::kFloat) return compute;
  if (hidden.is_cuda() && at::autocast::is_enabled()) {
    return at::autocast::get_autocast_gpu_dtype();
  }
  if (hidden.is_cpu() && at::autocast::is_cpu_enabled()) {
    return at::autocast::get_autocast_cpu_dtype();
  }
  return compute;
}

}  // namespace

at::Tensor ChunkedTargetLogProbs(const at::Tensor& hidden,
                                 const OutputProjection& projection,
                                 const at::Tensor& targets,
                                 int64_t chunk_tokens) {
  TORCH_CHECK(chunk_tokens >= 1, "chunk_tokens must be >= 1, got ",
              chunk_tokens);
  const at::Tensor& weight = projection.weight;
  TORCH_CHECK(weight.dim() == 2, "the output projection must be [V, H]");
  TORCH_CHECK(hidden.dim() == 2 && hidden.size(1) == weight.size(1),
              "hidden rows must be [N, ", weight.size(1), "], got ",
              hidden.sizes());
  TORCH_CHECK(targets.dim() == 1 && targets.size(0) == hidden.size(0),
              "targets must be [", hidden.size(0), "], got ", targets.sizes());
  if (targets.numel() > 0) {
    TORCH_CHECK(targets.min().item<int64_t>() >= 0 &&
                    targets.max().item<int64_t>() < weight.size(0),
                "target token ids must lie in [0, ", weight.size(0), ")");
  }
  TORCH_CHECK(!projection.softcap.has_value() || *projection.softcap > 0,
              "the soft-cap must be positive");
  const at::ScalarType compute = ComputeDtype(hidden, weight);
  return ChunkedLogProbFunction::apply(
      hidden, weight, targets.to(hidden.device(), at::kLong), chunk_tokens,
      projection.softcap.value_or(0.0), static_cast<int64_t>(compute),
      static_cast<int64_t>(MatmulDtype(hidden, compute)));
}

at::Tensor ChunkedTokenLogProbs(const at::Tensor& hidden,
                                const OutputProjection& projection,
                                const at::Tensor& labels,
                                int64_t chunk_tokens) {
  TORCH_CHECK(hidden.dim() == 3, "hidden states must be [B, T, H], got ",
              hidden.sizes());
  const int64_t batch = hidden.size(0);
  const int64_t length = hidden.size(1);
  const int64_t width = hidden.size(2);
  TORCH_CHECK(
      labels.dim() == 2 && labels.size(0) == batch && labels.size(1) == length,
      "labels must be [", batch, ", ", length, "], got ", labels.sizes());
  const at::ScalarType compute = ComputeDtype(hidden, projection.weight);
  if (length < 2) {
    return at::zeros({batch, 0}, hidden.options().dtype(compute));
  }
  const int64_t predicted = length - 1;
  const at::Tensor shifted =
      labels.narrow(1, 1, predicted).to(hidden.device()).reshape({-1});
  // Answer positions, as indices into the [B, T-1] output, and the rows of
  // the [B * T, H] hidden states that predict them.
  const at::Tensor positions = (shifted != kIgnoreIndex).nonzero().squeeze(1);
  const at::Tensor rows =
      at::div(positions, predicted, "floor") * length + positions % predicted;
  const at::Tensor log_probs = ChunkedTargetLogProbs(
      hidden.reshape({batch * length, width}).index_select(0, rows), projection,
      shifted.index_select(0, positions), chunk_tokens);
  return at::zeros({batch * predicted}, log_probs.options())
      .index_copy(0, positions, log_probs)
      .view({batch, predicted});
}

AnswerLogProbs ChunkedAnswerLogProbs(const at::Tensor& hidden,
                                     const OutputProjection& projection,
                                     const at::Tensor& labels,
                                     int64_t chunk_tokens) {
  const at::Tensor log_probs =
      ChunkedTokenLogProbs(hidden, projection, labels, chunk_tokens);
  return {.summed = log_probs.sum(1),
          .token_counts =
              (labels.narrow(1, 1, labels.size(1) - 1) != kIgnoreIndex).sum(1)};
}

at::Tensor ChunkedTokenMeanNll(const at::Tensor& hidden,
                               const OutputProjection& projection,
                               const at::Tensor& labels, int64_t chunk_tokens) {
  const at::Tensor log_probs =
      ChunkedTokenLogProbs(hidden, projection, labels, chunk_tokens);
  const at::Tensor count =
      (labels.narrow(1, 1, labels.size(1) - 1) != kIgnoreIndex).sum();
  return -log_probs.sum() /
         count.clamp_min(1).to(log_probs.device(), log_probs.scalar_type());
}

absl::StatusOr<OutputProjection> ModelOutputProjection(
    LlamaForCausalLM& model) {
  const std::string name = model.config().tie_word_embeddings
                               ? "model.embed_tokens.weight"
                               : "lm_head.weight";
  for (const auto& parameter : model.named_parameters(/*recurse=*/true)) {
    if (parameter.key() == name) {
      return OutputProjection{
          .weight = parameter.value(),
          .softcap = model.config().final_logit_softcapping};
    }
  }
  return absl::NotFoundError(
      absl::StrCat("the model has no output projection parameter ", name));
}

namespace {

OutputProjection ProjectionOrThrow(LlamaForCausalLM& model) {
  absl::StatusOr<OutputProjection> projection = ModelOutputProjection(model);
  TORCH_CHECK(projection.ok(), projection.status().ToString());
  return *std::move(projection);
}

}  // namespace

AnswerLogProbs ModelAnswerLogProbs(LlamaForCausalLM& model,
                                   const QaBatch& batch, int64_t chunk_tokens) {
  if (chunk_tokens <= 0) {
    return SequenceAnswerLogProbs(
        model.Forward(batch.input_ids, batch.attention_mask), batch.labels);
  }
  const OutputProjection projection = ProjectionOrThrow(model);
  return ChunkedAnswerLogProbs(
      model.ForwardHidden(batch.input_ids, batch.attention_mask), projection,
      batch.labels, chunk_tokens);
}

at::Tensor ModelTokenMeanNll(LlamaForCausalLM& model, const QaBatch& batch,
                             int64_t chunk_tokens) {
  if (chunk_tokens <= 0) {
    return TokenMeanNll(model.Forward(batch.input_ids, batch.attention_mask),
                        batch.labels);
  }
  const OutputProjection projection = ProjectionOrThrow(model);
  return ChunkedTokenMeanNll(
      model.ForwardHidden(batch.input_ids, batch.attention_mask), projection,
      batch.labels, chunk_tokens);
}

}  // namespace lethe
