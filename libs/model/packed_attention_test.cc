#include "libs/model/packed_attention.h"

#include <ATen/Parallel.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <optional>
#include <vector>

namespace lethe {
namespace {

// Three rows of width 9: sequences of 4, 3 and 1 positions then 1 of
// padding (id 0); one sequence filling the row; sequences of 2 and 5 then
// padding.
at::Tensor SegmentIds() {
  return torch::tensor({{1, 1, 1, 1, 2, 2, 2, 3, 0},
                        {4, 4, 4, 4, 4, 4, 4, 4, 4},
                        {5, 5, 6, 6, 6, 6, 6, 0, 0}},
                       torch::kLong);
}

// The masked computation, written independently of the kernel: K/V heads
// repeated, scores over the whole row, a block-diagonal causal mask from the
// ids (and a sliding window, when > 0), scores soft-capped (when > 0),
// softmax, weighted sum; [R, W, Hq * d].
at::Tensor MaskedAttention(const at::Tensor& queries, const at::Tensor& keys,
                           const at::Tensor& values,
                           const at::Tensor& segment_ids, double scale,
                           int64_t window = 0, double softcap = 0) {
  const int64_t group = queries.size(1) / keys.size(1);
  const at::Tensor k = keys.repeat_interleave(group, 1);
  const at::Tensor v = values.repeat_interleave(group, 1);
  const int64_t width = queries.size(2);
  const at::Tensor positions = torch::arange(width);
  const at::Tensor causal =
      positions.view({1, width}) <= positions.view({width, 1});
  const at::Tensor same = segment_ids.unsqueeze(2) == segment_ids.unsqueeze(1);
  at::Tensor allowed = (same & causal).unsqueeze(1);  // [R, 1, W, W]
  if (window > 0) {
    allowed = allowed & (positions.view({1, width}) >
                         positions.view({width, 1}) - window);
  }
  at::Tensor scores = torch::matmul(queries, k.transpose(2, 3)).mul(scale);
  if (softcap > 0) scores = torch::tanh(scores / softcap) * softcap;
  scores = scores.masked_fill(allowed.logical_not(),
                              -std::numeric_limits<double>::infinity());
  return torch::matmul(torch::softmax(scores, -1), v)
      .transpose(1, 2)
      .reshape({queries.size(0), width, -1});
}

struct Inputs {
  at::Tensor queries, keys, values;
};

// Random q [3, 4, 9, 5] and k, v [3, 2, 9, 5], as views in the layout the
// model produces ([R, W, H, d] memory, transposed), requiring gradients.
Inputs RandomInputs(at::ScalarType dtype) {
  torch::manual_seed(3);
  auto make = [&](int64_t heads) {
    return torch::randn({3, 9, heads, 5}, torch::dtype(dtype))
        .transpose(1, 2)
        .requires_grad_();
  };
  return {make(4), make(2), make(2)};
}

void ExpectClose(const at::Tensor& actual, const at::Tensor& expected,
                 double tolerance, const char* what) {
  ASSERT_EQ(actual.sizes(), expected.sizes()) << what;
  EXPECT_LE((actual - expected).abs().max().item<double>(),
            tolerance * expected.abs().max().item<double>())
      << what;
}

TEST(PackedSegmentsFromIdsTest, RunsOfEqualIds) {
  const std::optional<std::vector<PackedSegment>> segments =
      PackedSegmentsFromIds(SegmentIds());
  ASSERT_TRUE(segments.has_value());
  const std::vector<std::vector<int64_t>> expected = {
      {0, 0, 4}, {0, 4, 3}, {0, 7, 1}, {0, 8, 1},
      {1, 0, 9}, {2, 0, 2}, {2, 2, 5}, {2, 7, 2}};
  ASSERT_EQ(segments->size(), expected.size());
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ((*segments)[i].row, expected[i][0]) << i;
    EXPECT_EQ((*segments)[i].start, expected[i][1]) << i;
    EXPECT_EQ((*segments)[i].length, expected[i][2]) << i;
  }
}

TEST(PackedSegmentsFromIdsTest, AnIdRecurringInARowNeedsTheMask) {
  EXPECT_FALSE(
      PackedSegmentsFromIds(torch::tensor({{1, 1, 2, 1}}, torch::kLong))
          .has_value());
  // The same id in two rows is two segments.
  EXPECT_TRUE(
      PackedSegmentsFromIds(torch::tensor({{1, 2}, {1, 2}}, torch::kLong))
          .has_value());
}

struct AttentionCase {
  at::ScalarType dtype;
  int64_t window;      // 0: none.
  double softcap = 0;  // 0: none.
};

class PackedCausalAttentionTest : public testing::TestWithParam<AttentionCase> {
};

TEST_P(PackedCausalAttentionTest, EqualsTheMaskedComputationAndItsGradients) {
  const at::ScalarType dtype = GetParam().dtype;
  const int64_t window = GetParam().window;
  const double softcap = GetParam().softcap;
  const double tolerance = dtype == at::kDouble ? 1e-12 : 2e-6;
  ASSERT_TRUE(PackedCausalAttentionSupports(at::kCPU, dtype));
  const Inputs in = RandomInputs(dtype);
  const double scale = 1 / std::sqrt(5.0);
  const at::Tensor expected = MaskedAttention(
      in.queries, in.keys, in.values, SegmentIds(), scale, window, softcap);
  const at::Tensor actual = PackedCausalAttention(
      in.queries, in.keys, in.values, *PackedSegmentsFromIds(SegmentIds()),
      scale, window > 0 ? std::optional<int64_t>(window) : std::nullopt,
      softcap > 0 ? std::optional<double>(softcap) : std::nullopt);
  ExpectClose(actual, expected, tolerance, "output");

  // A scalar weighting every output element differently.
  const at::Tensor weights = torch::randn(expected.sizes(), expected.options());
  const std::vector<at::Tensor> inputs = {in.queries, in.keys, in.values};
  const std::vector<at::Tensor> expected_grads =
      torch::autograd::grad({(expected * weights).sum()}, inputs);
  const std::vector<at::Tensor> grads =
      torch::autograd::grad({(actual * weights).sum()}, inputs);
  ExpectClose(grads[0], expected_grads[0], tolerance, "query gradient");
  ExpectClose(grads[1], expected_grads[1], tolerance, "key gradient");
  ExpectClose(grads[2], expected_grads[2], tolerance, "value gradient");
}

// Windows of 2 and 3 cut into the sequences of 4, 5 and 9 positions; a
// soft-cap of 0.5 bends scores of about unit size.
INSTANTIATE_TEST_SUITE_P(Cases, PackedCausalAttentionTest,
                         testing::Values(AttentionCase{at::kDouble, 0},
                                         AttentionCase{at::kFloat, 0},
                                         AttentionCase{at::kDouble, 2},
                                         AttentionCase{at::kFloat, 3},
                                         AttentionCase{at::kDouble, 2, 0.5},
                                         AttentionCase{at::kFloat, 0, 0.5}));

// A window or a soft-cap changes the result (a check that the equality
// above can fail), a window as long as the longest sequence changes
// nothing, and a window or soft-cap of 0 is refused.
TEST(PackedCausalAttentionWindowTest, WindowsMatter) {
  const Inputs in = RandomInputs(at::kDouble);
  const std::vector<PackedSegment> segments =
      *PackedSegmentsFromIds(SegmentIds());
  torch::NoGradGuard no_grad;
  const at::Tensor full =
      PackedCausalAttention(in.queries, in.keys, in.values, segments, 0.5);
  const at::Tensor windowed =
      PackedCausalAttention(in.queries, in.keys, in.values, segments, 0.5, 2);
  EXPECT_GT((windowed - full).abs().max().item<double>(), 1e-3);
  EXPECT_TRUE(torch::equal(
      PackedCausalAttention(in.queries, in.keys, in.values, segments, 0.5, 9),
      full));
  const at::Tensor capped = PackedCausalAttention(
      in.queries, in.keys, in.values, segments, 0.5, std::nullopt, 0.5);
  EXPECT_GT((capped - full).abs().max().item<double>(), 1e-3);
  EXPECT_THROW(
      PackedCausalAttention(in.queries, in.keys, in.values, segments, 0.5, 0),
      c10::Error);
  EXPECT_THROW(PackedCausalAttention(in.queries, in.keys, in.values, segments,
                                     0.5, std::nullopt, 0.0),
               c10::Error);
}

// Each block is computed by one thread, whichever: the result does not
// depend on the thread count (bit for bit), which exact resume relies on.
TEST(PackedCausalAttentionThreadsTest, SameBitsOnOneAndTwoThreads) {
  const Inputs in = RandomInputs(at::kFloat);
  const std::vector<PackedSegment> segments =
      *PackedSegmentsFromIds(SegmentIds());
  const int previous = at::get_num_threads();
  std::vector<at::Tensor> results;
  for (int threads : {1, 2}) {
    at::set_num_threads(threads);
    const at::Tensor output =
        PackedCausalAttention(in.queries, in.keys, in.values, segments, 0.5);
    std::vector<at::Tensor> grads = torch::autograd::grad(
        {output.pow(2).sum()}, {in.queries, in.keys, in.values});
    grads.push_back(output);
    results.insert(results.end(), grads.begin(), grads.end());
  }
  at::set_num_threads(previous);
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_TRUE(torch::equal(results[i], results[i + 4])) << i;
  }
}

// The masked computation differs when the segments differ (a check that the
// equality above can fail): one segment per row lets sequences see their
// row neighbours.
TEST(PackedCausalAttentionSegmentsTest, SegmentsMatter) {
  const Inputs in = RandomInputs(at::kDouble);
  const at::Tensor whole_rows = torch::ones({3, 9}, torch::kLong);
  const at::Tensor apart =
      PackedCausalAttention(in.queries, in.keys, in.values,
                            *PackedSegmentsFromIds(SegmentIds()), 0.5);
  const at::Tensor together = PackedCausalAttention(
      in.queries, in.keys, in.values, *PackedSegmentsFromIds(whole_rows), 0.5);
  EXPECT_GT((apart - together).abs().max().item<double>(), 1e-3);
  ExpectClose(together,
              MaskedAttention(in.queries, in.keys, in.values, whole_rows, 0.5),
              1e-12, "whole rows");
}

TEST(PackedCausalAttentionErrorsTest, RefusesDoubleBackward) {
  const Inputs in = RandomInputs(at::kDouble);
  const at::Tensor output =
      PackedCausalAttention(in.queries, in.keys, in.values,
                            *PackedSegmentsFromIds(SegmentIds()), 0.5);
  EXPECT_THROW(torch::autograd::grad({output.sum()}, {in.queries},
                                     /*grad_outputs=*/{},
                                     /*retain_graph=*/true,
                                     /*create_graph=*/true),
               c10::Error);
}

TEST(PackedCausalAttentionErrorsTest, RefusesSegmentsThatDoNotCoverTheRows) {
  const Inputs in = RandomInputs(at::kDouble);
  std::vector<PackedSegment> segments = *PackedSegmentsFromIds(SegmentIds());
  std::vector<PackedSegment> gap = segments;
  gap[1].start += 1;  // A position of row 0 in no segment.
  EXPECT_THROW(PackedCausalAttention(in.queries, in.keys, in.values, gap, 0.5),
               c10::Error);
  std::vector<PackedSegment> short_cover(segments.begin(), segments.end() - 1);
  EXPECT_THROW(
      PackedCausalAttention(in.queries, in.keys, in.values, short_cover, 0.5),
      c10::Error);
}

TEST(PackedCausalAttentionErrorsTest, RefusesOtherDtypesAndShapes) {
  EXPECT_FALSE(PackedCausalAttentionSupports(at::kCPU, at::kBFloat16));
  EXPECT_FALSE(PackedCausalAttentionSupports(at::kCPU, at::kHalf));
  const Inputs in = RandomInputs(at::kFloat);
  const std::vector<PackedSegment> segments =
      *PackedSegmentsFromIds(SegmentIds());
  EXPECT_THROW(PackedCausalAttention(
                   in.queries.to(at::kBFloat16), in.keys.to(at::kBFloat16),
                   in.values.to(at::kBFloat16), segments, 0.5),
               c10::Error);
  // Three query heads cannot share two K/V heads.
  EXPECT_THROW(PackedCausalAttention(in.queries.narrow(1, 0, 3), in.keys,
                                     in.values, segments, 0.5),
               c10::Error);
}

}  // namespace
}  // namespace lethe
