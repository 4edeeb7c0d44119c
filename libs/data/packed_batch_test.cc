#include "libs/data/packed_batch.h"

#include <vector>

#include "gtest/gtest.h"
#include "libs/data/qa_batch.h"
#include "libs/data/qa_example.h"

namespace lethe {
namespace {

// A sequence of `length` tokens 100 + i, its answer the last `answer` ones.
QaExample Example(int length, int answer, int first_id = 100) {
  QaExample example;
  for (int t = 0; t < length; ++t) {
    example.input_ids.push_back(first_id + t);
    example.labels.push_back(t >= length - answer ? first_id + t
                                                  : kIgnoreIndex);
  }
  return example;
}

QaBatch Collate(const std::vector<QaExample>& examples) {
  std::vector<const QaExample*> pointers;
  for (const QaExample& example : examples) pointers.push_back(&example);
  return CollateQaBatch(pointers, /*pad_id=*/7);
}

std::vector<int64_t> Values(const at::Tensor& tensor) {
  const at::Tensor flat = tensor.contiguous().view({-1});
  return std::vector<int64_t>(flat.data_ptr<int64_t>(),
                              flat.data_ptr<int64_t>() + flat.numel());
}

TEST(PackQaBatchesTest, PacksWholeSequencesIntoBalancedRows) {
  const std::vector<QaExample> examples = {Example(5, 2, 10), Example(3, 1, 20),
                                           Example(2, 0, 30)};
  const QaBatch batch = Collate(examples);
  absl::StatusOr<PackedBatch> packed = PackQaBatches({&batch}, 6, /*pad_id=*/9);
  ASSERT_TRUE(packed.ok()) << packed.status();
  // 10 tokens, rows of 6: two rows, the 5 alone, the 3 and the 2 together.
  EXPECT_EQ(Values(packed->input_ids),
            (std::vector<int64_t>{10, 11, 12, 13, 14, 20, 21, 22, 30, 31}));
  EXPECT_EQ(Values(packed->position_ids),
            (std::vector<int64_t>{0, 1, 2, 3, 4, 0, 1, 2, 0, 1}));
  EXPECT_EQ(Values(packed->segment_ids),
            (std::vector<int64_t>{1, 1, 1, 1, 1, 1, 1, 1, 2, 2}));
  // Answers 13, 14 (predicted from row positions 2, 3) and 22 (from 6).
  EXPECT_EQ(Values(packed->answer_rows), (std::vector<int64_t>{2, 3, 6}));
  EXPECT_EQ(Values(packed->answer_targets), (std::vector<int64_t>{13, 14, 22}));
  EXPECT_EQ(Values(packed->answer_sequence), (std::vector<int64_t>{0, 0, 1}));
  EXPECT_EQ(Values(packed->token_counts), (std::vector<int64_t>{2, 1, 0}));
  EXPECT_EQ(packed->real_tokens, 10);
  EXPECT_EQ(packed->sequence_begin, (std::vector<int64_t>{0, 3}));
  EXPECT_EQ(packed->answer_begin, (std::vector<int64_t>{0, 3}));
}

TEST(PackQaBatchesTest, PadsShortRowsAndListsPartsInOrder) {
  const std::vector<QaExample> first = {Example(4, 2, 10)};
  const std::vector<QaExample> second = {Example(2, 1, 20), Example(3, 3, 30)};
  const QaBatch a = Collate(first), b = Collate(second);
  absl::StatusOr<PackedBatch> packed = PackQaBatches({&a, &b}, 5, 9);
  ASSERT_TRUE(packed.ok()) << packed.status();
  // 9 tokens, rows of 5: [4-seq | pad], [3-seq, 2-seq].
  EXPECT_EQ(Values(packed->input_ids),
            (std::vector<int64_t>{10, 11, 12, 13, 9, 30, 31, 32, 20, 21}));
  EXPECT_EQ(Values(packed->segment_ids),
            (std::vector<int64_t>{1, 1, 1, 1, 0, 2, 2, 2, 1, 1}));
  EXPECT_EQ(packed->sequence_begin, (std::vector<int64_t>{0, 1, 3}));
  // Part 0: 12, 13; part 1: 21 (of sequence 0), then 31, 32 (of sequence 1;
  // position 0's label predicts nothing).
  EXPECT_EQ(packed->answer_begin, (std::vector<int64_t>{0, 2, 5}));
  EXPECT_EQ(Values(packed->answer_targets),
            (std::vector<int64_t>{12, 13, 21, 31, 32}));
  EXPECT_EQ(Values(packed->answer_rows), (std::vector<int64_t>{1, 2, 8, 5, 6}));
  EXPECT_EQ(Values(packed->answer_sequence),
            (std::vector<int64_t>{0, 0, 0, 1, 1}));
  EXPECT_EQ(Values(packed->token_counts), (std::vector<int64_t>{2, 1, 2}));
  EXPECT_EQ(packed->real_tokens, 9);
}

TEST(PackQaBatchesTest, ASequenceLongerThanTheRowGetsItsOwnRow) {
  const std::vector<QaExample> examples = {Example(2, 1, 10), Example(7, 3, 20),
                                           Example(2, 1, 30)};
  const QaBatch batch = Collate(examples);
  absl::StatusOr<PackedBatch> packed = PackQaBatches({&batch}, 4, 9);
  ASSERT_TRUE(packed.ok()) << packed.status();
  ASSERT_EQ(packed->input_ids.sizes(), (std::vector<int64_t>{2, 7}));
  EXPECT_EQ(Values(packed->input_ids[0]),
            (std::vector<int64_t>{20, 21, 22, 23, 24, 25, 26}));
  EXPECT_EQ(Values(packed->input_ids[1]),
            (std::vector<int64_t>{10, 11, 30, 31, 9, 9, 9}));
  EXPECT_EQ(Values(packed->position_ids[1]),
            (std::vector<int64_t>{0, 1, 0, 1, 0, 0, 0}));
}

TEST(PackQaBatchesTest, RejectsBadInput) {
  const std::vector<QaExample> examples = {Example(3, 1)};
  QaBatch batch = Collate(examples);
  EXPECT_EQ(PackQaBatches({&batch}, 0).status().code(),
            absl::StatusCode::kInvalidArgument);
  batch.attention_mask = torch::tensor({{0, 1, 1}}, at::kLong);
  EXPECT_EQ(PackQaBatches({&batch}, 8).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace lethe
