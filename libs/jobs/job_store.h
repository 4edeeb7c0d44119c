// The coordinator's durable record of jobs (lethe.v1.Job) in one SQLite file.
//
//   ASSIGN_OR_RETURN(std::unique_ptr<JobStore> store, JobStore::Open(path));
//   ASSIGN_OR_RETURN(JobStore::CreateResult created,
//                    store->Create(spec, request_id, absl::Now()));
//   ASSIGN_OR_RETURN(v1::Job job,
//                    store->Transition(created.job.name(), v1::Job::RUNNING,
//                                      "SCHEDULED", "on 2 workers",
//                                      absl::Now()));
//   ASSIGN_OR_RETURN(job, store->Update(job.name(), [&](v1::Job& j) {
//     j.mutable_progress()->set_step(17);
//   }));
//
// Contract:
// - Jobs are named "jobs/<id>", ids counting up from 1 and never reused
//   (not even after Delete). Another name is INVALID_ARGUMENT; a well-formed
//   name of no stored job is NOT_FOUND.
// - Every job belongs to a tenant (Job.tenant, given at Create; "" for
//   jobs created without one and for those of stores older than schema
//   version 3, which Open migrates). List can show one tenant's jobs only.
// - Create is idempotent per tenant and non-empty request_id: a retry with
//   the same spec returns the stored job with created == false; the same
//   request_id with a different spec is ALREADY_EXISTS. The same
//   request_id in another tenant is another job. A tenant or request_id
//   containing the character 0x1f is INVALID_ARGUMENT.
// - The state changes only through Transition, along these edges:
//     QUEUED     -> RUNNING | CANCELLED | FAILED
//     RUNNING    -> QUEUED (a restart; restart_count + 1) | SUCCEEDED |
//                   FAILED | CANCELLING
//     CANCELLING -> CANCELLED | FAILED | SUCCEEDED
//   SUCCEEDED, FAILED and CANCELLED are final. Any other move is
//   FAILED_PRECONDITION naming both states. Every move appends a StateChange
//   to the history; a move to FAILED also sets `error` to the message; a
//   move to RUNNING adds one to attempt_generation.
// - Update may change only progress, evaluation_summary and
//   output_model_dir; a mutation that touches any other field is
//   INVALID_ARGUMENT and nothing is written.
// - Each job has a durable log: lines numbered 1, 2, ... per job (numbers
//   are never reused, not even after trimming), the newest `max_lines`
//   kept. A message longer than kMaxLogMessageBytes is cut there (at a
//   UTF-8 character boundary, ending in a note of how much was cut).
//   Delete removes the job's log with it.
// - A stored record that does not parse (a damaged file) reads as a FAILED
//   job with reason DATA_LOSS naming it: ListInStates skips it (and records
//   its state as FAILED), Get and List show it, Update refuses it with
//   DATA_LOSS, Delete removes it. One bad row never stops the others.
// - Every call is one SQLite transaction: a failed call writes nothing.
// - Thread-safe: one connection behind a mutex. Several processes may open
//   the same file (SQLite's locking, WAL mode), though the coordinator is
//   meant to be its only writer.
#ifndef LETHE_LIBS_JOBS_JOB_STORE_H_
#define LETHE_LIBS_JOBS_JOB_STORE_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "lethe/v1/job.pb.h"
#include "libs/jobs/job_state.h"
#include "libs/sqlite/sqlite_db.h"

namespace lethe {

class JobStore {
 public:
  // List's page size when the caller asks for 0, and the largest it serves.
  static constexpr int kDefaultPageSize = 50;
  static constexpr int kMaxPageSize = 1000;
  // The longest log message stored, in bytes.
  static constexpr size_t kMaxLogMessageBytes = 4096;

  // Opens or creates the store at `path`. A file that is not a SQLite
  // database is DATA_LOSS; a store written by a newer schema version is
  // FAILED_PRECONDITION.
  static absl::StatusOr<std::unique_ptr<JobStore>> Open(
      const std::string& path);

  JobStore(const JobStore&) = delete;
  JobStore& operator=(const JobStore&) = delete;

  struct CreateResult {
    v1::Job job;
    bool created;  // False when an earlier call with request_id made `job`.
  };
  // Stores a new QUEUED job (history [QUEUED "CREATED"], create_time `now`).
  // The spec is stored as given: fill defaults and validate it first.
  absl::StatusOr<CreateResult> Create(const v1::JobSpec& spec,
                                      const std::string& request_id,
                                      absl::Time now,
                                      const std::string& tenant = "");

  absl::StatusOr<v1::Job> Get(absl::string_view name);

  struct ListResult {
    std::vector<v1::Job> jobs;
    std::string next_page_token;  // Empty after the last page.
  };
  // Oldest job first (ascending id). page_size 0 means kDefaultPageSize and
  // larger sizes are cut to kMaxPageSize; negative is INVALID_ARGUMENT.
  // page_token is "" for the first page or a next_page_token from a call
  // with the same state_filter; anything else is INVALID_ARGUMENT. Jobs
  // created while paging appear on later pages. With `tenant`, only that
  // tenant's jobs.
  absl::StatusOr<ListResult> List(
      int page_size, absl::string_view page_token,
      std::optional<v1::Job::State> state_filter = std::nullopt,
      const std::optional<std::string>& tenant = std::nullopt);

  // Moves the job to `to` (see the edges above) and records why.
  absl::StatusOr<v1::Job> Transition(absl::string_view name, v1::Job::State to,
                                     absl::string_view reason,
                                     absl::string_view message, absl::Time now);

  // Read-modify-write of the output-only fields in one transaction; returns
  // the stored result. `mutate` runs under the store's lock: it must not
  // call back into the store.
  absl::StatusOr<v1::Job> Update(absl::string_view name,
                                 const std::function<void(v1::Job&)>& mutate);

  // Removes a job in a final state (FAILED_PRECONDITION otherwise) and its
  // log. Its request_id becomes free again.
  absl::Status Delete(absl::string_view name);

  struct LogLine {
    int64_t sequence = 0;  // Assigned by AppendLogs; ignored there.
    absl::Time time;
    std::string source;  // "coordinator", "rank0", ...
    std::string message;
  };
  // Appends `lines` in order to the job's log and deletes its oldest lines
  // beyond the newest `max_lines` (which must be positive). Returns the
  // sequence number of the job's last line (0 when it has none). A job of
  // any state may log; an unknown job is NOT_FOUND.
  absl::StatusOr<int64_t> AppendLogs(absl::string_view name,
                                     const std::vector<LogLine>& lines,
                                     int max_lines);

  // Up to `limit` (positive) of the job's stored lines with sequence numbers
  // above `after_sequence` (>= 0), oldest first: 0 reads from the oldest
  // line kept, the last line's sequence reads the next page. Lines trimmed
  // meanwhile are skipped. A job that logged nothing has an empty log; an
  // unknown (or deleted) job is NOT_FOUND.
  absl::StatusOr<std::vector<LogLine>> ReadLogs(absl::string_view name,
                                                int64_t after_sequence,
                                                int limit);

  // The number of stored jobs in each state (states with none are absent).
  absl::StatusOr<std::map<v1::Job::State, int64_t>> CountByState();

  // Every job in one of `states`, for the scheduler: highest spec.priority
  // first, then oldest first.
  absl::StatusOr<std::vector<v1::Job>> ListInStates(
      const std::vector<v1::Job::State>& states);

 private:
  explicit JobStore(std::unique_ptr<SqliteDb> db);

  // A record that does not parse loads as a FAILED job with reason
  // DATA_LOSS, and sets *unreadable when given.
  absl::StatusOr<v1::Job> LoadLocked(int64_t id, bool* unreadable = nullptr)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Sets the state column of unreadable records to FAILED.
  absl::Status MarkUnreadableLocked(const std::vector<int64_t>& ids)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // NOT_FOUND unless a job with `id` is stored.
  absl::Status CheckExistsLocked(int64_t id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status SaveLocked(int64_t id, const v1::Job& job)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  absl::Mutex mu_;
  std::unique_ptr<SqliteDb> db_ ABSL_GUARDED_BY(mu_);
};

}  // namespace lethe

#endif  // LETHE_LIBS_JOBS_JOB_STORE_H_
