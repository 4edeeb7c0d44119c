// Deterministic shuffling and data-parallel sharding of example indices.
//
//   std::vector<int64_t> order = EpochPermutation(dataset_size, seed, epoch);
//   std::vector<int64_t> mine = RankShard(order, rank, world_size);
//
// The permutation depends only on (size, seed, epoch), through the
// project's own generator (SplitMix64 and Fisher-Yates), so it is identical
// on every machine, compiler and LibTorch version. Rank r of N takes
// positions r, r+N, r+2N, ... of it; when N does not divide the size, the
// permutation is extended by wrapping around to its start, so every rank
// gets ceil(size/N) indices and runs the same number of steps.
//
// LengthGroupedPermutation reorders an epoch's permutation so that examples
// of similar length share a batch, which cuts the padding of batches padded
// to their longest example. The grouping is local (windows of a few
// batches): which examples meet still changes from epoch to epoch, and every
// epoch visits each example once.
#ifndef LETHE_LIBS_DATA_SHARDING_H_
#define LETHE_LIBS_DATA_SHARDING_H_

#include <cstdint>
#include <vector>

namespace lethe {

// A pseudo-random permutation of [0, size).
std::vector<int64_t> EpochPermutation(int64_t size, uint64_t seed,
                                      int64_t epoch);

// EpochPermutation(lengths.size(), seed, epoch), cut into windows of
// `window_batches` x `batch_examples` positions; each window is sorted by
// length (longest first, ties in permutation order) and its whole batches
// of `batch_examples` positions are then shuffled (a trailing partial batch
// stays last). With RankShard over N ranks, pass batch_examples = per-rank
// batch x N: each block of that many positions becomes one batch on every
// rank. Requires batch_examples > 0 and window_batches > 0.
std::vector<int64_t> LengthGroupedPermutation(
    const std::vector<int64_t>& lengths, uint64_t seed, int64_t epoch,
    int64_t batch_examples, int64_t window_batches);

// This rank's indices; empty only when `order` is. Requires
// 0 <= rank < world_size.
std::vector<int64_t> RankShard(const std::vector<int64_t>& order, int rank,
                               int world_size);

// SplitMix64: a small, fast, well-mixed 64-bit generator, deterministic
// everywhere.
class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}
  uint64_t Next();
  // Uniform in [0, bound) without modulo bias; bound > 0.
  uint64_t Below(uint64_t bound);

 private:
  uint64_t state_;
};

}  // namespace lethe

#endif  // LETHE_LIBS_DATA_SHARDING_H_
