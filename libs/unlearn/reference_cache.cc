#include "libs/unlearn/reference_cache.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "libs/data/qa_batch.h"
#include "libs/files/file_io.h"
#include "libs/loss/chunked_log_probs.h"
#include "libs/status/status_macros.h"
#include "libs/status/torch_status.h"
#include "nlohmann/json.hpp"

namespace lethe {
namespace {

constexpr uint64_t kFnvOffset = 14695981039346656037ull;
constexpr uint64_t kFnvPrime = 1099511628211ull;

void Mix(uint64_t& hash, int64_t value) {
  for (int byte = 0; byte < 8; ++byte) {
    hash ^= static_cast<uint64_t>(value >> (8 * byte)) & 0xff;
    hash *= kFnvPrime;
  }
}

}  // namespace

uint64_t FingerprintExamples(const std::vector<QaExample>& examples) {
  uint64_t hash = kFnvOffset;
  Mix(hash, static_cast<int64_t>(examples.size()));
  for (const QaExample& example : examples) {
    Mix(hash, static_cast<int64_t>(example.input_ids.size()));
    for (int id : example.input_ids) Mix(hash, id);
    for (int label : example.labels) Mix(hash, label);
  }
  return hash;
}

absl::StatusOr<ReferenceLogProbCache> ReferenceLogProbCache::Compute(
    LlamaForCausalLM& model, const std::vector<QaExample>& examples, int pad_id,
    int batch_size, const std::string& reference, int64_t loss_chunk_tokens) {
  if (batch_size < 1) {
    return absl::InvalidArgumentError("reference batch size must be >= 1");
  }
  std::vector<double> log_probs;
  log_probs.reserve(examples.size());
  RETURN_IF_ERROR(CallTorch("reference log-probs", [&] {
    torch::NoGradGuard no_grad;
    for (size_t begin = 0; begin < examples.size(); begin += batch_size) {
      std::vector<const QaExample*> batch_examples;
      for (size_t i = begin; i < std::min(examples.size(), begin + batch_size);
           ++i) {
        batch_examples.push_back(&examples[i]);
      }
      const QaBatch batch =
          CollateQaBatch(batch_examples, pad_id).To(model.device());
      const at::Tensor summed =
          ModelAnswerLogProbs(model, batch, loss_chunk_tokens)
              .summed.to(at::kDouble)
              .cpu()
              .contiguous();
      const double* values = summed.data_ptr<double>();
      log_probs.insert(log_probs.end(), values, values + summed.numel());
    }
  }));
  return ReferenceLogProbCache(std::move(log_probs),
                               FingerprintExamples(examples), reference);
}

absl::StatusOr<ReferenceLogProbCache> ReferenceLogProbCache::Load(
    const std::string& path, const std::vector<QaExample>& examples,
    const std::string& reference) {
  ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  const nlohmann::json json = nlohmann::json::parse(text, nullptr, false);
  if (json.is_discarded() || !json.is_object() ||
      !json.contains("fingerprint") || !json["fingerprint"].is_string() ||
      !json.contains("log_probs") || !json["log_probs"].is_array()) {
    return absl::DataLossError(absl::StrCat(
        path, ": not a reference log-prob cache (truncated or corrupt?)"));
  }
  std::vector<double> log_probs;
  for (const nlohmann::json& value : json["log_probs"]) {
    if (!value.is_number() || !std::isfinite(value.get<double>())) {
      return absl::DataLossError(
          absl::StrCat(path, ": log_probs holds a non-number"));
    }
    log_probs.push_back(value.get<double>());
  }
  const uint64_t fingerprint = FingerprintExamples(examples);
  if (json["fingerprint"].get<std::string>() != absl::StrCat(fingerprint) ||
      log_probs.size() != examples.size()) {
    return absl::FailedPreconditionError(absl::StrCat(
        path, " was computed for other examples (", log_probs.size(),
        " cached, ", examples.size(), " given); delete it to recompute"));
  }
  const std::string saved_reference = json.value("reference", "");
  if (!reference.empty() && saved_reference != reference) {
    return absl::FailedPreconditionError(absl::StrCat(
        path, " was computed by another reference model (",
        saved_reference.empty() ? "unnamed" : saved_reference,
        ", this run's is ", reference, "); delete it to recompute"));
  }
  return ReferenceLogProbCache(std::move(log_probs), fingerprint,
                               saved_reference);
}

absl::Status ReferenceLogProbCache::Save(const std::string& path) const {
  const nlohmann::json json = {{"fingerprint", absl::StrCat(fingerprint_)},
                               {"reference", reference_},
                               {"log_probs", log_probs_}};
  return WriteFileAtomically(path, json.dump() + "\n");
}

at::Tensor ReferenceLogProbCache::Lookup(
    const std::vector<int64_t>& indices) const {
  std::vector<double> values;
  values.reserve(indices.size());
  for (int64_t index : indices) values.push_back(log_probs_.at(index));
  return at::tensor(values, at::kDouble);
}

}  // namespace lethe
