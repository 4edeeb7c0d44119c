#include "libs/unlearn/msa.h"

#include <torch/torch.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "libs/model/tiny_llama.h"

namespace lethe {
namespace {

constexpr int kVocab = 40;

// Example i: a two-token question and a three-token answer, all from `salt`.
QaExample Example(int i, int salt) {
  QaExample example;
  example.input_ids = {1, 2 + (i + salt) % 30, 3 + (2 * i + salt) % 30,
                       4 + (3 * i + salt) % 30, 5 + (i * i + salt) % 30};
  example.labels = {kIgnoreIndex, kIgnoreIndex, example.input_ids[2],
                    example.input_ids[3], example.input_ids[4]};
  return example;
}

std::shared_ptr<LlamaForCausalLM> Model(uint64_t seed) {
  torch::manual_seed(seed);
  auto model = std::make_shared<LlamaForCausalLM>(TinyLlamaConfig(kVocab));
  model->to(torch::kFloat64);
  return model;
}

TrainingOptions FineTuneOptions() {
  TrainingOptions options;
  options.learning_rate = 1e-2;
  options.num_epochs = 2;
  options.per_device_batch_size = 2;
  options.warmup_epochs = 0;
  options.seed = 5;
  return options;
}

std::map<std::string, at::Tensor> Parameters(LlamaForCausalLM& model) {
  std::map<std::string, at::Tensor> parameters;
  for (const auto& parameter : model.named_parameters()) {
    parameters[parameter.key()] = parameter.value().detach().clone();
  }
  return parameters;
}

struct Fixture {
  UnlearningData data;
  Fixture() {
    for (int i = 0; i < 4; ++i) data.forget.push_back(Example(i, 0));
    for (int i = 0; i < 10; ++i) data.retain.push_back(Example(i, 7));
    data.pad_id = 0;
  }
};

TEST(MsaTest, RetainSubsampleHasTheForgetSetsSizeAndDependsOnTheSeed) {
  Fixture fixture;
  const auto a = MsaRetainSubsample(fixture.data.retain, 4, 1);
  const auto b = MsaRetainSubsample(fixture.data.retain, 4, 2);
  ASSERT_EQ(a.size(), 4u);
  EXPECT_EQ(MsaRetainSubsample(fixture.data.retain, 4, 1)[0].input_ids,
            a[0].input_ids);
  bool differs = false;
  for (size_t i = 0; i < a.size(); ++i) {
    differs = differs || a[i].input_ids != b[i].input_ids;
  }
  EXPECT_TRUE(differs);
  EXPECT_EQ(MsaRetainSubsample(fixture.data.retain, 50, 1).size(), 10u);
}

// The result against the definition, with theta_1 and theta_2 fine-tuned
// separately here.
TEST(MsaTest, EqualsTheArithmeticOfSeparatelyTunedModels) {
  Fixture fixture;
  const auto base = Model(1);
  const auto target = Model(2);
  const auto base_before = Parameters(*base);
  const auto target_before = Parameters(*target);

  auto tune = [&](const std::vector<QaExample>& examples) {
    auto copy = Model(1);  // The same weights as `base`.
    auto result = FinetuneOnQa(*copy, examples, 0, FineTuneOptions());
    EXPECT_TRUE(result.ok()) << result.status();
    return Parameters(*copy);
  };
  const auto theta_1 = tune(fixture.data.forget);
  const auto theta_2 =
      tune(MsaRetainSubsample(fixture.data.retain, 4, FineTuneOptions().seed));

  absl::StatusOr<TrainingSummary> summary = RunModelStateArithmetic(
      *target, fixture.data,
      {.base = base, .alpha = 1.5, .beta = 0.5, .training = FineTuneOptions()});
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_EQ(summary->steps.size(), 8u);  // 2 epochs x 2 batches, two stages.
  EXPECT_EQ(summary->steps.back().step, 8);
  EXPECT_EQ(summary->steps.back().components.at("msa_stage"), 2);

  for (const auto& parameter : target->named_parameters()) {
    const std::string& name = parameter.key();
    const at::Tensor expected =
        target_before.at(name) -
        1.5 * (theta_1.at(name) - base_before.at(name)) +
        0.5 * (theta_2.at(name) - base_before.at(name));
    EXPECT_TRUE(torch::allclose(parameter.value(), expected, 1e-12, 1e-12))
        << name;
  }
  // theta_0 is untouched, and the forget vector is not zero.
  for (const auto& parameter : base->named_parameters()) {
    EXPECT_TRUE(
        torch::equal(parameter.value(), base_before.at(parameter.key())))
        << parameter.key();
  }
  EXPECT_FALSE(torch::equal(theta_1.at("lm_head.weight"),
                            base_before.at("lm_head.weight")));
}

TEST(MsaTest, ARestartedRunRestoresFinishedStagesInsteadOfTraining) {
  Fixture fixture;
  const std::string dir = testing::TempDir() + "/msa_resume";
  std::filesystem::remove_all(dir);
  TrainingOptions options = FineTuneOptions();
  options.checkpoint.dir = dir;
  options.checkpoint.run_identity = {{"test", "msa"}};

  const auto first = Model(2);
  ASSERT_TRUE(RunModelStateArithmetic(*first, fixture.data,
                                      {.base = Model(1), .training = options})
                  .ok());
  EXPECT_TRUE(std::filesystem::exists(dir + "/msa-forget"));
  EXPECT_TRUE(std::filesystem::exists(dir + "/msa-retain"));

  const auto second = Model(2);
  absl::StatusOr<TrainingSummary> again = RunModelStateArithmetic(
      *second, fixture.data, {.base = Model(1), .training = options});
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE(again->steps.empty());
  EXPECT_EQ(again->resumed_from_step, 8);
  for (const auto& parameter : second->named_parameters()) {
    EXPECT_TRUE(torch::equal(parameter.value(),
                             first->named_parameters()[parameter.key()]))
        << parameter.key();
  }
}

TEST(MsaTest, BetaZeroTunesOnlyOnTheForgetSet) {
  Fixture fixture;
  fixture.data.retain.clear();
  const auto target = Model(2);
  absl::StatusOr<TrainingSummary> summary = RunModelStateArithmetic(
      *target, fixture.data,
      {.base = Model(1), .alpha = 1, .beta = 0, .training = FineTuneOptions()});
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_EQ(summary->steps.size(), 4u);

  fixture.data.forget.clear();
  EXPECT_EQ(RunModelStateArithmetic(*target, fixture.data,
                                    {.base = Model(1), .beta = 0})
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace lethe
