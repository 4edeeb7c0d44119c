#include "libs/sqlite/sqlite_db.h"

#include <cstdint>
#include <fstream>
#include <limits>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace lethe {
namespace {

std::string TempPath(const std::string& name) {
  const std::string path = absl::StrCat(testing::TempDir(), "/", name);
  std::remove(path.c_str());
  std::remove((path + "-wal").c_str());
  std::remove((path + "-shm").c_str());
  return path;
}

TEST(SqliteDbTest, OpensInWalMode) {
  absl::StatusOr<std::unique_ptr<SqliteDb>> db =
      SqliteDb::Open(TempPath("wal.db"));
  ASSERT_TRUE(db.ok()) << db.status();
  absl::StatusOr<SqliteStatement> mode = (*db)->Prepare("PRAGMA journal_mode");
  ASSERT_TRUE(mode.ok()) << mode.status();
  ASSERT_TRUE(*mode->Step());
  EXPECT_EQ(mode->ColumnText(0), "wal");
}

TEST(SqliteDbTest, InsertedValuesOfEveryTypeReadBackAfterReopening) {
  const std::string path = TempPath("round_trip.db");
  const std::string blob("\x00\x01spec\xff", 7);
  const std::string text = "it's \"quoted\"; DROP TABLE jobs; --";
  {
    absl::StatusOr<std::unique_ptr<SqliteDb>> db = SqliteDb::Open(path);
    ASSERT_TRUE(db.ok()) << db.status();
    ASSERT_TRUE((*db)
                    ->Execute("CREATE TABLE jobs (id INTEGER PRIMARY KEY, "
                              "name TEXT, spec BLOB, loss REAL, note TEXT)")
                    .ok());
    absl::StatusOr<SqliteStatement> insert =
        (*db)->Prepare("INSERT INTO jobs VALUES (?1, ?2, ?3, ?4, ?5)");
    ASSERT_TRUE(insert.ok()) << insert.status();
    ASSERT_TRUE(insert->BindInt64(1, std::numeric_limits<int64_t>::max()).ok());
    ASSERT_TRUE(insert->BindText(2, text).ok());
    ASSERT_TRUE(insert->BindBlob(3, blob).ok());
    ASSERT_TRUE(insert->BindDouble(4, 0.1).ok());
    ASSERT_TRUE(insert->BindNull(5).ok());
    ASSERT_TRUE(insert->StepUntilDone().ok());
  }
  absl::StatusOr<std::unique_ptr<SqliteDb>> db = SqliteDb::Open(path);
  ASSERT_TRUE(db.ok()) << db.status();
  absl::StatusOr<SqliteStatement> select =
      (*db)->Prepare("SELECT id, name, spec, loss, note FROM jobs");
  ASSERT_TRUE(select.ok());
  absl::StatusOr<bool> row = select->Step();
  ASSERT_TRUE(row.ok() && *row) << row.status();
  EXPECT_EQ(select->ColumnInt64(0), std::numeric_limits<int64_t>::max());
  EXPECT_EQ(select->ColumnText(1), text);
  EXPECT_EQ(select->ColumnBlob(2), blob);
  EXPECT_EQ(select->ColumnDouble(3), 0.1);
  EXPECT_TRUE(select->ColumnIsNull(4));
  EXPECT_FALSE(*select->Step());
}

TEST(SqliteDbTest, FailedTransactionLeavesNoPartialWrite) {
  absl::StatusOr<std::unique_ptr<SqliteDb>> db =
      SqliteDb::Open(TempPath("transaction.db"));
  ASSERT_TRUE(db.ok());
  ASSERT_TRUE((*db)->Execute("CREATE TABLE t (k TEXT PRIMARY KEY)").ok());
  absl::Status status = (*db)->InTransaction([&]() -> absl::Status {
    absl::Status first = (*db)->Execute("INSERT INTO t VALUES ('a')");
    if (!first.ok()) return first;
    return (*db)->Execute("INSERT INTO t VALUES ('a')");  // Duplicate key.
  });
  EXPECT_EQ(status.code(), absl::StatusCode::kAlreadyExists) << status;
  absl::StatusOr<SqliteStatement> count =
      (*db)->Prepare("SELECT count(*) FROM t");
  ASSERT_TRUE(count.ok());
  ASSERT_TRUE(*count->Step());
  EXPECT_EQ(count->ColumnInt64(0), 0);

  ASSERT_TRUE((*db)
                  ->InTransaction([&] {
                    return (*db)->Execute("INSERT INTO t VALUES ('b')");
                  })
                  .ok());
  ASSERT_TRUE(count->Reset().ok());
  ASSERT_TRUE(*count->Step());
  EXPECT_EQ(count->ColumnInt64(0), 1);
}

TEST(SqliteDbTest, SqlErrorsNameTheFileAndTheStatement) {
  const std::string path = TempPath("errors.db");
  absl::StatusOr<std::unique_ptr<SqliteDb>> db = SqliteDb::Open(path);
  ASSERT_TRUE(db.ok());
  absl::StatusOr<SqliteStatement> bad = (*db)->Prepare("SELEKT 1");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find(path), std::string::npos);
  EXPECT_NE(bad.status().message().find("SELEKT 1"), std::string::npos);
}

TEST(SqliteDbTest, FileThatIsNotADatabaseIsDataLossNamingIt) {
  const std::string path = TempPath("not_a_db.db");
  std::ofstream(path) << std::string(4096, 'x');
  absl::StatusOr<std::unique_ptr<SqliteDb>> db = SqliteDb::Open(path);
  EXPECT_EQ(db.status().code(), absl::StatusCode::kDataLoss) << db.status();
  EXPECT_NE(db.status().message().find(path), std::string::npos);
}

TEST(SqliteDbTest, UnwritableLocationIsReported) {
  absl::StatusOr<std::unique_ptr<SqliteDb>> db =
      SqliteDb::Open("/nonexistent-dir/jobs.db");
  EXPECT_FALSE(db.ok());
  EXPECT_NE(db.status().message().find("/nonexistent-dir/jobs.db"),
            std::string::npos);
}

}  // namespace
}  // namespace lethe
