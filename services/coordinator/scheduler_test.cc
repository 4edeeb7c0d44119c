#include "services/coordinator/scheduler.h"

#include <google/protobuf/util/time_util.h>

#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace lethe {
namespace {

const absl::Time kStart = absl::FromUnixSeconds(1800000000);

// Job number `n`, created n seconds after kStart.
v1::Job QueuedJob(int n, int world_size = 1, int priority = 0,
                  v1::Device device = v1::CPU) {
  v1::Job job;
  job.set_name(absl::StrCat("jobs/", n));
  job.set_state(v1::Job::QUEUED);
  *job.mutable_create_time() =
      google::protobuf::util::TimeUtil::SecondsToTimestamp(
          absl::ToUnixSeconds(kStart + absl::Seconds(n)));
  job.mutable_spec()->set_world_size(world_size);
  job.mutable_spec()->set_priority(priority);
  job.mutable_spec()->set_device(device);
  return job;
}

std::vector<IdleWorker> Workers(int count, v1::Device device = v1::CPU,
                                int first = 1) {
  std::vector<IdleWorker> workers;
  for (int i = first; i < first + count; ++i) {
    workers.push_back({absl::StrCat("workers/", i), device});
  }
  return workers;
}

// "jobs/3 on workers/1,workers/2; ..." for readable comparisons.
std::string Describe(const SchedulingDecision& decision) {
  std::string text;
  for (const Placement& placement : decision.placements) {
    absl::StrAppend(&text, text.empty() ? "" : "; ", placement.job, " on ");
    for (size_t i = 0; i < placement.workers.size(); ++i) {
      absl::StrAppend(&text, i == 0 ? "" : ",", placement.workers[i]);
    }
  }
  return text;
}

const absl::Time kNow = kStart + absl::Hours(1);

TEST(PlaceQueuedJobsTest, HigherPriorityFirstThenOldest) {
  // Given newest first, on purpose: the order comes from the jobs.
  const std::vector<v1::Job> queued = {QueuedJob(4), QueuedJob(3),
                                       QueuedJob(2, 1, /*priority=*/5),
                                       QueuedJob(1)};
  const SchedulingDecision decision =
      PlaceQueuedJobs(queued, Workers(3), {{v1::CPU, 3}}, kNow);
  EXPECT_EQ(Describe(decision),
            "jobs/2 on workers/1; jobs/1 on workers/2; jobs/3 on workers/3");
}

TEST(PlaceQueuedJobsTest, AGangStartsOnWorldSizeDistinctWorkersOrNotAtAll) {
  const SchedulingDecision decision = PlaceQueuedJobs(
      {QueuedJob(1, /*world_size=*/3)}, Workers(4), {{v1::CPU, 4}}, kNow);
  EXPECT_EQ(Describe(decision), "jobs/1 on workers/1,workers/2,workers/3");

  const SchedulingDecision too_big = PlaceQueuedJobs(
      {QueuedJob(1, /*world_size=*/3)}, Workers(2), {{v1::CPU, 5}}, kNow);
  EXPECT_TRUE(too_big.placements.empty());
  EXPECT_TRUE(too_big.too_few_workers.empty())
      << "5 are registered: the job waits for busy ones, not for more";
}

TEST(PlaceQueuedJobsTest, StrictOrderPerDeviceWithoutBlockingTheOther) {
  // jobs/1 needs 3 CPU workers; 2 are idle. jobs/2 (CPU, 1 worker) must not
  // overtake it, but jobs/3 (CUDA) starts on the idle GPU worker.
  std::vector<IdleWorker> idle = Workers(2);
  idle.push_back({"workers/9", v1::CUDA});
  const SchedulingDecision decision = PlaceQueuedJobs(
      {QueuedJob(1, 3), QueuedJob(2, 1), QueuedJob(3, 1, 0, v1::CUDA)}, idle,
      {{v1::CPU, 3}, {v1::CUDA, 1}}, kNow);
  EXPECT_EQ(Describe(decision), "jobs/3 on workers/9");
}

// A job needing more workers than are registered holds the queue for a
// grace period (workers may be starting), then the jobs behind it that fit
// start around it; a job merely waiting for busy workers always holds it.
TEST(PlaceQueuedJobsTest, AJobThatCannotStartHoldsTheQueueOnlyForAWhile) {
  const std::vector<v1::Job> queued = {QueuedJob(1, /*world_size=*/3),
                                       QueuedJob(2), QueuedJob(3)};
  const SchedulingOptions options{.hold_for_missing_workers = absl::Minutes(5)};
  const absl::Time early = kStart + absl::Minutes(2);
  SchedulingDecision decision =
      PlaceQueuedJobs(queued, Workers(2), {{v1::CPU, 2}}, early, options);
  EXPECT_EQ(Describe(decision), "");
  ASSERT_EQ(decision.too_few_workers.size(), 1u);
  EXPECT_TRUE(decision.too_few_workers[0].holds_queue);

  const absl::Time late = kStart + absl::Minutes(10);
  decision = PlaceQueuedJobs(queued, Workers(2), {{v1::CPU, 2}}, late, options);
  EXPECT_EQ(Describe(decision), "jobs/2 on workers/1; jobs/3 on workers/2")
      << "backfilled around the job that cannot start";
  ASSERT_EQ(decision.too_few_workers.size(), 1u);
  EXPECT_EQ(decision.too_few_workers[0].job, "jobs/1");
  EXPECT_EQ(decision.too_few_workers[0].registered, 2);
  EXPECT_FALSE(decision.too_few_workers[0].holds_queue);

  // Requeued (a restart) recently: the grace period counts from then.
  v1::Job requeued = queued[0];
  v1::Job::StateChange& change = *requeued.add_history();
  change.set_state(v1::Job::QUEUED);
  *change.mutable_time() = google::protobuf::util::TimeUtil::SecondsToTimestamp(
      absl::ToUnixSeconds(late - absl::Minutes(1)));
  decision = PlaceQueuedJobs({requeued, queued[1]}, Workers(2), {{v1::CPU, 2}},
                             late, options);
  EXPECT_EQ(Describe(decision), "");

  // Three are registered, one busy: jobs/1 waits for it and holds the queue
  // however long it waits (no starvation of large jobs).
  decision = PlaceQueuedJobs(queued, Workers(2), {{v1::CPU, 3}},
                             kStart + absl::Hours(5), options);
  EXPECT_EQ(Describe(decision), "");
  EXPECT_TRUE(decision.too_few_workers.empty());
}

TEST(PlaceQueuedJobsTest, JobsRunOnlyOnWorkersOfTheirDevice) {
  const SchedulingDecision decision =
      PlaceQueuedJobs({QueuedJob(1, 1, 0, v1::CUDA), QueuedJob(2)}, Workers(2),
                      {{v1::CPU, 2}}, kNow);
  EXPECT_EQ(Describe(decision), "jobs/2 on workers/1");
  ASSERT_EQ(decision.too_few_workers.size(), 1u);
  EXPECT_EQ(decision.too_few_workers[0].job, "jobs/1");
  EXPECT_EQ(decision.too_few_workers[0].device, v1::CUDA);
  EXPECT_EQ(decision.too_few_workers[0].needed, 1);
  EXPECT_EQ(decision.too_few_workers[0].registered, 0);
}

TEST(PlaceQueuedJobsTest, QueueDeadlinesExpireJobsThatHoldNothingBack) {
  v1::Job late = QueuedJob(1, /*world_size=*/4);
  late.mutable_spec()->mutable_run_policy()->mutable_deadline()->set_seconds(
      60);
  v1::Job in_time = QueuedJob(2);
  in_time.mutable_spec()->mutable_run_policy()->mutable_deadline()->set_seconds(
      7200);
  const SchedulingDecision decision = PlaceQueuedJobs(
      {late, in_time}, Workers(1), {{v1::CPU, 1}}, kStart + absl::Minutes(2));
  EXPECT_EQ(decision.expired, std::vector<std::string>{"jobs/1"});
  EXPECT_EQ(Describe(decision), "jobs/2 on workers/1")
      << "the expired 4-worker job must not block the queue";
  EXPECT_TRUE(decision.too_few_workers.empty());

  // Nanoseconds count: a 0.5 s deadline is one, not none.
  v1::Job half_second = QueuedJob(3);
  half_second.mutable_spec()
      ->mutable_run_policy()
      ->mutable_deadline()
      ->set_nanos(500000000);
  EXPECT_EQ(
      PlaceQueuedJobs({half_second}, {}, {}, kStart + absl::Seconds(4)).expired,
      std::vector<std::string>{"jobs/3"});
  EXPECT_TRUE(
      PlaceQueuedJobs({half_second}, {}, {}, kStart + absl::Milliseconds(3400))
          .expired.empty());

  // One second before its deadline, jobs/1 still waits (and blocks).
  const SchedulingDecision before = PlaceQueuedJobs(
      {late, in_time}, Workers(1), {{v1::CPU, 1}}, kStart + absl::Seconds(60));
  EXPECT_TRUE(before.expired.empty());
  EXPECT_TRUE(before.placements.empty());
}

}  // namespace
}  // namespace lethe
