#include "libs/eval/rouge.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "libs/eval/porter_stemmer.h"

namespace lethe {
namespace {

// Tokens of at most this many characters are not stemmed.
constexpr size_t kLongestUnstemmedToken = 3;

// Decodes the UTF-8 sequence at text[*pos], advancing *pos past it. Returns
// -1 (and advances one byte) for a byte that starts no valid sequence.
int32_t NextCodePoint(absl::string_view text, size_t* pos) {
  const auto byte = [&](size_t i) { return static_cast<uint8_t>(text[i]); };
  const uint8_t lead = byte(*pos);
  size_t length = 0;
  int32_t code_point = 0;
  if (lead < 0x80) {
    ++*pos;
    return lead;
  } else if ((lead & 0xE0) == 0xC0) {
    length = 2;
    code_point = lead & 0x1F;
  } else if ((lead & 0xF0) == 0xE0) {
    length = 3;
    code_point = lead & 0x0F;
  } else if ((lead & 0xF8) == 0xF0) {
    length = 4;
    code_point = lead & 0x07;
  } else {
    ++*pos;
    return -1;
  }
  if (*pos + length > text.size()) {
    ++*pos;
    return -1;
  }
  for (size_t i = 1; i < length; ++i) {
    const uint8_t continuation = byte(*pos + i);
    if ((continuation & 0xC0) != 0x80) {
      ++*pos;
      return -1;
    }
    code_point = (code_point << 6) | (continuation & 0x3F);
  }
  *pos += length;
  return code_point;
}

// Python's str.lower() of `code_point` followed by re.sub("[^a-z0-9]+", " "):
// the ASCII letters and digits it yields, with ' ' standing for a separator.
absl::string_view LowerAlphanumeric(int32_t code_point, char* ascii) {
  if (code_point >= 'A' && code_point <= 'Z') {
    *ascii = static_cast<char>(code_point - 'A' + 'a');
    return absl::string_view(ascii, 1);
  }
  if ((code_point >= 'a' && code_point <= 'z') ||
      (code_point >= '0' && code_point <= '9')) {
    *ascii = static_cast<char>(code_point);
    return absl::string_view(ascii, 1);
  }
  // LATIN CAPITAL LETTER I WITH DOT ABOVE lower-cases to "i" + U+0307.
  if (code_point == 0x0130) return "i ";
  // KELVIN SIGN lower-cases to "k".
  if (code_point == 0x212A) return "k";
  return " ";
}

void AppendToken(std::string* token, std::vector<std::string>* tokens) {
  if (token->empty()) return;
  tokens->push_back(token->size() > kLongestUnstemmedToken ? PorterStem(*token)
                                                           : *token);
  token->clear();
}

size_t LongestCommonSubsequence(const std::vector<std::string>& a,
                                const std::vector<std::string>& b) {
  std::vector<size_t> previous(b.size() + 1, 0);
  std::vector<size_t> current(b.size() + 1, 0);
  for (size_t i = 1; i <= a.size(); ++i) {
    for (size_t j = 1; j <= b.size(); ++j) {
      current[j] = a[i - 1] == b[j - 1] ? previous[j - 1] + 1
                                        : std::max(previous[j], current[j - 1]);
    }
    std::swap(previous, current);
  }
  return previous[b.size()];
}

double FMeasure(double precision, double recall) {
  if (precision + recall > 0) {
    return 2 * precision * recall / (precision + recall);
  }
  return 0.0;
}

RougeScore ScoreUnigrams(const std::vector<std::string>& target,
                         const std::vector<std::string>& prediction) {
  std::map<absl::string_view, int> target_counts;
  std::map<absl::string_view, int> prediction_counts;
  for (const std::string& token : target) ++target_counts[token];
  for (const std::string& token : prediction) ++prediction_counts[token];
  int overlap = 0;
  for (const auto& [token, count] : target_counts) {
    const auto it = prediction_counts.find(token);
    if (it != prediction_counts.end()) overlap += std::min(count, it->second);
  }
  RougeScore score;
  score.precision = static_cast<double>(overlap) /
                    static_cast<double>(std::max<size_t>(prediction.size(), 1));
  score.recall = static_cast<double>(overlap) /
                 static_cast<double>(std::max<size_t>(target.size(), 1));
  score.fmeasure = FMeasure(score.precision, score.recall);
  return score;
}

RougeScore ScoreLongestCommonSubsequence(
    const std::vector<std::string>& target,
    const std::vector<std::string>& prediction) {
  RougeScore score;
  if (target.empty() || prediction.empty()) return score;
  const double lcs =
      static_cast<double>(LongestCommonSubsequence(target, prediction));
  score.precision = lcs / static_cast<double>(prediction.size());
  score.recall = lcs / static_cast<double>(target.size());
  score.fmeasure = FMeasure(score.precision, score.recall);
  return score;
}

}  // namespace

std::vector<std::string> RougeTokenize(absl::string_view text) {
  std::vector<std::string> tokens;
  std::string token;
  size_t pos = 0;
  while (pos < text.size()) {
    char ascii;
    for (const char c : LowerAlphanumeric(NextCodePoint(text, &pos), &ascii)) {
      if (c == ' ') {
        AppendToken(&token, &tokens);
      } else {
        token.push_back(c);
      }
    }
  }
  AppendToken(&token, &tokens);
  return tokens;
}

RougeScores ScoreRouge(absl::string_view target, absl::string_view prediction) {
  const std::vector<std::string> target_tokens = RougeTokenize(target);
  const std::vector<std::string> prediction_tokens = RougeTokenize(prediction);
  RougeScores scores;
  scores.rouge1 = ScoreUnigrams(target_tokens, prediction_tokens);
  scores.rouge_l =
      ScoreLongestCommonSubsequence(target_tokens, prediction_tokens);
  return scores;
}

}  // namespace lethe
