// A small RAII layer over SQLite for Lethe's job store: one database file in
// WAL mode, prepared statements with bound parameters, and transactions that
// roll back when their body fails.
//
//   ASSIGN_OR_RETURN(std::unique_ptr<SqliteDb> db, SqliteDb::Open(path));
//   RETURN_IF_ERROR(db->Execute("CREATE TABLE IF NOT EXISTS jobs (...)"));
//   RETURN_IF_ERROR(db->InTransaction([&]() -> absl::Status {
//     ASSIGN_OR_RETURN(SqliteStatement insert,
//                      db->Prepare("INSERT INTO jobs VALUES (?1, ?2)"));
//     RETURN_IF_ERROR(insert.BindText(1, id));
//     RETURN_IF_ERROR(insert.BindBlob(2, spec_bytes));
//     return insert.StepUntilDone();
//   }));
//
// Every error names the database file and, for SQL errors, the statement.
// A SqliteDb is used from one thread at a time.
#ifndef LETHE_LIBS_SQLITE_SQLITE_DB_H_
#define LETHE_LIBS_SQLITE_SQLITE_DB_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

struct sqlite3;
struct sqlite3_stmt;

namespace lethe {

class SqliteStatement {
 public:
  SqliteStatement(SqliteStatement&& other) noexcept;
  SqliteStatement& operator=(SqliteStatement&& other) noexcept;
  ~SqliteStatement();

  // Parameters are numbered from 1, as in SQL's ?1, ?2, ...
  absl::Status BindInt64(int index, int64_t value);
  absl::Status BindDouble(int index, double value);
  absl::Status BindText(int index, absl::string_view value);
  absl::Status BindBlob(int index, absl::string_view bytes);
  absl::Status BindNull(int index);

  // Advances to the next row: true when a row is ready to read, false when
  // the statement has finished.
  absl::StatusOr<bool> Step();
  // Runs a statement that returns no rows.
  absl::Status StepUntilDone();
  // Rewinds for another execution; bindings are kept.
  absl::Status Reset();

  // Columns of the current row, numbered from 0.
  int64_t ColumnInt64(int column) const;
  double ColumnDouble(int column) const;
  std::string ColumnText(int column) const;
  std::string ColumnBlob(int column) const;
  bool ColumnIsNull(int column) const;

 private:
  friend class SqliteDb;
  SqliteStatement(sqlite3_stmt* statement, std::string context);
  absl::Status Check(int result_code, absl::string_view what) const;

  sqlite3_stmt* statement_;
  std::string context_;  // "<path>: <sql>" for error messages.
};

class SqliteDb {
 public:
  // Opens or creates `path` in WAL mode with foreign keys enforced and a
  // busy timeout, and checks that the file really is a SQLite database.
  static absl::StatusOr<std::unique_ptr<SqliteDb>> Open(
      const std::string& path);
  ~SqliteDb();

  // Runs one or more statements that return no rows.
  absl::Status Execute(absl::string_view sql);
  absl::StatusOr<SqliteStatement> Prepare(absl::string_view sql);

  // Runs `body` inside BEGIN IMMEDIATE ... COMMIT; rolls back and returns
  // the body's error when it fails, so a failure leaves no partial write.
  absl::Status InTransaction(const std::function<absl::Status()>& body);

  const std::string& path() const { return path_; }

 private:
  SqliteDb(sqlite3* db, std::string path);

  sqlite3* db_;
  std::string path_;
};

}  // namespace lethe

#endif  // LETHE_LIBS_SQLITE_SQLITE_DB_H_
