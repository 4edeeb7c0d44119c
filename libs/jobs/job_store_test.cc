#include "libs/jobs/job_store.h"

#include <google/protobuf/util/message_differencer.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "libs/sqlite/sqlite_db.h"

namespace lethe {
namespace {

using ::google::protobuf::util::MessageDifferencer;
using State = v1::Job::State;

const absl::Time kT0 =
    absl::FromUnixSeconds(1795800000) + absl::Milliseconds(5);

std::string FreshPath(const std::string& name) {
  const std::string path = absl::StrCat(testing::TempDir(), "/", name);
  for (const char* suffix : {"", "-wal", "-shm"}) {
    std::remove(absl::StrCat(path, suffix).c_str());
  }
  return path;
}

std::unique_ptr<JobStore> OpenStore(const std::string& path) {
  absl::StatusOr<std::unique_ptr<JobStore>> store = JobStore::Open(path);
  EXPECT_TRUE(store.ok()) << store.status();
  return store.ok() ? std::move(*store) : nullptr;
}

v1::JobSpec Spec(const std::string& display_name, int priority = 0) {
  v1::JobSpec spec;
  spec.set_model_dir("/models/m");
  spec.set_forget_split("forget10");
  spec.set_method(v1::NPO);
  spec.set_priority(priority);
  spec.set_display_name(display_name);
  return spec;
}

// Creates a job without a request id and returns its name.
std::string CreateJob(JobStore& store, const v1::JobSpec& spec) {
  absl::StatusOr<JobStore::CreateResult> result = store.Create(spec, "", kT0);
  EXPECT_TRUE(result.ok()) << result.status();
  return result.ok() ? result->job.name() : "";
}

class JobStoreTest : public testing::Test {
 protected:
  void SetUp() override {
    path_ = FreshPath(absl::StrCat(
        testing::UnitTest::GetInstance()->current_test_info()->name(), ".db"));
    store_ = OpenStore(path_);
    ASSERT_NE(store_, nullptr);
  }

  std::string path_;
  std::unique_ptr<JobStore> store_;
};

TEST_F(JobStoreTest, CreateThenGet) {
  absl::StatusOr<JobStore::CreateResult> created =
      store_->Create(Spec("a"), "req-1", kT0);
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_TRUE(created->created);
  const v1::Job& job = created->job;
  EXPECT_EQ(job.name(), "jobs/1");
  EXPECT_EQ(job.state(), v1::Job::QUEUED);
  EXPECT_EQ(job.request_id(), "req-1");
  EXPECT_EQ(job.create_time().seconds(), 1795800000);
  EXPECT_EQ(job.create_time().nanos(), 5000000);
  ASSERT_EQ(job.history_size(), 1);
  EXPECT_EQ(job.history(0).state(), v1::Job::QUEUED);
  EXPECT_EQ(job.history(0).reason(), "CREATED");
  EXPECT_TRUE(MessageDifferencer::Equals(job.spec(), Spec("a")));

  absl::StatusOr<v1::Job> got = store_->Get("jobs/1");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_TRUE(MessageDifferencer::Equals(*got, job));
  EXPECT_EQ(CreateJob(*store_, Spec("b")), "jobs/2");
}

TEST_F(JobStoreTest, GetRejectsMalformedAndUnknownNames) {
  CreateJob(*store_, Spec("a"));
  EXPECT_EQ(store_->Get("jobs/2").status().code(), absl::StatusCode::kNotFound);
  for (const char* name :
       {"", "jobs/", "jobs/0", "jobs/01", "jobs/-1", "jobs/+1", "jobs/1x",
        "job/1", "1", "jobs/1/", "jobs/ 1", "jobs/99999999999999999999"}) {
    EXPECT_EQ(store_->Get(name).status().code(),
              absl::StatusCode::kInvalidArgument)
        << name;
  }
}

TEST_F(JobStoreTest, JobsSurviveReopening) {
  const std::string first = CreateJob(*store_, Spec("a"));
  const std::string second = CreateJob(*store_, Spec("b"));
  ASSERT_TRUE(
      store_->Transition(first, v1::Job::RUNNING, "SCHEDULED", "2 workers", kT0)
          .ok());
  ASSERT_TRUE(store_
                  ->Update(first,
                           [](v1::Job& job) {
                             job.mutable_progress()->set_step(17);
                             (*job.mutable_evaluation_summary())["mu"] = 0.5;
                           })
                  .ok());
  ASSERT_TRUE(
      store_
          ->Transition(second, v1::Job::CANCELLED, "CANCELLED_BY_USER", "", kT0)
          .ok());
  const v1::Job first_before = *store_->Get(first);
  const v1::Job second_before = *store_->Get(second);
  store_.reset();

  std::unique_ptr<JobStore> reopened = OpenStore(path_);
  ASSERT_NE(reopened, nullptr);
  absl::StatusOr<v1::Job> first_after = reopened->Get(first);
  absl::StatusOr<v1::Job> second_after = reopened->Get(second);
  ASSERT_TRUE(first_after.ok() && second_after.ok());
  EXPECT_TRUE(MessageDifferencer::Equals(*first_after, first_before));
  EXPECT_TRUE(MessageDifferencer::Equals(*second_after, second_before));
  EXPECT_EQ(first_after->state(), v1::Job::RUNNING);
  EXPECT_EQ(first_after->history_size(), 2);
  EXPECT_EQ(first_after->progress().step(), 17);
  EXPECT_EQ(second_after->state(), v1::Job::CANCELLED);
  // Ids keep counting after reopening.
  EXPECT_EQ(CreateJob(*reopened, Spec("c")), "jobs/3");
}

// A damaged record (here: bytes that are no lethe.v1.Job) reads as a FAILED
// job with reason DATA_LOSS; the jobs around it are still listed and
// scheduled, and it can be deleted.
TEST_F(JobStoreTest, AnUnreadableRecordFailsAloneAndCanBeDeleted) {
  const std::string first = CreateJob(*store_, Spec("a"));
  const std::string broken = CreateJob(*store_, Spec("b"));
  const std::string third = CreateJob(*store_, Spec("c"));
  ASSERT_TRUE(
      store_->Transition(broken, v1::Job::RUNNING, "SCHEDULED", "", kT0).ok());
  store_.reset();
  {
    absl::StatusOr<std::unique_ptr<SqliteDb>> db = SqliteDb::Open(path_);
    ASSERT_TRUE(db.ok()) << db.status();
    ASSERT_TRUE(
        (*db)->Execute("UPDATE jobs SET job = x'ffffffff' WHERE id = 2").ok());
  }
  store_ = OpenStore(path_);
  ASSERT_NE(store_, nullptr);

  absl::StatusOr<std::vector<v1::Job>> active =
      store_->ListInStates({v1::Job::QUEUED, v1::Job::RUNNING});
  ASSERT_TRUE(active.ok()) << active.status();
  ASSERT_EQ(active->size(), 2u);
  EXPECT_EQ((*active)[0].name(), first);
  EXPECT_EQ((*active)[1].name(), third);

  absl::StatusOr<v1::Job> seen = store_->Get(broken);
  ASSERT_TRUE(seen.ok()) << seen.status();
  EXPECT_EQ(seen->state(), v1::Job::FAILED);
  ASSERT_GT(seen->history_size(), 0);
  EXPECT_EQ(seen->history(seen->history_size() - 1).reason(), "DATA_LOSS");
  EXPECT_TRUE(absl::StrContains(seen->error(), "does not parse"))
      << seen->error();
  EXPECT_EQ(store_->CountByState()->at(v1::Job::FAILED), 1)
      << "its state is recorded FAILED once seen";
  absl::StatusOr<JobStore::ListResult> failed =
      store_->List(10, "", v1::Job::FAILED);
  ASSERT_TRUE(failed.ok()) << failed.status();
  ASSERT_EQ(failed->jobs.size(), 1u);
  EXPECT_EQ(failed->jobs[0].name(), broken);
  EXPECT_EQ(store_->List(10, "")->jobs.size(), 3u);

  EXPECT_EQ(
      store_
          ->Update(broken,
                   [](v1::Job& job) { job.mutable_progress()->set_step(1); })
          .status()
          .code(),
      absl::StatusCode::kDataLoss)
      << "its bytes are never overwritten by a guess";
  EXPECT_EQ(
      store_->Transition(broken, v1::Job::QUEUED, "X", "", kT0).status().code(),
      absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(store_->Delete(broken).ok());
  EXPECT_EQ(store_->Get(broken).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(JobStoreTest, RequestIdMakesCreateIdempotent) {
  absl::StatusOr<JobStore::CreateResult> first =
      store_->Create(Spec("a"), "req-7", kT0);
  ASSERT_TRUE(first.ok()) << first.status();
  absl::StatusOr<JobStore::CreateResult> retry =
      store_->Create(Spec("a"), "req-7", kT0 + absl::Seconds(3));
  ASSERT_TRUE(retry.ok()) << retry.status();
  EXPECT_FALSE(retry->created);
  EXPECT_TRUE(MessageDifferencer::Equals(retry->job, first->job));

  absl::StatusOr<JobStore::CreateResult> conflict =
      store_->Create(Spec("different"), "req-7", kT0);
  EXPECT_EQ(conflict.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_TRUE(absl::StrContains(conflict.status().message(), "req-7"))
      << conflict.status();

  // Jobs without a request id never collide.
  EXPECT_EQ(CreateJob(*store_, Spec("a")), "jobs/2");
  EXPECT_EQ(CreateJob(*store_, Spec("a")), "jobs/3");
  absl::StatusOr<JobStore::ListResult> all = store_->List(0, "");
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->jobs.size(), 3u);
}

TEST_F(JobStoreTest, PaginationReturnsEveryJobOnceInOrder) {
  for (int i = 1; i <= 23; ++i) CreateJob(*store_, Spec(absl::StrCat(i)));
  std::vector<std::string> seen;
  std::string token;
  int pages = 0;
  do {
    absl::StatusOr<JobStore::ListResult> page = store_->List(5, token);
    ASSERT_TRUE(page.ok()) << page.status();
    ++pages;
    EXPECT_LE(page->jobs.size(), 5u);
    for (const v1::Job& job : page->jobs) seen.push_back(job.name());
    token = page->next_page_token;
  } while (!token.empty() && pages < 10);
  EXPECT_EQ(pages, 5);
  ASSERT_EQ(seen.size(), 23u);
  for (int i = 0; i < 23; ++i) EXPECT_EQ(seen[i], absl::StrCat("jobs/", i + 1));

  // A page that ends exactly at the last job has no next page.
  absl::StatusOr<JobStore::ListResult> exact = store_->List(23, "");
  ASSERT_TRUE(exact.ok());
  EXPECT_EQ(exact->jobs.size(), 23u);
  EXPECT_TRUE(exact->next_page_token.empty());
  absl::StatusOr<JobStore::ListResult> defaults = store_->List(0, "");
  ASSERT_TRUE(defaults.ok());
  EXPECT_EQ(defaults->jobs.size(), 23u);
  EXPECT_EQ(store_->List(-1, "").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(JobStoreTest, StateFilterAndItsTokens) {
  std::vector<std::string> names;
  for (int i = 0; i < 6; ++i) names.push_back(CreateJob(*store_, Spec("x")));
  for (int i : {1, 3, 4}) {
    ASSERT_TRUE(
        store_->Transition(names[i], v1::Job::RUNNING, "SCHEDULED", "", kT0)
            .ok());
  }
  absl::StatusOr<JobStore::ListResult> running =
      store_->List(2, "", v1::Job::RUNNING);
  ASSERT_TRUE(running.ok()) << running.status();
  ASSERT_EQ(running->jobs.size(), 2u);
  EXPECT_EQ(running->jobs[0].name(), names[1]);
  EXPECT_EQ(running->jobs[1].name(), names[3]);
  ASSERT_FALSE(running->next_page_token.empty());

  // The token only continues the listing it came from.
  EXPECT_EQ(store_->List(2, running->next_page_token).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->List(2, running->next_page_token, v1::Job::QUEUED)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  absl::StatusOr<JobStore::ListResult> rest =
      store_->List(2, running->next_page_token, v1::Job::RUNNING);
  ASSERT_TRUE(rest.ok()) << rest.status();
  ASSERT_EQ(rest->jobs.size(), 1u);
  EXPECT_EQ(rest->jobs[0].name(), names[4]);
  EXPECT_TRUE(rest->next_page_token.empty());

  absl::StatusOr<JobStore::ListResult> queued =
      store_->List(0, "", v1::Job::QUEUED);
  ASSERT_TRUE(queued.ok());
  EXPECT_EQ(queued->jobs.size(), 3u);
  EXPECT_EQ(store_->List(0, "", v1::Job::STATE_UNSPECIFIED).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(JobStoreTest, MalformedPageTokensAreRejected) {
  for (int i = 0; i < 3; ++i) CreateJob(*store_, Spec("x"));
  for (const char* token : {"garbage!", "MTox", "bm90IGEgdG9rZW4", "MTowOio",
                            "MjoxOio", "MTp4Oio", "MToxOio=="}) {
    EXPECT_EQ(store_->List(1, token).status().code(),
              absl::StatusCode::kInvalidArgument)
        << token;
  }
}

struct TransitionCase {
  std::vector<State> path;  // States to pass through from QUEUED.
  State to;
  bool allowed;
};

TEST_F(JobStoreTest, TransitionsFollowTheStateMachine) {
  using J = v1::Job;
  const std::vector<TransitionCase> cases = {
      {{}, J::RUNNING, true},
      {{}, J::CANCELLED, true},
      {{}, J::FAILED, true},
      {{}, J::SUCCEEDED, false},
      {{}, J::CANCELLING, false},
      {{}, J::QUEUED, false},
      {{J::RUNNING}, J::QUEUED, true},
      {{J::RUNNING}, J::SUCCEEDED, true},
      {{J::RUNNING}, J::FAILED, true},
      {{J::RUNNING}, J::CANCELLING, true},
      {{J::RUNNING}, J::CANCELLED, false},
      {{J::RUNNING}, J::RUNNING, false},
      {{J::RUNNING, J::CANCELLING}, J::CANCELLED, true},
      {{J::RUNNING, J::CANCELLING}, J::FAILED, true},
      {{J::RUNNING, J::CANCELLING}, J::SUCCEEDED, true},
      {{J::RUNNING, J::CANCELLING}, J::RUNNING, false},
      {{J::RUNNING, J::CANCELLING}, J::QUEUED, false},
      {{J::RUNNING, J::SUCCEEDED}, J::RUNNING, false},
      {{J::RUNNING, J::SUCCEEDED}, J::FAILED, false},
      {{J::FAILED}, J::QUEUED, false},
      {{J::FAILED}, J::RUNNING, false},
      {{J::CANCELLED}, J::RUNNING, false},
      {{J::CANCELLED}, J::CANCELLED, false},
  };
  for (const TransitionCase& c : cases) {
    const std::string name = CreateJob(*store_, Spec("t"));
    std::string trace = "QUEUED";
    for (State step : c.path) {
      ASSERT_TRUE(store_->Transition(name, step, "STEP", "", kT0).ok());
      trace = v1::Job::State_Name(step);
    }
    SCOPED_TRACE(absl::StrCat(trace, " -> ", v1::Job::State_Name(c.to)));
    absl::StatusOr<v1::Job> moved = store_->Transition(
        name, c.to, "WHY", "because", kT0 + absl::Seconds(1));
    if (c.allowed) {
      ASSERT_TRUE(moved.ok()) << moved.status();
      EXPECT_EQ(moved->state(), c.to);
      ASSERT_EQ(moved->history_size(), static_cast<int>(c.path.size()) + 2);
      const v1::Job::StateChange& last =
          moved->history(moved->history_size() - 1);
      EXPECT_EQ(last.state(), c.to);
      EXPECT_EQ(last.reason(), "WHY");
      EXPECT_EQ(last.message(), "because");
      EXPECT_EQ(last.time().seconds(), 1795800001);
      EXPECT_EQ(moved->error(), c.to == v1::Job::FAILED ? "because" : "");
      EXPECT_TRUE(MessageDifferencer::Equals(*store_->Get(name), *moved));
    } else {
      EXPECT_EQ(moved.status().code(), absl::StatusCode::kFailedPrecondition);
      EXPECT_TRUE(absl::StrContains(moved.status().message(), trace))
          << moved.status();
      EXPECT_TRUE(absl::StrContains(moved.status().message(),
                                    v1::Job::State_Name(c.to)))
          << moved.status();
      EXPECT_EQ(store_->Get(name)->history_size(),
                static_cast<int>(c.path.size()) + 1);
    }
  }
  EXPECT_EQ(store_->Transition("jobs/999", v1::Job::RUNNING, "", "", kT0)
                .status()
                .code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(
      store_->Transition("jobs/1", v1::Job::STATE_UNSPECIFIED, "", "", kT0)
          .status()
          .code(),
      absl::StatusCode::kInvalidArgument);
}

TEST_F(JobStoreTest, RestartsAreCounted) {
  const std::string name = CreateJob(*store_, Spec("r"));
  EXPECT_EQ(store_->Get(name)->attempt_generation(), 0);
  for (int attempt = 1; attempt <= 3; ++attempt) {
    absl::StatusOr<v1::Job> started =
        store_->Transition(name, v1::Job::RUNNING, "SCHEDULED", "", kT0);
    ASSERT_TRUE(started.ok()) << started.status();
    EXPECT_EQ(started->attempt_generation(), attempt)
        << "each start is a new, larger generation";
    absl::StatusOr<v1::Job> requeued = store_->Transition(
        name, v1::Job::QUEUED, "WORKER_LOST", "rank 1 stopped", kT0);
    ASSERT_TRUE(requeued.ok()) << requeued.status();
    EXPECT_EQ(requeued->restart_count(), attempt);
  }
  EXPECT_EQ(store_->Get(name)->history_size(), 7);
}

TEST_F(JobStoreTest, UpdateChangesOnlyOutputFields) {
  const std::string name = CreateJob(*store_, Spec("u"));
  absl::StatusOr<v1::Job> updated = store_->Update(name, [](v1::Job& job) {
    job.mutable_progress()->set_step(3);
    job.mutable_progress()->set_total_steps(10);
    (*job.mutable_evaluation_summary())["forget_quality"] = 0.9;
    job.set_output_model_dir("/runs/u/final");
  });
  ASSERT_TRUE(updated.ok()) << updated.status();
  EXPECT_EQ(updated->progress().step(), 3);
  EXPECT_EQ(store_->Get(name)->output_model_dir(), "/runs/u/final");
  EXPECT_EQ(store_->Get(name)->evaluation_summary().at("forget_quality"), 0.9);

  const std::vector<std::function<void(v1::Job&)>> forbidden = {
      [](v1::Job& job) { job.set_state(v1::Job::SUCCEEDED); },
      [](v1::Job& job) { job.set_name("jobs/77"); },
      [](v1::Job& job) { job.add_history()->set_reason("FAKE"); },
      [](v1::Job& job) { job.set_restart_count(5); },
      [](v1::Job& job) { job.mutable_spec()->set_priority(9); },
      [](v1::Job& job) { job.set_error("x"); },
      [](v1::Job& job) { job.set_request_id("other"); },
      [](v1::Job& job) { job.mutable_create_time()->set_seconds(1); },
  };
  for (size_t i = 0; i < forbidden.size(); ++i) {
    absl::StatusOr<v1::Job> result = store_->Update(name, [&](v1::Job& job) {
      job.mutable_progress()->set_step(100);
      forbidden[i](job);
    });
    EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument) << i;
  }
  // Nothing of the rejected updates was written.
  EXPECT_TRUE(MessageDifferencer::Equals(*store_->Get(name), *updated));
  EXPECT_EQ(store_->Update("jobs/99", [](v1::Job&) {}).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(JobStoreTest, DeleteOnlyFinishedJobs) {
  const std::string name = CreateJob(*store_, Spec("d"));
  ASSERT_TRUE(store_->Create(Spec("d"), "req-d", kT0).ok());
  EXPECT_EQ(store_->Delete(name).code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(store_->Transition(name, v1::Job::RUNNING, "S", "", kT0).ok());
  EXPECT_EQ(store_->Delete(name).code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(store_->Transition(name, v1::Job::CANCELLING, "S", "", kT0).ok());
  EXPECT_EQ(store_->Delete(name).code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(store_->Transition(name, v1::Job::CANCELLED, "S", "", kT0).ok());
  EXPECT_TRUE(store_->Delete(name).ok());
  EXPECT_EQ(store_->Get(name).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->Delete(name).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->Delete("nope").code(), absl::StatusCode::kInvalidArgument);

  // Deleting frees the request id; ids are never reused.
  ASSERT_TRUE(store_->Transition("jobs/2", v1::Job::FAILED, "S", "", kT0).ok());
  ASSERT_TRUE(store_->Delete("jobs/2").ok());
  absl::StatusOr<JobStore::CreateResult> again =
      store_->Create(Spec("other spec"), "req-d", kT0);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE(again->created);
  EXPECT_EQ(again->job.name(), "jobs/3");
}

JobStore::LogLine Line(const std::string& message, int seconds = 0) {
  JobStore::LogLine line;
  line.time = kT0 + absl::Seconds(seconds);
  line.source = "coordinator";
  line.message = message;
  return line;
}

std::vector<std::string> Messages(const std::vector<JobStore::LogLine>& lines) {
  std::vector<std::string> messages;
  for (const JobStore::LogLine& line : lines) messages.push_back(line.message);
  return messages;
}

std::vector<int64_t> Sequences(const std::vector<JobStore::LogLine>& lines) {
  std::vector<int64_t> sequences;
  for (const JobStore::LogLine& line : lines) {
    sequences.push_back(line.sequence);
  }
  return sequences;
}

// The rows job_logs holds, read past the store.
int64_t StoredLogRows(const std::string& path) {
  absl::StatusOr<std::unique_ptr<SqliteDb>> db = SqliteDb::Open(path);
  EXPECT_TRUE(db.ok()) << db.status();
  if (!db.ok()) return -1;
  absl::StatusOr<SqliteStatement> count =
      (*db)->Prepare("SELECT COUNT(*) FROM job_logs");
  EXPECT_TRUE(count.ok()) << count.status();
  if (!count.ok()) return -1;
  absl::StatusOr<bool> has_row = count->Step();
  EXPECT_TRUE(has_row.ok() && *has_row);
  return count->ColumnInt64(0);
}

TEST_F(JobStoreTest, LogLinesReadBackInOrder) {
  const std::string name = CreateJob(*store_, Spec("log"));
  JobStore::LogLine first = Line("QUEUED", 1);
  first.source = "rank0";
  EXPECT_EQ(*store_->AppendLogs(name, {first, Line("RUNNING", 2)}, 100), 2);
  EXPECT_EQ(*store_->AppendLogs(name, {Line("step 10/20", 3)}, 100), 3);
  EXPECT_EQ(*store_->AppendLogs(name, {}, 100), 3);

  absl::StatusOr<std::vector<JobStore::LogLine>> lines =
      store_->ReadLogs(name, 0, 100);
  ASSERT_TRUE(lines.ok()) << lines.status();
  EXPECT_EQ(Messages(*lines),
            (std::vector<std::string>{"QUEUED", "RUNNING", "step 10/20"}));
  EXPECT_EQ(Sequences(*lines), (std::vector<int64_t>{1, 2, 3}));
  EXPECT_EQ((*lines)[0].source, "rank0");
  EXPECT_EQ((*lines)[1].source, "coordinator");
  EXPECT_EQ((*lines)[0].time, kT0 + absl::Seconds(1));
  EXPECT_EQ((*lines)[2].time, kT0 + absl::Seconds(3));

  // Each job has its own numbering.
  const std::string other = CreateJob(*store_, Spec("other"));
  EXPECT_EQ(*store_->AppendLogs(other, {Line("other job")}, 100), 1);
  EXPECT_EQ(Messages(*store_->ReadLogs(other, 0, 100)),
            (std::vector<std::string>{"other job"}));
  EXPECT_EQ(store_->ReadLogs(name, 0, 100)->size(), 3u);
}

TEST_F(JobStoreTest, LogPagesFollowAfterSequence) {
  const std::string name = CreateJob(*store_, Spec("pages"));
  std::vector<JobStore::LogLine> written;
  for (int i = 0; i < 7; ++i) written.push_back(Line(absl::StrCat("line ", i)));
  ASSERT_TRUE(store_->AppendLogs(name, written, 100).ok());

  std::vector<std::vector<int64_t>> pages;
  std::vector<std::string> messages;
  int64_t after = 0;
  while (true) {
    absl::StatusOr<std::vector<JobStore::LogLine>> page =
        store_->ReadLogs(name, after, 3);
    ASSERT_TRUE(page.ok()) << page.status();
    if (page->empty()) break;
    pages.push_back(Sequences(*page));
    for (const JobStore::LogLine& line : *page) {
      messages.push_back(line.message);
    }
    after = page->back().sequence;
  }
  EXPECT_EQ(pages,
            (std::vector<std::vector<int64_t>>{{1, 2, 3}, {4, 5, 6}, {7}}));
  EXPECT_EQ(messages, Messages(written));
  EXPECT_TRUE(store_->ReadLogs(name, 100, 3)->empty());
}

TEST_F(JobStoreTest, LogsKeepTheNewestLines) {
  const std::string name = CreateJob(*store_, Spec("trim"));
  const std::string other = CreateJob(*store_, Spec("untouched"));
  ASSERT_TRUE(store_->AppendLogs(other, {Line("o1"), Line("o2")}, 10).ok());
  ASSERT_TRUE(
      store_
          ->AppendLogs(
              name, {Line("a"), Line("b"), Line("c"), Line("d"), Line("e")}, 3)
          .ok());
  absl::StatusOr<std::vector<JobStore::LogLine>> lines =
      store_->ReadLogs(name, 0, 100);
  ASSERT_TRUE(lines.ok()) << lines.status();
  EXPECT_EQ(Messages(*lines), (std::vector<std::string>{"c", "d", "e"}));
  EXPECT_EQ(Sequences(*lines), (std::vector<int64_t>{3, 4, 5}));

  // Numbers go on after trimming; a reader that saw line 3 gets 4 on.
  EXPECT_EQ(*store_->AppendLogs(name, {Line("f")}, 3), 6);
  EXPECT_EQ(Sequences(*store_->ReadLogs(name, 0, 100)),
            (std::vector<int64_t>{4, 5, 6}));
  EXPECT_EQ(Sequences(*store_->ReadLogs(name, 3, 100)),
            (std::vector<int64_t>{4, 5, 6}));
  EXPECT_EQ(Messages(*store_->ReadLogs(other, 0, 100)),
            (std::vector<std::string>{"o1", "o2"}));
  EXPECT_EQ(StoredLogRows(path_), 5);
}

TEST_F(JobStoreTest, LogsSurviveReopening) {
  const std::string name = CreateJob(*store_, Spec("durable"));
  ASSERT_TRUE(
      store_->AppendLogs(name, {Line("before", 1), Line("close", 2)}, 100)
          .ok());
  store_.reset();

  std::unique_ptr<JobStore> reopened = OpenStore(path_);
  ASSERT_NE(reopened, nullptr);
  absl::StatusOr<std::vector<JobStore::LogLine>> lines =
      reopened->ReadLogs(name, 0, 100);
  ASSERT_TRUE(lines.ok()) << lines.status();
  EXPECT_EQ(Messages(*lines), (std::vector<std::string>{"before", "close"}));
  EXPECT_EQ((*lines)[1].time, kT0 + absl::Seconds(2));
  EXPECT_EQ(*reopened->AppendLogs(name, {Line("after")}, 100), 3);
}

TEST_F(JobStoreTest, DeleteRemovesTheLog) {
  const std::string name = CreateJob(*store_, Spec("deleted"));
  const std::string kept = CreateJob(*store_, Spec("kept"));
  ASSERT_TRUE(store_->AppendLogs(name, {Line("a"), Line("b")}, 100).ok());
  ASSERT_TRUE(store_->AppendLogs(kept, {Line("k")}, 100).ok());
  // A refused Delete keeps the log.
  EXPECT_EQ(store_->Delete(name).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store_->ReadLogs(name, 0, 100)->size(), 2u);

  ASSERT_TRUE(store_->Transition(name, v1::Job::FAILED, "S", "", kT0).ok());
  ASSERT_TRUE(store_->Delete(name).ok());
  EXPECT_EQ(store_->ReadLogs(name, 0, 100).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(StoredLogRows(path_), 1);
  EXPECT_EQ(Messages(*store_->ReadLogs(kept, 0, 100)),
            (std::vector<std::string>{"k"}));
}

TEST_F(JobStoreTest, LogsOfUnknownJobsAndBadArguments) {
  const std::string name = CreateJob(*store_, Spec("silent"));
  absl::StatusOr<std::vector<JobStore::LogLine>> empty =
      store_->ReadLogs(name, 0, 10);
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_TRUE(empty->empty());
  EXPECT_EQ(*store_->AppendLogs(name, {}, 10), 0);

  absl::StatusOr<std::vector<JobStore::LogLine>> unknown =
      store_->ReadLogs("jobs/9", 0, 10);
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(absl::StrContains(unknown.status().message(), "jobs/9"))
      << unknown.status();
  EXPECT_EQ(store_->AppendLogs("jobs/9", {Line("x")}, 10).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->ReadLogs("job/1", 0, 10).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->AppendLogs("jobs/x", {Line("x")}, 10).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->ReadLogs(name, -1, 10).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->ReadLogs(name, 0, 0).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->AppendLogs(name, {Line("x")}, 0).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(StoredLogRows(path_), 0);
}

TEST_F(JobStoreTest, ListInStatesOrdersByPriorityThenAge) {
  const std::string low = CreateJob(*store_, Spec("low", -5));
  const std::string high1 = CreateJob(*store_, Spec("high1", 10));
  const std::string mid = CreateJob(*store_, Spec("mid", 0));
  const std::string high2 = CreateJob(*store_, Spec("high2", 10));
  const std::string done = CreateJob(*store_, Spec("done", 100));
  const std::string running = CreateJob(*store_, Spec("running", 50));
  ASSERT_TRUE(store_->Transition(done, v1::Job::FAILED, "S", "", kT0).ok());
  ASSERT_TRUE(store_->Transition(running, v1::Job::RUNNING, "S", "", kT0).ok());

  absl::StatusOr<std::vector<v1::Job>> queued =
      store_->ListInStates({v1::Job::QUEUED});
  ASSERT_TRUE(queued.ok()) << queued.status();
  std::vector<std::string> names;
  for (const v1::Job& job : *queued) names.push_back(job.name());
  EXPECT_EQ(names, (std::vector<std::string>{high1, high2, mid, low}));

  absl::StatusOr<std::vector<v1::Job>> active =
      store_->ListInStates({v1::Job::QUEUED, v1::Job::RUNNING});
  ASSERT_TRUE(active.ok());
  ASSERT_EQ(active->size(), 5u);
  EXPECT_EQ((*active)[0].name(), running);
  EXPECT_TRUE(store_->ListInStates({})->empty());
  EXPECT_EQ(store_->ListInStates({static_cast<State>(42)}).status().code(),
            absl::StatusCode::kInvalidArgument);

  absl::StatusOr<std::map<v1::Job::State, int64_t>> counts =
      store_->CountByState();
  ASSERT_TRUE(counts.ok()) << counts.status();
  EXPECT_EQ(*counts, (std::map<v1::Job::State, int64_t>{{v1::Job::QUEUED, 4},
                                                        {v1::Job::RUNNING, 1},
                                                        {v1::Job::FAILED, 1}}));
}

TEST_F(JobStoreTest, ConcurrentCreatesGetDistinctIds) {
  constexpr int kThreads = 4;
  constexpr int kPerThread = 25;
  std::vector<std::vector<std::string>> names(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        // Half the calls retry one request id per thread.
        const std::string request_id =
            i % 2 == 0 ? absl::StrCat("thread-", t) : "";
        absl::StatusOr<JobStore::CreateResult> result =
            store_->Create(Spec(absl::StrCat(t)), request_id, kT0);
        ASSERT_TRUE(result.ok()) << result.status();
        if (result->created) names[t].push_back(result->job.name());
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  std::set<std::string> distinct;
  size_t total = 0;
  for (const auto& list : names) {
    total += list.size();
    distinct.insert(list.begin(), list.end());
  }
  const size_t expected = kThreads * (kPerThread / 2 + 1);
  EXPECT_EQ(total, expected);
  EXPECT_EQ(distinct.size(), expected);
}

TEST(JobStoreOpenTest, RejectsAFileThatIsNotADatabase) {
  const std::string path = FreshPath("not_a_database.db");
  {
    std::ofstream out(path);
    out << "this is a text file, not SQLite, and it is long enough to have a "
           "header that SQLite reads and rejects.......................\n";
  }
  absl::StatusOr<std::unique_ptr<JobStore>> store = JobStore::Open(path);
  EXPECT_FALSE(store.ok());
  EXPECT_TRUE(absl::StrContains(store.status().message(), path))
      << store.status();
}

TEST(JobStoreOpenTest, RejectsANewerSchema) {
  const std::string path = FreshPath("newer_schema.db");
  {
    absl::StatusOr<std::unique_ptr<SqliteDb>> db = SqliteDb::Open(path);
    ASSERT_TRUE(db.ok()) << db.status();
    ASSERT_TRUE((*db)->Execute("PRAGMA user_version = 99").ok());
  }
  EXPECT_EQ(JobStore::Open(path).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

// A file written by schema version 1 (no job_logs table) opens, keeps its
// jobs and gains a log.
TEST(JobStoreOpenTest, MigratesAVersion1Store) {
  const std::string path = FreshPath("version1.db");
  v1::Job job;
  job.set_name("jobs/1");
  job.set_state(v1::Job::SUCCEEDED);
  *job.mutable_spec() = Spec("old");
  {
    absl::StatusOr<std::unique_ptr<SqliteDb>> db = SqliteDb::Open(path);
    ASSERT_TRUE(db.ok()) << db.status();
    ASSERT_TRUE((*db)
                    ->Execute("CREATE TABLE jobs ("
                              "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
                              "  request_id TEXT UNIQUE,"
                              "  state INTEGER NOT NULL,"
                              "  priority INTEGER NOT NULL,"
                              "  create_micros INTEGER NOT NULL,"
                              "  job BLOB NOT NULL);"
                              "CREATE INDEX jobs_by_state ON jobs (state, id);"
                              "PRAGMA user_version = 1;")
                    .ok());
    absl::StatusOr<SqliteStatement> insert = (*db)->Prepare(
        "INSERT INTO jobs (request_id, state, priority, create_micros, job) "
        "VALUES (NULL, ?1, 0, 0, ?2)");
    ASSERT_TRUE(insert.ok()) << insert.status();
    ASSERT_TRUE(insert->BindInt64(1, job.state()).ok());
    ASSERT_TRUE(insert->BindBlob(2, job.SerializeAsString()).ok());
    ASSERT_TRUE(insert->StepUntilDone().ok());
  }
  std::unique_ptr<JobStore> store = OpenStore(path);
  ASSERT_NE(store, nullptr);
  absl::StatusOr<v1::Job> got = store->Get("jobs/1");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_TRUE(MessageDifferencer::Equals(*got, job));
  EXPECT_TRUE(store->ReadLogs("jobs/1", 0, 10)->empty());
  EXPECT_EQ(*store->AppendLogs("jobs/1", {Line("after migration")}, 10), 1);
  EXPECT_TRUE(store->Delete("jobs/1").ok());
  EXPECT_EQ(CreateJob(*store, Spec("new")), "jobs/2");
  store.reset();

  absl::StatusOr<std::unique_ptr<SqliteDb>> db = SqliteDb::Open(path);
  ASSERT_TRUE(db.ok()) << db.status();
  absl::StatusOr<SqliteStatement> version =
      (*db)->Prepare("PRAGMA user_version");
  ASSERT_TRUE(version.ok()) << version.status();
  ASSERT_TRUE(*version->Step());
  EXPECT_EQ(version->ColumnInt64(0), 3);
}

// A version 2 store (request_id unique across all jobs, no tenant) opens:
// its jobs belong to tenant "", their request_ids still make Create
// idempotent for tenant "", and ids go on counting after the highest ever
// used (even a deleted one).
TEST(JobStoreOpenTest, MigratesAVersion2StoreToTenants) {
  const std::string path = FreshPath("version2.db");
  {
    std::unique_ptr<JobStore> store = OpenStore(path);
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(store->Create(Spec("old"), "req-old", kT0).ok());
  }
  {
    // Rewrite the file as version 2 wrote it: no tenant column.
    absl::StatusOr<std::unique_ptr<SqliteDb>> db = SqliteDb::Open(path);
    ASSERT_TRUE(db.ok()) << db.status();
    ASSERT_TRUE((*db)
                    ->Execute("DROP INDEX jobs_by_tenant;"
                              "ALTER TABLE jobs DROP COLUMN tenant;"
                              "INSERT INTO jobs (id, request_id, state, "
                              "priority, create_micros, job) VALUES "
                              "(7, NULL, 6, 0, 0, x'');"
                              "DELETE FROM jobs WHERE id = 7;"
                              "PRAGMA user_version = 2;")
                    .ok());
  }
  std::unique_ptr<JobStore> store = OpenStore(path);
  ASSERT_NE(store, nullptr);
  absl::StatusOr<v1::Job> old = store->Get("jobs/1");
  ASSERT_TRUE(old.ok()) << old.status();
  EXPECT_EQ(old->tenant(), "");
  absl::StatusOr<JobStore::CreateResult> retry =
      store->Create(Spec("old"), "req-old", kT0);
  ASSERT_TRUE(retry.ok()) << retry.status();
  EXPECT_FALSE(retry->created);
  EXPECT_EQ(retry->job.name(), "jobs/1");
  absl::StatusOr<JobStore::CreateResult> other_tenant =
      store->Create(Spec("old"), "req-old", kT0, "team-a");
  ASSERT_TRUE(other_tenant.ok()) << other_tenant.status();
  EXPECT_TRUE(other_tenant->created);
  EXPECT_EQ(other_tenant->job.name(), "jobs/8");
  EXPECT_EQ(other_tenant->job.tenant(), "team-a");
}

TEST_F(JobStoreTest, LongLogMessagesAreCut) {
  const std::string job = CreateJob(*store_, Spec("long"));
  // 3 bytes per character: the cut must not split one.
  std::string euros;
  for (int i = 0; i < 5000; ++i) euros += "\u20ac";
  JobStore::LogLine huge = Line(std::string(1 << 20, 'x'));
  JobStore::LogLine utf8 = Line(euros);
  JobStore::LogLine exact =
      Line(std::string(JobStore::kMaxLogMessageBytes, 'y'));
  ASSERT_TRUE(store_->AppendLogs(job, {huge, utf8, exact}, 10).ok());
  absl::StatusOr<std::vector<JobStore::LogLine>> lines =
      store_->ReadLogs(job, 0, 10);
  ASSERT_TRUE(lines.ok()) << lines.status();
  ASSERT_EQ(lines->size(), 3u);
  EXPECT_LE((*lines)[0].message.size(), JobStore::kMaxLogMessageBytes);
  EXPECT_TRUE(absl::EndsWith((*lines)[0].message, "[1048576 bytes, cut]"))
      << (*lines)[0].message.substr((*lines)[0].message.size() - 40);
  EXPECT_EQ((*lines)[0].message.substr(0, 100), std::string(100, 'x'));
  const std::string& cut = (*lines)[1].message;
  EXPECT_LE(cut.size(), JobStore::kMaxLogMessageBytes);
  const size_t kept = cut.find(" ... [");
  ASSERT_NE(kept, std::string::npos);
  EXPECT_EQ(kept % 3, 0u) << "cut inside a character";
  EXPECT_EQ(cut.substr(0, kept), euros.substr(0, kept));
  EXPECT_EQ((*lines)[2].message, exact.message);  // At the limit: whole.
}

TEST_F(JobStoreTest, RequestIdsAndListsArePerTenant) {
  absl::StatusOr<JobStore::CreateResult> a =
      store_->Create(Spec("a"), "req", kT0, "team-a");
  ASSERT_TRUE(a.ok()) << a.status();
  // The same request_id with another spec is another tenant's own job.
  absl::StatusOr<JobStore::CreateResult> b =
      store_->Create(Spec("b"), "req", kT0, "team-b");
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_TRUE(b->created);
  EXPECT_NE(a->job.name(), b->job.name());
  EXPECT_EQ(b->job.tenant(), "team-b");
  EXPECT_EQ(store_->Get(b->job.name())->tenant(), "team-b");
  // Within a tenant the usual rules hold.
  absl::StatusOr<JobStore::CreateResult> a_again =
      store_->Create(Spec("a"), "req", kT0, "team-a");
  ASSERT_TRUE(a_again.ok()) << a_again.status();
  EXPECT_FALSE(a_again->created);
  EXPECT_EQ(a_again->job.name(), a->job.name());
  EXPECT_TRUE(absl::IsAlreadyExists(
      store_->Create(Spec("other"), "req", kT0, "team-a").status()));
  CreateJob(*store_, Spec("no tenant"));

  absl::StatusOr<JobStore::ListResult> only_b =
      store_->List(0, "", std::nullopt, std::string("team-b"));
  ASSERT_TRUE(only_b.ok()) << only_b.status();
  ASSERT_EQ(only_b->jobs.size(), 1u);
  EXPECT_EQ(only_b->jobs[0].name(), b->job.name());
  absl::StatusOr<JobStore::ListResult> none =
      store_->List(0, "", std::nullopt, std::string("team-c"));
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_TRUE(none->jobs.empty());
  EXPECT_EQ(store_->List(0, "")->jobs.size(), 3u);

  // The separator of the stored key cannot be smuggled in.
  EXPECT_TRUE(absl::IsInvalidArgument(
      store_->Create(Spec("x"), "b\x1freq", kT0, "team").status()));
  EXPECT_TRUE(absl::IsInvalidArgument(store_
                                          ->Create(Spec("x"), "req", kT0,
                                                   "team\x1f"
                                                   "b")
                                          .status()));
}

}  // namespace
}  // namespace lethe
