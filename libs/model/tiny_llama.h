// A tiny Llama configuration for tests (test-only target): small enough that
// a randomly initialised model runs forward, backward and generation in
// milliseconds on a CPU.
//
//   torch::manual_seed(7);
//   LlamaForCausalLM model(TinyLlamaConfig(/*vocab_size=*/50));
#ifndef LETHE_LIBS_MODEL_TINY_LLAMA_H_
#define LETHE_LIBS_MODEL_TINY_LLAMA_H_

#include <cstdint>

#include "libs/model/llama_config.h"

namespace lethe {

// Hidden size 32, intermediate size 64, 2 layers, 4 query and 2 key/value
// heads, 512 positions; LlamaConfig's defaults otherwise.
LlamaConfig TinyLlamaConfig(int64_t vocab_size);

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

}  // namespace lethe

#endif  // LETHE_LIBS_MODEL_TINY_LLAMA_H_
