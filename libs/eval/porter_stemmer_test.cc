#include "libs/eval/porter_stemmer.h"

#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"

namespace lethe {
namespace {

void ExpectStems(
    const std::vector<std::pair<std::string, std::string>>& cases) {
  for (const auto& [word, stem] : cases) {
    EXPECT_EQ(PorterStem(word), stem) << word;
  }
}

// The examples of Porter's paper, as NLTK stems them ("ties" keeps its "ie"
// under NLTK's extensions).
TEST(PorterStemTest, StepOneExamples) {
  ExpectStems({{"caresses", "caress"}, {"ponies", "poni"},
               {"ties", "tie"},        {"caress", "caress"},
               {"cats", "cat"},        {"feed", "feed"},
               {"agreed", "agre"},     {"plastered", "plaster"},
               {"bled", "bled"},       {"motoring", "motor"},
               {"sing", "sing"},       {"conflated", "conflat"},
               {"troubled", "troubl"}, {"sized", "size"},
               {"hopping", "hop"},     {"tanned", "tan"},
               {"falling", "fall"},    {"hissing", "hiss"},
               {"fizzed", "fizz"},     {"failing", "fail"},
               {"filing", "file"},     {"happy", "happi"},
               {"sky", "sky"}});
}

TEST(PorterStemTest, StepTwoToFiveExamples) {
  ExpectStems({{"relational", "relat"},    {"conditional", "condit"},
               {"rational", "ration"},     {"valenci", "valenc"},
               {"hesitanci", "hesit"},     {"digitizer", "digit"},
               {"conformabli", "conform"}, {"radicalli", "radic"},
               {"differentli", "differ"},  {"vileli", "vile"},
               {"analogousli", "analog"},  {"vietnamization", "vietnam"},
               {"predication", "predic"},  {"operator", "oper"},
               {"feudalism", "feudal"},    {"decisiveness", "decis"},
               {"hopefulness", "hope"},    {"callousness", "callous"},
               {"formaliti", "formal"},    {"sensitiviti", "sensit"},
               {"sensibiliti", "sensibl"}, {"triplicate", "triplic"},
               {"formative", "form"},      {"formalize", "formal"},
               {"electriciti", "electr"},  {"electrical", "electr"},
               {"hopeful", "hope"},        {"goodness", "good"},
               {"revival", "reviv"},       {"allowance", "allow"},
               {"inference", "infer"},     {"airliner", "airlin"},
               {"gyroscopic", "gyroscop"}, {"adjustable", "adjust"},
               {"defensible", "defens"},   {"irritant", "irrit"},
               {"replacement", "replac"},  {"adjustment", "adjust"},
               {"dependent", "depend"},    {"adoption", "adopt"},
               {"homologou", "homolog"},   {"communism", "commun"},
               {"activate", "activ"},      {"angulariti", "angular"},
               {"homologous", "homolog"},  {"effective", "effect"},
               {"bowdlerize", "bowdler"},  {"probate", "probat"},
               {"rate", "rate"},           {"cease", "ceas"},
               {"controll", "control"},    {"roll", "roll"}});
}

TEST(PorterStemTest, NltkExtensions) {
  ExpectStems({{"dying", "die"},
               {"lying", "lie"},
               {"tying", "tie"},
               {"skies", "sky"},
               {"news", "news"},
               {"innings", "inning"},
               {"outings", "outing"},
               {"cannings", "canning"},
               {"howe", "howe"},
               {"proceed", "proceed"},
               {"exceed", "exceed"},
               {"succeed", "succeed"},
               {"enjoy", "enjoy"},
               {"spy", "spi"},
               {"by", "by"},
               {"cried", "cri"},
               {"died", "die"},
               {"hopefulli", "hope"},
               {"analogi", "analog"},
               {"ologi", "olog"},
               {"generously", "gener"},
               {"running", "run"},
               {"generalization", "gener"}});
}

}  // namespace
}  // namespace lethe
