// The PostgreSQL driver of the SQL store (sql/db.h), on libpq: a connection that prepares and
// caches server-side statements, parameters sent as text (numbers, strings) or binary (BYTEA),
// results read in binary, COPY FROM STDIN for bulk loads, and the one mapping from SQLSTATE to
// Error. Private to the PostgreSQL store.
//
// libpq rather than libpqxx: the driver interface needs prepare, bind, step and COPY, which
// libpq's C API gives directly; libpqxx would add a C++ layer (and its exceptions) under another
// C++ layer.
//
// Thread safety: none. A Connection and its statements are used by one thread at a time.
#pragma once

#include <libpq-fe.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "iotpki/common/bytes.h"
#include "iotpki/common/error.h"
#include "iotpki/store/sql/db.h"

namespace iotpki::store::postgres {

// The key of the transaction-scoped advisory lock that every write transaction takes first
// (pg_advisory_xact_lock): commits are serialized across every process and node that writes
// the database, as SQLite's BEGIN IMMEDIATE serializes them on one machine. Advisory locks are
// per database, so several stores in one cluster do not contend.
inline constexpr int64_t kWriterLockKey = 0x696f74706b6931;  // "iotpki1"

// Turns a failed result into an Error by its SQLSTATE: connection loss, shutdown, a standby
// (read-only), serialization failures -> Unavailable; insufficient resources -> ResourceExhausted;
// privileges and authentication -> PermissionDenied; corruption and I/O -> DataLoss; constraint
// violations -> FailedPrecondition; invalid values -> InvalidArgument; others -> Internal. The
// message is safe for clients; the server's text and `what` go to the detail.
Error PgError(const PGresult* result, PGconn* conn, std::string_view what);

// `url` with any password removed (user:password@ and password=), for messages and logs.
std::string RedactUrl(std::string_view url);

// `?N` and `?` placeholders as PostgreSQL's `$N`, outside quoted strings and identifiers;
// `*count` receives the number of parameters.
std::string ToDollarParameters(std::string_view sql, int* count);

class Connection;

class Statement final : public sql::Statement {
 public:
  // `name` empty: executed without a server-side prepared statement (uncached use).
  Statement(Connection* conn, std::string name, std::string text, int param_count);
  ~Statement() override;

  using sql::Statement::Bind;
  void Bind(int index, int64_t value) override;
  void Bind(int index, std::string_view text) override;
  void Bind(int index, ByteView blob) override;
  void BindNull(int index) override;

  Result<bool> Step() override;

  bool IsNull(int col) const override;
  int64_t Int64(int col) const override;
  std::string Text(int col) const override;
  Bytes Blob(int col) const override;
  int64_t Changes() const override { return changes_; }
  void Reset() override;
  // The server-side statement is gone (its connection was replaced): prepared again on next use.
  void Unprepare();

 private:
  struct Param {
    std::optional<std::string> value;  // nullopt: NULL
    int format = 0;                    // 0 text, 1 binary
  };
  Param* At(int index);
  Result<void> Execute();

  Connection* conn_;
  const std::string name_;
  const std::string text_;
  std::vector<Param> params_;
  std::optional<int> bad_index_;  // a Bind outside 1..param_count
  PGresult* result_ = nullptr;
  bool executed_ = false;
  bool prepared_ = false;
  int row_ = -1;
  int64_t changes_ = 0;
};

class Connection final : public sql::Connection {
 public:
  // `url`: a libpq connection URI (postgresql://, postgres://; several hosts allowed). The
  // session speaks UTF-8, runs without JIT and waits at most 10 s to connect unless the URL says
  // otherwise.
  static Result<std::unique_ptr<Connection>> Open(const std::string& url);
  ~Connection() override;

  Result<void> Exec(std::string_view sql) override;
  Result<sql::StatementUse> Prepare(std::string_view sql) override;
  Result<std::unique_ptr<sql::Statement>> PrepareUncached(std::string_view sql) override;

  // kWrite: BEGIN, then the writer lock (kWriterLockKey) before anything else, so every
  // statement of the transaction sees what earlier writers committed (READ COMMITTED takes a
  // snapshot per statement). kRead: REPEATABLE READ, READ ONLY: one snapshot for all its reads.
  // A connection the server has ended since its last use is connected again (same URL) and the
  // BEGIN tried once more: nothing had been sent in the transaction.
  Result<void> Begin(TxMode mode) override;
  // An aborted transaction "commits" as a rollback: that is reported as an error.
  Result<void> Commit() override;
  void Rollback() override;
  bool in_transaction() const override;
  bool broken() const override { return PQstatus(conn_) == CONNECTION_BAD; }

  // EXPLAIN with sequential scans disabled (in a transaction rolled back afterwards): on the
  // small tables of a test the planner would otherwise scan them whole even when an index serves
  // the query; with them disabled a Seq Scan in the plan means no index can.
  Result<std::string> Explain(const sql::Query& q) override;

  const sql::Dialect& dialect() const override;

  // COPY `copy_sql` (... FROM STDIN (FORMAT binary)) with `data`, a whole binary COPY stream.
  Result<void> CopyIn(std::string_view copy_sql, ByteView data);

  PGconn* handle() const { return conn_; }

 private:
  explicit Connection(PGconn* conn) : conn_(conn) {}

  PGconn* conn_;
  int next_statement_ = 0;
  // Declared after conn_ so that statements go before the connection closes.
  std::unordered_map<std::string, std::unique_ptr<Statement>> cache_;
};

}  // namespace iotpki::store::postgres
