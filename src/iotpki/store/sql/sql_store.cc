#include "iotpki/store/sql/sql_store.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <limits>
#include <map>
#include <optional>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <variant>

#include "iotpki/common/clock.h"
#include "iotpki/store/audit.h"
#include "iotpki/store/validate.h"

namespace iotpki::store::sql {

namespace {

constexpr std::string_view kDeviceColumns =
    "d.device_id, d.serial, d.model, d.batch, d.state, d.hardware_fingerprint, d.created_at, "
    "d.updated_at";
constexpr int kDeviceColumnCount = 8;

// Read from certificates c LEFT JOIN devices d (kCertsWithDevice): a certificate names its
// device by seq (schema version 4); the API gives the device's id.
constexpr std::string_view kCertColumns =
    "c.serial, d.device_id, c.profile, c.issuer, c.subject, c.not_before, c.not_after, "
    "c.key_fingerprint, c.der, c.status, c.revoked_at, c.revocation_reason, c.created_at, "
    "c.first_used_at, c.key_origin";
constexpr std::string_view kCertsWithDevice =
    " FROM certificates c LEFT JOIN devices d ON d.seq = c.device_seq";

// Device ids and key fingerprints are 64 lowercase hex digits in the API and 32-byte blobs in the
// database. Writes are validated first (validate.cc); for an id a reader was given, nullopt
// means it cannot name any row.
// An id or fingerprint as its 32-byte blob, without a heap allocation (the committing thread
// decodes three for each device of a factory batch). Empty (size 0) for anything but 64 hex
// digits: bound as such it matches no row and fails the tables' length CHECKs.
struct IdBlob {
  std::array<uint8_t, 32> bytes{};
  size_t size = 0;
  ByteView view() const { return ByteView(bytes.data(), size); }
  explicit operator bool() const { return size != 0; }
};
IdBlob IdBytes(std::string_view hex) {
  IdBlob blob;
  if (FromHexInto(hex, blob.bytes)) blob.size = blob.bytes.size();
  return blob;
}

Error Unreadable(std::string_view table, const Error& cause) {
  return Error(Code::kDataLoss, "unreadable row in " + std::string(table), cause.ToString());
}

Result<Device> ReadDevice(const Statement& s) {
  Device d;
  d.device_id = ToHex(s.Blob(0));
  d.serial = s.Text(1);
  d.model = s.Text(2);
  d.batch = s.Text(3);
  auto state = ParseDeviceState(s.Text(4));
  if (!state) return Fail(Unreadable("devices", state.error()));
  d.state = *state;
  d.hardware_fingerprint = s.OptionalText(5);
  d.created_at = s.Int64(6);
  d.updated_at = s.Int64(7);
  return d;
}

Result<CertificateRecord> ReadCertificate(const Statement& s) {
  CertificateRecord c;
  c.serial = s.Text(0);
  if (!s.IsNull(1)) c.device_id = ToHex(s.Blob(1));
  auto profile = ParseCertProfile(s.Text(2));
  if (!profile) return Fail(Unreadable("certificates", profile.error()));
  c.profile = *profile;
  c.issuer = s.Text(3);
  c.subject = s.Text(4);
  c.not_before = s.Int64(5);
  c.not_after = s.Int64(6);
  c.key_fingerprint = ToHex(s.Blob(7));
  c.der = s.Blob(8);
  auto status = ParseCertStatus(s.Text(9));
  if (!status) return Fail(Unreadable("certificates", status.error()));
  c.status = *status;
  c.revoked_at = s.OptionalInt64(10);
  if (auto reason = s.OptionalText(11)) {
    auto parsed = ParseRevocationReason(*reason);
    if (!parsed) return Fail(Unreadable("certificates", parsed.error()));
    c.revocation_reason = *parsed;
  }
  c.created_at = s.Int64(12);
  c.first_used_at = s.OptionalInt64(13);
  if (auto origin = s.OptionalText(14)) {
    auto parsed = ParseKeyOrigin(*origin);
    if (!parsed) return Fail(Unreadable("certificates", parsed.error()));
    c.key_origin = *parsed;
  }
  return c;
}

Result<std::vector<CertificateRecord>> ReadCertificates(Statement& s) {
  std::vector<CertificateRecord> out;
  for (;;) {
    IOTPKI_TRY(bool row, s.Step());
    if (!row) return out;
    IOTPKI_TRY(auto cert, ReadCertificate(s));
    out.push_back(std::move(cert));
  }
}

// Keeps the client-safe message and adds the batch position to the detail for the logs.
Error AtOperation(Error error, size_t index) {
  std::string detail = error.detail();
  if (!detail.empty()) detail += "; ";
  detail += "batch operation " + std::to_string(index + 1);
  return Error(error.code(), error.message(), std::move(detail));
}

// "<clause> AND <clause> ..." for the device columns of a filter; `prefix` names the table
// ("d." for devices, "" for the count tables, which carry the same three columns).
void AddDeviceConditions(const DeviceFilter& f, std::vector<std::string>& conditions, Query& q,
                         std::string_view prefix = "d.") {
  if (f.state) {
    conditions.push_back(std::string(prefix) + "state = ?");
    q.params.emplace_back(std::string(DeviceStateName(*f.state)));
  }
  if (f.model) {
    conditions.push_back(std::string(prefix) + "model = ?");
    q.params.emplace_back(*f.model);
  }
  if (f.batch) {
    conditions.push_back(std::string(prefix) + "batch = ?");
    q.params.emplace_back(*f.batch);
  }
}

std::string JoinConditions(const std::vector<std::string>& conditions) {
  std::string out;
  for (const auto& c : conditions) {
    out += out.empty() ? " WHERE " : " AND ";
    out += c;
  }
  return out;
}

struct Window {
  int64_t from;
  int64_t to;
};

Window ExpiryWindow(int64_t now, std::chrono::seconds within) {
  int64_t w = within.count();
  int64_t to =
      now > std::numeric_limits<int64_t>::max() - w ? std::numeric_limits<int64_t>::max() : now + w;
  return {now, to};
}

// The expiry queries walk certificates_by_expiry in (not_after, serial) order and look each
// device up by primary key; CROSS JOIN pins that join order in SQLite (in PostgreSQL it is an
// ordinary inner join). NOT EXISTS keeps only each device's earliest matching certificate, with
// a covering probe of certificates_by_device.
constexpr std::string_view kExpiringCertConditions =
    "c.status = 'valid' AND c.not_after >= ? AND c.not_after <= ?";
constexpr std::string_view kEarliestPerDevice =
    "NOT EXISTS (SELECT 1 FROM certificates e WHERE e.device_seq = c.device_seq AND "
    "e.status = 'valid' AND e.not_after >= ? AND (e.not_after, e.serial) < (c.not_after, "
    "c.serial))";

bool HasDeviceConditions(const DeviceFilter& f) { return f.state || f.model || f.batch; }

}  // namespace

Result<Query> BuildDeviceListQuery(const DeviceFilter& f, size_t fetch, std::string_view cursor,
                                   int64_t now) {
  Query q;
  std::vector<std::string> conditions;
  if (!f.expiring_within) {
    q.sql = "SELECT " + std::string(kDeviceColumns) + ", d.seq AS device_seq FROM devices d";
    AddDeviceConditions(f, conditions, q);
    if (!cursor.empty()) {
      IOTPKI_TRY(auto c, DecodeDeviceSeqCursor(cursor));
      conditions.push_back("d.seq > ?");
      q.params.emplace_back(c.seq);
    }
    q.sql += JoinConditions(conditions) + " ORDER BY d.seq LIMIT ?";
    q.params.emplace_back(static_cast<int64_t>(fetch));
    return q;
  }
  Window w = ExpiryWindow(now, *f.expiring_within);
  q.sql = "SELECT " + std::string(kDeviceColumns) +
          ", c.serial AS cert_serial, c.not_after AS cert_not_after, d.seq AS device_seq "
          "FROM certificates c CROSS JOIN devices d";
  conditions.emplace_back(kExpiringCertConditions);
  q.params.emplace_back(w.from);
  q.params.emplace_back(w.to);
  if (!cursor.empty()) {
    IOTPKI_TRY(auto c, DecodeExpiringCursor(cursor));
    conditions.push_back("(c.not_after, c.serial) > (?, ?)");
    q.params.emplace_back(c.not_after);
    q.params.emplace_back(std::move(c.cert_serial));
  }
  conditions.push_back("d.seq = c.device_seq");
  AddDeviceConditions(f, conditions, q);
  conditions.emplace_back(kEarliestPerDevice);
  q.params.emplace_back(w.from);
  q.sql += JoinConditions(conditions) + " ORDER BY c.not_after, c.serial LIMIT ?";
  q.params.emplace_back(static_cast<int64_t>(fetch));
  return q;
}

namespace {

// The inventory counts (migration 2) cover the valid device certificates with a not_after below
// this; IDevIDs (not_after = kNoExpiryUnix) are left out, which keeps them off the
// manufacturing path. A window reaching it is counted from the certificates themselves.
constexpr int64_t kCountedExpiryLimit = kNoExpiryUnix;
constexpr int64_t kDaySeconds = 86400;
// expiry_counts.prev_day of a certificate without a predecessor: below every real day.
constexpr int64_t kNoPrevDay = -(int64_t{1} << 62);

// UTC day number, rounding down also before 1970 (as the SQL of migration 2).
int64_t DayOf(int64_t t) { return t / kDaySeconds - (t % kDaySeconds < 0 ? 1 : 0); }
int64_t PrevDayOf(std::optional<int64_t> prev) { return prev ? DayOf(*prev) : kNoPrevDay; }

// The count that walks the expiry index, for windows that reach kCountedExpiryLimit (so never
// in practice: they end after the year 9999).
Query BuildWalkingCountQuery(const DeviceFilter& f, Window w) {
  Query q;
  std::vector<std::string> conditions;
  conditions.emplace_back(kExpiringCertConditions);
  q.params.emplace_back(w.from);
  q.params.emplace_back(w.to);
  if (HasDeviceConditions(f)) {
    q.sql = "SELECT COUNT(*) FROM certificates c CROSS JOIN devices d";
    conditions.push_back("d.seq = c.device_seq");
    AddDeviceConditions(f, conditions, q);
  } else {
    // Device rows are not needed: the foreign key guarantees every device_seq exists, and the
    // covering index answers the whole count.
    q.sql = "SELECT COUNT(*) FROM certificates c";
    conditions.push_back("c.device_seq IS NOT NULL");
  }
  conditions.emplace_back(kEarliestPerDevice);
  q.params.emplace_back(w.from);
  q.sql += JoinConditions(conditions);
  return q;
}

// Counts answered from the maintained tables, never from devices or certificates. Without a
// window: a sum over device_counts. With a window [from, to]: the whole UTC days strictly inside
// it are summed from expiry_counts; the rows of the two partial days at its ends are counted in
// expiry_certs (a primary-key range each); and the certificates of the whole days whose
// predecessor expires on the first day, before or after `from`, are counted through
// expiry_certs_by_prev. Every part is exact, so the sum is.
// SQLite is told which index serves the last part; PostgreSQL's planner finds it by itself.
Query BuildCountQuery(const DeviceFilter& f, int64_t now, const Dialect& dialect) {
  Query q;
  std::vector<std::string> conditions;
  if (!f.expiring_within) {
    q.sql = "SELECT CAST(COALESCE(SUM(n), 0) AS BIGINT) FROM device_counts";
    AddDeviceConditions(f, conditions, q, "");
    q.sql += JoinConditions(conditions);
    return q;
  }
  Window w = ExpiryWindow(now, *f.expiring_within);
  if (w.to >= kCountedExpiryLimit) return BuildWalkingCountQuery(f, w);
  // One part: its conditions after `head`, then the device filter.
  auto part = [&](std::string head, std::vector<int64_t> params) {
    std::vector<std::string> device_conditions;
    for (int64_t p : params) q.params.emplace_back(p);
    AddDeviceConditions(f, device_conditions, q, "");
    for (const auto& c : device_conditions) head += " AND " + c;
    return "(" + head + ")";
  };
  constexpr std::string_view kRows =
      "SELECT COUNT(*) FROM expiry_certs WHERE not_after >= ? AND not_after <= ? AND "
      "(prev_not_after IS NULL OR prev_not_after < ?)";
  int64_t first_day = DayOf(w.from);
  int64_t last_day = DayOf(w.to);
  if (first_day == last_day) {
    q.sql = "SELECT " + part(std::string(kRows), {w.from, w.to, w.from});
    return q;
  }
  int64_t inner_from = (first_day + 1) * kDaySeconds;  // the first whole day
  int64_t inner_to = last_day * kDaySeconds;           // the end of the last whole day
  // Statements in sequence: the parameters are appended in the order of the text.
  q.sql = "SELECT " + part(
                          "SELECT CAST(COALESCE(SUM(n), 0) AS BIGINT) FROM expiry_counts "
                          "WHERE day > ? AND "
                          "day < ? AND prev_day < ?",
                          {first_day, last_day, first_day});
  q.sql += " + " + part(std::string(kRows), {w.from, inner_from - 1, w.from});
  q.sql += " + " + part(std::string(kRows), {inner_to, w.to, w.from});
  q.sql += " + " + part(std::string("SELECT COUNT(*) FROM expiry_certs") +
                            (dialect.index_hints ? " INDEXED BY expiry_certs_by_prev" : "") +
                            " WHERE prev_not_after >= ? AND prev_not_after < ? AND "
                            "not_after >= ? AND not_after < ?",
                        {first_day * kDaySeconds, w.from, inner_from, inner_to});
  return q;
}

// The certificates carrying key `fp` among those of `owner` (public_keys' device_seq; nullopt
// for the CA side), through certificates_by_device. Two texts rather than `device_seq IS ?`,
// which PostgreSQL cannot answer from an index.
Query CertificatesOfKeyQuery(std::optional<int64_t> owner, ByteView fp) {
  Query q;
  q.sql = "SELECT " + std::string(kCertColumns) + std::string(kCertsWithDevice) +
          (owner ? " WHERE c.device_seq = ?" : " WHERE c.device_seq IS NULL") +
          " AND c.key_fingerprint = ? ORDER BY c.serial";
  if (owner) q.params.emplace_back(*owner);
  q.params.emplace_back(Bytes(fp.begin(), fp.end()));
  return q;
}

}  // namespace

Result<void> AddDeviceCount(Connection& conn, std::string_view state, std::string_view model,
                            std::string_view batch, int64_t delta) {
  if (delta == 0) return {};
  IOTPKI_TRY(auto up, conn.Prepare("INSERT INTO device_counts (state, model, batch, n) "
                                   "VALUES (?1, ?2, ?3, ?4) ON CONFLICT (state, model, "
                                   "batch) DO UPDATE SET n = device_counts.n + excluded.n"));
  up->Bind(1, state);
  up->Bind(2, model);
  up->Bind(3, batch);
  up->Bind(4, delta);
  IOTPKI_CHECK(up->Run());
  if (delta > 0) return {};
  IOTPKI_TRY(auto del, conn.Prepare("DELETE FROM device_counts WHERE state = ?1 AND "
                                    "model = ?2 AND batch = ?3 AND n = 0"));
  del->Bind(1, state);
  del->Bind(2, model);
  del->Bind(3, batch);
  return del->Run();
}

Result<void> AddIssuanceCount(Connection& conn, int64_t day, std::string_view profile,
                              std::string_view issuer, std::string_view key_origin, int64_t n) {
  IOTPKI_TRY(auto up, conn.Prepare("INSERT INTO issuance_counts (day, profile, issuer, key_origin, "
                                   "n) VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (day, profile, "
                                   "issuer, key_origin) DO UPDATE SET n = issuance_counts.n + "
                                   "excluded.n"));
  up->Bind(1, day);
  up->Bind(2, profile);
  up->Bind(3, issuer);
  up->Bind(4, key_origin);
  up->Bind(5, n);
  return up->Run();
}

namespace {

// Applies the operations of one batch inside an open transaction.
class BatchWriter {
 public:
  BatchWriter(Connection& conn, int64_t now, CommitInfo& info)
      : conn_(conn), now_(now), info_(info) {}

  Result<void> Apply(const WriteOp& op) {
    return std::visit([this](const auto& o) { return Do(o); }, op);
  }

  // Writes the batch's net changes to the count tables; call once, after the last Apply. The
  // deltas are summed in memory first, so a group of thousands of devices of one batch touches
  // one device_counts row, not one per device.
  Result<void> Finish() {
    for (const auto& [key, delta] : device_deltas_) {
      const auto& [state, model, batch] = key;
      IOTPKI_CHECK(AddDeviceCount(conn_, state, model, batch, delta));
    }
    for (const auto& [key, n] : issuance_deltas_) {
      const auto& [profile, issuer, origin] = key;
      IOTPKI_CHECK(AddIssuanceCount(conn_, DayOf(now_), profile, issuer, origin, n));
    }
    for (const auto& [key, delta] : expiry_deltas_) {
      if (delta == 0) continue;
      const auto& [day, prev_day, state, model, batch] = key;
      IOTPKI_TRY(auto up,
                 conn_.Prepare("INSERT INTO expiry_counts (day, prev_day, state, model, batch, n) "
                               "VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (day, prev_day, "
                               "state, model, batch) DO UPDATE SET n = expiry_counts.n + "
                               "excluded.n"));
      up->Bind(1, day);
      up->Bind(2, prev_day);
      up->Bind(3, std::string_view(state));
      up->Bind(4, std::string_view(model));
      up->Bind(5, std::string_view(batch));
      up->Bind(6, delta);
      IOTPKI_CHECK(up->Run());
      if (delta > 0) continue;
      IOTPKI_TRY(auto del, conn_.Prepare("DELETE FROM expiry_counts WHERE day = ?1 AND "
                                         "prev_day = ?2 AND state = ?3 AND model = ?4 AND "
                                         "batch = ?5 AND n = 0"));
      del->Bind(1, day);
      del->Bind(2, prev_day);
      del->Bind(3, std::string_view(state));
      del->Bind(4, std::string_view(model));
      del->Bind(5, std::string_view(batch));
      IOTPKI_CHECK(del->Run());
    }
    return {};
  }

 private:
  // (state, model, batch): the device columns that the count tables carry.
  using DeviceKey = std::tuple<std::string, std::string, std::string>;
  // (day, prev_day, state, model, batch): the key of expiry_counts.
  using ExpiryKey = std::tuple<int64_t, int64_t, std::string, std::string, std::string>;

  // A valid device certificate with a finite not_after, as expiry_certs holds it.
  struct CountedCert {
    int64_t not_after;
    std::string serial;
  };

  struct AuditHead {
    int64_t seq;
    Bytes hash;
  };

  // A certificate's device: its seq, its count-table columns and its stranding columns.
  struct OwnerRow {
    int64_t seq;
    DeviceKey device;
    int64_t heard_at;
    std::optional<int64_t> ldevid_not_after;
  };

  // ON CONFLICT DO NOTHING rather than a failing insert: PostgreSQL aborts a transaction at its
  // first error, and the probes below must still run to name the key that is taken.
  Result<void> Do(const InsertDeviceOp& op) {
    const Device& d = op.device;
    IOTPKI_TRY(auto stmt,
               conn_.Prepare("INSERT INTO devices (device_id, serial, model, batch, state, "
                             "hardware_fingerprint, created_at, updated_at, heard_at) "
                             "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?7) "
                             "ON CONFLICT DO NOTHING"));
    IdBlob id = IdBytes(d.device_id);
    stmt->Bind(1, id.view());
    stmt->Bind(2, std::string_view(d.serial));
    stmt->Bind(3, std::string_view(d.model));
    stmt->Bind(4, std::string_view(d.batch));
    stmt->Bind(5, DeviceStateName(d.state));
    stmt->Bind(6, d.hardware_fingerprint);
    stmt->Bind(7, now_);
    IOTPKI_CHECK(stmt->Run());
    if (stmt->Changes() == 1) {
      device_deltas_[DeviceKey(DeviceStateName(d.state), d.model, d.batch)] += 1;
      return {};
    }
    // Which key? Ask the data rather than parse the engine's message.
    IOTPKI_TRY(bool id_taken, Exists("SELECT 1 FROM devices WHERE device_id = ?1", id.view()));
    if (id_taken) return Fail(Code::kAlreadyExists, "device " + d.device_id + " already exists");
    return Fail(Code::kAlreadyExists, "a device with serial '" + d.serial + "' already exists");
  }

  Result<void> Do(const UpdateDeviceStateOp& op) {
    // A state change is contact: heard_at (migration 8) never goes back, whatever the clock does.
    IOTPKI_TRY(auto stmt,
               conn_.Prepare("UPDATE devices SET state = ?1, updated_at = ?2, heard_at = CASE "
                             "WHEN heard_at > ?2 THEN heard_at ELSE ?2 END "
                             "WHERE device_id = ?3 AND state = ?4"));
    stmt->Bind(1, DeviceStateName(op.to));
    stmt->Bind(2, now_);
    IdBlob id = IdBytes(op.device_id);
    stmt->Bind(3, id.view());
    stmt->Bind(4, DeviceStateName(op.from));
    IOTPKI_CHECK(stmt->Run());
    if (stmt->Changes() == 1) return op.from == op.to ? Result<void>() : MoveCounts(op, id.view());
    IOTPKI_TRY(auto probe, conn_.Prepare("SELECT state FROM devices WHERE device_id = ?1"));
    probe->Bind(1, id.view());
    IOTPKI_TRY(bool found, probe->Step());
    if (!found) return Fail(Code::kNotFound, "device " + op.device_id + " not found");
    return Fail(Code::kAborted, "device " + op.device_id + " is " + probe->Text(0) + ", not " +
                                    std::string(DeviceStateName(op.from)));
  }

  Result<void> Do(const InsertCertificateOp& op) {
    const CertificateRecord& c = op.cert;
    // The device's seq, and what the count tables carry about it, in one probe of the row the
    // batch has usually just inserted.
    std::optional<OwnerRow> owner;
    if (c.device_id) {
      IOTPKI_TRY(auto probe, conn_.Prepare("SELECT seq, state, model, batch, heard_at, "
                                           "ldevid_not_after FROM devices WHERE device_id = ?1"));
      probe->Bind(1, IdBytes(*c.device_id).view());
      IOTPKI_TRY(bool found, probe->Step());
      if (!found) {
        return Fail(Code::kNotFound,
                    "certificate " + c.serial + " names unknown device " + *c.device_id);
      }
      owner = OwnerRow{probe->Int64(0), DeviceKey(probe->Text(1), probe->Text(2), probe->Text(3)),
                       probe->Int64(4), probe->OptionalInt64(5)};
    }
    std::optional<int64_t> owner_seq;
    if (owner) owner_seq = owner->seq;
    IdBlob fp = IdBytes(c.key_fingerprint);
    IOTPKI_TRY(auto stmt,
               conn_.Prepare("INSERT INTO certificates (serial, device_seq, profile, issuer, "
                             "subject, not_before, not_after, key_fingerprint, der, status, "
                             "revoked_at, revocation_reason, created_at, key_origin) VALUES (?1, "
                             "?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'valid', NULL, NULL, ?10, ?11) "
                             "ON CONFLICT DO NOTHING"));
    stmt->Bind(1, std::string_view(c.serial));
    stmt->Bind(2, owner_seq);
    stmt->Bind(3, CertProfileName(c.profile));
    stmt->Bind(4, std::string_view(c.issuer));
    stmt->Bind(5, std::string_view(c.subject));
    stmt->Bind(6, c.not_before);
    stmt->Bind(7, c.not_after);
    stmt->Bind(8, fp.view());
    stmt->Bind(9, ByteView(c.der));
    stmt->Bind(10, now_);
    std::optional<std::string_view> origin;
    if (c.key_origin) origin = KeyOriginName(*c.key_origin);
    if (origin) {
      stmt->Bind(11, *origin);
    } else {
      stmt->BindNull(11);
    }
    IOTPKI_CHECK(stmt->Run());
    if (stmt->Changes() != 1) {
      return Fail(Code::kAlreadyExists, "certificate serial " + c.serial + " already exists");
    }
    IOTPKI_CHECK(ClaimKey(c, fp.view(), owner_seq));
    issuance_deltas_[IssuanceKey(CertProfileName(c.profile), c.issuer,
                                 origin.value_or(std::string_view()))] += 1;
    if (owner) IOTPKI_CHECK(NoteIssued(*owner, c));
    if (!owner || c.not_after >= kCountedExpiryLimit) return {};
    return CountCertificate(*owner, CountedCert{c.not_after, c.serial});
  }

  // A certificate recorded now for `owner`: its device was heard from now, and a working
  // certificate may be its newest (migration 8's columns). A factory batch's birth certificate,
  // recorded with its device, changes neither, and costs no write.
  Result<void> NoteIssued(const OwnerRow& owner, const CertificateRecord& c) {
    bool newer = c.profile == CertProfile::kLDevId &&
                 (!owner.ldevid_not_after || c.not_after > *owner.ldevid_not_after);
    if (owner.heard_at >= now_ && !newer) return {};
    IOTPKI_TRY(auto stmt, conn_.Prepare("UPDATE devices SET heard_at = CASE WHEN heard_at > ?1 "
                                        "THEN heard_at ELSE ?1 END, ldevid_not_after = ?2 "
                                        "WHERE seq = ?3"));
    stmt->Bind(1, now_);
    stmt->Bind(2, newer ? std::optional<int64_t>(c.not_after) : owner.ldevid_not_after);
    stmt->Bind(3, owner.seq);
    return stmt->Run();
  }

  // The notAfter of the device's newest valid working certificate, after a working certificate
  // expiring at `revoked_not_after` was revoked. Only when that one was the newest: a rotation
  // revokes the superseded certificate, which costs no write here.
  Result<void> RefreshNewestLdevid(int64_t device_seq, int64_t revoked_not_after) {
    IOTPKI_TRY(auto stmt,
               conn_.Prepare("UPDATE devices SET ldevid_not_after = (SELECT MAX(not_after) FROM "
                             "certificates WHERE device_seq = ?1 AND status = 'valid' AND "
                             "profile = 'ldevid') WHERE seq = ?1 AND ldevid_not_after = ?2"));
    stmt->Bind(1, device_seq);
    stmt->Bind(2, revoked_not_after);
    return stmt->Run();
  }

  // The device's state changed from op.from to op.to: its device_counts row and every
  // expiry_certs row of its certificates follow.
  Result<void> MoveCounts(const UpdateDeviceStateOp& op, ByteView id) {
    IOTPKI_TRY(auto probe,
               conn_.Prepare("SELECT seq, model, batch FROM devices WHERE device_id = ?1"));
    probe->Bind(1, id);
    IOTPKI_TRY(bool found, probe->Step());
    if (!found) return Fail(Code::kInternal, "device " + op.device_id + " vanished");
    int64_t seq = probe->Int64(0);
    std::string model = probe->Text(1);
    std::string batch = probe->Text(2);
    std::string from(DeviceStateName(op.from));
    std::string to(DeviceStateName(op.to));
    device_deltas_[DeviceKey(from, model, batch)] -= 1;
    device_deltas_[DeviceKey(to, model, batch)] += 1;
    std::vector<std::pair<CountedCert, std::optional<int64_t>>> rows;
    {
      IOTPKI_TRY(auto certs,
                 conn_.Prepare("SELECT e.not_after, e.serial, e.prev_not_after FROM certificates c "
                               "CROSS JOIN expiry_certs e WHERE c.device_seq = ?1 AND "
                               "c.status = 'valid' AND c.not_after < ?2 AND "
                               "e.not_after = c.not_after AND e.serial = c.serial"));
      certs->Bind(1, seq);
      certs->Bind(2, kCountedExpiryLimit);
      for (;;) {
        IOTPKI_TRY(bool row, certs->Step());
        if (!row) break;
        rows.emplace_back(CountedCert{certs->Int64(0), certs->Text(1)}, certs->OptionalInt64(2));
      }
    }
    for (const auto& [cert, prev] : rows) {
      IOTPKI_TRY(auto update, conn_.Prepare("UPDATE expiry_certs SET state = ?1 WHERE "
                                            "not_after = ?2 AND serial = ?3"));
      update->Bind(1, std::string_view(to));
      update->Bind(2, cert.not_after);
      update->Bind(3, std::string_view(cert.serial));
      IOTPKI_CHECK(update->Run());
      int64_t day = DayOf(cert.not_after);
      int64_t prev_day = PrevDayOf(prev);
      expiry_deltas_[ExpiryKey(day, prev_day, from, model, batch)] -= 1;
      expiry_deltas_[ExpiryKey(day, prev_day, to, model, batch)] += 1;
    }
    return {};
  }

  // The device's valid certificate ordered just before or just after `cert` by (not_after,
  // serial), among those expiry_certs holds.
  Result<std::optional<CountedCert>> Neighbour(int64_t device_seq, const CountedCert& cert,
                                               bool after) {
    IOTPKI_TRY(auto stmt,
               conn_.Prepare(
                   after ? "SELECT not_after, serial FROM certificates WHERE device_seq = ?1 AND "
                           "status = 'valid' AND (not_after, serial) > (?2, ?3) AND "
                           "not_after < ?4 ORDER BY not_after, serial LIMIT 1"
                         : "SELECT not_after, serial FROM certificates WHERE device_seq = ?1 AND "
                           "status = 'valid' AND (not_after, serial) < (?2, ?3) AND "
                           "not_after < ?4 ORDER BY not_after DESC, serial DESC LIMIT 1"));
    stmt->Bind(1, device_seq);
    stmt->Bind(2, cert.not_after);
    stmt->Bind(3, std::string_view(cert.serial));
    stmt->Bind(4, kCountedExpiryLimit);
    IOTPKI_TRY(bool row, stmt->Step());
    if (!row) return std::optional<CountedCert>();
    return std::optional<CountedCert>(CountedCert{stmt->Int64(0), stmt->Text(1)});
  }

  struct CountedRow {
    std::optional<int64_t> prev_not_after;
    DeviceKey device;
  };

  Result<CountedRow> ReadCountedRow(const CountedCert& cert) {
    IOTPKI_TRY(auto stmt, conn_.Prepare("SELECT prev_not_after, state, model, batch FROM "
                                        "expiry_certs WHERE not_after = ?1 AND serial = ?2"));
    stmt->Bind(1, cert.not_after);
    stmt->Bind(2, std::string_view(cert.serial));
    IOTPKI_TRY(bool row, stmt->Step());
    if (!row) {
      return Fail(Code::kDataLoss, "the inventory counts miss a certificate",
                  "no expiry_certs row for certificate " + cert.serial);
    }
    return CountedRow{stmt->OptionalInt64(0),
                      DeviceKey(stmt->Text(1), stmt->Text(2), stmt->Text(3))};
  }

  // Gives `cert`'s expiry_certs row a new predecessor time.
  Result<void> SetPrev(const CountedCert& cert, std::optional<int64_t> prev) {
    IOTPKI_TRY(CountedRow old, ReadCountedRow(cert));
    IOTPKI_TRY(auto stmt, conn_.Prepare("UPDATE expiry_certs SET prev_not_after = ?1 WHERE "
                                        "not_after = ?2 AND serial = ?3"));
    stmt->Bind(1, prev);
    stmt->Bind(2, cert.not_after);
    stmt->Bind(3, std::string_view(cert.serial));
    IOTPKI_CHECK(stmt->Run());
    const auto& [state, model, batch] = old.device;
    int64_t day = DayOf(cert.not_after);
    expiry_deltas_[ExpiryKey(day, PrevDayOf(old.prev_not_after), state, model, batch)] -= 1;
    expiry_deltas_[ExpiryKey(day, PrevDayOf(prev), state, model, batch)] += 1;
    return {};
  }

  // A new valid certificate of `owner`: its expiry_certs row, and the next certificate of the
  // device (if the new one expires first, as when a batch inserts them out of order) now follows
  // it.
  Result<void> CountCertificate(const OwnerRow& owner, const CountedCert& cert) {
    const DeviceKey& device = owner.device;
    IOTPKI_TRY(auto before, Neighbour(owner.seq, cert, /*after=*/false));
    std::optional<int64_t> prev;
    if (before) prev = before->not_after;
    IOTPKI_TRY(auto insert, conn_.Prepare("INSERT INTO expiry_certs (not_after, serial, "
                                          "prev_not_after, state, model, batch) VALUES (?1, ?2, "
                                          "?3, ?4, ?5, ?6)"));
    const auto& [state, model, batch] = device;
    insert->Bind(1, cert.not_after);
    insert->Bind(2, std::string_view(cert.serial));
    insert->Bind(3, prev);
    insert->Bind(4, std::string_view(state));
    insert->Bind(5, std::string_view(model));
    insert->Bind(6, std::string_view(batch));
    IOTPKI_CHECK(insert->Run());
    expiry_deltas_[ExpiryKey(DayOf(cert.not_after), PrevDayOf(prev), state, model, batch)] += 1;
    IOTPKI_TRY(auto next, Neighbour(owner.seq, cert, /*after=*/true));
    if (next) IOTPKI_CHECK(SetPrev(*next, cert.not_after));
    return {};
  }

  // `cert` is revoked: its row goes, and the next certificate of the device follows the one
  // before it.
  Result<void> UncountCertificate(int64_t device_seq, const CountedCert& cert) {
    IOTPKI_TRY(CountedRow old, ReadCountedRow(cert));
    IOTPKI_TRY(auto del, conn_.Prepare("DELETE FROM expiry_certs WHERE not_after = ?1 AND "
                                       "serial = ?2"));
    del->Bind(1, cert.not_after);
    del->Bind(2, std::string_view(cert.serial));
    IOTPKI_CHECK(del->Run());
    const auto& [state, model, batch] = old.device;
    expiry_deltas_[ExpiryKey(DayOf(cert.not_after), PrevDayOf(old.prev_not_after), state, model,
                             batch)] -= 1;
    IOTPKI_TRY(auto next, Neighbour(device_seq, cert, /*after=*/true));
    if (next) IOTPKI_CHECK(SetPrev(*next, old.prev_not_after));
    return {};
  }

  // A public key belongs to one device (renewals may reuse it) or to the CA side; any other
  // reuse is the factory RNG failure DESIGN.md warns about, or a stolen key.
  // The insert is the probe: a new key (the rule) costs one B-tree descent.
  Result<void> ClaimKey(const CertificateRecord& c, ByteView fp, std::optional<int64_t> seq) {
    IOTPKI_TRY(auto insert,
               conn_.Prepare("INSERT INTO public_keys (key_fingerprint, device_seq, first_serial, "
                             "created_at) VALUES (?1, ?2, ?3, ?4) "
                             "ON CONFLICT (key_fingerprint) DO NOTHING"));
    insert->Bind(1, fp);
    insert->Bind(2, seq);
    insert->Bind(3, std::string_view(c.serial));
    insert->Bind(4, now_);
    IOTPKI_CHECK(insert->Run());
    if (insert->Changes() == 1) return {};
    IOTPKI_TRY(auto probe, conn_.Prepare("SELECT p.device_seq, p.first_serial, d.device_id FROM "
                                         "public_keys p LEFT JOIN devices d ON d.seq = "
                                         "p.device_seq WHERE p.key_fingerprint = ?1"));
    probe->Bind(1, fp);
    IOTPKI_TRY(bool known, probe->Step());
    if (known) {
      if (probe->OptionalInt64(0) == seq) return {};
      std::optional<std::string> owner;
      if (!probe->IsNull(2)) owner = ToHex(probe->Blob(2));
      std::string detail = "key " + c.key_fingerprint + " first certified in " + probe->Text(1) +
                           " for " + (owner ? "device " + *owner : "the CA side") +
                           "; refused for certificate " + c.serial;
      return Fail(Code::kAlreadyExists,
                  owner ? (c.device_id ? "public key is already in use by another device"
                                       : "public key is already in use by a device")
                        : "public key is already in use by a CA or server certificate",
                  std::move(detail));
    }
    return Fail(Code::kInternal, "public key claim neither inserted nor found",
                "key " + c.key_fingerprint);
  }

  Result<void> Do(const MarkCertificateUsedOp& op) {
    IOTPKI_TRY(auto stmt, conn_.Prepare("UPDATE certificates SET first_used_at = ?1 "
                                        "WHERE serial = ?2 AND first_used_at IS NULL"));
    stmt->Bind(1, now_);
    stmt->Bind(2, std::string_view(op.serial));
    IOTPKI_CHECK(stmt->Run());
    if (stmt->Changes() == 1) {
      // A first use is contact (migration 8's heard_at).
      IOTPKI_TRY(auto heard,
                 conn_.Prepare("UPDATE devices SET heard_at = ?1 WHERE seq = (SELECT device_seq "
                               "FROM certificates WHERE serial = ?2) AND heard_at < ?1"));
      heard->Bind(1, now_);
      heard->Bind(2, std::string_view(op.serial));
      return heard->Run();
    }
    IOTPKI_TRY(bool exists,
               Exists("SELECT 1 FROM certificates WHERE serial = ?1", std::string_view(op.serial)));
    if (!exists) return Fail(Code::kNotFound, "certificate " + op.serial + " not found");
    return {};
  }

  Result<void> Do(const RevokeCertificateOp& op) {
    IOTPKI_TRY(auto stmt,
               conn_.Prepare("UPDATE certificates SET status = 'revoked', revoked_at = ?1, "
                             "revocation_reason = ?2 WHERE serial = ?3 AND status = 'valid'"));
    stmt->Bind(1, op.revoked_at > 0 ? op.revoked_at : now_);
    stmt->Bind(2, RevocationReasonName(op.reason));
    stmt->Bind(3, std::string_view(op.serial));
    IOTPKI_CHECK(stmt->Run());
    if (stmt->Changes() == 1) {
      std::optional<int64_t> device_seq;
      int64_t not_after = 0;
      bool ldevid = false;
      {
        IOTPKI_TRY(auto cert, conn_.Prepare("SELECT device_seq, not_after, profile FROM "
                                            "certificates WHERE serial = ?1"));
        cert->Bind(1, std::string_view(op.serial));
        IOTPKI_TRY(bool row, cert->Step());
        if (!row) return {};
        device_seq = cert->OptionalInt64(0);
        not_after = cert->Int64(1);
        ldevid = cert->Text(2) == CertProfileName(CertProfile::kLDevId);
      }
      if (!device_seq) return {};
      if (ldevid) IOTPKI_CHECK(RefreshNewestLdevid(*device_seq, not_after));
      if (not_after >= kCountedExpiryLimit) return {};
      return UncountCertificate(*device_seq, CountedCert{not_after, op.serial});
    }
    IOTPKI_TRY(bool exists,
               Exists("SELECT 1 FROM certificates WHERE serial = ?1", std::string_view(op.serial)));
    if (!exists) return Fail(Code::kNotFound, "certificate " + op.serial + " not found");
    return Fail(Code::kAborted, "certificate " + op.serial + " is already revoked");
  }

  Result<void> Do(const AppendAuditOp& op) {
    if (!head_) {
      // Read under the kWrite transaction's lock (SQLite's BEGIN IMMEDIATE, PostgreSQL's
      // advisory lock), so no other writer, in this process or another, can append between this
      // read and our insert. seq is the primary key: a second writer that somehow computed the
      // same seq would fail rather than fork the chain.
      IOTPKI_TRY(auto stmt,
                 conn_.Prepare("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1"));
      IOTPKI_TRY(bool row, stmt->Step());
      head_ =
          row ? AuditHead{stmt->Int64(0), stmt->Blob(1)} : AuditHead{0, Bytes(kAuditHashSize, 0)};
    }
    int64_t seq = head_->seq + 1;
    Bytes hash = ComputeAuditHash(head_->hash, seq, now_, op.event);
    IOTPKI_TRY(auto stmt,
               conn_.Prepare("INSERT INTO audit_log (seq, time, actor, action, subject, details, "
                             "prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"));
    stmt->Bind(1, seq);
    stmt->Bind(2, now_);
    stmt->Bind(3, std::string_view(op.event.actor));
    stmt->Bind(4, std::string_view(op.event.action));
    stmt->Bind(5, std::string_view(op.event.subject));
    stmt->Bind(6, std::string_view(op.event.details));
    stmt->Bind(7, ByteView(head_->hash));
    stmt->Bind(8, ByteView(hash));
    IOTPKI_CHECK(stmt->Run());
    head_ = AuditHead{seq, std::move(hash)};
    info_.audit_seqs.push_back(seq);
    return {};
  }

  // The primary key (device_id, timestamp) makes the check and the insert one step, under the
  // writer's lock: of two batches with the same token, the second to commit fails.
  Result<void> Do(const RecordTokenOp& op) {
    IOTPKI_TRY(auto stmt,
               conn_.Prepare("INSERT INTO bootstrap_replay (device_id, timestamp, seen_at) "
                             "VALUES (?1, ?2, ?3) ON CONFLICT (device_id, timestamp) DO NOTHING"));
    stmt->Bind(1, std::string_view(op.device_id));
    stmt->Bind(2, op.timestamp);
    stmt->Bind(3, now_);
    IOTPKI_CHECK(stmt->Run());
    if (stmt->Changes() == 1) return {};
    return Fail(Code::kAlreadyExists, "bootstrap token already used",
                "replay of token (" + op.device_id + ", " + std::to_string(op.timestamp) + ")");
  }

  Result<void> Do(const InsertOperatorCertificateOp& op) {
    const OperatorCertificate& c = op.cert;
    IOTPKI_TRY(auto stmt,
               conn_.Prepare("INSERT INTO operator_certificates (serial, name, role, not_after, "
                             "status, revoked_at, created_at) VALUES (?1, ?2, ?3, ?4, 'valid', "
                             "NULL, ?5) ON CONFLICT DO NOTHING"));
    stmt->Bind(1, std::string_view(c.serial));
    stmt->Bind(2, std::string_view(c.name));
    stmt->Bind(3, std::string_view(c.role));
    stmt->Bind(4, c.not_after);
    stmt->Bind(5, now_);
    IOTPKI_CHECK(stmt->Run());
    if (stmt->Changes() == 1) return {};
    return Fail(Code::kAlreadyExists, "operator certificate " + c.serial + " already exists");
  }

  Result<void> Do(const RevokeOperatorCertificateOp& op) {
    IOTPKI_TRY(auto stmt, conn_.Prepare("UPDATE operator_certificates SET status = 'revoked', "
                                        "revoked_at = ?1 WHERE serial = ?2 AND status = 'valid'"));
    stmt->Bind(1, now_);
    stmt->Bind(2, std::string_view(op.serial));
    IOTPKI_CHECK(stmt->Run());
    if (stmt->Changes() == 1) return {};
    IOTPKI_TRY(bool exists, Exists("SELECT 1 FROM operator_certificates WHERE serial = ?1",
                                   std::string_view(op.serial)));
    if (!exists) return Fail(Code::kNotFound, "no operator certificate with serial " + op.serial);
    return Fail(Code::kAborted, "operator certificate " + op.serial + " is already revoked");
  }

  Result<void> Do(const UpdateJobOp& op) { return ApplyUpdateJob(conn_, now_, op); }
  Result<void> Do(const UpdateCampaignOp& op) { return ApplyUpdateCampaign(conn_, now_, op); }

  template <class Key>
  Result<bool> Exists(std::string_view sql, Key key) {
    IOTPKI_TRY(auto stmt, conn_.Prepare(sql));
    stmt->Bind(1, key);
    return stmt->Step();
  }

  Connection& conn_;
  int64_t now_;
  CommitInfo& info_;
  std::optional<AuditHead> head_;
  std::map<DeviceKey, int64_t> device_deltas_;
  std::map<ExpiryKey, int64_t> expiry_deltas_;
  // (profile, issuer, key origin or ""): issuance_counts' key, on the commit's day.
  using IssuanceKey = std::tuple<std::string_view, std::string, std::string_view>;
  std::map<IssuanceKey, int64_t> issuance_deltas_;
};

Result<std::string> QueryText(Connection& conn, std::string_view sql) {
  IOTPKI_TRY(auto stmt, conn.PrepareUncached(sql));
  IOTPKI_TRY(bool row, stmt->Step());
  return row ? stmt->Text(0) : std::string();
}

}  // namespace

Result<int> CurrentSchemaVersion(Connection& conn) {
  IOTPKI_TRY(auto stmt, conn.Prepare("SELECT CAST(COALESCE(MAX(version), 0) AS BIGINT) FROM "
                                     "schema_migrations"));
  IOTPKI_TRY(bool row, stmt->Step());
  if (!row) return 0;
  return static_cast<int>(stmt->Int64(0));
}

Result<void> RefuseNewerSchema(int version) {
  if (version > kLatestSchemaVersion) {
    return Fail(Code::kFailedPrecondition,
                "the database was written by a newer iotpki (schema version " +
                    std::to_string(version) + ", this build knows up to " +
                    std::to_string(kLatestSchemaVersion) + ")");
  }
  return {};
}

SqlStore::SqlStore(const Clock& clock, std::unique_ptr<Pool> pool)
    : clock_(clock), pool_(std::move(pool)) {}
SqlStore::~SqlStore() = default;

Result<void> SqlStore::ApplyBatch(Connection& conn, const WriteBatch& batch, CommitInfo& info) {
  BatchWriter writer(conn, info.time, info);
  const auto& ops = batch.ops();
  for (size_t i = 0; i < ops.size(); ++i) {
    auto applied = writer.Apply(ops[i]);
    if (!applied) return Fail(AtOperation(std::move(applied).error(), i));
  }
  return writer.Finish();
}

Result<CommitInfo> SqlStore::CommitOn(Connection& conn, const WriteBatch& batch) {
  IOTPKI_TRY(auto tx, Transaction::Begin(conn));
  CommitInfo info;
  info.time = clock_.NowUnix();
  IOTPKI_CHECK(ApplyBatch(conn, batch, info));
  IOTPKI_CHECK(tx.Commit());
  return info;
}

Result<CommitInfo> SqlStore::Commit(const WriteBatch& batch) {
  IOTPKI_CHECK(ValidateBatch(batch));
  return pool_->WithWriter([&](Connection& conn) { return CommitOn(conn, batch); });
}

Result<Device> SqlStore::GetDevice(std::string_view device_id) {
  std::string id = ToLowerAscii(device_id);
  auto bytes = IdBytes(id);
  if (!bytes) return Fail(Code::kNotFound, "device " + id + " not found");
  return pool_->WithReader([&](Connection& conn) -> Result<Device> {
    IOTPKI_TRY(auto stmt, conn.Prepare("SELECT " + std::string(kDeviceColumns) +
                                       " FROM devices d WHERE d.device_id = ?1"));
    stmt->Bind(1, bytes.view());
    IOTPKI_TRY(bool row, stmt->Step());
    if (!row) return Fail(Code::kNotFound, "device " + id + " not found");
    return ReadDevice(*stmt);
  });
}

Result<Device> SqlStore::GetDeviceBySerial(std::string_view serial) {
  return pool_->WithReader([&](Connection& conn) -> Result<Device> {
    IOTPKI_TRY(auto stmt, conn.Prepare("SELECT " + std::string(kDeviceColumns) +
                                       " FROM devices d WHERE d.serial = ?1"));
    stmt->Bind(1, serial);
    IOTPKI_TRY(bool row, stmt->Step());
    if (!row) {
      return Fail(Code::kNotFound, "no device with serial '" + std::string(serial) + "'");
    }
    return ReadDevice(*stmt);
  });
}

Result<std::vector<std::optional<Device>>> SqlStore::GetDevicesBySerial(
    std::span<const std::string> serials) {
  using Found = std::vector<std::optional<Device>>;
  if (serials.empty()) return Found();
  // One statement per slice of kSlice serials, not one per serial: with PostgreSQL each statement
  // is a round trip, and a factory batch's preflight asks about every serial of the batch (10M
  // round trips were 275 s of a 10M-device run). A short last slice repeats its last serial, so
  // a single statement text serves every call and stays in the connection's cache.
  constexpr size_t kSlice = 256;
  static const std::string sql = [] {
    std::string q = "SELECT " + std::string(kDeviceColumns) + " FROM devices d WHERE d.serial IN (";
    for (size_t i = 1; i <= kSlice; ++i) q += (i > 1 ? ", ?" : "?") + std::to_string(i);
    return q + ")";
  }();
  return pool_->WithReader([&](Connection& conn) -> Result<Found> {
    return InReadTransaction(conn, [&]() -> Result<Found> {
      IOTPKI_TRY(auto stmt, conn.Prepare(sql));
      Found found(serials.size());
      std::unordered_map<std::string, Device> rows;
      for (size_t begin = 0; begin < serials.size(); begin += kSlice) {
        size_t end = std::min(serials.size(), begin + kSlice);
        for (size_t i = 0; i < kSlice; ++i) {
          stmt->Bind(static_cast<int>(i + 1),
                     std::string_view(serials[std::min(begin + i, end - 1)]));
        }
        rows.clear();
        while (true) {
          IOTPKI_TRY(bool row, stmt->Step());
          if (!row) break;
          IOTPKI_TRY(auto device, ReadDevice(*stmt));
          std::string serial = device.serial;
          rows.emplace(std::move(serial), std::move(device));
        }
        stmt->Reset();
        for (size_t i = begin; i < end; ++i) {
          if (auto it = rows.find(serials[i]); it != rows.end()) found[i] = it->second;
        }
      }
      return found;
    });
  });
}

Result<CertificateRecord> SqlStore::GetCertificate(std::string_view serial_hex) {
  std::string serial = ToLowerAscii(serial_hex);
  return pool_->WithReader([&](Connection& conn) -> Result<CertificateRecord> {
    IOTPKI_TRY(auto stmt, conn.Prepare("SELECT " + std::string(kCertColumns) +
                                       std::string(kCertsWithDevice) + " WHERE c.serial = ?1"));
    stmt->Bind(1, std::string_view(serial));
    IOTPKI_TRY(bool row, stmt->Step());
    if (!row) return Fail(Code::kNotFound, "certificate " + serial + " not found");
    return ReadCertificate(*stmt);
  });
}

Result<CertificateStatusRecord> SqlStore::GetCertificateStatus(std::string_view serial_hex) {
  std::string serial = ToLowerAscii(serial_hex);
  return pool_->WithReader([&](Connection& conn) -> Result<CertificateStatusRecord> {
    IOTPKI_TRY(auto stmt, conn.Prepare("SELECT issuer, status, revoked_at, revocation_reason "
                                       "FROM certificates WHERE serial = ?1"));
    stmt->Bind(1, std::string_view(serial));
    IOTPKI_TRY(bool row, stmt->Step());
    if (!row) return Fail(Code::kNotFound, "certificate " + serial + " not found");
    CertificateStatusRecord c;
    c.issuer = stmt->Text(0);
    auto status = ParseCertStatus(stmt->Text(1));
    if (!status) return Fail(Unreadable("certificates", status.error()));
    c.status = *status;
    c.revoked_at = stmt->OptionalInt64(2);
    if (auto reason = stmt->OptionalText(3)) {
      auto parsed = ParseRevocationReason(*reason);
      if (!parsed) return Fail(Unreadable("certificates", parsed.error()));
      c.revocation_reason = *parsed;
    }
    return c;
  });
}

namespace {

// Every certified key has its owner in public_keys (ClaimKey, in the certificate's transaction),
// and only that owner's certificates can carry it: one probe there, then the owner's certificates
// through certificates_by_device (device_seq IS NULL: the CA side's few). `hex` is lowercase;
// one that is not 64 hex digits names no key.
Result<std::vector<CertificateRecord>> CertificatesOfKey(Connection& conn, std::string_view hex) {
  auto fp = IdBytes(hex);
  if (!fp) return std::vector<CertificateRecord>();
  IOTPKI_TRY(auto owner, conn.Prepare("SELECT device_seq FROM public_keys "
                                      "WHERE key_fingerprint = ?1"));
  owner->Bind(1, fp.view());
  IOTPKI_TRY(bool known, owner->Step());
  if (!known) return std::vector<CertificateRecord>();
  std::optional<int64_t> device_seq = owner->OptionalInt64(0);
  owner->Reset();
  Query q = CertificatesOfKeyQuery(device_seq, fp.view());
  IOTPKI_TRY(auto stmt, conn.Prepare(q.sql));
  q.BindTo(*stmt);
  return ReadCertificates(*stmt);
}

}  // namespace

Result<std::vector<CertificateRecord>> SqlStore::FindCertificatesByKey(
    std::string_view key_fingerprint) {
  std::string fp = ToLowerAscii(key_fingerprint);
  return pool_->WithReader([&](Connection& conn) { return CertificatesOfKey(conn, fp); });
}

Result<std::vector<std::vector<CertificateRecord>>> SqlStore::FindCertificatesByKeys(
    std::span<const std::string> key_fingerprints) {
  using Found = std::vector<std::vector<CertificateRecord>>;
  if (key_fingerprints.empty()) return Found();
  return pool_->WithReader([&](Connection& conn) -> Result<Found> {
    return InReadTransaction(conn, [&]() -> Result<Found> {
      Found found;
      found.reserve(key_fingerprints.size());
      for (const std::string& fp : key_fingerprints) {
        IOTPKI_TRY(auto certs, CertificatesOfKey(conn, ToLowerAscii(fp)));
        found.push_back(std::move(certs));
      }
      return found;
    });
  });
}

Result<std::vector<CertificateRecord>> SqlStore::ListCertificates(std::string_view after_serial,
                                                                  size_t limit) {
  IOTPKI_CHECK(ValidatePageSize(limit));
  std::string after = ToLowerAscii(after_serial);
  return pool_->WithReader([&](Connection& conn) -> Result<std::vector<CertificateRecord>> {
    IOTPKI_TRY(auto stmt,
               conn.Prepare("SELECT " + std::string(kCertColumns) + std::string(kCertsWithDevice) +
                            " WHERE c.serial > ?1 ORDER BY c.serial LIMIT ?2"));
    stmt->Bind(1, std::string_view(after));
    stmt->Bind(2, static_cast<int64_t>(limit));
    return ReadCertificates(*stmt);
  });
}

Result<std::vector<CertificateRecord>> SqlStore::ListCertificatesForDevice(
    std::string_view device_id) {
  auto id = IdBytes(ToLowerAscii(device_id));
  if (!id) return std::vector<CertificateRecord>();
  return pool_->WithReader([&](Connection& conn) -> Result<std::vector<CertificateRecord>> {
    IOTPKI_TRY(auto stmt, conn.Prepare("SELECT " + std::string(kCertColumns) +
                                       " FROM devices d CROSS JOIN certificates c "
                                       "WHERE d.device_id = ?1 AND c.device_seq = d.seq "
                                       "ORDER BY c.not_before, c.serial"));
    stmt->Bind(1, id.view());
    return ReadCertificates(*stmt);
  });
}

namespace {

// "r1.<revoked_at>.<serial>": the last row of a page of revoked certificates.
std::string EncodeRevokedCursor(const CertificateRecord& last) {
  return "r1." + std::to_string(last.revoked_at.value_or(0)) + "." + last.serial;
}

Result<std::pair<int64_t, std::string>> DecodeRevokedCursor(std::string_view cursor) {
  auto bad = [] {
    return Fail(Code::kInvalidArgument,
                "cursor does not come from a listing of revoked "
                "certificates");
  };
  if (cursor.substr(0, 3) != "r1.") return bad();
  cursor.remove_prefix(3);
  size_t dot = cursor.find('.');
  if (dot == std::string_view::npos || dot == 0 || dot > 19) return bad();
  int64_t at = 0;
  for (char c : cursor.substr(0, dot)) {
    if (c < '0' || c > '9') return bad();
    at = at * 10 + (c - '0');
  }
  std::string serial(cursor.substr(dot + 1));
  if (serial.empty() || serial.size() > 64 ||
      serial.find_first_not_of("0123456789abcdef") != std::string::npos) {
    return bad();
  }
  return std::make_pair(at, std::move(serial));
}

}  // namespace

Result<CertificatePage> SqlStore::ListRevokedCertificates(const RevokedFilter& filter, size_t limit,
                                                          std::string_view cursor) {
  IOTPKI_CHECK(ValidatePageSize(limit));
  std::optional<std::pair<int64_t, std::string>> after;
  if (!cursor.empty()) {
    IOTPKI_TRY(after, DecodeRevokedCursor(cursor));
  }
  // certificates_revoked (migration 5) holds only revoked rows, in this order.
  std::string sql = "SELECT " + std::string(kCertColumns) + std::string(kCertsWithDevice) +
                    " WHERE c.revoked_at IS NOT NULL AND c.revoked_at >= ?1";
  if (after) sql += " AND (c.revoked_at > ?2 OR (c.revoked_at = ?2 AND c.serial > ?3))";
  sql += " ORDER BY c.revoked_at, c.serial LIMIT " + std::to_string(limit + 1);
  return pool_->WithReader([&](Connection& conn) -> Result<CertificatePage> {
    IOTPKI_TRY(auto stmt, conn.Prepare(sql));
    stmt->Bind(1, filter.since);
    if (after) {
      stmt->Bind(2, after->first);
      stmt->Bind(3, std::string_view(after->second));
    }
    CertificatePage page;
    IOTPKI_TRY(page.certificates, ReadCertificates(*stmt));
    if (page.certificates.size() > limit) {
      page.certificates.resize(limit);
      page.next_cursor = EncodeRevokedCursor(page.certificates.back());
    }
    return page;
  });
}

Result<DevicePage> SqlStore::ListDevices(const DeviceFilter& filter, size_t limit,
                                         std::string_view cursor) {
  IOTPKI_CHECK(ValidateFilter(filter));
  IOTPKI_CHECK(ValidatePageSize(limit));
  // One row more than asked tells whether another page exists without a second query.
  IOTPKI_TRY(Query q, BuildDeviceListQuery(filter, limit + 1, cursor, clock_.NowUnix()));
  return pool_->WithReader([&](Connection& conn) -> Result<DevicePage> {
    IOTPKI_TRY(auto stmt, conn.Prepare(q.sql));
    q.BindTo(*stmt);
    DevicePage page;
    int64_t last_seq = 0;
    for (;;) {
      IOTPKI_TRY(bool row, stmt->Step());
      if (!row) break;
      if (page.devices.size() == limit) {
        const ListedDevice& last = page.devices.back();
        page.next_cursor =
            filter.expiring_within
                ? EncodeCursor(ExpiringCursor{*last.cert_not_after, *last.cert_serial})
                : EncodeCursor(DeviceSeqCursor{last_seq});
        break;
      }
      ListedDevice entry;
      IOTPKI_TRY(entry.device, ReadDevice(*stmt));
      if (filter.expiring_within) {
        entry.cert_serial = stmt->Text(kDeviceColumnCount);
        entry.cert_not_after = stmt->Int64(kDeviceColumnCount + 1);
      } else {
        last_seq = stmt->Int64(kDeviceColumnCount);
      }
      page.devices.push_back(std::move(entry));
    }
    return page;
  });
}

Result<int64_t> SqlStore::CountDevices(const DeviceFilter& filter) {
  IOTPKI_CHECK(ValidateFilter(filter));
  int64_t now = clock_.NowUnix();
  return pool_->WithReader([&](Connection& conn) -> Result<int64_t> {
    Query q = BuildCountQuery(filter, now, conn.dialect());
    IOTPKI_TRY(auto stmt, conn.Prepare(q.sql));
    q.BindTo(*stmt);
    IOTPKI_TRY(bool row, stmt->Step());
    return row ? stmt->Int64(0) : 0;
  });
}

Result<std::vector<Store::DeviceCountRow>> SqlStore::ListDeviceCounts(size_t limit) {
  IOTPKI_CHECK(ValidatePageSize(limit));
  return pool_->WithReader([&](Connection& conn) -> Result<std::vector<DeviceCountRow>> {
    IOTPKI_TRY(auto stmt, conn.Prepare("SELECT state, model, batch, n FROM device_counts WHERE "
                                       "n <> 0 ORDER BY state, model, batch LIMIT ?1"));
    stmt->Bind(1, static_cast<int64_t>(limit));
    std::vector<DeviceCountRow> out;
    for (;;) {
      IOTPKI_TRY(bool row, stmt->Step());
      if (!row) return out;
      auto state = ParseDeviceState(stmt->Text(0));
      if (!state) return Fail(Unreadable("device_counts", state.error()));
      out.push_back({*state, stmt->Text(1), stmt->Text(2), stmt->Int64(3)});
    }
  });
}

Result<std::vector<Store::ExpiryDayCount>> SqlStore::CountExpiriesByDay(int64_t from_day,
                                                                        int64_t to_day) {
  if (to_day < from_day || to_day - from_day > 3660) {
    return Fail(Code::kInvalidArgument, "an expiry histogram covers 1 to 3661 days");
  }
  return pool_->WithReader([&](Connection& conn) -> Result<std::vector<ExpiryDayCount>> {
    // prev_day < from_day: the certificate is its device's first to expire in the range, as in
    // BuildCountQuery's whole days.
    IOTPKI_TRY(auto stmt,
               conn.Prepare("SELECT day, CAST(SUM(n) AS BIGINT) FROM expiry_counts WHERE day >= ?1 "
                            "AND day <= ?2 AND prev_day < ?1 GROUP BY day ORDER BY day"));
    stmt->Bind(1, from_day);
    stmt->Bind(2, to_day);
    std::vector<ExpiryDayCount> out;
    for (;;) {
      IOTPKI_TRY(bool row, stmt->Step());
      if (!row) return out;
      if (int64_t n = stmt->Int64(1); n != 0) out.push_back({stmt->Int64(0), n});
    }
  });
}

namespace {

// The columns ReadAuditRows reads, in its order.
constexpr std::string_view kAuditColumns =
    "seq, time, actor, action, subject, details, prev_hash, hash";

// Every remaining row of a statement that selects kAuditColumns.
Result<std::vector<AuditRecord>> ReadAuditRows(Statement& stmt) {
  std::vector<AuditRecord> out;
  for (;;) {
    IOTPKI_TRY(bool row, stmt.Step());
    if (!row) return out;
    out.push_back(AuditRecord{stmt.Int64(0), stmt.Int64(1), stmt.Text(2), stmt.Text(3),
                              stmt.Text(4), stmt.Text(5), stmt.Blob(6), stmt.Blob(7)});
  }
}

}  // namespace

Result<std::vector<AuditRecord>> SqlStore::ReadAudit(int64_t from_seq, size_t limit) {
  IOTPKI_CHECK(ValidatePageSize(limit));
  return pool_->WithReader([&](Connection& conn) -> Result<std::vector<AuditRecord>> {
    IOTPKI_TRY(auto stmt, conn.Prepare("SELECT " + std::string(kAuditColumns) +
                                       " FROM audit_log WHERE seq >= ?1 "
                                       "ORDER BY seq LIMIT ?2"));
    stmt->Bind(1, from_seq);
    stmt->Bind(2, static_cast<int64_t>(limit));
    return ReadAuditRows(*stmt);
  });
}

Result<std::vector<AuditRecord>> SqlStore::ReadAuditForSubject(std::string_view subject,
                                                               int64_t before_seq, size_t limit) {
  IOTPKI_CHECK(ValidatePageSize(limit));
  return pool_->WithReader([&](Connection& conn) -> Result<std::vector<AuditRecord>> {
    IOTPKI_TRY(auto stmt, conn.Prepare("SELECT " + std::string(kAuditColumns) +
                                       " FROM audit_log WHERE subject = ?1 AND "
                                       "seq < ?2 ORDER BY seq DESC LIMIT ?3"));
    stmt->Bind(1, subject);
    stmt->Bind(2, before_seq);
    stmt->Bind(3, static_cast<int64_t>(limit));
    return ReadAuditRows(*stmt);
  });
}

Result<std::vector<Store::IssuanceCount>> SqlStore::CountIssuance(int64_t from_day,
                                                                  int64_t to_day) {
  if (to_day < from_day || to_day - from_day > 3660) {
    return Fail(Code::kInvalidArgument, "issuance counts cover 1 to 3661 days");
  }
  return pool_->WithReader([&](Connection& conn) -> Result<std::vector<IssuanceCount>> {
    IOTPKI_TRY(auto stmt, conn.Prepare("SELECT day, profile, issuer, key_origin, n FROM "
                                       "issuance_counts WHERE day >= ?1 AND day <= ?2 "
                                       "ORDER BY day, profile, issuer, key_origin"));
    stmt->Bind(1, from_day);
    stmt->Bind(2, to_day);
    std::vector<IssuanceCount> out;
    for (;;) {
      IOTPKI_TRY(bool row, stmt->Step());
      if (!row) return out;
      IssuanceCount c;
      c.day = stmt->Int64(0);
      auto profile = ParseCertProfile(stmt->Text(1));
      if (!profile) return Fail(Unreadable("issuance_counts", profile.error()));
      c.profile = *profile;
      c.issuer = stmt->Text(2);
      if (std::string origin = stmt->Text(3); !origin.empty()) {
        auto parsed = ParseKeyOrigin(origin);
        if (!parsed) return Fail(Unreadable("issuance_counts", parsed.error()));
        c.key_origin = *parsed;
      }
      c.n = stmt->Int64(4);
      if (c.n != 0) out.push_back(std::move(c));
    }
  });
}

namespace {

Result<int64_t> CountOf(Connection& conn, std::string_view sql, std::optional<int64_t> now = {}) {
  IOTPKI_TRY(auto stmt, conn.PrepareUncached(sql));
  if (now) stmt->Bind(1, *now);
  IOTPKI_TRY(bool row, stmt->Step());
  return row && !stmt->IsNull(0) ? stmt->Int64(0) : 0;
}

}  // namespace

namespace {

// The partial index's WHERE is repeated word for word so that both engines can use it.
constexpr std::string_view kStrandedCount =
    "SELECT CAST(COUNT(*) AS BIGINT) FROM devices WHERE heard_at + ldevid_not_after < ?1 AND "
    "ldevid_not_after IS NOT NULL AND state <> 'decommissioned'";

}  // namespace

Result<Store::CredentialAudit> SqlStore::AuditCredentials(int64_t now) {
  // One read transaction, so the figures describe one state of the fleet.
  return pool_->WithReader([&](Connection& conn) -> Result<CredentialAudit> {
    return InReadTransaction(conn, [&]() -> Result<CredentialAudit> {
      CredentialAudit a;
      IOTPKI_TRY(a.devices, CountOf(conn, "SELECT CAST(SUM(n) AS BIGINT) FROM device_counts"));
      IOTPKI_TRY(a.device_certificates,
                 CountOf(conn,
                         "SELECT CAST(SUM(n) AS BIGINT) FROM issuance_counts WHERE "
                         "profile IN ('idevid', 'ldevid')"));
      // From the certificates themselves, not from public_keys, whose primary key would hide a
      // second owner: every key certified for more than one owner (-1 stands for the CA side).
      IOTPKI_TRY(a.shared_keys,
                 CountOf(conn,
                         "SELECT CAST(COUNT(*) AS BIGINT) FROM (SELECT key_fingerprint FROM "
                         "certificates GROUP BY key_fingerprint HAVING COUNT(DISTINCT "
                         "COALESCE(device_seq, -1)) > 1 AND MAX(device_seq) IS NOT NULL) k"));
      IOTPKI_TRY(a.shared_device_ids,
                 CountOf(conn,
                         "SELECT CAST(SUM(n) AS BIGINT) FROM (SELECT COUNT(*) AS n FROM "
                         "devices GROUP BY device_id HAVING COUNT(*) > 1) k"));
      IOTPKI_TRY(a.shared_hardware_fingerprints,
                 CountOf(conn,
                         "SELECT CAST(SUM(n) AS BIGINT) FROM (SELECT COUNT(*) AS n FROM "
                         "devices WHERE hardware_fingerprint IS NOT NULL GROUP BY "
                         "hardware_fingerprint HAVING COUNT(*) > 1) k"));
      // Last heard from longer ago than the newest valid working certificate has left: now -
      // heard_at > ldevid_not_after - now, a range of devices_stranding (migration 8), whose
      // columns every write keeps; the conformance suite checks them against the rows
      // (docs/compliance.md has that query for the auditor).
      IOTPKI_TRY(a.stranded, CountOf(conn, kStrandedCount, 2 * now));
      return a;
    });
  });
}

namespace {

// One page of the live device certificates after serial `after`, in serial order. "Valid" is
// spelled revoked_at IS NULL (the table's CHECK makes the two the same) so that no engine can
// answer the page from certificates_by_expiry (status, not_after, ...): without statistics
// SQLite took that index for `status = 'valid'`, read every live certificate of the fleet and
// sorted them for each page, which made the pass quadratic (hours at 1M devices). Walking the
// primary key from `after` reads each certificate once.
Query LiveDeviceCertificatesQuery(std::string_view after, int64_t now, int64_t limit) {
  return Query{
      "SELECT serial, der FROM certificates WHERE serial > ?1 AND revoked_at IS NULL "
      "AND not_after >= ?2 AND profile IN ('idevid', 'ldevid') ORDER BY serial LIMIT ?3",
      {std::string(after), now, limit}};
}

}  // namespace

Result<int64_t> SqlStore::VisitLiveDeviceCertificates(
    int64_t now, const std::function<void(ByteView der)>& visit) {
  const auto page = static_cast<int64_t>(visit_page_);
  return pool_->WithReader([&](Connection& conn) -> Result<int64_t> {
    return InReadTransaction(conn, [&]() -> Result<int64_t> {
      IOTPKI_TRY(auto stmt, conn.Prepare(LiveDeviceCertificatesQuery("", now, page).sql));
      int64_t n = 0;
      std::string after;
      for (;;) {
        LiveDeviceCertificatesQuery(after, now, page).BindTo(*stmt);
        int64_t rows = 0;
        for (;;) {
          IOTPKI_TRY(bool row, stmt->Step());
          if (!row) break;
          after = stmt->Text(0);
          Bytes der = stmt->Blob(1);
          visit(der);
          ++rows;
        }
        stmt->Reset();
        n += rows;
        if (rows < page) return n;
      }
    });
  });
}

namespace {

constexpr std::string_view kOperatorColumns =
    "serial, name, role, not_after, status, revoked_at, created_at";

Result<OperatorCertificate> ReadOperatorCertificate(const Statement& s) {
  OperatorCertificate c;
  c.serial = s.Text(0);
  c.name = s.Text(1);
  c.role = s.Text(2);
  c.not_after = s.Int64(3);
  auto status = ParseCertStatus(s.Text(4));
  if (!status) return Fail(Unreadable("operator_certificates", status.error()));
  c.status = *status;
  c.revoked_at = s.OptionalInt64(5);
  c.created_at = s.Int64(6);
  return c;
}

}  // namespace

Result<OperatorCertificate> SqlStore::GetOperatorCertificate(std::string_view serial) {
  return pool_->WithReader([&](Connection& conn) -> Result<OperatorCertificate> {
    IOTPKI_TRY(auto stmt, conn.Prepare("SELECT " + std::string(kOperatorColumns) +
                                       " FROM operator_certificates WHERE serial = ?1"));
    std::string lower = ToLowerAscii(serial);
    stmt->Bind(1, std::string_view(lower));
    IOTPKI_TRY(bool row, stmt->Step());
    if (!row) {
      return Fail(Code::kNotFound, "no operator certificate with serial " + std::string(serial));
    }
    return ReadOperatorCertificate(*stmt);
  });
}

Result<std::vector<OperatorCertificate>> SqlStore::ListOperatorCertificates() {
  return pool_->WithReader([&](Connection& conn) -> Result<std::vector<OperatorCertificate>> {
    IOTPKI_TRY(auto stmt, conn.Prepare("SELECT " + std::string(kOperatorColumns) +
                                       " FROM operator_certificates ORDER BY name, serial"));
    std::vector<OperatorCertificate> out;
    for (;;) {
      IOTPKI_TRY(bool row, stmt->Step());
      if (!row) return out;
      IOTPKI_TRY(auto c, ReadOperatorCertificate(*stmt));
      out.push_back(std::move(c));
    }
  });
}

Result<bool> SqlStore::IsTokenRecorded(std::string_view device_id, int64_t timestamp) {
  // Normalized so that the same id in another case is the same token.
  std::string id = ToLowerAscii(device_id);
  if (id.size() != 64 || !IsLowerHex(id)) {
    return Fail(Code::kInvalidArgument, "device_id must be 64 hex digits");
  }
  return pool_->WithReader([&](Connection& conn) -> Result<bool> {
    IOTPKI_TRY(auto stmt, conn.Prepare("SELECT 1 FROM bootstrap_replay WHERE device_id = ?1 AND "
                                       "timestamp = ?2"));
    stmt->Bind(1, std::string_view(id));
    stmt->Bind(2, timestamp);
    return stmt->Step();
  });
}

namespace {

// The status term matches the WHERE clause of certificates_revoked_by_issuer (migration 5),
// which lets the engine use that index.
Query RevokedQuery(std::string_view issuer, std::string_view after, size_t limit) {
  return Query{
      "SELECT serial, revoked_at, revocation_reason FROM certificates "
      "WHERE status = 'revoked' AND issuer = ?1 AND serial > ?2 ORDER BY serial LIMIT ?3",
      {std::string(issuer), std::string(after), static_cast<int64_t>(limit)}};
}

}  // namespace

Result<std::vector<RevokedCertificate>> SqlStore::ListRevokedCertificatesOfIssuer(
    std::string_view issuer, std::string_view after_serial, size_t limit) {
  IOTPKI_CHECK(ValidatePageSize(limit));
  Query q = RevokedQuery(issuer, ToLowerAscii(after_serial), limit);
  return pool_->WithReader([&](Connection& conn) -> Result<std::vector<RevokedCertificate>> {
    IOTPKI_TRY(auto stmt, conn.Prepare(q.sql));
    q.BindTo(*stmt);
    std::vector<RevokedCertificate> out;
    for (;;) {
      IOTPKI_TRY(bool row, stmt->Step());
      if (!row) break;
      RevokedCertificate r;
      r.serial = stmt->Text(0);
      r.revoked_at = stmt->Int64(1);
      if (auto text = stmt->OptionalText(2)) {
        auto reason = ParseRevocationReason(*text);
        if (!reason) return Fail(Unreadable("certificates", reason.error()));
        r.reason = *reason;
      }
      out.push_back(std::move(r));
    }
    return out;
  });
}

Result<int64_t> SqlStore::CountRevokedCertificates(std::string_view issuer) {
  return pool_->WithReader([&](Connection& conn) -> Result<int64_t> {
    IOTPKI_TRY(auto stmt, conn.Prepare("SELECT COUNT(*) FROM certificates "
                                       "WHERE status = 'revoked' AND issuer = ?1"));
    stmt->Bind(1, issuer);
    IOTPKI_TRY(bool row, stmt->Step());
    return row ? stmt->Int64(0) : int64_t{0};
  });
}

Result<int64_t> SqlStore::PruneReplay(int64_t before) {
  return pool_->WithWriter([&](Connection& conn) -> Result<int64_t> {
    IOTPKI_TRY(auto stmt, conn.Prepare("DELETE FROM bootstrap_replay WHERE timestamp < ?1"));
    stmt->Bind(1, before);
    IOTPKI_CHECK(stmt->Run());
    return stmt->Changes();
  });
}

Result<int> SqlStore::SchemaVersion() {
  return pool_->WithReader([](Connection& conn) { return CurrentSchemaVersion(conn); });
}

Result<void> SqlStore::ExecForTest(std::string_view sql) {
  return pool_->WithWriter([&](Connection& conn) { return conn.Exec(sql); });
}

Result<std::string> SqlStore::QueryForTest(std::string_view sql) {
  return pool_->WithWriter([&](Connection& conn) { return QueryText(conn, sql); });
}

Result<std::string> SqlStore::ExplainListDevicesForTest(const DeviceFilter& filter, size_t limit,
                                                        std::string_view cursor) {
  IOTPKI_TRY(Query q, BuildDeviceListQuery(filter, limit + 1, cursor, clock_.NowUnix()));
  return pool_->WithReader([&](Connection& conn) { return conn.Explain(q); });
}

Result<std::string> SqlStore::ExplainFindCertificatesByKeyForTest(bool device_owner) {
  Query q =
      CertificatesOfKeyQuery(device_owner ? std::optional<int64_t>(1) : std::nullopt, Bytes(32, 0));
  return pool_->WithReader([&](Connection& conn) { return conn.Explain(q); });
}

Result<std::string> SqlStore::ExplainVisitLiveDeviceCertificatesForTest() {
  Query q = LiveDeviceCertificatesQuery(std::string(32, '0'), clock_.NowUnix(),
                                        static_cast<int64_t>(visit_page_));
  return pool_->WithReader([&](Connection& conn) { return conn.Explain(q); });
}

Result<std::string> SqlStore::ExplainStrandedCountForTest() {
  Query q{std::string(kStrandedCount), {2 * clock_.NowUnix()}};
  return pool_->WithReader([&](Connection& conn) { return conn.Explain(q); });
}

Result<std::string> SqlStore::ExplainListRevokedForTest() {
  Query q = RevokedQuery("operational", "", 100);
  return pool_->WithReader([&](Connection& conn) { return conn.Explain(q); });
}

Result<std::string> SqlStore::ExplainCountDevicesForTest(const DeviceFilter& filter) {
  int64_t now = clock_.NowUnix();
  return pool_->WithReader(
      [&](Connection& conn) { return conn.Explain(BuildCountQuery(filter, now, conn.dialect())); });
}

}  // namespace iotpki::store::sql

namespace iotpki::store::sql {
namespace {

// A table as store migrate copies it: its columns, the first `key` of which are its primary key
// (the keyset the source is read in pages by).
struct CopiedTable {
  enum Kind { kInt, kText, kBlob };
  const char* name;
  size_t key;
  std::vector<std::pair<const char*, Kind>> columns;
};

// Parents before children (foreign keys): devices, then what names a device by seq.
const std::vector<CopiedTable>& CopiedTables() {
  using T = CopiedTable;
  static const std::vector<CopiedTable> tables = {
      {"devices",
       1,
       {{"seq", T::kInt},
        {"device_id", T::kBlob},
        {"serial", T::kText},
        {"model", T::kText},
        {"batch", T::kText},
        {"state", T::kText},
        {"hardware_fingerprint", T::kText},
        {"created_at", T::kInt},
        {"updated_at", T::kInt},
        {"heard_at", T::kInt},
        {"ldevid_not_after", T::kInt}}},
      {"certificates",
       1,
       {{"serial", T::kText},
        {"device_seq", T::kInt},
        {"profile", T::kText},
        {"issuer", T::kText},
        {"subject", T::kText},
        {"not_before", T::kInt},
        {"not_after", T::kInt},
        {"key_fingerprint", T::kBlob},
        {"der", T::kBlob},
        {"status", T::kText},
        {"revoked_at", T::kInt},
        {"revocation_reason", T::kText},
        {"created_at", T::kInt},
        {"first_used_at", T::kInt},
        {"key_origin", T::kText}}},
      {"public_keys",
       1,
       {{"key_fingerprint", T::kBlob},
        {"device_seq", T::kInt},
        {"first_serial", T::kText},
        {"created_at", T::kInt}}},
      {"audit_log",
       1,
       {{"seq", T::kInt},
        {"time", T::kInt},
        {"actor", T::kText},
        {"action", T::kText},
        {"subject", T::kText},
        {"details", T::kText},
        {"prev_hash", T::kBlob},
        {"hash", T::kBlob}}},
      {"bootstrap_replay",
       2,
       {{"device_id", T::kText}, {"timestamp", T::kInt}, {"seen_at", T::kInt}}},
      {"device_counts",
       3,
       {{"state", T::kText}, {"model", T::kText}, {"batch", T::kText}, {"n", T::kInt}}},
      {"expiry_certs",
       2,
       {{"not_after", T::kInt},
        {"serial", T::kText},
        {"prev_not_after", T::kInt},
        {"state", T::kText},
        {"model", T::kText},
        {"batch", T::kText}}},
      {"expiry_counts",
       5,
       {{"day", T::kInt},
        {"prev_day", T::kInt},
        {"state", T::kText},
        {"model", T::kText},
        {"batch", T::kText},
        {"n", T::kInt}}},
      {"campaigns",
       1,
       {{"id", T::kInt},
        {"name", T::kText},
        {"filter", T::kText},
        {"mode", T::kText},
        {"wave_size", T::kInt},
        {"max_failure_ppm", T::kInt},
        {"retry_after", T::kInt},
        {"max_attempts", T::kInt},
        {"deadline", T::kInt},
        {"state", T::kText},
        {"state_reason", T::kText},
        {"jobs", T::kInt},
        {"waves", T::kInt},
        {"current_wave", T::kInt},
        {"wave_started_at", T::kInt},
        {"created_at", T::kInt},
        {"updated_at", T::kInt}}},
      {"rotation_jobs",
       2,
       {{"campaign_id", T::kInt},
        {"ordinal", T::kInt},
        {"device_seq", T::kInt},
        {"wave", T::kInt},
        {"state", T::kText},
        {"attempts", T::kInt},
        {"next_attempt_at", T::kInt},
        {"last_error", T::kText},
        {"lease_owner", T::kText},
        {"lease_until", T::kInt},
        {"old_serial", T::kText},
        {"new_serial", T::kText},
        {"updated_at", T::kInt}}},
      {"campaign_counts",
       3,
       {{"campaign_id", T::kInt}, {"wave", T::kInt}, {"state", T::kText}, {"n", T::kInt}}},
      {"issuance_counts",
       4,
       {{"day", T::kInt},
        {"profile", T::kText},
        {"issuer", T::kText},
        {"key_origin", T::kText},
        {"n", T::kInt}}},
      {"operator_certificates",
       1,
       {{"serial", T::kText},
        {"name", T::kText},
        {"role", T::kText},
        {"not_after", T::kInt},
        {"status", T::kText},
        {"revoked_at", T::kInt},
        {"created_at", T::kInt}}},
  };
  return tables;
}

using Value = std::variant<int64_t, std::string, Bytes, std::monostate>;

Value ReadValue(const Statement& s, int col, CopiedTable::Kind kind) {
  if (s.IsNull(col)) return std::monostate();
  switch (kind) {
    case CopiedTable::kInt:
      return s.Int64(col);
    case CopiedTable::kText:
      return s.Text(col);
    case CopiedTable::kBlob:
      return s.Blob(col);
  }
  return std::monostate();
}

// SELECT of one page after the key `after` (none: the first page), in key order.
Query PageQuery(const CopiedTable& t, const std::vector<Value>& after, size_t limit) {
  Query q;
  std::string columns, key;
  for (size_t i = 0; i < t.columns.size(); ++i) {
    columns += (i ? ", " : "") + std::string(t.columns[i].first);
    if (i < t.key) key += (i ? ", " : "") + std::string(t.columns[i].first);
  }
  q.sql = "SELECT " + columns + " FROM " + t.name;
  if (!after.empty()) {
    std::string marks;
    for (size_t i = 0; i < t.key; ++i) marks += i ? ", ?" : "?";
    q.sql += t.key == 1 ? " WHERE " + key + " > ?" : " WHERE (" + key + ") > (" + marks + ")";
    q.params.assign(after.begin(), after.end());
  }
  q.sql += " ORDER BY " + key + " LIMIT ?";
  q.params.emplace_back(static_cast<int64_t>(limit));
  return q;
}

std::string InsertSql(const CopiedTable& t) {
  std::string columns, marks;
  for (size_t i = 0; i < t.columns.size(); ++i) {
    columns += (i ? ", " : "") + std::string(t.columns[i].first);
    marks += (i ? ", ?" : "?") + std::to_string(i + 1);
  }
  return "INSERT INTO " + std::string(t.name) + " (" + columns + ") VALUES (" + marks + ")";
}

// Copies table `t` from `from` (inside its read transaction) to `to` (inside its write
// transaction), page by page; returns the rows copied.
Result<int64_t> CopyTable(Connection& from, Connection& to, const CopiedTable& t) {
  constexpr size_t kPage = 5000;
  IOTPKI_TRY(auto insert, to.Prepare(InsertSql(t)));
  int64_t copied = 0;
  std::vector<Value> after;
  for (;;) {
    Query page = PageQuery(t, after, kPage);
    IOTPKI_TRY(auto read, from.Prepare(page.sql));
    page.BindTo(*read);
    size_t rows = 0;
    std::vector<Value> row(t.columns.size());
    for (;; ++rows) {
      IOTPKI_TRY(bool more, read->Step());
      if (!more) break;
      for (size_t c = 0; c < t.columns.size(); ++c) {
        row[c] = ReadValue(*read, static_cast<int>(c), t.columns[c].second);
      }
      Query values{.sql = "", .params = {row.begin(), row.end()}};
      values.BindTo(*insert);
      auto inserted = insert->Run();
      insert->Reset();
      if (!inserted) return Fail(std::move(inserted).error().Context(t.name));
    }
    copied += static_cast<int64_t>(rows);
    if (rows < kPage) return copied;
    after.assign(row.begin(), row.begin() + static_cast<std::ptrdiff_t>(t.key));
  }
}

Result<int64_t> RowCount(Connection& conn, std::string_view table) {
  IOTPKI_TRY(auto stmt, conn.Prepare("SELECT CAST(COUNT(*) AS BIGINT) FROM " + std::string(table)));
  IOTPKI_TRY(bool row, stmt->Step());
  return row ? stmt->Int64(0) : 0;
}

}  // namespace

Result<SqlStore::CopyCounts> SqlStore::CopyInto(SqlStore& target) {
  return pool_->WithReader([&](Connection& from) -> Result<CopyCounts> {
    return InReadTransaction(from, [&]() -> Result<CopyCounts> {
      return target.pool_->WithWriter([&](Connection& to) -> Result<CopyCounts> {
        IOTPKI_TRY(auto tx, Transaction::Begin(to));
        for (const char* table : {"devices", "certificates", "public_keys", "audit_log",
                                  "bootstrap_replay", "campaigns"}) {
          IOTPKI_TRY(int64_t n, RowCount(to, table));
          if (n != 0) {
            return Fail(Code::kFailedPrecondition, "the target store is not empty (" +
                                                       std::to_string(n) + " rows in " + table +
                                                       "): migrate into a new, empty database");
          }
        }
        CopyCounts counts;
        for (const CopiedTable& t : CopiedTables()) {
          IOTPKI_TRY(int64_t n, CopyTable(from, to, t));
          counts.tables.emplace_back(t.name, n);
        }
        if (!to.dialect().after_copy_sql.empty()) {
          IOTPKI_CHECK(to.Exec(to.dialect().after_copy_sql));
        }
        IOTPKI_CHECK(tx.Commit());
        return counts;
      });
    });
  });
}

}  // namespace iotpki::store::sql
