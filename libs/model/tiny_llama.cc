#include "libs/model/tiny_llama.h"

#include <algorithm>
#include <memory>

#include "absl/status/statusor.h"
#include "gtest/gtest.h"
#include "libs/model/hf_checkpoint.h"

namespace lethe {

LlamaConfig TinyLlamaConfig(int64_t vocab_size) {
  LlamaConfig config;
  config.vocab_size = vocab_size;
  config.hidden_size = 32;
  config.intermediate_size = 64;
  config.num_hidden_layers = 2;
  config.num_attention_heads = 4;
  config.num_key_value_heads = 2;
  config.max_position_embeddings = 512;
  return config;
}

LlamaConfig LlamaConfigOf(const TinyLlamaShape& shape) {
  LlamaConfig config;
  config.vocab_size = shape.vocab_size;
  config.hidden_size = shape.hidden_size;
  config.intermediate_size = shape.intermediate_size;
  config.num_hidden_layers = shape.layers;
  config.num_attention_heads = shape.heads;
  config.num_key_value_heads = shape.kv_heads;
  config.tie_word_embeddings = shape.tie_word_embeddings;
  return config;
}

void RedrawWeights(LlamaForCausalLM& model, double stddev) {
  torch::NoGradGuard no_grad;
  for (auto& parameter : model.named_parameters()) {
    if (parameter.key().find("norm") == std::string::npos) {
      parameter.value().normal_(0.0, stddev);
    }
  }
}

std::vector<at::Tensor> ModelWeights(const std::string& model_dir) {
  absl::StatusOr<std::shared_ptr<LlamaForCausalLM>> model =
      LoadLlamaCheckpoint(model_dir);
  EXPECT_TRUE(model.ok()) << model.status();
  std::vector<at::Tensor> weights;
  if (model.ok()) {
    for (const auto& parameter : (*model)->named_parameters()) {
      weights.push_back(parameter.value().detach().clone());
    }
  }
  return weights;
}

double MaxAbsDifference(const std::vector<at::Tensor>& a,
                        const std::vector<at::Tensor>& b) {
  EXPECT_EQ(a.size(), b.size());
  double max = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    max = std::max(max, (a[i] - b[i]).abs().max().item<double>());
  }
  return max;
}

QaExample RandomQaExample(int length, int answer, int64_t vocab) {
  const at::Tensor ids = torch::randint(1, vocab, {length}, at::kLong);
  QaExample example;
  for (int t = 0; t < length; ++t) {
    example.input_ids.push_back(static_cast<int>(ids[t].item<int64_t>()));
    example.labels.push_back(t >= length - answer ? example.input_ids.back()
                                                  : kIgnoreIndex);
  }
  return example;
}

}  // namespace lethe
