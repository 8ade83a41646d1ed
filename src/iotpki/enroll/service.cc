#include "iotpki/enroll/service.h"

#include <chrono>
#include <nlohmann/json.hpp>

#include "iotpki/enroll/errors.h"
#include "iotpki/enroll/est.h"
#include "iotpki/store/audit.h"

namespace iotpki::enroll {
namespace {

const std::vector<double> kLatencyBuckets = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                             0.1,   0.25,   0.5,   1,    2.5,   5};

double SteadySeconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace

EnrollService::EnrollService(ca::Authority& authority, server::Registry& metrics,
                             const EnrollOptions& options)
    : authority_(authority),
      metrics_(metrics),
      options_(options),
      committer_(authority.store(), options.max_group_commit),
      issued_ldevid_(metrics.GetCounter("iotpki_certificates_issued_total",
                                        "Certificates issued by this server, by profile",
                                        {{"profile", "ldevid"}})) {}

void EnrollService::AuditWriteFailed(std::string_view what, const Error& error) {
  store::ReportAuditWriteFailure(what, error);
  metrics_
      .GetCounter("iotpki_audit_write_failures_total",
                  "Audit rows (and replay-table prunes) this server could not write",
                  {{"what", std::string(what)}})
      .Inc();
}

Result<std::unique_ptr<EnrollService>> EnrollService::Create(ca::Authority& authority,
                                                             server::Registry& metrics,
                                                             const EnrollOptions& options) {
  if (options.token_window_seconds <= 0) {
    return Fail(Code::kInvalidArgument, "the bootstrap token window must be positive");
  }
  // Fails early if the server could not answer bootstrap requests.
  IOTPKI_CHECK(authority.BootstrapSecret(std::string(64, '0')));
  std::unique_ptr<EnrollService> s(new EnrollService(authority, metrics, options));
  // The answers that never change are built once.
  std::vector<x509::Certificate> chain = {authority.certificate(ca::CaName::kOperational),
                                          authority.certificate(ca::CaName::kRoot)};
  IOTPKI_TRY(Bytes p7, CertsOnlyPkcs7(chain));
  s->cacerts_body_ = EstBase64(p7);
  s->csrattrs_der_ = CsrAttributes();
  EnrollService* raw = s.get();
  metrics.AddGauge("iotpki_certificates_expiring",
                   "Valid device certificates expiring within the window, counted per device "
                   "(refreshed at most every 30 s)",
                   [raw] { return raw->ExpiringGauge(); });
  return s;
}

std::vector<Bytes> EnrollService::ClientIssuers() const {
  return {authority_.certificate(ca::CaName::kManufacturing).ToDer(),
          authority_.certificate(ca::CaName::kOperational).ToDer()};
}

void EnrollService::Mount(server::Router& router) {
  struct Est {
    const char* method;
    const char* op;
    server::Response (EnrollService::*fn)(const server::Request&);
  };
  for (const Est& e : {Est{"GET", "cacerts", &EnrollService::CaCerts},
                       Est{"GET", "csrattrs", &EnrollService::CsrAttrs},
                       Est{"POST", "simpleenroll", &EnrollService::SimpleEnroll},
                       Est{"POST", "simplereenroll", &EnrollService::SimpleReenroll},
                       Est{"POST", "serverkeygen", &EnrollService::ServerKeygen}}) {
    auto handler = [this, fn = e.fn](const server::Request& r) { return (this->*fn)(r); };
    std::string name = std::string("est_") + e.op;
    router.Add(e.method, std::string(kEstPrefix) + "/" + e.op, name, handler);
    router.Add(e.method, std::string(kEstPrefix) + "/{label}/" + e.op, name, handler);
  }
  router.Add("POST", "/api/v1/bootstrap", "bootstrap",
             [this](const server::Request& r) { return Bootstrap(r); });
  router.Add("POST", "/api/v1/devices/{device_id}/rotation", "rotation",
             [this](const server::Request& r) { return ConfirmRotation(r); });
  router.Add("GET", "/healthz", "healthz", [this](const server::Request& r) { return Healthz(r); });
}

server::Response EnrollService::Healthz(const server::Request& request) {
  auto version = authority_.store().SchemaVersion();
  if (!version) {
    return ErrorResponse(Error(Code::kUnavailable, "the store does not answer"), ErrorFormat::kJson,
                         request);
  }
  return {.status = 200, .content_type = "application/json", .body = "{\"status\":\"ok\"}\n"};
}

// ---------------------------------------------------------------------------------------------
// Authentication steps shared by the handlers.

Result<void> EnrollService::CheckLabel(const server::Request& request) const {
  if (request.params.empty()) return {};
  const std::string& label = request.params[0];
  // RFC 7030 section 3.2.2: a CA label is one segment and never an operation's name.
  for (const char* op :
       {"cacerts", "csrattrs", "simpleenroll", "simplereenroll", "fullcmc", "serverkeygen"}) {
    if (label == op) return Fail(Code::kNotFound, "no such EST operation");
  }
  if (label.size() > 64) return Fail(Code::kNotFound, "no such EST CA label");
  return {};
}

Result<void> EnrollService::CheckRevocation(const x509::Certificate& cert,
                                            std::optional<store::CertificateRecord>* record) const {
  auto rec = authority_.store().GetCertificate(cert.serial_hex());
  if (!rec) {
    if (rec.error().code() == Code::kNotFound) return {};
    return Fail(std::move(rec).error());
  }
  if (rec->status == store::CertStatus::kRevoked) {
    // 403 like the other refusals of a known client: the certificate is genuine, and final.
    std::string reason = rec->revocation_reason
                             ? std::string(store::RevocationReasonName(*rec->revocation_reason))
                             : "unspecified";
    return Fail(Code::kPermissionDenied,
                "client certificate refused: certificate revoked (" + reason + ")");
  }
  if (record != nullptr) *record = std::move(*rec);
  return {};
}

Result<EnrollService::Client> EnrollService::Authenticate(const server::Request& request,
                                                          ClientCa expected) const {
  bool birth = expected == ClientCa::kManufacturing;
  if (!request.client_cert) {
    return Fail(Code::kUnauthenticated,
                birth ? "a TLS client certificate is required: the device's IDevID"
                      : "a TLS client certificate is required: the device's current LDevID");
  }
  const server::ClientCertificate& cc = *request.client_cert;
  if (!cc.chain_valid) {
    return Fail(Code::kUnauthenticated, "client certificate refused: " + cc.verify_error);
  }
  if (cc.issuer_index != static_cast<int>(expected)) {
    return Fail(Code::kPermissionDenied,
                birth ? "simpleenroll authenticates with the IDevID (birth certificate); a "
                        "device with a working certificate renews with simplereenroll"
                      : "simplereenroll authenticates with the current LDevID (working "
                        "certificate); a new device enrolls with simpleenroll");
  }
  // The transport made the value from the handshake's own parse (no second parse here).
  if (!cc.certificate) {
    return Fail(Code::kUnauthenticated, "client certificate refused: unparsable");
  }
  Client client{.cert = *cc.certificate, .device_id = cc.certificate->common_name()};
  if (!x509::ValidateDeviceId(client.device_id)) {
    return Fail(Code::kUnauthenticated, "client certificate refused: it names no device");
  }
  IOTPKI_CHECK(CheckRevocation(client.cert, &client.record));
  return client;
}

Result<void> EnrollService::AuthorizeEnroll(const Client& client, const x509::Csr& csr) const {
  // Keys compare in their canonical (uncompressed) form: a compressed point is the same key.
  if (csr.public_key() == client.cert.public_key()) {
    return Fail(Code::kPermissionDenied,
                "the CSR carries the IDevID's key; a working certificate needs a new key");
  }
  return CheckCsrSubject(csr, client.device_id, client.cert.serial_number());
}

Result<void> EnrollService::CheckCsrSubject(const x509::Csr& csr, const std::string& device_id,
                                            const std::string& serial) {
  // The CA takes the identity from the authenticated IDevID; a CSR naming anyone else is a
  // confused or hostile client, not something to silently correct.
  if (!csr.common_name().empty() && csr.common_name() != device_id) {
    return Fail(Code::kPermissionDenied, "the CSR's subject names device " + csr.common_name() +
                                             ", not the authenticated device " + device_id);
  }
  if (!csr.serial_number().empty() && csr.serial_number() != serial) {
    return Fail(Code::kPermissionDenied,
                "the CSR's subject serialNumber is not the authenticated device's serial");
  }
  return {};
}

Result<void> EnrollService::AuthorizeReenroll(const Client& client, const x509::Csr& csr) const {
  // The device must own the certificate it authenticates with (the CA's record says so).
  if (!client.record || client.record->profile != store::CertProfile::kLDevId ||
      client.record->device_id != client.device_id) {
    return Fail(Code::kPermissionDenied,
                "the client certificate is not a working certificate this CA issued to device " +
                    client.device_id);
  }
  // RFC 7030 section 4.2.2: subject and subjectAltName identical to the certificate renewed.
  // A CSR without a subjectAltName asks for no change to it.
  if (csr.subject() != client.cert.subject()) {
    return Fail(Code::kPermissionDenied,
                "the CSR's subject differs from the certificate being renewed (RFC 7030 4.2.2)");
  }
  if (!csr.subject_alt_names().empty() &&
      !(csr.subject_alt_names() == client.cert.subject_alt_names())) {
    return Fail(Code::kPermissionDenied,
                "the CSR's subjectAltName differs from the certificate being renewed "
                "(RFC 7030 4.2.2)");
  }
  return {};
}

// ---------------------------------------------------------------------------------------------
// Issuance and rendering.

void EnrollService::CountRefusal(const std::string& endpoint, const Error& error) {
  metrics_
      .GetCounter("iotpki_enroll_refusals_total", "Enrollment requests refused, by reason",
                  {{"endpoint", endpoint}, {"reason", std::string(CodeName(error.code()))}})
      .Inc();
}

Result<x509::Certificate> EnrollService::IssueLdevid(
    ca::IssueRequest request,
    const std::function<Result<void>(const x509::Certificate&)>& before_commit,
    const store::WriteBatch& first) {
  request.profile = x509::ProfileKind::kLDevID;
  request.actor = options_.actor;
  // A concurrent request for the same device may change its state between Prepare and the
  // commit (the compare-and-set fails with Aborted): decide again on the fresh state.
  for (int attempt = 0;; ++attempt) {
    auto prepared = authority_.Prepare(request);
    if (!prepared) {
      auto& refusal = prepared.error();
      // The refusal is the answer even if its audit row cannot be written.
      if (refusal.audit) {
        if (auto written = committer_.Commit(*refusal.audit); !written) {
          AuditWriteFailed("cert.refuse", written.error());
        }
      }
      return Fail(std::move(refusal.error));
    }
    if (before_commit) IOTPKI_CHECK(before_commit(prepared->certificate));
    // A rotation job waiting for this device records the certificate (enrolled) in the same
    // transaction: a crash never leaves an issued certificate the job does not know.
    IOTPKI_TRY(store::WriteBatch jobs,
               JobsEnrolled(request.device_id, prepared->certificate.serial_hex()));
    store::WriteBatch with_first;
    if (!first.empty() || !jobs.empty()) {
      with_first = first;
      with_first.Append(prepared->batch);
      with_first.Append(jobs);
    }
    auto committed = committer_.Commit(with_first.empty() ? prepared->batch : with_first);
    if (committed) {
      issued_ldevid_.Inc();
      return std::move(prepared->certificate);
    }
    if (committed.error().code() != Code::kAborted || attempt >= 2) {
      return Fail(std::move(committed).error());
    }
  }
}

server::Response EnrollService::RenderEst(const server::Request& request,
                                          const std::string& endpoint,
                                          Result<server::Response> answer, double started) {
  if (!answer) {
    CountRefusal(endpoint, answer.error());
    return ErrorResponse(answer.error(), ErrorFormat::kEst, request);
  }
  if (answer->status != 200) return std::move(*answer);
  metrics_
      .GetHistogram("iotpki_enrollment_duration_seconds",
                    "Time from a complete request to its certificate, durable", kLatencyBuckets,
                    {{"endpoint", endpoint}})
      .Observe(SteadySeconds() - started);
  return std::move(*answer);
}

namespace {

// The device_id a JSON request names, if it is one: what the transport's log line says about a
// request without a client certificate (authenticated or not; the status tells).
std::string ClaimedDeviceId(std::string_view body) {
  nlohmann::json j = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || !j.contains("device_id") || !j["device_id"].is_string()) return {};
  std::string id = j["device_id"].get<std::string>();
  return x509::ValidateDeviceId(id) ? id : std::string();
}

}  // namespace

server::Response EnrollService::RenderJson(const server::Request& request,
                                           const std::string& endpoint,
                                           const Result<x509::Certificate>& issued,
                                           double started) {
  if (!issued) {
    CountRefusal(endpoint, issued.error());
    server::Response r = ErrorResponse(issued.error(), ErrorFormat::kJson, request);
    if (!request.client_cert) r.log.device_id = ClaimedDeviceId(request.body);
    return r;
  }
  metrics_
      .GetHistogram("iotpki_enrollment_duration_seconds",
                    "Time from a complete request to its certificate, durable", kLatencyBuckets,
                    {{"endpoint", endpoint}})
      .Observe(SteadySeconds() - started);
  nlohmann::json body = {
      {"certificate", Base64Encode(issued->ToDer())},
      {"chain", {Base64Encode(authority_.certificate(ca::CaName::kOperational).ToDer())}},
      {"not_after", FormatUtc(issued->not_after())}};
  return {.status = 200,
          .content_type = "application/json",
          .body = body.dump() + "\n",
          .log = {.device_id = issued->common_name()}};
}

server::Registry::GaugeSamples EnrollService::ExpiringGauge() {
  std::lock_guard<std::mutex> lock(gauge_mu_);
  int64_t now = authority_.clock().NowUnix();
  if (gauge_at_ != 0 && now - gauge_at_ < 30) return gauge_cache_;
  server::Registry::GaugeSamples samples;
  for (int days : {7, 30, 90}) {
    store::DeviceFilter filter;
    filter.expiring_within = std::chrono::seconds(int64_t{days} * 86400);
    auto n = authority_.store().CountDevices(filter);
    if (n) samples.push_back({{{"within", std::to_string(days) + "d"}}, static_cast<double>(*n)});
  }
  gauge_at_ = now;
  gauge_cache_ = samples;
  return samples;
}

}  // namespace iotpki::enroll
