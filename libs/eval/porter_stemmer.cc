#include "libs/eval/porter_stemmer.h"

#include <cstddef>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace lethe {
namespace {

bool IsConsonant(absl::string_view word, size_t i) {
  switch (word[i]) {
    case 'a':
    case 'e':
    case 'i':
    case 'o':
    case 'u':
      return false;
    case 'y':
      // "y" is a consonant at the start and after a vowel, a vowel otherwise.
      return i == 0 || !IsConsonant(word, i - 1);
    default:
      return true;
  }
}

// Porter's m: writing `stem` as [C](VC)^m[V], the number of VC pairs.
int Measure(absl::string_view stem) {
  int measure = 0;
  bool after_vowel = false;
  for (size_t i = 0; i < stem.size(); ++i) {
    const bool consonant = IsConsonant(stem, i);
    if (consonant && after_vowel) ++measure;
    after_vowel = !consonant;
  }
  return measure;
}

bool ContainsVowel(absl::string_view stem) {
  for (size_t i = 0; i < stem.size(); ++i) {
    if (!IsConsonant(stem, i)) return true;
  }
  return false;
}

// Porter's *d.
bool EndsWithDoubleConsonant(absl::string_view word) {
  const size_t n = word.size();
  return n >= 2 && word[n - 1] == word[n - 2] && IsConsonant(word, n - 1);
}

// Porter's *o (consonant-vowel-consonant, the last not w, x or y), which NLTK
// extends to two-letter stems of a vowel and a consonant.
bool EndsWithCvc(absl::string_view word) {
  const size_t n = word.size();
  if (n == 2) return !IsConsonant(word, 0) && IsConsonant(word, 1);
  return n >= 3 && IsConsonant(word, n - 3) && !IsConsonant(word, n - 2) &&
         IsConsonant(word, n - 1) && word[n - 1] != 'w' && word[n - 1] != 'x' &&
         word[n - 1] != 'y';
}

absl::string_view DropSuffix(absl::string_view word, size_t length) {
  return word.substr(0, word.size() - length);
}

enum class Condition {
  kAlways,
  kMeasureAbove0,
  kMeasureAbove1,
  kMeasureAbove1AndEndsWithSOrT,
  // NLTK's "-logi" rule tests the measure of the stem plus its "l".
  kMeasureAbove0WithL,
};

struct SuffixRule {
  absl::string_view suffix;
  absl::string_view replacement;
  Condition condition;
};

bool Holds(Condition condition, absl::string_view stem) {
  switch (condition) {
    case Condition::kAlways:
      return true;
    case Condition::kMeasureAbove0:
      return Measure(stem) > 0;
    case Condition::kMeasureAbove1:
      return Measure(stem) > 1;
    case Condition::kMeasureAbove1AndEndsWithSOrT:
      return Measure(stem) > 1 && (stem.back() == 's' || stem.back() == 't');
    case Condition::kMeasureAbove0WithL:
      // `stem` views the word, where the suffix's "l" follows it.
      return Measure(absl::string_view(stem.data(), stem.size() + 1)) > 0;
  }
  return false;
}

// The first rule whose suffix ends `word` decides: its suffix is replaced
// when the condition holds for what precedes it, else `word` stays as is.
std::string ApplyFirstMatchingRule(absl::string_view word,
                                   absl::Span<const SuffixRule> rules) {
  for (const SuffixRule& rule : rules) {
    if (!absl::EndsWith(word, rule.suffix)) continue;
    const absl::string_view stem = DropSuffix(word, rule.suffix.size());
    if (!Holds(rule.condition, stem)) return std::string(word);
    return std::string(stem) + std::string(rule.replacement);
  }
  return std::string(word);
}

const SuffixRule kStep1aRules[] = {
    {"sses", "ss", Condition::kAlways},
    {"ies", "i", Condition::kAlways},
    {"ss", "ss", Condition::kAlways},
    {"s", "", Condition::kAlways},
};

const SuffixRule kStep2Rules[] = {
    {"ational", "ate", Condition::kMeasureAbove0},
    {"tional", "tion", Condition::kMeasureAbove0},
    {"enci", "ence", Condition::kMeasureAbove0},
    {"anci", "ance", Condition::kMeasureAbove0},
    {"izer", "ize", Condition::kMeasureAbove0},
    {"bli", "ble", Condition::kMeasureAbove0},
    {"alli", "al", Condition::kMeasureAbove0},
    {"entli", "ent", Condition::kMeasureAbove0},
    {"eli", "e", Condition::kMeasureAbove0},
    {"ousli", "ous", Condition::kMeasureAbove0},
    {"ization", "ize", Condition::kMeasureAbove0},
    {"ation", "ate", Condition::kMeasureAbove0},
    {"ator", "ate", Condition::kMeasureAbove0},
    {"alism", "al", Condition::kMeasureAbove0},
    {"iveness", "ive", Condition::kMeasureAbove0},
    {"fulness", "ful", Condition::kMeasureAbove0},
    {"ousness", "ous", Condition::kMeasureAbove0},
    {"aliti", "al", Condition::kMeasureAbove0},
    {"iviti", "ive", Condition::kMeasureAbove0},
    {"biliti", "ble", Condition::kMeasureAbove0},
    {"fulli", "ful", Condition::kMeasureAbove0},
    {"logi", "log", Condition::kMeasureAbove0WithL},
};

const SuffixRule kStep3Rules[] = {
    {"icate", "ic", Condition::kMeasureAbove0},
    {"ative", "", Condition::kMeasureAbove0},
    {"alize", "al", Condition::kMeasureAbove0},
    {"iciti", "ic", Condition::kMeasureAbove0},
    {"ical", "ic", Condition::kMeasureAbove0},
    {"ful", "", Condition::kMeasureAbove0},
    {"ness", "", Condition::kMeasureAbove0},
};

const SuffixRule kStep4Rules[] = {
    {"al", "", Condition::kMeasureAbove1},
    {"ance", "", Condition::kMeasureAbove1},
    {"ence", "", Condition::kMeasureAbove1},
    {"er", "", Condition::kMeasureAbove1},
    {"ic", "", Condition::kMeasureAbove1},
    {"able", "", Condition::kMeasureAbove1},
    {"ible", "", Condition::kMeasureAbove1},
    {"ant", "", Condition::kMeasureAbove1},
    {"ement", "", Condition::kMeasureAbove1},
    {"ment", "", Condition::kMeasureAbove1},
    {"ent", "", Condition::kMeasureAbove1},
    {"ion", "", Condition::kMeasureAbove1AndEndsWithSOrT},
    {"ou", "", Condition::kMeasureAbove1},
    {"ism", "", Condition::kMeasureAbove1},
    {"ate", "", Condition::kMeasureAbove1},
    {"iti", "", Condition::kMeasureAbove1},
    {"ous", "", Condition::kMeasureAbove1},
    {"ive", "", Condition::kMeasureAbove1},
    {"ize", "", Condition::kMeasureAbove1},
};

// Plurals: "caresses" -> "caress", "ponies" -> "poni", "ties" -> "tie".
std::string Step1a(absl::string_view word) {
  if (word.size() == 4 && absl::EndsWith(word, "ies")) {
    return std::string(DropSuffix(word, 3)) + "ie";
  }
  return ApplyFirstMatchingRule(word, kStep1aRules);
}

// "-eed", "-ed", "-ing": "agreed" -> "agree", "hopping" -> "hop",
// "filing" -> "file".
std::string Step1b(absl::string_view word) {
  if (absl::EndsWith(word, "ied")) {
    return std::string(DropSuffix(word, 3)) + (word.size() == 4 ? "ie" : "i");
  }
  if (absl::EndsWith(word, "eed")) {
    const absl::string_view stem = DropSuffix(word, 3);
    return Measure(stem) > 0 ? std::string(stem) + "ee" : std::string(word);
  }
  absl::string_view stem;
  if (absl::EndsWith(word, "ed") && ContainsVowel(DropSuffix(word, 2))) {
    stem = DropSuffix(word, 2);
  } else if (absl::EndsWith(word, "ing") &&
             ContainsVowel(DropSuffix(word, 3))) {
    stem = DropSuffix(word, 3);
  } else {
    return std::string(word);
  }
  if (absl::EndsWith(stem, "at") || absl::EndsWith(stem, "bl") ||
      absl::EndsWith(stem, "iz")) {
    return std::string(stem) + "e";
  }
  if (EndsWithDoubleConsonant(stem)) {
    const char last = stem.back();
    if (last == 'l' || last == 's' || last == 'z') return std::string(stem);
    return std::string(DropSuffix(stem, 1));
  }
  if (Measure(stem) == 1 && EndsWithCvc(stem)) return std::string(stem) + "e";
  return std::string(stem);
}

// "y" -> "i" after a consonant that is not the first letter: "happy" ->
// "happi", "enjoy" and "by" stay.
std::string Step1c(absl::string_view word) {
  if (absl::EndsWith(word, "y") && word.size() > 2 &&
      IsConsonant(word, word.size() - 2)) {
    return std::string(DropSuffix(word, 1)) + "i";
  }
  return std::string(word);
}

// Double suffixes to single ones: "relational" -> "relate".
std::string Step2(absl::string_view word) {
  if (absl::EndsWith(word, "alli") && Measure(DropSuffix(word, 4)) > 0) {
    return Step2(std::string(DropSuffix(word, 4)) + "al");
  }
  return ApplyFirstMatchingRule(word, kStep2Rules);
}

// "-e": "probate" -> "probat", "cease" -> "ceas", "rate" stays.
std::string Step5a(absl::string_view word) {
  if (!absl::EndsWith(word, "e")) return std::string(word);
  const absl::string_view stem = DropSuffix(word, 1);
  const int measure = Measure(stem);
  if (measure > 1 || (measure == 1 && !EndsWithCvc(stem))) {
    return std::string(stem);
  }
  return std::string(word);
}

// "-ll" -> "-l" for long stems: "controll" -> "control", "roll" stays.
std::string Step5b(absl::string_view word) {
  if (absl::EndsWith(word, "ll") && Measure(DropSuffix(word, 1)) > 1) {
    return std::string(DropSuffix(word, 1));
  }
  return std::string(word);
}

struct IrregularForm {
  absl::string_view word;
  absl::string_view stem;
};

const IrregularForm kIrregularForms[] = {
    {"sky", "sky"},         {"skies", "sky"},        {"dying", "die"},
    {"lying", "lie"},       {"tying", "tie"},        {"news", "news"},
    {"innings", "inning"},  {"inning", "inning"},    {"outings", "outing"},
    {"outing", "outing"},   {"cannings", "canning"}, {"canning", "canning"},
    {"howe", "howe"},       {"proceed", "proceed"},  {"exceed", "exceed"},
    {"succeed", "succeed"},
};

}  // namespace

std::string PorterStem(absl::string_view word) {
  for (const IrregularForm& form : kIrregularForms) {
    if (word == form.word) return std::string(form.stem);
  }
  if (word.size() <= 2) return std::string(word);
  std::string stem = Step1a(word);
  stem = Step1b(stem);
  stem = Step1c(stem);
  stem = Step2(stem);
  stem = ApplyFirstMatchingRule(stem, kStep3Rules);
  stem = ApplyFirstMatchingRule(stem, kStep4Rules);
  stem = Step5a(stem);
  return Step5b(stem);
}

}  // namespace lethe
