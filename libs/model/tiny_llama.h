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

}  // namespace lethe

#endif  // LETHE_LIBS_MODEL_TINY_LLAMA_H_
