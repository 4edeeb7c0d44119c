#include "libs/eval/eval_share_format.h"

#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "libs/status/status_macros.h"

namespace lethe {
namespace {

// Identifies the encoding; a peer running another one is refused.
constexpr char kShareTag[] = "LTS1";

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

}  // namespace

size_t ShareSize(size_t total, int rank, int world_size) {
  const size_t first = static_cast<size_t>(rank);
  return total > first ? (total - first - 1) / world_size + 1 : 0;
}

EvalValueCounts EvalValueCounts::Share(int rank, int world_size) const {
  return {ShareSize(detailed, rank, world_size),
          ShareSize(scores, rank, world_size),
          ShareSize(reference, rank, world_size),
          ShareSize(generations, rank, world_size)};
}

std::string EncodeEvalShare(const EvalValues& values) {
  ShareWriter writer;
  writer.Values(values);
  return writer.Take();
}

absl::StatusOr<EvalValues> DecodeEvalShare(absl::string_view bytes) {
  return ShareReader(bytes).Values();
}

absl::StatusOr<EvalValues> GatherShares(const EvalValues& mine,
                                        const EvalValueCounts& counts,
                                        int world_size,
                                        const AllGatherBytes& all_gather) {
  ASSIGN_OR_RETURN(const std::vector<std::string> shares,
                   all_gather(EncodeEvalShare(mine)));
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
    absl::StatusOr<EvalValues> share = DecodeEvalShare(shares[rank]);
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

}  // namespace lethe
