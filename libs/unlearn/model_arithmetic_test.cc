#include "libs/unlearn/model_arithmetic.h"

#include <torch/torch.h>

#include <memory>
#include <string>

#include "gtest/gtest.h"

namespace lethe {
namespace {

// Two parameters of given shapes, filled with `fill(i)` for element i.
struct TwoTensors : torch::nn::Module {
  TwoTensors(at::ScalarType dtype, double offset, int64_t rows = 2) {
    weight =
        register_parameter("weight", torch::arange(rows * 3, torch::kFloat64)
                                         .reshape({rows, 3})
                                         .add(offset)
                                         .to(dtype));
    bias = register_parameter(
        "bias", torch::full({3}, 0.5 * offset, torch::kFloat64).to(dtype));
  }
  at::Tensor weight, bias;
};

TEST(ModelArithmeticTest, MatchesTheFormulaElementByElement) {
  TwoTensors target(at::kDouble, 10), base(at::kDouble, 1),
      forget(at::kDouble, 4), retain(at::kDouble, 2);
  // With offsets D=10, 0=1, 1=4, 2=2 every weight element w becomes
  // (w + 10) - 1.5 ((w + 4) - (w + 1)) + 0.25 ((w + 2) - (w + 1))
  //   = w + 10 - 4.5 + 0.25 = w + 5.75; the bias 0.5 x offset likewise:
  // 5 - 1.5 (2 - 0.5) + 0.25 (1 - 0.5) = 2.875.
  ASSERT_TRUE(ApplyModelStateArithmetic({target, base, forget, retain},
                                        /*alpha=*/1.5, /*beta=*/0.25)
                  .ok());
  EXPECT_TRUE(torch::equal(
      target.weight,
      torch::arange(6, torch::kFloat64).reshape({2, 3}).add(5.75)));
  EXPECT_TRUE(
      torch::equal(target.bias, torch::full({3}, 2.875, torch::kFloat64)));
  // The sources are untouched.
  EXPECT_TRUE(torch::equal(
      forget.weight, torch::arange(6, torch::kFloat64).reshape({2, 3}).add(4)));
  EXPECT_TRUE(torch::equal(
      base.weight, torch::arange(6, torch::kFloat64).reshape({2, 3}).add(1)));
}

TEST(ModelArithmeticTest, ZeroCoefficientsLeaveTheTargetExactly) {
  TwoTensors target(at::kFloat, 0.1), base(at::kFloat, 7),
      forget(at::kFloat, 9), retain(at::kFloat, -3);
  const at::Tensor before = target.weight.clone();
  ASSERT_TRUE(
      ApplyModelStateArithmetic({target, base, forget, retain}, 0, 0).ok());
  EXPECT_TRUE(torch::equal(target.weight, before));
}

TEST(ModelArithmeticTest, Bf16ModelsAreCombinedInFp32AndRoundedOnce) {
  // The result is the formula evaluated in fp32 and rounded to bf16 once;
  // evaluating it step by step in bf16 rounds at every step and gives other
  // values (checked below, so the comparison can tell the two apart).
  torch::manual_seed(3);
  auto random_module = [](at::ScalarType dtype) {
    auto module = std::make_shared<torch::nn::Module>();
    module->register_parameter("w", torch::randn({64, 16}).mul(50).to(dtype));
    return module;
  };
  auto target = random_module(at::kBFloat16),
       base = random_module(at::kBFloat16),
       forget = random_module(at::kBFloat16),
       retain = random_module(at::kBFloat16);
  auto value = [](const std::shared_ptr<torch::nn::Module>& module) {
    return module->named_parameters()["w"].to(at::kFloat);
  };
  const at::Tensor expected =
      (value(target) - 2.0 * (value(forget) - value(base)) +
       1.0 * (value(retain) - value(base)))
          .to(at::kBFloat16);
  auto raw = [](const std::shared_ptr<torch::nn::Module>& module) {
    return module->named_parameters()["w"];
  };
  const at::Tensor stepwise = raw(target) - 2.0 * (raw(forget) - raw(base)) +
                              1.0 * (raw(retain) - raw(base));
  ASSERT_EQ(stepwise.scalar_type(), at::kBFloat16);
  ASSERT_FALSE(torch::equal(stepwise, expected));
  ASSERT_TRUE(
      ApplyModelStateArithmetic({*target, *base, *forget, *retain}, 2.0, 1.0)
          .ok());
  const at::Tensor got = target->named_parameters()["w"];
  EXPECT_EQ(got.scalar_type(), at::kBFloat16);
  EXPECT_TRUE(torch::equal(got, expected));
}

TEST(ModelArithmeticTest, MismatchesNameTheParameterAndChangeNothing) {
  TwoTensors target(at::kFloat, 0), base(at::kFloat, 1), forget(at::kFloat, 2),
      other_shape(at::kFloat, 3, /*rows=*/4);
  const at::Tensor before = target.weight.clone();
  absl::Status status =
      ApplyModelStateArithmetic({target, base, forget, other_shape}, 1, 1);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(status.message().find("theta_2"), std::string::npos) << status;
  EXPECT_NE(status.message().find("\"weight\" is [4, 3]"), std::string::npos)
      << status;
  EXPECT_TRUE(torch::equal(target.weight, before));

  torch::nn::Module missing;
  missing.register_parameter("weight", torch::zeros({2, 3}));
  missing.register_parameter("other", torch::zeros({3}));
  status = ApplyModelStateArithmetic({target, missing, forget, forget}, 1, 1);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(status.message().find("no parameter \"bias\""), std::string::npos)
      << status;
}

TEST(ModelArithmeticTest, CoefficientsMustBeFiniteAndNotNegative) {
  TwoTensors a(at::kFloat, 0), b(at::kFloat, 1);
  for (const auto& [alpha, beta] : {std::pair{-1.0, 1.0},
                                    {1.0, -0.5},
                                    {std::nan(""), 1.0},
                                    {1.0, INFINITY}}) {
    EXPECT_EQ(ApplyModelStateArithmetic({a, b, b, b}, alpha, beta).code(),
              absl::StatusCode::kInvalidArgument)
        << alpha << " " << beta;
  }
}

}  // namespace
}  // namespace lethe
