// The small database driver interface under the SQL store (sql_store.h): a connection that
// prepares and caches statements, statements that bind, step and read columns, transactions, and
// a connection pool. Each backend (sqlite/, postgres/) implements Connection and Statement; the
// SQL above it is written once, in text both engines accept:
//   - parameters are `?N` (numbered) or `?` (in order); the PostgreSQL driver rewrites them to
//     `$N`;
//   - inserts that may meet a unique key say `ON CONFLICT ... DO NOTHING` and look at Changes(),
//     so that no expected failure aborts a PostgreSQL transaction;
//   - aggregates are CAST to BIGINT (PostgreSQL's SUM of BIGINT is NUMERIC);
//   - what remains different (index hints, EXPLAIN) is described by Dialect.
//
// Thread safety: none. A Connection and its statements are used by one thread at a time; Pool
// hands each connection to one caller at a time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "iotpki/common/bytes.h"
#include "iotpki/common/error.h"

namespace iotpki::store::sql {

class Statement {
 public:
  virtual ~Statement() = default;
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  // Parameters are 1-based. Values are copied, so temporaries are fine. A bind failure is
  // remembered and reported by the next Step.
  virtual void Bind(int index, int64_t value) = 0;
  virtual void Bind(int index, std::string_view text) = 0;
  virtual void Bind(int index, ByteView blob) = 0;
  virtual void BindNull(int index) = 0;
  void Bind(int index, const std::optional<std::string>& text);
  void Bind(int index, const std::optional<int64_t>& value);

  // true: a row is available; false: the statement is done.
  virtual Result<bool> Step() = 0;
  // Runs a statement that returns no rows (or ignores them) to completion.
  Result<void> Run();

  // Columns are 0-based. Text and blobs are copied out. Int64 reads any integer column.
  virtual bool IsNull(int col) const = 0;
  virtual int64_t Int64(int col) const = 0;
  virtual std::string Text(int col) const = 0;
  virtual Bytes Blob(int col) const = 0;
  std::optional<std::string> OptionalText(int col) const;
  std::optional<int64_t> OptionalInt64(int col) const;

  // Rows changed by this statement's last completed INSERT/UPDATE/DELETE.
  virtual int64_t Changes() const = 0;

  // Ends the current use: releases the result and any read snapshot it holds, clears the
  // bindings.
  virtual void Reset() = 0;

 protected:
  Statement() = default;
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

// SQL text plus its positional parameters (`?`), in order of appearance. The text depends only
// on which filters are set, so each shape is prepared once per connection.
struct Query {
  std::string sql;
  std::vector<std::variant<int64_t, std::string, Bytes, std::monostate>> params;  // monostate: NULL

  void BindTo(Statement& s) const;
};

// What the shared SQL needs to know of an engine beyond the statements both accept.
struct Dialect {
  std::string_view name;  // "sqlite", "postgresql"
  // True if `FROM t INDEXED BY i` is understood (SQLite); elsewhere the planner chooses.
  bool index_hints = false;
  // Run after rows were copied in with their devices.seq given (store migrate): PostgreSQL's
  // identity sequence must continue after them. Empty where nothing is needed.
  std::string_view after_copy_sql;
};

class Connection {
 public:
  enum class TxMode {
    // Serialized with every other writer of the database (all processes and nodes), from BEGIN
    // to COMMIT: SQLite's BEGIN IMMEDIATE, PostgreSQL's transaction-scoped advisory lock.
    kWrite,
    // One consistent snapshot for several reads; never blocks the writer.
    kRead,
  };

  virtual ~Connection() = default;
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Runs one or more statements without parameters or results (DDL, BEGIN/COMMIT).
  virtual Result<void> Exec(std::string_view sql) = 0;
  // The prepared statement for `sql`, compiled on first use and cached for the connection's
  // lifetime. The same SQL text must not be in use twice at once (no recursion through it).
  virtual Result<StatementUse> Prepare(std::string_view sql) = 0;
  // Compiles `sql` without caching it (test-only queries, EXPLAIN).
  virtual Result<std::unique_ptr<Statement>> PrepareUncached(std::string_view sql) = 0;

  virtual Result<void> Begin(TxMode mode) = 0;
  virtual Result<void> Commit() = 0;
  // Best effort; a failure leaves the transaction to the next Begin, which retires it.
  virtual void Rollback() = 0;
  virtual bool in_transaction() const = 0;

  // True once the connection is unusable (the server went away); the pool replaces it.
  virtual bool broken() const { return false; }

  // The engine's plan for `q`, one line per plan row, as the engine prints it (tests only).
  virtual Result<std::string> Explain(const Query& q) = 0;

  virtual const Dialect& dialect() const = 0;

 protected:
  Connection() = default;
};

// A transaction that rolls back when destroyed without Commit().
class Transaction {
 public:
  static Result<Transaction> Begin(Connection& conn,
                                   Connection::TxMode mode = Connection::TxMode::kWrite);
  ~Transaction() {
    if (conn_ != nullptr) conn_->Rollback();
  }
  Transaction(Transaction&& other) noexcept : conn_(other.conn_) { other.conn_ = nullptr; }
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  Transaction& operator=(Transaction&&) = delete;

  Result<void> Commit();

 private:
  explicit Transaction(Connection* conn) : conn_(conn) {}
  Connection* conn_;
};

// Runs f() inside one read transaction on `conn`, so that its statements read one snapshot.
template <class F>
auto InReadTransaction(Connection& conn, F&& f) -> decltype(f()) {
  IOTPKI_TRY(auto tx, Transaction::Begin(conn, Connection::TxMode::kRead));
  auto result = f();
  if (result) IOTPKI_CHECK(tx.Commit());
  return result;
}

// One writer connection, guarded by a mutex, and a pool of read connections opened on demand,
// at most `max_idle_readers` kept between calls. Without a reader opener (an in-memory SQLite
// database cannot be shared) reads run on the writer. A connection found broken is replaced
// before its next use; a read that fails because its connection broke is run once more on a new
// one (reads change nothing; writes are not repeated, as their commit may have happened).
class Pool {
 public:
  using Opener = std::function<Result<std::unique_ptr<Connection>>()>;

  Pool(std::unique_ptr<Connection> writer, Opener open_writer, Opener open_reader,
       size_t max_idle_readers)
      : writer_(std::move(writer)),
        open_writer_(std::move(open_writer)),
        open_reader_(std::move(open_reader)),
        max_idle_readers_(max_idle_readers) {}

  template <class F>
  auto WithWriter(F&& f) -> decltype(f(std::declval<Connection&>())) {
    std::lock_guard<std::mutex> lock(writer_mu_);
    if (writer_->broken() && open_writer_) {
      auto opened = open_writer_();
      if (!opened) return Fail(std::move(opened).error());
      writer_ = std::move(*opened);
    }
    return f(*writer_);
  }

  template <class F>
  auto WithReader(F&& f) -> decltype(f(std::declval<Connection&>())) {
    if (!open_reader_) return WithWriter(std::forward<F>(f));
    std::unique_ptr<Connection> conn;
    {
      std::lock_guard<std::mutex> lock(pool_mu_);
      while (!conn && !idle_readers_.empty()) {
        conn = std::move(idle_readers_.back());
        idle_readers_.pop_back();
        if (conn->broken()) conn.reset();
      }
    }
    if (!conn) {
      auto opened = open_reader_();
      if (!opened) return Fail(std::move(opened).error());
      conn = std::move(*opened);
    }
    auto result = f(*conn);
    if (!result && conn->broken()) {
      // The server ended the connection (a restart, a failover): the idle ones went with it.
      // A read changes nothing, so it runs once more on a new connection.
      {
        std::lock_guard<std::mutex> lock(pool_mu_);
        idle_readers_.clear();
      }
      auto opened = open_reader_();
      if (!opened) return result;
      conn = std::move(*opened);
      result = f(*conn);
    }
    std::lock_guard<std::mutex> lock(pool_mu_);
    if (idle_readers_.size() < max_idle_readers_ && !conn->broken()) {
      idle_readers_.push_back(std::move(conn));
    }
    return result;
  }

 private:
  std::mutex writer_mu_;
  std::unique_ptr<Connection> writer_;  // Guarded by writer_mu_.
  const Opener open_writer_;
  const Opener open_reader_;
  const size_t max_idle_readers_;

  std::mutex pool_mu_;
  std::vector<std::unique_ptr<Connection>> idle_readers_;  // Guarded by pool_mu_.
};

}  // namespace iotpki::store::sql
