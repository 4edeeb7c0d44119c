#include "libs/dist/gradient_ready_hooks.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <vector>

namespace lethe {
namespace {

// y = sum(c * (b * a)): a backward pass accumulates c's gradient before
// reaching b * a, whose two gradients come next (in either order).
TEST(GradientReadyHooksTest, ReportsEachAccumulatedGradientOnceAsItArrives) {
  const at::Tensor a = torch::ones({3}, torch::requires_grad());
  const at::Tensor b = torch::full({3}, 2.0, torch::requires_grad());
  const at::Tensor c = torch::full({3}, 3.0, torch::requires_grad());
  const at::Tensor unused = torch::ones({3}, torch::requires_grad());
  std::vector<size_t> ready;
  absl::StatusOr<std::unique_ptr<GradientReadyHooks>> hooks =
      GradientReadyHooks::Install({a, b, c, unused},
                                  [&](size_t i) { ready.push_back(i); });
  ASSERT_TRUE(hooks.ok()) << hooks.status();
  ASSERT_EQ((*hooks)->accumulators().size(), 4u);

  (c * (b * a)).sum().backward();
  ASSERT_EQ(ready.size(), 3u);
  EXPECT_EQ(ready[0], 2u);
  std::sort(ready.begin() + 1, ready.end());
  EXPECT_EQ(ready, (std::vector<size_t>{2, 0, 1}));
  // The hook runs after the gradient is in .grad.
  EXPECT_TRUE(torch::equal(a.grad(), torch::full({3}, 6.0)));

  // torch::autograd::grad accumulates nothing: nothing is reported.
  ready.clear();
  torch::autograd::grad({(b * a).sum()}, {a});
  EXPECT_TRUE(ready.empty());

  // Removed with the object.
  hooks->reset();
  (c * (b * a)).sum().backward();
  EXPECT_TRUE(ready.empty());
  EXPECT_TRUE(torch::autograd::impl::grad_accumulator(a)->post_hooks().empty());
}

TEST(GradientReadyHooksTest, RefusesTensorsWithoutAnAccumulator) {
  const at::Tensor leaf = torch::ones({2}, torch::requires_grad());
  const at::Tensor frozen = torch::ones({2});
  absl::StatusOr<std::unique_ptr<GradientReadyHooks>> hooks =
      GradientReadyHooks::Install({leaf, frozen}, [](size_t) {});
  EXPECT_EQ(hooks.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(hooks.status().message().find("parameter 1"), std::string::npos)
      << hooks.status();
  hooks = GradientReadyHooks::Install({leaf * 2}, [](size_t) {});
  EXPECT_EQ(hooks.status().code(), absl::StatusCode::kInvalidArgument);
  // Nothing was installed on the leaf by the refused call.
  EXPECT_TRUE(
      torch::autograd::impl::grad_accumulator(leaf)->post_hooks().empty());
}

}  // namespace
}  // namespace lethe
