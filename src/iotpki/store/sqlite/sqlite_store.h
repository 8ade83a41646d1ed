// The embedded Store backend: one SQLite database file in WAL mode, under the shared SQL store
// (sql/sql_store.h). What is SQLite's own stays here: pragmas, the WAL checkpoint policy, the
// file's mode, the migrations (sqlite_schema.cc).
//
// Connections and thread safety: one writer connection, guarded by a mutex, carries every write
// (Commit, PruneReplay), so commits are serialized within the process; across
// processes BEGIN IMMEDIATE and the busy timeout serialize them. Reads run on a small pool of
// read-only connections (query_only), one per concurrent reader, so they proceed in parallel and
// are not blocked by a commit's fsync: in WAL mode a reader sees the last committed state. A
// `:memory:` store has a single connection (a private in-memory database cannot be shared), used
// for reads and writes under the one mutex.
//
// Durability: synchronous=FULL by default, so a certificate is on disk once Commit returns.
#pragma once

#include <cstddef>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "iotpki/common/clock.h"
#include "iotpki/common/error.h"
#include "iotpki/store/sql/sql_store.h"
#include "iotpki/store/store.h"

namespace iotpki::store {

struct SqliteOptions {
  enum class Synchronous { kNormal, kFull };
  // NORMAL in WAL mode keeps the database consistent but may lose the last commits on power
  // loss; only for benchmarks and throwaway data.
  Synchronous synchronous = Synchronous::kFull;
  // How long a connection waits for another process's lock before Unavailable.
  int busy_timeout_ms = 5000;
  // Page cache of the writer connection (a maximum: a small store never fills it); large batches
  // into a big database want more than SQLite's 2 MiB default. At a million devices the three
  // randomly keyed indexes a batch inserts into (formats.md, "Store schema") are about 270 MB;
  // 512 MiB keeps their pages out of the kernel (docs/performance.md, "Schema version 3").
  int writer_cache_kib = 512 << 10;
  // Page cache of each pooled read connection. An expiry count reads the certificates of the
  // window's two partial days (about 1/90 of the fleet when notAfter spreads over 90 days); a
  // warm cache keeps those pages out of the kernel.
  int reader_cache_kib = 32 << 10;
  // Read connections kept open between calls; more are opened on demand and closed after use.
  size_t max_idle_readers = 4;
  // WAL size (pages) after which a commit copies the WAL back into the database (SQLite's
  // default is 1,000). A factory group of thousands of devices dirties thousands of index pages
  // in random places; checkpointing every few groups instead of after each one writes a page
  // dirtied by several groups once, and saves two fsyncs per group. Durability does not depend on
  // it: a commit is durable once its WAL frames are synced.
  // 65,536 pages (256 MiB): at a million devices a group of 4,096 dirties about 12,000 pages.
  int wal_autocheckpoint_pages = 65536;
};

// path ":memory:" opens a private in-memory database (unit tests). Otherwise the file is created
// if missing, with mode 0600 (SQLite gives its -wal and -shm files the same mode); an existing
// file keeps its mode. Applies pending schema migrations. Errors: FailedPrecondition (cannot
// open, or the database is newer than this build), DataLoss (not a database or corrupt),
// PermissionDenied, Unavailable (locked by another process beyond the busy timeout).
//
// `clock` stamps created_at, updated_at, revoked_at, audit times and "now" for expiry queries;
// it must outlive the store.
Result<std::unique_ptr<Store>> OpenSqliteStore(const std::filesystem::path& path,
                                               const Clock& clock,
                                               const SqliteOptions& options = {});

// The SQLite backend of the shared SQL store (sql/sql_store.h), whose test hooks it keeps.
class SqliteStore final : public sql::SqlStore {
 public:
  // As OpenSqliteStore, returning the concrete type for the test hooks of SqlStore.
  static Result<std::unique_ptr<SqliteStore>> Open(const std::filesystem::path& path,
                                                   const Clock& clock,
                                                   const SqliteOptions& options = {});
  ~SqliteStore() override;

 private:
  SqliteStore(const Clock& clock, std::unique_ptr<sql::Pool> pool);
};

}  // namespace iotpki::store
