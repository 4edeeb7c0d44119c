#include "libs/eval/tofu_eval_fixture.h"

#include <torch/types.h>

#include <cstring>
#include <filesystem>
#include <vector>

#include "absl/strings/str_cat.h"
#include "libs/data/mini_tofu.h"
#include "libs/data/tofu_dataset.h"
#include "libs/files/file_io.h"
#include "libs/model/hf_checkpoint.h"
#include "libs/model/llama_model.h"
#include "libs/model/tiny_llama.h"
#include "libs/status/status_macros.h"
#include "libs/tokenizer/tokenizer.h"

namespace lethe {
namespace {

// Protocol buffer wire format, the parts a tokenizer.model uses.
void AppendVarint(uint64_t value, std::string& out) {
  while (value >= 0x80) {
    out += static_cast<char>((value & 0x7F) | 0x80);
    value >>= 7;
  }
  out += static_cast<char>(value);
}

void AppendVarintField(int field, uint64_t value, std::string& out) {
  AppendVarint(static_cast<uint64_t>(field) << 3, out);
  AppendVarint(value, out);
}

void AppendBytesField(int field, const std::string& bytes, std::string& out) {
  AppendVarint((static_cast<uint64_t>(field) << 3) | 2, out);
  AppendVarint(bytes.size(), out);
  out += bytes;
}

// SentencePiece message: piece (1), score (2, fixed32), type (3).
std::string Piece(const std::string& text, int type) {
  std::string piece;
  AppendBytesField(1, text, piece);
  const float score = 0;
  uint32_t bits;
  std::memcpy(&bits, &score, sizeof(bits));
  AppendVarint((2 << 3) | 5, piece);
  for (int byte = 0; byte < 4; ++byte) {
    piece += static_cast<char>((bits >> (8 * byte)) & 0xFF);
  }
  AppendVarintField(3, type, piece);
  return piece;
}

}  // namespace

std::string CharacterTokenizerModel() {
  constexpr int kNormal = 1, kUnknown = 2, kControl = 3;
  std::string model;
  AppendBytesField(1, Piece("<unk>", kUnknown), model);
  AppendBytesField(1, Piece("<s>", kControl), model);
  AppendBytesField(1, Piece("</s>", kControl), model);
  AppendBytesField(1, Piece("\xE2\x96\x81", kNormal), model);  // U+2581
  AppendBytesField(1, Piece("\n", kNormal), model);
  for (char c = '!'; c <= '~'; ++c) {
    AppendBytesField(1, Piece(std::string(1, c), kNormal), model);
  }
  std::string trainer_spec;
  AppendVarintField(3, 2, trainer_spec);   // model_type: BPE
  AppendVarintField(40, 0, trainer_spec);  // unk_id
  AppendVarintField(41, 1, trainer_spec);  // bos_id
  AppendVarintField(42, 2, trainer_spec);  // eos_id
  AppendBytesField(2, trainer_spec, model);
  std::string normalizer_spec;
  AppendBytesField(1, "identity", normalizer_spec);
  AppendBytesField(3, normalizer_spec, model);
  return model;
}

absl::Status WriteTinyTofuModel(const std::string& dir, uint64_t seed) {
  const std::string tokenizer_bytes = CharacterTokenizerModel();
  ASSIGN_OR_RETURN(std::unique_ptr<Tokenizer> tokenizer,
                   Tokenizer::FromSerialized(tokenizer_bytes));
  torch::manual_seed(seed);
  LlamaForCausalLM model(TinyLlamaConfig(tokenizer->vocab_size()));
  RETURN_IF_ERROR(SaveLlamaCheckpoint(model, dir, {}));
  return WriteFileAtomically(dir + "/tokenizer.model", tokenizer_bytes);
}

absl::Status WriteTinyTofuData(const std::string& dir, int questions_per_set) {
  const MiniTofu data =
      GenerateMiniTofu({.num_authors = 10, .questions_per_author = 2});
  std::error_code error;
  std::filesystem::create_directories(dir, error);
  if (error) {
    return absl::PermissionDeniedError(
        absl::StrCat(dir, ": cannot create: ", error.message()));
  }
  for (const char* split :
       {"forget10_perturbed", "holdout10", "retain_perturbed",
        "real_authors_perturbed", "world_facts_perturbed"}) {
    std::vector<TofuRecord> records = data.splits.at(split);
    if (static_cast<int>(records.size()) > questions_per_set) {
      records.resize(questions_per_set);
    }
    RETURN_IF_ERROR(
        WriteTofuFile(absl::StrCat(dir, "/", split, ".json"), records));
  }
  return absl::OkStatus();
}

}  // namespace lethe
