#include "libs/data/qa_batch.h"

#include "gtest/gtest.h"

namespace lethe {
namespace {

TEST(CollateQaBatchTest, RightPadsIdsMasksAndLabels) {
  QaExample short_example{.input_ids = {1, 5, 6, 2},
                          .labels = {kIgnoreIndex, kIgnoreIndex, 6, 2}};
  QaExample long_example{
      .input_ids = {1, 7, 8, 9, 10, 2},
      .labels = {kIgnoreIndex, kIgnoreIndex, kIgnoreIndex, 9, 10, 2}};
  const QaBatch batch = CollateQaBatch({&short_example, &long_example}, 0);
  EXPECT_TRUE(torch::equal(
      batch.input_ids,
      torch::tensor({{1, 5, 6, 2, 0, 0}, {1, 7, 8, 9, 10, 2}}, at::kLong)));
  EXPECT_TRUE(torch::equal(
      batch.attention_mask,
      torch::tensor({{1, 1, 1, 1, 0, 0}, {1, 1, 1, 1, 1, 1}}, at::kLong)));
  EXPECT_TRUE(
      torch::equal(batch.labels, torch::tensor({{-100, -100, 6, 2, -100, -100},
                                                {-100, -100, -100, 9, 10, 2}},
                                               at::kLong)));
  EXPECT_EQ(batch.real_tokens(), 10);
}

}  // namespace
}  // namespace lethe
