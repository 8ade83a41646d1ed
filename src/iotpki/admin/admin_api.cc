#include "iotpki/admin/admin_api.h"

#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>

#include "iotpki/admin/admin_assets.h"
#include "iotpki/admin/admin_ca.h"
#include "iotpki/ca/revocation.h"
#include "iotpki/campaign/waves.h"
#include "iotpki/common/file.h"
#include "iotpki/common/log.h"
#include "iotpki/crypto/primitives.h"
#include "iotpki/store/audit.h"
#include "iotpki/x509/certificate.h"

namespace iotpki::admin {
namespace {

using Json = nlohmann::ordered_json;
using server::Request;
using server::Response;

constexpr int64_t kDay = 86400;
constexpr std::string_view kApi = "/admin/api/v1";
constexpr size_t kMaxApiPage = 500;
constexpr store::DeviceState kStates[] = {
    store::DeviceState::kManufactured, store::DeviceState::kActive, store::DeviceState::kSuspended,
    store::DeviceState::kDecommissioned};

Response JsonResponse(int status, const Json& body) {
  return Response{.status = status, .content_type = "application/json", .body = body.dump()};
}

Response ErrorResponse(int status, std::string message, std::string detail = {}) {
  Response r = JsonResponse(status, Json{{"error", message}});
  r.log.reason = std::move(message);
  r.log.detail = std::move(detail);
  return r;
}

// An Error as an answer: the message for the client (never a secret: the store's and the CA's
// messages name no key material), the detail for the log only.
Response FromError(const Error& e) {
  int status = 500;
  switch (e.code()) {
    case Code::kInvalidArgument:
      status = 400;
      break;
    case Code::kNotFound:
      status = 404;
      break;
    case Code::kFailedPrecondition:
    case Code::kAborted:
    case Code::kAlreadyExists:
      status = 409;
      break;
    case Code::kPermissionDenied:
      status = 403;
      break;
    case Code::kUnavailable:
      status = 503;
      break;
    default:
      break;
  }
  Response r = ErrorResponse(status, status == 500 ? "internal error" : e.message(),
                             e.message() + (e.detail().empty() ? "" : ": " + e.detail()));
  r.log.error = std::string(CodeName(e.code()));
  return r;
}

int Hex(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// The value of `key` in an application/x-www-form-urlencoded query, percent-decoded.
std::optional<std::string> Param(std::string_view query, std::string_view key) {
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    size_t eq = pair.find('=');
    if (pair.substr(0, eq) != key) continue;
    std::string_view raw = eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1);
    std::string out;
    for (size_t i = 0; i < raw.size(); ++i) {
      if (raw[i] == '+') {
        out += ' ';
      } else if (raw[i] == '%' && i + 2 < raw.size() + 0 && Hex(raw[i + 1]) >= 0 &&
                 Hex(raw[i + 2]) >= 0) {
        out += static_cast<char>(Hex(raw[i + 1]) * 16 + Hex(raw[i + 2]));
        i += 2;
      } else {
        out += raw[i];
      }
    }
    return out;
  }
  return std::nullopt;
}

Result<int64_t> IntParam(std::string_view query, std::string_view key, int64_t fallback, int64_t lo,
                         int64_t hi) {
  auto text = Param(query, key);
  if (!text) return fallback;
  int64_t v = 0;
  bool ok = !text->empty() && text->size() <= 18;
  for (char c : *text) {
    if (c < '0' || c > '9') ok = false;
    if (ok) v = v * 10 + (c - '0');
  }
  if (!ok || v < lo || v > hi) {
    return Fail(Code::kInvalidArgument, std::string(key) + " must be an integer in [" +
                                            std::to_string(lo) + ", " + std::to_string(hi) + "]");
  }
  return v;
}

std::string Date(int64_t day) { return FormatUtc(day * kDay).substr(0, 10); }

Json Time(int64_t t) { return t == 0 ? Json() : Json(FormatUtc(t)); }

Json DeviceJson(const store::Device& d) {
  return {{"device_id", d.device_id},
          {"serial", d.serial},
          {"model", d.model},
          {"batch", d.batch},
          {"state", store::DeviceStateName(d.state)},
          {"hardware_fingerprint", d.hardware_fingerprint ? Json(*d.hardware_fingerprint) : Json()},
          {"created_at", Time(d.created_at)},
          {"updated_at", Time(d.updated_at)}};
}

Json CertJson(const store::CertificateRecord& c) {
  return {{"serial", c.serial},
          {"device_id", c.device_id ? Json(*c.device_id) : Json()},
          {"profile", store::CertProfileName(c.profile)},
          {"issuer", c.issuer},
          {"subject", c.subject},
          {"not_before", Time(c.not_before)},
          {"not_after", c.not_after >= kNoExpiryUnix ? Json("never") : Time(c.not_after)},
          {"status", store::CertStatusName(c.status)},
          {"revoked_at", c.revoked_at ? Time(*c.revoked_at) : Json()},
          {"reason",
           c.revocation_reason ? Json(store::RevocationReasonName(*c.revocation_reason)) : Json()},
          {"first_used_at", c.first_used_at ? Time(*c.first_used_at) : Json()}};
}

Json CountsJson(const campaign::WaveCounts& w) {
  Json out = Json::object();
  for (int s = 0; s < store::kJobStateCount; ++s) {
    out[std::string(store::JobStateName(static_cast<store::JobState>(s)))] = w.n[s];
  }
  return out;
}

// The same figures as `iotpki campaign status --json`.
Result<Json> CampaignJson(store::Store& db, const store::Campaign& c) {
  IOTPKI_TRY(auto rows, db.CountJobs(c.id));
  auto waves = campaign::ByWave(rows, c.waves);
  campaign::WaveCounts all = campaign::Sum(waves);
  campaign::WaveCounts current;
  if (c.current_wave < static_cast<int64_t>(waves.size())) current = waves[c.current_wave];
  Json per_wave = Json::array();
  for (size_t i = 0; i < waves.size(); ++i) {
    Json w = CountsJson(waves[i]);
    w["wave"] = i;
    w["failure_rate"] = campaign::FailureRate(waves[i]);
    per_wave.push_back(w);
  }
  return Json{{"name", c.spec.name},
              {"state", store::CampaignStateName(c.state)},
              {"reason", c.state_reason},
              {"mode", store::CampaignModeName(c.spec.mode)},
              {"jobs", c.jobs},
              {"waves", c.waves},
              {"current_wave", c.current_wave},
              {"wave_started_at", Time(c.wave_started_at)},
              {"failure_rate", campaign::FailureRate(current)},
              {"max_failure_rate", campaign::MaxFailureRate(c)},
              {"counts", CountsJson(all)},
              {"per_wave", per_wave},
              {"deadline", Time(c.spec.deadline)},
              {"created_at", Time(c.created_at)}};
}

Result<store::Campaign> FindCampaign(store::Store& db, const std::string& name) {
  auto c = db.GetCampaign(name);
  if (!c && c.error().code() == Code::kNotFound) {
    return Fail(Code::kNotFound, "no campaign named '" + name + "'");
  }
  return c;
}

bool IsDeviceId(std::string_view id) {
  return id.size() == 64 && std::all_of(id.begin(), id.end(), [](char c) { return Hex(c) >= 0; });
}

// Which slot a device's certificate holds: its birth certificate, the working certificate in
// use, a renewal not yet used, or one that is over.
std::string Slot(const store::CertificateRecord& c, const store::CertificateRecord* current,
                 int64_t now) {
  if (c.profile == store::CertProfile::kIDevId) return "birth";
  if (c.status == store::CertStatus::kRevoked) return "revoked";
  if (c.not_after < now) return "expired";
  if (current == &c) return "current";
  return current != nullptr && c.not_before < current->not_before ? "previous" : "next";
}

}  // namespace

AdminApi::AdminApi(AdminOptions options)
    : options_(std::move(options)), csrf_key_(crypto::RandomBytes(32)) {}

AdminApi::~AdminApi() { Stop(); }

std::string AdminApi::CsrfToken(std::string_view fingerprint) const {
  std::string msg = "iotpki-admin-csrf-v1:" + std::string(fingerprint);
  return ToHex(crypto::HmacSha256(csrf_key_, AsBytes(msg)));
}

AuditRun AdminApi::VerifyAuditNow() {
  AuditRun run;
  auto verdict = store::VerifyAuditChain(*options_.store, 1000, {}, &cancel_);
  run.finished_at = options_.clock->NowUnix();
  if (!verdict && verdict.error().code() == Code::kAborted && cancel_.load()) {
    run.explanation = "cancelled: the server is stopping";
    log::Info("admin.audit_cancelled", {{"detail", verdict.error().detail()}});
    return run;
  }
  if (!verdict) {
    run.explanation = "the audit log could not be read: " + verdict.error().message();
  } else {
    run.intact = verdict->intact;
    run.rows = verdict->rows_checked;
    run.last_seq = verdict->last_seq;
    run.head_hash = ToHex(verdict->head_hash);
    run.explanation = verdict->explanation;
  }
  log::Info("admin.audit_verified",
            {{"intact", run.intact}, {"rows", run.rows}, {"explanation", run.explanation}});
  std::lock_guard lock(audit_mu_);
  audit_ = run;
  return run;
}

void AdminApi::Start() {
  std::lock_guard lock(stop_mu_);
  if (thread_.joinable()) return;
  stop_ = false;
  cancel_ = false;
  thread_ = std::thread([this] {
    for (;;) {
      VerifyAuditNow();
      std::unique_lock lock(stop_mu_);
      if (stop_cv_.wait_for(lock, options_.audit_interval, [this] { return stop_; })) return;
    }
  });
}

void AdminApi::Stop() {
  cancel_ = true;
  {
    std::lock_guard lock(stop_mu_);
    stop_ = true;
  }
  stop_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void AdminApi::Mount(server::Router& router, int issuer_index) {
  store::Store& db = *options_.store;
  const Clock& clock = *options_.clock;
  const std::string api(kApi);

  // Who is asking: an operator certificate that chained to the admin CA, or 403.
  auto authenticate = [issuer_index, &db](const Request& req) -> Result<Operator> {
    if (!req.client_cert || !req.client_cert->certificate) {
      return Fail(Code::kPermissionDenied,
                  "an operator certificate of the admin CA is required (iotpki admin issue)");
    }
    if (!req.client_cert->chain_valid || req.client_cert->issuer_index != issuer_index) {
      return Fail(Code::kPermissionDenied,
                  "this certificate is not an operator certificate of the admin CA",
                  req.client_cert->verify_error);
    }
    IOTPKI_TRY(Operator op, OperatorOf(*req.client_cert->certificate));
    // Looked up on every request, so a revocation (iotpki admin revoke) holds from the next one.
    auto recorded = db.GetOperatorCertificate(op.serial);
    if (!recorded) {
      if (recorded.error().code() != Code::kNotFound) return Fail(recorded.error());
      return Fail(Code::kPermissionDenied,
                  "this operator certificate is not recorded in the store (issue one with "
                  "iotpki admin issue)");
    }
    if (recorded->status == store::CertStatus::kRevoked) {
      return Fail(Code::kPermissionDenied, "this operator certificate was revoked");
    }
    return op;
  };
  using Get = std::function<Response(const Request&, const Operator&)>;
  auto get = [&router, authenticate, api](const std::string& pattern, std::string name, Get fn) {
    router.Add("GET", api + pattern, "admin_" + name,
               [authenticate, fn = std::move(fn)](const Request& req) {
                 auto op = authenticate(req);
                 if (!op) return FromError(op.error());
                 return fn(req, *op);
               });
  };
  // Actions: the operator role, and a request no other site can make a browser send.
  auto post = [this, &router, authenticate, api](const std::string& pattern, std::string name,
                                                 Get fn) {
    router.Add(
        "POST", api + pattern, "admin_" + name,
        [this, authenticate, fn = std::move(fn)](const Request& req) {
          auto op = authenticate(req);
          if (!op) return FromError(op.error());
          if (op->role != Role::kOperator) {
            return ErrorResponse(403,
                                 "the read-only role cannot act; an operator "
                                 "certificate (--role operator) can");
          }
          if (!req.sec_fetch_site.empty() && req.sec_fetch_site != "same-origin") {
            return ErrorResponse(403, "cross-site request refused (Sec-Fetch-Site)");
          }
          if (!req.origin.empty() && req.origin != "https://" + req.host) {
            return ErrorResponse(403, "cross-origin request refused (Origin)");
          }
          std::string token = req.csrf_token;
          std::string want = CsrfToken(op->fingerprint);
          if (token.size() != want.size() || !ConstantTimeEqual(AsBytes(token), AsBytes(want))) {
            return ErrorResponse(403, "missing or wrong X-CSRF-Token (GET " + std::string(kApi) +
                                          "/session gives it)");
          }
          if (req.content_type.rfind("application/json", 0) != 0) {
            return ErrorResponse(415, "actions take a JSON body (application/json)");
          }
          return fn(req, *op);
        });
  };
  auto actor = [](const Operator& op) { return "admin:" + op.name; };

  get("/session", "session", [this](const Request& req, const Operator& op) {
    const auto& cert = *req.client_cert->certificate;
    return JsonResponse(200, {{"operator", op.name},
                              {"role", RoleName(op.role)},
                              {"serial", op.serial},
                              {"not_after", Time(cert.not_after())},
                              {"csrf_token", CsrfToken(op.fingerprint)}});
  });

  get("/overview", "overview", [&db, &clock](const Request&, const Operator&) -> Response {
    Json by_state = Json::object();
    int64_t total = 0;
    for (auto s : kStates) {
      store::DeviceFilter f;
      f.state = s;
      auto n = db.CountDevices(f);
      if (!n) return FromError(n.error());
      by_state[std::string(store::DeviceStateName(s))] = *n;
      total += *n;
    }
    auto rows = db.ListDeviceCounts(store::kMaxPageSize);
    if (!rows) return FromError(rows.error());
    std::map<std::string, int64_t> models, batches;
    for (const auto& r : *rows) {
      models[r.model] += r.n;
      batches[r.batch] += r.n;
    }
    auto list = [](const std::map<std::string, int64_t>& m, const char* key) {
      std::vector<std::pair<std::string, int64_t>> v(m.begin(), m.end());
      std::stable_sort(v.begin(), v.end(),
                       [](const auto& a, const auto& b) { return a.second > b.second; });
      Json out = Json::array();
      for (const auto& [k, n] : v) out.push_back({{key, k}, {"n", n}});
      return out;
    };
    Json expiring = Json::array();
    for (int days : {7, 30, 90, 365}) {
      store::DeviceFilter f;
      f.expiring_within = std::chrono::days(days);
      auto n = db.CountDevices(f);
      if (!n) return FromError(n.error());
      expiring.push_back({{"within_days", days}, {"n", *n}});
    }
    // Certificates recorded per day over the last 30 days, from issuance_counts.
    int64_t today = clock.NowUnix() / kDay;
    auto issuance = db.CountIssuance(today - 29, today);
    if (!issuance) return FromError(issuance.error());
    std::map<int64_t, Json> days;
    for (const auto& c : *issuance) {
      Json& d = days[c.day];
      if (d.is_null()) d = {{"date", Date(c.day)}, {"n", 0}, {"by_profile", Json::object()}};
      d["n"] = d["n"].get<int64_t>() + c.n;
      Json& p = d["by_profile"][std::string(store::CertProfileName(c.profile))];
      p = p.is_null() ? c.n : p.get<int64_t>() + c.n;
    }
    Json issued = Json::array();
    for (auto& [day, d] : days) issued.push_back(std::move(d));
    auto campaigns = db.ListCampaigns();
    if (!campaigns) return FromError(campaigns.error());
    Json by_campaign_state = Json::object();
    for (const auto& c : *campaigns) {
      auto& slot = by_campaign_state[std::string(store::CampaignStateName(c.state))];
      slot = slot.is_null() ? 1 : slot.get<int64_t>() + 1;
    }
    return JsonResponse(200, {{"devices", {{"total", total}, {"by_state", by_state}}},
                              {"by_model", list(models, "model")},
                              {"by_batch", list(batches, "batch")},
                              {"groups_truncated", rows->size() >= store::kMaxPageSize},
                              {"expiring", expiring},
                              {"issued_per_day", issued},
                              {"campaigns", by_campaign_state}});
  });

  get("/expiry", "expiry", [&db, &clock](const Request& req, const Operator&) -> Response {
    auto days = IntParam(req.query, "days", 365, 1, 3660);
    if (!days) return FromError(days.error());
    int64_t today = clock.NowUnix() / kDay;
    auto counts = db.CountExpiriesByDay(today, today + *days - 1);
    if (!counts) return FromError(counts.error());
    Json out = Json::array();
    int64_t total = 0;
    for (const auto& d : *counts) {
      out.push_back({{"date", Date(d.day)}, {"n", d.n}});
      total += d.n;
    }
    return JsonResponse(
        200,
        {{"from", Date(today)}, {"to", Date(today + *days - 1)}, {"total", total}, {"days", out}});
  });

  get("/campaigns", "campaigns", [&db](const Request&, const Operator&) -> Response {
    auto campaigns = db.ListCampaigns();
    if (!campaigns) return FromError(campaigns.error());
    Json out = Json::array();
    for (const auto& c : *campaigns) {
      auto j = CampaignJson(db, c);
      if (!j) return FromError(j.error());
      out.push_back(std::move(*j));
    }
    return JsonResponse(200, {{"campaigns", out}});
  });

  get("/campaigns/{name}", "campaign", [&db](const Request& req, const Operator&) -> Response {
    auto c = FindCampaign(db, req.params[0]);
    if (!c) return FromError(c.error());
    auto j = CampaignJson(db, *c);
    if (!j) return FromError(j.error());
    return JsonResponse(200, *j);
  });

  get("/campaigns/{name}/failures", "campaign_failures",
      [&db](const Request& req, const Operator&) -> Response {
        auto c = FindCampaign(db, req.params[0]);
        if (!c) return FromError(c.error());
        // The ordinal of the last failure of the previous page; none: from the start.
        Result<int64_t> after = int64_t{-1};
        if (Param(req.query, "after").value_or("-1") != "-1") {
          after = IntParam(req.query, "after", -1, 0, INT64_MAX / 2);
        }
        if (!after) return FromError(after.error());
        auto limit = IntParam(req.query, "limit", 50, 1, kMaxApiPage);
        if (!limit) return FromError(limit.error());
        auto jobs = db.ListJobs(c->id, /*only_errors=*/true, *after, *limit);
        if (!jobs) return FromError(jobs.error());
        Json out = Json::array();
        for (const auto& j : *jobs) {
          out.push_back({{"ordinal", j.ordinal},
                         {"device_id", j.device_id},
                         {"wave", j.wave},
                         {"state", store::JobStateName(j.state)},
                         {"attempts", j.attempts},
                         {"last_error", j.last_error.value_or("")},
                         {"old_certificate", j.old_serial.value_or("")}});
        }
        Json next =
            jobs->size() == static_cast<size_t>(*limit) ? Json(jobs->back().ordinal) : Json();
        return JsonResponse(200, {{"failures", out}, {"next_after", next}});
      });

  get("/devices", "devices", [&db](const Request& req, const Operator&) -> Response {
    if (auto serial = Param(req.query, "serial")) {
      auto d = db.GetDeviceBySerial(*serial);
      if (!d) return FromError(d.error());
      return JsonResponse(200, {{"devices", Json::array({DeviceJson(*d)})}, {"next_cursor", ""}});
    }
    store::DeviceFilter f;
    if (auto s = Param(req.query, "state"); s && !s->empty()) {
      auto state = store::ParseDeviceState(*s);
      if (!state) return FromError(state.error());
      f.state = *state;
    }
    if (auto m = Param(req.query, "model"); m && !m->empty()) f.model = *m;
    if (auto b = Param(req.query, "batch"); b && !b->empty()) f.batch = *b;
    auto within = IntParam(req.query, "expiring_within_days", 0, 0, 3650);
    if (!within) return FromError(within.error());
    if (*within > 0) f.expiring_within = std::chrono::days(*within);
    auto limit = IntParam(req.query, "limit", 50, 1, kMaxApiPage);
    if (!limit) return FromError(limit.error());
    auto page = db.ListDevices(f, *limit, Param(req.query, "cursor").value_or(""));
    if (!page) return FromError(page.error());
    Json out = Json::array();
    for (const auto& d : page->devices) {
      Json j = DeviceJson(d.device);
      if (d.cert_not_after) j["cert_not_after"] = FormatUtc(*d.cert_not_after);
      out.push_back(std::move(j));
    }
    return JsonResponse(200, {{"devices", out}, {"next_cursor", page->next_cursor}});
  });

  get("/devices/{id}", "device", [&db, &clock](const Request& req, const Operator&) -> Response {
    const std::string& key = req.params[0];
    auto d = IsDeviceId(key) ? db.GetDevice(key) : db.GetDeviceBySerial(key);
    if (!d) return FromError(d.error());
    auto certs = db.ListCertificatesForDevice(d->device_id);
    if (!certs) return FromError(certs.error());
    int64_t now = clock.NowUnix();
    // The working certificate in use: the newest valid, unexpired LDevID a device has used.
    const store::CertificateRecord* current = nullptr;
    for (const auto& c : *certs) {
      if (c.profile == store::CertProfile::kLDevId && c.status == store::CertStatus::kValid &&
          c.not_after >= now && c.first_used_at) {
        current = &c;
      }
    }
    Json list = Json::array();
    for (const auto& c : *certs) {
      Json j = CertJson(c);
      j["slot"] = Slot(c, current, now);
      list.push_back(std::move(j));
    }
    return JsonResponse(200, {{"device", DeviceJson(*d)}, {"certificates", list}});
  });

  // A device's audit rows, newest first: pages of `limit` rows with seq below `before`.
  get("/devices/{id}/audit", "device_audit",
      [&db](const Request& req, const Operator&) -> Response {
        const std::string& key = req.params[0];
        auto d = IsDeviceId(key) ? db.GetDevice(key) : db.GetDeviceBySerial(key);
        if (!d) return FromError(d.error());
        auto before = IntParam(req.query, "before", INT64_MAX, 1, INT64_MAX);
        if (!before) return FromError(before.error());
        auto limit = IntParam(req.query, "limit", 50, 1, kMaxApiPage);
        if (!limit) return FromError(limit.error());
        auto rows = db.ReadAuditForSubject(d->device_id, *before, *limit);
        if (!rows) return FromError(rows.error());
        Json out = Json::array();
        for (const auto& r : *rows) {
          out.push_back({{"seq", r.seq},
                         {"time", Time(r.time)},
                         {"actor", r.actor},
                         {"action", r.action},
                         {"details", r.details}});
        }
        Json next = rows->size() == static_cast<size_t>(*limit) ? Json(rows->back().seq) : Json();
        return JsonResponse(200,
                            {{"device_id", d->device_id}, {"audit", out}, {"next_before", next}});
      });

  get("/revocations", "revocations", [&db](const Request& req, const Operator&) -> Response {
    auto since = IntParam(req.query, "since", 0, 0, kNoExpiryUnix);
    if (!since) return FromError(since.error());
    auto limit = IntParam(req.query, "limit", 50, 1, kMaxApiPage);
    if (!limit) return FromError(limit.error());
    auto page = db.ListRevokedCertificates({.since = *since}, *limit,
                                           Param(req.query, "cursor").value_or(""));
    if (!page) return FromError(page.error());
    Json out = Json::array();
    for (const auto& c : page->certificates) out.push_back(CertJson(c));
    return JsonResponse(200, {{"revocations", out}, {"next_cursor", page->next_cursor}});
  });

  get("/status", "status", [this, &db, &clock](const Request&, const Operator&) -> Response {
    int64_t now = clock.NowUnix();
    Json cas = Json::array();
    for (const char* name : {"manufacturing", "operational"}) {
      auto revoked = db.CountRevokedCertificates(name);
      if (!revoked) return FromError(revoked.error());
      Json crl;
      if (options_.crls != nullptr) {
        if (auto p = options_.crls->Current(name)) {
          auto next = p->crl.next_update();
          crl = {{"number", p->crl.crl_number() ? Json(*p->crl.crl_number()) : Json()},
                 {"this_update", Time(p->crl.this_update())},
                 {"next_update", next ? Time(*next) : Json()},
                 {"entries", p->revoked_count},
                 {"age_seconds", now - p->crl.this_update()},
                 {"stale", next && *next < now},
                 {"url", "/crl/" + std::string(name) + ".crl"}};
        }
      }
      Json ocsp;
      auto pem = ReadTextFile(options_.dir / "certs" / ("ocsp-" + std::string(name) + ".pem"));
      if (pem) {
        if (auto cert = x509::Certificate::FromPem(*pem)) {
          ocsp = {{"responder_serial", cert->serial_hex()},
                  {"not_after", Time(cert->not_after())},
                  {"valid", cert->not_after() > now},
                  {"url", "/ocsp"}};
        }
      }
      cas.push_back({{"ca", name}, {"revoked", *revoked}, {"crl", crl}, {"ocsp", ocsp}});
    }
    return JsonResponse(200, {{"cas", cas}});
  });

  get("/audit", "audit", [this, &db](const Request&, const Operator&) -> Response {
    auto head = store::ReadAuditHead(db);
    if (!head) return FromError(head.error());
    Json h;
    if (*head) {
      h = {{"seq", (*head)->seq},
           {"time", Time((*head)->time)},
           {"action", (*head)->action},
           {"hash", ToHex((*head)->hash)}};
    }
    Json last;
    {
      std::lock_guard lock(audit_mu_);
      if (audit_) {
        last = {{"finished_at", Time(audit_->finished_at)},
                {"intact", audit_->intact},
                {"rows", audit_->rows},
                {"last_seq", audit_->last_seq},
                {"head_hash", audit_->head_hash},
                {"explanation", audit_->explanation}};
      }
    }
    return JsonResponse(200, {{"head", h}, {"last_verification", last}});
  });

  // --- Actions ---
  post("/campaigns/{name}/{verb}", "campaign_action",
       [&db, actor](const Request& req, const Operator& op) -> Response {
         const std::string& verb = req.params[1];
         if (verb != "pause" && verb != "resume" && verb != "cancel") {
           return ErrorResponse(404, "campaign actions are pause, resume and cancel");
         }
         auto c = FindCampaign(db, req.params[0]);
         if (!c) return FromError(c.error());
         auto batch = campaign::CampaignTransition(*c, verb, "by " + actor(op), actor(op));
         if (!batch) {
           Error e = batch.error();
           return FromError(Error(Code::kFailedPrecondition, e.message()));
         }
         if (auto done = db.Commit(*batch); !done) {
           if (done.error().code() == Code::kAborted) {
             return ErrorResponse(409, "the campaign changed meanwhile; look at it again");
           }
           return FromError(done.error());
         }
         auto now = db.GetCampaign(c->spec.name);
         if (!now) return FromError(now.error());
         Response r = JsonResponse(200, {{"name", now->spec.name},
                                         {"from", store::CampaignStateName(c->state)},
                                         {"state", store::CampaignStateName(now->state)}});
         r.log.reason = actor(op) + " " + verb;
         return r;
       });

  post("/certificates/{serial}/revoke", "cert_revoke",
       [&db, &clock, actor](const Request& req, const Operator& op) -> Response {
         auto body = Json::parse(req.body, nullptr, false);
         if (body.is_discarded() || !body.is_object() || !body.contains("reason") ||
             !body["reason"].is_string()) {
           return ErrorResponse(400,
                                "the body must be {\"reason\": \"keyCompromise\"} (or "
                                "superseded, cessationOfOperation, affiliationChanged, "
                                "unspecified)");
         }
         auto reason = ca::ParseOperatorReason(body["reason"].get<std::string>());
         if (!reason) return FromError(reason.error());
         auto revoked = ca::RevokeSerial(db, clock, req.params[0], *reason, actor(op));
         if (!revoked) return FromError(revoked.error());
         return JsonResponse(200, {{"revoked", revoked->certificates.size()},
                                   {"revoked_at", Time(revoked->revoked_at)}});
       });

  post("/devices/{id}/decommission", "device_decommission",
       [&db, &clock, actor](const Request& req, const Operator& op) -> Response {
         if (!IsDeviceId(req.params[0])) {
           return ErrorResponse(400, "a device id is 64 hex digits");
         }
         auto done = ca::Decommission(db, clock, req.params[0], actor(op));
         if (!done) return FromError(done.error());
         return JsonResponse(200,
                             {{"state", "decommissioned"}, {"revoked", done->certificates.size()}});
       });

  // --- Pages (embedded at build time, admin_assets.h) ---
  auto page = [authenticate](std::string_view name) {
    return [authenticate, name](const Request& req) {
      auto op = authenticate(req);
      if (!op) return FromError(op.error());
      const Asset* a = FindAsset(name);
      if (a == nullptr) return ErrorResponse(404, "no such page");
      Response r{.status = 200,
                 .content_type = std::string(a->content_type),
                 .body = std::string(a->body)};
      // No script, style or frame from anywhere else; the pages are never framed.
      r.headers = {{"Content-Security-Policy",
                    "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; "
                    "form-action 'none'; base-uri 'none'"},
                   {"X-Frame-Options", "DENY"},
                   {"X-Content-Type-Options", "nosniff"},
                   {"Referrer-Policy", "no-referrer"}};
      return r;
    };
  };
  router.Add("GET", "/", "admin_root", [](const Request&) {
    Response r{.status = 303};
    r.headers = {{"Location", "/admin/"}};
    return r;
  });
  router.Add("GET", "/admin", "admin_root", [](const Request&) {
    Response r{.status = 303};
    r.headers = {{"Location", "/admin/"}};
    return r;
  });
  router.Add("GET", "/admin/", "admin_page", page("index.html"));
  for (const Asset& a : Assets()) {
    router.Add("GET", "/admin/" + std::string(a.name), "admin_page", page(a.name));
  }
}

}  // namespace iotpki::admin
