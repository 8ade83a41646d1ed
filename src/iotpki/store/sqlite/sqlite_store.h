// The embedded Store backend: one SQLite database file in WAL mode.
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

class SqliteStore final : public Store {
 public:
  // As OpenSqliteStore, returning the concrete type for the test hooks below.
  static Result<std::unique_ptr<SqliteStore>> Open(const std::filesystem::path& path,
                                                   const Clock& clock,
                                                   const SqliteOptions& options = {});
  ~SqliteStore() override;

  Result<CommitInfo> Commit(const WriteBatch& batch) override;
  Result<Device> GetDevice(std::string_view device_id) override;
  Result<Device> GetDeviceBySerial(std::string_view serial) override;
  Result<std::vector<std::optional<Device>>> GetDevicesBySerial(
      std::span<const std::string> serials) override;
  Result<CertificateRecord> GetCertificate(std::string_view serial_hex) override;
  Result<std::vector<CertificateRecord>> FindCertificatesByKey(
      std::string_view key_fingerprint) override;
  Result<std::vector<std::vector<CertificateRecord>>> FindCertificatesByKeys(
      std::span<const std::string> key_fingerprints) override;
  Result<std::vector<CertificateRecord>> ListCertificatesForDevice(
      std::string_view device_id) override;
  Result<DevicePage> ListDevices(const DeviceFilter& filter, size_t limit,
                                 std::string_view cursor) override;
  Result<int64_t> CountDevices(const DeviceFilter& filter) override;
  Result<std::vector<AuditRecord>> ReadAudit(int64_t from_seq, size_t limit) override;
  Result<bool> IsTokenRecorded(std::string_view device_id, int64_t timestamp) override;
  Result<int64_t> PruneReplay(int64_t before) override;
  Result<int> SchemaVersion() override;

  // --- Test hooks. Not for production code: they bypass every rule of the store. ---

  // Runs raw SQL on the writer connection (tampering with the audit log, PRAGMA max_page_count
  // to simulate a full disk, holding a lock).
  Result<void> ExecForTest(std::string_view sql);
  // Runs a query on the writer connection and returns the first column of the first row as text
  // ("" if no row): PRAGMA values.
  Result<std::string> QueryForTest(std::string_view sql);
  // EXPLAIN QUERY PLAN of exactly the SQL that ListDevices / CountDevices run for these
  // arguments (with the clock's current time), one plan line per row, as SQLite prints them
  // ("SEARCH c USING COVERING INDEX certificates_by_expiry (status=? AND not_after>? AND
  // not_after<?)").
  Result<std::string> ExplainListDevicesForTest(const DeviceFilter& filter, size_t limit,
                                                std::string_view cursor);
  Result<std::string> ExplainCountDevicesForTest(const DeviceFilter& filter);
  // The plan of FindCertificatesByKey's second query, for a key of a device or (false) of the CA
  // side.
  Result<std::string> ExplainFindCertificatesByKeyForTest(bool device_owner);

 private:
  struct Impl;
  explicit SqliteStore(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace iotpki::store
