#include "libs/tokenizer/tokenizer.h"

#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "libs/status/status_macros.h"
#include "libs/tokenizer/hf_tokenizer.h"
#include "libs/tokenizer/sentencepiece_tokenizer.h"
#include "libs/tokenizer/tokenizer_config.h"

namespace lethe {
namespace {

constexpr char kHfFile[] = "tokenizer.json";
constexpr char kSentencePieceFile[] = "tokenizer.model";
constexpr char kConfigFile[] = "tokenizer_config.json";

absl::StatusOr<std::string> ReadFile(const std::string& path,
                                     absl::string_view what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::error_code error;
    if (!std::filesystem::exists(path, error)) {
      return absl::NotFoundError(
          absl::StrCat(what, " '", path, "' does not exist"));
    }
    return absl::PermissionDeniedError(
        absl::StrCat(what, " '", path, "' cannot be read"));
  }
  std::stringstream bytes;
  bytes << in.rdbuf();
  if (in.bad()) {
    return absl::DataLossError(
        absl::StrCat("reading ", what, " '", path, "' failed"));
  }
  return bytes.str();
}

bool LooksLikeJson(const std::string& path, absl::string_view bytes) {
  if (absl::EndsWith(path, ".json")) return true;
  const size_t first = bytes.find_first_not_of(" \t\r\n");
  return first != absl::string_view::npos && bytes[first] == '{';
}

std::string JoinPath(const std::string& dir, const std::string& name) {
  return (std::filesystem::path(dir) / name).string();
}

// The tokenizer_config.json next to `tokenizer_path`, when there is one.
absl::StatusOr<std::optional<tokenizer_internal::TokenizerConfig>>
SiblingConfig(const std::string& tokenizer_path, std::string* config_path) {
  *config_path =
      (std::filesystem::path(tokenizer_path).parent_path() / kConfigFile)
          .string();
  std::error_code error;
  if (!std::filesystem::exists(*config_path, error)) return std::nullopt;
  ASSIGN_OR_RETURN(std::string text,
                   ReadFile(*config_path, "tokenizer config"));
  ASSIGN_OR_RETURN(tokenizer_internal::TokenizerConfig config,
                   tokenizer_internal::ParseTokenizerConfig(
                       text, absl::StrCat("'", *config_path, "'")));
  return config;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::Load(
    const std::string& path) {
  absl::StatusOr<std::string> read = ReadFile(path, "tokenizer model");
  if (absl::IsNotFound(read.status())) {
    // Callers that name <model_dir>/tokenizer.model get a pointer to the
    // loader that finds a Hugging Face tokenizer.json instead.
    const std::string hf_path =
        (std::filesystem::path(path).parent_path() / kHfFile).string();
    std::error_code error;
    if (std::filesystem::exists(hf_path, error)) {
      return absl::NotFoundError(absl::StrCat(
          read.status().message(), "; the folder has ", kHfFile,
          " (LoadModelTokenizer reads whichever a model folder has)"));
    }
  }
  if (!read.ok()) return read.status();
  const std::string& bytes = *read;
  std::string config_path;
  ASSIGN_OR_RETURN(std::optional<tokenizer_internal::TokenizerConfig> config,
                   SiblingConfig(path, &config_path));
  const std::string source = absl::StrCat("'", path, "'");
  const std::string config_source = absl::StrCat("'", config_path, "'");
  if (LooksLikeJson(path, bytes)) {
    ASSIGN_OR_RETURN(std::unique_ptr<HfTokenizer> tokenizer,
                     HfTokenizer::FromJson(bytes, source));
    if (config.has_value()) {
      RETURN_IF_ERROR(tokenizer->ApplyConfig(*config, config_source));
    }
    return std::unique_ptr<Tokenizer>(std::move(tokenizer));
  }
  ASSIGN_OR_RETURN(std::unique_ptr<SentencePieceTokenizer> tokenizer,
                   SentencePieceTokenizer::FromSerialized(bytes, source));
  if (config.has_value()) {
    RETURN_IF_ERROR(tokenizer->ApplyConfig(*config, config_source));
  }
  return std::unique_ptr<Tokenizer>(std::move(tokenizer));
}

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromSerialized(
    absl::string_view serialized_model) {
  ASSIGN_OR_RETURN(std::unique_ptr<SentencePieceTokenizer> tokenizer,
                   SentencePieceTokenizer::FromSerialized(serialized_model,
                                                          "serialized model"));
  return std::unique_ptr<Tokenizer>(std::move(tokenizer));
}

absl::StatusOr<std::string> ModelTokenizerFileName(
    const std::string& model_dir) {
  std::error_code error;
  for (const char* name : {kHfFile, kSentencePieceFile}) {
    if (std::filesystem::exists(JoinPath(model_dir, name), error)) return name;
  }
  return absl::NotFoundError(absl::StrCat("model folder '", model_dir,
                                          "' has neither ", kHfFile, " nor ",
                                          kSentencePieceFile));
}

absl::StatusOr<std::vector<std::string>> ModelTokenizerFileNames(
    const std::string& model_dir) {
  ASSIGN_OR_RETURN(std::string name, ModelTokenizerFileName(model_dir));
  std::vector<std::string> names = {name};
  std::error_code error;
  if (std::filesystem::exists(JoinPath(model_dir, kConfigFile), error)) {
    names.push_back(kConfigFile);
  }
  return names;
}

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadModelTokenizer(
    const std::string& model_dir) {
  ASSIGN_OR_RETURN(std::string name, ModelTokenizerFileName(model_dir));
  return Tokenizer::Load(JoinPath(model_dir, name));
}

}  // namespace lethe
