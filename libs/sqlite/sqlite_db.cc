#include "libs/sqlite/sqlite_db.h"

#include <sqlite3.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "libs/status/status_macros.h"

namespace lethe {
namespace {

absl::Status ErrorFor(int result_code, sqlite3* db, absl::string_view context,
                      absl::string_view what) {
  const std::string detail =
      db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(result_code);
  const std::string message = absl::StrCat(context, ": ", what, ": ", detail);
  switch (result_code & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return absl::UnavailableError(message);
    case SQLITE_CONSTRAINT:
      return absl::AlreadyExistsError(message);
    case SQLITE_NOTADB:
    case SQLITE_CORRUPT:
      return absl::DataLossError(message);
    case SQLITE_CANTOPEN:
    case SQLITE_PERM:
    case SQLITE_READONLY:
      return absl::PermissionDeniedError(message);
    case SQLITE_ERROR:
    case SQLITE_RANGE:
    case SQLITE_MISMATCH:
      return absl::InvalidArgumentError(message);
    default:
      return absl::InternalError(message);
  }
}

}  // namespace

SqliteStatement::SqliteStatement(sqlite3_stmt* statement, std::string context)
    : statement_(statement), context_(std::move(context)) {}

SqliteStatement::SqliteStatement(SqliteStatement&& other) noexcept
    : statement_(std::exchange(other.statement_, nullptr)),
      context_(std::move(other.context_)) {}

SqliteStatement& SqliteStatement::operator=(SqliteStatement&& other) noexcept {
  if (this != &other) {
    sqlite3_finalize(statement_);
    statement_ = std::exchange(other.statement_, nullptr);
    context_ = std::move(other.context_);
  }
  return *this;
}

SqliteStatement::~SqliteStatement() { sqlite3_finalize(statement_); }

absl::Status SqliteStatement::Check(int result_code,
                                    absl::string_view what) const {
  if (result_code == SQLITE_OK) return absl::OkStatus();
  return ErrorFor(result_code, sqlite3_db_handle(statement_), context_, what);
}

absl::Status SqliteStatement::BindInt64(int index, int64_t value) {
  return Check(sqlite3_bind_int64(statement_, index, value),
               absl::StrCat("binding parameter ", index));
}

absl::Status SqliteStatement::BindDouble(int index, double value) {
  return Check(sqlite3_bind_double(statement_, index, value),
               absl::StrCat("binding parameter ", index));
}

absl::Status SqliteStatement::BindText(int index, absl::string_view value) {
  return Check(sqlite3_bind_text64(statement_, index, value.data(),
                                   value.size(), SQLITE_TRANSIENT, SQLITE_UTF8),
               absl::StrCat("binding parameter ", index));
}

absl::Status SqliteStatement::BindBlob(int index, absl::string_view bytes) {
  // A zero-length blob must still bind as a blob, not as NULL.
  static constexpr char kEmpty = 0;
  return Check(sqlite3_bind_blob64(statement_, index,
                                   bytes.empty() ? &kEmpty : bytes.data(),
                                   bytes.size(), SQLITE_TRANSIENT),
               absl::StrCat("binding parameter ", index));
}

absl::Status SqliteStatement::BindNull(int index) {
  return Check(sqlite3_bind_null(statement_, index),
               absl::StrCat("binding parameter ", index));
}

absl::StatusOr<bool> SqliteStatement::Step() {
  const int result = sqlite3_step(statement_);
  if (result == SQLITE_ROW) return true;
  if (result == SQLITE_DONE) return false;
  return Check(result, "executing");
}

absl::Status SqliteStatement::StepUntilDone() {
  while (true) {
    ASSIGN_OR_RETURN(const bool has_row, Step());
    if (!has_row) return absl::OkStatus();
  }
}

absl::Status SqliteStatement::Reset() {
  return Check(sqlite3_reset(statement_), "resetting");
}

int64_t SqliteStatement::ColumnInt64(int column) const {
  return sqlite3_column_int64(statement_, column);
}

double SqliteStatement::ColumnDouble(int column) const {
  return sqlite3_column_double(statement_, column);
}

std::string SqliteStatement::ColumnText(int column) const {
  const unsigned char* text = sqlite3_column_text(statement_, column);
  if (text == nullptr) return "";
  return std::string(reinterpret_cast<const char*>(text),
                     sqlite3_column_bytes(statement_, column));
}

std::string SqliteStatement::ColumnBlob(int column) const {
  const void* blob = sqlite3_column_blob(statement_, column);
  if (blob == nullptr) return "";
  return std::string(static_cast<const char*>(blob),
                     sqlite3_column_bytes(statement_, column));
}

bool SqliteStatement::ColumnIsNull(int column) const {
  return sqlite3_column_type(statement_, column) == SQLITE_NULL;
}

SqliteDb::SqliteDb(sqlite3* db, std::string path)
    : db_(db), path_(std::move(path)) {}

SqliteDb::~SqliteDb() { sqlite3_close_v2(db_); }

absl::StatusOr<std::unique_ptr<SqliteDb>> SqliteDb::Open(
    const std::string& path) {
  sqlite3* handle = nullptr;
  const int result = sqlite3_open_v2(
      path.c_str(), &handle,
      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
      nullptr);
  if (result != SQLITE_OK) {
    absl::Status status = ErrorFor(result, handle, path, "opening");
    sqlite3_close_v2(handle);
    return status;
  }
  std::unique_ptr<SqliteDb> db(new SqliteDb(handle, path));
  sqlite3_busy_timeout(handle, 5000);
  // Reading the schema is the first access to the file's contents: a file
  // that is not a database fails here, with its path in the message.
  RETURN_IF_ERROR(db->Execute(
      "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; "
      "PRAGMA foreign_keys=ON; SELECT count(*) FROM sqlite_schema;"));
  return db;
}

absl::Status SqliteDb::Execute(absl::string_view sql) {
  char* error = nullptr;
  const std::string statement(sql);
  const int result =
      sqlite3_exec(db_, statement.c_str(), nullptr, nullptr, &error);
  sqlite3_free(error);
  if (result == SQLITE_OK) return absl::OkStatus();
  return ErrorFor(result, db_, path_, absl::StrCat("executing '", sql, "'"));
}

absl::StatusOr<SqliteStatement> SqliteDb::Prepare(absl::string_view sql) {
  sqlite3_stmt* statement = nullptr;
  const int result = sqlite3_prepare_v2(
      db_, sql.data(), static_cast<int>(sql.size()), &statement, nullptr);
  if (result != SQLITE_OK) {
    sqlite3_finalize(statement);
    return ErrorFor(result, db_, path_, absl::StrCat("preparing '", sql, "'"));
  }
  return SqliteStatement(statement, absl::StrCat(path_, ": '", sql, "'"));
}

absl::Status SqliteDb::InTransaction(
    const std::function<absl::Status()>& body) {
  RETURN_IF_ERROR(Execute("BEGIN IMMEDIATE"));
  absl::Status status = body();
  if (status.ok()) status = Execute("COMMIT");
  if (!status.ok()) {
    // ROLLBACK fails harmlessly when COMMIT already ended the transaction.
    Execute("ROLLBACK").IgnoreError();
  }
  return status;
}

}  // namespace lethe
