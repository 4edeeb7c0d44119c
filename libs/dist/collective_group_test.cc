// Runs real multi-process groups: the test binary re-executes itself as the
// ranks (selected by LETHE_COLLECTIVE_TEST_ROLE), over a TCPStore that the
// test process hosts on a free port.
#include "libs/dist/collective_group.h"

#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "libs/dist/multi_process_test_util.h"
#include "libs/subprocess/subprocess.h"

namespace lethe {
namespace {

constexpr char kRoleVariable[] = "LETHE_COLLECTIVE_TEST_ROLE";
// Where the peer-death test tells the surviving rank that its peer is gone.
constexpr char kPeerGoneFileVariable[] = "LETHE_TEST_PEER_GONE_FILE";
// The ranks' collective timeout. A failure that comes only this late is a
// hang that the timeout ended, not a detected peer death.
constexpr absl::Duration kCollectiveTimeout = absl::Seconds(10);

// Every rank's spec: a group of two with the collective timeout.
RendezvousSpec SpecFromEnvironment() {
  return RankSpecFromEnvironment(kCollectiveTimeout);
}

// Rank body: averages tensors of several shapes and dtypes in small buckets
// and checks the result against the closed-form mean over ranks 0 and 1.
int RunAverageRank() {
  const RendezvousSpec spec = SpecFromEnvironment();
  absl::StatusOr<std::unique_ptr<CollectiveGroup>> group =
      CollectiveGroup::Join(spec);
  if (!group.ok()) {
    std::cerr << "rank " << spec.rank << ": " << group.status() << "\n";
    return 1;
  }
  const double r = spec.rank;
  std::vector<at::Tensor> tensors = {
      torch::full({3, 4}, r + 1.0),
      torch::arange(5, torch::kFloat64) * (r + 1.0),
      torch::full({7}, r * 10.0),
      torch::full({2}, r - 4.0),
  };
  // 32-byte buckets: the 48-byte first tensor travels alone, the others are
  // packed by dtype.
  absl::Status status = (*group)->AllReduceMean(tensors, /*bucket_bytes=*/32);
  if (!status.ok()) {
    std::cerr << "rank " << spec.rank << ": " << status << "\n";
    return 1;
  }
  const std::vector<at::Tensor> expected = {
      torch::full({3, 4}, 1.5),
      torch::arange(5, torch::kFloat64) * 1.5,
      torch::full({7}, 5.0),
      torch::full({2}, -3.5),
  };
  for (size_t i = 0; i < tensors.size(); ++i) {
    if (!torch::allclose(tensors[i], expected[i])) {
      std::cerr << "rank " << spec.rank << ": tensor " << i << " is "
                << tensors[i] << ", expected " << expected[i] << "\n";
      return 1;
    }
  }
  std::vector<at::Tensor> counts = {
      torch::full({1}, spec.rank + 1, torch::kInt64)};
  status = (*group)->AllReduceSum(counts);
  if (!status.ok() || counts[0].item<int64_t>() != 3) {
    std::cerr << "rank " << spec.rank << ": integer sum failed: " << status
              << "\n";
    return 1;
  }
  return 0;
}

// What rank `rank` contributes to round `round` of the gather scenario:
// different lengths per rank and round, empty strings, zero and high bytes.
std::string GatherPayload(int round, int rank) {
  switch (round * 2 + rank) {
    case 0:
      return std::string("a\0b\0", 4);
    case 1:
      return "";
    case 2:
      return "";
    case 3: {
      std::string bytes;
      for (int i = 0; i < 300; ++i) bytes += static_cast<char>(i * 7 % 256);
      return bytes;
    }
    case 4:
      return std::string(1, '\0');
    case 5:
      return std::string("\xff\0\xfe rank one", 12);
    default:
      return "";  // Round 3: every rank sends nothing.
  }
}

// Rank body: gathers GatherPayload over four rounds and checks that every
// rank receives every rank's bytes exactly, in rank order.
int RunGatherRank() {
  const RendezvousSpec spec = SpecFromEnvironment();
  absl::StatusOr<std::unique_ptr<CollectiveGroup>> group =
      CollectiveGroup::Join(spec);
  if (!group.ok()) {
    std::cerr << "rank " << spec.rank << ": " << group.status() << "\n";
    return 1;
  }
  for (int round = 0; round < 4; ++round) {
    absl::StatusOr<std::vector<std::string>> gathered =
        (*group)->AllGatherBytes(GatherPayload(round, spec.rank));
    if (!gathered.ok()) {
      std::cerr << "rank " << spec.rank << " round " << round << ": "
                << gathered.status() << "\n";
      return 1;
    }
    const std::vector<std::string> expected = {GatherPayload(round, 0),
                                               GatherPayload(round, 1)};
    if (*gathered != expected) {
      std::cerr << "rank " << spec.rank << " round " << round
                << ": gathered the wrong bytes (sizes " << gathered->size()
                << ": " << (gathered->empty() ? 0 : (*gathered)[0].size())
                << ", ...)\n";
      return 1;
    }
  }
  return 0;
}

// Rank 1 of the peer-death scenario: joins, then dies without a word.
int RunDyingRank() {
  absl::StatusOr<std::unique_ptr<CollectiveGroup>> group =
      CollectiveGroup::Join(SpecFromEnvironment());
  if (!group.ok()) return 1;
  _exit(0);
}

// Rank 1 of the cut-off scenario: joins, then stops itself (SIGSTOP). Its
// connections stay open and nothing more comes through them, as in a network
// partition between workers whose coordinator still sees both.
int RunSilentRank() {
  absl::StatusOr<std::unique_ptr<CollectiveGroup>> group =
      CollectiveGroup::Join(SpecFromEnvironment());
  if (!group.ok()) return 1;
  raise(SIGSTOP);
  return 0;
}

// Rank 0 of the peer-death scenario: its all-reduce must fail, not hang.
int RunSurvivingRank() {
  absl::StatusOr<std::unique_ptr<CollectiveGroup>> group =
      CollectiveGroup::Join(SpecFromEnvironment());
  if (!group.ok()) {
    std::cerr << "survivor could not join: " << group.status() << "\n";
    return 1;
  }
  // The test creates this file once the dying rank has exited.
  const char* peer_gone = std::getenv(kPeerGoneFileVariable);
  if (peer_gone == nullptr) {
    std::cerr << kPeerGoneFileVariable << " is unset\n";
    return 1;
  }
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  while (access(peer_gone, F_OK) != 0) {
    if (absl::Now() > deadline) {
      std::cerr << "the test never reported the peer's death\n";
      return 1;
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  std::vector<at::Tensor> tensors = {torch::ones({1024})};
  absl::Status status = (*group)->AllReduceMean(tensors);
  if (status.ok()) {
    std::cerr << "all-reduce with a dead peer succeeded\n";
    return 1;
  }
  std::cerr << "survivor saw: " << status << "\n";
  return 0;
}

class CollectiveGroupTest : public MultiProcessTest {
 protected:
  CollectiveGroupTest() : MultiProcessTest(kRoleVariable) {}

  // Starts rank `rank` of a group of two.
  Subprocess StartRank(const std::string& role, int rank,
                       const std::string& prefix,
                       const std::string& peer_gone_file = "") {
    absl::StatusOr<Subprocess> child =
        StartRankProcess(role, rank, /*world_size=*/2, prefix,
                         {{kPeerGoneFileVariable, peer_gone_file}});
    EXPECT_TRUE(child.ok()) << child.status();
    return *std::move(child);
  }
};

TEST_F(CollectiveGroupTest, TwoProcessesAverageTensorsOfMixedShapesAndDtypes) {
  Subprocess rank0 = StartRank("average", 0, "average/attempt-0");
  Subprocess rank1 = StartRank("average", 1, "average/attempt-0");
  ExpectSuccessWithin(rank0, absl::Seconds(60), "rank 0");
  ExpectSuccessWithin(rank1, absl::Seconds(60), "rank 1");
}

TEST_F(CollectiveGroupTest, TwoProcessesGatherBytesOfDifferentLengths) {
  Subprocess rank0 = StartRank("gather", 0, "gather/attempt-0");
  Subprocess rank1 = StartRank("gather", 1, "gather/attempt-0");
  ExpectSuccessWithin(rank0, absl::Seconds(60), "rank 0");
  ExpectSuccessWithin(rank1, absl::Seconds(60), "rank 1");
}

TEST_F(CollectiveGroupTest, PeerDeathTurnsIntoAnErrorNotAHang) {
  const std::string peer_gone = testing::TempDir() + "/death_peer_gone";
  std::filesystem::remove(peer_gone);
  Subprocess survivor = StartRank("survivor", 0, "death/attempt-0", peer_gone);
  Subprocess dying = StartRank("dying", 1, "death/attempt-0");
  // Both join (the dying rank exits right after), then the survivor's
  // all-reduce must fail well before the collective timeout would end a hang.
  ExpectSuccessWithin(dying, absl::Seconds(60), "dying rank");
  ASSERT_TRUE(std::ofstream(peer_gone).good()) << peer_gone;
  ExpectSuccessWithin(survivor, kCollectiveTimeout / 2, "surviving rank");
}

// Whether `pid` is stopped (state T in /proc/<pid>/stat).
bool IsStopped(pid_t pid) {
  std::ifstream stat(absl::StrCat("/proc/", pid, "/stat"));
  std::string text((std::istreambuf_iterator<char>(stat)),
                   std::istreambuf_iterator<char>());
  const size_t name_end = text.rfind(')');
  return name_end != std::string::npos && name_end + 2 < text.size() &&
         text[name_end + 2] == 'T';
}

TEST_F(CollectiveGroupTest, APeerCutOffEndsTheCollectiveAtItsTimeout) {
  const std::string peer_gone = testing::TempDir() + "/cut_off_peer_gone";
  std::filesystem::remove(peer_gone);
  Subprocess survivor =
      StartRank("survivor", 0, "cut_off/attempt-0", peer_gone);
  Subprocess silent = StartRank("silent", 1, "cut_off/attempt-0");
  const absl::Time joined_by = absl::Now() + absl::Seconds(60);
  while (!IsStopped(silent.pid())) {
    ASSERT_LT(absl::Now(), joined_by) << "the silent rank never joined";
    absl::SleepFor(absl::Milliseconds(20));
  }
  ASSERT_TRUE(std::ofstream(peer_gone).good()) << peer_gone;
  // Nothing tells the survivor its peer is gone: only the timeout can end
  // the all-reduce, and it must.
  ExpectSuccessWithin(survivor, kCollectiveTimeout * 3, "surviving rank");
  ASSERT_TRUE(silent.Signal(SIGKILL).ok());
}

TEST_F(CollectiveGroupTest, MissingPeerMakesJoinFailWithinTimeout) {
  RendezvousSpec spec;
  spec.store_host = "127.0.0.1";
  spec.store_port = store_port();
  spec.prefix = "lonely/attempt-0";
  spec.rank = 0;
  spec.world_size = 2;
  spec.timeout = absl::Seconds(2);
  const absl::Time start = absl::Now();
  absl::StatusOr<std::unique_ptr<CollectiveGroup>> group =
      CollectiveGroup::Join(spec);
  EXPECT_FALSE(group.ok());
  EXPECT_EQ(group.status().code(), absl::StatusCode::kDeadlineExceeded)
      << group.status();
  EXPECT_LT(absl::Now() - start, absl::Seconds(20));
}

TEST_F(CollectiveGroupTest, SingleRankGroupIsTheIdentity) {
  RendezvousSpec spec;
  spec.store_host = "127.0.0.1";
  spec.store_port = store_port();
  spec.prefix = "single/attempt-0";
  absl::StatusOr<std::unique_ptr<CollectiveGroup>> group =
      CollectiveGroup::Join(spec);
  ASSERT_TRUE(group.ok()) << group.status();
  std::vector<at::Tensor> tensors = {torch::arange(6.0).view({2, 3})};
  ASSERT_TRUE((*group)->AllReduceMean(tensors).ok());
  EXPECT_TRUE(torch::equal(tensors[0], torch::arange(6.0).view({2, 3})));
  const std::string bytes("x\0y", 3);
  absl::StatusOr<std::vector<std::string>> gathered =
      (*group)->AllGatherBytes(bytes);
  ASSERT_TRUE(gathered.ok()) << gathered.status();
  EXPECT_EQ(*gathered, std::vector<std::string>{bytes});
}

TEST(CollectiveGroupSpecTest, RejectsInconsistentSpecs) {
  RendezvousSpec spec;
  spec.store_host = "127.0.0.1";
  spec.store_port = 1234;
  spec.prefix = "p";
  spec.world_size = 2;
  spec.rank = 2;
  EXPECT_EQ(CollectiveGroup::Join(spec).status().code(),
            absl::StatusCode::kInvalidArgument);
  spec.rank = 0;
  spec.prefix = "";
  EXPECT_EQ(CollectiveGroup::Join(spec).status().code(),
            absl::StatusCode::kInvalidArgument);
  spec.prefix = "p";
  spec.store_port = 0;
  EXPECT_EQ(CollectiveGroup::Join(spec).status().code(),
            absl::StatusCode::kInvalidArgument);
}

#ifndef LETHE_WITH_NCCL
TEST(CollectiveGroupSpecTest, NcclNeedsAnNcclBuild) {
  RendezvousSpec spec;
  spec.store_host = "127.0.0.1";
  spec.store_port = 1234;
  spec.prefix = "p";
  spec.backend = CollectiveBackend::kNccl;
  absl::Status status = CollectiveGroup::Join(spec).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(status.message().find("LETHE_WITH_NCCL"), std::string::npos);
}
#endif

TEST(CollectiveGroupSpecTest, ParsesBackendNames) {
  EXPECT_EQ(*ParseCollectiveBackend("gloo"), CollectiveBackend::kGloo);
  EXPECT_EQ(*ParseCollectiveBackend("nccl"), CollectiveBackend::kNccl);
  EXPECT_EQ(ParseCollectiveBackend("mpi").status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace lethe

int main(int argc, char** argv) {
  return lethe::MultiProcessTestMain(argc, argv, lethe::kRoleVariable,
                                     {{"average", lethe::RunAverageRank},
                                      {"gather", lethe::RunGatherRank},
                                      {"dying", lethe::RunDyingRank},
                                      {"survivor", lethe::RunSurvivingRank},
                                      {"silent", lethe::RunSilentRank}});
}
