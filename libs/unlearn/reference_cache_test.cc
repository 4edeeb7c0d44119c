#include "libs/unlearn/reference_cache.h"

#include <filesystem>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "libs/files/file_io.h"
#include "libs/model/tiny_llama.h"

namespace lethe {
namespace {

// Examples of different lengths, so batches carry padding.
std::vector<QaExample> Examples() {
  std::vector<QaExample> examples;
  for (int i = 0; i < 7; ++i) {
    QaExample example{.input_ids = {1, 3 + i},
                      .labels = {kIgnoreIndex, kIgnoreIndex}};
    for (int t = 0; t <= i % 4; ++t) {
      example.input_ids.push_back(5 + (i * 7 + t * 3) % 25);
      example.labels.push_back(example.input_ids.back());
    }
    examples.push_back(example);
  }
  return examples;
}

// Summed log-prob of the answer of one unpadded example, by hand.
double FreshLogProb(LlamaForCausalLM& model, const QaExample& example) {
  torch::NoGradGuard no_grad;
  const at::Tensor ids =
      at::tensor(std::vector<int64_t>(example.input_ids.begin(),
                                      example.input_ids.end()))
          .unsqueeze(0);
  const at::Tensor log_probs =
      at::log_softmax(model.Forward(ids, {}).to(at::kDouble), -1)[0];
  double sum = 0;
  for (size_t t = 1; t < example.labels.size(); ++t) {
    if (example.labels[t] == kIgnoreIndex) continue;
    sum += log_probs[t - 1][example.labels[t]].item<double>();
  }
  return sum;
}

TEST(ReferenceLogProbCacheTest, EqualsAFreshComputationPerExample) {
  torch::manual_seed(5);
  LlamaForCausalLM model(LlamaConfigOf({.layers = 2}));
  const std::vector<QaExample> examples = Examples();
  absl::StatusOr<ReferenceLogProbCache> cache =
      ReferenceLogProbCache::Compute(model, examples, /*pad_id=*/0, 3);
  ASSERT_TRUE(cache.ok()) << cache.status();
  ASSERT_EQ(cache->log_probs().size(), examples.size());
  for (size_t i = 0; i < examples.size(); ++i) {
    EXPECT_NEAR(cache->log_probs()[i], FreshLogProb(model, examples[i]), 1e-4)
        << i;
  }
  const at::Tensor looked_up = cache->Lookup({4, 1});
  EXPECT_EQ(looked_up.scalar_type(), at::kDouble);
  EXPECT_DOUBLE_EQ(looked_up[0].item<double>(), cache->log_probs()[4]);
  EXPECT_DOUBLE_EQ(looked_up[1].item<double>(), cache->log_probs()[1]);
}

TEST(ReferenceLogProbCacheTest, ChunkedComputationEqualsThePlainOne) {
  torch::manual_seed(5);
  LlamaForCausalLM model(LlamaConfigOf({.layers = 2}));
  const std::vector<QaExample> examples = Examples();
  absl::StatusOr<ReferenceLogProbCache> plain =
      ReferenceLogProbCache::Compute(model, examples, /*pad_id=*/0, 3);
  ASSERT_TRUE(plain.ok()) << plain.status();
  for (int64_t chunk : {1, 2, 100}) {
    absl::StatusOr<ReferenceLogProbCache> chunked =
        ReferenceLogProbCache::Compute(model, examples, 0, 3, "", chunk);
    ASSERT_TRUE(chunked.ok()) << chunked.status();
    ASSERT_EQ(chunked->log_probs().size(), examples.size());
    // fp32 rounding falls elsewhere: proof that the chunked path ran.
    EXPECT_NE(chunked->log_probs(), plain->log_probs()) << chunk;
    for (size_t i = 0; i < examples.size(); ++i) {
      EXPECT_NEAR(chunked->log_probs()[i], plain->log_probs()[i], 1e-5)
          << "chunk " << chunk << " example " << i;
      EXPECT_NEAR(chunked->log_probs()[i], FreshLogProb(model, examples[i]),
                  1e-4);
    }
  }
}

TEST(ReferenceLogProbCacheTest, SavesLoadsAndRefusesOtherExamples) {
  torch::manual_seed(5);
  LlamaForCausalLM model(LlamaConfigOf({.layers = 2}));
  std::vector<QaExample> examples = Examples();
  absl::StatusOr<ReferenceLogProbCache> cache =
      ReferenceLogProbCache::Compute(model, examples, 0);
  ASSERT_TRUE(cache.ok());
  const std::string path = testing::TempDir() + "/reference.json";
  ASSERT_TRUE(cache->Save(path).ok());
  absl::StatusOr<ReferenceLogProbCache> loaded =
      ReferenceLogProbCache::Load(path, examples);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->log_probs(), cache->log_probs());

  examples[2].input_ids[1] += 1;
  EXPECT_EQ(ReferenceLogProbCache::Load(path, examples).status().code(),
            absl::StatusCode::kFailedPrecondition);

  const std::string text = *ReadFileToString(path);
  ASSERT_TRUE(WriteFileAtomically(path, text.substr(0, text.size() / 2)).ok());
  absl::Status truncated =
      ReferenceLogProbCache::Load(path, Examples()).status();
  EXPECT_EQ(truncated.code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(truncated.message().find(path), std::string::npos);
}

}  // namespace
}  // namespace lethe
