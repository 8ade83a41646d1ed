// Rotation campaigns in the shared SQL store: creation (the cohort inserted by the database,
// page by page, from the inventory's own queries), reads, job claims with leases, and the two
// batch operations that move jobs and campaigns on. Schema: migration 5.
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "iotpki/common/clock.h"
#include "iotpki/store/sql/sql_store.h"
#include "iotpki/store/validate.h"

namespace iotpki::store::sql {
namespace {

constexpr std::string_view kCampaignColumns =
    "id, name, filter, mode, wave_size, max_failure_ppm, retry_after, max_attempts, deadline, "
    "state, state_reason, jobs, waves, current_wave, wave_started_at, created_at, updated_at";

constexpr std::string_view kJobColumns =
    "j.campaign_id, j.ordinal, d.device_id, j.wave, j.state, j.attempts, j.next_attempt_at, "
    "j.last_error, j.lease_owner, j.lease_until, j.old_serial, j.new_serial, j.updated_at";
constexpr std::string_view kJobsWithDevice =
    " FROM rotation_jobs j CROSS JOIN devices d WHERE d.seq = j.device_seq AND ";

// The device's newest valid certificate with a finite notAfter (its LDevID; IDevIDs never
// expire), answered from certificates_by_device. `seq` is the SQL naming the device's seq.
std::string CurrentCertSql(std::string_view seq) {
  return "(SELECT e.serial FROM certificates e WHERE e.device_seq = " + std::string(seq) +
         " AND e.status = 'valid' AND e.not_after < " + std::to_string(kNoExpiryUnix) +
         " ORDER BY e.not_after DESC, e.serial DESC LIMIT 1)";
}

Error Unreadable(const Error& cause) {
  return Error(Code::kDataLoss, "unreadable campaign row", cause.ToString());
}

Result<Campaign> ReadCampaign(const Statement& s) {
  Campaign c;
  c.id = s.Int64(0);
  c.spec.name = s.Text(1);
  c.spec.filter_json = s.Text(2);
  auto mode = ParseCampaignMode(s.Text(3));
  if (!mode) return Fail(Unreadable(mode.error()));
  c.spec.mode = *mode;
  c.spec.wave_size = s.Int64(4);
  c.spec.max_failure_ppm = s.Int64(5);
  c.spec.retry_after = s.Int64(6);
  c.spec.max_attempts = s.Int64(7);
  c.spec.deadline = s.Int64(8);
  auto state = ParseCampaignState(s.Text(9));
  if (!state) return Fail(Unreadable(state.error()));
  c.state = *state;
  c.state_reason = s.Text(10);
  c.jobs = s.Int64(11);
  c.waves = s.Int64(12);
  c.current_wave = s.Int64(13);
  c.wave_started_at = s.Int64(14);
  c.created_at = s.Int64(15);
  c.updated_at = s.Int64(16);
  return c;
}

Result<Job> ReadJob(const Statement& s) {
  Job j;
  j.campaign_id = s.Int64(0);
  j.ordinal = s.Int64(1);
  j.device_id = ToHex(s.Blob(2));
  j.wave = s.Int64(3);
  auto state = ParseJobState(s.Text(4));
  if (!state) return Fail(Unreadable(state.error()));
  j.state = *state;
  j.attempts = s.Int64(5);
  j.next_attempt_at = s.Int64(6);
  j.last_error = s.OptionalText(7);
  j.lease_owner = s.OptionalText(8);
  j.lease_until = s.OptionalInt64(9);
  j.old_serial = s.OptionalText(10);
  j.new_serial = s.OptionalText(11);
  j.updated_at = s.Int64(12);
  return j;
}

Result<std::vector<Job>> ReadJobs(Statement& s) {
  std::vector<Job> out;
  for (;;) {
    IOTPKI_TRY(bool row, s.Step());
    if (!row) return out;
    IOTPKI_TRY(auto job, ReadJob(s));
    out.push_back(std::move(job));
  }
}

Result<void> AddJobCount(Connection& conn, int64_t campaign_id, int64_t wave,
                         std::string_view state, int64_t delta) {
  IOTPKI_TRY(auto up, conn.Prepare("INSERT INTO campaign_counts (campaign_id, wave, state, n) "
                                   "VALUES (?1, ?2, ?3, ?4) ON CONFLICT (campaign_id, wave, "
                                   "state) DO UPDATE SET n = campaign_counts.n + excluded.n"));
  up->Bind(1, campaign_id);
  up->Bind(2, wave);
  up->Bind(3, state);
  up->Bind(4, delta);
  return up->Run();
}

// The INSERT that turns one page of a cohort query `page` into jobs numbered from `base`.
// `old_serial` is SQL over the page's columns (sub.*).
Query JobInsert(const Campaign& c, int64_t base, const Query& page, std::string_view order,
                std::string_view old_serial, int64_t now) {
  Query q;
  std::string ordinal =
      "(CAST(? AS BIGINT) + ROW_NUMBER() OVER (ORDER BY " + std::string(order) + ") - 1)";
  q.sql =
      "INSERT INTO rotation_jobs (campaign_id, ordinal, device_seq, wave, state, attempts, "
      "next_attempt_at, old_serial, updated_at) SELECT CAST(? AS BIGINT), " +
      ordinal + ", sub.device_seq, " + ordinal +
      " / CAST(? AS BIGINT), 'pending', 0, CAST(? AS BIGINT), " + std::string(old_serial) +
      ", CAST(? AS BIGINT) FROM (" + page.sql + ") sub";
  q.params.emplace_back(c.id);
  q.params.emplace_back(base);
  q.params.emplace_back(base);
  q.params.emplace_back(c.spec.wave_size);
  q.params.emplace_back(kNotYetDue);
  q.params.emplace_back(now);
  q.params.insert(q.params.end(), page.params.begin(), page.params.end());
  return q;
}

// Inserts the jobs of a filter cohort (ListDevices' queries) page by page; returns how many.
Result<int64_t> InsertFilterCohort(Connection& conn, const Campaign& c, const DeviceFilter& f,
                                   int64_t now, size_t page_rows) {
  int64_t total = 0;
  std::string cursor;
  for (;;) {
    IOTPKI_TRY(Query page, BuildDeviceListQuery(f, page_rows, cursor, now));
    Query insert =
        f.expiring_within
            ? JobInsert(c, total, page, "sub.cert_not_after, sub.cert_serial", "sub.cert_serial",
                        now)
            : JobInsert(c, total, page, "sub.device_seq", CurrentCertSql("sub.device_seq"), now);
    IOTPKI_TRY(auto stmt, conn.Prepare(insert.sql));
    insert.BindTo(*stmt);
    IOTPKI_CHECK(stmt->Run());
    int64_t added = stmt->Changes();
    total += added;
    if (added < static_cast<int64_t>(page_rows)) return total;
    // The next page starts after the last job inserted: its device, or its certificate.
    IOTPKI_TRY(auto last, conn.Prepare("SELECT j.device_seq, c.not_after, c.serial FROM "
                                       "rotation_jobs j LEFT JOIN certificates c ON c.serial = "
                                       "j.old_serial WHERE j.campaign_id = ?1 AND j.ordinal = ?2"));
    last->Bind(1, c.id);
    last->Bind(2, total - 1);
    IOTPKI_TRY(bool row, last->Step());
    if (!row) return Fail(Code::kInternal, "the last job of a cohort page is missing");
    cursor = f.expiring_within ? EncodeCursor(ExpiringCursor{last->Int64(1), last->Text(2)})
                               : EncodeCursor(DeviceSeqCursor{last->Int64(0)});
  }
}

// Devices holding a valid certificate of CA `issuer`, through certificates_by_issuer.
Result<int64_t> InsertIssuerCohort(Connection& conn, const Campaign& c, const std::string& issuer,
                                   int64_t now, size_t page_rows) {
  int64_t total = 0;
  int64_t after = 0;
  for (;;) {
    Query page;
    page.sql =
        "SELECT DISTINCT c.device_seq AS device_seq FROM certificates c WHERE c.issuer = ? AND "
        "c.status = 'valid' AND c.device_seq IS NOT NULL AND c.device_seq > ? ORDER BY "
        "c.device_seq LIMIT ?";
    page.params = {issuer, after, static_cast<int64_t>(page_rows)};
    Query insert =
        JobInsert(c, total, page, "sub.device_seq", CurrentCertSql("sub.device_seq"), now);
    IOTPKI_TRY(auto stmt, conn.Prepare(insert.sql));
    insert.BindTo(*stmt);
    IOTPKI_CHECK(stmt->Run());
    int64_t added = stmt->Changes();
    total += added;
    if (added < static_cast<int64_t>(page_rows)) return total;
    IOTPKI_TRY(auto last, conn.Prepare("SELECT device_seq FROM rotation_jobs WHERE "
                                       "campaign_id = ?1 AND ordinal = ?2"));
    last->Bind(1, c.id);
    last->Bind(2, total - 1);
    IOTPKI_TRY(bool row, last->Step());
    if (!row) return Fail(Code::kInternal, "the last job of a cohort page is missing");
    after = last->Int64(0);
  }
}

// A list given by hand: one statement per device (the list is as long as a person made it).
// A device listed twice gets one job.
Result<int64_t> InsertListedCohort(Connection& conn, const Campaign& c,
                                   const std::vector<std::string>& ids, int64_t now) {
  IOTPKI_TRY(
      auto stmt,
      conn.Prepare("INSERT INTO rotation_jobs (campaign_id, ordinal, device_seq, wave, "
                   "state, attempts, next_attempt_at, old_serial, updated_at) SELECT CAST(?1 AS "
                   "BIGINT), CAST(?2 AS BIGINT), d.seq, CAST(?3 AS BIGINT), 'pending', 0, "
                   "CAST(?4 AS BIGINT), " +
                   CurrentCertSql("d.seq") +
                   ", CAST(?5 AS BIGINT) FROM devices d WHERE d.device_id = ?6"));
  std::set<std::string> seen;
  int64_t total = 0;
  for (const std::string& hex : ids) {
    std::string id = ToLowerAscii(hex);
    if (!seen.insert(id).second) continue;
    auto blob = FromHex(id);
    if (!blob) return Fail(Code::kInvalidArgument, "device id " + id + " is not hex");
    stmt->Bind(1, c.id);
    stmt->Bind(2, total);
    stmt->Bind(3, total / c.spec.wave_size);
    stmt->Bind(4, kNotYetDue);
    stmt->Bind(5, now);
    stmt->Bind(6, ByteView(*blob));
    IOTPKI_CHECK(stmt->Run());
    int64_t added = stmt->Changes();
    stmt->Reset();
    if (added != 1) return Fail(Code::kNotFound, "device " + id + " not found");
    ++total;
  }
  return total;
}

// Makes the pending jobs of `wave` due at `now` (they were inserted not yet due).
Result<void> MakeWaveDue(Connection& conn, int64_t campaign_id, int64_t wave_size, int64_t wave,
                         int64_t now) {
  IOTPKI_TRY(auto stmt, conn.Prepare("UPDATE rotation_jobs SET next_attempt_at = ?1 WHERE "
                                     "campaign_id = ?2 AND ordinal >= ?3 AND ordinal < ?4 AND "
                                     "state = 'pending' AND next_attempt_at = ?5"));
  stmt->Bind(1, now);
  stmt->Bind(2, campaign_id);
  stmt->Bind(3, wave * wave_size);
  stmt->Bind(4, (wave + 1) * wave_size);
  stmt->Bind(5, kNotYetDue);
  return stmt->Run();
}

Result<std::optional<Campaign>> FindCampaign(Connection& conn, std::string_view name) {
  IOTPKI_TRY(auto stmt, conn.Prepare("SELECT " + std::string(kCampaignColumns) +
                                     " FROM campaigns WHERE name = ?1"));
  stmt->Bind(1, name);
  IOTPKI_TRY(bool row, stmt->Step());
  if (!row) return std::optional<Campaign>();
  IOTPKI_TRY(auto c, ReadCampaign(*stmt));
  return std::optional<Campaign>(std::move(c));
}

}  // namespace

Result<void> ApplyUpdateJob(Connection& conn, int64_t now, const UpdateJobOp& op) {
  IOTPKI_TRY(auto stmt,
             conn.Prepare("UPDATE rotation_jobs SET state = ?1, attempts = COALESCE(?2, "
                          "attempts), next_attempt_at = COALESCE(?3, next_attempt_at), "
                          "last_error = COALESCE(?4, last_error), new_serial = COALESCE(?5, "
                          "new_serial), lease_owner = NULL, lease_until = NULL, updated_at = ?6 "
                          "WHERE campaign_id = ?7 AND ordinal = ?8 AND state = ?9"));
  stmt->Bind(1, JobStateName(op.to));
  stmt->Bind(2, op.attempts);
  stmt->Bind(3, op.next_attempt_at);
  stmt->Bind(4, op.last_error);
  stmt->Bind(5, op.new_serial);
  stmt->Bind(6, now);
  stmt->Bind(7, op.campaign_id);
  stmt->Bind(8, op.ordinal);
  stmt->Bind(9, JobStateName(op.from));
  IOTPKI_CHECK(stmt->Run());
  bool updated = stmt->Changes() == 1;
  IOTPKI_TRY(auto job, conn.Prepare("SELECT wave, state FROM rotation_jobs WHERE campaign_id = ?1 "
                                    "AND ordinal = ?2"));
  job->Bind(1, op.campaign_id);
  job->Bind(2, op.ordinal);
  IOTPKI_TRY(bool found, job->Step());
  std::string name = "job " + std::to_string(op.campaign_id) + ":" + std::to_string(op.ordinal);
  if (!found) return Fail(Code::kNotFound, name + " not found");
  if (!updated) {
    return Fail(Code::kAborted,
                name + " is " + job->Text(1) + ", not " + std::string(JobStateName(op.from)));
  }
  int64_t wave = job->Int64(0);
  job->Reset();
  if (op.from == op.to) return {};
  IOTPKI_CHECK(AddJobCount(conn, op.campaign_id, wave, JobStateName(op.from), -1));
  return AddJobCount(conn, op.campaign_id, wave, JobStateName(op.to), 1);
}

Result<void> ApplyUpdateCampaign(Connection& conn, int64_t now, const UpdateCampaignOp& op) {
  IOTPKI_TRY(auto read, conn.Prepare("SELECT state, current_wave, waves, wave_size, "
                                     "wave_started_at FROM campaigns WHERE id = ?1"));
  read->Bind(1, op.campaign_id);
  IOTPKI_TRY(bool found, read->Step());
  std::string name = "campaign " + std::to_string(op.campaign_id);
  if (!found) return Fail(Code::kNotFound, name + " not found");
  std::string state = read->Text(0);
  int64_t current_wave = read->Int64(1);
  int64_t waves = read->Int64(2);
  int64_t wave_size = read->Int64(3);
  int64_t started = read->Int64(4);
  read->Reset();
  if (state != CampaignStateName(op.from)) {
    return Fail(Code::kAborted,
                name + " is " + state + ", not " + std::string(CampaignStateName(op.from)));
  }
  int64_t wave = current_wave;
  if (op.start_wave) {
    if (*op.start_wave != current_wave + 1) {
      return Fail(Code::kAborted, name + " is at wave " + std::to_string(current_wave) +
                                      ", so wave " + std::to_string(*op.start_wave) +
                                      " cannot start");
    }
    if (*op.start_wave >= waves) {
      return Fail(Code::kInvalidArgument, name + " has " + std::to_string(waves) +
                                              " waves, no wave " + std::to_string(*op.start_wave));
    }
    wave = *op.start_wave;
    started = now;
    IOTPKI_CHECK(MakeWaveDue(conn, op.campaign_id, wave_size, wave, now));
  }
  IOTPKI_TRY(auto stmt,
             conn.Prepare("UPDATE campaigns SET state = ?1, state_reason = ?2, current_wave = ?3, "
                          "wave_started_at = ?4, "
                          "updated_at = ?5 WHERE id = ?6"));
  stmt->Bind(1, CampaignStateName(op.to));
  stmt->Bind(2, std::string_view(op.reason));
  stmt->Bind(3, wave);
  stmt->Bind(4, started);
  stmt->Bind(5, now);
  stmt->Bind(6, op.campaign_id);
  return stmt->Run();
}

Result<Store::CampaignPreview> SqlStore::CreateCampaign(const CampaignSpec& spec,
                                                        const CampaignCohort& cohort,
                                                        const AuditEvent& event, bool dry_run,
                                                        size_t stranded_limit) {
  IOTPKI_CHECK(ValidateCampaignSpec(spec));
  IOTPKI_CHECK(ValidateCohort(cohort));
  IOTPKI_CHECK(ValidateBatch(WriteBatch().AppendAudit(event)));
  return pool().WithWriter([&](Connection& conn) -> Result<CampaignPreview> {
    IOTPKI_TRY(auto tx, Transaction::Begin(conn));
    CommitInfo info;
    info.time = clock().NowUnix();
    int64_t now = info.time;
    IOTPKI_TRY(auto existing, FindCampaign(conn, spec.name));
    if (existing) {
      return Fail(Code::kAlreadyExists, "a campaign named '" + spec.name + "' exists already");
    }
    CampaignPreview preview;
    Campaign& c = preview.campaign;
    c.spec = spec;
    c.state = CampaignState::kRunning;
    c.wave_started_at = now;
    c.created_at = now;
    c.updated_at = now;
    {
      IOTPKI_TRY(auto insert,
                 conn.Prepare("INSERT INTO campaigns (name, filter, mode, wave_size, "
                              "max_failure_ppm, retry_after, max_attempts, deadline, state, "
                              "state_reason, jobs, waves, current_wave, wave_started_at, "
                              "created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, "
                              "'running', '', 0, 0, 0, ?9, ?9, ?9) RETURNING id"));
      insert->Bind(1, std::string_view(spec.name));
      insert->Bind(2, std::string_view(spec.filter_json));
      insert->Bind(3, CampaignModeName(spec.mode));
      insert->Bind(4, spec.wave_size);
      insert->Bind(5, spec.max_failure_ppm);
      insert->Bind(6, spec.retry_after);
      insert->Bind(7, spec.max_attempts);
      insert->Bind(8, spec.deadline);
      insert->Bind(9, now);
      IOTPKI_TRY(bool row, insert->Step());
      if (!row) return Fail(Code::kInternal, "campaign insert returned no id");
      c.id = insert->Int64(0);
    }
    int64_t jobs = 0;
    if (cohort.devices) {
      IOTPKI_TRY(jobs, InsertFilterCohort(conn, c, *cohort.devices, now, cohort_page_));
    } else if (cohort.issued_by) {
      IOTPKI_TRY(jobs, InsertIssuerCohort(conn, c, *cohort.issued_by, now, cohort_page_));
    } else {
      IOTPKI_TRY(jobs, InsertListedCohort(conn, c, *cohort.device_ids, now));
    }
    if (jobs == 0) {
      return Fail(Code::kFailedPrecondition, "the campaign's filter selects no device");
    }
    c.jobs = jobs;
    c.waves = (jobs + spec.wave_size - 1) / spec.wave_size;
    IOTPKI_CHECK(MakeWaveDue(conn, c.id, spec.wave_size, 0, now));
    {
      IOTPKI_TRY(auto update,
                 conn.Prepare("UPDATE campaigns SET jobs = ?1, waves = ?2 WHERE id = ?3"));
      update->Bind(1, c.jobs);
      update->Bind(2, c.waves);
      update->Bind(3, c.id);
      IOTPKI_CHECK(update->Run());
      IOTPKI_TRY(auto counts,
                 conn.Prepare("INSERT INTO campaign_counts (campaign_id, wave, state, n) SELECT "
                              "?1, wave, 'pending', CAST(COUNT(*) AS BIGINT) FROM rotation_jobs "
                              "WHERE campaign_id = ?1 GROUP BY wave"));
      counts->Bind(1, c.id);
      IOTPKI_CHECK(counts->Run());
    }
    IOTPKI_CHECK(ApplyBatch(conn, WriteBatch().AppendAudit(event), info));
    if (dry_run) {
      // Devices last heard from (their newest certificate, or their last state change) longer
      // ago than their certificate has left to live.
      IOTPKI_TRY(auto stmt,
                 conn.Prepare("SELECT " + std::string(kJobColumns) +
                              " FROM rotation_jobs j CROSS JOIN devices d CROSS JOIN "
                              "certificates c WHERE j.campaign_id = ?1 AND d.seq = j.device_seq "
                              "AND c.serial = j.old_serial AND ?2 - (SELECT CASE WHEN "
                              "MAX(e.created_at) > d.updated_at THEN MAX(e.created_at) ELSE "
                              "d.updated_at END FROM certificates e WHERE e.device_seq = d.seq) "
                              "> c.not_after - ?2 ORDER BY j.ordinal"));
      stmt->Bind(1, c.id);
      stmt->Bind(2, now);
      for (;;) {
        IOTPKI_TRY(bool row, stmt->Step());
        if (!row) break;
        ++preview.stranded;
        if (preview.stranded_jobs.size() < stranded_limit) {
          IOTPKI_TRY(auto job, ReadJob(*stmt));
          preview.stranded_jobs.push_back(std::move(job));
        }
      }
      for (Job& job : preview.stranded_jobs) job.campaign_id = 0;
      c.id = 0;
      return preview;  // The transaction rolls back.
    }
    IOTPKI_CHECK(tx.Commit());
    return preview;
  });
}

Result<Campaign> SqlStore::GetCampaign(std::string_view name) {
  return pool().WithReader([&](Connection& conn) -> Result<Campaign> {
    IOTPKI_TRY(auto found, FindCampaign(conn, name));
    if (!found) return Fail(Code::kNotFound, "no campaign named '" + std::string(name) + "'");
    return *std::move(found);
  });
}

Result<std::vector<Campaign>> SqlStore::ListCampaigns() {
  return pool().WithReader([&](Connection& conn) -> Result<std::vector<Campaign>> {
    IOTPKI_TRY(auto stmt, conn.Prepare("SELECT " + std::string(kCampaignColumns) +
                                       " FROM campaigns ORDER BY id DESC"));
    std::vector<Campaign> out;
    for (;;) {
      IOTPKI_TRY(bool row, stmt->Step());
      if (!row) return out;
      IOTPKI_TRY(auto c, ReadCampaign(*stmt));
      out.push_back(std::move(c));
    }
  });
}

Result<std::vector<Store::WaveStateCount>> SqlStore::CountJobs(int64_t campaign_id) {
  return pool().WithReader([&](Connection& conn) -> Result<std::vector<WaveStateCount>> {
    IOTPKI_TRY(auto stmt, conn.Prepare("SELECT wave, state, n FROM campaign_counts WHERE "
                                       "campaign_id = ?1 AND n <> 0 ORDER BY wave, state"));
    stmt->Bind(1, campaign_id);
    std::vector<WaveStateCount> out;
    for (;;) {
      IOTPKI_TRY(bool row, stmt->Step());
      if (!row) return out;
      auto state = ParseJobState(stmt->Text(1));
      if (!state) return Fail(Unreadable(state.error()));
      out.push_back({stmt->Int64(0), *state, stmt->Int64(2)});
    }
  });
}

Result<std::vector<Job>> SqlStore::ListJobs(int64_t campaign_id, bool only_errors,
                                            int64_t after_ordinal, size_t limit) {
  IOTPKI_CHECK(ValidatePageSize(limit));
  return pool().WithReader([&](Connection& conn) -> Result<std::vector<Job>> {
    IOTPKI_TRY(auto stmt,
               conn.Prepare("SELECT " + std::string(kJobColumns) + std::string(kJobsWithDevice) +
                            "j.campaign_id = ?1 AND j.ordinal > ?2" +
                            (only_errors ? " AND j.last_error IS NOT NULL" : "") +
                            " ORDER BY j.ordinal LIMIT ?3"));
    stmt->Bind(1, campaign_id);
    stmt->Bind(2, after_ordinal);
    stmt->Bind(3, static_cast<int64_t>(limit));
    return ReadJobs(*stmt);
  });
}

Result<Job> SqlStore::GetJob(int64_t campaign_id, int64_t ordinal) {
  return pool().WithReader([&](Connection& conn) -> Result<Job> {
    IOTPKI_TRY(auto stmt,
               conn.Prepare("SELECT " + std::string(kJobColumns) + std::string(kJobsWithDevice) +
                            "j.campaign_id = ?1 AND j.ordinal = ?2"));
    stmt->Bind(1, campaign_id);
    stmt->Bind(2, ordinal);
    IOTPKI_TRY(auto jobs, ReadJobs(*stmt));
    if (jobs.empty()) {
      return Fail(Code::kNotFound, "job " + std::to_string(campaign_id) + ":" +
                                       std::to_string(ordinal) + " not found");
    }
    return std::move(jobs.front());
  });
}

Result<std::vector<Job>> SqlStore::ListOpenJobsForDevice(std::string_view device_id) {
  auto id = FromHex(ToLowerAscii(device_id));
  if (!id || id->size() != 32) return std::vector<Job>();
  return pool().WithReader([&](Connection& conn) -> Result<std::vector<Job>> {
    // Campaigns are few; each lookup is one probe of the (campaign_id, device_seq) key.
    IOTPKI_TRY(auto stmt,
               conn.Prepare("SELECT " + std::string(kJobColumns) +
                            " FROM campaigns c CROSS JOIN devices d CROSS JOIN rotation_jobs j "
                            "WHERE c.state IN ('running', 'paused', 'halted') AND d.device_id = ?1 "
                            "AND j.campaign_id = c.id AND j.device_seq = d.seq AND j.state IN "
                            "('pending', 'notified', 'enrolled') ORDER BY j.campaign_id"));
    stmt->Bind(1, ByteView(*id));
    return ReadJobs(*stmt);
  });
}

Result<std::vector<Job>> SqlStore::ClaimJobs(std::string_view owner, int64_t now,
                                             std::chrono::seconds lease, size_t limit) {
  IOTPKI_CHECK(ValidatePageSize(limit));
  if (owner.empty() || owner.size() > kMaxTextBytes) {
    return Fail(Code::kInvalidArgument, "a lease owner is 1 to 1024 bytes");
  }
  if (lease.count() < 1) return Fail(Code::kInvalidArgument, "a lease lasts at least 1 s");
  // A write transaction: the read of what is free and the lease taken on it are one step for
  // every other writer of the database (SQLite's BEGIN IMMEDIATE, PostgreSQL's writer lock).
  return pool().WithWriter([&](Connection& conn) -> Result<std::vector<Job>> {
    IOTPKI_TRY(auto tx, Transaction::Begin(conn));
    std::vector<int64_t> running;
    {
      IOTPKI_TRY(auto stmt,
                 conn.Prepare("SELECT id FROM campaigns WHERE state = 'running' ORDER BY id"));
      for (;;) {
        IOTPKI_TRY(bool row, stmt->Step());
        if (!row) break;
        running.push_back(stmt->Int64(0));
      }
    }
    std::vector<std::pair<int64_t, int64_t>> claimed;  // (campaign, ordinal)
    for (int64_t campaign : running) {
      if (claimed.size() >= limit) break;
      IOTPKI_TRY(auto due,
                 conn.Prepare("SELECT ordinal FROM rotation_jobs WHERE campaign_id = ?1 AND "
                              "state IN ('pending', 'notified', 'enrolled') AND "
                              "next_attempt_at <= ?2 AND (lease_until IS NULL OR lease_until <= "
                              "?2) ORDER BY next_attempt_at, ordinal LIMIT ?3"));
      due->Bind(1, campaign);
      due->Bind(2, now);
      due->Bind(3, static_cast<int64_t>(limit - claimed.size()));
      for (;;) {
        IOTPKI_TRY(bool row, due->Step());
        if (!row) break;
        claimed.emplace_back(campaign, due->Int64(0));
      }
    }
    IOTPKI_TRY(auto take, conn.Prepare("UPDATE rotation_jobs SET lease_owner = ?1, lease_until = "
                                       "?2 WHERE campaign_id = ?3 AND ordinal = ?4"));
    std::vector<Job> jobs;
    IOTPKI_TRY(auto read,
               conn.Prepare("SELECT " + std::string(kJobColumns) + std::string(kJobsWithDevice) +
                            "j.campaign_id = ?1 AND j.ordinal = ?2"));
    for (const auto& [campaign, ordinal] : claimed) {
      take->Bind(1, owner);
      take->Bind(2, now + lease.count());
      take->Bind(3, campaign);
      take->Bind(4, ordinal);
      IOTPKI_CHECK(take->Run());
      take->Reset();
      read->Bind(1, campaign);
      read->Bind(2, ordinal);
      IOTPKI_TRY(bool row, read->Step());
      if (row) {
        IOTPKI_TRY(auto job, ReadJob(*read));
        jobs.push_back(std::move(job));
      }
      read->Reset();
    }
    IOTPKI_CHECK(tx.Commit());
    return jobs;
  });
}

}  // namespace iotpki::store::sql
