#include "services/coordinator/job_feed.h"

#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "libs/jobs/job_store.h"
#include "services/coordinator/job_state_machine.h"

namespace lethe {
namespace {

// A store, the writers' mutex, the feed, and the state machine writing
// through them as the coordinator does.
class JobFeedTest : public testing::Test {
 protected:
  void SetUp() override {
    const std::string dir = testing::TempDir() + "/job_feed_test";
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    absl::StatusOr<std::unique_ptr<JobStore>> store =
        JobStore::Open(dir + "/jobs.sqlite");
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    feed_ = std::make_unique<JobFeed>(*store_, mu_);
    jobs_ = std::make_unique<JobStateMachine>(
        *store_, JobStateMachine::Options{
                     .on_change = [this](const std::string&, v1::Job::State) {
                       feed_->ChangedLocked();
                     }});
    absl::MutexLock lock(&mu_);
    v1::JobSpec spec;
    spec.set_method(v1::NPO);
    absl::StatusOr<v1::Job> job = jobs_->Create(spec, "", absl::Now());
    ASSERT_TRUE(job.ok()) << job.status();
    name_ = job->name();
    ASSERT_TRUE(jobs_->Start(name_, 1, {"workers/1"}).ok());
  }

  void EndSucceeded() {
    absl::MutexLock lock(&mu_);
    ASSERT_TRUE(jobs_->EndAttempt(name_, {.succeeded = true}).ok());
  }

  absl::Mutex mu_;
  std::unique_ptr<JobStore> store_;
  std::unique_ptr<JobFeed> feed_;
  std::unique_ptr<JobStateMachine> jobs_;
  std::string name_;
};

TEST_F(JobFeedTest, AFollowerGetsEveryLineUpToTheFinalStatesOwn) {
  std::vector<std::string> messages;
  absl::Status followed;
  std::thread follower([&] {
    followed = feed_->StreamJobLogs(
        name_, /*follow=*/true,
        [&](const v1::LogEntry& entry) {
          messages.push_back(entry.message());
          return true;
        },
        [] { return false; });
  });
  absl::SleepFor(absl::Milliseconds(100));  // The follower is waiting.
  {
    absl::MutexLock lock(&mu_);
    ASSERT_TRUE(jobs_->Log(name_, "rank0", "step 10/10").ok());
  }
  EndSucceeded();
  follower.join();
  EXPECT_TRUE(followed.ok()) << followed;
  ASSERT_GE(messages.size(), 4u);
  EXPECT_TRUE(absl::StartsWith(messages[0], "QUEUED")) << messages[0];
  EXPECT_EQ(messages[messages.size() - 2], "step 10/10");
  EXPECT_TRUE(absl::StartsWith(messages.back(), "SUCCEEDED (COMPLETED)"))
      << messages.back();
}

TEST_F(JobFeedTest, AWatcherSeesEachChangeAndStopsAtTheEnd) {
  std::vector<v1::Job::State> states;
  absl::Status watched;
  std::thread watcher([&] {
    watched = feed_->WatchJob(
        name_,
        [&](const v1::Job& job) {
          states.push_back(job.state());
          return true;
        },
        [] { return false; });
  });
  absl::SleepFor(absl::Milliseconds(100));
  EndSucceeded();
  watcher.join();
  EXPECT_TRUE(watched.ok()) << watched;
  ASSERT_GE(states.size(), 2u);
  EXPECT_EQ(states.front(), v1::Job::RUNNING);
  EXPECT_EQ(states.back(), v1::Job::SUCCEEDED);
  EXPECT_EQ(feed_
                ->WatchJob(
                    "jobs/404", [](const v1::Job&) { return true; },
                    [] { return false; })
                .code(),
            absl::StatusCode::kNotFound);
}

TEST_F(JobFeedTest, ShutdownReleasesFollowers) {
  absl::Status followed = absl::UnknownError("still following");
  std::thread follower([&] {
    followed = feed_->StreamJobLogs(
        name_, /*follow=*/true, [](const v1::LogEntry&) { return true; },
        [] { return false; });
  });
  absl::SleepFor(absl::Milliseconds(100));
  const absl::Time shut = absl::Now();
  {
    absl::MutexLock lock(&mu_);
    feed_->ShutdownLocked();
  }
  follower.join();
  EXPECT_TRUE(followed.ok()) << followed;
  EXPECT_LT(absl::Now() - shut, absl::Milliseconds(500))
      << "released by the shutdown, not by a one-second poll";
}

}  // namespace
}  // namespace lethe
