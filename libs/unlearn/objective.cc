#include "libs/unlearn/objective.h"

#include <torch/nn/functional/activation.h>

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "libs/data/packed_batch.h"
#include "libs/data/qa_example.h"
#include "libs/loss/chunked_log_probs.h"
#include "libs/loss/packed_log_probs.h"
#include "libs/loss/sequence_loss.h"
#include "libs/model/lora.h"
#include "libs/status/status_macros.h"
#include "libs/status/torch_status.h"
#include "libs/unlearn/ofmu.h"

namespace lethe {
namespace {

at::Tensor Softplus(const at::Tensor& x) {
  return torch::nn::functional::softplus(x);
}

at::Tensor Logits(LlamaForCausalLM& model, const QaBatch& batch) {
  return model.Forward(batch.input_ids, batch.attention_mask);
}

// The terms every objective is assembled from, each evaluated on `model`.
// With chunk_tokens > 0, answer log-probs and NLLs come from the final
// hidden states a chunk of answer tokens at a time
// (libs/loss/chunked_log_probs.h); the hinge and KL terms need every
// position's full distribution and always use the logits.
//
// Packing (PackedParts): the parts whose terms need only answer log-probs
// (forget, alternate, retain) run together in one padding-free forward pass
// (libs/data/packed_batch.h, libs/loss/packed_log_probs.h), made on the
// first such term; the others keep their padded passes.
struct PackedParts {
  int64_t row_length = 0;  // 0: no packing.
  bool forget = false;
  bool alternate = false;
  bool retain = false;
};

class Terms {
 public:
  Terms(LlamaForCausalLM& model, const UnlearningBatch& batch,
        int64_t chunk_tokens, MicroBatchLoss& out, PackedParts packed = {})
      : model_(model),
        batch_(batch),
        chunk_tokens_(chunk_tokens),
        out_(out),
        packed_parts_(packed) {}

  // Token-mean NLL of the forget answers (GA ascends it).
  at::Tensor ForgetNll() {
    at::Tensor nll =
        Packed(forget_part_)
            ? PackedPartTokenMeanNll(packed_, token_log_probs_, forget_part_)
        : chunk_tokens_ > 0
            ? ChunkedTokenMeanNll(ForgetHidden(), Projection(),
                                  batch_.forget.labels, chunk_tokens_)
            : TokenMeanNll(ForgetLogits(), batch_.forget.labels);
    Record("forget_nll", nll);
    return nll;
  }

  // Inverted hinge loss of the forget answers, mean over answer tokens.
  at::Tensor ForgetIhl() {
    at::Tensor ihl = InvertedHingeLoss(ForgetLogits(), batch_.forget.labels);
    Record("forget_ihl", ihl);
    return ihl;
  }

  // Summed answer log-probs of the forget examples, [B].
  AnswerLogProbs ForgetLogProbs() {
    if (Packed(forget_part_)) {
      return PackedPartLogProbs(packed_, token_log_probs_, forget_part_);
    }
    return chunk_tokens_ > 0
               ? ChunkedAnswerLogProbs(ForgetHidden(), Projection(),
                                       batch_.forget.labels, chunk_tokens_)
               : SequenceAnswerLogProbs(ForgetLogits(), batch_.forget.labels);
  }

  AnswerLogProbs AlternateLogProbs() {
    if (Packed(alternate_part_)) {
      return PackedPartLogProbs(packed_, token_log_probs_, alternate_part_);
    }
    return ModelAnswerLogProbs(model_, *batch_.alternate, chunk_tokens_);
  }

  at::Tensor AlternateNll() {
    at::Tensor nll =
        Packed(alternate_part_)
            ? PackedPartTokenMeanNll(packed_, token_log_probs_, alternate_part_)
            : ModelTokenMeanNll(model_, *batch_.alternate, chunk_tokens_);
    Record("alternate_nll", nll);
    out_.tokens += batch_.alternate->real_tokens();
    return nll;
  }

  at::Tensor RetainTerm(RetainLoss kind,
                        const std::shared_ptr<LlamaForCausalLM>& reference) {
    const QaBatch& retain = *batch_.retain;
    out_.tokens += retain.real_tokens();
    if (kind == RetainLoss::kNll) {
      at::Tensor nll =
          Packed(retain_part_)
              ? PackedPartTokenMeanNll(packed_, token_log_probs_, retain_part_)
              : ModelTokenMeanNll(model_, retain, chunk_tokens_);
      Record("retain_nll", nll);
      return nll;
    }
    const at::Tensor logits = Logits(model_, retain);
    at::Tensor reference_logits;
    {
      torch::NoGradGuard no_grad;
      if (reference.get() == &model_) {
        // A LoRA run's reference: the same model, adapters off.
        ScopedLoraDisabled adapters_off(model_);
        reference_logits = Logits(model_, retain);
      } else {
        reference_logits = Logits(*reference, retain);
      }
    }
    at::Tensor kl = RetainKl(logits, reference_logits, retain.labels);
    Record("retain_kl", kl);
    return kl;
  }

  void Record(const std::string& name, const at::Tensor& value) {
    out_.components[name] = value.item<double>();
  }

 private:
  // Whether `part` (forget_part_, ...) is packed; on the first call, packs
  // every planned part and runs their forward pass.
  bool Packed(int64_t& part) {
    if (packed_parts_.row_length <= 0) return false;
    if (!token_log_probs_.defined()) {
      std::vector<const QaBatch*> parts;
      auto plan = [&](bool wanted, const QaBatch* batch, int64_t& index) {
        if (!wanted || batch == nullptr) return;
        index = static_cast<int64_t>(parts.size());
        parts.push_back(batch);
      };
      plan(packed_parts_.forget, &batch_.forget, forget_part_);
      plan(packed_parts_.alternate,
           batch_.alternate.has_value() ? &*batch_.alternate : nullptr,
           alternate_part_);
      plan(packed_parts_.retain,
           batch_.retain.has_value() ? &*batch_.retain : nullptr, retain_part_);
      if (parts.empty()) {
        packed_parts_.row_length = 0;
        return false;
      }
      absl::StatusOr<PackedBatch> packed =
          PackQaBatches(parts, packed_parts_.row_length);
      TORCH_CHECK(packed.ok(), packed.status().ToString());
      packed_ = packed->To(batch_.forget.input_ids.device());
      token_log_probs_ = PackedTokenLogProbs(model_, packed_, chunk_tokens_);
      if (forget_part_ >= 0) out_.tokens += batch_.forget.real_tokens();
    }
    return part >= 0;
  }

  at::Tensor ForgetLogits() {
    if (!forget_logits_.defined()) {
      forget_logits_ = Logits(model_, batch_.forget);
      out_.tokens += batch_.forget.real_tokens();
    }
    return forget_logits_;
  }

  at::Tensor ForgetHidden() {
    if (!forget_hidden_.defined()) {
      forget_hidden_ = model_.ForwardHidden(batch_.forget.input_ids,
                                            batch_.forget.attention_mask);
      out_.tokens += batch_.forget.real_tokens();
    }
    return forget_hidden_;
  }

  OutputProjection Projection() {
    absl::StatusOr<OutputProjection> projection = ModelOutputProjection(model_);
    TORCH_CHECK(projection.ok(), projection.status().ToString());
    return *std::move(projection);
  }

  LlamaForCausalLM& model_;
  const UnlearningBatch& batch_;
  int64_t chunk_tokens_;
  MicroBatchLoss& out_;
  at::Tensor forget_logits_;
  at::Tensor forget_hidden_;
  PackedParts packed_parts_;
  PackedBatch packed_;
  at::Tensor token_log_probs_;  // Of packed_'s answers.
  int64_t forget_part_ = -1, alternate_part_ = -1, retain_part_ = -1;
};

absl::Status CheckBatch(const ObjectiveNeeds& needs,
                        const UnlearningBatch& batch) {
  if (needs.retain_batch && !batch.retain.has_value()) {
    return absl::InvalidArgumentError("objective needs a retain batch");
  }
  if (needs.alternate_answers && !batch.alternate.has_value()) {
    return absl::InvalidArgumentError("objective needs alternate answers");
  }
  if (needs.reference_log_probs &&
      (!batch.forget_reference_log_probs.defined() ||
       (needs.alternate_answers &&
        !batch.alternate_reference_log_probs.defined()))) {
    return absl::InvalidArgumentError(
        "objective needs cached reference log-probs");
  }
  return absl::OkStatus();
}

// GA, GradDiff, NPO*, SimNPO, IdkDPO, LLMU, IHL and REGLU's data terms: one
// forward pass per batch part, the loss a weighted sum of terms.
class WeightedObjective : public UnlearningObjective {
 public:
  WeightedObjective(UnlearningMethod method, const ObjectiveParams& params,
                    std::shared_ptr<LlamaForCausalLM> reference,
                    int64_t loss_chunk_tokens, int64_t pack_row_length)
      : method_(method),
        params_(params),
        reference_(std::move(reference)),
        loss_chunk_tokens_(loss_chunk_tokens),
        pack_row_length_(pack_row_length) {}

  ObjectiveNeeds needs() const override {
    return MethodNeeds(method_, params_);
  }

  absl::StatusOr<MicroBatchLoss> Loss(LlamaForCausalLM& model,
                                      const UnlearningBatch& batch) override {
    RETURN_IF_ERROR(CheckBatch(needs(), batch));
    return CallTorch(absl::StrCat(UnlearningMethodName(method_), " loss"),
                     [&] { return Compute(model, batch); });
  }

 private:
  MicroBatchLoss Compute(LlamaForCausalLM& model,
                         const UnlearningBatch& batch) {
    MicroBatchLoss out;
    Terms terms(model, batch, loss_chunk_tokens_, out, Packing());
    at::Tensor forget;
    switch (method_) {
      case UnlearningMethod::kGa:
      case UnlearningMethod::kGradDiff:
      case UnlearningMethod::kLlmu:
        forget = -terms.ForgetNll();
        break;
      case UnlearningMethod::kNpo:
      case UnlearningMethod::kNpoRt:
      case UnlearningMethod::kNpoKl: {
        const AnswerLogProbs log_probs = terms.ForgetLogProbs();
        const at::Tensor reference =
            batch.forget_reference_log_probs.to(log_probs.summed.dtype());
        forget = NpoLoss(log_probs.summed, reference, params_.beta);
        terms.Record(
            "npo_weight_mean",
            (2 * at::sigmoid(params_.beta * (log_probs.summed - reference)))
                .mean());
        terms.Record("forget_log_prob_mean", log_probs.summed.mean());
        break;
      }
      case UnlearningMethod::kSimNpo: {
        const AnswerLogProbs log_probs = terms.ForgetLogProbs();
        forget = SimNpoLoss(log_probs.summed, log_probs.token_counts,
                            params_.beta, params_.delta);
        terms.Record("forget_log_prob_mean", log_probs.summed.mean());
        break;
      }
      case UnlearningMethod::kIdkDpo: {
        const AnswerLogProbs lose = terms.ForgetLogProbs();
        const AnswerLogProbs win = terms.AlternateLogProbs();
        const at::ScalarType dtype = lose.summed.scalar_type();
        forget =
            DpoLoss(win.summed, batch.alternate_reference_log_probs.to(dtype),
                    lose.summed, batch.forget_reference_log_probs.to(dtype),
                    params_.beta);
        terms.Record("forget_log_prob_mean", lose.summed.mean());
        terms.Record("idk_log_prob_mean", win.summed.mean());
        break;
      }
      case UnlearningMethod::kIhl:
        forget = terms.ForgetIhl();
        break;
      case UnlearningMethod::kReglu:
        forget = params_.reglu_forget_loss == RegluForgetLoss::kIhl
                     ? terms.ForgetIhl()
                     : -terms.ForgetNll();
        break;
      case UnlearningMethod::kOfmu:
      case UnlearningMethod::kMsa:  // Refused by MakeObjective.
      case UnlearningMethod::kPga:
        break;
    }
    terms.Record("forget_loss", forget);
    at::Tensor loss = params_.gamma * forget;
    if (method_ == UnlearningMethod::kLlmu) {
      loss = loss + params_.random_answer_weight * terms.AlternateNll() +
             params_.alpha * terms.RetainTerm(RetainLoss::kKl, reference_);
    } else if (needs().retain_batch) {
      loss = loss + params_.alpha * terms.RetainTerm(RetainKind(), reference_);
    }
    out.loss = loss;
    return out;
  }

  // The retain term's kind (when the method has one).
  RetainLoss RetainKind() const {
    if (method_ == UnlearningMethod::kLlmu ||
        method_ == UnlearningMethod::kNpoKl) {
      return RetainLoss::kKl;
    }
    return method_ == UnlearningMethod::kGradDiff ? params_.retain_loss
                                                  : RetainLoss::kNll;
  }

  // The parts whose terms are answer log-probs or NLLs; IHL's hinge and the
  // KL terms need full distributions and stay padded.
  PackedParts Packing() const {
    if (pack_row_length_ <= 0) return {};
    const bool ihl_forget =
        method_ == UnlearningMethod::kIhl ||
        (method_ == UnlearningMethod::kReglu &&
         params_.reglu_forget_loss == RegluForgetLoss::kIhl);
    return {.row_length = pack_row_length_,
            .forget = !ihl_forget,
            .alternate = method_ == UnlearningMethod::kIdkDpo ||
                         method_ == UnlearningMethod::kLlmu,
            .retain = needs().retain_batch && RetainKind() == RetainLoss::kNll};
  }

  UnlearningMethod method_;
  ObjectiveParams params_;
  std::shared_ptr<LlamaForCausalLM> reference_;
  int64_t loss_chunk_tokens_;
  int64_t pack_row_length_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<UnlearningObjective>> MakeObjective(
    UnlearningMethod method, const ObjectiveParams& params,
    std::shared_ptr<LlamaForCausalLM> reference, TensorAverager averager,
    int64_t loss_chunk_tokens, int64_t pack_row_length) {
  RETURN_IF_ERROR(ValidateObjectiveParams(method, params));
  if (loss_chunk_tokens < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "loss_chunk_tokens must be >= 0, got ", loss_chunk_tokens));
  }
  if (pack_row_length < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("pack_row_length must be >= 0, got ", pack_row_length));
  }
  if (method == UnlearningMethod::kMsa) {
    return absl::InvalidArgumentError(
        "MSA is not a loss: it runs as two fine-tunes and model arithmetic "
        "(libs/unlearn/msa.h)");
  }
  if (method == UnlearningMethod::kReglu) {
    return absl::InvalidArgumentError(
        "REGLU's objective needs the retain subspaces of its RILA "
        "initialisation: MakeRegluObjective (libs/unlearn/reglu.h), as "
        "RunUnlearning does");
  }
  if (method == UnlearningMethod::kPga) {
    return absl::InvalidArgumentError(
        "PGA's loss pairs forget with holdout examples and refits its probes "
        "from the model: PgaObjective (libs/unlearn/pga.h), as RunUnlearning "
        "does");
  }
  std::unique_ptr<UnlearningObjective> objective;
  if (method == UnlearningMethod::kOfmu) {
    objective = std::make_unique<OfmuObjective>(params, std::move(averager),
                                                loss_chunk_tokens);
  } else {
    objective = std::make_unique<WeightedObjective>(
        method, params, reference, loss_chunk_tokens, pack_row_length);
  }
  if (objective->needs().reference_model && reference == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(UnlearningMethodName(method),
                     " needs the frozen reference model for its KL term"));
  }
  return objective;
}

absl::StatusOr<std::unique_ptr<UnlearningObjective>> MakeRegluDataObjective(
    const ObjectiveParams& params, int64_t loss_chunk_tokens,
    int64_t pack_row_length) {
  RETURN_IF_ERROR(ValidateObjectiveParams(UnlearningMethod::kReglu, params));
  if (loss_chunk_tokens < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "loss_chunk_tokens must be >= 0, got ", loss_chunk_tokens));
  }
  if (pack_row_length < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("pack_row_length must be >= 0, got ", pack_row_length));
  }
  return std::unique_ptr<UnlearningObjective>(
      std::make_unique<WeightedObjective>(UnlearningMethod::kReglu, params,
                                          nullptr, loss_chunk_tokens,
                                          pack_row_length));
}

at::Tensor NpoLoss(const at::Tensor& log_probs,
                   const at::Tensor& reference_log_probs, double beta) {
  return (2.0 / beta) *
         Softplus(beta * (log_probs - reference_log_probs)).mean();
}

at::Tensor SimNpoLoss(const at::Tensor& log_probs, const at::Tensor& lengths,
                      double beta, double delta) {
  const at::Tensor normalised =
      log_probs / lengths.to(log_probs.scalar_type()).clamp_min(1);
  return (2.0 / beta) * Softplus(beta * (normalised + delta)).mean();
}

at::Tensor DpoLoss(const at::Tensor& win_log_probs,
                   const at::Tensor& win_reference_log_probs,
                   const at::Tensor& lose_log_probs,
                   const at::Tensor& lose_reference_log_probs, double beta) {
  const at::Tensor margin = (win_log_probs - win_reference_log_probs) -
                            (lose_log_probs - lose_reference_log_probs);
  return (2.0 / beta) * Softplus(-beta * margin).mean();
}

at::Tensor RetainKl(const at::Tensor& logits,
                    const at::Tensor& reference_logits,
                    const at::Tensor& labels) {
  const int64_t length = logits.size(1);
  const at::ScalarType dtype =
      logits.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  const at::Tensor log_p =
      at::log_softmax(logits.narrow(1, 0, length - 1).to(dtype), /*dim=*/-1);
  const at::Tensor log_q = at::log_softmax(
      reference_logits.narrow(1, 0, length - 1).to(dtype), /*dim=*/-1);
  const at::Tensor per_position = (log_q.exp() * (log_q - log_p)).sum(-1);
  const at::Tensor mask =
      (labels.narrow(1, 1, length - 1) != kIgnoreIndex).to(dtype);
  return (per_position * mask).sum() / mask.sum().clamp_min(1);
}

}  // namespace lethe
