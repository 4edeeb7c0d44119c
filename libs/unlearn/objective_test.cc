#include "libs/unlearn/objective.h"

#include <torch/csrc/autograd/autograd.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "libs/data/qa_batch.h"
#include "libs/loss/sequence_loss.h"
#include "libs/model/lora.h"
#include "libs/model/tiny_llama.h"

namespace lethe {
namespace {

const std::vector<double> kLogProbs = {-3.0, -0.5, -12.0, -7.25};
const std::vector<double> kReference = {-2.0, -4.0, -12.5, -7.25};

at::Tensor Vector(const std::vector<double>& values, bool requires_grad) {
  return at::tensor(values, at::kDouble).set_requires_grad(requires_grad);
}

double Sigmoid(double x) { return 1 / (1 + std::exp(-x)); }

TEST(NpoLossTest, MatchesClosedFormAndPaperWeight) {
  for (double beta : {0.1, 1.0, 2.5}) {
    at::Tensor log_probs = Vector(kLogProbs, true);
    at::Tensor loss = NpoLoss(log_probs, Vector(kReference, false), beta);
    loss.backward();
    double expected = 0;
    const double n = kLogProbs.size();
    for (size_t i = 0; i < kLogProbs.size(); ++i) {
      const double ratio = beta * (kLogProbs[i] - kReference[i]);
      expected += 2 / beta * std::log1p(std::exp(ratio)) / n;
      EXPECT_NEAR(log_probs.grad()[i].item<double>(), 2 * Sigmoid(ratio) / n,
                  1e-12)
          << "beta " << beta << " example " << i;
    }
    EXPECT_NEAR(loss.item<double>(), expected, 1e-12) << beta;
  }
}

TEST(NpoLossTest, GradientTendsToGradientAscentAsBetaVanishes) {
  // GA on mean sequence log-probabilities has gradient 1/B per example.
  at::Tensor log_probs = Vector(kLogProbs, true);
  NpoLoss(log_probs, Vector(kReference, false), 1e-7).backward();
  for (int i = 0; i < 4; ++i) {
    EXPECT_NEAR(log_probs.grad()[i].item<double>(), 0.25, 1e-7);
  }
  at::Tensor sharper = Vector(kLogProbs, true);
  NpoLoss(sharper, Vector(kReference, false), 1.0).backward();
  EXPECT_GT(std::abs(sharper.grad()[1].item<double>() - 0.25), 0.1)
      << "at beta 1 the weight must differ from GA's";
}

TEST(SimNpoLossTest, MatchesClosedForm) {
  const std::vector<double> lengths = {3, 10, 1, 7};
  const double beta = 4.5, delta = 0.3;
  at::Tensor log_probs = Vector(kLogProbs, true);
  at::Tensor loss =
      SimNpoLoss(log_probs, at::tensor({3, 10, 1, 7}), beta, delta);
  loss.backward();
  double expected = 0;
  for (size_t i = 0; i < kLogProbs.size(); ++i) {
    // open-unlearning: -(2/beta) logsigmoid(beta * (nll/|y| - delta)).
    const double x = beta * (-kLogProbs[i] / lengths[i] - delta);
    expected += -2 / beta * std::log(Sigmoid(x)) / 4;
    EXPECT_NEAR(log_probs.grad()[i].item<double>(),
                2 * Sigmoid(-x) / (lengths[i] * 4), 1e-12)
        << i;
  }
  EXPECT_NEAR(loss.item<double>(), expected, 1e-12);
}

TEST(DpoLossTest, MatchesClosedForm) {
  const std::vector<double> win = {-5.0, -1.0, -8.0, -2.0};
  const std::vector<double> win_reference = {-6.0, -1.5, -7.0, -2.0};
  const double beta = 0.1;
  at::Tensor win_log_probs = Vector(win, true);
  at::Tensor lose_log_probs = Vector(kLogProbs, true);
  at::Tensor loss = DpoLoss(win_log_probs, Vector(win_reference, false),
                            lose_log_probs, Vector(kReference, false), beta);
  loss.backward();
  double expected = 0;
  for (int i = 0; i < 4; ++i) {
    const double margin =
        (win[i] - win_reference[i]) - (kLogProbs[i] - kReference[i]);
    expected += -2 / beta * std::log(Sigmoid(beta * margin)) / 4;
    const double weight = 2 * Sigmoid(-beta * margin) / 4;
    EXPECT_NEAR(win_log_probs.grad()[i].item<double>(), -weight, 1e-12);
    EXPECT_NEAR(lose_log_probs.grad()[i].item<double>(), weight, 1e-12);
  }
  EXPECT_NEAR(loss.item<double>(), expected, 1e-12);
}

TEST(RetainKlTest, MatchesAnExplicitSumOverAnswerPositions) {
  torch::manual_seed(3);
  const at::Tensor logits = at::randn({2, 4, 5}, at::kDouble);
  const at::Tensor reference = at::randn({2, 4, 5}, at::kDouble);
  // Labels: positions 1..3 of row 0 and position 3 of row 1 are answers.
  const at::Tensor labels = at::tensor({kIgnoreIndex, 1, 2, 3, kIgnoreIndex,
                                        kIgnoreIndex, kIgnoreIndex, 4},
                                       at::kLong)
                                .view({2, 4});
  double total = 0;
  int counted = 0;
  for (int b = 0; b < 2; ++b) {
    for (int t = 0; t < 3; ++t) {
      if (labels[b][t + 1].item<int64_t>() == kIgnoreIndex) continue;
      const at::Tensor p = at::softmax(reference[b][t], 0);
      const at::Tensor q = at::softmax(logits[b][t], 0);
      for (int v = 0; v < 5; ++v) {
        const double pv = p[v].item<double>();
        total += pv * std::log(pv / q[v].item<double>());
      }
      ++counted;
    }
  }
  EXPECT_EQ(counted, 4);
  EXPECT_NEAR(RetainKl(logits, reference, labels).item<double>(),
              total / counted, 1e-12);
  EXPECT_NEAR(RetainKl(logits, logits, labels).item<double>(), 0, 1e-12);
}

TEST(UnlearningMethodTest, NamesRoundTripAndUnknownNamesAreListed) {
  for (UnlearningMethod method :
       {UnlearningMethod::kGa, UnlearningMethod::kGradDiff,
        UnlearningMethod::kNpo, UnlearningMethod::kNpoRt,
        UnlearningMethod::kNpoKl, UnlearningMethod::kSimNpo,
        UnlearningMethod::kIdkDpo, UnlearningMethod::kLlmu,
        UnlearningMethod::kOfmu, UnlearningMethod::kIhl}) {
    absl::StatusOr<UnlearningMethod> parsed =
        ParseUnlearningMethod(UnlearningMethodName(method));
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(*parsed, method);
  }
  EXPECT_EQ(*ParseUnlearningMethod("npo_rt"), UnlearningMethod::kNpoRt);
  EXPECT_EQ(*ParseUnlearningMethod("ihl"), UnlearningMethod::kIhl);
  EXPECT_EQ(UnlearningMethodName(UnlearningMethod::kIhl), "IHL");
  absl::Status unknown = ParseUnlearningMethod("RMU").status();
  EXPECT_EQ(unknown.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(unknown.message().find("SimNPO"), std::string::npos) << unknown;
}

TEST(ObjectiveParamsTest, RejectsValuesTheMathsCannotUse) {
  ObjectiveParams params = DefaultObjectiveParams(UnlearningMethod::kNpo);
  params.beta = 0;
  absl::Status status = ValidateObjectiveParams(UnlearningMethod::kNpo, params);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("beta"), std::string::npos);
  params = DefaultObjectiveParams(UnlearningMethod::kGradDiff);
  params.alpha = -1;
  EXPECT_NE(ValidateObjectiveParams(UnlearningMethod::kGradDiff, params)
                .message()
                .find("alpha"),
            std::string::npos);
  params = DefaultObjectiveParams(UnlearningMethod::kOfmu);
  params.ofmu_rho_growth = 0.5;
  EXPECT_FALSE(ValidateObjectiveParams(UnlearningMethod::kOfmu, params).ok());
  EXPECT_EQ(DefaultObjectiveParams(UnlearningMethod::kSimNpo).beta, 4.5);
  // IHL: ReGLU's forget_loss + retain_loss.
  EXPECT_EQ(DefaultObjectiveParams(UnlearningMethod::kIhl).gamma, 1.0);
  EXPECT_EQ(DefaultObjectiveParams(UnlearningMethod::kIhl).alpha, 1.0);
  params = DefaultObjectiveParams(UnlearningMethod::kIhl);
  params.gamma = -0.5;
  EXPECT_NE(ValidateObjectiveParams(UnlearningMethod::kIhl, params)
                .message()
                .find("gamma"),
            std::string::npos);
  params = DefaultObjectiveParams(UnlearningMethod::kIhl);
  params.beta = 0;  // Unused by IHL.
  EXPECT_TRUE(ValidateObjectiveParams(UnlearningMethod::kIhl, params).ok());
  const ObjectiveNeeds needs = MethodNeeds(UnlearningMethod::kIhl, params);
  EXPECT_TRUE(needs.retain_batch);
  EXPECT_FALSE(needs.reference_log_probs || needs.reference_model ||
               needs.alternate_answers);
}

// Two examples per batch; answers are the last two tokens.
QaBatch Batch(int offset) {
  std::vector<QaExample> examples;
  for (int i = 0; i < 2; ++i) {
    const int a = 3 + offset + i, b = 10 + offset + 2 * i, c = 20 + i;
    examples.push_back({.input_ids = {1, a, b, c},
                        .labels = {kIgnoreIndex, kIgnoreIndex, b, c}});
  }
  return CollateQaBatch({&examples[0], &examples[1]}, 0);
}

class ObjectiveOnModelTest : public testing::Test {
 protected:
  ObjectiveOnModelTest() {
    torch::manual_seed(7);
    model_ = std::make_shared<LlamaForCausalLM>(LlamaConfigOf({}));
    model_->to(at::kDouble);
    batch_.forget = Batch(0);
    batch_.retain = Batch(5);
    batch_.alternate = Batch(2);
    torch::NoGradGuard no_grad;
    batch_.forget_reference_log_probs = LogProbs(batch_.forget);
    batch_.alternate_reference_log_probs = LogProbs(*batch_.alternate);
  }

  at::Tensor LogProbs(const QaBatch& batch) {
    return SequenceAnswerLogProbs(
               model_->Forward(batch.input_ids, batch.attention_mask),
               batch.labels)
        .summed;
  }

  double Nll(const QaBatch& batch) {
    torch::NoGradGuard no_grad;
    return TokenMeanNll(model_->Forward(batch.input_ids, batch.attention_mask),
                        batch.labels)
        .item<double>();
  }

  MicroBatchLoss Loss(UnlearningMethod method, const ObjectiveParams& params) {
    absl::StatusOr<std::unique_ptr<UnlearningObjective>> objective =
        MakeObjective(method, params, model_);
    EXPECT_TRUE(objective.ok()) << objective.status();
    absl::StatusOr<MicroBatchLoss> loss = (*objective)->Loss(*model_, batch_);
    EXPECT_TRUE(loss.ok()) << loss.status();
    return *loss;
  }

  std::shared_ptr<LlamaForCausalLM> model_;
  UnlearningBatch batch_;
};

TEST_F(ObjectiveOnModelTest, AssemblesTheDocumentedTerms) {
  const double forget_nll = Nll(batch_.forget);
  const double retain_nll = Nll(*batch_.retain);
  const double alternate_nll = Nll(*batch_.alternate);
  ObjectiveParams params;
  params.alpha = 0.7;
  params.gamma = 1.3;
  EXPECT_NEAR(Loss(UnlearningMethod::kGa, params).loss.item<double>(),
              -1.3 * forget_nll, 1e-9);
  EXPECT_NEAR(Loss(UnlearningMethod::kGradDiff, params).loss.item<double>(),
              -1.3 * forget_nll + 0.7 * retain_nll, 1e-9);
  params.retain_loss = RetainLoss::kKl;
  EXPECT_NEAR(Loss(UnlearningMethod::kGradDiff, params).loss.item<double>(),
              -1.3 * forget_nll, 1e-9)
      << "KL to an identical reference is zero";
  // At the reference the NPO ratio is 1: loss (2/beta) log 2, weight 1.
  const MicroBatchLoss npo = Loss(UnlearningMethod::kNpoRt, params);
  EXPECT_NEAR(npo.loss.item<double>(),
              1.3 * 2 / 0.1 * std::log(2.0) + 0.7 * retain_nll, 1e-9);
  EXPECT_NEAR(npo.components.at("npo_weight_mean"), 1.0, 1e-12);
  EXPECT_NEAR(Loss(UnlearningMethod::kIdkDpo, params).loss.item<double>(),
              1.3 * 2 / 0.1 * std::log(2.0) + 0.7 * retain_nll, 1e-9);
  params.random_answer_weight = 0.4;
  EXPECT_NEAR(Loss(UnlearningMethod::kLlmu, params).loss.item<double>(),
              -1.3 * forget_nll + 0.4 * alternate_nll, 1e-9);
}

// IHL of the model's forget answers by a plain loop in double: for every
// answer token y at position t+1, 1 + p(y) - max_{v != y} p(v) with p the
// softmax of the logits at t, clipped at 0; the mean over all answer tokens
// of the batch.
double LoopIhl(const at::Tensor& logits, const at::Tensor& labels) {
  double total = 0;
  int count = 0;
  for (int64_t b = 0; b < logits.size(0); ++b) {
    for (int64_t t = 0; t + 1 < logits.size(1); ++t) {
      const int64_t y = labels[b][t + 1].item<int64_t>();
      if (y == kIgnoreIndex) continue;
      std::vector<double> z;
      for (int64_t v = 0; v < logits.size(2); ++v) {
        z.push_back(logits[b][t][v].item<double>());
      }
      double max = z[0], sum = 0;
      for (double value : z) max = std::max(max, value);
      for (double value : z) sum += std::exp(value - max);
      double other = 0;
      for (size_t v = 0; v < z.size(); ++v) {
        if (static_cast<int64_t>(v) != y) {
          other = std::max(other, std::exp(z[v] - max) / sum);
        }
      }
      total += std::max(0.0, 1 + std::exp(z[y] - max) / sum - other);
      ++count;
    }
  }
  return total / count;
}

TEST_F(ObjectiveOnModelTest, IhlIsTheHingeOfTheForgetAnswersPlusRetainNll) {
  at::Tensor forget_logits;
  {
    torch::NoGradGuard no_grad;
    forget_logits =
        model_->Forward(batch_.forget.input_ids, batch_.forget.attention_mask);
  }
  const double ihl = LoopIhl(forget_logits, batch_.forget.labels);
  const double retain_nll = Nll(*batch_.retain);
  ObjectiveParams params = DefaultObjectiveParams(UnlearningMethod::kIhl);
  params.gamma = 1.3;
  params.alpha = 0.7;
  const MicroBatchLoss loss = Loss(UnlearningMethod::kIhl, params);
  EXPECT_NEAR(loss.loss.item<double>(), 1.3 * ihl + 0.7 * retain_nll, 1e-12);
  EXPECT_NEAR(loss.components.at("forget_ihl"), ihl, 1e-12);
  EXPECT_NEAR(loss.components.at("forget_loss"), ihl, 1e-12);
  EXPECT_NEAR(loss.components.at("retain_nll"), retain_nll, 1e-12);
  EXPECT_EQ(loss.tokens,
            batch_.forget.real_tokens() + batch_.retain->real_tokens());
  params.alpha = 0;
  EXPECT_NEAR(Loss(UnlearningMethod::kIhl, params).loss.item<double>(),
              1.3 * ihl, 1e-12);
}

TEST_F(ObjectiveOnModelTest, RegluDataTermsAreItsForgetTermPlusRetainNll) {
  // ROL is added by MakeRegluObjective (reglu_test); here the forget term
  // (IHL or GD) and the retain NLL with their weights.
  at::Tensor forget_logits;
  {
    torch::NoGradGuard no_grad;
    forget_logits =
        model_->Forward(batch_.forget.input_ids, batch_.forget.attention_mask);
  }
  const double ihl = LoopIhl(forget_logits, batch_.forget.labels);
  const double forget_nll = Nll(batch_.forget);
  const double retain_nll = Nll(*batch_.retain);
  ObjectiveParams params = DefaultObjectiveParams(UnlearningMethod::kReglu);
  EXPECT_EQ(params.reglu_forget_loss, RegluForgetLoss::kIhl);
  EXPECT_EQ(params.gamma, 1.0);
  EXPECT_EQ(params.alpha, 1.0);
  params.gamma = 1.3;
  params.alpha = 0.7;
  for (RegluForgetLoss kind : {RegluForgetLoss::kIhl, RegluForgetLoss::kGd}) {
    params.reglu_forget_loss = kind;
    auto objective = MakeRegluDataObjective(params);
    ASSERT_TRUE(objective.ok()) << objective.status();
    EXPECT_TRUE((*objective)->needs().retain_batch);
    absl::StatusOr<MicroBatchLoss> loss = (*objective)->Loss(*model_, batch_);
    ASSERT_TRUE(loss.ok()) << loss.status();
    const double forget = kind == RegluForgetLoss::kIhl ? ihl : -forget_nll;
    EXPECT_NEAR(loss->loss.item<double>(), 1.3 * forget + 0.7 * retain_nll,
                1e-12)
        << RegluForgetLossName(kind);
    EXPECT_NEAR(loss->components.at("forget_loss"), forget, 1e-12);
    EXPECT_NEAR(loss->components.at("retain_nll"), retain_nll, 1e-12);
  }
  const absl::Status refused =
      MakeObjective(UnlearningMethod::kReglu, params, nullptr).status();
  EXPECT_EQ(refused.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(refused.message().find("MakeRegluObjective"), std::string::npos)
      << refused;
  params.reglu_beta_r = 1.5;
  EXPECT_EQ(MakeRegluDataObjective(params).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(ObjectiveOnModelTest, IhlGradientMatchesFiniteDifferences) {
  // d/dh of the objective at theta + h * d, by central differences, against
  // the autograd gradient's projection on d (every parameter, fp64).
  ObjectiveParams params = DefaultObjectiveParams(UnlearningMethod::kIhl);
  params.alpha = 0.7;
  auto objective = MakeObjective(UnlearningMethod::kIhl, params, nullptr);
  ASSERT_TRUE(objective.ok()) << objective.status();
  std::vector<at::Tensor> parameters = model_->parameters();
  for (at::Tensor& parameter : parameters)
    parameter.mutable_grad() = at::Tensor();
  absl::StatusOr<MicroBatchLoss> loss = (*objective)->Loss(*model_, batch_);
  ASSERT_TRUE(loss.ok()) << loss.status();
  loss->loss.backward();
  torch::manual_seed(11);
  std::vector<at::Tensor> directions;
  double projected = 0;
  for (at::Tensor& parameter : parameters) {
    directions.push_back(at::randn_like(parameter));
    ASSERT_TRUE(parameter.grad().defined());
    projected += (parameter.grad() * directions.back()).sum().item<double>();
  }
  auto shifted_loss = [&](double h) {
    torch::NoGradGuard no_grad;
    for (size_t i = 0; i < parameters.size(); ++i) {
      parameters[i].add_(directions[i], h);
    }
    const double value =
        (*objective)->Loss(*model_, batch_)->loss.item<double>();
    for (size_t i = 0; i < parameters.size(); ++i) {
      parameters[i].sub_(directions[i], h);
    }
    return value;
  };
  const double h = 1e-6;
  const double numeric = (shifted_loss(h) - shifted_loss(-h)) / (2 * h);
  EXPECT_NEAR(projected, numeric, 1e-6 * std::max(1.0, std::abs(numeric)));
  EXPECT_GT(std::abs(projected), 1e-4) << "a degenerate direction";
}

TEST_F(ObjectiveOnModelTest, MissingInputsAreClearErrors) {
  batch_.retain.reset();
  absl::StatusOr<std::unique_ptr<UnlearningObjective>> objective =
      MakeObjective(UnlearningMethod::kNpoRt,
                    DefaultObjectiveParams(UnlearningMethod::kNpoRt), nullptr);
  ASSERT_TRUE(objective.ok());
  absl::Status status = (*objective)->Loss(*model_, batch_).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("retain"), std::string::npos);

  absl::Status no_reference =
      MakeObjective(UnlearningMethod::kNpoKl,
                    DefaultObjectiveParams(UnlearningMethod::kNpoKl), nullptr)
          .status();
  EXPECT_NE(no_reference.message().find("reference model"), std::string::npos)
      << no_reference;
}

// Packed (pack_row_length > 0) against padded passes: every method whose
// terms are answer log-probs or NLLs, in double, on sequences of varied
// lengths (one longer than the rows, one with an empty answer).
QaBatch RandomBatch(const std::vector<std::pair<int, int>>& shapes,
                    int64_t vocab) {
  std::vector<QaExample> examples;
  for (const auto& [length, answer] : shapes) {
    examples.push_back(RandomQaExample(length, answer, vocab));
  }
  std::vector<const QaExample*> pointers;
  for (const QaExample& example : examples) pointers.push_back(&example);
  return CollateQaBatch(pointers, 0);
}

struct PackedCase {
  UnlearningMethod method;
  bool lora_and_checkpointing = false;
  int64_t chunk_tokens = 0;
};

class PackedObjectiveTest : public testing::TestWithParam<PackedCase> {};

TEST_P(PackedObjectiveTest, LossAndGradientsEqualThePaddedComputation) {
  const PackedCase test_case = GetParam();
  constexpr int64_t kVocab = 31;
  torch::manual_seed(21);
  auto model = std::make_shared<LlamaForCausalLM>(TinyLlamaConfig(kVocab));
  RedrawWeights(*model, 0.25);
  if (test_case.lora_and_checkpointing) {
    ASSERT_TRUE(AttachLora(*model, {.rank = 2, .alpha = 4}).ok());
    torch::NoGradGuard no_grad;
    for (auto& [name, parameter] : LoraParameters(*model)) {
      parameter.normal_(0.0, 0.3);
    }
    model->SetActivationCheckpointing(true);
  }
  model->to(at::kDouble);
  UnlearningBatch batch;
  batch.forget = RandomBatch({{7, 3}, {14, 6}, {5, 0}, {9, 4}}, kVocab);
  batch.alternate = RandomBatch({{6, 2}, {11, 5}, {8, 3}, {4, 1}}, kVocab);
  batch.retain = RandomBatch({{10, 4}, {3, 1}, {12, 12}, {6, 3}}, kVocab);
  // References away from the model, so that NPO's weights differ.
  batch.forget_reference_log_probs =
      torch::tensor({-20.0, -11.0, 0.0, -35.0}, at::kDouble);
  batch.alternate_reference_log_probs =
      torch::tensor({-7.0, -25.0, -13.0, -2.0}, at::kDouble);
  ObjectiveParams params = DefaultObjectiveParams(test_case.method);
  params.alpha = 0.7;

  std::vector<at::Tensor> parameters;
  for (const at::Tensor& p : model->parameters()) {
    if (p.requires_grad()) parameters.push_back(p);
  }
  auto run = [&](int64_t pack_row_length, std::vector<at::Tensor>& grads) {
    absl::StatusOr<std::unique_ptr<UnlearningObjective>> objective =
        MakeObjective(test_case.method, params, model, nullptr,
                      test_case.chunk_tokens, pack_row_length);
    EXPECT_TRUE(objective.ok()) << objective.status();
    absl::StatusOr<MicroBatchLoss> loss = (*objective)->Loss(*model, batch);
    EXPECT_TRUE(loss.ok()) << loss.status();
    grads = torch::autograd::grad({loss->loss}, parameters);
    return *loss;
  };
  std::vector<at::Tensor> padded_grads, packed_grads;
  const MicroBatchLoss padded = run(0, padded_grads);
  const MicroBatchLoss packed = run(12, packed_grads);
  const std::string name(UnlearningMethodName(test_case.method));
  EXPECT_NEAR(packed.loss.item<double>(), padded.loss.item<double>(),
              1e-11 * std::max(1.0, std::abs(padded.loss.item<double>())))
      << name;
  EXPECT_EQ(packed.tokens, padded.tokens) << name;
  ASSERT_EQ(packed.components.size(), padded.components.size()) << name;
  for (const auto& [key, value] : padded.components) {
    EXPECT_NEAR(packed.components.at(key), value,
                1e-11 * std::max(1.0, std::abs(value)))
        << name << " " << key;
  }
  ASSERT_EQ(packed_grads.size(), padded_grads.size());
  for (size_t i = 0; i < packed_grads.size(); ++i) {
    const double scale = padded_grads[i].abs().max().item<double>();
    EXPECT_LE((packed_grads[i] - padded_grads[i]).abs().max().item<double>(),
              1e-11 * std::max(scale, 1e-6))
        << name << " gradient " << i << " at scale " << scale;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Methods, PackedObjectiveTest,
    testing::Values(PackedCase{UnlearningMethod::kGa},
                    PackedCase{UnlearningMethod::kGradDiff},
                    PackedCase{UnlearningMethod::kNpo},
                    PackedCase{UnlearningMethod::kNpoRt},
                    PackedCase{UnlearningMethod::kNpoKl},
                    PackedCase{UnlearningMethod::kSimNpo},
                    PackedCase{UnlearningMethod::kIdkDpo},
                    PackedCase{UnlearningMethod::kLlmu},
                    PackedCase{UnlearningMethod::kIhl},
                    PackedCase{UnlearningMethod::kNpoRt, true},
                    PackedCase{UnlearningMethod::kIdkDpo, true, 5},
                    PackedCase{UnlearningMethod::kSimNpo, false, 3}),
    [](const testing::TestParamInfo<PackedCase>& info) {
      return std::string(UnlearningMethodName(info.param.method)) +
             (info.param.lora_and_checkpointing ? "_LoraCheckpointing" : "") +
             (info.param.chunk_tokens > 0 ? "_Chunked" : "");
    });

TEST(PackedObjectiveTest, RejectsANegativeRowLength) {
  EXPECT_EQ(MakeObjective(UnlearningMethod::kNpo,
                          DefaultObjectiveParams(UnlearningMethod::kNpo),
                          nullptr, nullptr, 0, -1)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace lethe
