#include "libs/eval/memorization_signature.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "libs/data/mini_tofu.h"
#include "libs/data/qa_example.h"
#include "libs/eval/memorization_probe.h"
#include "libs/eval/tofu_eval_fixture.h"
#include "libs/model/hf_checkpoint.h"
#include "libs/tokenizer/tokenizer.h"

namespace lethe {
namespace {

constexpr int kMaxLength = 512;
constexpr int kPairs = 5;

// The tiny random TOFU model (2 layers, width 32) and mini-TOFU records.
class MemorizationSignatureTest : public testing::Test {
 protected:
  void SetUp() override {
    const std::string dir = testing::TempDir() + "/memorization_signature";
    std::filesystem::remove_all(dir);
    ASSERT_TRUE(WriteTinyTofuModel(dir + "/model", 5).ok());
    // The tiny TOFU data has 2 forget questions; one author with 10
    // questions gives forget10 and holdout10 sets of 10 each.
    const MiniTofu data =
        GenerateMiniTofu({.num_authors = 10, .questions_per_author = 10});
    const std::vector<TofuRecord>& forget = data.splits.at("forget10");
    const std::vector<TofuRecord>& holdout = data.splits.at("holdout10");
    ASSERT_GE(forget.size(), static_cast<size_t>(kPairs));
    ASSERT_GE(holdout.size(), static_cast<size_t>(kPairs));
    memorised_.assign(forget.begin(), forget.begin() + kPairs);
    clean_.assign(holdout.begin(), holdout.begin() + kPairs);
    absl::StatusOr<std::shared_ptr<LlamaForCausalLM>> model =
        LoadLlamaCheckpoint(dir + "/model");
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = *model;
    absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer =
        LoadModelTokenizer(dir + "/model");
    ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
    tokenizer_ = *std::move(tokenizer);
    template_ = *PromptTemplateByName("plain");
    pad_id_ =
        tokenizer_->pad_id() >= 0 ? tokenizer_->pad_id() : tokenizer_->eos_id();
  }

  std::vector<QaExample> Tokenize(const std::vector<TofuRecord>& records) {
    absl::StatusOr<std::vector<QaExample>> examples =
        TokenizeRecords(*tokenizer_, template_, records, kMaxLength);
    EXPECT_TRUE(examples.ok()) << examples.status();
    return examples.ok() ? *examples : std::vector<QaExample>{};
  }

  // Each example run alone (no padding), its state at its last position,
  // per depth: [examples, hidden].
  std::vector<at::Tensor> UnbatchedLastStates(
      const std::vector<QaExample>& examples) {
    torch::NoGradGuard no_grad;
    std::vector<std::vector<at::Tensor>> rows;
    for (const QaExample& example : examples) {
      const std::vector<int64_t> ids(example.input_ids.begin(),
                                     example.input_ids.end());
      const std::vector<at::Tensor> states = model_->HiddenStatesByDepth(
          torch::tensor(ids, at::kLong).unsqueeze(0));
      rows.resize(states.size());
      for (size_t depth = 0; depth < states.size(); ++depth) {
        rows[depth].push_back(states[depth][0][-1]);
      }
    }
    std::vector<at::Tensor> by_depth;
    for (const auto& depth_rows : rows) {
      by_depth.push_back(torch::stack(depth_rows));
    }
    return by_depth;
  }

  std::vector<TofuRecord> memorised_;
  std::vector<TofuRecord> clean_;
  std::shared_ptr<LlamaForCausalLM> model_;
  std::unique_ptr<Tokenizer> tokenizer_;
  PromptTemplate template_;
  int pad_id_ = 0;
};

TEST_F(MemorizationSignatureTest, TakesEachSequencesLastRealToken) {
  const std::vector<QaExample> examples = Tokenize(memorised_);
  ASSERT_EQ(examples.size(), static_cast<size_t>(kPairs));
  std::set<size_t> lengths;
  for (const QaExample& example : examples) {
    lengths.insert(example.input_ids.size());
  }
  // Batches of 2 over sequences of several lengths: padded rows.
  ASSERT_GT(lengths.size(), 2u);
  model_->train();
  absl::StatusOr<std::vector<at::Tensor>> states =
      LastTokenHiddenStates(*model_, examples, pad_id_, /*batch_size=*/2);
  ASSERT_TRUE(states.ok()) << states.status();
  EXPECT_TRUE(model_->is_training());
  const std::vector<at::Tensor> expected = UnbatchedLastStates(examples);
  const int64_t layers = model_->config().num_hidden_layers;
  ASSERT_EQ(states->size(), static_cast<size_t>(layers + 1));
  ASSERT_EQ(expected.size(), states->size());
  for (size_t depth = 0; depth < states->size(); ++depth) {
    SCOPED_TRACE(depth);
    const at::Tensor& state = (*states)[depth];
    EXPECT_EQ(state.sizes().vec(),
              (std::vector<int64_t>{kPairs, model_->config().hidden_size}));
    EXPECT_EQ(state.device().type(), at::kCPU);
    EXPECT_EQ(state.scalar_type(), at::kFloat);
    EXPECT_TRUE(torch::allclose(state, expected[depth], 1e-5, 1e-5))
        << (state - expected[depth]).abs().max();
  }
  // Every sequence ends in EOS, so depth 0 holds one row repeated; deeper
  // states differ between sequences.
  EXPECT_TRUE(torch::equal((*states)[0][0], (*states)[0][kPairs - 1]));
  EXPECT_FALSE(torch::allclose((*states)[layers][0],
                               (*states)[layers][kPairs - 1], 1e-3, 1e-3));
}

TEST_F(MemorizationSignatureTest, IsTheProbeAccuracyOfThePairedStates) {
  absl::StatusOr<MemorizationSignature> signature =
      MeasureMemorizationSignature(*model_, *tokenizer_, template_, memorised_,
                                   clean_, {.batch_size = 3});
  ASSERT_TRUE(signature.ok()) << signature.status();
  EXPECT_EQ(signature->pairs, kPairs);
  const std::vector<at::Tensor> memorised =
      UnbatchedLastStates(Tokenize(memorised_));
  const std::vector<at::Tensor> clean = UnbatchedLastStates(Tokenize(clean_));
  ASSERT_EQ(signature->per_depth.size(),
            static_cast<size_t>(model_->config().num_hidden_layers + 1));
  for (size_t depth = 0; depth < signature->per_depth.size(); ++depth) {
    SCOPED_TRACE(depth);
    const double accuracy = signature->per_depth[depth];
    EXPECT_GE(accuracy, 0.0);
    EXPECT_LE(accuracy, 1.0);
    // Each pair scores 0, 1 or 2 rows right of 2.
    const double rows_right = accuracy * 2 * kPairs;
    EXPECT_NEAR(rows_right, std::round(rows_right), 1e-9);
    absl::StatusOr<double> expected =
        LeaveOnePairOutAccuracy(memorised[depth], clean[depth]);
    ASSERT_TRUE(expected.ok()) << expected.status();
    EXPECT_DOUBLE_EQ(accuracy, *expected);
  }
  // The last token is EOS everywhere: its embedding tells nothing.
  EXPECT_EQ(signature->per_depth[0], 0.5);
  const auto best = std::max_element(signature->per_depth.begin(),
                                     signature->per_depth.end());
  EXPECT_EQ(signature->max_accuracy, *best);
  EXPECT_EQ(signature->max_depth, best - signature->per_depth.begin());
}

TEST_F(MemorizationSignatureTest, IdenticalSetsAreAtChance) {
  absl::StatusOr<MemorizationSignature> signature =
      MeasureMemorizationSignature(*model_, *tokenizer_, template_, memorised_,
                                   memorised_);
  ASSERT_TRUE(signature.ok()) << signature.status();
  for (double accuracy : signature->per_depth) EXPECT_EQ(accuracy, 0.5);
  EXPECT_EQ(signature->max_depth, 0);
}

TEST_F(MemorizationSignatureTest, PairsTheFirstRecordsOfTheShorterSet) {
  const std::vector<TofuRecord> holdout(clean_.begin(), clean_.begin() + 3);
  const std::vector<TofuRecord> forget(memorised_.begin(),
                                       memorised_.begin() + 3);
  absl::StatusOr<MemorizationSignature> uneven = MeasureMemorizationSignature(
      *model_, *tokenizer_, template_, memorised_, holdout);
  absl::StatusOr<MemorizationSignature> even = MeasureMemorizationSignature(
      *model_, *tokenizer_, template_, forget, holdout);
  ASSERT_TRUE(uneven.ok()) << uneven.status();
  ASSERT_TRUE(even.ok()) << even.status();
  EXPECT_EQ(uneven->pairs, 3);
  EXPECT_EQ(uneven->per_depth, even->per_depth);
}

TEST_F(MemorizationSignatureTest, RejectsFewerThanTwoPairsAndBadOptions) {
  const std::vector<TofuRecord> one(clean_.begin(), clean_.begin() + 1);
  absl::Status status = MeasureMemorizationSignature(*model_, *tokenizer_,
                                                     template_, memorised_, one)
                            .status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("at least 2 pairs"), std::string::npos)
      << status;
  EXPECT_EQ(
      MeasureMemorizationSignature(*model_, *tokenizer_, template_, {}, clean_)
          .status()
          .code(),
      absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(MeasureMemorizationSignature(*model_, *tokenizer_, template_,
                                         memorised_, clean_, {.batch_size = 0})
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(LastTokenHiddenStates(*model_, {}, pad_id_, 4).status().code(),
            absl::StatusCode::kInvalidArgument);

  const at::Tensor rows = torch::randn({3, 4});
  EXPECT_EQ(SignatureFromStates({rows, rows}, {rows}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(SignatureFromStates({rows}, {rows.narrow(0, 0, 2)}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(SignatureFromStates({rows.narrow(0, 0, 1)}, {rows.narrow(0, 0, 1)})
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(SignatureFromStatesTest, FindsTheDepthThatSeparatesTheSets) {
  // Depth 0: the same rows in both sets (chance); depth 1: the memorised
  // rows shifted along one feature (every held-out pair classified right).
  torch::manual_seed(11);
  const at::Tensor clean = torch::randn({6, 3}, at::kDouble);
  at::Tensor shifted = clean.clone();
  shifted.select(1, 0).add_(10.0);
  absl::StatusOr<MemorizationSignature> signature =
      SignatureFromStates({clean, shifted}, {clean, clean});
  ASSERT_TRUE(signature.ok()) << signature.status();
  EXPECT_EQ(signature->pairs, 6);
  EXPECT_EQ(signature->per_depth, (std::vector<double>{0.5, 1.0}));
  EXPECT_EQ(signature->max_accuracy, 1.0);
  EXPECT_EQ(signature->max_depth, 1);
}

}  // namespace
}  // namespace lethe
