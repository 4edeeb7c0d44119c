#include "libs/eval/memorization_signature.h"

#include <torch/torch.h>

#include <algorithm>
#include <cstddef>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "libs/data/qa_batch.h"
#include "libs/eval/scoped_eval_mode.h"
#include "libs/status/status_macros.h"
#include "libs/status/torch_status.h"

namespace lethe {

absl::StatusOr<std::vector<at::Tensor>> LastTokenHiddenStates(
    LlamaForCausalLM& model, const std::vector<QaExample>& examples, int pad_id,
    int batch_size) {
  if (batch_size < 1) {
    return absl::InvalidArgumentError("batch_size must be at least 1");
  }
  if (examples.empty()) {
    return absl::InvalidArgumentError("no examples to take states from");
  }
  for (size_t i = 0; i < examples.size(); ++i) {
    if (examples[i].input_ids.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("example ", i, " has no tokens"));
    }
  }
  const ScopedEvalMode eval_mode(model);
  return CallTorch("last-token hidden states", [&] {
    torch::NoGradGuard no_grad;
    const at::Device device = model.device();
    // Per depth, each batch's rows.
    std::vector<std::vector<at::Tensor>> rows;
    for (size_t begin = 0; begin < examples.size(); begin += batch_size) {
      const size_t end =
          std::min(examples.size(), begin + static_cast<size_t>(batch_size));
      std::vector<const QaExample*> batch_examples;
      for (size_t i = begin; i < end; ++i) {
        batch_examples.push_back(&examples[i]);
      }
      const QaBatch batch = CollateQaBatch(batch_examples, pad_id).To(device);
      const std::vector<at::Tensor> states =
          model.HiddenStatesByDepth(batch.input_ids, batch.attention_mask);
      // Right padding: the last real token is at (real tokens - 1).
      const at::Tensor last = batch.attention_mask.sum(1) - 1;
      const at::Tensor batch_rows =
          torch::arange(static_cast<int64_t>(batch_examples.size()),
                        torch::TensorOptions().dtype(at::kLong).device(device));
      rows.resize(states.size());
      for (size_t depth = 0; depth < states.size(); ++depth) {
        const at::Tensor state = states[depth].index({batch_rows, last});
        rows[depth].push_back(state
                                  .to(state.scalar_type() == at::kDouble
                                          ? at::kDouble
                                          : at::kFloat)
                                  .cpu());
      }
    }
    std::vector<at::Tensor> by_depth;
    by_depth.reserve(rows.size());
    for (const std::vector<at::Tensor>& depth_rows : rows) {
      by_depth.push_back(torch::cat(depth_rows, 0));
    }
    return by_depth;
  });
}

absl::StatusOr<MemorizationSignature> SignatureFromStates(
    const std::vector<at::Tensor>& memorised,
    const std::vector<at::Tensor>& clean, const ProbeOptions& options) {
  if (memorised.empty() || memorised.size() != clean.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("memorised and clean states need the same depths, got ",
                     memorised.size(), " and ", clean.size()));
  }
  MemorizationSignature signature;
  for (size_t depth = 0; depth < memorised.size(); ++depth) {
    const at::Tensor& a = memorised[depth];
    const at::Tensor& b = clean[depth];
    if (!a.defined() || !b.defined() || a.dim() != 2 ||
        a.sizes() != b.sizes()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "depth ", depth, ": memorised and clean states must be [pairs, ",
          "hidden] of one shape"));
    }
    if (a.size(0) < 2) {
      return absl::InvalidArgumentError(absl::StrCat(
          "the memorisation probe needs at least 2 pairs, got ", a.size(0)));
    }
    signature.pairs = a.size(0);
    ASSIGN_OR_RETURN(const double accuracy,
                     LeaveOnePairOutAccuracy(a, b, options));
    signature.per_depth.push_back(accuracy);
    if (depth == 0 || accuracy > signature.max_accuracy) {
      signature.max_accuracy = accuracy;
      signature.max_depth = static_cast<int>(depth);
    }
  }
  return signature;
}

absl::StatusOr<MemorizationSignature> MeasureMemorizationSignature(
    LlamaForCausalLM& model, const Tokenizer& tokenizer,
    const PromptTemplate& prompt_template,
    const std::vector<TofuRecord>& memorised,
    const std::vector<TofuRecord>& clean,
    const MemorizationSignatureOptions& options) {
  const size_t pairs = std::min(memorised.size(), clean.size());
  if (pairs < 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the memorisation probe needs at least 2 pairs, got ", pairs, " (",
        memorised.size(), " memorised and ", clean.size(), " clean records)"));
  }
  if (options.batch_size < 1) {
    return absl::InvalidArgumentError("batch_size must be at least 1");
  }
  const std::vector<TofuRecord> memorised_records(
      memorised.begin(),
      memorised.begin() + static_cast<std::ptrdiff_t>(pairs));
  const std::vector<TofuRecord> clean_records(
      clean.begin(), clean.begin() + static_cast<std::ptrdiff_t>(pairs));
  ASSIGN_OR_RETURN(const std::vector<QaExample> memorised_examples,
                   TokenizeRecords(tokenizer, prompt_template,
                                   memorised_records, options.max_length));
  ASSIGN_OR_RETURN(const std::vector<QaExample> clean_examples,
                   TokenizeRecords(tokenizer, prompt_template, clean_records,
                                   options.max_length));
  const int pad_id =
      tokenizer.pad_id() >= 0 ? tokenizer.pad_id() : tokenizer.eos_id();
  ASSIGN_OR_RETURN(const std::vector<at::Tensor> memorised_states,
                   LastTokenHiddenStates(model, memorised_examples, pad_id,
                                         options.batch_size));
  ASSIGN_OR_RETURN(
      const std::vector<at::Tensor> clean_states,
      LastTokenHiddenStates(model, clean_examples, pad_id, options.batch_size));
  return SignatureFromStates(memorised_states, clean_states, options.probe);
}

}  // namespace lethe
