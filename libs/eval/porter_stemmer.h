// The Porter stemmer as NLTK's PorterStemmer runs it by default
// (mode NLTK_EXTENSIONS), which rouge_score applies when use_stemmer=True.
//
//   PorterStem("running") == "run";  PorterStem("happiness") == "happi";
//
// `word` is expected lower-case ASCII; other bytes count as consonants. The
// NLTK extensions over Porter's 1980 paper: a few irregular forms ("skies",
// "dying", "news", ...) map straight to fixed stems, words of at most two
// letters are returned unchanged, "-ies"/"-ied" on four-letter words keep
// "ie", "y" becomes "i" only after a consonant that is not the first letter,
// and step 2 also maps "-fulli" to "-ful" and "-logi" to "-log".
#ifndef LETHE_LIBS_EVAL_PORTER_STEMMER_H_
#define LETHE_LIBS_EVAL_PORTER_STEMMER_H_

#include <string>

#include "absl/strings/string_view.h"

namespace lethe {

std::string PorterStem(absl::string_view word);

}  // namespace lethe

#endif  // LETHE_LIBS_EVAL_PORTER_STEMMER_H_
