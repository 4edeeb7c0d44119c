// Test-only harness for tests that run real multi-process collective groups:
// the test binary re-executes itself once per rank, and the ranks meet over a
// RendezvousStore (TCPStore) that the test process hosts on a free port.
//
// Contract:
//  - The test's fixture derives from MultiProcessTest, naming the role
//    variable (say LETHE_FOO_TEST_ROLE) and how long a rank may run. SetUp()
//    starts the store.
//  - A test calls RunRanks(role, world_size[, extra_env]): it starts
//    world_size copies of /proc/self/exe with the role variable set to
//    `role`, LETHE_TEST_RANK, LETHE_TEST_WORLD_SIZE, LETHE_TEST_STORE_PORT,
//    LETHE_TEST_PREFIX ("<role>-<world_size>"), OMP_NUM_THREADS=1 and
//    `extra_env`, waits for all of them and expects each to exit with code 0.
//    StartRankProcess and ExpectSuccessWithin are the pieces, for tests that
//    give ranks different roles or deadlines.
//  - main() is MultiProcessTestMain: when the role variable is set, it runs
//    that role's rank body (an int function: 0 is success) and returns its
//    result instead of running the tests.
//  - A rank body joins with JoinFromEnvironment() (or builds its own spec with
//    RankSpecFromEnvironment()) and reports failures with LETHE_RANK_CHECK,
//    which prints them and makes the rank exit with status 1.
//    (To compare weights, use MaxAbsDifference from libs/model/tiny_llama.h.)
//
//   class FooTest : public MultiProcessTest {
//    protected:
//     FooTest() : MultiProcessTest("LETHE_FOO_TEST_ROLE") {}
//   };
//   TEST_F(FooTest, TwoRanksAgree) { RunRanks("agree", 2); }
//
//   int main(int argc, char** argv) {
//     return lethe::MultiProcessTestMain(argc, argv, "LETHE_FOO_TEST_ROLE",
//                                        {{"agree", RunAgreeRank}});
//   }
#ifndef LETHE_LIBS_DIST_MULTI_PROCESS_TEST_UTIL_H_
#define LETHE_LIBS_DIST_MULTI_PROCESS_TEST_UTIL_H_

#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "libs/dist/collective_group.h"
#include "libs/subprocess/subprocess.h"

namespace lethe {

// The variables RunRanks sets for each rank.
inline constexpr char kTestRankVariable[] = "LETHE_TEST_RANK";
inline constexpr char kTestWorldSizeVariable[] = "LETHE_TEST_WORLD_SIZE";
inline constexpr char kTestStorePortVariable[] = "LETHE_TEST_STORE_PORT";
inline constexpr char kTestPrefixVariable[] = "LETHE_TEST_PREFIX";

// --- Rank side -------------------------------------------------------------

// The integer in environment variable `name`; exits the process with status 2
// when it is unset or not an integer.
int EnvInt(const char* name);

// In a rank body (a function returning int): when `condition` is false,
// prints "rank <rank>: <message> (<condition>)" and returns 1, the rank's
// exit status. `message` may chain `<<`.
#define LETHE_RANK_CHECK(condition, message)                              \
  do {                                                                    \
    if (!(condition)) {                                                   \
      std::cerr << "rank " << ::lethe::EnvInt(::lethe::kTestRankVariable) \
                << ": " << message << " (" #condition ")\n";              \
      return 1;                                                           \
    }                                                                     \
  } while (0)

// The rendezvous spec that the variables RunRanks sets describe: the store on
// 127.0.0.1, the prefix, this rank and the world size, with `timeout`.
RendezvousSpec RankSpecFromEnvironment(absl::Duration timeout);

// Joins the group RankSpecFromEnvironment(timeout) describes; on failure
// prints why and exits the process with status 1.
std::unique_ptr<CollectiveGroup> JoinFromEnvironment(
    absl::Duration timeout = absl::Seconds(30));

// A rank body's function: returns the rank's exit status (0: success).
using RankBody = std::function<int()>;

// main() of a test binary whose tests run ranks: with `role_variable` set,
// runs that role's body from `roles` (exit status 2 naming an unknown role),
// with `rank_threads` intra-op threads when > 0; otherwise runs the tests.
int MultiProcessTestMain(int argc, char** argv, const char* role_variable,
                         const std::map<std::string, RankBody>& roles,
                         int rank_threads = 0);

// --- Parent side -----------------------------------------------------------

class MultiProcessTest : public ::testing::Test {
 protected:
  // `role_variable`: the environment variable main() dispatches on.
  // `rank_timeout`: how long RunRanks waits for each rank.
  explicit MultiProcessTest(std::string role_variable,
                            absl::Duration rank_timeout = absl::Seconds(240));

  // Starts the rendezvous store on 127.0.0.1 and a free port.
  void SetUp() override;

  int store_port() const { return store_->port(); }

  // Runs `role` in `world_size` processes (prefix "<role>-<world_size>"),
  // each with `extra_env` added; all must exit successfully within the
  // rank timeout.
  void RunRanks(const std::string& role, int world_size,
                const std::map<std::string, std::string>& extra_env = {});

  // Starts one rank of `role` (see the contract above for its environment).
  absl::StatusOr<Subprocess> StartRankProcess(
      const std::string& role, int rank, int world_size,
      const std::string& prefix,
      const std::map<std::string, std::string>& extra_env = {});

  // Waits at most `timeout` for `child` (named `who` in failures) and expects
  // it to exit successfully; a fatal failure when the wait fails or the child
  // is still running.
  static void ExpectSuccessWithin(Subprocess& child, absl::Duration timeout,
                                  const std::string& who);

  // A group of one on the store, for single-process checks; null (and a
  // failure) when joining fails.
  std::unique_ptr<CollectiveGroup> SoloGroup(const std::string& prefix);

 private:
  const std::string role_variable_;
  const absl::Duration rank_timeout_;
  std::unique_ptr<RendezvousStore> store_;
};

}  // namespace lethe

#endif  // LETHE_LIBS_DIST_MULTI_PROCESS_TEST_UTIL_H_
