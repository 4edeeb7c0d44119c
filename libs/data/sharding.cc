#include "libs/data/sharding.h"

#include <algorithm>
#include <cstddef>
#include <numeric>
#include <utility>

namespace lethe {

uint64_t SplitMix64::Next() {
  uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

uint64_t SplitMix64::Below(uint64_t bound) {
  // Rejection sampling: discard the top sliver that would bias the modulo.
  const uint64_t limit = UINT64_MAX - UINT64_MAX % bound;
  uint64_t value;
  do {
    value = Next();
  } while (value >= limit);
  return value % bound;
}

std::vector<int64_t> EpochPermutation(int64_t size, uint64_t seed,
                                      int64_t epoch) {
  std::vector<int64_t> order(size);
  std::iota(order.begin(), order.end(), 0);
  SplitMix64 random(seed ^
                    (0xd1b54a32d192ed03ULL * static_cast<uint64_t>(epoch + 1)));
  for (int64_t i = size - 1; i > 0; --i) {
    const int64_t j = static_cast<int64_t>(random.Below(i + 1));
    std::swap(order[i], order[j]);
  }
  return order;
}

std::vector<int64_t> LengthGroupedPermutation(
    const std::vector<int64_t>& lengths, uint64_t seed, int64_t epoch,
    int64_t batch_examples, int64_t window_batches) {
  const int64_t size = static_cast<int64_t>(lengths.size());
  std::vector<int64_t> order = EpochPermutation(size, seed, epoch);
  // A generator of its own, so the batch shuffle does not disturb the
  // permutation's stream.
  SplitMix64 random(seed ^
                    (0x8cb92ba72f3d8dd7ULL * static_cast<uint64_t>(epoch + 1)));
  const int64_t window = batch_examples * window_batches;
  for (int64_t start = 0; start < size; start += window) {
    const auto begin = order.begin() + start;
    const auto end = order.begin() + std::min(size, start + window);
    std::stable_sort(begin, end, [&](int64_t a, int64_t b) {
      return lengths[a] > lengths[b];
    });
    const int64_t whole_batches = (end - begin) / batch_examples;
    for (int64_t i = whole_batches - 1; i > 0; --i) {
      const int64_t j = static_cast<int64_t>(random.Below(i + 1));
      if (i != j) {
        std::swap_ranges(begin + i * batch_examples,
                         begin + (i + 1) * batch_examples,
                         begin + j * batch_examples);
      }
    }
  }
  return order;
}

std::vector<int64_t> RankShard(const std::vector<int64_t>& order, int rank,
                               int world_size) {
  std::vector<int64_t> shard;
  if (order.empty()) return shard;
  const size_t per_rank = (order.size() + world_size - 1) / world_size;
  shard.reserve(per_rank);
  for (size_t i = 0; i < per_rank; ++i) {
    shard.push_back(order[(rank + i * world_size) % order.size()]);
  }
  return shard;
}

}  // namespace lethe
