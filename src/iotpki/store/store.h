// The persistence interface of iotpki: devices, certificates, the hash-chained audit log and the
// bootstrap replay table, behind one abstract Store with one conformance test suite
// (store_conformance_test.cc). Backends: sqlite/ and postgres/, both over the shared SQL of sql/,
// opened by URL through open.h. Nothing in this header names a database library, and nothing
// above the store may assume a particular backend.
//
// Rotation campaigns (docs/rotation.md): campaigns and rotation_jobs, created in one transaction
// by CreateCampaign, claimed by ClaimJobs, and moved on by WriteBatch operations.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "iotpki/common/bytes.h"
#include "iotpki/common/error.h"
#include "iotpki/x509/revocation_reason.h"

namespace iotpki::store {

// ---------------------------------------------------------------------------------------------
// Value types. Plain structs: cheap to copy, no behaviour. Text forms of the enums are what the
// database holds, so they are part of the on-disk format and never change.

enum class DeviceState { kManufactured, kActive, kSuspended, kDecommissioned };
std::string_view DeviceStateName(DeviceState state);  // "manufactured", ...
Result<DeviceState> ParseDeviceState(std::string_view name);

enum class CertProfile { kRoot, kIssuingCa, kIDevId, kLDevId, kServer };
std::string_view CertProfileName(CertProfile profile);  // "root", "issuing-ca", "idevid", ...
Result<CertProfile> ParseCertProfile(std::string_view name);

enum class CertStatus { kValid, kRevoked };
std::string_view CertStatusName(CertStatus status);  // "valid", "revoked"
Result<CertStatus> ParseCertStatus(std::string_view name);

// Where a certified key pair was made (schema version 7): on the device, which sent a CSR
// (kDevice); in a secure element or other hardware key store (kHardware); by the CA or the server
// and handed to the device (kGenerated: `mfg provision --keys ca`, EST serverkeygen). The
// compliance report's "private keys never leave the device" figure counts these.
enum class KeyOrigin { kDevice, kHardware, kGenerated };
std::string_view KeyOriginName(KeyOrigin origin);  // "device", "hardware", "generated"
Result<KeyOrigin> ParseKeyOrigin(std::string_view name);

// RFC 5280 CRLReason (x509/revocation_reason.h); its names are the text form in the database.
// certificateHold and removeFromCRL are never stored: in iotpki a revocation is final.
using RevocationReason = x509::RevocationReason;
using x509::RevocationReasonName;  // "keyCompromise", ...
// As x509::ParseRevocationReason, but InvalidArgument for certificateHold and removeFromCRL.
Result<RevocationReason> ParseRevocationReason(std::string_view name);
// False for certificateHold and removeFromCRL, which the store refuses.
bool IsFinalRevocationReason(RevocationReason reason);

enum class CampaignMode { kRenew, kRekey };
std::string_view CampaignModeName(CampaignMode mode);  // "renew", "rekey"
Result<CampaignMode> ParseCampaignMode(std::string_view name);

enum class CampaignState { kRunning, kPaused, kHalted, kCancelled, kDone };
std::string_view CampaignStateName(CampaignState state);  // "running", "paused", ...
Result<CampaignState> ParseCampaignState(std::string_view name);

// pending -> notified -> enrolled -> confirmed; a failed attempt goes back to pending (a retry)
// or, after the last attempt, to failed. confirmed and failed are final.
enum class JobState { kPending, kNotified, kEnrolled, kConfirmed, kFailed };
inline constexpr int kJobStateCount = 5;
std::string_view JobStateName(JobState state);  // "pending", "notified", ...
Result<JobState> ParseJobState(std::string_view name);

// Times are Unix seconds throughout. Fields marked "store-managed" are stamped by the store from
// its Clock at commit time: leave them at their defaults when inserting (a batch that sets them
// is refused with InvalidArgument rather than silently overwritten).
struct Device {
  std::string device_id;  // 64 lowercase hex digits (SHA-256, see DESIGN.md).
  std::string serial;     // Manufacturer serial, unique across the fleet.
  std::string model;
  std::string batch;
  DeviceState state = DeviceState::kManufactured;
  std::optional<std::string> hardware_fingerprint;  // Lowercase hex, if known.
  int64_t created_at = 0;                           // Store-managed.
  int64_t updated_at = 0;                           // Store-managed.

  bool operator==(const Device&) const = default;
};

struct CertificateRecord {
  std::string serial;                    // Lowercase hex of the serial's bytes, unique.
  std::optional<std::string> device_id;  // None for CA and server certificates.
  CertProfile profile = CertProfile::kIDevId;
  std::string issuer;   // Name of the issuing CA: "root", "manufacturing", "operational".
  std::string subject;  // Display form of the subject DN.
  int64_t not_before = 0;
  int64_t not_after = 0;        // IDevIDs: kNoExpiryUnix (clock.h).
  std::string key_fingerprint;  // Lowercase hex SHA-256 of the SubjectPublicKeyInfo DER.
  Bytes der;
  CertStatus status = CertStatus::kValid;             // Store-managed.
  std::optional<int64_t> revoked_at;                  // Store-managed.
  std::optional<RevocationReason> revocation_reason;  // Store-managed.
  int64_t created_at = 0;                             // Store-managed.
  // Store-managed: when a device first authenticated with this certificate (MarkCertificateUsed;
  // schema version 5). Renewal is bound to the newest working certificate once it is in use.
  std::optional<int64_t> first_used_at;
  // Device certificates only; none for CA and server certificates and for rows written before
  // schema version 7 (unknown).
  std::optional<KeyOrigin> key_origin;

  bool operator==(const CertificateRecord&) const = default;
};

// What a caller appends to the audit log; the store assigns seq, time and the hashes.
struct AuditEvent {
  std::string actor;    // Who: "cli:alice", "server", "mfg:line-3".
  std::string action;   // What: "ca.init", "cert.issue", "cert.refuse", ...
  std::string subject;  // On what: a device id, a certificate serial, a CA name.
  std::string details;  // JSON text; opaque to the store, covered by the hash byte for byte.
};

// A row of the audit log. See audit.h for the hash and how the chain is verified.
struct AuditRecord {
  int64_t seq = 0;  // 1, 2, 3, ... without gaps.
  int64_t time = 0;
  std::string actor;
  std::string action;
  std::string subject;
  std::string details;
  Bytes prev_hash;  // 32 bytes; all zero for seq 1.
  Bytes hash;       // 32 bytes.

  bool operator==(const AuditRecord&) const = default;
};

// A campaign's settings, as `iotpki campaign create` gives them.
struct CampaignSpec {
  std::string name;         // Unique; 1..128 bytes of [A-Za-z0-9._-].
  std::string filter_json;  // How the cohort was chosen, for people (opaque to the store).
  CampaignMode mode = CampaignMode::kRenew;
  int64_t wave_size = 1000;         // >= 1
  int64_t max_failure_ppm = 50000;  // failure rate that halts, parts per million (0..1e6)
  int64_t retry_after = 3600;       // seconds before the first retry, >= 1
  int64_t max_attempts = 5;         // >= 1
  int64_t deadline = 0;             // Unix time after which nothing more is attempted

  bool operator==(const CampaignSpec&) const = default;
};

struct Campaign {
  int64_t id = 0;
  CampaignSpec spec;
  CampaignState state = CampaignState::kRunning;
  std::string state_reason;  // Why it was halted (empty otherwise).
  int64_t jobs = 0;          // Cohort size.
  int64_t waves = 0;         // ceil(jobs / wave_size).
  int64_t current_wave = 0;  // 0-based; waves up to it have been started.
  int64_t wave_started_at = 0;
  int64_t created_at = 0;
  int64_t updated_at = 0;

  bool operator==(const Campaign&) const = default;
};

// One device's job in a campaign. The key is (campaign_id, ordinal); ordinal numbers the cohort
// 0.. in selection order, and wave = ordinal / wave_size.
struct Job {
  int64_t campaign_id = 0;
  int64_t ordinal = 0;
  std::string device_id;
  int64_t wave = 0;
  JobState state = JobState::kPending;
  int64_t attempts = 0;         // Notifications sent so far.
  int64_t next_attempt_at = 0;  // When the scheduler next acts on it (notify, or give up waiting).
  std::optional<std::string> last_error;
  std::optional<std::string> lease_owner;
  std::optional<int64_t> lease_until;
  std::optional<std::string> old_serial;  // The certificate being replaced, if the device has one.
  std::optional<std::string> new_serial;  // Set once the device re-enrolled.
  int64_t updated_at = 0;

  bool operator==(const Job&) const = default;
};

// next_attempt_at of the jobs of waves not yet started: after every real time.
inline constexpr int64_t kNotYetDue = int64_t{1} << 62;

// ---------------------------------------------------------------------------------------------
// Writes. A WriteBatch is an ordered list of operations that Store::Commit applies in one
// transaction, in the order they were added: all of them or none. It is a plain value (no
// reference to any store), so it can be built on any thread and committed later.

struct InsertDeviceOp {
  Device device;
};
// Compare-and-set: succeeds only if the device is in `from` when the batch commits (from == to
// is allowed and asserts the state). Also stamps updated_at.
struct UpdateDeviceStateOp {
  std::string device_id;
  DeviceState from;
  DeviceState to;
};
struct InsertCertificateOp {
  CertificateRecord cert;
};
// valid -> revoked. revoked_at is `revoked_at` when set (> 0), else the commit time: a caller
// that writes the time into an audit row of the same batch sets it, so both say the same.
struct RevokeCertificateOp {
  std::string serial;
  RevocationReason reason;
  int64_t revoked_at = 0;
};
// Records the commit time as the certificate's first_used_at, unless it has one already (then it
// changes nothing). NotFound for an unknown certificate.
struct MarkCertificateUsedOp {
  std::string serial;
};
struct AppendAuditOp {
  AuditEvent event;
};
// Bootstrap replay protection: records that the token (device_id, timestamp) was used, with the
// commit time as seen_at. AlreadyExists if the pair is recorded already, which fails the batch:
// a certificate committed with its token cannot be issued twice for that token, even by
// concurrent requests.
struct RecordTokenOp {
  std::string device_id;  // 64 lowercase hex digits
  int64_t timestamp = 0;  // the token's, Unix seconds
};

// Compare-and-set on a job's state (Aborted if it is not in `from`); sets what is given and
// releases its lease. Keeps the campaign's per-wave counts.
struct UpdateJobOp {
  int64_t campaign_id = 0;
  int64_t ordinal = 0;
  JobState from = JobState::kPending;
  JobState to = JobState::kPending;
  std::optional<int64_t> attempts;
  std::optional<int64_t> next_attempt_at;
  std::optional<std::string> last_error;  // Set when given; a confirmation clears nothing.
  std::optional<std::string> new_serial;
};
// Compare-and-set on a campaign's state (Aborted if it is not in `from`). With start_wave, also
// requires current_wave == start_wave - 1, makes that wave current (wave_started_at = commit
// time) and its pending jobs due now.
struct UpdateCampaignOp {
  int64_t campaign_id = 0;
  CampaignState from = CampaignState::kRunning;
  CampaignState to = CampaignState::kRunning;
  std::optional<int64_t> start_wave;
  std::string reason;  // state_reason after the update
};

// An operator certificate of the admin CA (`iotpki admin issue`, schema version 7), recorded so
// that it can be revoked: the admin listener refuses a revoked one from the next request on.
struct OperatorCertificate {
  std::string serial;  // lowercase hex, unique
  std::string name;    // the operator (subject CN)
  std::string role;    // "operator" or "read-only" (subject OU)
  int64_t not_after = 0;
  CertStatus status = CertStatus::kValid;  // Store-managed.
  std::optional<int64_t> revoked_at;       // Store-managed.
  int64_t created_at = 0;                  // Store-managed.
  bool operator==(const OperatorCertificate&) const = default;
};
struct InsertOperatorCertificateOp {
  OperatorCertificate cert;
};
// valid -> revoked, at the commit time. NotFound for an unknown serial, Aborted if it is revoked
// already.
struct RevokeOperatorCertificateOp {
  std::string serial;
};

using WriteOp =
    std::variant<InsertDeviceOp, UpdateDeviceStateOp, InsertCertificateOp, RevokeCertificateOp,
                 AppendAuditOp, RecordTokenOp, MarkCertificateUsedOp, UpdateJobOp, UpdateCampaignOp,
                 InsertOperatorCertificateOp, RevokeOperatorCertificateOp>;

class WriteBatch {
 public:
  WriteBatch& InsertDevice(Device device);
  WriteBatch& UpdateDeviceState(std::string device_id, DeviceState from, DeviceState to);
  WriteBatch& InsertCertificate(CertificateRecord cert);
  WriteBatch& RevokeCertificate(std::string serial, RevocationReason reason,
                                int64_t revoked_at = 0);
  WriteBatch& MarkCertificateUsed(std::string serial);
  WriteBatch& AppendAudit(AuditEvent event);
  WriteBatch& RecordToken(std::string device_id, int64_t timestamp);
  WriteBatch& UpdateJob(UpdateJobOp op);
  WriteBatch& UpdateCampaign(UpdateCampaignOp op);
  WriteBatch& InsertOperatorCertificate(OperatorCertificate cert);
  WriteBatch& RevokeOperatorCertificate(std::string serial);
  // Every operation of `other`, after this batch's, in order (moved out of an rvalue).
  WriteBatch& Append(const WriteBatch& other);
  WriteBatch& Append(WriteBatch&& other);

  const std::vector<WriteOp>& ops() const { return ops_; }
  size_t size() const { return ops_.size(); }
  bool empty() const { return ops_.empty(); }
  void Clear() { ops_.clear(); }

 private:
  std::vector<WriteOp> ops_;
};

struct CommitInfo {
  int64_t time = 0;                 // The commit time stamped on every row of the batch.
  std::vector<int64_t> audit_seqs;  // One per AppendAudit, in batch order.
};

// ---------------------------------------------------------------------------------------------
// Reads.

struct DeviceFilter {
  std::optional<DeviceState> state;
  std::optional<std::string> model;
  std::optional<std::string> batch;
  // Devices having a valid certificate whose not_after lies in [now, now + window] (both ends
  // inclusive, now from the store's Clock). A device with several such certificates (a rotation
  // in flight) is listed once, under the earliest of them. Results are then ordered by that
  // certificate's (not_after, serial) instead of by device_id.
  std::optional<std::chrono::seconds> expiring_within;
};

struct ListedDevice {
  Device device;
  // Set only for expiring_within queries: the certificate that matched.
  std::optional<std::string> cert_serial;
  std::optional<int64_t> cert_not_after;

  bool operator==(const ListedDevice&) const = default;
};

struct DevicePage {
  std::vector<ListedDevice> devices;
  // Opaque; pass to the next ListDevices call with the same filter. Empty when this page is the
  // last one.
  std::string next_cursor;
};

inline constexpr size_t kMaxPageSize = 10000;

// A revoked certificate as a CRL or an OCSP responder needs it.
struct RevokedCertificate {
  std::string serial;  // lowercase hex, as CertificateRecord::serial
  int64_t revoked_at = 0;
  RevocationReason reason = RevocationReason::kUnspecified;

  bool operator==(const RevokedCertificate&) const = default;
};

// What a status answer (OCSP) needs of a certificate: who issued it, and whether, when and why
// it was revoked. CertificateRecord's fields of the same names.
struct CertificateStatusRecord {
  std::string issuer;
  CertStatus status = CertStatus::kValid;
  std::optional<int64_t> revoked_at;
  std::optional<RevocationReason> revocation_reason;

  bool operator==(const CertificateStatusRecord&) const = default;
};

// Revoked certificates, ordered by (revoked_at, serial).
struct RevokedFilter {
  int64_t since = 0;  // revoked_at >= since
};

struct CertificatePage {
  std::vector<CertificateRecord> certificates;
  std::string next_cursor;  // as DevicePage::next_cursor
};

// Who is in a campaign: exactly one of these selections.
struct CampaignCohort {
  // ListDevices' filter (model, batch or expiring_within), walked through the same indexes.
  std::optional<DeviceFilter> devices;
  // Devices holding a valid certificate from the CA named so ("operational", ...).
  std::optional<std::string> issued_by;
  // An explicit list of device ids (64 hex digits each).
  std::optional<std::vector<std::string>> device_ids;
};

// ---------------------------------------------------------------------------------------------

// Thread safety: every method may be called concurrently from any number of threads (each
// backend documents how). Commits are serialized; reads see the latest committed state and never
// a partial batch.
//
// Errors common to all methods: Unavailable (database busy or unreachable: retry later),
// ResourceExhausted (disk or memory full), DataLoss (corruption or an I/O error), InvalidArgument
// (malformed input, refused before touching the database), Internal (anything else).
class Store {
 public:
  virtual ~Store() = default;
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // Applies the batch atomically; on any error nothing of it is written. The store computes the
  // audit chain (seq, prev_hash, hash) inside the transaction. Errors beyond the common ones:
  //   AlreadyExists   a duplicate device id, device serial or certificate serial, or a public key
  //                   already used by another device (or by a CA certificate); the message names
  //                   which. A key may recur only within one device (renewal keeps the key).
  //   NotFound        a state update or revocation names an unknown device or certificate, or a
  //                   certificate names an unknown device.
  //   AlreadyExists   also: a bootstrap token (RecordToken) that was recorded before.
  //   Aborted         a compare-and-set failed: the device is not in `from`, or the certificate
  //                   is already revoked. Re-read and decide again.
  virtual Result<CommitInfo> Commit(const WriteBatch& batch) = 0;

  // NotFound if absent. Lookups accept upper- or lowercase hex.
  virtual Result<Device> GetDevice(std::string_view device_id) = 0;
  virtual Result<Device> GetDeviceBySerial(std::string_view serial) = 0;
  // GetDeviceBySerial for many serials in one consistent view (one read transaction): one entry
  // per serial, in order, empty where no device has it. A serial given twice is answered twice.
  virtual Result<std::vector<std::optional<Device>>> GetDevicesBySerial(
      std::span<const std::string> serials) = 0;
  virtual Result<CertificateRecord> GetCertificate(std::string_view serial_hex) = 0;
  // GetCertificate's issuer and revocation fields only, NotFound alike: one row of the
  // certificates table read, not its DER nor its device (an OCSP answer per request).
  virtual Result<CertificateStatusRecord> GetCertificateStatus(std::string_view serial_hex) = 0;

  // Every certificate (any status, any owner) carrying this public key, ordered by serial; empty
  // if the key is new to the fleet.
  virtual Result<std::vector<CertificateRecord>> FindCertificatesByKey(
      std::string_view key_fingerprint) = 0;
  // FindCertificatesByKey for many keys in one consistent view (one read transaction): one list
  // per fingerprint, in order.
  virtual Result<std::vector<std::vector<CertificateRecord>>> FindCertificatesByKeys(
      std::span<const std::string> key_fingerprints) = 0;
  // Ordered by (not_before, serial). Empty for an unknown device.
  virtual Result<std::vector<CertificateRecord>> ListCertificatesForDevice(
      std::string_view device_id) = 0;

  // Every certificate, ordered by serial: at most `limit` (1..kMaxPageSize) whose serial sorts
  // after `after_serial` ("" for the first page; pass the last serial of a page for the next).
  // For audits that must visit the whole table without holding it in memory.
  virtual Result<std::vector<CertificateRecord>> ListCertificates(std::string_view after_serial,
                                                                  size_t limit) = 0;

  // Revoked certificates (any owner) with revoked_at >= filter.since, ordered by (revoked_at,
  // serial), at most `limit` (1..kMaxPageSize) after `cursor` ("" for the first page; else the
  // previous page's next_cursor). InvalidArgument for a bad limit or cursor.
  virtual Result<CertificatePage> ListRevokedCertificates(const RevokedFilter& filter, size_t limit,
                                                          std::string_view cursor) = 0;

  // Keyset pagination: at most `limit` (1..kMaxPageSize) devices after `cursor` ("" for the
  // first page), in the order devices were added to the inventory (the order a factory made
  // them), or as described in DeviceFilter::expiring_within. Rows
  // committed between pages appear or not according to their position, but no row is ever
  // returned twice or skipped because of them. InvalidArgument for a bad limit or a cursor that
  // does not come from the same kind of query.
  virtual Result<DevicePage> ListDevices(const DeviceFilter& filter, size_t limit,
                                         std::string_view cursor) = 0;
  // Exact, for any combination of filters, and without visiting every matching device: a
  // backend keeps counts in the same transaction as the rows (migration 2).
  virtual Result<int64_t> CountDevices(const DeviceFilter& filter) = 0;

  // The revoked certificates `issuer` ("manufacturing", "operational") issued, ordered by serial
  // (as text), those after `after_serial` ("" for the first page), at most `limit`
  // (1..kMaxPageSize). Read through an index of revoked certificates only (migration 5), so a
  // page costs its own rows, however many valid certificates the store holds. A CRL is built
  // from successive pages; revocations are final, so a page boundary neither repeats nor skips.
  virtual Result<std::vector<RevokedCertificate>> ListRevokedCertificatesOfIssuer(
      std::string_view issuer, std::string_view after_serial, size_t limit) = 0;
  // How many certificates `issuer` issued are revoked. It only grows (a revocation is final),
  // so a change tells a CRL publisher that revocations were committed, by any process. Costs one
  // pass over the index of revoked certificates of that issuer.
  virtual Result<int64_t> CountRevokedCertificates(std::string_view issuer) = 0;

  // The rows of the maintained inventory counts (migration 2): one per (state, model, batch)
  // holding devices, ordered by (state, model, batch), at most `limit` (1..kMaxPageSize). Costs
  // those rows only, however many devices there are (the dashboard's fleet overview).
  struct DeviceCountRow {
    DeviceState state = DeviceState::kManufactured;
    std::string model;
    std::string batch;
    int64_t n = 0;
    bool operator==(const DeviceCountRow&) const = default;
  };
  virtual Result<std::vector<DeviceCountRow>> ListDeviceCounts(size_t limit) = 0;

  // Devices counted on the UTC day (Unix day number, t / 86400) their earliest valid working
  // certificate expires, for the whole days from_day..to_day: a device is counted once, under
  // its certificate expiring first on or after from_day (a renewal whose predecessor expires in
  // the range waits its turn). Read from the maintained expiry counts as CountDevices reads its
  // whole days, so a year of days costs a few hundred count rows. Days without devices are
  // left out. InvalidArgument if to_day < from_day or the range exceeds 3660 days.
  struct ExpiryDayCount {
    int64_t day = 0;
    int64_t n = 0;
    bool operator==(const ExpiryDayCount&) const = default;
  };
  virtual Result<std::vector<ExpiryDayCount>> CountExpiriesByDay(int64_t from_day,
                                                                 int64_t to_day) = 0;

  // Audit rows with seq >= from_seq, ascending, at most `limit` (1..kMaxPageSize).
  virtual Result<std::vector<AuditRecord>> ReadAudit(int64_t from_seq, size_t limit) = 0;
  // The audit rows whose subject is `subject` (a device id, a certificate serial, ...) with
  // seq < before_seq, newest first, at most `limit` (1..kMaxPageSize): keyset pages over the
  // index audit_by_subject (migration 7), so a page costs its own rows however long the log is.
  virtual Result<std::vector<AuditRecord>> ReadAuditForSubject(std::string_view subject,
                                                               int64_t before_seq,
                                                               size_t limit) = 0;

  // Certificates recorded per UTC day of their recording (created_at / 86400), profile, issuer
  // and key origin, for the days from_day..to_day, from the count table issuance_counts kept in
  // the transaction that records each certificate (migration 7; rows recorded before it were
  // counted by the migration). Ordered by (day, profile, issuer, key origin); days without
  // certificates are left out. InvalidArgument if to_day < from_day or the range exceeds 3660
  // days. Costs the count rows of the range.
  struct IssuanceCount {
    int64_t day = 0;
    CertProfile profile = CertProfile::kLDevId;
    std::string issuer;
    std::optional<KeyOrigin> key_origin;  // none: not known (before version 7, or a CA's)
    int64_t n = 0;
    bool operator==(const IssuanceCount&) const = default;
  };
  virtual Result<std::vector<IssuanceCount>> CountIssuance(int64_t from_day, int64_t to_day) = 0;

  // What the compliance report measures from the rows themselves rather than trusting the
  // constraints that should make them zero. Unlike every other read here this visits every
  // device and every device certificate (one pass each, through covering indexes where there
  // are ones); the report says so and gives its run time.
  struct CredentialAudit {
    int64_t devices = 0;
    int64_t device_certificates = 0;
    // Device certificates whose public key public_keys gives to another owner (another device,
    // or the CA side): a key shared between devices.
    int64_t shared_keys = 0;
    // Devices whose device id another device also has: bootstrap secrets are derived from the
    // device id (HKDF of the master), so this counts devices sharing a bootstrap secret.
    int64_t shared_device_ids = 0;
    // Devices whose hardware fingerprint another device also has.
    int64_t shared_hardware_fingerprints = 0;
    // Devices (not decommissioned) last heard from (their newest certificate, first use of a
    // certificate, or last state change) longer ago than their newest valid working certificate
    // has left to live: they may stay offline until it expires. Not a pass: read from the
    // devices_stranding index (schema version 8), whose columns every write keeps.
    int64_t stranded = 0;
  };
  virtual Result<CredentialAudit> AuditCredentials(int64_t now) = 0;

  // Calls `visit` with the DER of every live device certificate (IDevID or LDevID, valid, not
  // expired at `now`) and returns how many there were: the compliance report reads the keys
  // themselves rather than the policy meant to limit them. Like AuditCredentials a pass over the
  // fleet's certificates, in one read transaction, paged by serial (keyset) so that no engine
  // holds more than a page of DER in memory.
  virtual Result<int64_t> VisitLiveDeviceCertificates(
      int64_t now, const std::function<void(ByteView der)>& visit) = 0;

  // Operator certificates (migration 7). NotFound for an unknown serial.
  virtual Result<OperatorCertificate> GetOperatorCertificate(std::string_view serial) = 0;
  // Every recorded operator certificate, ordered by (name, serial). The table holds one row per
  // certificate an admin issued: hundreds, not millions.
  virtual Result<std::vector<OperatorCertificate>> ListOperatorCertificates() = 0;

  // Bootstrap replay protection. A token is recorded by WriteBatch::RecordToken, in the
  // transaction of what it was used for; this read only tells whether (device_id, timestamp) is
  // recorded already (a committed batch's view), so that a replay is refused before any work.
  // Lookups accept upper- or lowercase hex.
  virtual Result<bool> IsTokenRecorded(std::string_view device_id, int64_t timestamp) = 0;
  // Forgets pairs whose token timestamp is < before and returns how many. Safe as soon as
  // before <= now - acceptance window, since older tokens are refused by the window check anyway.
  virtual Result<int64_t> PruneReplay(int64_t before) = 0;

  // --- Rotation campaigns (docs/rotation.md) ---

  // Creates the campaign and one pending job per device of the cohort in one transaction, with
  // `event` appended to the audit log (its subject and details are the caller's). The jobs are
  // inserted by the database from the cohort's index (INSERT ... SELECT, in pages), not row by
  // row from here; wave 0 is due at once. With dry_run the same work is done and rolled back.
  // Errors: AlreadyExists (the name is taken), FailedPrecondition (the cohort is empty),
  // NotFound (a listed device id is unknown), InvalidArgument (bad spec or cohort).
  struct CampaignPreview {
    Campaign campaign;  // As created (id 0 for a dry run).
    // Devices whose certificate (the job's old_serial) ends sooner than the time since the
    // device was last heard from (its latest certificate, or its last state change): they may
    // be offline until after it expires. Every one is counted; the first `stranded_limit` are
    // listed, ordered by ordinal.
    int64_t stranded = 0;
    std::vector<Job> stranded_jobs;
  };
  virtual Result<CampaignPreview> CreateCampaign(const CampaignSpec& spec,
                                                 const CampaignCohort& cohort,
                                                 const AuditEvent& event, bool dry_run,
                                                 size_t stranded_limit) = 0;

  // NotFound if no campaign has this name.
  virtual Result<Campaign> GetCampaign(std::string_view name) = 0;
  // Every campaign, newest first.
  virtual Result<std::vector<Campaign>> ListCampaigns() = 0;

  // The campaign's jobs counted per (wave, state), from counts kept with the jobs (no scan).
  struct WaveStateCount {
    int64_t wave = 0;
    JobState state = JobState::kPending;
    int64_t n = 0;
    bool operator==(const WaveStateCount&) const = default;
  };
  virtual Result<std::vector<WaveStateCount>> CountJobs(int64_t campaign_id) = 0;

  // Jobs after `after_ordinal` (-1 for the first page) in ordinal order, at most `limit`
  // (1..kMaxPageSize); with only_errors, only those with a last_error (failed, or retrying).
  virtual Result<std::vector<Job>> ListJobs(int64_t campaign_id, bool only_errors,
                                            int64_t after_ordinal, size_t limit) = 0;
  virtual Result<Job> GetJob(int64_t campaign_id, int64_t ordinal) = 0;
  // The device's unfinished jobs (pending, notified or enrolled) in campaigns not yet final
  // (running, paused or halted), oldest campaign first: what a re-enrollment or a confirmation
  // of the device moves on. Answered per campaign from the jobs' (campaign_id, device_seq) key;
  // an unknown device has none.
  virtual Result<std::vector<Job>> ListOpenJobsForDevice(std::string_view device_id) = 0;

  // Leases up to `limit` due jobs (state pending, notified or enrolled, next_attempt_at <= now,
  // no unexpired lease) of running campaigns, in waves already started, to `owner` until
  // now + lease; returns them. Claims are serialized with every other writer of the database,
  // so two servers over one store never hold the same job at once. A lease ends at its expiry
  // or with the job's next UpdateJob.
  virtual Result<std::vector<Job>> ClaimJobs(std::string_view owner, int64_t now,
                                             std::chrono::seconds lease, size_t limit) = 0;

  // The highest migration applied (kLatestSchemaVersion after a successful open).
  virtual Result<int> SchemaVersion() = 0;

 protected:
  Store() = default;
};

// Schema version this build writes. Every backend numbers its migrations identically.
//   1: devices, certificates, public_keys, audit_log, bootstrap_replay.
//   2: maintained inventory counts (device_counts, expiry_certs, expiry_counts), filled from the
//      existing rows.
//   3: devices numbered in insertion order (seq; listings page by it), the device indexes end
//      with it, certificates_by_key dropped: append-ordered indexes for factory batches.
//   4: binary ids (device ids and key fingerprints as 32-byte blobs), certificates name their
//      device by seq.
//   5: certificates.first_used_at (renewal bound to the current working certificate) and an
//      index of revoked certificates by (revoked_at, serial).
//   5 also: certificates_revoked_by_issuer, a partial index of revoked certificates by (issuer,
//      serial), for CRLs.
//   6: rotation campaigns: campaigns, rotation_jobs, campaign_counts, certificates_by_issuer.
//   7: the operator's view: certificates.key_origin, issuance_counts (filled from the existing
//      rows), audit_by_subject, operator_certificates (filled from the admin.issue audit rows).
//   8: devices.heard_at and devices.ldevid_not_after (filled from the rows, then kept with every
//      write) and devices_stranding, so that the stranded-devices count is an index seek.
inline constexpr int kLatestSchemaVersion = 8;

}  // namespace iotpki::store
