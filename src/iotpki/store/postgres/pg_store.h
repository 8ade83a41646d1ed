// The Store backend for fleets served by several nodes: one PostgreSQL database, under the
// shared SQL store (sql/sql_store.h).
//
// Connections and thread safety: as the SQLite store, one writer connection per process,
// guarded by a mutex, and a pool of read connections. Across processes and nodes every write
// transaction first takes one transaction-scoped advisory lock (pg_db.h, kWriterLockKey), so
// commits are serialized database-wide: the audit chain stays one chain, and the count tables'
// read-then-write upkeep sees every earlier commit. Reads take no lock.
//
// Factory batches (devices with their IDevIDs, and audit rows) are loaded with COPY FROM STDIN
// in binary, in the same single transaction; any failure there rolls back and the batch is
// applied again statement by statement, which names the offending row precisely.
//
// Durability: the server's (synchronous_commit, replication); a commit has returned once
// PostgreSQL reported it committed.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "iotpki/common/clock.h"
#include "iotpki/common/error.h"
#include "iotpki/store/sql/sql_store.h"
#include "iotpki/store/store.h"

namespace iotpki::store {

struct PostgresOptions {
  // Read connections kept open between calls; more are opened on demand and closed after use.
  size_t max_idle_readers = 4;
  // Batches with at least this many new devices (and otherwise only their certificates and
  // audit rows) are loaded with COPY. 0 turns the bulk path off.
  size_t bulk_min_devices = 1;
};

// `url`: a libpq connection URI, postgresql://[user@]host[:port][,host2...]/dbname[?params]
// (passwords belong in ~/.pgpass or $PGPASSFILE, not in the URL). Applies pending schema
// migrations. Errors: Unavailable (unreachable, or a standby), PermissionDenied (credentials),
// FailedPrecondition (no such database, or the schema is newer than this build).
Result<std::unique_ptr<Store>> OpenPostgresStore(const std::string& url, const Clock& clock,
                                                 const PostgresOptions& options = {});

class PostgresStore final : public sql::SqlStore {
 public:
  // As OpenPostgresStore, returning the concrete type for the test hooks of SqlStore.
  static Result<std::unique_ptr<PostgresStore>> Open(const std::string& url, const Clock& clock,
                                                     const PostgresOptions& options = {});
  ~PostgresStore() override;

 protected:
  Result<CommitInfo> CommitOn(sql::Connection& conn, const WriteBatch& batch) override;

 private:
  PostgresStore(const Clock& clock, std::unique_ptr<sql::Pool> pool,
                const PostgresOptions& options);
  const PostgresOptions options_;
};

}  // namespace iotpki::store
