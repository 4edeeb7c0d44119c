#include "libs/jobs/job_store.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/timestamp.pb.h>
#include <google/protobuf/util/message_differencer.h>

#include <algorithm>
#include <iterator>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "libs/logging/logging.h"
#include "libs/status/status_macros.h"

namespace lethe {
namespace {

using State = v1::Job::State;

// Version 1: jobs(id, request_id, state, priority, create_micros, job).
// Version 2: adds job_logs(job_id, sequence, time_micros, source, message).
// Version 3: adds jobs.tenant ("" for the jobs of older versions); the
// request_id column then holds the tenant-qualified key (RequestKey).
// Every statement of kCreateSchema is idempotent, so running it again
// migrates a file of version 0 to 2; kMigrateTo3 then adds version 3.
constexpr int64_t kSchemaVersion = 3;
constexpr char kCreateSchema[] =
    "CREATE TABLE IF NOT EXISTS jobs ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  request_id TEXT UNIQUE,"  // NULL when the client sent none.
    "  state INTEGER NOT NULL,"
    "  priority INTEGER NOT NULL,"
    "  create_micros INTEGER NOT NULL,"
    "  job BLOB NOT NULL);"  // A serialized lethe.v1.Job.
    "CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state, id);"
    "CREATE TABLE IF NOT EXISTS job_logs ("
    "  job_id INTEGER NOT NULL REFERENCES jobs (id),"
    "  sequence INTEGER NOT NULL,"  // 1, 2, ... per job.
    "  time_micros INTEGER NOT NULL,"
    "  source TEXT NOT NULL,"
    "  message TEXT NOT NULL,"
    "  PRIMARY KEY (job_id, sequence)) WITHOUT ROWID;"
    "PRAGMA user_version = 2;";
constexpr char kMigrateTo3[] =
    "ALTER TABLE jobs ADD COLUMN tenant TEXT NOT NULL DEFAULT '';"
    "CREATE INDEX IF NOT EXISTS jobs_by_tenant ON jobs (tenant, id);"
    "PRAGMA user_version = 3;";

// Separates a tenant from a request_id in the request_id column. Neither
// may contain it, so the key is unambiguous; tenant "" stores the bare
// request_id, as every version before 3 did.
constexpr char kTenantSeparator = '\x1f';

std::string RequestKey(absl::string_view tenant, absl::string_view request_id) {
  if (tenant.empty()) return std::string(request_id);
  return absl::StrCat(tenant, std::string(1, kTenantSeparator), request_id);
}

constexpr char kNamePrefix[] = "jobs/";

struct Edge {
  State from;
  State to;
};
constexpr Edge kAllowedTransitions[] = {
    {v1::Job::QUEUED, v1::Job::RUNNING},
    {v1::Job::QUEUED, v1::Job::CANCELLED},
    {v1::Job::QUEUED, v1::Job::FAILED},
    {v1::Job::RUNNING, v1::Job::QUEUED},
    {v1::Job::RUNNING, v1::Job::SUCCEEDED},
    {v1::Job::RUNNING, v1::Job::FAILED},
    {v1::Job::RUNNING, v1::Job::CANCELLING},
    {v1::Job::CANCELLING, v1::Job::CANCELLED},
    {v1::Job::CANCELLING, v1::Job::FAILED},
    {v1::Job::CANCELLING, v1::Job::SUCCEEDED},
};

// The fields Update may change.
constexpr const char* kUpdatableFields[] = {"progress", "evaluation_summary",
                                            "output_model_dir"};

bool IsTransitionAllowed(State from, State to) {
  for (const Edge& edge : kAllowedTransitions) {
    if (edge.from == from && edge.to == to) return true;
  }
  return false;
}

std::string StateName(State state) {
  if (!v1::Job::State_IsValid(state)) return absl::StrCat("state ", state);
  return v1::Job::State_Name(state);
}

absl::Status CheckStateArgument(absl::string_view what, State state) {
  if (!v1::Job::State_IsValid(state) || state == v1::Job::STATE_UNSPECIFIED) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": ", StateName(state), " is not a job state"));
  }
  return absl::OkStatus();
}

std::string NameFor(int64_t id) { return absl::StrCat(kNamePrefix, id); }

// "jobs/<id>" with id a positive integer written without leading zeros.
absl::StatusOr<int64_t> IdFromName(absl::string_view name) {
  absl::string_view digits = name;
  int64_t id = 0;
  if (absl::ConsumePrefix(&digits, kNamePrefix) && !digits.empty() &&
      digits.size() <= 18 && digits[0] != '0' &&
      std::all_of(digits.begin(), digits.end(),
                  [](char c) { return absl::ascii_isdigit(c); }) &&
      absl::SimpleAtoi(digits, &id)) {
    return id;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "job name \"", name, "\" is not of the form jobs/<positive integer>"));
}

google::protobuf::Timestamp ToTimestamp(absl::Time time) {
  // ToUnixSeconds rounds toward the past, so nanos is never negative.
  const int64_t seconds = absl::ToUnixSeconds(time);
  google::protobuf::Timestamp timestamp;
  timestamp.set_seconds(seconds);
  timestamp.set_nanos(static_cast<int32_t>(
      absl::ToInt64Nanoseconds(time - absl::FromUnixSeconds(seconds))));
  return timestamp;
}

void AppendStateChange(v1::Job& job, State state, absl::string_view reason,
                       absl::string_view message, absl::Time now) {
  job.set_state(state);
  v1::Job::StateChange* change = job.add_history();
  change->set_state(state);
  change->set_reason(std::string(reason));
  change->set_message(std::string(message));
  *change->mutable_time() = ToTimestamp(now);
}

// `message` cut to at most `max_bytes` bytes, at a UTF-8 character
// boundary, ending in " ... [N bytes cut]" when cut.
std::string BoundedLogMessage(const std::string& message, size_t max_bytes) {
  if (message.size() <= max_bytes) return message;
  std::string note = absl::StrCat(" ... [", message.size(), " bytes, cut]");
  size_t keep = max_bytes > note.size() ? max_bytes - note.size() : 0;
  // Do not end inside a multi-byte character: back off its continuation
  // bytes (10xxxxxx) and then its lead byte.
  if (keep < message.size() &&
      (static_cast<unsigned char>(message[keep]) & 0xC0) == 0x80) {
    while (keep > 0 &&
           (static_cast<unsigned char>(message[keep]) & 0xC0) == 0x80) {
      --keep;
    }
  }
  return absl::StrCat(message.substr(0, keep), note);
}

// Page tokens: web-safe base64 of "1:<last id>:<state filter or *>".
std::string FilterKey(std::optional<State> filter) {
  return filter.has_value() ? absl::StrCat(static_cast<int>(*filter)) : "*";
}

std::string MakePageToken(int64_t last_id, std::optional<State> filter) {
  return absl::WebSafeBase64Escape(
      absl::StrCat("1:", last_id, ":", FilterKey(filter)));
}

absl::StatusOr<int64_t> ParsePageToken(absl::string_view token,
                                       std::optional<State> filter) {
  const absl::Status malformed = absl::InvalidArgumentError(absl::StrCat(
      "page_token \"", token, "\" is not a token from an earlier List call"));
  std::string payload;
  if (!absl::WebSafeBase64Unescape(token, &payload)) return malformed;
  const std::vector<absl::string_view> parts = absl::StrSplit(payload, ':');
  int64_t last_id = 0;
  if (parts.size() != 3 || parts[0] != "1" ||
      !absl::SimpleAtoi(parts[1], &last_id) || last_id <= 0) {
    return malformed;
  }
  if (parts[2] != FilterKey(filter)) {
    return absl::InvalidArgumentError(
        "page_token was issued for a different state filter; start again "
        "with an empty page_token");
  }
  return last_id;
}

}  // namespace

JobStore::JobStore(std::unique_ptr<SqliteDb> db) : db_(std::move(db)) {}

absl::StatusOr<std::unique_ptr<JobStore>> JobStore::Open(
    const std::string& path) {
  ASSIGN_OR_RETURN(std::unique_ptr<SqliteDb> db, SqliteDb::Open(path));
  RETURN_IF_ERROR(db->InTransaction([&]() -> absl::Status {
    ASSIGN_OR_RETURN(SqliteStatement version,
                     db->Prepare("PRAGMA user_version"));
    ASSIGN_OR_RETURN(const bool has_row, version.Step());
    const int64_t found = has_row ? version.ColumnInt64(0) : 0;
    if (found > kSchemaVersion) {
      return absl::FailedPreconditionError(
          absl::StrCat(path, ": job store schema version ", found,
                       " is newer than this binary's (", kSchemaVersion, ")"));
    }
    if (found == kSchemaVersion) return absl::OkStatus();
    if (found < 2) RETURN_IF_ERROR(db->Execute(kCreateSchema));
    return db->Execute(kMigrateTo3);
  }));
  return std::unique_ptr<JobStore>(new JobStore(std::move(db)));
}

namespace {

// What a stored record that does not parse reads as: a FAILED job, reason
// DATA_LOSS, so that the jobs around it are still served and it can be
// deleted. Its bytes stay in the file until then.
v1::Job UnreadableJob(const std::string& db_path, int64_t id) {
  v1::Job job;
  job.set_name(NameFor(id));
  job.set_state(v1::Job::FAILED);
  job.set_error(absl::StrCat(db_path, ": the stored record of ", NameFor(id),
                             " does not parse; delete the job"));
  v1::Job::StateChange& change = *job.add_history();
  change.set_state(v1::Job::FAILED);
  change.set_reason("DATA_LOSS");
  change.set_message(job.error());
  return job;
}

}  // namespace

absl::StatusOr<v1::Job> JobStore::LoadLocked(int64_t id, bool* unreadable) {
  ASSIGN_OR_RETURN(SqliteStatement select,
                   db_->Prepare("SELECT job FROM jobs WHERE id = ?1"));
  RETURN_IF_ERROR(select.BindInt64(1, id));
  ASSIGN_OR_RETURN(const bool found, select.Step());
  if (!found) {
    return absl::NotFoundError(absl::StrCat(NameFor(id), " not found"));
  }
  v1::Job job;
  if (!job.ParseFromString(select.ColumnBlob(0))) {
    if (unreadable != nullptr) *unreadable = true;
    return UnreadableJob(db_->path(), id);
  }
  if (unreadable != nullptr) *unreadable = false;
  return job;
}

absl::Status JobStore::MarkUnreadableLocked(const std::vector<int64_t>& ids) {
  for (const int64_t id : ids) {
    LETHE_LOG(ERROR) << db_->path() << ": the stored record of " << NameFor(id)
                     << " does not parse; it is FAILED (DATA_LOSS) and "
                        "skipped until deleted";
    ASSIGN_OR_RETURN(SqliteStatement update,
                     db_->Prepare("UPDATE jobs SET state = ?2 WHERE id = ?1"));
    RETURN_IF_ERROR(update.BindInt64(1, id));
    RETURN_IF_ERROR(update.BindInt64(2, v1::Job::FAILED));
    RETURN_IF_ERROR(update.StepUntilDone());
  }
  return absl::OkStatus();
}

absl::Status JobStore::CheckExistsLocked(int64_t id) {
  ASSIGN_OR_RETURN(SqliteStatement select,
                   db_->Prepare("SELECT 1 FROM jobs WHERE id = ?1"));
  RETURN_IF_ERROR(select.BindInt64(1, id));
  ASSIGN_OR_RETURN(const bool found, select.Step());
  if (!found) {
    return absl::NotFoundError(absl::StrCat(NameFor(id), " not found"));
  }
  return absl::OkStatus();
}

absl::Status JobStore::SaveLocked(int64_t id, const v1::Job& job) {
  ASSIGN_OR_RETURN(
      SqliteStatement update,
      db_->Prepare(
          "UPDATE jobs SET state = ?2, priority = ?3, job = ?4 WHERE id = ?1"));
  RETURN_IF_ERROR(update.BindInt64(1, id));
  RETURN_IF_ERROR(update.BindInt64(2, job.state()));
  RETURN_IF_ERROR(update.BindInt64(3, job.spec().priority()));
  RETURN_IF_ERROR(update.BindBlob(4, job.SerializeAsString()));
  return update.StepUntilDone();
}

absl::StatusOr<JobStore::CreateResult> JobStore::Create(
    const v1::JobSpec& spec, const std::string& request_id, absl::Time now,
    const std::string& tenant) {
  if (tenant.find(kTenantSeparator) != std::string::npos ||
      request_id.find(kTenantSeparator) != std::string::npos) {
    return absl::InvalidArgumentError(
        "tenant and request_id must not contain the character 0x1f");
  }
  const std::string request_key = RequestKey(tenant, request_id);
  absl::MutexLock lock(&mu_);
  CreateResult result;
  RETURN_IF_ERROR(db_->InTransaction([&]() -> absl::Status {
    if (!request_id.empty()) {
      ASSIGN_OR_RETURN(
          SqliteStatement select,
          db_->Prepare("SELECT id FROM jobs WHERE request_id = ?1"));
      RETURN_IF_ERROR(select.BindText(1, request_key));
      ASSIGN_OR_RETURN(const bool exists, select.Step());
      if (exists) {
        const int64_t id = select.ColumnInt64(0);
        ASSIGN_OR_RETURN(v1::Job job, LoadLocked(id));
        if (!google::protobuf::util::MessageDifferencer::Equals(job.spec(),
                                                                spec)) {
          return absl::AlreadyExistsError(absl::StrCat(
              "request_id \"", request_id, "\" was already used for ",
              NameFor(id), " with a different spec"));
        }
        result = CreateResult{std::move(job), false};
        return absl::OkStatus();
      }
    }
    v1::Job job;
    *job.mutable_spec() = spec;
    job.set_request_id(request_id);
    job.set_tenant(tenant);
    *job.mutable_create_time() = ToTimestamp(now);
    AppendStateChange(job, v1::Job::QUEUED, "CREATED", "", now);

    ASSIGN_OR_RETURN(SqliteStatement insert,
                     db_->Prepare("INSERT INTO jobs (request_id, state, "
                                  "priority, create_micros, job, tenant) "
                                  "VALUES (?1, ?2, ?3, ?4, ?5, ?6) "
                                  "RETURNING id"));
    if (request_id.empty()) {
      RETURN_IF_ERROR(insert.BindNull(1));
    } else {
      RETURN_IF_ERROR(insert.BindText(1, request_key));
    }
    RETURN_IF_ERROR(insert.BindText(6, tenant));
    RETURN_IF_ERROR(insert.BindInt64(2, job.state()));
    RETURN_IF_ERROR(insert.BindInt64(3, spec.priority()));
    RETURN_IF_ERROR(insert.BindInt64(4, absl::ToUnixMicros(now)));
    RETURN_IF_ERROR(insert.BindBlob(5, ""));
    ASSIGN_OR_RETURN(const bool has_id, insert.Step());
    if (!has_id) {
      return absl::InternalError(
          absl::StrCat(db_->path(), ": INSERT returned no id"));
    }
    const int64_t id = insert.ColumnInt64(0);
    RETURN_IF_ERROR(insert.StepUntilDone());
    job.set_name(NameFor(id));
    RETURN_IF_ERROR(SaveLocked(id, job));
    result = CreateResult{std::move(job), true};
    return absl::OkStatus();
  }));
  return result;
}

absl::StatusOr<v1::Job> JobStore::Get(absl::string_view name) {
  ASSIGN_OR_RETURN(const int64_t id, IdFromName(name));
  absl::MutexLock lock(&mu_);
  return LoadLocked(id);
}

absl::StatusOr<JobStore::ListResult> JobStore::List(
    int page_size, absl::string_view page_token,
    std::optional<State> state_filter,
    const std::optional<std::string>& tenant) {
  if (page_size < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("page_size must be >= 0, got ", page_size));
  }
  if (page_size == 0) page_size = kDefaultPageSize;
  if (page_size > kMaxPageSize) page_size = kMaxPageSize;
  if (state_filter.has_value()) {
    RETURN_IF_ERROR(CheckStateArgument("state filter", *state_filter));
  }
  int64_t after_id = 0;
  if (!page_token.empty()) {
    ASSIGN_OR_RETURN(after_id, ParsePageToken(page_token, state_filter));
  }

  absl::MutexLock lock(&mu_);
  ListResult result;
  // One row more than the page tells whether another page follows.
  ASSIGN_OR_RETURN(SqliteStatement select,
                   db_->Prepare(absl::StrCat(
                       "SELECT id, job FROM jobs WHERE id > ?1",
                       state_filter.has_value() ? " AND state = ?3" : "",
                       tenant.has_value() ? " AND tenant = ?4" : "",
                       " ORDER BY id LIMIT ?2")));
  if (tenant.has_value()) RETURN_IF_ERROR(select.BindText(4, *tenant));
  RETURN_IF_ERROR(select.BindInt64(1, after_id));
  RETURN_IF_ERROR(select.BindInt64(2, page_size + 1));
  if (state_filter.has_value()) {
    RETURN_IF_ERROR(select.BindInt64(3, *state_filter));
  }
  int64_t last_id = 0;
  while (true) {
    ASSIGN_OR_RETURN(const bool has_row, select.Step());
    if (!has_row) break;
    if (static_cast<int>(result.jobs.size()) == page_size) {
      result.next_page_token = MakePageToken(last_id, state_filter);
      break;
    }
    last_id = select.ColumnInt64(0);
    v1::Job& job = result.jobs.emplace_back();
    if (!job.ParseFromString(select.ColumnBlob(1))) {
      job = UnreadableJob(db_->path(), last_id);
      if (state_filter.has_value() && *state_filter != v1::Job::FAILED) {
        result.jobs.pop_back();
      }
    }
  }
  return result;
}

absl::StatusOr<v1::Job> JobStore::Transition(absl::string_view name, State to,
                                             absl::string_view reason,
                                             absl::string_view message,
                                             absl::Time now) {
  ASSIGN_OR_RETURN(const int64_t id, IdFromName(name));
  RETURN_IF_ERROR(CheckStateArgument("target", to));
  absl::MutexLock lock(&mu_);
  v1::Job job;
  RETURN_IF_ERROR(db_->InTransaction([&]() -> absl::Status {
    ASSIGN_OR_RETURN(job, LoadLocked(id));
    const State from = job.state();
    if (!IsTransitionAllowed(from, to)) {
      return absl::FailedPreconditionError(absl::StrCat(
          job.name(), ": cannot move from ", StateName(from), " to ",
          StateName(to),
          IsFinalState(from) ? absl::StrCat(" (", StateName(from), " is final)")
                             : ""));
    }
    if (from == v1::Job::RUNNING && to == v1::Job::QUEUED) {
      job.set_restart_count(job.restart_count() + 1);
    }
    if (to == v1::Job::RUNNING) {
      job.set_attempt_generation(job.attempt_generation() + 1);
    }
    if (to == v1::Job::FAILED) job.set_error(std::string(message));
    AppendStateChange(job, to, reason, message, now);
    return SaveLocked(id, job);
  }));
  return job;
}

absl::StatusOr<v1::Job> JobStore::Update(
    absl::string_view name, const std::function<void(v1::Job&)>& mutate) {
  ASSIGN_OR_RETURN(const int64_t id, IdFromName(name));
  absl::MutexLock lock(&mu_);
  v1::Job job;
  RETURN_IF_ERROR(db_->InTransaction([&]() -> absl::Status {
    bool unreadable = false;
    ASSIGN_OR_RETURN(const v1::Job before, LoadLocked(id, &unreadable));
    if (unreadable) return absl::DataLossError(before.error());
    job = before;
    mutate(job);
    const google::protobuf::Descriptor* descriptor = v1::Job::descriptor();
    google::protobuf::util::MessageDifferencer differencer;
    for (int i = 0; i < descriptor->field_count(); ++i) {
      const google::protobuf::FieldDescriptor* field = descriptor->field(i);
      if (std::find(std::begin(kUpdatableFields), std::end(kUpdatableFields),
                    field->name()) != std::end(kUpdatableFields)) {
        continue;
      }
      if (!differencer.CompareWithFields(before, job, {field}, {field})) {
        return absl::InvalidArgumentError(absl::StrCat(
            before.name(), ": Update may change only ",
            absl::StrJoin(kUpdatableFields, ", "), ", not ", field->name()));
      }
    }
    return SaveLocked(id, job);
  }));
  return job;
}

absl::Status JobStore::Delete(absl::string_view name) {
  ASSIGN_OR_RETURN(const int64_t id, IdFromName(name));
  absl::MutexLock lock(&mu_);
  return db_->InTransaction([&]() -> absl::Status {
    ASSIGN_OR_RETURN(const v1::Job job, LoadLocked(id));
    if (!IsFinalState(job.state())) {
      return absl::FailedPreconditionError(absl::StrCat(
          job.name(), " is ", StateName(job.state()),
          "; only SUCCEEDED, FAILED or CANCELLED jobs can be deleted"));
    }
    ASSIGN_OR_RETURN(SqliteStatement remove_logs,
                     db_->Prepare("DELETE FROM job_logs WHERE job_id = ?1"));
    RETURN_IF_ERROR(remove_logs.BindInt64(1, id));
    RETURN_IF_ERROR(remove_logs.StepUntilDone());
    ASSIGN_OR_RETURN(SqliteStatement remove,
                     db_->Prepare("DELETE FROM jobs WHERE id = ?1"));
    RETURN_IF_ERROR(remove.BindInt64(1, id));
    return remove.StepUntilDone();
  });
}

absl::StatusOr<int64_t> JobStore::AppendLogs(absl::string_view name,
                                             const std::vector<LogLine>& lines,
                                             int max_lines) {
  ASSIGN_OR_RETURN(const int64_t id, IdFromName(name));
  if (max_lines <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_lines must be positive, got ", max_lines));
  }
  absl::MutexLock lock(&mu_);
  int64_t last = 0;
  RETURN_IF_ERROR(db_->InTransaction([&]() -> absl::Status {
    RETURN_IF_ERROR(CheckExistsLocked(id));
    ASSIGN_OR_RETURN(
        SqliteStatement select,
        db_->Prepare("SELECT MAX(sequence) FROM job_logs WHERE job_id = ?1"));
    RETURN_IF_ERROR(select.BindInt64(1, id));
    ASSIGN_OR_RETURN(const bool has_row, select.Step());
    last = has_row && !select.ColumnIsNull(0) ? select.ColumnInt64(0) : 0;
    if (lines.empty()) return absl::OkStatus();

    ASSIGN_OR_RETURN(SqliteStatement insert,
                     db_->Prepare("INSERT INTO job_logs (job_id, sequence, "
                                  "time_micros, source, message) VALUES "
                                  "(?1, ?2, ?3, ?4, ?5)"));
    RETURN_IF_ERROR(insert.BindInt64(1, id));
    for (const LogLine& line : lines) {
      ++last;
      RETURN_IF_ERROR(insert.BindInt64(2, last));
      RETURN_IF_ERROR(insert.BindInt64(3, absl::ToUnixMicros(line.time)));
      RETURN_IF_ERROR(insert.BindText(4, line.source));
      RETURN_IF_ERROR(insert.BindText(
          5, BoundedLogMessage(line.message, kMaxLogMessageBytes)));
      RETURN_IF_ERROR(insert.StepUntilDone());
      RETURN_IF_ERROR(insert.Reset());
    }
    // Sequences are contiguous, so the newest max_lines are those above
    // last - max_lines.
    ASSIGN_OR_RETURN(SqliteStatement trim,
                     db_->Prepare("DELETE FROM job_logs WHERE job_id = ?1 "
                                  "AND sequence <= ?2"));
    RETURN_IF_ERROR(trim.BindInt64(1, id));
    RETURN_IF_ERROR(trim.BindInt64(2, last - max_lines));
    return trim.StepUntilDone();
  }));
  return last;
}

absl::StatusOr<std::vector<JobStore::LogLine>> JobStore::ReadLogs(
    absl::string_view name, int64_t after_sequence, int limit) {
  ASSIGN_OR_RETURN(const int64_t id, IdFromName(name));
  if (after_sequence < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("after_sequence must be >= 0, got ", after_sequence));
  }
  if (limit <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("limit must be positive, got ", limit));
  }
  absl::MutexLock lock(&mu_);
  RETURN_IF_ERROR(CheckExistsLocked(id));
  ASSIGN_OR_RETURN(SqliteStatement select,
                   db_->Prepare("SELECT sequence, time_micros, source, message "
                                "FROM job_logs WHERE job_id = ?1 AND "
                                "sequence > ?2 ORDER BY sequence LIMIT ?3"));
  RETURN_IF_ERROR(select.BindInt64(1, id));
  RETURN_IF_ERROR(select.BindInt64(2, after_sequence));
  RETURN_IF_ERROR(select.BindInt64(3, limit));
  std::vector<LogLine> lines;
  while (true) {
    ASSIGN_OR_RETURN(const bool has_row, select.Step());
    if (!has_row) break;
    LogLine& line = lines.emplace_back();
    line.sequence = select.ColumnInt64(0);
    line.time = absl::FromUnixMicros(select.ColumnInt64(1));
    line.source = select.ColumnText(2);
    line.message = select.ColumnText(3);
  }
  return lines;
}

absl::StatusOr<std::map<v1::Job::State, int64_t>> JobStore::CountByState() {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(
      SqliteStatement select,
      db_->Prepare("SELECT state, COUNT(*) FROM jobs GROUP BY state"));
  std::map<v1::Job::State, int64_t> counts;
  while (true) {
    ASSIGN_OR_RETURN(const bool has_row, select.Step());
    if (!has_row) break;
    counts[static_cast<v1::Job::State>(select.ColumnInt64(0))] =
        select.ColumnInt64(1);
  }
  return counts;
}

absl::StatusOr<std::vector<v1::Job>> JobStore::ListInStates(
    const std::vector<State>& states) {
  std::vector<v1::Job> jobs;
  if (states.empty()) return jobs;
  std::vector<std::string> placeholders;
  for (size_t i = 0; i < states.size(); ++i) {
    RETURN_IF_ERROR(CheckStateArgument("states", states[i]));
    placeholders.push_back(absl::StrCat("?", i + 1));
  }
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(
      SqliteStatement select,
      db_->Prepare(absl::StrCat("SELECT id, job FROM jobs WHERE state IN (",
                                absl::StrJoin(placeholders, ", "),
                                ") ORDER BY priority DESC, id ASC")));
  for (size_t i = 0; i < states.size(); ++i) {
    RETURN_IF_ERROR(select.BindInt64(static_cast<int>(i + 1), states[i]));
  }
  std::vector<int64_t> unreadable;
  while (true) {
    ASSIGN_OR_RETURN(const bool has_row, select.Step());
    if (!has_row) break;
    v1::Job& job = jobs.emplace_back();
    if (!job.ParseFromString(select.ColumnBlob(1))) {
      unreadable.push_back(select.ColumnInt64(0));
      jobs.pop_back();
    }
  }
  // Recorded FAILED so that the queue and the counts agree; if that cannot
  // be written the rows are skipped again next time.
  if (!unreadable.empty()) MarkUnreadableLocked(unreadable).IgnoreError();
  return jobs;
}

}  // namespace lethe
