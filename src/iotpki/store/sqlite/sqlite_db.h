// The SQLite driver of the SQL store (sql/db.h): a connection that owns its prepared-statement
// cache, statements over sqlite3_stmt, and the one mapping from SQLite result codes to Error.
// Private to the SQLite store.
//
// Thread safety: none. A Connection and its statements are used by one thread at a time; the
// store guarantees that with its own locks (connections are opened with SQLITE_OPEN_NOMUTEX).
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "iotpki/common/bytes.h"
#include "iotpki/common/error.h"
#include "iotpki/store/sql/db.h"

namespace iotpki::store::sqlite {

// Turns an SQLite result code into an Error: BUSY/LOCKED -> Unavailable, FULL/NOMEM ->
// ResourceExhausted, CORRUPT/NOTADB/IOERR -> DataLoss, READONLY/PERM -> PermissionDenied,
// CANTOPEN -> FailedPrecondition, others -> Internal. The message is safe for clients; SQLite's
// own text and `what` go to the detail. `db` may be null.
Error SqliteError(int rc, sqlite3* db, std::string_view what);

class Statement final : public sql::Statement {
 public:
  Statement(sqlite3* db, sqlite3_stmt* stmt) : db_(db), stmt_(stmt) {}
  ~Statement() override { sqlite3_finalize(stmt_); }

  using sql::Statement::Bind;
  void Bind(int index, int64_t value) override;
  void Bind(int index, std::string_view text) override;
  void Bind(int index, ByteView blob) override;
  void BindNull(int index) override;

  Result<bool> Step() override;

  bool IsNull(int col) const override { return sqlite3_column_type(stmt_, col) == SQLITE_NULL; }
  int64_t Int64(int col) const override { return sqlite3_column_int64(stmt_, col); }
  std::string Text(int col) const override;
  Bytes Blob(int col) const override;

  // Rows changed by the last completed INSERT/UPDATE/DELETE on this connection.
  int64_t Changes() const override { return sqlite3_changes64(db_); }
  // The extended result code of the last failed Step.
  int last_error() const { return last_error_; }

  // Also closes any implicit read transaction, which would otherwise pin an old WAL snapshot.
  void Reset() override;

 private:
  void NoteBind(int rc, int index);

  sqlite3* db_;
  sqlite3_stmt* stmt_;
  int bind_error_ = SQLITE_OK;
  int bind_error_index_ = 0;
  int last_error_ = SQLITE_OK;
};

class Connection final : public sql::Connection {
 public:
  // flags as for sqlite3_open_v2; extended result codes are always enabled.
  static Result<std::unique_ptr<Connection>> Open(const std::string& path, int flags);
  ~Connection() override;

  Result<void> Exec(std::string_view sql) override;
  Result<sql::StatementUse> Prepare(std::string_view sql) override;
  Result<std::unique_ptr<sql::Statement>> PrepareUncached(std::string_view sql) override;

  // kWrite: BEGIN IMMEDIATE (the write lock is taken at once, so the transaction never fails
  // half-way with BUSY on upgrade). kRead: a deferred BEGIN, so that several reads see one
  // snapshot and take the WAL read lock once, and the writer is not blocked.
  Result<void> Begin(TxMode mode) override;
  Result<void> Commit() override;
  // SQLite may already have rolled back by itself (after SQLITE_FULL or an I/O error); then
  // nothing is done.
  void Rollback() override;
  bool in_transaction() const override { return sqlite3_get_autocommit(db_) == 0; }

  // EXPLAIN QUERY PLAN: one line per plan row ("SEARCH c USING COVERING INDEX ...").
  Result<std::string> Explain(const sql::Query& q) override;

  const sql::Dialect& dialect() const override;

  sqlite3* handle() const { return db_; }

 private:
  explicit Connection(sqlite3* db) : db_(db) {}

  sqlite3* db_;
  // Declared after db_ so that statements are finalized before the connection closes.
  std::unordered_map<std::string, std::unique_ptr<Statement>> cache_;
};

using sql::StatementUse;
using sql::Transaction;

}  // namespace iotpki::store::sqlite
