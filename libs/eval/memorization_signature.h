// PGA's memorisation signature of a model (arXiv 2605.01699; DESIGN.md
// "Methods", PGA) as an evaluation metric: how well a linear probe on the
// last-token hidden states tells sequences the model was trained on
// (memorised: the forget split's questions and answers) from clean ones it
// never saw (the holdout split), at every depth. Chance is 0.5; after
// unlearning the signature should fall towards it.
//
//   ASSIGN_OR_RETURN(MemorizationSignature signature,
//                    MeasureMemorizationSignature(
//                        model, tokenizer, prompt_template, data.forget,
//                        data.holdout, {.batch_size = 32}));
//   // signature.per_depth[d]: leave-one-pair-out accuracy at depth d.
//
// Each record's question and answer is tokenized as the TOFU evaluation does
// (TokenizeQa: the prompt template, BOS, max_length, EOS appended), the
// model runs in eval mode without gradients on right-padded batches, and
// each sequence's state is taken at its last real token (its EOS) at every
// depth of LlamaForCausalLM::HiddenStatesByDepth. Record i of `memorised` is
// paired with record i of `clean`, over the first min(sizes) of each; the
// accuracy at a depth is LeaveOnePairOutAccuracy (memorization_probe.h) of
// the paired states. Depth 0 is the input embedding of that last token,
// which is EOS for every sequence: its accuracy is exactly chance.
#ifndef LETHE_LIBS_EVAL_MEMORIZATION_SIGNATURE_H_
#define LETHE_LIBS_EVAL_MEMORIZATION_SIGNATURE_H_

#include <torch/types.h>

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "libs/data/qa_example.h"
#include "libs/data/tofu_dataset.h"
#include "libs/eval/memorization_probe.h"
#include "libs/model/llama_model.h"
#include "libs/tokenizer/tokenizer.h"

namespace lethe {

struct MemorizationSignatureOptions {
  int batch_size = 32;   // Sequences per forward pass.
  int max_length = 512;  // As TofuEvalOptions::max_length.
  ProbeOptions probe;
};

struct MemorizationSignature {
  int64_t pairs = 0;
  // Leave-one-pair-out accuracy per depth, num_hidden_layers + 1 of them
  // (index as HiddenStatesByDepth's); each a multiple of 1 / (2 pairs).
  std::vector<double> per_depth;
  double max_accuracy = 0;
  int max_depth = 0;  // The shallowest depth reaching max_accuracy.
};

// The hidden state at each example's last real token, at every depth:
// num_hidden_layers + 1 tensors [examples, hidden_size] on the CPU, fp32
// (fp64 for an fp64 model), rows in the examples' order. `pad_id` pads the
// batches. Eval mode and no gradients while it runs (the model's mode is
// restored). INVALID_ARGUMENT for no examples, an empty one or batch_size
// < 1; INTERNAL for LibTorch's errors.
absl::StatusOr<std::vector<at::Tensor>> LastTokenHiddenStates(
    LlamaForCausalLM& model, const std::vector<QaExample>& examples, int pad_id,
    int batch_size);

// The signature from paired states (as LastTokenHiddenStates returns them):
// `memorised[d]` and `clean[d]` [pairs, hidden] for each depth d.
// INVALID_ARGUMENT for mismatched depths or shapes, fewer than 2 pairs.
absl::StatusOr<MemorizationSignature> SignatureFromStates(
    const std::vector<at::Tensor>& memorised,
    const std::vector<at::Tensor>& clean, const ProbeOptions& options = {});

// The whole measure (see the top of this file); the tokenizer's pad id pads
// (its EOS when it has none). INVALID_ARGUMENT for fewer than 2 pairs or bad
// options; tokenizer errors as TokenizeQa's.
absl::StatusOr<MemorizationSignature> MeasureMemorizationSignature(
    LlamaForCausalLM& model, const Tokenizer& tokenizer,
    const PromptTemplate& prompt_template,
    const std::vector<TofuRecord>& memorised,
    const std::vector<TofuRecord>& clean,
    const MemorizationSignatureOptions& options = {});

}  // namespace lethe

#endif  // LETHE_LIBS_EVAL_MEMORIZATION_SIGNATURE_H_
