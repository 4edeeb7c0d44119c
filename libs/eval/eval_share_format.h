// How the ranks of a sharded TOFU evaluation (tofu_evaluator.h,
// TofuEvalSharding) exchange what each computed. Rank r of world_size
// computes the items at indices r, r + world_size, ... (TakeShare) of each
// kind of value (EvalValues), encodes its share as bytes (EncodeEvalShare),
// and one all_gather gives every rank every rank's bytes, which GatherShares
// decodes (DecodeEvalShare), checks against the sizes each rank's share must
// have and puts back in their original order (PlaceShare).
//
//   EvalValues mine;
//   ASSIGN_OR_RETURN(mine.scores,
//                    Score(TakeShare(all_examples, rank, world_size)));
//   ...
//   ASSIGN_OR_RETURN(EvalValues all,
//                    GatherShares(mine, counts, world_size, all_gather));
//
// The bytes ("LTS1"): the tag "LTS1", then each vector of EvalValues in
// declaration order as a uint64 count and its items; an AnswerScore is
// avg_loss and prob (float32), token_log_probs and standardized_log_probs
// (each a count and float32s), a byte 1 and a float64 when
// exact_memorization is present (else a byte 0), and extraction_strength
// (float64); a gradient norm is a float64; a generation is a count and int64
// tokens. Integers and IEEE-754 bit patterns are little-endian, so that
// values round-trip bit for bit. Another tag (another version), missing
// bytes or bytes after the end are DATA_LOSS.
#ifndef LETHE_LIBS_EVAL_EVAL_SHARE_FORMAT_H_
#define LETHE_LIBS_EVAL_EVAL_SHARE_FORMAT_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "libs/eval/answer_scoring.h"

namespace lethe {

// The values an evaluation computes per example or prompt, in the order of
// its example pools and prompts (of one rank's share, or of all of them).
struct EvalValues {
  std::vector<AnswerScore> detailed;   // The detailed pool's scores.
  std::vector<AnswerScore> scores;     // The other pool's scores.
  std::vector<double> gradient_norms;  // mia_gradnorm, detailed pool.
  std::vector<AnswerScore> reference;  // Detailed pool; empty without one.
  std::vector<std::vector<int64_t>> generations;  // One per ROUGE prompt.
};

// How many of `total` items TakeShare gives `rank` of `world_size`.
size_t ShareSize(size_t total, int rank, int world_size);

// How many values of each kind a whole evaluation has (gradient norms: one
// per detailed score).
struct EvalValueCounts {
  size_t detailed = 0;
  size_t scores = 0;
  size_t reference = 0;
  size_t generations = 0;

  // The counts of `rank`'s share.
  EvalValueCounts Share(int rank, int world_size) const;
};

// The items of `all` at indices `rank`, `rank` + `world_size`, ...
template <typename T>
std::vector<T> TakeShare(const std::vector<T>& all, int rank, int world_size) {
  std::vector<T> share;
  for (size_t i = rank; i < all.size(); i += world_size) {
    share.push_back(all[i]);
  }
  return share;
}

// Moves `share`, `rank`'s TakeShare of a vector, into its places in `all`
// (which has the whole vector's size).
template <typename T>
void PlaceShare(std::vector<T>& share, int rank, int world_size,
                std::vector<T>& all) {
  for (size_t k = 0; k < share.size(); ++k) {
    all[rank + k * world_size] = std::move(share[k]);
  }
}

// `values` as the bytes described above.
std::string EncodeEvalShare(const EvalValues& values);

// What EncodeEvalShare wrote; DATA_LOSS for other bytes (a count larger than
// the bytes left can hold fails without allocating it).
absl::StatusOr<EvalValues> DecodeEvalShare(absl::string_view bytes);

// Returns every rank's bytes, in rank order, given this rank's.
using AllGatherBytes = std::function<absl::StatusOr<std::vector<std::string>>(
    const std::string& mine)>;

// Exchanges the ranks' shares with one call of `all_gather` and reassembles
// the values of the whole evaluation, `counts` of each kind, in their
// original order. The all_gather's error; INTERNAL when it returns other
// than `world_size` shares; DATA_LOSS (a share that does not decode) or
// FAILED_PRECONDITION (a share of other sizes than `counts` gives its rank),
// each naming the rank.
absl::StatusOr<EvalValues> GatherShares(const EvalValues& mine,
                                        const EvalValueCounts& counts,
                                        int world_size,
                                        const AllGatherBytes& all_gather);

}  // namespace lethe

#endif  // LETHE_LIBS_EVAL_EVAL_SHARE_FORMAT_H_
