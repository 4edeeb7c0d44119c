// Tiny Llama models for tests (test-only target): configurations small
// enough that a randomly initialised model runs forward, backward and
// generation in milliseconds on a CPU, and helpers to compare models.
//
//   torch::manual_seed(7);
//   LlamaForCausalLM model(TinyLlamaConfig(/*vocab_size=*/50));
//   EXPECT_EQ(MaxAbsDifference(ModelWeights(dir_a), ModelWeights(dir_b)), 0);
#ifndef LETHE_LIBS_MODEL_TINY_LLAMA_H_
#define LETHE_LIBS_MODEL_TINY_LLAMA_H_

#include <torch/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "libs/data/qa_example.h"
#include "libs/model/llama_config.h"
#include "libs/model/llama_model.h"

namespace lethe {

// Hidden size 32, intermediate size 64, 2 layers, 4 query and 2 key/value
// heads, 512 positions; LlamaConfig's defaults otherwise.
LlamaConfig TinyLlamaConfig(int64_t vocab_size);

// `length` random token ids in [1, vocab) from torch's global generator, the
// answer (labelled; the rest kIgnoreIndex) the last `answer` of them.
QaExample RandomQaExample(int length, int answer, int64_t vocab);

// The shape of a smaller test model: by default one layer of width 16 with
// 2 query heads sharing 1 key/value head (grouped-query attention), the
// model most unlearning and training tests use.
struct TinyLlamaShape {
  int64_t vocab_size = 32;
  int64_t hidden_size = 16;
  int64_t intermediate_size = 32;
  int64_t layers = 1;
  int64_t heads = 2;
  int64_t kv_heads = 1;
  bool tie_word_embeddings = false;
};

// `shape`'s configuration; LlamaConfig's defaults otherwise.
LlamaConfig LlamaConfigOf(const TinyLlamaShape& shape);

// Redraws every weight but the norms from N(0, stddev): larger than the
// 0.02 initialisation, so that the model's outputs depend strongly on its
// inputs.
void RedrawWeights(LlamaForCausalLM& model, double stddev);

// The parameters of the Hugging Face model in `model_dir`, in the model's
// order; empty, with a test failure, when it does not load.
std::vector<at::Tensor> ModelWeights(const std::string& model_dir);

// The largest absolute difference between two models' parameters (a test
// failure when their counts differ).
double MaxAbsDifference(const std::vector<at::Tensor>& a,
                        const std::vector<at::Tensor>& b);

}  // namespace lethe

#endif  // LETHE_LIBS_MODEL_TINY_LLAMA_H_
