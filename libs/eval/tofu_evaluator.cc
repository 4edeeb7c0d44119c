#include "libs/eval/tofu_evaluator.h"

#include <torch/csrc/autograd/autograd.h>
#include <torch/types.h>
#include <zlib.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <map>
#include <numeric>
#include <optional>
#include <tuple>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "libs/data/qa_batch.h"
#include "libs/eval/numpy_reduction.h"
#include "libs/eval/roc_auc.h"
#include "libs/eval/rouge.h"
#include "libs/eval/tofu_metrics.h"
#include "libs/eval/tofu_summary.h"
#include "libs/files/file_io.h"
#include "libs/status/status_macros.h"
#include "libs/status/torch_status.h"
#include "libs/unlearn/sequence_loss.h"

namespace lethe {
namespace {

using Json = nlohmann::ordered_json;

// ---------------------------------------------------------------------------
// Reading the evaluation sets.

// What a set's records must carry.
enum class Needs { kAnswer, kPerturbed, kParaphrasedAndPerturbed };

// The file ReadTofuSplit reads for `split` (or would, were it there).
std::string SplitPath(const std::string& dir, const std::string& split) {
  const std::string json = absl::StrCat(dir, "/", split, ".json");
  const std::string jsonl = absl::StrCat(dir, "/", split, ".jsonl");
  return !std::filesystem::exists(json) && std::filesystem::exists(jsonl)
             ? jsonl
             : json;
}

absl::StatusOr<std::vector<TofuRecord>> ReadEvalSet(const std::string& dir,
                                                    const std::string& split,
                                                    absl::string_view role,
                                                    Needs needs) {
  absl::StatusOr<std::vector<TofuRecord>> records = ReadTofuSplit(dir, split);
  if (!records.ok()) {
    return absl::Status(
        records.status().code(),
        absl::StrCat("the ", role, " set: ", records.status().message()));
  }
  const std::string path = SplitPath(dir, split);
  if (records->empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": no questions (the ", role, " set)"));
  }
  for (size_t i = 0; i < records->size(); ++i) {
    const TofuRecord& record = (*records)[i];
    if (needs == Needs::kParaphrasedAndPerturbed &&
        !record.paraphrased_answer.has_value()) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": record ", i,
          " has no paraphrased_answer, which the truth ratio of the ", role,
          " set needs"));
    }
    if (needs != Needs::kAnswer && record.perturbed_answers.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": record ", i,
          " has no perturbed_answer, which the truth ratio of the ", role,
          " set needs"));
    }
  }
  return records;
}

// ---------------------------------------------------------------------------
// Scoring answers.

// One (question, answer) pair under the model.
struct AnswerScore {
  float avg_loss = 0;  // Mean NLL over the answer tokens, EOS included.
  float prob = 0;      // exp(-avg_loss).
  // Detailed scores, over the answer tokens but the last (EOS), as
  // open-unlearning's tokenwise_logprobs selects them:
  std::vector<float> token_log_probs;
  std::vector<float> standardized_log_probs;  // (log p - mu) / sigma
  std::optional<double> exact_memorization;   // Null without tokens.
  double extraction_strength = 0;
};

// The answer tokens that open-unlearning's per-token metrics look at: the
// labelled positions but the last, as [start, start + count).
struct AnswerSpan {
  int64_t start = 0;
  int64_t count = 0;
};

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

// Indices of `sizes` ordered longest first (stable), so that batches hold
// sequences of similar length and little padding.
std::vector<size_t> LongestFirst(const std::vector<size_t>& sizes) {
  std::vector<size_t> order(sizes.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return sizes[a] > sizes[b]; });
  return order;
}

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

// Scores every example, in order, `batch_size` at a time. Detailed scores
// (per-token statistics) only when `detailed`.
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

// open-unlearning's mia_gradnorm statistic for each example: the mean over
// parameters of ||d loss / d parameter||_2, loss = -mean answer-token log-prob
// (EOS excluded); 0 for an answer without such tokens.
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

// ---------------------------------------------------------------------------
// Generation text, as open-unlearning decodes it.

// Hugging Face's clean_up_tokenization (batch_decode's
// clean_up_tokenization_spaces=True), one replacement after another.
std::string CleanUpTokenizationSpaces(std::string text) {
  for (const auto& [from, to] :
       std::vector<std::pair<const char*, const char*>>{{" .", "."},
                                                        {" ?", "?"},
                                                        {" !", "!"},
                                                        {" ,", ","},
                                                        {" ' ", "'"},
                                                        {" n't", "n't"},
                                                        {" 'm", "'m"},
                                                        {" 's", "'s"},
                                                        {" 've", "'ve"},
                                                        {" 're", "'re"}}) {
    text = absl::StrReplaceAll(text, {{from, to}});
  }
  return text;
}

absl::StatusOr<std::string> DecodeForRouge(const Tokenizer& tokenizer,
                                           const std::vector<int>& ids) {
  ASSIGN_OR_RETURN(std::string text, tokenizer.Decode(ids));
  return CleanUpTokenizationSpaces(std::move(text));
}

// Python's zlib.compress(text.encode()) length: zlib format, default level.
absl::StatusOr<size_t> ZlibCompressedSize(const std::string& text) {
  uLongf size = compressBound(text.size());
  std::vector<Bytef> buffer(size);
  if (compress2(buffer.data(), &size,
                reinterpret_cast<const Bytef*>(text.data()), text.size(),
                Z_DEFAULT_COMPRESSION) != Z_OK) {
    return absl::InternalError("zlib could not compress an answer");
  }
  return size;
}

// ---------------------------------------------------------------------------
// open-unlearning's JSON layout.

Json IndexEntries(const std::vector<Json>& entries) {
  Json by_index = Json::object();
  for (size_t i = 0; i < entries.size(); ++i) {
    by_index[std::to_string(i)] = entries[i];
  }
  return by_index;
}

Json Metric(double agg_value, const std::vector<Json>& entries) {
  return Json{{"agg_value", agg_value},
              {"value_by_index", IndexEntries(entries)}};
}

// open-unlearning's "probability" metric, one answer per question.
Json ProbabilityMetric(const std::vector<AnswerScore>& scores) {
  std::vector<Json> entries;
  std::vector<double> probs;
  for (const AnswerScore& score : scores) {
    entries.push_back({{"prob", score.prob}, {"avg_loss", score.avg_loss}});
    probs.push_back(score.prob);
  }
  return Metric(NumpyMean(probs), entries);
}

// The same with several answers per question (perturbed ones): lists per
// question, aggregated as the mean of the per-question means.
Json MultiProbabilityMetric(
    const std::vector<std::vector<AnswerScore>>& scores) {
  std::vector<Json> entries;
  std::vector<double> row_means;
  for (const std::vector<AnswerScore>& row : scores) {
    Json probs = Json::array(), losses = Json::array();
    std::vector<double> row_probs;
    for (const AnswerScore& score : row) {
      probs.push_back(score.prob);
      losses.push_back(score.avg_loss);
      row_probs.push_back(score.prob);
    }
    entries.push_back({{"prob", probs}, {"avg_loss", losses}});
    row_means.push_back(NumpyMean(row_probs));
  }
  return Metric(NumpyMean(row_means), entries);
}

enum class TruthRatioAggregate { kCloserToOne, kOneMinus };

Json TruthRatioMetric(const std::vector<AnswerScore>& correct,
                      const std::vector<std::vector<AnswerScore>>& perturbed,
                      TruthRatioAggregate aggregate) {
  std::vector<Json> entries;
  std::vector<double> ratios;
  for (size_t i = 0; i < correct.size(); ++i) {
    std::vector<double> losses;
    for (const AnswerScore& score : perturbed[i]) {
      losses.push_back(score.avg_loss);
    }
    ratios.push_back(TruthRatio(correct[i].avg_loss, losses));
    entries.push_back({{"score", ratios.back()}});
  }
  return Metric(aggregate == TruthRatioAggregate::kCloserToOne
                    ? MeanTruthRatioCloserToOne(ratios)
                    : MeanOneMinusTruthRatio(ratios),
                entries);
}

Json NormalisedProbabilityMetric(
    const std::vector<AnswerScore>& correct,
    const std::vector<std::vector<AnswerScore>>& perturbed) {
  std::vector<Json> entries;
  std::vector<double> normalised;
  for (size_t i = 0; i < correct.size(); ++i) {
    std::vector<double> wrong;
    for (const AnswerScore& score : perturbed[i]) wrong.push_back(score.prob);
    normalised.push_back(NormalisedProbability(correct[i].prob, wrong));
    entries.push_back({{"prob", normalised.back()}});
  }
  return Metric(NumpyMean(normalised), entries);
}

Json ScoreMetric(const std::vector<std::optional<double>>& scores) {
  std::vector<Json> entries;
  std::vector<double> present;
  for (const std::optional<double>& score : scores) {
    entries.push_back({{"score", score.has_value() ? Json(*score) : Json()}});
    if (score.has_value()) present.push_back(*score);
  }
  return Metric(NumpyMean(present), entries);
}

absl::StatusOr<Json> MiaMetric(const std::string& name,
                               const std::vector<double>& forget,
                               const std::vector<double>& holdout) {
  auto attack = [](const std::vector<double>& scores) {
    std::vector<Json> entries;
    for (double score : scores) entries.push_back({{"score", score}});
    return Metric(NumpyMean(scores), entries);
  };
  absl::StatusOr<double> auc = RocAuc(forget, holdout);
  if (!auc.ok()) {
    return absl::Status(auc.status().code(),
                        absl::StrCat(name, ": ", auc.status().message()));
  }
  return Json{{"forget", attack(forget)},
              {"holdout", attack(holdout)},
              {"auc", *auc},
              {"agg_value", *auc}};
}

// mia_min_k's statistic: -mean of the lowest max(1, int(n * fraction)) values
// (0 without values).
double MinKScore(std::vector<float> values, double fraction) {
  if (values.empty()) return 0;
  const size_t k = std::max<size_t>(
      1, static_cast<size_t>(static_cast<double>(values.size()) * fraction));
  std::sort(values.begin(), values.end());
  double sum = 0;
  for (size_t i = 0; i < k; ++i) sum += values[i];
  return -sum / static_cast<double>(k);
}

// ---------------------------------------------------------------------------
// The sets' examples, tokenized once.

// Questions with their correct answers and alternatives (paraphrased or
// perturbed answers), flattened for scoring.
class ExamplePool {
 public:
  // Adds `examples`; returns the index of the first.
  size_t Add(std::vector<QaExample> examples) {
    const size_t first = examples_.size();
    for (QaExample& example : examples) examples_.push_back(std::move(example));
    return first;
  }
  const std::vector<QaExample>& examples() const { return examples_; }

 private:
  std::vector<QaExample> examples_;
};

// A set's answers of one kind: `rows[i]` lists question i's examples in the
// pool (one for answers and paraphrases, several for perturbed answers).
struct AnswerRows {
  std::vector<std::vector<size_t>> rows;

  std::vector<AnswerScore> Single(const std::vector<AnswerScore>& all) const {
    std::vector<AnswerScore> result;
    for (const std::vector<size_t>& row : rows) result.push_back(all[row[0]]);
    return result;
  }
  std::vector<std::vector<AnswerScore>> Multi(
      const std::vector<AnswerScore>& all) const {
    std::vector<std::vector<AnswerScore>> result;
    for (const std::vector<size_t>& row : rows) {
      result.emplace_back();
      for (size_t index : row) result.back().push_back(all[index]);
    }
    return result;
  }
};

// ---------------------------------------------------------------------------
// Sharding: each rank computes the expensive values of its share of the
// examples and prompts; the ranks exchange them as bytes.

// The items of `all` at indices `rank`, `rank` + world_size, ...
template <typename T>
std::vector<T> TakeShare(const std::vector<T>& all,
                         const TofuEvalSharding& sharding) {
  std::vector<T> share;
  for (size_t i = sharding.rank; i < all.size(); i += sharding.world_size) {
    share.push_back(all[i]);
  }
  return share;
}

// How many of `total` items TakeShare gives `rank`.
size_t ShareSize(size_t total, int rank, int world_size) {
  const size_t first = static_cast<size_t>(rank);
  return total > first ? (total - first - 1) / world_size + 1 : 0;
}

// The values an evaluation computes per example or prompt, in the order of
// the pools and prompts (of one rank's share, or of all of them).
struct EvalValues {
  std::vector<AnswerScore> detailed;   // The detailed pool's scores.
  std::vector<AnswerScore> scores;     // The other pool's scores.
  std::vector<double> gradient_norms;  // mia_gradnorm, detailed pool.
  std::vector<AnswerScore> reference;  // Detailed pool; empty without one.
  std::vector<std::vector<int64_t>> generations;  // One per ROUGE prompt.
};

// How many values of each kind a whole evaluation has.
struct EvalValueCounts {
  size_t detailed = 0;
  size_t scores = 0;
  size_t reference = 0;
  size_t generations = 0;

  EvalValueCounts Share(int rank, int world_size) const {
    return {ShareSize(detailed, rank, world_size),
            ShareSize(scores, rank, world_size),
            ShareSize(reference, rank, world_size),
            ShareSize(generations, rank, world_size)};
  }
};

// Identifies the encoding below; a peer running another one is refused.
constexpr char kShareTag[] = "LTS1";

// EvalValues as bytes: the tag, then each vector as a uint64 count and its
// items; integers and IEEE-754 bit patterns little-endian, so that values
// round-trip bit for bit.
class ShareWriter {
 public:
  ShareWriter() : bytes_(kShareTag) {}

  void Values(const EvalValues& values) {
    Scores(values.detailed);
    Scores(values.scores);
    Count(values.gradient_norms.size());
    for (double norm : values.gradient_norms) Double(norm);
    Scores(values.reference);
    Count(values.generations.size());
    for (const std::vector<int64_t>& tokens : values.generations) {
      Count(tokens.size());
      for (int64_t token : tokens) Fixed(static_cast<uint64_t>(token), 8);
    }
  }
  std::string Take() { return std::move(bytes_); }

 private:
  void Fixed(uint64_t value, int bytes) {
    for (int i = 0; i < bytes; ++i) {
      bytes_ += static_cast<char>((value >> (8 * i)) & 0xFF);
    }
  }
  void Count(size_t count) { Fixed(count, 8); }
  void Float(float value) {
    uint32_t bits;
    std::memcpy(&bits, &value, sizeof(bits));
    Fixed(bits, 4);
  }
  void Double(double value) {
    uint64_t bits;
    std::memcpy(&bits, &value, sizeof(bits));
    Fixed(bits, 8);
  }
  void Floats(const std::vector<float>& values) {
    Count(values.size());
    for (float value : values) Float(value);
  }
  void Scores(const std::vector<AnswerScore>& scores) {
    Count(scores.size());
    for (const AnswerScore& score : scores) {
      Float(score.avg_loss);
      Float(score.prob);
      Floats(score.token_log_probs);
      Floats(score.standardized_log_probs);
      Fixed(score.exact_memorization.has_value() ? 1 : 0, 1);
      if (score.exact_memorization.has_value()) {
        Double(*score.exact_memorization);
      }
      Double(score.extraction_strength);
    }
  }

  std::string bytes_;
};

// Reads what ShareWriter wrote; any shortfall or surplus makes it fail.
class ShareReader {
 public:
  explicit ShareReader(absl::string_view bytes) : bytes_(bytes) {}

  absl::StatusOr<EvalValues> Values() {
    if (!absl::ConsumePrefix(&bytes_, kShareTag)) {
      return absl::DataLossError("not an evaluation share of this version");
    }
    EvalValues values;
    values.detailed = Scores();
    values.scores = Scores();
    values.gradient_norms.resize(Count(8));
    for (double& norm : values.gradient_norms) norm = Double();
    values.reference = Scores();
    values.generations.resize(Count(8));
    for (std::vector<int64_t>& tokens : values.generations) {
      tokens.resize(Count(8));
      for (int64_t& token : tokens) token = static_cast<int64_t>(Fixed(8));
    }
    if (!ok_ || !bytes_.empty()) {
      return absl::DataLossError(
          ok_ ? "an evaluation share with bytes after its end"
              : "a truncated or malformed evaluation share");
    }
    return values;
  }

 private:
  uint64_t Fixed(int bytes) {
    if (!ok_ || bytes_.size() < static_cast<size_t>(bytes)) {
      ok_ = false;
      return 0;
    }
    uint64_t value = 0;
    for (int i = 0; i < bytes; ++i) {
      value |= static_cast<uint64_t>(static_cast<uint8_t>(bytes_[i]))
               << (8 * i);
    }
    bytes_.remove_prefix(bytes);
    return value;
  }
  // A count of items of at least `item_bytes` each; 0 (and failure) when
  // they cannot all be there.
  size_t Count(size_t item_bytes) {
    const uint64_t count = Fixed(8);
    if (count > bytes_.size() / item_bytes) {
      ok_ = false;
      return 0;
    }
    return static_cast<size_t>(count);
  }
  float Float() {
    const uint32_t bits = static_cast<uint32_t>(Fixed(4));
    float value;
    std::memcpy(&value, &bits, sizeof(value));
    return value;
  }
  double Double() {
    const uint64_t bits = Fixed(8);
    double value;
    std::memcpy(&value, &bits, sizeof(value));
    return value;
  }
  std::vector<float> Floats() {
    std::vector<float> values(Count(4));
    for (float& value : values) value = Float();
    return values;
  }
  std::vector<AnswerScore> Scores() {
    // The smallest score: two floats, two empty lists, a flag, a double.
    std::vector<AnswerScore> scores(Count(4 + 4 + 8 + 8 + 1 + 8));
    for (AnswerScore& score : scores) {
      score.avg_loss = Float();
      score.prob = Float();
      score.token_log_probs = Floats();
      score.standardized_log_probs = Floats();
      if (Fixed(1) != 0) score.exact_memorization = Double();
      score.extraction_strength = Double();
    }
    return scores;
  }

  absl::string_view bytes_;
  bool ok_ = true;
};

// Puts `share`, rank `rank`'s TakeShare of a vector, into `all`.
template <typename T>
void PlaceShare(std::vector<T>& share, int rank, int world_size,
                std::vector<T>& all) {
  for (size_t k = 0; k < share.size(); ++k) {
    all[rank + k * world_size] = std::move(share[k]);
  }
}

// Exchanges the ranks' shares (one all_gather) and reassembles the values of
// the whole evaluation, `counts` of each kind, in their original order.
absl::StatusOr<EvalValues> GatherShares(const EvalValues& mine,
                                        const EvalValueCounts& counts,
                                        const TofuEvalSharding& sharding) {
  ShareWriter writer;
  writer.Values(mine);
  ASSIGN_OR_RETURN(const std::vector<std::string> shares,
                   sharding.all_gather(writer.Take()));
  const int world_size = sharding.world_size;
  if (shares.size() != static_cast<size_t>(world_size)) {
    return absl::InternalError(absl::StrCat("gathering evaluation shares: got ",
                                            shares.size(), " shares from ",
                                            world_size, " ranks"));
  }
  EvalValues all;
  all.detailed.resize(counts.detailed);
  all.scores.resize(counts.scores);
  all.gradient_norms.resize(counts.detailed);
  all.reference.resize(counts.reference);
  all.generations.resize(counts.generations);
  for (int rank = 0; rank < world_size; ++rank) {
    absl::StatusOr<EvalValues> share = ShareReader(shares[rank]).Values();
    if (!share.ok()) {
      return absl::Status(share.status().code(),
                          absl::StrCat("the evaluation share of rank ", rank,
                                       ": ", share.status().message()));
    }
    const EvalValueCounts expected = counts.Share(rank, world_size);
    if (share->detailed.size() != expected.detailed ||
        share->scores.size() != expected.scores ||
        share->gradient_norms.size() != expected.detailed ||
        share->reference.size() != expected.reference ||
        share->generations.size() != expected.generations) {
      return absl::FailedPreconditionError(absl::StrCat(
          "the evaluation share of rank ", rank, " holds ",
          share->detailed.size(), "/", share->scores.size(), "/",
          share->gradient_norms.size(), "/", share->reference.size(), "/",
          share->generations.size(), " values, expected ", expected.detailed,
          "/", expected.scores, "/", expected.detailed, "/", expected.reference,
          "/", expected.generations,
          " (detailed scores/scores/gradient norms/reference scores/"
          "generations): do all ranks evaluate the same data and reference?"));
    }
    PlaceShare(share->detailed, rank, world_size, all.detailed);
    PlaceShare(share->scores, rank, world_size, all.scores);
    PlaceShare(share->gradient_norms, rank, world_size, all.gradient_norms);
    PlaceShare(share->reference, rank, world_size, all.reference);
    PlaceShare(share->generations, rank, world_size, all.generations);
  }
  return all;
}

}  // namespace

absl::StatusOr<TofuEvalData> ReadTofuEvalData(const std::string& data_dir,
                                              const std::string& forget_split) {
  const std::string kPrefix = "forget";
  const std::string digits = absl::StartsWith(forget_split, kPrefix)
                                 ? forget_split.substr(kPrefix.size())
                                 : "";
  if (digits.empty() || !std::all_of(digits.begin(), digits.end(), [](char c) {
        return absl::ascii_isdigit(c);
      })) {
    return absl::InvalidArgumentError(absl::StrCat(
        "forget split '", forget_split,
        "' is not forgetNN (e.g. forget10); its holdout set holdoutNN is "
        "named after it"));
  }
  TofuEvalData data;
  data.forget_split = forget_split;
  ASSIGN_OR_RETURN(data.forget,
                   ReadEvalSet(data_dir, forget_split + "_perturbed", "forget",
                               Needs::kParaphrasedAndPerturbed));
  ASSIGN_OR_RETURN(data.holdout, ReadEvalSet(data_dir, "holdout" + digits,
                                             "holdout", Needs::kAnswer));
  ASSIGN_OR_RETURN(data.retain,
                   ReadEvalSet(data_dir, "retain_perturbed", "retain",
                               Needs::kParaphrasedAndPerturbed));
  ASSIGN_OR_RETURN(data.real_authors,
                   ReadEvalSet(data_dir, "real_authors_perturbed",
                               "real authors", Needs::kPerturbed));
  ASSIGN_OR_RETURN(data.world_facts,
                   ReadEvalSet(data_dir, "world_facts_perturbed", "world facts",
                               Needs::kPerturbed));
  return data;
}

absl::StatusOr<std::vector<std::vector<int64_t>>> GreedyGenerateBatch(
    LlamaForCausalLM& model, const std::vector<std::vector<int64_t>>& prompts,
    int64_t max_new_tokens, const std::vector<int64_t>& stop_ids,
    int64_t pad_id, int batch_size) {
  if (batch_size < 1) {
    return absl::InvalidArgumentError("the batch size must be at least 1");
  }
  std::vector<size_t> lengths;
  for (const std::vector<int64_t>& prompt : prompts) {
    if (prompt.empty()) {
      return absl::InvalidArgumentError("cannot generate from an empty prompt");
    }
    lengths.push_back(prompt.size());
  }
  std::vector<std::vector<int64_t>> generated(prompts.size());
  if (max_new_tokens <= 0) return generated;
  const std::vector<size_t> order = LongestFirst(lengths);
  RETURN_IF_ERROR(CallTorch("batched generation", [&] {
    torch::NoGradGuard no_grad;
    const at::Device device = model.device();
    const auto longs = torch::TensorOptions().dtype(at::kLong);
    for (size_t begin = 0; begin < order.size(); begin += batch_size) {
      // `active[r]`: the prompt that row r of the batch tensors decodes.
      std::vector<size_t> active(
          order.begin() + begin,
          order.begin() + std::min(order.size(), begin + batch_size));
      const int64_t width = static_cast<int64_t>(lengths[active[0]]);
      const int64_t rows = static_cast<int64_t>(active.size());
      at::Tensor input = torch::full({rows, width}, pad_id, longs);
      at::Tensor mask = torch::zeros({rows, width}, longs);
      for (int64_t r = 0; r < rows; ++r) {
        const std::vector<int64_t>& prompt = prompts[active[r]];
        const int64_t offset = width - static_cast<int64_t>(prompt.size());
        input[r]
            .narrow(0, offset, prompt.size())
            .copy_(torch::tensor(prompt, longs));
        mask[r].narrow(0, offset, prompt.size()).fill_(1);
      }
      input = input.to(device);
      mask = mask.to(device);
      KvCache cache;
      at::Tensor hidden =
          model.ForwardHidden(input, mask, &cache, PositionIdsFromMask(mask));
      at::Tensor next = model.Logits(hidden.select(1, width - 1)).argmax(-1);
      for (int64_t step = 1;; ++step) {
        const at::Tensor tokens = next.cpu().contiguous();
        std::vector<int64_t> keep;
        for (int64_t r = 0; r < static_cast<int64_t>(active.size()); ++r) {
          const int64_t token = tokens.data_ptr<int64_t>()[r];
          generated[active[r]].push_back(token);
          const bool stopped = std::find(stop_ids.begin(), stop_ids.end(),
                                         token) != stop_ids.end();
          if (!stopped && step < max_new_tokens) keep.push_back(r);
        }
        if (keep.empty()) break;
        if (keep.size() < active.size()) {
          const at::Tensor index = torch::tensor(keep, longs).to(device);
          for (size_t layer = 0; layer < cache.keys.size(); ++layer) {
            cache.keys[layer] = cache.keys[layer].index_select(0, index);
            cache.values[layer] = cache.values[layer].index_select(0, index);
          }
          mask = mask.index_select(0, index);
          next = next.index_select(0, index);
          std::vector<size_t> still_active;
          for (int64_t r : keep) still_active.push_back(active[r]);
          active = std::move(still_active);
        }
        mask = torch::cat(
            {mask, torch::ones({mask.size(0), 1}, mask.options())}, 1);
        const at::Tensor positions = mask.sum(-1, /*keepdim=*/true) - 1;
        hidden =
            model.ForwardHidden(next.unsqueeze(1), mask, &cache, positions);
        next = model.Logits(hidden.select(1, 0)).argmax(-1);
      }
    }
  }));
  return generated;
}

TofuEvaluator::TofuEvaluator(LlamaForCausalLM& model,
                             const Tokenizer& tokenizer,
                             PromptTemplate prompt_template,
                             TofuEvalOptions options)
    : model_(model),
      tokenizer_(tokenizer),
      prompt_template_(std::move(prompt_template)),
      options_(std::move(options)) {}

absl::StatusOr<TofuEvalResult> TofuEvaluator::Evaluate(
    const TofuEvalData& data, const nlohmann::ordered_json* retain_log) {
  if (options_.batch_size < 1) {
    return absl::InvalidArgumentError("the batch size must be at least 1");
  }
  if (options_.max_new_tokens < 0) {
    return absl::InvalidArgumentError("max_new_tokens must not be negative");
  }
  if (!(options_.min_k_fraction > 0 && options_.min_k_fraction <= 1)) {
    return absl::InvalidArgumentError("min_k_fraction must be in (0, 1]");
  }
  const TofuEvalSharding& sharding = options_.sharding;
  if (sharding.world_size < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "sharding.world_size must be at least 1, got ", sharding.world_size));
  }
  if (sharding.rank < 0 || sharding.rank >= sharding.world_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("sharding.rank ", sharding.rank, " is outside [0, ",
                     sharding.world_size, ")"));
  }
  if (sharding.world_size > 1 && !sharding.all_gather) {
    return absl::InvalidArgumentError(
        "sharding.all_gather must be set when sharding.world_size > 1");
  }
  const auto start = std::chrono::steady_clock::now();
  auto progress = [&](const std::string& line) {
    if (!options_.progress) return;
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
            .count();
    options_.progress(absl::StrFormat("[%6.1fs] %s", seconds, line));
  };
  const int pad_id =
      tokenizer_.pad_id() >= 0 ? tokenizer_.pad_id() : tokenizer_.eos_id();

  // Tokenize every (question, answer) pair once.
  ExamplePool detailed_pool, pool;
  auto add_rows =
      [&](ExamplePool& target, const std::vector<TofuRecord>& records,
          const std::function<std::vector<std::string>(const TofuRecord&)>&
              answers_of) -> absl::StatusOr<AnswerRows> {
    AnswerRows rows;
    for (const TofuRecord& record : records) {
      std::vector<QaExample> examples;
      for (const std::string& answer : answers_of(record)) {
        ASSIGN_OR_RETURN(
            QaExample example,
            TokenizeQa(tokenizer_, prompt_template_, record.question, answer,
                       options_.max_length));
        examples.push_back(std::move(example));
      }
      const size_t first = target.Add(std::move(examples));
      rows.rows.emplace_back();
      for (size_t i = first; i < target.examples().size(); ++i) {
        rows.rows.back().push_back(i);
      }
    }
    return rows;
  };
  auto answer = [](const TofuRecord& r) {
    return std::vector<std::string>{r.answer};
  };
  auto paraphrased = [](const TofuRecord& r) {
    return std::vector<std::string>{*r.paraphrased_answer};
  };
  auto perturbed = [](const TofuRecord& r) { return r.perturbed_answers; };

  ASSIGN_OR_RETURN(AnswerRows forget_qa,
                   add_rows(detailed_pool, data.forget, answer));
  ASSIGN_OR_RETURN(AnswerRows holdout_qa,
                   add_rows(detailed_pool, data.holdout, answer));
  ASSIGN_OR_RETURN(AnswerRows forget_para,
                   add_rows(pool, data.forget, paraphrased));
  ASSIGN_OR_RETURN(AnswerRows forget_pert,
                   add_rows(pool, data.forget, perturbed));
  ASSIGN_OR_RETURN(AnswerRows retain_qa, add_rows(pool, data.retain, answer));
  ASSIGN_OR_RETURN(AnswerRows retain_para,
                   add_rows(pool, data.retain, paraphrased));
  ASSIGN_OR_RETURN(AnswerRows retain_pert,
                   add_rows(pool, data.retain, perturbed));
  ASSIGN_OR_RETURN(AnswerRows ra_qa, add_rows(pool, data.real_authors, answer));
  ASSIGN_OR_RETURN(AnswerRows ra_pert,
                   add_rows(pool, data.real_authors, perturbed));
  ASSIGN_OR_RETURN(AnswerRows wf_qa, add_rows(pool, data.world_facts, answer));
  ASSIGN_OR_RETURN(AnswerRows wf_pert,
                   add_rows(pool, data.world_facts, perturbed));

  // ROUGE's prompts (one greedy generation per question), with the texts
  // its entries show.
  struct RougeSet {
    std::string metric;
    const std::vector<TofuRecord>* records;
  };
  const std::vector<RougeSet> rouge_sets = {
      {"forget_Q_A_ROUGE", &data.forget},
      {"retain_Q_A_ROUGE", &data.retain},
      {"ra_Q_A_ROUGE", &data.real_authors},
      {"wf_Q_A_ROUGE", &data.world_facts}};
  std::vector<std::vector<int64_t>> prompts;
  std::vector<std::string> inputs, ground_truths;
  for (const RougeSet& set : rouge_sets) {
    for (const TofuRecord& record : *set.records) {
      ASSIGN_OR_RETURN(std::vector<int> prompt,
                       TokenizePrompt(tokenizer_, prompt_template_,
                                      record.question, options_.max_length));
      ASSIGN_OR_RETURN(QaExample full,
                       TokenizeQa(tokenizer_, prompt_template_, record.question,
                                  record.answer, options_.max_length));
      ASSIGN_OR_RETURN(std::string input, DecodeForRouge(tokenizer_, prompt));
      ASSIGN_OR_RETURN(std::string full_text,
                       DecodeForRouge(tokenizer_, full.input_ids));
      ground_truths.push_back(std::string(absl::StripAsciiWhitespace(
          input.empty() ? full_text
                        : absl::StrReplaceAll(full_text, {{input, ""}}))));
      inputs.push_back(std::move(input));
      prompts.emplace_back(prompt.begin(), prompt.end());
    }
  }

  const bool was_training = model_.is_training();
  model_.eval();
  struct RestoreMode {
    LlamaForCausalLM& model;
    bool training;
    ~RestoreMode() { model.train(training); }
  } restore{model_, was_training};

  // The expensive part, on this rank's share of the examples and prompts.
  const EvalValueCounts counts{
      .detailed = detailed_pool.examples().size(),
      .scores = pool.examples().size(),
      .reference = options_.reference_model != nullptr
                       ? detailed_pool.examples().size()
                       : 0,
      .generations = prompts.size()};
  auto how_many = [&](size_t total) {
    if (sharding.world_size == 1) return absl::StrCat(total);
    return absl::StrCat(ShareSize(total, sharding.rank, sharding.world_size),
                        " (this rank's share of ", total, ")");
  };
  const std::vector<QaExample> detailed_share =
      TakeShare(detailed_pool.examples(), sharding);
  EvalValues mine;
  progress(absl::StrCat("scoring ", how_many(counts.detailed),
                        " forget and holdout answers token by token"));
  ASSIGN_OR_RETURN(mine.detailed,
                   ScoreExamples(model_, detailed_share, pad_id,
                                 options_.batch_size, /*detailed=*/true));
  progress(absl::StrCat("scoring ", how_many(counts.scores),
                        " paraphrased, perturbed and other answers"));
  ASSIGN_OR_RETURN(mine.scores,
                   ScoreExamples(model_, TakeShare(pool.examples(), sharding),
                                 pad_id, options_.batch_size,
                                 /*detailed=*/false));
  progress(absl::StrCat("mia_gradnorm: one backward pass per question (",
                        how_many(counts.detailed), ")"));
  ASSIGN_OR_RETURN(mine.gradient_norms, GradientNorms(model_, detailed_share));
  if (options_.reference_model != nullptr) {
    progress(absl::StrCat("mia_reference: scoring ", how_many(counts.reference),
                          " answers with the reference model"));
    LlamaForCausalLM& reference = *options_.reference_model;
    const bool reference_training = reference.is_training();
    reference.eval();
    absl::StatusOr<std::vector<AnswerScore>> reference_scores =
        ScoreExamples(reference, detailed_share, pad_id, options_.batch_size,
                      /*detailed=*/false);
    reference.train(reference_training);
    if (!reference_scores.ok()) return reference_scores.status();
    mine.reference = *std::move(reference_scores);
  }
  const std::vector<int64_t>& stop_ids = model_.config().eos_token_ids;
  const std::vector<std::vector<int64_t>> prompt_share =
      TakeShare(prompts, sharding);
  progress(absl::StrCat("generating ", how_many(counts.generations),
                        " answers (",
                        options_.batched_generation
                            ? absl::StrCat("batches of ", options_.batch_size)
                            : std::string("one at a time"),
                        ", up to ", options_.max_new_tokens, " tokens)"));
  if (options_.batched_generation) {
    ASSIGN_OR_RETURN(
        mine.generations,
        GreedyGenerateBatch(model_, prompt_share, options_.max_new_tokens,
                            stop_ids, pad_id, options_.batch_size));
  } else {
    for (const std::vector<int64_t>& prompt : prompt_share) {
      ASSIGN_OR_RETURN(std::vector<int64_t> tokens,
                       CallTorch("generation", [&] {
                         return GreedyGenerate(
                             model_, prompt, options_.max_new_tokens, stop_ids);
                       }));
      mine.generations.push_back(std::move(tokens));
    }
  }

  // Everything from here on runs on the whole evaluation's values.
  EvalValues values;
  if (sharding.world_size == 1) {
    values = std::move(mine);
  } else {
    progress(absl::StrCat("gathering the shares of ", sharding.world_size,
                          " ranks"));
    ASSIGN_OR_RETURN(values, GatherShares(mine, counts, sharding));
  }
  const std::vector<AnswerScore>& detailed = values.detailed;
  const std::vector<AnswerScore>& scores = values.scores;

  // Membership inference: forget questions are members, holdout ones not.
  const std::vector<AnswerScore> forget_scores = forget_qa.Single(detailed);
  const std::vector<AnswerScore> holdout_scores = holdout_qa.Single(detailed);
  std::map<std::string, Json> metrics;
  auto mia = [&](const std::string& name,
                 const std::function<absl::StatusOr<double>(
                     const AnswerScore&, size_t)>& statistic) -> absl::Status {
    std::vector<double> forget, holdout;
    for (size_t i = 0; i < forget_scores.size(); ++i) {
      ASSIGN_OR_RETURN(double value,
                       statistic(forget_scores[i], forget_qa.rows[i][0]));
      forget.push_back(value);
    }
    for (size_t i = 0; i < holdout_scores.size(); ++i) {
      ASSIGN_OR_RETURN(double value,
                       statistic(holdout_scores[i], holdout_qa.rows[i][0]));
      holdout.push_back(value);
    }
    ASSIGN_OR_RETURN(metrics[name], MiaMetric(name, forget, holdout));
    return absl::OkStatus();
  };
  RETURN_IF_ERROR(mia("mia_loss", [](const AnswerScore& score, size_t) {
    return static_cast<double>(score.avg_loss);
  }));
  RETURN_IF_ERROR(mia(
      "mia_zlib",
      [&](const AnswerScore& score, size_t index) -> absl::StatusOr<double> {
        const QaExample& example = detailed_pool.examples()[index];
        std::vector<int> answer_ids;
        for (int label : example.labels) {
          if (label != kIgnoreIndex) answer_ids.push_back(label);
        }
        ASSIGN_OR_RETURN(std::string text, tokenizer_.Decode(answer_ids));
        ASSIGN_OR_RETURN(size_t compressed, ZlibCompressedSize(text));
        return static_cast<double>(score.avg_loss) / compressed;
      }));
  RETURN_IF_ERROR(mia("mia_min_k", [&](const AnswerScore& score, size_t) {
    return MinKScore(score.token_log_probs, options_.min_k_fraction);
  }));
  RETURN_IF_ERROR(
      mia("mia_min_k_plus_plus", [&](const AnswerScore& score, size_t) {
        return MinKScore(score.standardized_log_probs, options_.min_k_fraction);
      }));

  RETURN_IF_ERROR(mia("mia_gradnorm", [&](const AnswerScore&, size_t index) {
    return values.gradient_norms[index];
  }));

  if (options_.reference_model != nullptr) {
    RETURN_IF_ERROR(
        mia("mia_reference", [&](const AnswerScore& score, size_t index) {
          return static_cast<double>(score.avg_loss) -
                 static_cast<double>(values.reference[index].avg_loss);
        }));
  }

  std::vector<std::optional<double>> exact_memorization;
  std::vector<std::optional<double>> extraction_strength;
  for (const AnswerScore& score : forget_scores) {
    exact_memorization.push_back(score.exact_memorization);
    extraction_strength.push_back(score.extraction_strength);
  }
  metrics["exact_memorization"] = ScoreMetric(exact_memorization);
  metrics["extraction_strength"] = ScoreMetric(extraction_strength);

  // Probabilities and truth ratios.
  metrics["forget_Q_A_Prob"] = ProbabilityMetric(forget_scores);
  metrics["forget_Q_A_PARA_Prob"] =
      ProbabilityMetric(forget_para.Single(scores));
  metrics["forget_Q_A_PERT_Prob"] =
      MultiProbabilityMetric(forget_pert.Multi(scores));
  metrics["forget_truth_ratio"] =
      TruthRatioMetric(forget_para.Single(scores), forget_pert.Multi(scores),
                       TruthRatioAggregate::kCloserToOne);
  metrics["retain_Q_A_Prob"] = ProbabilityMetric(retain_qa.Single(scores));
  metrics["retain_Q_A_PARA_Prob"] =
      ProbabilityMetric(retain_para.Single(scores));
  metrics["retain_Q_A_PERT_Prob"] =
      MultiProbabilityMetric(retain_pert.Multi(scores));
  metrics["retain_Truth_Ratio"] =
      TruthRatioMetric(retain_para.Single(scores), retain_pert.Multi(scores),
                       TruthRatioAggregate::kOneMinus);
  for (const auto& [prefix, qa, pert] :
       {std::make_tuple("ra", &ra_qa, &ra_pert),
        std::make_tuple("wf", &wf_qa, &wf_pert)}) {
    const std::string name = prefix;
    metrics[name + "_Q_A_Prob"] = ProbabilityMetric(qa->Single(scores));
    metrics[name + "_Q_A_PERT_Prob"] =
        MultiProbabilityMetric(pert->Multi(scores));
    metrics[name + "_Q_A_Prob_normalised"] =
        NormalisedProbabilityMetric(qa->Single(scores), pert->Multi(scores));
    metrics[name + "_Truth_Ratio"] =
        TruthRatioMetric(qa->Single(scores), pert->Multi(scores),
                         TruthRatioAggregate::kOneMinus);
  }

  size_t question = 0;
  for (const RougeSet& set : rouge_sets) {
    std::vector<Json> entries;
    std::vector<double> recalls;
    for (size_t i = 0; i < set.records->size(); ++i, ++question) {
      std::vector<int> tokens(values.generations[question].begin(),
                              values.generations[question].end());
      if (!tokens.empty() && std::find(stop_ids.begin(), stop_ids.end(),
                                       tokens.back()) != stop_ids.end()) {
        tokens.pop_back();
      }
      ASSIGN_OR_RETURN(std::string generation,
                       DecodeForRouge(tokenizer_, tokens));
      generation = std::string(absl::StripAsciiWhitespace(generation));
      const RougeScores rouge = ScoreRouge(ground_truths[question], generation);
      recalls.push_back(rouge.rouge_l.recall);
      entries.push_back({{"rouge1_recall", rouge.rouge1.recall},
                         {"rougeL_f1", rouge.rouge_l.fmeasure},
                         {"rougeL_recall", rouge.rouge_l.recall},
                         {"input", inputs[question]},
                         {"ground_truth", ground_truths[question]},
                         {"generation", generation}});
    }
    metrics[set.metric] = Metric(NumpyMean(recalls), entries);
  }

  // The summary metrics, computed from the per-question values.
  for (const char* name : {"forget_quality", "model_utility", "privleak"}) {
    metrics[name] = Json{{"agg_value", nullptr}};
  }
  TofuEvalResult result;
  for (auto& [name, metric] : metrics) {
    result.eval_log[name] = std::move(metric);
  }
  ASSIGN_OR_RETURN(result.summary,
                   SummarizeTofuEval(result.eval_log, retain_log));
  for (const char* name : {"forget_quality", "model_utility", "privleak"}) {
    if (result.summary.contains(name)) {
      result.eval_log[name]["agg_value"] = result.summary[name];
    }
  }
  progress("evaluation done");
  return result;
}

absl::Status WriteTofuEvalFiles(const TofuEvalResult& result,
                                const std::string& dir) {
  std::error_code error;
  std::filesystem::create_directories(dir, error);
  if (error) {
    return absl::PermissionDeniedError(
        absl::StrCat(dir, ": cannot create: ", error.message()));
  }
  auto dump = [](const auto& json) {
    return json.dump(4, ' ', /*ensure_ascii=*/true,
                     nlohmann::json::error_handler_t::replace);
  };
  RETURN_IF_ERROR(
      WriteFileAtomically(dir + "/TOFU_EVAL.json", dump(result.eval_log)));
  return WriteFileAtomically(dir + "/TOFU_SUMMARY.json", dump(result.summary));
}

}  // namespace lethe
