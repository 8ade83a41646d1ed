#include "iotpki/store/sqlite/sqlite_schema.h"

#include <sqlite3.h>

#include <string>

#include "iotpki/common/bytes.h"
#include "iotpki/store/sql/sql_store.h"
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
    {2, "inventory counts: device_counts, expiry_certs, expiry_counts", R"sql(
-- Maintained by the store in the transaction of every write that changes what they summarize
-- (sqlite_store.cc, BatchWriter), so that CountDevices reads a few hundred rows instead of the
-- devices or certificates. docs/architecture.md ("Inventory counts") explains the design.

-- Devices per (state, model, batch): every count without an expiry window.
CREATE TABLE device_counts (
  state TEXT NOT NULL,
  model TEXT NOT NULL,
  batch TEXT NOT NULL,
  n INTEGER NOT NULL,
  PRIMARY KEY (state, model, batch)
) STRICT, WITHOUT ROWID;

-- One row per valid device certificate with a finite notAfter (below 9999-12-31T23:59:59, so
-- IDevIDs are not here), carrying the owner's state, model and batch, and the notAfter of the
-- device's previous valid certificate in (not_after, serial) order (NULL for its first). A
-- certificate counts for "expiring within [now, now + w]" exactly when its own not_after is in
-- the window and prev_not_after is NULL or before now: then it is the device's earliest
-- matching certificate. The rows of the partial days at the ends of a window are counted here.
CREATE TABLE expiry_certs (
  not_after INTEGER NOT NULL,
  serial TEXT NOT NULL,
  prev_not_after INTEGER,
  state TEXT NOT NULL,
  model TEXT NOT NULL,
  batch TEXT NOT NULL,
  PRIMARY KEY (not_after, serial)
) STRICT, WITHOUT ROWID;
-- Certificates whose predecessor expires on the first day of a window; only certificates of a
-- device that has more than one (renewals) have an entry.
CREATE INDEX expiry_certs_by_prev ON expiry_certs (prev_not_after, state, model, batch)
  WHERE prev_not_after IS NOT NULL;

-- expiry_certs summed per UTC day of not_after and of prev_not_after (-2^62 for NULL): the whole
-- days inside a window.
CREATE TABLE expiry_counts (
  day INTEGER NOT NULL,
  prev_day INTEGER NOT NULL,
  state TEXT NOT NULL,
  model TEXT NOT NULL,
  batch TEXT NOT NULL,
  n INTEGER NOT NULL,
  PRIMARY KEY (day, prev_day, state, model, batch)
) STRICT, WITHOUT ROWID;

INSERT INTO device_counts (state, model, batch, n)
  SELECT state, model, batch, COUNT(*) FROM devices GROUP BY state, model, batch;
INSERT INTO expiry_certs (not_after, serial, prev_not_after, state, model, batch)
  SELECT c.not_after, c.serial,
         LAG(c.not_after) OVER (PARTITION BY c.device_id ORDER BY c.not_after, c.serial),
         d.state, d.model, d.batch
  FROM certificates c JOIN devices d ON d.device_id = c.device_id
  WHERE c.status = 'valid' AND c.not_after < 253402300799;
-- Floor division by 86400, also for times before 1970.
INSERT INTO expiry_counts (day, prev_day, state, model, batch, n)
  SELECT (not_after - ((not_after % 86400) + 86400) % 86400) / 86400,
         CASE WHEN prev_not_after IS NULL THEN -4611686018427387904
              ELSE (prev_not_after - ((prev_not_after % 86400) + 86400) % 86400) / 86400 END,
         state, model, batch, COUNT(*)
  FROM expiry_certs GROUP BY 1, 2, 3, 4, 5;
)sql"},
    {3, "append-ordered indexes: devices.seq, no certificates_by_key", R"sql(
-- A factory batch adds a device, a certificate and a public key per row; every index keyed by a
-- random value (device id, certificate serial, key fingerprint) takes that row on a page of its
-- own once the index is larger than a batch, and each such page is written to the WAL and back.
-- Version 3 keeps three random keys (devices.device_id, certificates_by_device, public_keys) and
-- orders the rest by insertion: devices get an insertion sequence (seq, which device listings
-- page by), the state/model/batch indexes end with it, and certificate serials begin with their
-- issuance time (x509::NewSerial), which orders the certificates' primary key and, for IDevIDs,
-- certificates_by_expiry. certificates_by_key repeated public_keys' key; FindCertificatesByKey
-- reads the owner there and that owner's certificates through certificates_by_device.
-- Runs with foreign key enforcement off (Migrate), as SQLite's table rebuild requires; Migrate
-- runs PRAGMA foreign_key_check before committing.
CREATE TABLE devices_v3 (
  seq INTEGER PRIMARY KEY,
  device_id TEXT NOT NULL UNIQUE,
  serial TEXT NOT NULL UNIQUE,
  model TEXT NOT NULL,
  batch TEXT NOT NULL,
  state TEXT NOT NULL
    CHECK (state IN ('manufactured', 'active', 'suspended', 'decommissioned')),
  hardware_fingerprint TEXT,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
) STRICT;
INSERT INTO devices_v3 (device_id, serial, model, batch, state, hardware_fingerprint, created_at,
                        updated_at)
  SELECT device_id, serial, model, batch, state, hardware_fingerprint, created_at, updated_at
  FROM devices ORDER BY created_at, rowid;
DROP TABLE devices;
ALTER TABLE devices_v3 RENAME TO devices;
-- Each serves one ListDevices/CountDevices filter and the keyset order on seq at once.
CREATE INDEX devices_by_state ON devices (state, seq);
CREATE INDEX devices_by_model ON devices (model, seq);
CREATE INDEX devices_by_batch ON devices (batch, seq);
DROP INDEX certificates_by_key;
)sql"},
    {4,
     "binary ids: devices.device_id and key fingerprints as 32-byte blobs, certificates and "
     "public keys name their device by seq",
     R"sql(
-- At a million devices and more, a factory batch is bound by the three indexes whose keys are
-- random: devices.device_id, public_keys and certificates_by_device. Each new device dirties a
-- page of each, and a page holds half as many 64-digit hex keys as 32-byte blobs. Version 4 stores
-- device ids and key fingerprints as blobs (the API still speaks lowercase hex), makes
-- public_keys one B-tree (WITHOUT ROWID) and names a certificate's or a key's device by its seq,
-- so that certificates_by_device grows at its end like the devices themselves. docs/performance.md
-- ("The store at scale") has the measurements.
-- iotpki_unhex is registered by Migrate for this migration: 64 hex digits to 32 bytes, and an
-- error (which rolls the migration back) for anything else.
CREATE TABLE devices_v4 (
  seq INTEGER PRIMARY KEY,
  device_id BLOB NOT NULL UNIQUE CHECK (length(device_id) = 32),
  serial TEXT NOT NULL UNIQUE,
  model TEXT NOT NULL,
  batch TEXT NOT NULL,
  state TEXT NOT NULL
    CHECK (state IN ('manufactured', 'active', 'suspended', 'decommissioned')),
  hardware_fingerprint TEXT,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
) STRICT;
INSERT INTO devices_v4 (seq, device_id, serial, model, batch, state, hardware_fingerprint,
                        created_at, updated_at)
  SELECT seq, iotpki_unhex(device_id), serial, model, batch, state, hardware_fingerprint,
         created_at, updated_at
  FROM devices ORDER BY seq;

CREATE TABLE certificates_v4 (
  serial TEXT NOT NULL PRIMARY KEY,
  device_seq INTEGER REFERENCES devices (seq),
  profile TEXT NOT NULL
    CHECK (profile IN ('root', 'issuing-ca', 'idevid', 'ldevid', 'server')),
  issuer TEXT NOT NULL,
  subject TEXT NOT NULL,
  not_before INTEGER NOT NULL,
  not_after INTEGER NOT NULL,
  key_fingerprint BLOB NOT NULL CHECK (length(key_fingerprint) = 32),
  der BLOB NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('valid', 'revoked')),
  revoked_at INTEGER,
  revocation_reason TEXT,
  created_at INTEGER NOT NULL,
  CHECK ((status = 'valid') = (revoked_at IS NULL))
) STRICT;
INSERT INTO certificates_v4 (serial, device_seq, profile, issuer, subject, not_before, not_after,
                             key_fingerprint, der, status, revoked_at, revocation_reason,
                             created_at)
  SELECT c.serial, d.seq, c.profile, c.issuer, c.subject, c.not_before, c.not_after,
         iotpki_unhex(c.key_fingerprint), c.der, c.status, c.revoked_at, c.revocation_reason,
         c.created_at
  FROM certificates c LEFT JOIN devices d ON d.device_id = c.device_id ORDER BY c.rowid;

-- The owner of every public key ever certified: one device, or NULL for CA and server keys.
CREATE TABLE public_keys_v4 (
  key_fingerprint BLOB NOT NULL PRIMARY KEY CHECK (length(key_fingerprint) = 32),
  device_seq INTEGER REFERENCES devices (seq),
  first_serial TEXT NOT NULL,
  created_at INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
INSERT INTO public_keys_v4 (key_fingerprint, device_seq, first_serial, created_at)
  SELECT iotpki_unhex(p.key_fingerprint), d.seq, p.first_serial, p.created_at
  FROM public_keys p LEFT JOIN devices d ON d.device_id = p.device_id;

DROP TABLE public_keys;
DROP TABLE certificates;
DROP TABLE devices;
ALTER TABLE devices_v4 RENAME TO devices;
ALTER TABLE certificates_v4 RENAME TO certificates;
ALTER TABLE public_keys_v4 RENAME TO public_keys;
CREATE INDEX devices_by_state ON devices (state, seq);
CREATE INDEX devices_by_model ON devices (model, seq);
CREATE INDEX devices_by_batch ON devices (batch, seq);
CREATE INDEX certificates_by_expiry ON certificates (status, not_after, serial, device_seq);
CREATE INDEX certificates_by_device ON certificates (device_seq, status, not_after, serial);
)sql"},
    {5, "certificates.first_used_at, certificates_revoked, certificates_revoked_by_issuer", R"sql(
ALTER TABLE certificates ADD COLUMN first_used_at INTEGER;
CREATE INDEX certificates_revoked ON certificates (revoked_at, serial)
  WHERE revoked_at IS NOT NULL;
-- A CRL lists the revoked certificates of one issuer in serial order; certificates_revoked
-- (above) is ordered by revoked_at, so it cannot serve that read without a sort. A partial
-- index holds only the revoked rows, so a CRL costs its own entries in a store of millions of
-- valid ones.
CREATE INDEX certificates_revoked_by_issuer ON certificates (issuer, serial)
  WHERE status = 'revoked';
)sql"},
    {6, "rotation campaigns: campaigns, rotation_jobs, campaign_counts, certificates_by_issuer",
     R"sql(
-- Rotation campaigns (docs/rotation.md). A campaign's jobs are numbered 0.. (ordinal) in the
-- order the cohort was selected; wave = ordinal / wave_size, so a wave is a range of the primary
-- key. Jobs of waves not yet started have next_attempt_at = 2^62, which keeps them at the far
-- end of rotation_jobs_due until their wave starts.
CREATE TABLE campaigns (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  filter TEXT NOT NULL,
  mode TEXT NOT NULL CHECK (mode IN ('renew', 'rekey')),
  wave_size INTEGER NOT NULL CHECK (wave_size >= 1),
  max_failure_ppm INTEGER NOT NULL CHECK (max_failure_ppm BETWEEN 0 AND 1000000),
  retry_after INTEGER NOT NULL CHECK (retry_after >= 1),
  max_attempts INTEGER NOT NULL CHECK (max_attempts >= 1),
  deadline INTEGER NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('running', 'paused', 'halted', 'cancelled', 'done')),
  state_reason TEXT NOT NULL,
  jobs INTEGER NOT NULL,
  waves INTEGER NOT NULL,
  current_wave INTEGER NOT NULL,
  wave_started_at INTEGER NOT NULL,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
) STRICT;

CREATE TABLE rotation_jobs (
  campaign_id INTEGER NOT NULL REFERENCES campaigns (id),
  ordinal INTEGER NOT NULL,
  device_seq INTEGER NOT NULL REFERENCES devices (seq),
  wave INTEGER NOT NULL,
  state TEXT NOT NULL
    CHECK (state IN ('pending', 'notified', 'enrolled', 'confirmed', 'failed')),
  attempts INTEGER NOT NULL,
  next_attempt_at INTEGER NOT NULL,
  last_error TEXT,
  lease_owner TEXT,
  lease_until INTEGER,
  old_serial TEXT,
  new_serial TEXT,
  updated_at INTEGER NOT NULL,
  PRIMARY KEY (campaign_id, ordinal),
  UNIQUE (campaign_id, device_seq)
) STRICT, WITHOUT ROWID;
-- What ClaimJobs walks: a running campaign's unfinished jobs in the order they fall due.
CREATE INDEX rotation_jobs_due ON rotation_jobs (campaign_id, next_attempt_at, ordinal)
  WHERE state IN ('pending', 'notified', 'enrolled');
-- `campaign failures`: only jobs that have failed at least once.
CREATE INDEX rotation_jobs_errors ON rotation_jobs (campaign_id, ordinal)
  WHERE last_error IS NOT NULL;

-- Jobs per (campaign, wave, state), kept in the transaction of every job write, so that status
-- and the wave logic read a few rows rather than a million jobs.
CREATE TABLE campaign_counts (
  campaign_id INTEGER NOT NULL,
  wave INTEGER NOT NULL,
  state TEXT NOT NULL,
  n INTEGER NOT NULL,
  PRIMARY KEY (campaign_id, wave, state)
) STRICT, WITHOUT ROWID;

-- `campaign create --issued-by-ca`: the devices holding a valid certificate from one CA. Keyed
-- by device_seq within an issuer, so a factory batch appends to it.
CREATE INDEX certificates_by_issuer ON certificates (issuer, device_seq)
  WHERE status = 'valid' AND device_seq IS NOT NULL;
)sql"},
    {7,
     "operator's view: certificates.key_origin, issuance_counts, audit_by_subject, "
     "operator_certificates",
     R"sql(
-- Where a device certificate's key pair was made (store.h, KeyOrigin); NULL: not known (rows of
-- earlier versions, CA and server certificates). Adding a nullable column rewrites no row.
ALTER TABLE certificates ADD COLUMN key_origin TEXT
  CHECK (key_origin IN ('device', 'hardware', 'generated'));

-- Certificates recorded per UTC day of created_at, profile, issuer and key origin ('' for
-- unknown), kept in the transaction that records each certificate, so that the dashboard's
-- "issued per day" and the compliance report's key-origin shares read a few hundred rows. The
-- existing certificates are counted here, in one pass, once.
CREATE TABLE issuance_counts (
  day INTEGER NOT NULL,
  profile TEXT NOT NULL,
  issuer TEXT NOT NULL,
  key_origin TEXT NOT NULL,
  n INTEGER NOT NULL,
  PRIMARY KEY (day, profile, issuer, key_origin)
) STRICT, WITHOUT ROWID;
INSERT INTO issuance_counts (day, profile, issuer, key_origin, n)
  SELECT (created_at - ((created_at % 86400) + 86400) % 86400) / 86400, profile, issuer, '',
         COUNT(*)
  FROM certificates GROUP BY 1, 2, 3;

-- A device's (or a certificate's) audit rows, newest first, a page at a time (the dashboard's
-- device page).
CREATE INDEX audit_by_subject ON audit_log (subject, seq);

-- Operator certificates of the admin CA, so that one can be revoked (`iotpki admin revoke`).
-- Those issued before this version are taken from their admin.issue audit rows (one pass over
-- the log, once).
CREATE TABLE operator_certificates (
  serial TEXT NOT NULL PRIMARY KEY,
  name TEXT NOT NULL,
  role TEXT NOT NULL CHECK (role IN ('operator', 'read-only')),
  not_after INTEGER NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('valid', 'revoked')),
  revoked_at INTEGER,
  created_at INTEGER NOT NULL,
  CHECK ((status = 'valid') = (revoked_at IS NULL))
) STRICT;
CREATE INDEX operator_certificates_by_name ON operator_certificates (name, serial);
INSERT INTO operator_certificates (serial, name, role, not_after, status, revoked_at, created_at)
  SELECT subject, json_extract(details, '$.name'), json_extract(details, '$.role'),
         json_extract(details, '$.not_after'), 'valid', NULL, time
  FROM audit_log
  WHERE action = 'admin.issue' AND json_valid(details)
    AND json_type(details, '$.name') = 'text'
    AND json_extract(details, '$.role') IN ('operator', 'read-only')
    AND json_type(details, '$.not_after') = 'integer'
  ORDER BY seq
  ON CONFLICT (serial) DO NOTHING;
)sql"},
    {8, "stranded devices as a seek: devices.heard_at, devices.ldevid_not_after, devices_stranding",
     R"sql(
-- The compliance report's stranded-devices count (Store::AuditCredentials) joined every device to
-- its certificates and grouped them: a pass over the fleet. Version 8 keeps on each device what
-- that pass computed, in the transaction of every write that changes it (sql_store.cc,
-- BatchWriter): heard_at, the device's last contact (the latest of its last state change, the
-- recording of its newest certificate and the first use of any of them), and ldevid_not_after,
-- the notAfter of its newest valid working certificate (NULL without one). A device is stranded
-- at `now` when now - heard_at > ldevid_not_after - now, that is heard_at + ldevid_not_after <
-- 2 * now: a range of the expression index below, which holds only devices with a working
-- certificate that are not decommissioned. The existing rows are filled here in one pass, once.
ALTER TABLE devices ADD COLUMN heard_at INTEGER NOT NULL DEFAULT 0;
ALTER TABLE devices ADD COLUMN ldevid_not_after INTEGER;
UPDATE devices SET heard_at = MAX(devices.updated_at, x.issued, x.used),
                   ldevid_not_after = x.expires
  FROM (SELECT device_seq, MAX(created_at) AS issued, COALESCE(MAX(first_used_at), 0) AS used,
               MAX(CASE WHEN profile = 'ldevid' AND status = 'valid' THEN not_after END)
                 AS expires
        FROM certificates WHERE device_seq IS NOT NULL GROUP BY device_seq) AS x
  WHERE x.device_seq = devices.seq;
-- Devices without a certificate: their last state change.
UPDATE devices SET heard_at = updated_at WHERE heard_at < updated_at;
CREATE INDEX devices_stranding ON devices (heard_at + ldevid_not_after)
  WHERE ldevid_not_after IS NOT NULL AND state <> 'decommissioned';
)sql"},
};

static_assert(sizeof(kMigrations) / sizeof(kMigrations[0]) == kLatestSchemaVersion,
              "one migration per schema version, numbered 1..kLatestSchemaVersion");

constexpr const char* kCreateMigrationsTable =
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    " version INTEGER NOT NULL PRIMARY KEY,"
    " name TEXT NOT NULL,"
    " applied_at INTEGER NOT NULL) STRICT";

}  // namespace

namespace {

// iotpki_unhex(TEXT) for migration 4 (SQLite 3.40 has no unhex): 64 hex digits, either case, to
// 32 bytes; NULL to NULL; anything else is an error that aborts the statement.
void Unhex(sqlite3_context* ctx, int, sqlite3_value** argv) {
  if (sqlite3_value_type(argv[0]) == SQLITE_NULL) return sqlite3_result_null(ctx);
  const unsigned char* text = sqlite3_value_text(argv[0]);
  int n = sqlite3_value_bytes(argv[0]);
  auto bytes = text != nullptr && n == 64
                   ? FromHex(std::string_view(reinterpret_cast<const char*>(text), 64))
                   : Result<Bytes>(Fail(Code::kInvalidArgument, "not 64 hex digits"));
  if (!bytes) return sqlite3_result_error(ctx, "iotpki_unhex: not 64 hex digits", -1);
  sqlite3_result_blob(ctx, bytes->data(), static_cast<int>(bytes->size()), SQLITE_TRANSIENT);
}

Result<void> RegisterUnhex(Connection& conn) {
  int rc = sqlite3_create_function_v2(conn.handle(), "iotpki_unhex", 1,
                                      SQLITE_UTF8 | SQLITE_DETERMINISTIC | SQLITE_DIRECTONLY,
                                      nullptr, Unhex, nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK)
    return Fail(sqlite::SqliteError(rc, conn.handle(), "registering iotpki_unhex"));
  return {};
}

// Every row's references resolve (the migration ran with enforcement off).
Result<void> CheckForeignKeys(Connection& conn) {
  IOTPKI_TRY(auto stmt, conn.Prepare("PRAGMA foreign_key_check"));
  IOTPKI_TRY(bool row, stmt->Step());
  if (row) {
    return Fail(Code::kDataLoss, "a row references a missing one",
                "foreign_key_check: table " + stmt->Text(0) + " row " +
                    std::to_string(stmt->Int64(1)) + " references " + stmt->Text(2));
  }
  return {};
}

// Each pending migration in a transaction of its own, recorded in schema_migrations.
Result<void> ApplyMigrations(Connection& conn, int64_t now) {
  for (const Migration& m : kMigrations) {
    IOTPKI_TRY(auto tx, Transaction::Begin(conn));
    IOTPKI_TRY(int version, sql::CurrentSchemaVersion(conn));
    IOTPKI_CHECK(sql::RefuseNewerSchema(version));
    if (version >= m.version) continue;  // Applied already, perhaps by another process.
    if (version != m.version - 1) {
      return Fail(Code::kDataLoss, "the schema_migrations table has a gap",
                  "at version " + std::to_string(version));
    }
    auto applied = conn.Exec(m.sql);
    if (applied) applied = CheckForeignKeys(conn);
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

}  // namespace

Result<void> Migrate(Connection& conn, int64_t now) {
  // Read-only fast path: an up-to-date database is not written to on open.
  {
    IOTPKI_TRY(auto stmt,
               conn.Prepare("SELECT COUNT(*) FROM sqlite_schema WHERE type = 'table' AND "
                            "name = 'schema_migrations'"));
    IOTPKI_TRY(bool row, stmt->Step());
    if (row && stmt->Int64(0) == 1) {
      stmt->Reset();
      IOTPKI_TRY(int version, sql::CurrentSchemaVersion(conn));
      IOTPKI_CHECK(sql::RefuseNewerSchema(version));
      if (version == kLatestSchemaVersion) return {};
    }
  }
  IOTPKI_CHECK(conn.Exec(kCreateMigrationsTable));
  IOTPKI_CHECK(RegisterUnhex(conn));
  // A table rebuild (migration 3) drops a table other tables reference; SQLite's procedure for it
  // turns enforcement off outside the transaction and checks every reference before the commit.
  IOTPKI_CHECK(conn.Exec("PRAGMA foreign_keys = OFF"));
  auto migrated = ApplyMigrations(conn, now);
  auto restored = conn.Exec("PRAGMA foreign_keys = ON");
  IOTPKI_CHECK(migrated);
  return restored;
}

}  // namespace iotpki::store::sqlite