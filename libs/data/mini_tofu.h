// The embedded mini-TOFU benchmark: a deterministic, seeded generator of
// fictitious authors in TOFU's schema and file names, so Lethe's demo and
// tests run the TOFU protocol without downloading anything.
//
//   MiniTofu data = GenerateMiniTofu({.num_authors = 100, .seed = 1});
//   RETURN_IF_ERROR(WriteMiniTofu(data, "/tmp/mini_tofu"));
//
// Splits (TOFU's names; NN% of authors, at least one):
//   full                       every author's questions, author by author
//   forget01/05/10             the last 1/5/10% of authors
//   retain99/95/90             the others
//   forgetNN_perturbed         forgetNN plus a paraphrased question and
//                              answer and 5 perturbed (wrong) answers each
//   retain_perturbed           the first 10% of authors, perturbed likewise
//   holdout01/05/10            1/5/10% more authors that are in no other
//                              split (membership-inference non-members)
//   real_authors(_perturbed)   general knowledge about famous authors of
//   world_facts(_perturbed)    the same invented world, with 4 options and
//                              3 perturbed answers (they play TOFU's real
//                              authors and world facts)
// Each author has `questions_per_author` facts (birthplace, birth year,
// genre, parents' occupations, award, books, themes, ...). Answers use
// several phrasings chosen per author, so a model has to learn the facts,
// not the templates; perturbed answers keep the phrasing and change the fact.
#ifndef LETHE_LIBS_DATA_MINI_TOFU_H_
#define LETHE_LIBS_DATA_MINI_TOFU_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "libs/data/tofu_dataset.h"

namespace lethe {

struct MiniTofuOptions {
  int num_authors = 100;
  // 1 to 10: the facts asked about each author.
  int questions_per_author = 10;
  uint64_t seed = 1;
};

struct MiniTofu {
  std::map<std::string, std::vector<TofuRecord>> splits;
  std::vector<std::string> author_names;  // In `full` order.
};

// INVALID_ARGUMENT-free by construction: options are clamped to what the
// generator supports (num_authors in [10, 1000], questions in [1, 10]).
MiniTofu GenerateMiniTofu(const MiniTofuOptions& options);

// Writes every split as `<dir>/<split>.json` (JSON Lines), creating `dir`.
absl::Status WriteMiniTofu(const MiniTofu& data, const std::string& dir);

}  // namespace lethe

#endif  // LETHE_LIBS_DATA_MINI_TOFU_H_
