#include "libs/eval/eval_share_format.h"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "gtest/gtest.h"

namespace lethe {
namespace {

AnswerScore Score(float base, bool detailed) {
  AnswerScore score;
  score.avg_loss = base;
  score.prob = std::exp(-base);
  if (detailed) {
    score.token_log_probs = {-base, -2 * base};
    score.standardized_log_probs = {base / 3};
    score.exact_memorization = base / 10;
    score.extraction_strength = 1 - base / 10;
  }
  return score;
}

// A whole evaluation's values: 5 detailed scores (and gradient norms and
// reference scores), 7 other scores, 4 generations.
EvalValues WholeEvaluation() {
  EvalValues values;
  for (int i = 0; i < 5; ++i) {
    values.detailed.push_back(Score(1.5f + i, /*detailed=*/true));
    values.gradient_norms.push_back(0.25 * i);
    values.reference.push_back(Score(2.5f + i, /*detailed=*/false));
  }
  for (int i = 0; i < 7; ++i) {
    values.scores.push_back(Score(0.5f + i, /*detailed=*/false));
  }
  for (int i = 0; i < 4; ++i) {
    values.generations.push_back(std::vector<int64_t>(i, 100 + i));
  }
  return values;
}

EvalValueCounts CountsOf(const EvalValues& values) {
  return {values.detailed.size(), values.scores.size(), values.reference.size(),
          values.generations.size()};
}

EvalValues ShareOf(const EvalValues& all, int rank, int world_size) {
  return {TakeShare(all.detailed, rank, world_size),
          TakeShare(all.scores, rank, world_size),
          TakeShare(all.gradient_norms, rank, world_size),
          TakeShare(all.reference, rank, world_size),
          TakeShare(all.generations, rank, world_size)};
}

TEST(EvalShareFormatTest, PinsTheBytes) {
  EvalValues values;
  AnswerScore score;
  score.avg_loss = 1.0f;
  score.prob = 0.5f;
  score.token_log_probs = {-2.0f};
  score.extraction_strength = 0.25;
  values.scores.push_back(score);
  values.generations.push_back({-1});
  const std::string zero_count(8, '\0');
  const std::string one_count = std::string("\x01", 1) + std::string(7, '\0');
  const std::string expected =
      "LTS1" + zero_count +                                 // detailed
      one_count +                                           // scores
      std::string("\x00\x00\x80\x3F", 4) +                  // avg_loss 1
      std::string("\x00\x00\x00\x3F", 4) +                  // prob 0.5
      one_count + std::string("\x00\x00\x00\xC0", 4) +      // {-2}
      zero_count +                                          // {}
      std::string("\x00", 1) +                              // no exact_mem.
      std::string("\x00\x00\x00\x00\x00\x00\xD0\x3F", 8) +  // 0.25
      zero_count +                                          // gradient norms
      zero_count +                                          // reference
      one_count + one_count + std::string(8, '\xFF');       // {{-1}}
  EXPECT_EQ(EncodeEvalShare(values), expected);
}

TEST(EvalShareFormatTest, RoundTripsBitForBit) {
  EvalValues values = WholeEvaluation();
  values.detailed[0].avg_loss = -0.0f;
  values.detailed[0].prob = std::numeric_limits<float>::quiet_NaN();
  values.detailed[1].token_log_probs = {
      -std::numeric_limits<float>::infinity(),
      std::numeric_limits<float>::denorm_min()};
  values.detailed[2].exact_memorization.reset();
  values.gradient_norms[3] = std::numeric_limits<double>::min();
  values.generations[2] = {std::numeric_limits<int64_t>::min(), -1, 0,
                           std::numeric_limits<int64_t>::max()};
  const std::string bytes = EncodeEvalShare(values);
  absl::StatusOr<EvalValues> decoded = DecodeEvalShare(bytes);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(EncodeEvalShare(*decoded), bytes);
  uint32_t bits;
  std::memcpy(&bits, &decoded->detailed[0].avg_loss, sizeof(bits));
  EXPECT_EQ(bits, 0x80000000u) << "-0 keeps its sign";
  EXPECT_TRUE(std::isnan(decoded->detailed[0].prob));
  EXPECT_FALSE(decoded->detailed[2].exact_memorization.has_value());
  EXPECT_EQ(decoded->detailed[3].exact_memorization, 0.45f);
  EXPECT_EQ(decoded->generations, values.generations);
  EXPECT_EQ(decoded->gradient_norms, values.gradient_norms);

  absl::StatusOr<EvalValues> empty = DecodeEvalShare(EncodeEvalShare({}));
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_TRUE(empty->detailed.empty());
  EXPECT_TRUE(empty->generations.empty());
}

TEST(EvalShareFormatTest, OtherBytesAreDataLoss) {
  const std::string bytes = EncodeEvalShare(WholeEvaluation());
  for (size_t size = 0; size < bytes.size(); ++size) {
    EXPECT_EQ(DecodeEvalShare(bytes.substr(0, size)).status().code(),
              absl::StatusCode::kDataLoss)
        << "the first " << size << " bytes";
  }
  const absl::Status surplus = DecodeEvalShare(bytes + "x").status();
  EXPECT_EQ(surplus.code(), absl::StatusCode::kDataLoss);
  EXPECT_TRUE(absl::StrContains(surplus.message(), "after its end"));
  std::string other_version = bytes;
  other_version[3] = '2';
  const absl::Status version = DecodeEvalShare(other_version).status();
  EXPECT_EQ(version.code(), absl::StatusCode::kDataLoss);
  EXPECT_TRUE(absl::StrContains(version.message(), "of this version"));
  // A count far beyond the bytes: refused, not allocated.
  EXPECT_EQ(
      DecodeEvalShare("LTS1" + std::string(8, '\xFF') + std::string(64, '\0'))
          .status()
          .code(),
      absl::StatusCode::kDataLoss);
}

TEST(EvalShareFormatTest, SharesPartitionAndPlaceBack) {
  for (int world_size = 1; world_size <= 4; ++world_size) {
    for (size_t total = 0; total <= 9; ++total) {
      std::vector<int> all(total);
      for (size_t i = 0; i < total; ++i) all[i] = static_cast<int>(10 * i);
      std::vector<int> placed(total, -1);
      size_t sum = 0;
      for (int rank = 0; rank < world_size; ++rank) {
        std::vector<int> share = TakeShare(all, rank, world_size);
        ASSERT_EQ(share.size(), ShareSize(total, rank, world_size));
        for (size_t k = 0; k < share.size(); ++k) {
          EXPECT_EQ(share[k], all[rank + k * world_size]);
        }
        sum += share.size();
        PlaceShare(share, rank, world_size, placed);
      }
      EXPECT_EQ(sum, total);
      EXPECT_EQ(placed, all) << total << " items, " << world_size << " ranks";
    }
  }
  const EvalValueCounts share =
      EvalValueCounts{5, 7, 0, 4}.Share(/*rank=*/2, /*world_size=*/3);
  EXPECT_EQ(share.detailed, 1u);
  EXPECT_EQ(share.scores, 2u);
  EXPECT_EQ(share.reference, 0u);
  EXPECT_EQ(share.generations, 1u);
}

class GatherSharesTest : public testing::Test {
 protected:
  static constexpr int kWorldSize = 3;

  void SetUp() override {
    whole_ = WholeEvaluation();
    shares_.clear();
    for (int rank = 0; rank < kWorldSize; ++rank) {
      shares_.push_back(EncodeEvalShare(ShareOf(whole_, rank, kWorldSize)));
    }
  }

  // Gathers as rank `rank`, the peers' bytes being `shares_`.
  absl::StatusOr<EvalValues> Gather(int rank) {
    return GatherShares(ShareOf(whole_, rank, kWorldSize), CountsOf(whole_),
                        kWorldSize,
                        [&](const std::string& mine)
                            -> absl::StatusOr<std::vector<std::string>> {
                          ++calls_;
                          EXPECT_EQ(mine, shares_[rank]);
                          return shares_;
                        });
  }

  EvalValues whole_;
  std::vector<std::string> shares_;
  int calls_ = 0;
};

TEST_F(GatherSharesTest, EveryRankReassemblesTheWholeInOrder) {
  for (int rank = 0; rank < kWorldSize; ++rank) {
    absl::StatusOr<EvalValues> all = Gather(rank);
    ASSERT_TRUE(all.ok()) << all.status();
    EXPECT_EQ(EncodeEvalShare(*all), EncodeEvalShare(whole_)) << rank;
  }
  EXPECT_EQ(calls_, kWorldSize);
}

TEST_F(GatherSharesTest, SharesThatDoNotFitAreErrorsNamingTheRank) {
  shares_.pop_back();
  absl::Status status = Gather(0).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInternal) << status;

  SetUp();
  shares_[1] = "garbage";
  status = Gather(0).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss) << status;
  EXPECT_TRUE(absl::StrContains(status.message(), "share of rank 1"));

  SetUp();
  shares_[2] = shares_[0];  // Rank 0's share is larger than rank 2's.
  status = Gather(1).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
  EXPECT_TRUE(absl::StrContains(status.message(), "share of rank 2 holds"));
}

TEST_F(GatherSharesTest, TheAllGathersErrorIsReturned) {
  const absl::Status status =
      GatherShares(
          ShareOf(whole_, 0, kWorldSize), CountsOf(whole_), kWorldSize,
          [](const std::string&) -> absl::StatusOr<std::vector<std::string>> {
            return absl::DeadlineExceededError("peer gone");
          })
          .status();
  EXPECT_EQ(status, absl::DeadlineExceededError("peer gone"));
}

}  // namespace
}  // namespace lethe
