#include "libs/data/tofu_dataset.h"

#include <sys/stat.h>

#include <sstream>

#include "absl/strings/str_cat.h"
#include "libs/files/file_io.h"
#include "libs/status/status_macros.h"
#include "nlohmann/json.hpp"

namespace lethe {
namespace {

using Json = nlohmann::json;

// Reads an optional string field; returns what is wrong, or "".
std::string ReadOptionalString(const Json& object, const std::string& field,
                               std::optional<std::string>* out) {
  if (!object.contains(field) || object[field].is_null()) return "";
  if (!object[field].is_string()) {
    return absl::StrCat("field '", field, "' must be a string");
  }
  *out = object[field].get<std::string>();
  return "";
}

// Fills `record` from `object`; returns a description of what is wrong, or
// an empty string.
std::string ParseRecord(const Json& object, TofuRecord* record) {
  if (!object.is_object()) return "record is not a JSON object";
  for (const char* field : {"question", "answer"}) {
    if (!object.contains(field)) {
      return absl::StrCat("missing required field '", field, "'");
    }
    if (!object[field].is_string()) {
      return absl::StrCat("field '", field, "' must be a string");
    }
  }
  record->question = object["question"].get<std::string>();
  record->answer = object["answer"].get<std::string>();
  for (const auto& [field, target] :
       {std::pair<const char*, std::optional<std::string>*>{
            "paraphrased_question", &record->paraphrased_question},
        {"paraphrased_answer", &record->paraphrased_answer}}) {
    const std::string problem = ReadOptionalString(object, field, target);
    if (!problem.empty()) return problem;
  }
  if (object.contains("perturbed_answer") &&
      !object["perturbed_answer"].is_null()) {
    const Json& perturbed = object["perturbed_answer"];
    if (perturbed.is_string()) {
      record->perturbed_answers.push_back(perturbed.get<std::string>());
    } else if (perturbed.is_array()) {
      for (const Json& answer : perturbed) {
        if (!answer.is_string()) {
          return "field 'perturbed_answer' must hold strings only";
        }
        record->perturbed_answers.push_back(answer.get<std::string>());
      }
    } else {
      return "field 'perturbed_answer' must be a list of strings";
    }
  }
  for (int i = 1; i <= 4; ++i) {
    const std::string field = absl::StrCat("option", i);
    if (!object.contains(field)) break;
    if (!object[field].is_string()) {
      return absl::StrCat("field '", field, "' must be a string");
    }
    record->options.push_back(object[field].get<std::string>());
  }
  return "";
}

bool Exists(const std::string& path) {
  struct stat info;
  return stat(path.c_str(), &info) == 0;
}

}  // namespace

bool TofuRecord::operator==(const TofuRecord& other) const {
  return question == other.question && answer == other.answer &&
         paraphrased_question == other.paraphrased_question &&
         paraphrased_answer == other.paraphrased_answer &&
         perturbed_answers == other.perturbed_answers &&
         options == other.options;
}

absl::StatusOr<std::vector<TofuRecord>> ReadTofuFile(const std::string& path) {
  ASSIGN_OR_RETURN(const std::string text, ReadFileToString(path));
  const size_t first = text.find_first_not_of(" \t\r\n");
  std::vector<TofuRecord> records;
  if (first == std::string::npos) return records;

  if (text[first] == '[') {
    Json array = Json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (array.is_discarded() || !array.is_array()) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": starts with '[' but is not a valid JSON array"));
    }
    records.reserve(array.size());
    for (size_t i = 0; i < array.size(); ++i) {
      TofuRecord record;
      const std::string problem = ParseRecord(array[i], &record);
      if (!problem.empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat(path, ": record ", i, ": ", problem));
      }
      records.push_back(std::move(record));
    }
    return records;
  }

  std::istringstream lines(text);
  std::string line;
  int line_number = 0;
  while (std::getline(lines, line)) {
    ++line_number;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    Json object = Json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (object.is_discarded()) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ":", line_number, ": not valid JSON"));
    }
    TofuRecord record;
    const std::string problem = ParseRecord(object, &record);
    if (!problem.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ":", line_number, ": ", problem));
    }
    records.push_back(std::move(record));
  }
  return records;
}

absl::StatusOr<std::vector<TofuRecord>> ReadTofuSplit(
    const std::string& data_dir, const std::string& split) {
  const std::string json_path = absl::StrCat(data_dir, "/", split, ".json");
  const std::string jsonl_path = absl::StrCat(data_dir, "/", split, ".jsonl");
  if (Exists(json_path)) return ReadTofuFile(json_path);
  if (Exists(jsonl_path)) return ReadTofuFile(jsonl_path);
  return absl::NotFoundError(absl::StrCat("split '", split, "' not found: no ",
                                          json_path, " or ", jsonl_path));
}

absl::Status WriteTofuFile(const std::string& path,
                           const std::vector<TofuRecord>& records) {
  std::string lines;
  for (const TofuRecord& record : records) {
    nlohmann::ordered_json object;
    object["question"] = record.question;
    object["answer"] = record.answer;
    if (record.paraphrased_answer.has_value()) {
      object["paraphrased_answer"] = *record.paraphrased_answer;
    }
    if (!record.perturbed_answers.empty()) {
      object["perturbed_answer"] = record.perturbed_answers;
    }
    if (record.paraphrased_question.has_value()) {
      object["paraphrased_question"] = *record.paraphrased_question;
    }
    for (size_t i = 0; i < record.options.size(); ++i) {
      object[absl::StrCat("option", i + 1)] = record.options[i];
    }
    absl::StrAppend(&lines, object.dump(), "\n");
  }
  return WriteFileAtomically(path, lines);
}

}  // namespace lethe
