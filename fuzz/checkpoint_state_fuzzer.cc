// Fuzzes a checkpoint's trainer_state.json (libs/unlearn/checkpoint.h
// ParseCheckpointState). What it accepts must be what WriteCheckpoint could
// have written: a step that names a directory, safe file names, the two
// required files.
#include <cstdint>
#include <string>

#include "fuzz/fuzz_check.h"
#include "libs/unlearn/checkpoint.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  const absl::StatusOr<lethe::CheckpointStateFile> parsed =
      lethe::ParseCheckpointState(text, "trainer_state.json");
  if (!parsed.ok()) return 0;
  FUZZ_CHECK(parsed->state.step >= 0) << parsed->state.step;
  FUZZ_CHECK(parsed->files.count("model.safetensors") == 1);
  FUZZ_CHECK(parsed->files.count("optimizer.pt") == 1);
  for (const auto& [name, record] : parsed->files) {
    FUZZ_CHECK(!name.empty() && name != "." && name != ".." &&
               name.find('/') == std::string::npos)
        << name;
  }
  lethe::CheckpointDirectory("/checkpoints", parsed->state.step);
  return 0;
}
