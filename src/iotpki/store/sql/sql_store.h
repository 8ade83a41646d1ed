// The Store interface written once in SQL over the driver interface of db.h: the batch writer
// with its count-table upkeep and audit chain, the list, count and expiry queries, cursors.
// Backends (sqlite/, postgres/) open their connections, apply their schema migrations and hand a
// Pool to SqlStore; what is particular to an engine stays in its driver.
//
// Thread safety: every method may be called from any number of threads. Commits run on the
// pool's one writer connection, in a kWrite transaction, which the engine serializes with every
// other writer of the database; reads run on pooled read connections.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "iotpki/common/clock.h"
#include "iotpki/common/error.h"
#include "iotpki/store/sql/db.h"
#include "iotpki/store/store.h"

namespace iotpki::store::sql {

// The highest migration recorded in schema_migrations (0 if none).
Result<int> CurrentSchemaVersion(Connection& conn);

// FailedPrecondition when a database was written by a newer build.
Result<void> RefuseNewerSchema(int version);

// Adds `delta` (of either sign) to device_counts' row for (state, model, batch), inside the
// caller's write transaction; a row that reaches zero is removed.
Result<void> AddDeviceCount(Connection& conn, std::string_view state, std::string_view model,
                            std::string_view batch, int64_t delta);

// Adds `n` certificates recorded on `day` to issuance_counts' row for (profile, issuer,
// key_origin; "" when unknown), inside the caller's write transaction.
Result<void> AddIssuanceCount(Connection& conn, int64_t day, std::string_view profile,
                              std::string_view issuer, std::string_view key_origin, int64_t n);

// The SELECT of one ListDevices page: device columns, then (expiring_within) cert_serial and
// cert_not_after, then device_seq; ordered by the filter's keyset, `fetch` rows after `cursor`.
// Campaign creation inserts its jobs from exactly this query (sql_campaigns.cc).
Result<Query> BuildDeviceListQuery(const DeviceFilter& filter, size_t fetch,
                                   std::string_view cursor, int64_t now);

// Applied by the batch writer (sql_campaigns.cc), inside its write transaction.
Result<void> ApplyUpdateJob(Connection& conn, int64_t now, const UpdateJobOp& op);
Result<void> ApplyUpdateCampaign(Connection& conn, int64_t now, const UpdateCampaignOp& op);

class SqlStore : public Store {
 public:
  ~SqlStore() override;

  Result<CommitInfo> Commit(const WriteBatch& batch) override;
  Result<Device> GetDevice(std::string_view device_id) override;
  Result<Device> GetDeviceBySerial(std::string_view serial) override;
  Result<std::vector<std::optional<Device>>> GetDevicesBySerial(
      std::span<const std::string> serials) override;
  Result<CertificateRecord> GetCertificate(std::string_view serial_hex) override;
  Result<CertificateStatusRecord> GetCertificateStatus(std::string_view serial_hex) override;
  Result<std::vector<CertificateRecord>> FindCertificatesByKey(
      std::string_view key_fingerprint) override;
  Result<std::vector<std::vector<CertificateRecord>>> FindCertificatesByKeys(
      std::span<const std::string> key_fingerprints) override;
  Result<std::vector<CertificateRecord>> ListCertificates(std::string_view after_serial,
                                                          size_t limit) override;
  Result<std::vector<CertificateRecord>> ListCertificatesForDevice(
      std::string_view device_id) override;
  Result<CertificatePage> ListRevokedCertificates(const RevokedFilter& filter, size_t limit,
                                                  std::string_view cursor) override;
  Result<DevicePage> ListDevices(const DeviceFilter& filter, size_t limit,
                                 std::string_view cursor) override;
  Result<int64_t> CountDevices(const DeviceFilter& filter) override;
  Result<std::vector<DeviceCountRow>> ListDeviceCounts(size_t limit) override;
  Result<std::vector<ExpiryDayCount>> CountExpiriesByDay(int64_t from_day, int64_t to_day) override;
  Result<std::vector<RevokedCertificate>> ListRevokedCertificatesOfIssuer(
      std::string_view issuer, std::string_view after_serial, size_t limit) override;
  Result<int64_t> CountRevokedCertificates(std::string_view issuer) override;
  Result<std::vector<AuditRecord>> ReadAudit(int64_t from_seq, size_t limit) override;
  Result<std::vector<AuditRecord>> ReadAuditForSubject(std::string_view subject, int64_t before_seq,
                                                       size_t limit) override;
  Result<std::vector<IssuanceCount>> CountIssuance(int64_t from_day, int64_t to_day) override;
  Result<CredentialAudit> AuditCredentials(int64_t now) override;
  Result<int64_t> VisitLiveDeviceCertificates(
      int64_t now, const std::function<void(ByteView der)>& visit) override;
  Result<OperatorCertificate> GetOperatorCertificate(std::string_view serial) override;
  Result<std::vector<OperatorCertificate>> ListOperatorCertificates() override;
  Result<bool> IsTokenRecorded(std::string_view device_id, int64_t timestamp) override;
  Result<int64_t> PruneReplay(int64_t before) override;
  Result<int> SchemaVersion() override;

  Result<CampaignPreview> CreateCampaign(const CampaignSpec& spec, const CampaignCohort& cohort,
                                         const AuditEvent& event, bool dry_run,
                                         size_t stranded_limit) override;
  Result<Campaign> GetCampaign(std::string_view name) override;
  Result<std::vector<Campaign>> ListCampaigns() override;
  Result<std::vector<WaveStateCount>> CountJobs(int64_t campaign_id) override;
  Result<std::vector<Job>> ListJobs(int64_t campaign_id, bool only_errors, int64_t after_ordinal,
                                    size_t limit) override;
  Result<Job> GetJob(int64_t campaign_id, int64_t ordinal) override;
  Result<std::vector<Job>> ListOpenJobsForDevice(std::string_view device_id) override;
  Result<std::vector<Job>> ClaimJobs(std::string_view owner, int64_t now,
                                     std::chrono::seconds lease, size_t limit) override;

  // Every row of this store (devices, certificates, public keys, the audit log row by row, the
  // replay table and the count tables) copied into `target`, read from one snapshot and written
  // in one write transaction: all or nothing. FailedPrecondition, with nothing written, if
  // `target` holds any device, certificate, key, audit or replay row. The target's own schema
  // (its migrations) is kept. Returns the rows copied per table.
  struct CopyCounts {
    std::vector<std::pair<std::string, int64_t>> tables;  // in copy order
  };
  Result<CopyCounts> CopyInto(SqlStore& target);

  // --- Test hooks. Not for production code: they bypass every rule of the store. ---

  // Runs raw SQL on the writer connection (tampering with the audit log, simulating a full disk,
  // holding a lock).
  Result<void> ExecForTest(std::string_view sql);
  // Runs a query on the writer connection and returns the first column of the first row as text
  // ("" if no row).
  Result<std::string> QueryForTest(std::string_view sql);
  // The engine's plan (Connection::Explain) of exactly the SQL that ListDevices / CountDevices
  // run for these arguments, with the clock's current time.
  Result<std::string> ExplainListDevicesForTest(const DeviceFilter& filter, size_t limit,
                                                std::string_view cursor);
  Result<std::string> ExplainCountDevicesForTest(const DeviceFilter& filter);
  // The plan of FindCertificatesByKey's second query, for a key of a device or (false) of the CA
  // side.
  Result<std::string> ExplainFindCertificatesByKeyForTest(bool device_owner);
  // Rows per INSERT ... SELECT when a campaign's cohort is inserted (default 10000), so that a
  // test crosses pages with a few devices. Set before any concurrent use.
  void SetCohortPageForTest(size_t rows) { cohort_page_ = rows; }
  // The plan of ListRevokedCertificatesOfIssuer's query (a first page of the operational CA's).
  Result<std::string> ExplainListRevokedForTest();
  // Certificates per page of VisitLiveDeviceCertificates (default 10000), so that a test crosses
  // pages with a few certificates; and the plan of one page after a serial.
  void SetVisitPageForTest(size_t rows) { visit_page_ = rows; }
  Result<std::string> ExplainVisitLiveDeviceCertificatesForTest();
  // The plan of AuditCredentials' stranded-devices count.
  Result<std::string> ExplainStrandedCountForTest();

 protected:
  // `clock` must outlive the store.
  SqlStore(const Clock& clock, std::unique_ptr<Pool> pool);

  // Applies `batch` on `conn` inside an open kWrite transaction, stamping `info.time`; the
  // caller commits. Backends with a bulk path (PostgreSQL's COPY) call it for the batches they
  // leave to it.
  Result<void> ApplyBatch(Connection& conn, const WriteBatch& batch, CommitInfo& info);

  // Commit's work on the writer connection; a backend may override it to try a faster path first.
  virtual Result<CommitInfo> CommitOn(Connection& conn, const WriteBatch& batch);

  const Clock& clock() const { return clock_; }
  Pool& pool() { return *pool_; }

 private:
  const Clock& clock_;
  std::unique_ptr<Pool> pool_;
  // Rows per INSERT ... SELECT while a cohort is inserted: bounds each statement's work (and
  // PostgreSQL's memory for it) without a round trip per device.
  size_t cohort_page_ = 10000;
  // Certificates per page of VisitLiveDeviceCertificates: bounds the DER an engine holds at once
  // (PostgreSQL's client library holds a whole result).
  size_t visit_page_ = 10000;
};

}  // namespace iotpki::store::sql
