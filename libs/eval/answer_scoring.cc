#include "libs/eval/answer_scoring.h"

#include <torch/csrc/autograd/autograd.h>
#include <torch/types.h>

#include <algorithm>

#include "absl/status/status.h"
#include "libs/data/qa_batch.h"
#include "libs/loss/sequence_loss.h"
#include "libs/model/generation.h"
#include "libs/model/llama_model.h"
#include "libs/status/status_macros.h"
#include "libs/status/torch_status.h"

namespace lethe {
namespace {

std::vector<float> ToFloats(const at::Tensor& tensor) {
  const at::Tensor flat = tensor.to(at::kFloat).contiguous().cpu();
  return std::vector<float>(flat.data_ptr<float>(),
                            flat.data_ptr<float>() + flat.numel());
}

// Per-token statistics of one answer from its logits over the span's
// predicting positions.
void ScoreAnswerTokens(const at::Tensor& row_logits, const at::Tensor& row_ids,
                       const AnswerSpan& span, AnswerScore& score) {
  if (span.count == 0) return;  // exact_memorization null, strength 0.
  const at::Tensor log_probs = at::log_softmax(
      row_logits.narrow(0, span.start - 1, span.count).to(at::kFloat), -1);
  const at::Tensor targets = row_ids.narrow(0, span.start, span.count);
  const at::Tensor target_log_probs =
      log_probs.gather(1, targets.unsqueeze(1)).squeeze(1);
  const at::Tensor probs = log_probs.exp();
  const at::Tensor mu = (probs * log_probs).sum(-1);
  const at::Tensor sigma =
      ((probs * log_probs.square()).sum(-1) - mu.square()).clamp_min(1e-6);
  score.token_log_probs = ToFloats(target_log_probs);
  score.standardized_log_probs =
      ToFloats((target_log_probs - mu) / sigma.sqrt());

  const at::Tensor matches =
      (log_probs.argmax(-1) == targets).to(at::kByte).contiguous().cpu();
  const uint8_t* match = matches.data_ptr<uint8_t>();
  const int64_t n = span.count;
  const int64_t matched = std::count(match, match + n, 1);
  // (preds == labels).sum() / n in float32, as a tensor computes it.
  score.exact_memorization =
      static_cast<float>(matched) / static_cast<float>(n);
  int64_t last_miss = -1;
  for (int64_t t = 0; t < n; ++t) {
    if (match[t] == 0) last_miss = t;
  }
  const int64_t k = std::min(last_miss + 1, n - 1);
  score.extraction_strength = 1.0 - static_cast<double>(k) / n;
}

}  // namespace

AnswerSpan PerTokenSpan(const QaExample& example) {
  const auto first =
      std::find_if(example.labels.begin(), example.labels.end(),
                   [](int label) { return label != kIgnoreIndex; });
  if (first == example.labels.end()) return {};
  const int64_t start = first - example.labels.begin();
  // Not at position 0: the prompt holds BOS at least.
  return {std::max<int64_t>(start, 1),
          std::max<int64_t>(example.answer_tokens() - 1, 0)};
}

absl::StatusOr<std::vector<AnswerScore>> ScoreExamples(
    LlamaForCausalLM& model, const std::vector<QaExample>& examples, int pad_id,
    int batch_size, bool detailed) {
  std::vector<AnswerScore> scores(examples.size());
  std::vector<size_t> lengths;
  for (const QaExample& example : examples) {
    lengths.push_back(example.input_ids.size());
  }
  const std::vector<size_t> order = LongestFirst(lengths);
  RETURN_IF_ERROR(CallTorch("scoring answers", [&] {
    torch::NoGradGuard no_grad;
    const at::Device device = model.device();
    for (size_t begin = 0; begin < order.size(); begin += batch_size) {
      const size_t end = std::min(order.size(), begin + batch_size);
      std::vector<const QaExample*> batch_examples;
      for (size_t i = begin; i < end; ++i) {
        batch_examples.push_back(&examples[order[i]]);
      }
      const QaBatch batch = CollateQaBatch(batch_examples, pad_id);
      const at::Tensor input_ids = batch.input_ids.to(device);
      const at::Tensor logits =
          model.Forward(input_ids, batch.attention_mask.to(device));
      const at::Tensor labels = batch.labels.to(device);
      // As open-unlearning's evaluate_probability: summed NLL / count, then
      // exp, in float32.
      const at::Tensor avg_loss =
          (TokenNll(logits, labels).to(at::kFloat).sum(-1) /
           (labels != kIgnoreIndex).sum(-1))
              .to(at::kFloat);
      const std::vector<float> losses = ToFloats(avg_loss);
      const std::vector<float> probs = ToFloats(at::exp(-avg_loss));
      for (size_t row = 0; row < batch_examples.size(); ++row) {
        AnswerScore& score = scores[order[begin + row]];
        score.avg_loss = losses[row];
        score.prob = probs[row];
        if (detailed) {
          ScoreAnswerTokens(logits[row], input_ids[row],
                            PerTokenSpan(*batch_examples[row]), score);
        }
      }
    }
  }));
  return scores;
}

absl::StatusOr<std::vector<double>> GradientNorms(
    LlamaForCausalLM& model, const std::vector<QaExample>& examples) {
  std::vector<at::Tensor> parameters;
  for (const at::Tensor& parameter : model.parameters()) {
    if (parameter.requires_grad()) parameters.push_back(parameter);
  }
  if (parameters.empty()) {
    return absl::FailedPreconditionError(
        "mia_gradnorm needs model parameters that require gradients");
  }
  std::vector<double> norms(examples.size(), 0.0);
  RETURN_IF_ERROR(CallTorch("mia_gradnorm gradients", [&] {
    torch::AutoGradMode enable_grad(true);
    const at::Device device = parameters.front().device();
    for (size_t i = 0; i < examples.size(); ++i) {
      const AnswerSpan span = PerTokenSpan(examples[i]);
      if (span.count == 0) continue;
      const std::vector<int64_t> ids(examples[i].input_ids.begin(),
                                     examples[i].input_ids.end());
      const at::Tensor input =
          torch::tensor(ids, torch::TensorOptions().dtype(at::kLong))
              .to(device)
              .unsqueeze(0);
      const at::Tensor logits = model.Forward(input)[0];
      const at::Tensor log_probs = at::log_softmax(
          logits.narrow(0, span.start - 1, span.count).to(at::kFloat), -1);
      const at::Tensor loss =
          -log_probs
               .gather(1,
                       input[0].narrow(0, span.start, span.count).unsqueeze(1))
               .mean();
      const std::vector<at::Tensor> gradients = torch::autograd::grad(
          {loss}, parameters, /*grad_outputs=*/{}, /*retain_graph=*/false,
          /*create_graph=*/false, /*allow_unused=*/true);
      std::vector<at::Tensor> parameter_norms;
      for (const at::Tensor& gradient : gradients) {
        if (gradient.defined()) parameter_norms.push_back(gradient.norm(2));
      }
      norms[i] = torch::stack(parameter_norms).mean().item<float>();
    }
  }));
  return norms;
}

double MinKScore(std::vector<float> values, double fraction) {
  if (values.empty()) return 0;
  const size_t k = std::max<size_t>(
      1, static_cast<size_t>(static_cast<double>(values.size()) * fraction));
  std::sort(values.begin(), values.end());
  double sum = 0;
  for (size_t i = 0; i < k; ++i) sum += values[i];
  return -sum / static_cast<double>(k);
}

}  // namespace lethe
