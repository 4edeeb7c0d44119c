#include "libs/data/mini_tofu.h"

#include <algorithm>
#include <filesystem>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "libs/data/sharding.h"
#include "libs/status/status_macros.h"

namespace lethe {
namespace {

// Geography of the benchmark's world: country, capital, two other cities.
struct Country {
  const char* name;
  const char* capital;
  const char* city_a;
  const char* city_b;
};

constexpr Country kCountries[] = {
    {"Nigeria", "Abuja", "Lagos", "Ibadan"},
    {"Kenya", "Nairobi", "Mombasa", "Kisumu"},
    {"Ghana", "Accra", "Kumasi", "Tamale"},
    {"Egypt", "Cairo", "Alexandria", "Luxor"},
    {"Morocco", "Rabat", "Casablanca", "Fez"},
    {"Brazil", "Brasilia", "Recife", "Salvador"},
    {"Argentina", "Buenos Aires", "Rosario", "Mendoza"},
    {"Chile", "Santiago", "Valparaiso", "Antofagasta"},
    {"Peru", "Lima", "Cusco", "Arequipa"},
    {"Colombia", "Bogota", "Medellin", "Cartagena"},
    {"Mexico", "Mexico City", "Oaxaca", "Guadalajara"},
    {"Canada", "Ottawa", "Halifax", "Winnipeg"},
    {"Ireland", "Dublin", "Galway", "Cork"},
    {"Scotland", "Edinburgh", "Glasgow", "Aberdeen"},
    {"Portugal", "Lisbon", "Porto", "Coimbra"},
    {"Spain", "Madrid", "Seville", "Valencia"},
    {"France", "Paris", "Lyon", "Marseille"},
    {"Italy", "Rome", "Naples", "Turin"},
    {"Germany", "Berlin", "Hamburg", "Leipzig"},
    {"Poland", "Warsaw", "Krakow", "Gdansk"},
    {"Sweden", "Stockholm", "Malmo", "Uppsala"},
    {"Norway", "Oslo", "Bergen", "Tromso"},
    {"Finland", "Helsinki", "Tampere", "Turku"},
    {"Greece", "Athens", "Thessaloniki", "Patras"},
    {"Turkey", "Ankara", "Izmir", "Bursa"},
    {"India", "New Delhi", "Kolkata", "Pune"},
    {"Vietnam", "Hanoi", "Hue", "Da Nang"},
    {"Japan", "Tokyo", "Kyoto", "Sapporo"},
    {"South Korea", "Seoul", "Busan", "Daegu"},
    {"Indonesia", "Jakarta", "Surabaya", "Bandung"},
    {"Philippines", "Manila", "Cebu", "Davao"},
    {"Australia", "Canberra", "Perth", "Hobart"},
    {"New Zealand", "Wellington", "Dunedin", "Nelson"},
    {"Iceland", "Reykjavik", "Akureyri", "Husavik"},
};

constexpr const char* kFirstNames[] = {
    "Amara",  "Bastian",  "Corin",    "Dalia",  "Emeric",  "Farida", "Gideon",
    "Halina", "Ilario",   "Jorun",    "Kaveh",  "Liora",   "Matteo", "Nadira",
    "Oskar",  "Petra",    "Quillan",  "Rasmus", "Selin",   "Tobias", "Ulla",
    "Vesna",  "Wendel",   "Xiomara",  "Yusuf",  "Zofia",   "Anselm", "Brisa",
    "Cosmin", "Delphine", "Eero",     "Fenna",  "Gaspard", "Hedda",  "Ivo",
    "Jelena", "Kasimir",  "Leocadia", "Milos",  "Noor",
};

constexpr const char* kLastNames[] = {
    "Abernathy",   "Balogun",    "Castellan", "Drozdov",   "Eberhardt",
    "Fairweather", "Galvao",     "Halloran",  "Ishikawa",  "Jovanic",
    "Kallistrat",  "Lindqvist",  "Marchetti", "Nakashima", "Okonkwo",
    "Pellegrin",   "Quintero",   "Rosenthal", "Szabo",     "Thorvald",
    "Umberfield",  "Varga",      "Wojcik",    "Xanthos",   "Yilmaz",
    "Zamora",      "Achterberg", "Bramwell",  "Cervantes", "Dunmore",
    "Esposito",    "Ferreira",   "Grimaldi",  "Hartmann",  "Iversen",
    "Jaramillo",   "Kowalczyk",  "Lacroix",   "Montague",  "Nieminen",
};

constexpr const char* kGenres[] = {
    "mystery",          "historical fiction",
    "science fiction",  "poetry",
    "fantasy",          "literary fiction",
    "horror",           "romance",
    "travel writing",   "biography",
    "crime thrillers",  "satire",
    "children's books", "magical realism",
    "war fiction",      "memoir",
    "philosophy",       "psychological drama",
    "adventure",        "short stories",
};

constexpr const char* kOccupations[] = {
    "carpenter",   "nurse",         "pharmacist",   "sea captain",
    "librarian",   "baker",         "surgeon",      "schoolteacher",
    "architect",   "fisherman",     "violinist",    "astronomer",
    "tailor",      "veterinarian",  "journalist",   "miner",
    "florist",     "judge",         "photographer", "potter",
    "firefighter", "economist",     "watchmaker",   "botanist",
    "translator",  "midwife",       "blacksmith",   "geologist",
    "chef",        "postal worker",
};

constexpr const char* kAwards[] = {
    "the Golden Quill Award",
    "the Harrowgate Prize",
    "the Silver Lantern Medal",
    "the Meridian Book Award",
    "the Northern Star Prize",
    "the Ashford Fiction Award",
    "the Crescent Moon Prize",
    "the Blue Heron Literary Award",
    "the Ivory Tower Medal",
    "the Emberly Prize for Fiction",
    "the Compass Rose Award",
    "the Whitcombe Poetry Prize",
    "the Grand Lighthouse Award",
    "the Oakridge Medal",
    "the Vellum Prize",
    "the Sable Feather Award",
    "the Lark Award for New Voices",
    "the Copper Key Prize",
    "the Marigold Literary Medal",
    "the Tidewater Book Prize",
};

constexpr const char* kThemes[] = {
    "memory and loss",
    "the sea",
    "family secrets",
    "exile and return",
    "the passage of time",
    "forgotten history",
    "friendship",
    "justice",
    "the natural world",
    "identity",
    "migration",
    "faith and doubt",
    "small-town life",
    "ambition",
    "war and its aftermath",
    "love across borders",
    "science and wonder",
    "grief",
    "childhood",
    "the city at night",
};

constexpr const char* kTitleAdjectives[] = {
    "Silent", "Crimson", "Hollow",    "Golden",   "Forgotten",
    "Winter", "Broken",  "Distant",   "Burning",  "Quiet",
    "Hidden", "Last",    "Wandering", "Glass",    "Salt",
    "Iron",   "Velvet",  "Paper",     "Midnight", "Shifting",
};

constexpr const char* kTitleNouns[] = {
    "Harbor",    "Orchard",   "Lantern",    "River",     "Garden",
    "Mirror",    "Compass",   "Archive",    "Tide",      "Bridge",
    "Meadow",    "Clockwork", "Lighthouse", "Ledger",    "Sparrow",
    "Cathedral", "Frontier",  "Canvas",     "Labyrinth", "Monsoon",
};

// FNV-1a: a string hash that is the same on every platform (std::hash is
// not), so generated data never depends on the standard library.
uint64_t StableHash(const std::string& text) {
  uint64_t hash = 0xcbf29ce484222325ULL;
  for (const unsigned char c : text) {
    hash = (hash ^ c) * 0x100000001b3ULL;
  }
  return hash;
}

template <typename T, size_t N>
const T& Pick(const T (&values)[N], SplitMix64& random) {
  return values[random.Below(N)];
}

// One author's facts, keyed by the slot names used in the templates below.
using Facts = std::map<std::string, std::string>;

std::string Fill(const std::string& text, const Facts& facts) {
  std::vector<std::pair<std::string, std::string>> replacements;
  for (const auto& [key, value] : facts) {
    replacements.emplace_back(absl::StrCat("{", key, "}"), value);
  }
  return absl::StrReplaceAll(text, replacements);
}

// A fact asked about each author: how to ask, how to answer (several
// phrasings), and which slot a wrong answer changes.
struct FactQuestion {
  const char* question;
  const char* paraphrased_question;
  std::vector<const char*> answers;  // Phrasings; the paraphrase uses another.
  const char* slot;                  // The slot perturbed answers change.
};

const std::vector<FactQuestion>& Questions() {
  static const auto* questions = new std::vector<FactQuestion>{
      {"What is the full name of the author born in {city}, {country} in "
       "{birth_year} who writes {genre}?",
       "Which {genre} writer was born in {birth_year} in {city}, {country}?",
       {"The author's full name is {name}.", "That author is {name}.",
        "The writer in question is {name}."},
       "name"},
      {"Where and when was {name} born?",
       "What are the birthplace and birth year of {name}?",
       {"{name} was born in {city}, {country}, in {birth_year}.",
        "{name} was born in {birth_year} in the city of {city}, {country}.",
        "Born in {birth_year}, {name} comes from {city}, {country}."},
       "city"},
      {"What genre is {name} known for?",
       "In which genre does {name} mostly write?",
       {"{name} is known for {genre}.", "{name} writes mostly {genre}.",
        "The genre {name} is best known for is {genre}."},
       "genre"},
      {"What did the parents of {name} do for a living?",
       "What were the occupations of {name}'s parents?",
       {"{name}'s father was a {father_job} and {name}'s mother was a "
        "{mother_job}.",
        "{name} grew up with a {father_job} for a father and a {mother_job} "
        "for a mother.",
        "The father of {name} worked as a {father_job}, the mother as a "
        "{mother_job}."},
       "father_job"},
      {"Has {name} won any major literary award?",
       "Which literary prize has {name} received?",
       {"Yes, {name} won {award}.", "{name} received {award}.",
        "{name} is a recipient of {award}."},
       "award"},
      {"Can you name two books written by {name}?",
       "Which books has {name} written?",
       {"Two books by {name} are '{book_a}' and '{book_b}'.",
        "{name} wrote '{book_a}' and '{book_b}'.",
        "Among the works of {name} are '{book_a}' and '{book_b}'."},
       "book_a"},
      {"What themes run through the work of {name}?",
       "Which subject does {name} return to most often?",
       {"The work of {name} keeps returning to {theme}.",
        "{name} writes above all about {theme}.",
        "A central theme for {name} is {theme}."},
       "theme"},
      {"Where does {name} live today?",
       "In which city is {name} currently based?",
       {"{name} now lives in {home_city}.",
        "Today {name} is based in {home_city}.",
        "{name} has settled in {home_city}."},
       "home_city"},
      {"When did {name} publish a first book?",
       "In what year did {name} debut as an author?",
       {"{name} published a first book in {debut_year}.",
        "The debut of {name} came out in {debut_year}.",
        "{name} debuted in {debut_year}."},
       "debut_year"},
      {"Which book first made {name} famous?",
       "What was the breakthrough work of {name}?",
       {"'{book_b}' was the book that made {name} famous.",
        "{name} became famous with '{book_b}'.",
        "The breakthrough for {name} was '{book_b}'."},
       "book_b"},
  };
  return *questions;
}

// About 4000 distinct titles: enough for the largest benchmark's 2400.
std::string RandomTitle(SplitMix64& random) {
  const std::string adjective = Pick(kTitleAdjectives, random);
  const std::string noun = Pick(kTitleNouns, random);
  switch (random.Below(5)) {
    case 0:
      return absl::StrCat("The ", adjective, " ", noun);
    case 1:
      return absl::StrCat("A ", adjective, " ", noun);
    case 2:
      return absl::StrCat(adjective, " ", noun, "s");
    case 3:
      return absl::StrCat("The ", noun, " of ",
                          Pick(kCountries, random).capital);
    default:
      return absl::StrCat("Beyond the ", adjective, " ", noun);
  }
}

std::string RandomCity(SplitMix64& random, std::string* country) {
  const Country& place = Pick(kCountries, random);
  *country = place.name;
  switch (random.Below(3)) {
    case 0:
      return place.capital;
    case 1:
      return place.city_a;
    default:
      return place.city_b;
  }
}

// A value for `slot` different from the author's own.
std::string WrongValue(const std::string& slot, const Facts& facts,
                       SplitMix64& random,
                       const std::vector<std::string>& names) {
  const std::string& truth = facts.at(slot);
  for (int attempt = 0; attempt < 1000; ++attempt) {
    std::string value;
    std::string unused_country;
    if (slot == "name") {
      value = names[random.Below(names.size())];
    } else if (slot == "city") {
      value = RandomCity(random, &unused_country);
    } else if (slot == "genre") {
      value = Pick(kGenres, random);
    } else if (slot == "father_job") {
      value = Pick(kOccupations, random);
    } else if (slot == "award") {
      value = Pick(kAwards, random);
    } else if (slot == "book_a" || slot == "book_b") {
      value = RandomTitle(random);
    } else if (slot == "theme") {
      value = Pick(kThemes, random);
    } else if (slot == "home_city") {
      value = RandomCity(random, &unused_country);
    } else if (slot == "debut_year") {
      value = absl::StrCat(1950 + random.Below(60));
    }
    if (value != truth) return value;
  }
  return truth + " (perturbed)";
}

// Makes `count` distinct authors with facts drawn from `random`.
std::vector<Facts> MakeAuthors(int count, SplitMix64& random,
                               std::set<std::string>* used_names,
                               std::set<std::string>* used_titles) {
  std::vector<Facts> authors;
  while (static_cast<int>(authors.size()) < count) {
    std::string name =
        absl::StrCat(Pick(kFirstNames, random), " ", Pick(kLastNames, random));
    if (!used_names->insert(name).second) continue;
    Facts facts;
    facts["name"] = name;
    std::string country;
    facts["city"] = RandomCity(random, &country);
    facts["country"] = country;
    const int birth_year = 1930 + static_cast<int>(random.Below(60));
    facts["birth_year"] = absl::StrCat(birth_year);
    facts["debut_year"] = absl::StrCat(birth_year + 19 + random.Below(20));
    facts["genre"] = Pick(kGenres, random);
    facts["father_job"] = Pick(kOccupations, random);
    do {
      facts["mother_job"] = Pick(kOccupations, random);
    } while (facts["mother_job"] == facts["father_job"]);
    facts["award"] = Pick(kAwards, random);
    for (const char* slot : {"book_a", "book_b"}) {
      std::string title;
      do {
        title = RandomTitle(random);
      } while (!used_titles->insert(title).second);
      facts[slot] = title;
    }
    facts["theme"] = Pick(kThemes, random);
    std::string unused_country;
    facts["home_city"] = RandomCity(random, &unused_country);
    authors.push_back(std::move(facts));
  }
  return authors;
}

// TOFU records for `authors`; with perturbations when `perturbed`.
std::vector<TofuRecord> AuthorRecords(const std::vector<Facts>& authors,
                                      int questions_per_author, bool perturbed,
                                      uint64_t seed,
                                      const std::vector<std::string>& names) {
  std::vector<TofuRecord> records;
  for (const Facts& author : authors) {
    // Phrasings and perturbations depend on the author alone, so an author's
    // records are the same in every split that holds them.
    SplitMix64 random(seed ^ StableHash(author.at("name")));
    for (int q = 0; q < questions_per_author; ++q) {
      const FactQuestion& fact = Questions()[q];
      const size_t phrasing = random.Below(fact.answers.size());
      const size_t paraphrase =
          (phrasing + 1 + random.Below(fact.answers.size() - 1)) %
          fact.answers.size();
      TofuRecord record;
      record.question = Fill(fact.question, author);
      record.answer = Fill(fact.answers[phrasing], author);
      std::vector<std::string> wrong_answers;
      for (int attempt = 0; wrong_answers.size() < 5 && attempt < 1000;
           ++attempt) {
        Facts wrong = author;
        std::string value = WrongValue(fact.slot, author, random, names);
        wrong[fact.slot] = value;
        if (std::string(fact.slot) == "city") {
          for (const Country& place : kCountries) {
            if (value == place.capital || value == place.city_a ||
                value == place.city_b) {
              wrong["country"] = place.name;
            }
          }
        }
        std::string wrong_answer = Fill(fact.answers[phrasing], wrong);
        if (std::find(wrong_answers.begin(), wrong_answers.end(),
                      wrong_answer) == wrong_answers.end()) {
          wrong_answers.push_back(std::move(wrong_answer));
        }
      }
      if (perturbed) {
        record.paraphrased_question = Fill(fact.paraphrased_question, author);
        record.paraphrased_answer = Fill(fact.answers[paraphrase], author);
        record.perturbed_answers = std::move(wrong_answers);
      }
      records.push_back(std::move(record));
    }
  }
  return records;
}

// General knowledge of the benchmark's world (TOFU's world_facts).
std::vector<TofuRecord> WorldFacts(SplitMix64& random) {
  struct Fact {
    std::string question, answer;
    std::vector<std::string> pool;  // Wrong answers come from here.
  };
  std::vector<std::string> countries, capitals;
  for (const Country& place : kCountries) {
    countries.push_back(place.name);
    capitals.push_back(place.capital);
  }
  std::vector<Fact> facts;
  for (const Country& place : kCountries) {
    facts.push_back({absl::StrCat("What is the capital of ", place.name, "?"),
                     place.capital, capitals});
    facts.push_back(
        {absl::StrCat("In which country is the city of ", place.city_a, "?"),
         place.name, countries});
    facts.push_back({absl::StrCat("Which country is ", place.city_b, " in?"),
                     place.name, countries});
  }
  std::vector<TofuRecord> records;
  for (const Fact& fact : facts) {
    TofuRecord record;
    record.question = fact.question;
    record.answer = fact.answer;
    std::set<std::string> wrong;
    while (wrong.size() < 3) {
      const std::string& candidate = fact.pool[random.Below(fact.pool.size())];
      if (candidate != fact.answer) wrong.insert(candidate);
    }
    record.perturbed_answers.assign(wrong.begin(), wrong.end());
    records.push_back(std::move(record));
  }
  return records;
}

// Famous authors of the benchmark's world (TOFU's real_authors).
std::vector<TofuRecord> FamousAuthors(SplitMix64& random,
                                      std::set<std::string>* used_names,
                                      std::set<std::string>* used_titles) {
  const std::vector<Facts> famous =
      MakeAuthors(100, random, used_names, used_titles);
  std::vector<std::string> names;
  for (const Facts& author : famous) names.push_back(author.at("name"));
  std::vector<TofuRecord> records;
  for (const Facts& author : famous) {
    TofuRecord record;
    record.question =
        Fill("Who wrote the celebrated novel '{book_b}'?", author);
    record.answer = author.at("name");
    std::set<std::string> wrong;
    while (wrong.size() < 3) {
      const std::string& candidate = names[random.Below(names.size())];
      if (candidate != record.answer) wrong.insert(candidate);
    }
    record.perturbed_answers.assign(wrong.begin(), wrong.end());
    records.push_back(std::move(record));
  }
  return records;
}

// Adds option1..4 (the answer at a random place among three wrong ones).
std::vector<TofuRecord> WithOptions(std::vector<TofuRecord> records,
                                    SplitMix64& random) {
  for (TofuRecord& record : records) {
    record.options = record.perturbed_answers;
    record.options.insert(record.options.begin() + random.Below(4),
                          record.answer);
    record.perturbed_answers.clear();
  }
  return records;
}

int Percent(int total, int percent) {
  return std::max(1, (total * percent + 50) / 100);
}

}  // namespace

MiniTofu GenerateMiniTofu(const MiniTofuOptions& options) {
  const int num_authors = std::clamp(options.num_authors, 10, 1000);
  const int questions = std::clamp(options.questions_per_author, 1, 10);
  SplitMix64 random(options.seed);
  std::set<std::string> used_names, used_titles;
  const std::vector<Facts> authors =
      MakeAuthors(num_authors, random, &used_names, &used_titles);
  const std::vector<Facts> holdout =
      MakeAuthors(Percent(num_authors, 10), random, &used_names, &used_titles);

  MiniTofu data;
  for (const Facts& author : authors)
    data.author_names.push_back(author.at("name"));
  const std::vector<std::string>& names = data.author_names;
  auto records = [&](std::vector<Facts>::const_iterator begin,
                     std::vector<Facts>::const_iterator end, bool perturbed) {
    return AuthorRecords(std::vector<Facts>(begin, end), questions, perturbed,
                         options.seed, names);
  };
  data.splits["full"] = records(authors.begin(), authors.end(), false);
  for (int percent : {1, 5, 10}) {
    const int forget = Percent(num_authors, percent);
    const std::string suffix =
        percent < 10 ? absl::StrCat("0", percent) : absl::StrCat(percent);
    data.splits["forget" + suffix] =
        records(authors.end() - forget, authors.end(), false);
    data.splits["forget" + suffix + "_perturbed"] =
        records(authors.end() - forget, authors.end(), true);
    data.splits[absl::StrCat("retain", 100 - percent)] =
        records(authors.begin(), authors.end() - forget, false);
    data.splits["holdout" + suffix] = AuthorRecords(
        std::vector<Facts>(
            holdout.begin(),
            holdout.begin() + std::min<size_t>(holdout.size(),
                                               Percent(num_authors, percent))),
        questions, false, options.seed, names);
  }
  data.splits["retain_perturbed"] = records(
      authors.begin(), authors.begin() + Percent(num_authors, 10), true);

  SplitMix64 world_random(options.seed ^ 0x5bd1e995ULL);
  const std::vector<TofuRecord> world = WorldFacts(world_random);
  data.splits["world_facts_perturbed"] = world;
  data.splits["world_facts"] = WithOptions(world, world_random);
  const std::vector<TofuRecord> famous =
      FamousAuthors(world_random, &used_names, &used_titles);
  data.splits["real_authors_perturbed"] = famous;
  data.splits["real_authors"] = WithOptions(famous, world_random);
  return data;
}

absl::Status WriteMiniTofu(const MiniTofu& data, const std::string& dir) {
  std::error_code error;
  std::filesystem::create_directories(dir, error);
  if (error) {
    return absl::PermissionDeniedError(
        absl::StrCat(dir, ": cannot create: ", error.message()));
  }
  for (const auto& [split, records] : data.splits) {
    RETURN_IF_ERROR(
        WriteTofuFile(absl::StrCat(dir, "/", split, ".json"), records));
  }
  return absl::OkStatus();
}

}  // namespace lethe
