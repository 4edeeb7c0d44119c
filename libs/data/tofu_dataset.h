// TOFU-format question-answer data: a directory of split files
// (`forget10.json`, `retain90.json`, `forget10_perturbed.json`, ...), each
// either JSON Lines (one object per line) or a single JSON array; both occur
// in the wild.
//
//   ASSIGN_OR_RETURN(std::vector<TofuRecord> forget,
//                    ReadTofuSplit("/data/tofu", "forget10"));
//
// Records need `question` and `answer` (strings); `paraphrased_answer`,
// `paraphrased_question`, `perturbed_answer` (a list of strings) and
// `option1`..`option4` are optional. A malformed record is an
// INVALID_ARGUMENT naming the file and the line (JSON Lines) or the record
// index (arrays) and what is wrong with it.
#ifndef LETHE_LIBS_DATA_TOFU_DATASET_H_
#define LETHE_LIBS_DATA_TOFU_DATASET_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace lethe {

struct TofuRecord {
  std::string question;
  std::string answer;
  std::optional<std::string> paraphrased_question;
  std::optional<std::string> paraphrased_answer;
  std::vector<std::string> perturbed_answers;
  std::vector<std::string> options;  // option1..option4, in order.

  bool operator==(const TofuRecord& other) const;
};

absl::StatusOr<std::vector<TofuRecord>> ReadTofuFile(const std::string& path);

// Reads `<data_dir>/<split>.json`, or `<split>.jsonl` when only that exists.
// NOT_FOUND naming both candidates when neither does.
absl::StatusOr<std::vector<TofuRecord>> ReadTofuSplit(
    const std::string& data_dir, const std::string& split);

// Writes JSON Lines atomically (temporary file, then rename).
absl::Status WriteTofuFile(const std::string& path,
                           const std::vector<TofuRecord>& records);

}  // namespace lethe

#endif  // LETHE_LIBS_DATA_TOFU_DATASET_H_
