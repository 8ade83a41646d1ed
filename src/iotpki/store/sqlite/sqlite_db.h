// A thin RAII layer over the SQLite C API, private to the SQLite store: a connection that owns
// its prepared-statement cache, statements reset automatically when a use ends, a transaction
// that rolls back unless committed, and the one mapping from SQLite result codes to Error.
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

namespace iotpki::store::sqlite {

// Turns an SQLite result code into an Error: BUSY/LOCKED -> Unavailable, FULL/NOMEM ->
// ResourceExhausted, CORRUPT/NOTADB/IOERR -> DataLoss, READONLY/PERM -> PermissionDenied,
// CANTOPEN -> FailedPrecondition, others -> Internal. The message is safe for clients; SQLite's
// own text and `what` go to the detail. `db` may be null.
Error SqliteError(int rc, sqlite3* db, std::string_view what);

class Statement {
 public:
  Statement(sqlite3* db, sqlite3_stmt* stmt) : db_(db), stmt_(stmt) {}
  ~Statement() { sqlite3_finalize(stmt_); }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  // Parameters are 1-based. Values are copied (SQLITE_TRANSIENT), so temporaries are fine. A
  // bind failure is remembered and reported by the next Step.
  void Bind(int index, int64_t value);
  void Bind(int index, std::string_view text);
  void Bind(int index, ByteView blob);
  void Bind(int index, const std::optional<std::string>& text);
  void Bind(int index, const std::optional<int64_t>& value);
  void BindNull(int index);

  // true: a row is available; false: the statement is done.
  Result<bool> Step();
  // Runs a statement that returns no rows (or ignores them) to completion.
  Result<void> Run();

  // Columns are 0-based. Text and blobs are copied out.
  bool IsNull(int col) const { return sqlite3_column_type(stmt_, col) == SQLITE_NULL; }
  int64_t Int64(int col) const { return sqlite3_column_int64(stmt_, col); }
  std::string Text(int col) const;
  std::optional<std::string> OptionalText(int col) const;
  std::optional<int64_t> OptionalInt64(int col) const;
  Bytes Blob(int col) const;

  // Rows changed by the last completed INSERT/UPDATE/DELETE on this connection.
  int64_t Changes() const { return sqlite3_changes64(db_); }
  // The extended result code of the last failed Step.
  int last_error() const { return last_error_; }

  // Ends the current use: resets the statement (closing any implicit read transaction, which
  // would otherwise pin an old WAL snapshot) and clears its bindings.
  void Reset();

 private:
  void NoteBind(int rc, int index);

  sqlite3* db_;
  sqlite3_stmt* stmt_;
  int bind_error_ = SQLITE_OK;
  int bind_error_index_ = 0;
  int last_error_ = SQLITE_OK;
};

// One use of a cached statement; resets it when it goes out of scope.
class StatementUse {
 public:
  explicit StatementUse(Statement* stmt) : stmt_(stmt) {}
  ~StatementUse() {
    if (stmt_) stmt_->Reset();
  }
  StatementUse(StatementUse&& other) noexcept : stmt_(other.stmt_) { other.stmt_ = nullptr; }
  StatementUse(const StatementUse&) = delete;
  StatementUse& operator=(const StatementUse&) = delete;
  StatementUse& operator=(StatementUse&&) = delete;

  Statement* operator->() const { return stmt_; }
  Statement& operator*() const { return *stmt_; }

 private:
  Statement* stmt_;
};

class Connection {
 public:
  // flags as for sqlite3_open_v2; extended result codes are always enabled.
  static Result<std::unique_ptr<Connection>> Open(const std::string& path, int flags);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Runs one or more statements without results (DDL, PRAGMA, BEGIN/COMMIT).
  Result<void> Exec(std::string_view sql);

  // The prepared statement for `sql`, compiled on first use and cached for the connection's
  // lifetime. The same SQL text must not be in use twice at once (no recursion through it).
  Result<StatementUse> Prepare(std::string_view sql);

  // Compiles `sql` without caching it (test-only queries, EXPLAIN).
  Result<std::unique_ptr<Statement>> PrepareUncached(std::string_view sql);

  sqlite3* handle() const { return db_; }
  bool in_transaction() const { return sqlite3_get_autocommit(db_) == 0; }

 private:
  explicit Connection(sqlite3* db) : db_(db) {}

  sqlite3* db_;
  // Declared after db_ so that statements are finalized before the connection closes.
  std::unordered_map<std::string, std::unique_ptr<Statement>> cache_;
};

// BEGIN IMMEDIATE (the write lock is taken at once, so the transaction never fails half-way with
// BUSY on upgrade) ... COMMIT, rolling back when destroyed without Commit(). kRead: a deferred
// BEGIN, so that several reads see one snapshot and take the WAL read lock once, and the writer
// is not blocked.
class Transaction {
 public:
  enum class Mode { kWrite, kRead };
  static Result<Transaction> Begin(Connection& conn, Mode mode = Mode::kWrite);
  ~Transaction();
  Transaction(Transaction&& other) noexcept : conn_(other.conn_) { other.conn_ = nullptr; }
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  Transaction& operator=(Transaction&&) = delete;

  Result<void> Commit();

 private:
  explicit Transaction(Connection* conn) : conn_(conn) {}
  Connection* conn_;
};

}  // namespace iotpki::store::sqlite
