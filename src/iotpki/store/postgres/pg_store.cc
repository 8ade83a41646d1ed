#include "iotpki/store/postgres/pg_store.h"

#include <algorithm>
#include <array>
#include <map>
#include <optional>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <variant>
#include <vector>

#include "iotpki/common/clock.h"
#include "iotpki/store/postgres/pg_db.h"
#include "iotpki/store/postgres/pg_schema.h"

namespace iotpki::store {

using postgres::Connection;

namespace {

// A binary COPY stream (PostgreSQL's "COPY BINARY" file format): header, one tuple per row of
// big-endian length-prefixed fields, trailer.
class CopyStream {
 public:
  // The signature "PGCOPY\n\377\r\n\0", flags 0, no header extension.
  CopyStream()
      : out_{'P', 'G', 'C', 'O', 'P', 'Y', '\n', 0xff, '\r', '\n', 0, 0, 0, 0, 0, 0, 0, 0, 0} {}
  void Row(int fields) { U16(static_cast<uint16_t>(fields)); }
  void Int(int64_t v) {
    U32(8);
    for (int shift = 56; shift >= 0; shift -= 8) out_.push_back(static_cast<uint8_t>(v >> shift));
  }
  void Text(std::string_view s) {
    U32(static_cast<uint32_t>(s.size()));
    out_.insert(out_.end(), s.begin(), s.end());
  }
  void Blob(ByteView b) {
    U32(static_cast<uint32_t>(b.size()));
    out_.insert(out_.end(), b.begin(), b.end());
  }
  void Null() { U32(0xffffffff); }
  ByteView Finish() {
    U16(0xffff);
    return out_;
  }

 private:
  void U16(uint16_t v) {
    out_.push_back(static_cast<uint8_t>(v >> 8));
    out_.push_back(static_cast<uint8_t>(v));
  }
  void U32(uint32_t v) {
    for (int shift = 24; shift >= 0; shift -= 8) out_.push_back(static_cast<uint8_t>(v >> shift));
  }
  Bytes out_;
};

using IdBytes = std::array<uint8_t, 32>;

std::optional<IdBytes> Decode(std::string_view hex) {
  IdBytes out;
  if (!FromHexInto(hex, out)) return std::nullopt;
  return out;
}

// A factory batch as the bulk path loads it: new devices, each certificate of a device that the
// batch inserts before it and that the count tables leave out (an IDevID), and audit rows.
struct BulkBatch {
  std::vector<const Device*> devices;
  std::vector<std::pair<const CertificateRecord*, size_t>> certs;  // with its device's index
  WriteBatch audit;
};

// Whether `batch` has that shape; nullopt sends it down the statement-by-statement path. Keys
// repeated within the batch are left to that path too, which names them.
std::optional<BulkBatch> AsBulk(const WriteBatch& batch, size_t min_devices) {
  BulkBatch bulk;
  std::unordered_map<std::string_view, size_t> device_index;
  std::unordered_set<std::string_view> keys;
  for (const WriteOp& op : batch.ops()) {
    if (const auto* d = std::get_if<InsertDeviceOp>(&op)) {
      if (!device_index.emplace(d->device.device_id, bulk.devices.size()).second) {
        return std::nullopt;
      }
      bulk.devices.push_back(&d->device);
    } else if (const auto* c = std::get_if<InsertCertificateOp>(&op)) {
      const CertificateRecord& cert = c->cert;
      // A working certificate would have to set its device's ldevid_not_after (migration 8).
      if (!cert.device_id || cert.not_after < kNoExpiryUnix ||
          cert.profile == CertProfile::kLDevId) {
        return std::nullopt;
      }
      auto owner = device_index.find(*cert.device_id);
      if (owner == device_index.end()) return std::nullopt;
      if (!keys.insert(cert.key_fingerprint).second) return std::nullopt;
      bulk.certs.emplace_back(&cert, owner->second);
    } else if (const auto* a = std::get_if<AppendAuditOp>(&op)) {
      bulk.audit.AppendAudit(a->event);
    } else {
      return std::nullopt;
    }
  }
  if (bulk.devices.empty() || bulk.devices.size() < min_devices) return std::nullopt;
  return bulk;
}

// Device seqs for `n` new devices, drawn from the identity column's sequence in order.
Result<std::vector<int64_t>> ReserveSeqs(Connection& conn, size_t n) {
  IOTPKI_TRY(auto stmt, conn.Prepare("SELECT nextval(pg_get_serial_sequence('devices', 'seq')) "
                                     "FROM generate_series(1, CAST(?1 AS BIGINT))"));
  stmt->Bind(1, static_cast<int64_t>(n));
  std::vector<int64_t> seqs;
  seqs.reserve(n);
  for (;;) {
    IOTPKI_TRY(bool row, stmt->Step());
    if (!row) break;
    seqs.push_back(stmt->Int64(0));
  }
  std::sort(seqs.begin(), seqs.end());
  if (seqs.size() != n) return Fail(Code::kInternal, "database error", "nextval returned too few");
  return seqs;
}

// Loads the devices, certificates and key claims of `bulk`, and their device counts, inside the
// open write transaction.
Result<void> LoadBulk(Connection& conn, const BulkBatch& bulk, int64_t now) {
  IOTPKI_TRY(std::vector<int64_t> seqs, ReserveSeqs(conn, bulk.devices.size()));
  std::map<std::tuple<std::string_view, std::string_view, std::string_view>, int64_t> counts;
  // (profile, issuer, key origin or ""): issuance_counts on the commit's day.
  std::map<std::tuple<std::string_view, std::string_view, std::string_view>, int64_t> issued;
  {
    CopyStream copy;
    for (size_t i = 0; i < bulk.devices.size(); ++i) {
      const Device& d = *bulk.devices[i];
      auto id = Decode(d.device_id);
      if (!id) return Fail(Code::kInvalidArgument, "device id is not 64 hex digits");
      copy.Row(10);
      copy.Int(seqs[i]);
      copy.Blob(*id);
      copy.Text(d.serial);
      copy.Text(d.model);
      copy.Text(d.batch);
      copy.Text(DeviceStateName(d.state));
      if (d.hardware_fingerprint) {
        copy.Text(*d.hardware_fingerprint);
      } else {
        copy.Null();
      }
      copy.Int(now);
      copy.Int(now);
      copy.Int(now);  // heard_at: its birth certificate (migration 8), recorded now too
      counts[{DeviceStateName(d.state), d.model, d.batch}] += 1;
    }
    IOTPKI_CHECK(
        conn.CopyIn("COPY devices (seq, device_id, serial, model, batch, state, "
                    "hardware_fingerprint, created_at, updated_at, heard_at) FROM STDIN "
                    "(FORMAT binary)",
                    copy.Finish()));
  }
  if (!bulk.certs.empty()) {
    CopyStream certs;
    CopyStream keys;
    for (const auto& [cert, device] : bulk.certs) {
      auto fp = Decode(cert->key_fingerprint);
      if (!fp) return Fail(Code::kInvalidArgument, "key fingerprint is not 64 hex digits");
      certs.Row(12);
      certs.Text(cert->serial);
      certs.Int(seqs[device]);
      certs.Text(CertProfileName(cert->profile));
      certs.Text(cert->issuer);
      certs.Text(cert->subject);
      certs.Int(cert->not_before);
      certs.Int(cert->not_after);
      certs.Blob(*fp);
      certs.Blob(cert->der);
      certs.Text("valid");
      certs.Int(now);
      std::string_view origin;
      if (cert->key_origin) {
        origin = KeyOriginName(*cert->key_origin);
        certs.Text(origin);
      } else {
        certs.Null();
      }
      issued[{CertProfileName(cert->profile), cert->issuer, origin}] += 1;
      keys.Row(4);
      keys.Blob(*fp);
      keys.Int(seqs[device]);
      keys.Text(cert->serial);
      keys.Int(now);
    }
    IOTPKI_CHECK(
        conn.CopyIn("COPY certificates (serial, device_seq, profile, issuer, subject, "
                    "not_before, not_after, key_fingerprint, der, status, created_at, key_origin) "
                    "FROM STDIN (FORMAT binary)",
                    certs.Finish()));
    IOTPKI_CHECK(
        conn.CopyIn("COPY public_keys (key_fingerprint, device_seq, first_serial, "
                    "created_at) FROM STDIN (FORMAT binary)",
                    keys.Finish()));
  }
  for (const auto& [key, n] : counts) {
    const auto& [state, model, batch] = key;
    IOTPKI_CHECK(sql::AddDeviceCount(conn, state, model, batch, n));
  }
  int64_t day = now / 86400 - (now % 86400 < 0 ? 1 : 0);
  for (const auto& [key, n] : issued) {
    const auto& [profile, issuer, origin] = key;
    IOTPKI_CHECK(sql::AddIssuanceCount(conn, day, profile, issuer, origin, n));
  }
  return {};
}

Result<std::unique_ptr<sql::Connection>> OpenConnection(const std::string& url) {
  IOTPKI_TRY(auto conn, Connection::Open(url));
  return std::unique_ptr<sql::Connection>(std::move(conn));
}

}  // namespace

PostgresStore::PostgresStore(const Clock& clock, std::unique_ptr<sql::Pool> pool,
                             const PostgresOptions& options)
    : SqlStore(clock, std::move(pool)), options_(options) {}
PostgresStore::~PostgresStore() = default;

Result<CommitInfo> PostgresStore::CommitOn(sql::Connection& conn, const WriteBatch& batch) {
  std::optional<BulkBatch> bulk;
  if (options_.bulk_min_devices > 0) bulk = AsBulk(batch, options_.bulk_min_devices);
  if (!bulk) return SqlStore::CommitOn(conn, batch);
  auto loaded = [&]() -> Result<CommitInfo> {
    IOTPKI_TRY(auto tx, sql::Transaction::Begin(conn));
    CommitInfo info;
    info.time = clock().NowUnix();
    IOTPKI_CHECK(LoadBulk(static_cast<Connection&>(conn), *bulk, info.time));
    IOTPKI_CHECK(ApplyBatch(conn, bulk->audit, info));
    IOTPKI_CHECK(tx.Commit());
    return info;
  }();
  // A refusal (a serial or key taken) is named by the statement-by-statement path; it also
  // retries what failed for other reasons once, and reports that.
  if (loaded || conn.broken()) return loaded;
  return SqlStore::CommitOn(conn, batch);
}

Result<std::unique_ptr<PostgresStore>> PostgresStore::Open(const std::string& url,
                                                           const Clock& clock,
                                                           const PostgresOptions& options) {
  auto writer = Connection::Open(url);
  if (!writer) return Fail(std::move(writer).error().Context("opening the store"));
  auto migrated = postgres::Migrate(**writer, clock.NowUnix());
  if (!migrated) return Fail(std::move(migrated).error().Context("opening the store"));
  auto pool = std::make_unique<sql::Pool>(
      std::move(*writer), [url] { return OpenConnection(url); },
      [url] { return OpenConnection(url); }, options.max_idle_readers);
  return std::unique_ptr<PostgresStore>(new PostgresStore(clock, std::move(pool), options));
}

Result<std::unique_ptr<Store>> OpenPostgresStore(const std::string& url, const Clock& clock,
                                                 const PostgresOptions& options) {
  IOTPKI_TRY(auto store, PostgresStore::Open(url, clock, options));
  return std::unique_ptr<Store>(std::move(store));
}

}  // namespace iotpki::store
