#include "libs/model/activation_checkpoint.h"

#include <torch/autograd.h>
#include <torch/torch.h>

#include <vector>

#include "gtest/gtest.h"

namespace lethe {
namespace {

// y = sin(x * w) @ v, the loss sum(y * probe): small enough for a closed
// form, large enough to have an intermediate.
struct Problem {
  at::Tensor x, w, v, probe;
  Problem() {
    torch::manual_seed(3);
    const auto options = torch::TensorOptions().dtype(at::kDouble);
    x = torch::randn({4, 5}, options).requires_grad_();
    w = torch::randn({5}, options).requires_grad_();
    v = torch::randn({5, 3}, options).requires_grad_();
    probe = torch::randn({4, 3}, options);
  }
  at::Tensor Function(const at::Tensor& input) const {
    return torch::matmul(torch::sin(input * w), v);
  }
};

TEST(ActivationCheckpointTest, OutputAndGradientsEqualThePlainCallBitwise) {
  Problem plain, checkpointed;
  at::Tensor y_plain = plain.Function(plain.x);
  (y_plain * plain.probe).sum().backward();

  int calls = 0;
  at::Tensor y_checkpointed = CheckpointedCall(
      [&](const at::Tensor& input) {
        ++calls;
        return checkpointed.Function(input);
      },
      checkpointed.x, {checkpointed.w, checkpointed.v});
  EXPECT_EQ(calls, 1);
  EXPECT_TRUE(torch::equal(y_plain, y_checkpointed));
  (y_checkpointed * checkpointed.probe).sum().backward();
  EXPECT_EQ(calls, 2);  // Recomputed once in the backward pass.
  EXPECT_TRUE(torch::equal(plain.x.grad(), checkpointed.x.grad()));
  EXPECT_TRUE(torch::equal(plain.w.grad(), checkpointed.w.grad()));
  EXPECT_TRUE(torch::equal(plain.v.grad(), checkpointed.v.grad()));
}

TEST(ActivationCheckpointTest, GradientsMatchTheClosedForm) {
  Problem p;
  at::Tensor y = CheckpointedCall(
      [&](const at::Tensor& input) { return p.Function(input); }, p.x,
      {p.w, p.v});
  (y * p.probe).sum().backward();
  torch::NoGradGuard no_grad;
  // L = sum_ik probe_ik sum_j sin(x_ij w_j) v_jk; G = probe v^T.
  const at::Tensor g = torch::matmul(p.probe, p.v.t());
  const at::Tensor c = torch::cos(p.x * p.w);
  EXPECT_TRUE(torch::allclose(p.x.grad(), g * c * p.w, 1e-12, 1e-12));
  EXPECT_TRUE(torch::allclose(p.w.grad(), (g * c * p.x).sum(0), 1e-12, 1e-12));
  EXPECT_TRUE(torch::allclose(p.v.grad(),
                              torch::matmul(torch::sin(p.x * p.w).t(), p.probe),
                              1e-12, 1e-12));
}

TEST(ActivationCheckpointTest, ParametersGetGradientsWhenTheInputNeedsNone) {
  Problem p;
  const at::Tensor input = p.x.detach();
  at::Tensor y = CheckpointedCall(
      [&](const at::Tensor& h) { return p.Function(h); }, input, {p.w, p.v});
  ASSERT_TRUE(y.requires_grad());
  (y * p.probe).sum().backward();
  EXPECT_TRUE(p.w.grad().defined());
  EXPECT_TRUE(p.v.grad().defined());
  EXPECT_FALSE(input.grad().defined());
}

TEST(ActivationCheckpointTest, AutogradGradReturnsParameterGradients) {
  Problem plain, checkpointed;
  const at::Tensor loss_plain = (plain.Function(plain.x) * plain.probe).sum();
  const auto expected = torch::autograd::grad({loss_plain}, {plain.w});
  at::Tensor y = CheckpointedCall(
      [&](const at::Tensor& h) { return checkpointed.Function(h); },
      checkpointed.x, {checkpointed.w, checkpointed.v});
  const auto actual =
      torch::autograd::grad({(y * checkpointed.probe).sum()}, {checkpointed.w});
  EXPECT_TRUE(torch::equal(expected[0], actual[0]));
  EXPECT_FALSE(checkpointed.w.grad().defined());  // Returned, not stored.
}

TEST(ActivationCheckpointTest, DropoutDrawsTheSameMasksAndLeavesTheRngAsIs) {
  Problem plain, checkpointed;
  auto dropped = [](const Problem& p, const at::Tensor& input) {
    return torch::dropout(p.Function(input), 0.5, /*train=*/true);
  };
  torch::manual_seed(11);
  at::Tensor y_plain = dropped(plain, plain.x);
  (y_plain * plain.probe).sum().backward();
  const at::Tensor next_plain = torch::rand({3});

  torch::manual_seed(11);
  at::Tensor y_checkpointed = CheckpointedCall(
      [&](const at::Tensor& h) { return dropped(checkpointed, h); },
      checkpointed.x, {checkpointed.w, checkpointed.v});
  (y_checkpointed * checkpointed.probe).sum().backward();
  const at::Tensor next_checkpointed = torch::rand({3});

  EXPECT_TRUE(torch::equal(y_plain, y_checkpointed));
  EXPECT_TRUE(torch::equal(plain.w.grad(), checkpointed.w.grad()));
  EXPECT_TRUE(torch::equal(plain.x.grad(), checkpointed.x.grad()));
  // The recomputation consumed no random numbers.
  EXPECT_TRUE(torch::equal(next_plain, next_checkpointed));
}

TEST(ActivationCheckpointTest, DoubleBackwardThrows) {
  Problem p;
  at::Tensor y = CheckpointedCall(
      [&](const at::Tensor& h) { return p.Function(h); }, p.x, {p.w, p.v});
  EXPECT_THROW(torch::autograd::grad({(y * p.probe).sum()}, {p.w},
                                     /*grad_outputs=*/{},
                                     /*retain_graph=*/true,
                                     /*create_graph=*/true),
               c10::Error);
}

TEST(ActivationCheckpointTest, WithoutGradModeItIsAPlainCall) {
  Problem p;
  torch::NoGradGuard no_grad;
  int calls = 0;
  at::Tensor y = CheckpointedCall(
      [&](const at::Tensor& h) {
        ++calls;
        return p.Function(h);
      },
      p.x, {p.w, p.v});
  EXPECT_EQ(calls, 1);
  EXPECT_FALSE(y.requires_grad());
}

}  // namespace
}  // namespace lethe
