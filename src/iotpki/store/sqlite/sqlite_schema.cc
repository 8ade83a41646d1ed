#include "iotpki/store/sqlite/sqlite_schema.h"

#include <string>

#include "iotpki/store/store.h"

namespace iotpki::store::sqlite {
namespace {

struct Migration {
  int version;
  const char* name;
  const char* sql;
};

// The PostgreSQL backend carries the same tables, columns, constraints and indexes under the same
// version numbers; only the types are spelled differently (BIGINT, BYTEA). STRICT makes SQLite
// enforce the declared column types as PostgreSQL does.
constexpr Migration kMigrations[] = {
    {1, "devices, certificates, public_keys, audit_log, bootstrap_replay", R"sql(
CREATE TABLE devices (
  device_id TEXT NOT NULL PRIMARY KEY,
  serial TEXT NOT NULL UNIQUE,
  model TEXT NOT NULL,
  batch TEXT NOT NULL,
  state TEXT NOT NULL
    CHECK (state IN ('manufactured', 'active', 'suspended', 'decommissioned')),
  hardware_fingerprint TEXT,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
) STRICT;
-- Each serves one ListDevices/CountDevices filter and the keyset order on device_id at once.
CREATE INDEX devices_by_state ON devices (state, device_id);
CREATE INDEX devices_by_model ON devices (model, device_id);
CREATE INDEX devices_by_batch ON devices (batch, device_id);

CREATE TABLE certificates (
  serial TEXT NOT NULL PRIMARY KEY,
  device_id TEXT REFERENCES devices (device_id),
  profile TEXT NOT NULL
    CHECK (profile IN ('root', 'issuing-ca', 'idevid', 'ldevid', 'server')),
  issuer TEXT NOT NULL,
  subject TEXT NOT NULL,
  not_before INTEGER NOT NULL,
  not_after INTEGER NOT NULL,
  key_fingerprint TEXT NOT NULL,
  der BLOB NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('valid', 'revoked')),
  revoked_at INTEGER,
  revocation_reason TEXT,
  created_at INTEGER NOT NULL,
  CHECK ((status = 'valid') = (revoked_at IS NULL))
) STRICT;
-- (status, not_after) answers the expiry queries in order; serial makes the keyset order total
-- and device_id makes the index covering, so those queries never touch the wide rows (DER).
CREATE INDEX certificates_by_expiry ON certificates (status, not_after, serial, device_id);
CREATE INDEX certificates_by_device ON certificates (device_id, status, not_after, serial);
CREATE INDEX certificates_by_key ON certificates (key_fingerprint);

-- The owner of every public key ever certified: one device, or NULL for CA and server keys.
-- A UNIQUE constraint, not a check-then-insert, so that two concurrent transactions (several
-- PostgreSQL clients) cannot both give one key to two devices.
CREATE TABLE public_keys (
  key_fingerprint TEXT NOT NULL PRIMARY KEY,
  device_id TEXT REFERENCES devices (device_id),
  first_serial TEXT NOT NULL,
  created_at INTEGER NOT NULL
) STRICT;

CREATE TABLE audit_log (
  seq INTEGER NOT NULL PRIMARY KEY,
  time INTEGER NOT NULL,
  actor TEXT NOT NULL,
  action TEXT NOT NULL,
  subject TEXT NOT NULL,
  details TEXT NOT NULL,
  prev_hash BLOB NOT NULL,
  hash BLOB NOT NULL
) STRICT;

CREATE TABLE bootstrap_replay (
  device_id TEXT NOT NULL,
  timestamp INTEGER NOT NULL,
  seen_at INTEGER NOT NULL,
  PRIMARY KEY (device_id, timestamp)
) STRICT;
CREATE INDEX bootstrap_replay_by_timestamp ON bootstrap_replay (timestamp);
)sql"},
    // 2: campaigns and rotation_jobs (lifecycle issue).
};

static_assert(sizeof(kMigrations) / sizeof(kMigrations[0]) == kLatestSchemaVersion,
              "one migration per schema version, numbered 1..kLatestSchemaVersion");

constexpr const char* kCreateMigrationsTable =
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    " version INTEGER NOT NULL PRIMARY KEY,"
    " name TEXT NOT NULL,"
    " applied_at INTEGER NOT NULL) STRICT";

Result<void> RefuseNewer(int version) {
  if (version > kLatestSchemaVersion) {
    return Fail(Code::kFailedPrecondition,
                "the database was written by a newer iotpki (schema version " +
                    std::to_string(version) + ", this build knows up to " +
                    std::to_string(kLatestSchemaVersion) + ")");
  }
  return {};
}

}  // namespace

Result<int> CurrentSchemaVersion(Connection& conn) {
  IOTPKI_TRY(auto stmt, conn.Prepare("SELECT COALESCE(MAX(version), 0) FROM schema_migrations"));
  IOTPKI_TRY(bool row, stmt->Step());
  if (!row) return 0;
  return static_cast<int>(stmt->Int64(0));
}

Result<void> Migrate(Connection& conn, int64_t now) {
  // Read-only fast path: an up-to-date database is not written to on open.
  {
    IOTPKI_TRY(auto stmt,
               conn.Prepare("SELECT COUNT(*) FROM sqlite_schema WHERE type = 'table' AND "
                            "name = 'schema_migrations'"));
    IOTPKI_TRY(bool row, stmt->Step());
    if (row && stmt->Int64(0) == 1) {
      stmt->Reset();
      IOTPKI_TRY(int version, CurrentSchemaVersion(conn));
      IOTPKI_CHECK(RefuseNewer(version));
      if (version == kLatestSchemaVersion) return {};
    }
  }
  IOTPKI_CHECK(conn.Exec(kCreateMigrationsTable));
  for (const Migration& m : kMigrations) {
    IOTPKI_TRY(auto tx, Transaction::Begin(conn));
    IOTPKI_TRY(int version, CurrentSchemaVersion(conn));
    IOTPKI_CHECK(RefuseNewer(version));
    if (version >= m.version) continue;  // Applied already, perhaps by another process.
    if (version != m.version - 1) {
      return Fail(Code::kDataLoss, "the schema_migrations table has a gap",
                  "at version " + std::to_string(version));
    }
    auto applied = conn.Exec(m.sql);
    if (!applied) {
      return Fail(std::move(applied).error().Context("applying schema migration " +
                                                     std::to_string(m.version)));
    }
    IOTPKI_TRY(auto insert, conn.Prepare("INSERT INTO schema_migrations (version, name, "
                                         "applied_at) VALUES (?1, ?2, ?3)"));
    insert->Bind(1, int64_t{m.version});
    insert->Bind(2, std::string_view(m.name));
    insert->Bind(3, now);
    IOTPKI_CHECK(insert->Run());
    IOTPKI_CHECK(tx.Commit());
  }
  return {};
}

}  // namespace iotpki::store::sqlite
