#include "libs/model/tiny_llama.h"

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

}  // namespace lethe
