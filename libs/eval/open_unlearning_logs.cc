#include "libs/eval/open_unlearning_logs.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "libs/files/file_io.h"

namespace lethe {

std::string OpenUnlearningLogDir() {
  const char* shared = std::getenv("LETHE_SHARED_DIR");
  if (shared == nullptr) return "";
  const std::string dir =
      absl::StrCat(shared, "/data/tofu/eval_logs/open-unlearning");
  return std::filesystem::is_directory(dir) ? dir : "";
}

std::vector<std::string> EvalLogPaths(const std::string& dir) {
  std::vector<std::string> paths;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(dir)) {
    if (entry.path().filename() == "TOFU_EVAL.json") {
      paths.push_back(entry.path().string());
    }
  }
  std::sort(paths.begin(), paths.end());
  return paths;
}

std::vector<ForgetRetainPair> ForgetRetainPairs(const std::string& dir) {
  std::vector<ForgetRetainPair> pairs;
  for (const auto& model : std::filesystem::directory_iterator(dir)) {
    const std::string name = model.path().filename().string();
    const std::string suffix = "_full";
    if (name.size() <= suffix.size() ||
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0) {
      continue;
    }
    const std::string base = name.substr(0, name.size() - suffix.size());
    for (const char* forget : {"01", "05", "10"}) {
      const std::string eval_dir =
          absl::StrCat(model.path().string(), "/evals_forget", forget);
      const std::string retain_dir =
          absl::StrCat(dir, "/", base, "_retain", 100 - std::stoi(forget));
      if (std::filesystem::exists(eval_dir + "/TOFU_EVAL.json") &&
          std::filesystem::exists(retain_dir + "/TOFU_EVAL.json")) {
        pairs.push_back({eval_dir, retain_dir});
      }
    }
  }
  std::sort(pairs.begin(), pairs.end(),
            [](const ForgetRetainPair& a, const ForgetRetainPair& b) {
              return a.eval_dir < b.eval_dir;
            });
  return pairs;
}

nlohmann::ordered_json ReadLogOrFail(const std::string& path) {
  absl::StatusOr<std::string> text = ReadFileToString(path);
  if (!text.ok()) {
    ADD_FAILURE() << text.status();
    return nullptr;
  }
  nlohmann::ordered_json log =
      nlohmann::ordered_json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (log.is_discarded()) {
    ADD_FAILURE() << path << ": not valid JSON";
    return nullptr;
  }
  return log;
}

}  // namespace lethe
