#include "iotpki/store/sqlite/sqlite_db.h"

#include <utility>

namespace iotpki::store::sqlite {

Error SqliteError(int rc, sqlite3* db, std::string_view what) {
  std::string detail = std::string(what) + ": " + sqlite3_errstr(rc);
  if (db != nullptr && sqlite3_extended_errcode(db) == rc) {
    detail += ": ";
    detail += sqlite3_errmsg(db);
  }
  detail += " (sqlite code " + std::to_string(rc) + ")";
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_PROTOCOL:
      return Error(Code::kUnavailable, "the database is busy; try again later", detail);
    case SQLITE_FULL:
      return Error(Code::kResourceExhausted, "the database disk is full", detail);
    case SQLITE_NOMEM:
      return Error(Code::kResourceExhausted, "out of memory in the database", detail);
    case SQLITE_IOERR:
      if (rc == SQLITE_IOERR_NOMEM) {
        return Error(Code::kResourceExhausted, "out of memory in the database", detail);
      }
      return Error(Code::kDataLoss, "database I/O error: the write may not be durable", detail);
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return Error(Code::kDataLoss, "the database file is corrupt or is not a database", detail);
    case SQLITE_READONLY:
    case SQLITE_PERM:
    case SQLITE_AUTH:
      return Error(Code::kPermissionDenied, "the database is read-only or not accessible", detail);
    case SQLITE_CANTOPEN:
      return Error(Code::kFailedPrecondition, "cannot open the database file", detail);
    case SQLITE_TOOBIG:
      return Error(Code::kInvalidArgument, "a value is too large for the database", detail);
    case SQLITE_CONSTRAINT:
      return Error(Code::kFailedPrecondition, "a database constraint was violated", detail);
    default:
      return Error(Code::kInternal, "database error", detail);
  }
}

void Statement::NoteBind(int rc, int index) {
  if (rc != SQLITE_OK && bind_error_ == SQLITE_OK) {
    bind_error_ = rc;
    bind_error_index_ = index;
  }
}

void Statement::Bind(int index, int64_t value) {
  NoteBind(sqlite3_bind_int64(stmt_, index, value), index);
}

void Statement::Bind(int index, std::string_view text) {
  // A null pointer would bind SQL NULL; an empty view must bind ''.
  NoteBind(sqlite3_bind_text64(stmt_, index, text.data() ? text.data() : "", text.size(),
                               SQLITE_TRANSIENT, SQLITE_UTF8),
           index);
}

void Statement::Bind(int index, ByteView blob) {
  // A zero-length blob must still bind as a blob, not NULL: give SQLite a non-null pointer.
  static const uint8_t kEmpty = 0;
  NoteBind(sqlite3_bind_blob64(stmt_, index, blob.empty() ? &kEmpty : blob.data(), blob.size(),
                               SQLITE_TRANSIENT),
           index);
}

void Statement::BindNull(int index) { NoteBind(sqlite3_bind_null(stmt_, index), index); }

Result<bool> Statement::Step() {
  if (bind_error_ != SQLITE_OK) {
    last_error_ = bind_error_;
    return Fail(SqliteError(
        bind_error_, db_,
        "binding parameter " + std::to_string(bind_error_index_) + " of " + sqlite3_sql(stmt_)));
  }
  int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  last_error_ = sqlite3_extended_errcode(db_);
  return Fail(SqliteError(last_error_, db_, sqlite3_sql(stmt_)));
}

std::string Statement::Text(int col) const {
  const auto* p = sqlite3_column_text(stmt_, col);
  int n = sqlite3_column_bytes(stmt_, col);
  if (p == nullptr) return {};
  return std::string(reinterpret_cast<const char*>(p), static_cast<size_t>(n));
}

Bytes Statement::Blob(int col) const {
  const auto* p = static_cast<const uint8_t*>(sqlite3_column_blob(stmt_, col));
  int n = sqlite3_column_bytes(stmt_, col);
  if (p == nullptr || n <= 0) return {};
  return Bytes(p, p + n);
}

void Statement::Reset() {
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
  bind_error_ = SQLITE_OK;
  bind_error_index_ = 0;
}

Result<std::unique_ptr<Connection>> Connection::Open(const std::string& path, int flags) {
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &db, flags, nullptr);
  if (rc != SQLITE_OK) {
    // SQLite allocates a handle even on most failures; it carries the message and must be
    // closed.
    Error error = SqliteError(db ? sqlite3_extended_errcode(db) : rc, db, "opening " + path);
    sqlite3_close_v2(db);
    return Fail(std::move(error));
  }
  sqlite3_extended_result_codes(db, 1);
  return std::unique_ptr<Connection>(new Connection(db));
}

Connection::~Connection() {
  cache_.clear();
  sqlite3_close_v2(db_);
}

Result<void> Connection::Exec(std::string_view sql) {
  std::string text(sql);
  char* message = nullptr;
  int rc = sqlite3_exec(db_, text.c_str(), nullptr, nullptr, &message);
  sqlite3_free(message);
  if (rc != SQLITE_OK) {
    return Fail(SqliteError(sqlite3_extended_errcode(db_), db_, text));
  }
  return {};
}

Result<sql::StatementUse> Connection::Prepare(std::string_view sql) {
  auto it = cache_.find(std::string(sql));
  if (it == cache_.end()) {
    sqlite3_stmt* stmt = nullptr;
    int rc = sqlite3_prepare_v3(db_, sql.data(), static_cast<int>(sql.size()),
                                SQLITE_PREPARE_PERSISTENT, &stmt, nullptr);
    if (rc != SQLITE_OK) {
      sqlite3_finalize(stmt);
      return Fail(SqliteError(sqlite3_extended_errcode(db_), db_, sql));
    }
    it = cache_.emplace(std::string(sql), std::make_unique<Statement>(db_, stmt)).first;
  }
  return sql::StatementUse(it->second.get());
}

Result<std::unique_ptr<sql::Statement>> Connection::PrepareUncached(std::string_view sql) {
  sqlite3_stmt* stmt = nullptr;
  int rc = sqlite3_prepare_v2(db_, sql.data(), static_cast<int>(sql.size()), &stmt, nullptr);
  if (rc != SQLITE_OK) {
    sqlite3_finalize(stmt);
    return Fail(SqliteError(sqlite3_extended_errcode(db_), db_, sql));
  }
  if (stmt == nullptr) {
    return Fail(Code::kInvalidArgument, "empty SQL statement", std::string(sql));
  }
  return std::make_unique<Statement>(db_, stmt);
}

Result<void> Connection::Begin(TxMode mode) {
  // A transaction left open by a failed ROLLBACK is retired first.
  if (in_transaction()) IOTPKI_CHECK(Exec("ROLLBACK"));
  return Exec(mode == TxMode::kWrite ? "BEGIN IMMEDIATE" : "BEGIN");
}

Result<void> Connection::Commit() { return Exec("COMMIT"); }

void Connection::Rollback() {
  // A failing rollback cannot be reported from here; the next Begin() retries it.
  if (in_transaction()) (void)Exec("ROLLBACK");
}

Result<std::string> Connection::Explain(const sql::Query& q) {
  IOTPKI_TRY(auto stmt, PrepareUncached("EXPLAIN QUERY PLAN " + q.sql));
  q.BindTo(*stmt);
  std::string plan;
  for (;;) {
    IOTPKI_TRY(bool row, stmt->Step());
    if (!row) break;
    plan += stmt->Text(3);
    plan += '\n';
  }
  return plan;
}

const sql::Dialect& Connection::dialect() const {
  static const sql::Dialect kSqlite{.name = "sqlite", .index_hints = true};
  return kSqlite;
}

}  // namespace iotpki::store::sqlite
