#include "libs/loss/chunked_log_probs.h"

#include <torch/csrc/autograd/autograd.h>

#include <cmath>
#include <optional>
#include <vector>

#include "gtest/gtest.h"
#include "libs/data/qa_batch.h"
#include "libs/data/qa_example.h"
#include "libs/loss/sequence_loss.h"
#include "libs/model/llama_model.h"
#include "libs/model/tiny_llama.h"

namespace lethe {
namespace {

// An int, so that braced label lists are homogeneous.
constexpr int kIgnore = -100;
static_assert(kIgnore == kIgnoreIndex);

// The independent computation: full logits by a plain matmul (and the
// soft-cap as LlamaForCausalLM::Logits writes it), then sequence_loss.h, all
// differentiated by LibTorch's own autograd.
at::Tensor PlainLogits(const at::Tensor& hidden, const at::Tensor& weight,
                       std::optional<double> softcap) {
  at::Tensor logits = at::matmul(hidden, weight.t());
  if (softcap.has_value()) logits = at::tanh(logits / *softcap) * *softcap;
  return logits;
}

// Batch 3 x 7 with right padding, a row with no answer token, and labels
// spread over the vocabulary.
at::Tensor Labels() {
  return torch::tensor(
      {{kIgnore, kIgnore, 3, 9, 0, kIgnore, kIgnore},
       {kIgnore, kIgnore, kIgnore, kIgnore, kIgnore, kIgnore, kIgnore},
       {kIgnore, 10, 4, 4, 7, 1, 2}},
      at::kLong);
}

struct Case {
  at::Tensor hidden;  // [3, 7, 5]
  at::Tensor weight;  // [11, 5]
  at::Tensor labels;
  at::Tensor row_weights;  // [3], to mix the per-sequence sums.
};

Case MakeCase(at::ScalarType dtype, uint64_t seed = 3) {
  torch::manual_seed(seed);
  Case c;
  c.hidden = torch::randn({3, 7, 5}, dtype);
  c.weight = torch::randn({11, 5}, dtype) * 1.5;
  c.labels = Labels();
  c.row_weights = torch::tensor({0.7, -1.3, 2.1}, dtype);
  return c;
}

// A scalar that uses both entry points, so gradients check both.
at::Tensor Objective(const AnswerLogProbs& log_probs, const at::Tensor& nll,
                     const at::Tensor& row_weights) {
  return (log_probs.summed * row_weights.to(log_probs.summed.dtype())).sum() +
         3 * nll;
}

struct Result {
  at::Tensor summed, counts, per_token, nll, hidden_grad, weight_grad;
};

Result RunPlain(const Case& c, std::optional<double> softcap,
                bool weight_trains = true) {
  const at::Tensor hidden = c.hidden.clone().requires_grad_();
  const at::Tensor weight = c.weight.clone().requires_grad_(weight_trains);
  const at::Tensor logits = PlainLogits(hidden, weight, softcap);
  const AnswerLogProbs log_probs = SequenceAnswerLogProbs(logits, c.labels);
  const at::Tensor nll = TokenMeanNll(logits, c.labels);
  Objective(log_probs, nll, c.row_weights).backward();
  return {log_probs.summed.detach(),
          log_probs.token_counts,
          -TokenNll(logits, c.labels).detach(),
          nll.detach(),
          hidden.grad(),
          weight.grad()};
}

Result RunChunked(const Case& c, std::optional<double> softcap, int64_t chunk,
                  bool weight_trains = true) {
  const at::Tensor hidden = c.hidden.clone().requires_grad_();
  const at::Tensor weight = c.weight.clone().requires_grad_(weight_trains);
  const OutputProjection projection{.weight = weight, .softcap = softcap};
  const AnswerLogProbs log_probs =
      ChunkedAnswerLogProbs(hidden, projection, c.labels, chunk);
  const at::Tensor nll =
      ChunkedTokenMeanNll(hidden, projection, c.labels, chunk);
  Objective(log_probs, nll, c.row_weights).backward();
  return {log_probs.summed.detach(),
          log_probs.token_counts,
          ChunkedTokenLogProbs(hidden, projection, c.labels, chunk).detach(),
          nll.detach(),
          hidden.grad(),
          weight.grad()};
}

void ExpectClose(const at::Tensor& actual, const at::Tensor& expected,
                 double tolerance, const std::string& what) {
  ASSERT_TRUE(actual.defined()) << what;
  ASSERT_EQ(actual.sizes(), expected.sizes()) << what;
  const double difference = (actual.to(at::kDouble) - expected.to(at::kDouble))
                                .abs()
                                .max()
                                .item<double>();
  EXPECT_LE(difference, tolerance) << what;
}

void ExpectMatches(const Result& chunked, const Result& plain, double tolerance,
                   const std::string& what) {
  ExpectClose(chunked.summed, plain.summed, tolerance, what + " summed");
  EXPECT_TRUE(chunked.counts.equal(plain.counts)) << what;
  ExpectClose(chunked.per_token, plain.per_token, tolerance,
              what + " per token");
  ExpectClose(chunked.nll, plain.nll, tolerance, what + " nll");
  ExpectClose(chunked.hidden_grad, plain.hidden_grad, tolerance,
              what + " hidden gradient");
  if (plain.weight_grad.defined()) {
    ExpectClose(chunked.weight_grad, plain.weight_grad, tolerance,
                what + " weight gradient");
  } else {
    EXPECT_FALSE(chunked.weight_grad.defined()) << what;
  }
}

TEST(ChunkedLogProbsTest, MatchesPlainLogitsInDoubleForEveryChunkSize) {
  const Case c = MakeCase(at::kDouble);
  for (const std::optional<double>& softcap :
       {std::optional<double>(), std::optional<double>(1.7)}) {
    const Result plain = RunPlain(c, softcap);
    // Sanity of the case itself: row 1 has no answer, rows 0 and 2 do.
    EXPECT_EQ(plain.counts[1].item<int64_t>(), 0);
    EXPECT_EQ(plain.summed[1].item<double>(), 0.0);
    EXPECT_GT(plain.hidden_grad.abs().sum().item<double>(), 0.0);
    // 9 answer tokens: chunk 1, odd sizes, exact, larger than the count.
    for (int64_t chunk : {1, 2, 3, 4, 9, 100}) {
      ExpectMatches(
          RunChunked(c, softcap, chunk), plain, 1e-12,
          "chunk " + std::to_string(chunk) + (softcap ? " softcap" : ""));
    }
  }
}

TEST(ChunkedLogProbsTest, IgnoredPositionsGetNoGradientAndZeroValue) {
  const Case c = MakeCase(at::kDouble);
  const Result chunked = RunChunked(c, std::nullopt, 2);
  // Row 1 has no answer token at all; row 0 only predicts from t = 1..3.
  EXPECT_EQ(chunked.hidden_grad[1].abs().sum().item<double>(), 0.0);
  EXPECT_EQ(chunked.hidden_grad[0][0].abs().sum().item<double>(), 0.0);
  EXPECT_EQ(chunked.hidden_grad[0][4].abs().sum().item<double>(), 0.0);
  EXPECT_GT(chunked.hidden_grad[0][1].abs().sum().item<double>(), 0.0);
  EXPECT_EQ(chunked.per_token[1].abs().sum().item<double>(), 0.0);
  EXPECT_EQ(chunked.per_token[0][0].item<double>(), 0.0);
  EXPECT_LT(chunked.per_token[0][1].item<double>(), 0.0);
}

TEST(ChunkedLogProbsTest, FrozenWeightGivesHiddenGradientsOnly) {
  const Case c = MakeCase(at::kDouble);
  for (const std::optional<double>& softcap :
       {std::optional<double>(), std::optional<double>(2.5)}) {
    const Result plain = RunPlain(c, softcap, /*weight_trains=*/false);
    ASSERT_FALSE(plain.weight_grad.defined());
    ExpectMatches(RunChunked(c, softcap, 4, /*weight_trains=*/false), plain,
                  1e-12, "frozen weight");
  }
}

TEST(ChunkedLogProbsTest, NoAnswerTokensGivesZerosNotNan) {
  const at::Tensor hidden = torch::randn({2, 4, 5}).requires_grad_();
  const at::Tensor weight = torch::randn({6, 5}).requires_grad_();
  const at::Tensor labels = torch::full({2, 4}, kIgnore, at::kLong);
  const OutputProjection projection{.weight = weight};
  const at::Tensor nll = ChunkedTokenMeanNll(hidden, projection, labels, 3);
  EXPECT_EQ(nll.item<float>(), 0.0f);
  nll.backward();
  EXPECT_EQ(hidden.grad().abs().sum().item<float>(), 0.0f);
  EXPECT_EQ(weight.grad().abs().sum().item<float>(), 0.0f);
  EXPECT_EQ(ChunkedAnswerLogProbs(hidden, projection, labels, 3)
                .summed.abs()
                .sum()
                .item<float>(),
            0.0f);
}

TEST(ChunkedLogProbsTest, Fp32MatchesPlainFp32) {
  const Case c = MakeCase(at::kFloat);
  for (const std::optional<double>& softcap :
       {std::optional<double>(), std::optional<double>(3.0)}) {
    const Result plain = RunPlain(c, softcap);
    for (int64_t chunk : {1, 5, 64}) {
      const Result chunked = RunChunked(c, softcap, chunk);
      EXPECT_EQ(chunked.summed.scalar_type(), at::kFloat);
      ExpectMatches(chunked, plain, 2e-5,
                    "fp32 chunk " + std::to_string(chunk));
    }
  }
}

TEST(ChunkedLogProbsTest, Bf16InputsAreUpcastToFp32Math) {
  // bf16 hidden states and weight: the chunked path computes the logits in
  // fp32 from the bf16 values, so it equals the plain path on those values
  // upcast to fp32, and gradients come back in bf16.
  const Case c = MakeCase(at::kFloat);
  Case rounded = c;
  rounded.hidden = c.hidden.to(at::kBFloat16).to(at::kFloat);
  rounded.weight = c.weight.to(at::kBFloat16).to(at::kFloat);
  const Result plain = RunPlain(rounded, std::nullopt);
  Case bf16 = c;
  bf16.hidden = c.hidden.to(at::kBFloat16);
  bf16.weight = c.weight.to(at::kBFloat16);
  const Result chunked = RunChunked(bf16, std::nullopt, 4);
  EXPECT_EQ(chunked.summed.scalar_type(), at::kFloat);
  EXPECT_EQ(chunked.hidden_grad.scalar_type(), at::kBFloat16);
  EXPECT_EQ(chunked.weight_grad.scalar_type(), at::kBFloat16);
  ExpectClose(chunked.summed, plain.summed, 1e-4, "bf16 summed");
  ExpectClose(chunked.nll, plain.nll, 1e-5, "bf16 nll");
  // Gradients are rounded to bf16 once (relative 2^-8).
  const double scale = plain.weight_grad.abs().max().item<double>();
  ExpectClose(chunked.hidden_grad, plain.hidden_grad,
              plain.hidden_grad.abs().max().item<double>() / 128,
              "bf16 hidden gradient");
  ExpectClose(chunked.weight_grad, plain.weight_grad, scale / 128,
              "bf16 weight gradient");
}

TEST(ChunkedLogProbsTest, GradientMatchesFiniteDifferences) {
  // Tiny fp64 case, checked against central differences of the chunked
  // function's own values (independent of any backward pass).
  torch::manual_seed(11);
  const at::Tensor hidden = torch::randn({2, 4, 3}, at::kDouble);
  const at::Tensor weight = torch::randn({5, 3}, at::kDouble);
  const at::Tensor labels = torch::tensor(
      {{kIgnore, 2, 4, kIgnore}, {kIgnore, kIgnore, 0, 3}}, at::kLong);
  const at::Tensor mix = torch::tensor({1.3, -0.4}, at::kDouble);
  for (const std::optional<double>& softcap :
       {std::optional<double>(), std::optional<double>(0.9)}) {
    auto value = [&](const at::Tensor& h, const at::Tensor& w) {
      return (ChunkedAnswerLogProbs(h, {.weight = w, .softcap = softcap},
                                    labels, 2)
                  .summed *
              mix)
          .sum();
    };
    const at::Tensor h = hidden.clone().requires_grad_();
    const at::Tensor w = weight.clone().requires_grad_();
    value(h, w).backward();
    const double step = 1e-6;
    for (bool of_weight : {false, true}) {
      const at::Tensor base = of_weight ? weight : hidden;
      const at::Tensor analytic = of_weight ? w.grad() : h.grad();
      for (int64_t i = 0; i < base.numel(); ++i) {
        at::Tensor plus = base.clone();
        at::Tensor minus = base.clone();
        plus.view({-1})[i] += step;
        minus.view({-1})[i] -= step;
        torch::NoGradGuard no_grad;
        const double numeric =
            ((of_weight ? value(hidden, plus) : value(plus, weight)) -
             (of_weight ? value(hidden, minus) : value(minus, weight)))
                .item<double>() /
            (2 * step);
        EXPECT_NEAR(analytic.view({-1})[i].item<double>(), numeric, 1e-7)
            << (of_weight ? "weight " : "hidden ") << i
            << (softcap ? " softcap" : "");
      }
    }
  }
}

// Hessian-vector products (grad of <grad L, v>) by double backward, as OFMU
// takes them, equal the plain path's.
TEST(ChunkedLogProbsTest, DoubleBackwardMatchesPlain) {
  const Case c = MakeCase(at::kDouble, 5);
  torch::manual_seed(6);
  const at::Tensor v_hidden = torch::randn_like(c.hidden);
  const at::Tensor v_weight = torch::randn_like(c.weight);
  for (const std::optional<double>& softcap :
       {std::optional<double>(), std::optional<double>(1.1)}) {
    auto hvp = [&](bool chunked) {
      const at::Tensor hidden = c.hidden.clone().requires_grad_();
      const at::Tensor weight = c.weight.clone().requires_grad_();
      const OutputProjection projection{.weight = weight, .softcap = softcap};
      const at::Tensor loss =
          chunked
              ? ChunkedTokenMeanNll(hidden, projection, c.labels, 3)
              : TokenMeanNll(PlainLogits(hidden, weight, softcap), c.labels);
      const std::vector<at::Tensor> gradient =
          torch::autograd::grad({loss}, {hidden, weight}, {},
                                /*retain_graph=*/true, /*create_graph=*/true);
      const at::Tensor contraction =
          (gradient[0] * v_hidden).sum() + (gradient[1] * v_weight).sum();
      return torch::autograd::grad({contraction}, {hidden, weight});
    };
    const std::vector<at::Tensor> plain = hvp(false);
    const std::vector<at::Tensor> chunked = hvp(true);
    EXPECT_GT(plain[0].abs().max().item<double>(), 1e-3);
    ExpectClose(chunked[0], plain[0], 1e-11, "Hv hidden");
    ExpectClose(chunked[1], plain[1], 1e-11, "Hv weight");
  }
}

TEST(ChunkedLogProbsTest, RejectsBadArguments) {
  const at::Tensor hidden = torch::randn({1, 3, 4});
  const OutputProjection projection{.weight = torch::randn({6, 4})};
  const at::Tensor labels = torch::tensor({{kIgnore, 2, 6}}, at::kLong);
  EXPECT_THROW(ChunkedTokenMeanNll(hidden, projection, labels, 2),
               c10::Error);  // Label 6 outside a vocabulary of 6.
  EXPECT_THROW(ChunkedTokenMeanNll(hidden, projection,
                                   torch::tensor({{kIgnore, 2, 1}}), 0),
               c10::Error);  // Chunk size 0.
}

// The model adapter: lm_head or the tied embedding, Gemma 2's soft-cap.
class ModelAdapterTest : public testing::TestWithParam<int> {};

LlamaConfig AdapterConfig(int variant) {
  TinyLlamaShape shape;
  shape.vocab_size = 40;
  shape.tie_word_embeddings = variant == 1;
  LlamaConfig config = LlamaConfigOf(shape);
  if (variant == 2) config.final_logit_softcapping = 3.0;
  return config;
}

QaBatch AdapterBatch() {
  QaBatch batch;
  batch.input_ids =
      torch::tensor({{1, 5, 9, 13, 2, 0}, {3, 7, 11, 15, 19, 23}}, at::kLong);
  batch.attention_mask =
      torch::tensor({{1, 1, 1, 1, 1, 0}, {1, 1, 1, 1, 1, 1}}, at::kLong);
  batch.labels = torch::tensor(
      {{kIgnore, kIgnore, 9, 13, 2, kIgnore}, {kIgnore, 7, 11, 15, 19, 23}},
      at::kLong);
  return batch;
}

TEST_P(ModelAdapterTest, ChunkedEqualsPlainInValuesAndParameterGradients) {
  torch::manual_seed(21);
  LlamaForCausalLM model(AdapterConfig(GetParam()));
  model.to(at::kDouble);
  RedrawWeights(model, 0.3);
  const QaBatch batch = AdapterBatch();

  const absl::StatusOr<OutputProjection> projection =
      ModelOutputProjection(model);
  ASSERT_TRUE(projection.ok()) << projection.status();
  EXPECT_EQ(projection->softcap.has_value(), GetParam() == 2);
  // The adapter's logits are the model's.
  const at::Tensor hidden =
      model.ForwardHidden(batch.input_ids, batch.attention_mask);
  EXPECT_TRUE(PlainLogits(hidden, projection->weight, projection->softcap)
                  .allclose(model.Logits(hidden), 1e-12, 1e-12));

  auto run = [&](int64_t chunk) {
    model.zero_grad();
    const AnswerLogProbs log_probs = ModelAnswerLogProbs(model, batch, chunk);
    const at::Tensor nll = ModelTokenMeanNll(model, batch, chunk);
    (log_probs.summed.sum() * 0.3 + nll).backward();
    std::vector<at::Tensor> values = {log_probs.summed.detach(), nll.detach()};
    for (const at::Tensor& parameter : model.parameters()) {
      values.push_back(parameter.grad().clone());
    }
    return values;
  };
  const std::vector<at::Tensor> plain = run(0);
  // chunk 0 is exactly the plain computation.
  const at::Tensor logits =
      model.Forward(batch.input_ids, batch.attention_mask);
  EXPECT_TRUE(plain[0].equal(
      SequenceAnswerLogProbs(logits, batch.labels).summed.detach()));
  EXPECT_TRUE(plain[1].equal(TokenMeanNll(logits, batch.labels).detach()));
  for (int64_t chunk : {1, 3, 1000}) {
    const std::vector<at::Tensor> chunked = run(chunk);
    ASSERT_EQ(chunked.size(), plain.size());
    for (size_t i = 0; i < plain.size(); ++i) {
      ExpectClose(
          chunked[i], plain[i], 1e-11,
          "chunk " + std::to_string(chunk) + " tensor " + std::to_string(i));
    }
  }
}

INSTANTIATE_TEST_SUITE_P(UntiedTiedSoftcap, ModelAdapterTest,
                         testing::Values(0, 1, 2));

TEST(ModelAdapterPlainTest, FrozenOutputWeightStillTrainsTheRest) {
  torch::manual_seed(22);
  LlamaForCausalLM model(AdapterConfig(0));
  model.to(at::kDouble);
  const absl::StatusOr<OutputProjection> projection =
      ModelOutputProjection(model);
  ASSERT_TRUE(projection.ok());
  projection->weight.requires_grad_(false);
  const QaBatch batch = AdapterBatch();
  ModelTokenMeanNll(model, batch, 2).backward();
  EXPECT_FALSE(projection->weight.grad().defined());
  for (const auto& parameter : model.named_parameters()) {
    if (parameter.key() == "model.layers.0.mlp.down_proj.weight") {
      EXPECT_GT(parameter.value().grad().abs().sum().item<double>(), 0.0);
    }
  }
}

TEST(ModelAdapterPlainTest, AutocastBf16StaysCloseToThePlainPath) {
  torch::manual_seed(23);
  LlamaForCausalLM model(AdapterConfig(0));
  RedrawWeights(model, 0.3);
  const QaBatch batch = AdapterBatch();
  CpuBf16AutocastGuard autocast;
  const at::Tensor plain = ModelTokenMeanNll(model, batch, 0);
  const at::Tensor chunked = ModelTokenMeanNll(model, batch, 2);
  EXPECT_EQ(chunked.scalar_type(), at::kFloat);
  EXPECT_NEAR(chunked.item<double>(), plain.item<double>(),
              0.02 * std::abs(plain.item<double>()));
}

}  // namespace
}  // namespace lethe
