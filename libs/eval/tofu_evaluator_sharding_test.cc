// TofuEvaluator sharded across ranks (TofuEvalSharding): threads play the
// ranks, and every rank's result must be the unsharded one.
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "libs/data/qa_example.h"
#include "libs/eval/tofu_eval_fixture.h"
#include "libs/eval/tofu_evaluator.h"
#include "libs/model/hf_checkpoint.h"
#include "libs/tokenizer/tokenizer.h"

namespace lethe {
namespace {

constexpr int kMaxNewTokens = 8;

// An in-process all_gather between the threads that play the ranks: each
// call blocks until every rank has made its call of the same round.
class ThreadAllGather {
 public:
  explicit ThreadAllGather(int world_size)
      : world_size_(world_size), slots_(world_size), calls_(world_size, 0) {}

  absl::StatusOr<std::vector<std::string>> AllGather(int rank,
                                                     const std::string& mine) {
    std::unique_lock<std::mutex> lock(mutex_);
    const int64_t round = round_;
    slots_[rank] = mine;
    ++calls_[rank];
    if (++arrived_ == world_size_) {
      gathered_ = slots_;
      arrived_ = 0;
      ++round_;
      round_done_.notify_all();
    } else if (!round_done_.wait_for(lock, std::chrono::seconds(300),
                                     [&] { return round_ != round; })) {
      return absl::DeadlineExceededError("a rank never joined the gather");
    }
    return gathered_;
  }

  std::vector<int> calls() {
    std::lock_guard<std::mutex> lock(mutex_);
    return calls_;
  }

 private:
  const int world_size_;
  std::mutex mutex_;
  std::condition_variable round_done_;
  int64_t round_ = 0;
  int arrived_ = 0;
  std::vector<std::string> slots_;
  std::vector<std::string> gathered_;
  std::vector<int> calls_;
};

// Expects `actual` to have `expected`'s layout (keys in order), strings,
// nulls and booleans, and its numbers up to `relative` of their size (0: bit
// for bit).
template <typename JsonType>
void ExpectJsonNear(const JsonType& expected, const JsonType& actual,
                    double relative, const std::string& path) {
  if (expected.is_number() && actual.is_number()) {
    const double want = expected.template get<double>();
    const double got = actual.template get<double>();
    EXPECT_LE(std::abs(got - want), relative * std::abs(want))
        << path << ": " << got << " vs " << want;
    return;
  }
  ASSERT_EQ(expected.type(), actual.type()) << path;
  if (expected.is_object()) {
    std::vector<std::string> expected_keys, actual_keys;
    for (const auto& [key, value] : expected.items()) {
      expected_keys.push_back(key);
    }
    for (const auto& [key, value] : actual.items()) actual_keys.push_back(key);
    ASSERT_EQ(expected_keys, actual_keys) << path;
    for (const std::string& key : expected_keys) {
      ExpectJsonNear(expected[key], actual[key], relative, path + "." + key);
    }
  } else if (expected.is_array()) {
    ASSERT_EQ(expected.size(), actual.size()) << path;
    for (size_t i = 0; i < expected.size(); ++i) {
      ExpectJsonNear(expected[i], actual[i], relative,
                     absl::StrCat(path, "[", i, "]"));
    }
  } else {
    EXPECT_EQ(expected, actual) << path;
  }
}

// A tiny model (and a different reference model, so that mia_reference is
// not all zeros) evaluated on tiny data, with and without sharding.
class ShardedTofuEvaluatorTest : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(testing::TempDir() + "/sharded_tofu_evaluator");
    std::filesystem::remove_all(*dir_);
    ASSERT_TRUE(WriteTinyTofuModel(*dir_ + "/model", 1).ok());
    ASSERT_TRUE(WriteTinyTofuModel(*dir_ + "/reference", 2).ok());
  }

  // A rank's own copies: models are not shared between threads.
  struct RankModels {
    std::unique_ptr<Tokenizer> tokenizer;
    std::shared_ptr<LlamaForCausalLM> model;
    std::shared_ptr<LlamaForCausalLM> reference;
  };
  static RankModels LoadRankModels() {
    RankModels loaded;
    absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer =
        Tokenizer::Load(*dir_ + "/model/tokenizer.model");
    EXPECT_TRUE(tokenizer.ok()) << tokenizer.status();
    if (tokenizer.ok()) loaded.tokenizer = *std::move(tokenizer);
    absl::StatusOr<std::shared_ptr<LlamaForCausalLM>> model =
        LoadLlamaCheckpoint(*dir_ + "/model");
    EXPECT_TRUE(model.ok()) << model.status();
    if (model.ok()) loaded.model = *model;
    absl::StatusOr<std::shared_ptr<LlamaForCausalLM>> reference =
        LoadLlamaCheckpoint(*dir_ + "/reference");
    EXPECT_TRUE(reference.ok()) << reference.status();
    if (reference.ok()) loaded.reference = *reference;
    return loaded;
  }

  static TofuEvalData ReadData(int questions_per_set) {
    const std::string data_dir =
        absl::StrCat(*dir_, "/data", questions_per_set);
    if (!std::filesystem::exists(data_dir)) {
      EXPECT_TRUE(WriteTinyTofuData(data_dir, questions_per_set).ok());
    }
    absl::StatusOr<TofuEvalData> data = ReadTofuEvalData(data_dir, "forget10");
    EXPECT_TRUE(data.ok()) << data.status();
    return data.ok() ? *std::move(data) : TofuEvalData();
  }

  static TofuEvalOptions Options(RankModels& models, int batch_size = 2) {
    TofuEvalOptions options;
    options.max_new_tokens = kMaxNewTokens;
    options.batch_size = batch_size;
    options.reference_model = models.reference.get();
    return options;
  }

  // Evaluates `data` in this thread alone, as the rank `sharding` names
  // (default: unsharded).
  static absl::StatusOr<TofuEvalResult> EvaluateAlone(
      const TofuEvalData& data, TofuEvalSharding sharding = {},
      int batch_size = 2) {
    RankModels models = LoadRankModels();
    TofuEvalOptions options = Options(models, batch_size);
    options.sharding = std::move(sharding);
    return TofuEvaluator(*models.model, *models.tokenizer, Template(), options)
        .Evaluate(data, nullptr);
  }

  static PromptTemplate Template() { return *PromptTemplateByName("plain"); }

  static std::string* dir_;
};

std::string* ShardedTofuEvaluatorTest::dir_ = nullptr;

// Parameters: questions per set, ranks, batch size.
class ShardedTofuEvaluatorEqualityTest
    : public ShardedTofuEvaluatorTest,
      public testing::WithParamInterface<std::tuple<int, int, int>> {};

TEST_P(ShardedTofuEvaluatorEqualityTest, EveryRankGetsTheUnshardedResult) {
  const auto [questions_per_set, world_size, batch_size] = GetParam();
  const TofuEvalData data = ReadData(questions_per_set);
  absl::StatusOr<TofuEvalResult> unsharded =
      EvaluateAlone(data, {}, batch_size);
  ASSERT_TRUE(unsharded.ok()) << unsharded.status();
  ASSERT_NE(
      unsharded
          ->eval_log["mia_reference"]["forget"]["value_by_index"]["0"]["score"]
          .get<double>(),
      0)
      << "the reference model must differ from the evaluated one";
  // One example per batch computes every value as the unsharded run does, so
  // the result must be the same bit for bit. Larger batches hold other
  // examples (other padding) than unsharded ones: float rounding, which
  // mia_min_k_plus_plus's standardisation and the 1 - truth ratio means
  // amplify to a few 1e-5.
  const double relative = batch_size == 1 ? 0 : 1e-4;

  std::vector<RankModels> models;
  for (int rank = 0; rank < world_size; ++rank) {
    models.push_back(LoadRankModels());
  }
  ASSERT_TRUE(models.front().model->is_training());
  ThreadAllGather exchange(world_size);
  std::vector<absl::StatusOr<TofuEvalResult>> results(
      world_size, absl::UnknownError("not run"));
  std::vector<std::vector<std::string>> progress(world_size);
  std::vector<std::thread> ranks;
  for (int rank = 0; rank < world_size; ++rank) {
    ranks.emplace_back([&, rank] {
      TofuEvalOptions options = Options(models[rank], batch_size);
      options.progress = [&progress, rank](const std::string& line) {
        progress[rank].push_back(line);
      };
      options.sharding = {
          .rank = rank,
          .world_size = world_size,
          .all_gather = [&exchange, rank](const std::string& mine) {
            return exchange.AllGather(rank, mine);
          }};
      results[rank] =
          TofuEvaluator(*models[rank].model, *models[rank].tokenizer,
                        Template(), options)
              .Evaluate(data, nullptr);
    });
  }
  for (std::thread& rank : ranks) rank.join();

  EXPECT_EQ(exchange.calls(), std::vector<int>(world_size, 1));
  const size_t questions = data.forget.size() + data.retain.size() +
                           data.real_authors.size() + data.world_facts.size();
  const size_t members = data.forget.size() + data.holdout.size();
  for (int rank = 0; rank < world_size; ++rank) {
    const std::string who = absl::StrCat("rank ", rank);
    ASSERT_TRUE(results[rank].ok()) << who << ": " << results[rank].status();
    ExpectJsonNear(unsharded->eval_log, results[rank]->eval_log, relative,
                   who + " TOFU_EVAL");
    ExpectJsonNear(unsharded->summary, results[rank]->summary, relative,
                   who + " TOFU_SUMMARY");
    EXPECT_TRUE(models[rank].model->is_training()) << who << ": mode restored";
    // Each rank did only its share: every world_size-th question from its
    // rank on.
    const size_t member_share = members > static_cast<size_t>(rank)
                                    ? (members - rank - 1) / world_size + 1
                                    : 0;
    const size_t question_share = (questions - rank - 1) / world_size + 1;
    std::string lines;
    for (const std::string& line : progress[rank]) lines += line + "\n";
    EXPECT_TRUE(absl::StrContains(
        lines, absl::StrCat("scoring ", member_share, " (this rank's share of ",
                            members, ") forget and holdout")))
        << who << ":\n"
        << lines;
    EXPECT_TRUE(absl::StrContains(
        lines, absl::StrCat("generating ", question_share,
                            " (this rank's share of ", questions, ")")))
        << who << ":\n"
        << lines;
  }
}

// Even shares; uneven ones; a rank whose share of the forget and holdout
// answers is empty (2 answers, 3 ranks); batches of 2 with uneven shares.
INSTANTIATE_TEST_SUITE_P(Shards, ShardedTofuEvaluatorEqualityTest,
                         testing::Values(std::make_tuple(3, 2, 1),
                                         std::make_tuple(3, 3, 1),
                                         std::make_tuple(1, 3, 1),
                                         std::make_tuple(3, 3, 2)));

TEST_F(ShardedTofuEvaluatorTest, OneRankNeverGathers) {
  const TofuEvalData data = ReadData(1);
  absl::StatusOr<TofuEvalResult> plain = EvaluateAlone(data);
  ASSERT_TRUE(plain.ok()) << plain.status();
  int calls = 0;
  TofuEvalSharding sharding;
  sharding.all_gather = [&calls](const std::string& mine) {
    ++calls;
    return std::vector<std::string>{mine};
  };
  absl::StatusOr<TofuEvalResult> one_rank = EvaluateAlone(data, sharding);
  ASSERT_TRUE(one_rank.ok()) << one_rank.status();
  EXPECT_EQ(calls, 0);
  EXPECT_EQ(one_rank->eval_log, plain->eval_log);
  EXPECT_EQ(one_rank->summary, plain->summary);
}

TEST_F(ShardedTofuEvaluatorTest, BadShardingIsAnInvalidArgument) {
  const TofuEvalData data = ReadData(1);
  auto gather =
      [](const std::string& mine) -> absl::StatusOr<std::vector<std::string>> {
    ADD_FAILURE() << "all_gather called for invalid sharding options";
    return std::vector<std::string>{mine, mine};
  };
  for (const auto& [rank, world_size, with_gather] :
       {std::make_tuple(-1, 2, true), std::make_tuple(2, 2, true),
        std::make_tuple(0, 0, true), std::make_tuple(0, 2, false),
        std::make_tuple(1, 2, false)}) {
    TofuEvalSharding sharding;
    sharding.rank = rank;
    sharding.world_size = world_size;
    if (with_gather) sharding.all_gather = gather;
    const absl::Status status = EvaluateAlone(data, sharding).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument)
        << "rank " << rank << " of " << world_size << ": " << status;
    EXPECT_TRUE(absl::StrContains(status.message(), "sharding")) << status;
  }
}

TEST_F(ShardedTofuEvaluatorTest, SharesThatDoNotFitAreErrors) {
  const TofuEvalData data = ReadData(1);  // 2 forget and holdout answers.
  struct Case {
    std::string name;
    int world_size;
    std::function<std::vector<std::string>(const std::string&)> peers;
    absl::StatusCode code;
  };
  const std::vector<Case> cases = {
      {"too few shares", 2,
       [](const std::string& mine) { return std::vector<std::string>{mine}; },
       absl::StatusCode::kInternal},
      {"not a share", 2,
       [](const std::string& mine) {
         return std::vector<std::string>{mine, "garbage"};
       },
       absl::StatusCode::kDataLoss},
      {"a truncated share", 2,
       [](const std::string& mine) {
         return std::vector<std::string>{mine, mine.substr(0, mine.size() / 2)};
       },
       absl::StatusCode::kDataLoss},
      {"bytes after a share", 2,
       [](const std::string& mine) {
         return std::vector<std::string>{mine, mine + "x"};
       },
       absl::StatusCode::kDataLoss},
      // Rank 2 of 3 has none of the 2 forget and holdout answers; rank 0's
      // share has one.
      {"a share of other size", 3,
       [](const std::string& mine) {
         return std::vector<std::string>{mine, mine, mine};
       },
       absl::StatusCode::kFailedPrecondition},
  };
  for (const Case& test_case : cases) {
    TofuEvalSharding sharding;
    sharding.world_size = test_case.world_size;
    sharding.all_gather = [&](const std::string& mine)
        -> absl::StatusOr<std::vector<std::string>> {
      return test_case.peers(mine);
    };
    const absl::Status status = EvaluateAlone(data, sharding).status();
    EXPECT_EQ(status.code(), test_case.code)
        << test_case.name << ": " << status;
  }
}

}  // namespace
}  // namespace lethe
