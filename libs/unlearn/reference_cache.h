// The frozen reference model's summed answer log-probabilities on the forget
// examples (and their alternate answers), computed once per job and reused at
// every step, so the NPO family and IdkDPO never keep a second
// model in memory. Savable alongside checkpoints; a loaded cache is checked
// against the examples it was computed for.
//
//   ASSIGN_OR_RETURN(ReferenceLogProbCache cache,
//                    ReferenceLogProbCache::Compute(model, forget, pad_id));
//   at::Tensor reference = cache.Lookup({4, 17});  // [2] fp64
//   RETURN_IF_ERROR(cache.Save(dir + "/reference_log_probs.json"));
#ifndef LETHE_LIBS_UNLEARN_REFERENCE_CACHE_H_
#define LETHE_LIBS_UNLEARN_REFERENCE_CACHE_H_

#include <torch/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "libs/data/qa_example.h"
#include "libs/model/llama_model.h"

namespace lethe {

// A hash of the examples' token ids and labels (FNV-1a, 64-bit).
uint64_t FingerprintExamples(const std::vector<QaExample>& examples);

class ReferenceLogProbCache {
 public:
  // Runs `model` without gradients over `examples` in right-padded batches.
  // `reference` names the model (e.g. RunIdentity::reference: its weights'
  // hash and the settings its log-probs depend on); it is saved with them.
  // loss_chunk_tokens > 0: from the final hidden states that many answer
  // tokens at a time (libs/loss/chunked_log_probs.h), without a batch's full
  // logits; 0: from the full logits.
  static absl::StatusOr<ReferenceLogProbCache> Compute(
      LlamaForCausalLM& model, const std::vector<QaExample>& examples,
      int pad_id, int batch_size = 16, const std::string& reference = "",
      int64_t loss_chunk_tokens = 0);

  // Reads a file written by Save; FAILED_PRECONDITION when it was computed
  // for other examples or, when `reference` is given, by another reference
  // model; DATA_LOSS when it is malformed.
  static absl::StatusOr<ReferenceLogProbCache> Load(
      const std::string& path, const std::vector<QaExample>& examples,
      const std::string& reference = "");

  absl::Status Save(const std::string& path) const;

  // [indices.size()] fp64 log-probs of the examples at `indices`.
  at::Tensor Lookup(const std::vector<int64_t>& indices) const;
  const std::vector<double>& log_probs() const { return log_probs_; }

 private:
  ReferenceLogProbCache(std::vector<double> log_probs, uint64_t fingerprint,
                        std::string reference)
      : log_probs_(std::move(log_probs)),
        fingerprint_(fingerprint),
        reference_(std::move(reference)) {}

  std::vector<double> log_probs_;
  uint64_t fingerprint_;
  std::string reference_;
};

}  // namespace lethe

#endif  // LETHE_LIBS_UNLEARN_REFERENCE_CACHE_H_
