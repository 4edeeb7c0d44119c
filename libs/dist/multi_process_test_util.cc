#include "libs/dist/multi_process_test_util.h"

#include <ATen/Parallel.h>

#include <cstdlib>
#include <iostream>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace lethe {

int MultiProcessTestMain(int argc, char** argv, const char* role_variable,
                         const std::map<std::string, RankBody>& roles,
                         int rank_threads) {
  if (const char* role = std::getenv(role_variable)) {
    const auto body = roles.find(role);
    if (body == roles.end()) {
      std::cerr << "unknown role " << role << " in " << role_variable << "\n";
      return 2;
    }
    if (rank_threads > 0) at::set_num_threads(rank_threads);
    return body->second();
  }
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}

int EnvInt(const char* name) {
  int value = -1;
  const char* text = std::getenv(name);
  if (text == nullptr || !absl::SimpleAtoi(text, &value)) {
    std::cerr << "missing integer environment variable " << name << "\n";
    std::exit(2);
  }
  return value;
}

RendezvousSpec RankSpecFromEnvironment(absl::Duration timeout) {
  RendezvousSpec spec;
  spec.store_host = "127.0.0.1";
  spec.store_port = EnvInt(kTestStorePortVariable);
  spec.prefix = std::getenv(kTestPrefixVariable);
  spec.rank = EnvInt(kTestRankVariable);
  spec.world_size = EnvInt(kTestWorldSizeVariable);
  spec.timeout = timeout;
  return spec;
}

std::unique_ptr<CollectiveGroup> JoinFromEnvironment(absl::Duration timeout) {
  const RendezvousSpec spec = RankSpecFromEnvironment(timeout);
  absl::StatusOr<std::unique_ptr<CollectiveGroup>> group =
      CollectiveGroup::Join(spec);
  if (!group.ok()) {
    std::cerr << "rank " << spec.rank << ": " << group.status() << "\n";
    std::exit(1);
  }
  return *std::move(group);
}

MultiProcessTest::MultiProcessTest(std::string role_variable,
                                   absl::Duration rank_timeout)
    : role_variable_(std::move(role_variable)), rank_timeout_(rank_timeout) {}

void MultiProcessTest::SetUp() {
  absl::StatusOr<std::unique_ptr<RendezvousStore>> store =
      RendezvousStore::Start("127.0.0.1", 0);
  ASSERT_TRUE(store.ok()) << store.status();
  store_ = *std::move(store);
  ASSERT_GT(store_->port(), 0);
}

void MultiProcessTest::RunRanks(
    const std::string& role, int world_size,
    const std::map<std::string, std::string>& extra_env) {
  const std::string prefix = absl::StrCat(role, "-", world_size);
  std::vector<Subprocess> ranks;
  for (int rank = 0; rank < world_size; ++rank) {
    absl::StatusOr<Subprocess> child =
        StartRankProcess(role, rank, world_size, prefix, extra_env);
    ASSERT_TRUE(child.ok()) << child.status();
    ranks.push_back(*std::move(child));
  }
  for (int rank = 0; rank < world_size; ++rank) {
    ExpectSuccessWithin(ranks[rank], rank_timeout_,
                        absl::StrCat("rank ", rank));
    if (HasFatalFailure()) return;
  }
}

absl::StatusOr<Subprocess> MultiProcessTest::StartRankProcess(
    const std::string& role, int rank, int world_size,
    const std::string& prefix,
    const std::map<std::string, std::string>& extra_env) {
  std::map<std::string, std::string> env = extra_env;
  env[role_variable_] = role;
  env[kTestRankVariable] = absl::StrCat(rank);
  env[kTestWorldSizeVariable] = absl::StrCat(world_size);
  env[kTestStorePortVariable] = absl::StrCat(store_->port());
  env[kTestPrefixVariable] = prefix;
  env["OMP_NUM_THREADS"] = "1";
  return Subprocess::Start({"/proc/self/exe"}, env);
}

void MultiProcessTest::ExpectSuccessWithin(Subprocess& child,
                                           absl::Duration timeout,
                                           const std::string& who) {
  absl::StatusOr<std::optional<ExitStatus>> exit = child.WaitFor(timeout);
  ASSERT_TRUE(exit.ok()) << exit.status();
  ASSERT_TRUE(exit->has_value()) << who << " still running after " << timeout;
  EXPECT_TRUE((*exit)->success()) << who << " " << (*exit)->ToString();
}

std::unique_ptr<CollectiveGroup> MultiProcessTest::SoloGroup(
    const std::string& prefix) {
  absl::StatusOr<std::unique_ptr<CollectiveGroup>> group =
      CollectiveGroup::Join({.store_host = "127.0.0.1",
                             .store_port = store_->port(),
                             .prefix = prefix});
  EXPECT_TRUE(group.ok()) << group.status();
  return group.ok() ? *std::move(group) : nullptr;
}

}  // namespace lethe
