// Fuzzes config.json parsing (libs/model/llama_config.h ParseLlamaConfig).
// A configuration it accepts must survive LlamaConfigToJson and parse back
// to the same JSON (a fixed point), and its accessors must not fail.
#include <cstdint>
#include <string>

#include "fuzz/fuzz_check.h"
#include "libs/model/llama_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<lethe::LlamaConfig> config =
      lethe::ParseLlamaConfig(text, "config.json");
  if (!config.ok()) return 0;
  FUZZ_CHECK(config->Validate().ok()) << config->Validate();
  FUZZ_CHECK(config->head_dim() > 0) << config->head_dim();
  const int64_t layers = config->num_hidden_layers;
  for (int64_t layer = 0; layer < layers && layer < 64; ++layer) {
    config->IsSlidingLayer(layer);
  }
  config->QkvBias();
  config->OutputProjectionBias();
  config->HasSandwichNorms();
  config->HasFusedCheckpointProjections();
  config->Architecture();

  const std::string written = lethe::LlamaConfigToJson(*config);
  absl::StatusOr<lethe::LlamaConfig> again =
      lethe::ParseLlamaConfig(written, "written config.json");
  FUZZ_CHECK(again.ok()) << "written config does not parse back: "
                         << again.status() << "\n"
                         << written;
  const std::string rewritten = lethe::LlamaConfigToJson(*again);
  FUZZ_CHECK(rewritten == written) << "written:\n"
                                   << written << "read back and written:\n"
                                   << rewritten;
  return 0;
}
