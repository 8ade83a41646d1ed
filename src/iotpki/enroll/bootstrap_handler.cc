// POST /api/v1/bootstrap: the JSON bootstrap API.
//
//   {"device_id": "<64 hex>", "csr": "<base64 DER or PEM>", "device_cert": "<base64 DER>",
//    "timestamp": <Unix seconds>, "token": "<64 lowercase hex>"}
//   token = hex(HMAC-SHA256(K_dev, device_id || "." || decimal(timestamp)))   (ca/bootstrap.h)
//
// The device proves: its IDevID is valid and names device_id; it holds the IDevID's key (the
// TLS client certificate is device_cert, or, without one, the CSR is signed with that key); it
// knows K_dev (the token); the token is fresh (window) and new (claimed in memory while its
// request is served, and recorded in the replay table in the transaction that commits the
// certificate). The token, one HMAC, is checked first: an unauthenticated request costs little.
#include <cstdlib>
#include <nlohmann/json.hpp>

#include "iotpki/ca/bootstrap.h"
#include "iotpki/enroll/errors.h"
#include "iotpki/enroll/service.h"
#include "iotpki/x509/verify.h"

namespace iotpki::enroll {
namespace {

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

Result<std::string> StringField(const nlohmann::json& j, const char* name) {
  auto it = j.find(name);
  if (it == j.end())
    return Fail(Code::kInvalidArgument, std::string("missing field \"") + name + "\"");
  if (!it->is_string()) {
    return Fail(Code::kInvalidArgument, std::string("field \"") + name + "\" must be a string");
  }
  return it->get<std::string>();
}

// base64 DER, or PEM with `label`.
Result<Bytes> DerOrPem(const std::string& text, const char* field) {
  if (text.find("-----BEGIN") != std::string::npos) return ToBytes(text);
  auto der = Base64Decode(text);
  if (!der || der->empty()) {
    return Fail(Code::kInvalidArgument, std::string("field \"") + field + "\" is not base64");
  }
  return der;
}

}  // namespace

Result<EnrollService::BootstrapInput> EnrollService::ParseBootstrap(
    std::string_view body, const std::optional<server::ClientCertificate>& tls) const {
  nlohmann::json j = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Fail(Code::kInvalidArgument, "the body is not valid JSON");
  if (!j.is_object()) return Fail(Code::kInvalidArgument, "the body must be a JSON object");

  IOTPKI_TRY(std::string device_id, StringField(j, "device_id"));
  IOTPKI_TRY(std::string csr_text, StringField(j, "csr"));
  IOTPKI_TRY(std::string cert_text, StringField(j, "device_cert"));
  IOTPKI_TRY(std::string token, StringField(j, "token"));
  auto ts = j.find("timestamp");
  if (ts == j.end()) return Fail(Code::kInvalidArgument, "missing field \"timestamp\"");
  if (!ts->is_number_integer()) {
    return Fail(Code::kInvalidArgument, "field \"timestamp\" must be an integer (Unix seconds)");
  }
  if (!x509::ValidateDeviceId(device_id)) {
    return Fail(Code::kInvalidArgument, "field \"device_id\" must be 64 lowercase hex digits");
  }
  if (token.size() != 64 || token.find_first_not_of("0123456789abcdef") != std::string::npos) {
    return Fail(Code::kInvalidArgument, "field \"token\" must be 64 lowercase hex digits");
  }
  int64_t timestamp = ts->get<int64_t>();
  if (timestamp < 0) return Fail(Code::kInvalidArgument, "field \"timestamp\" is negative");

  IOTPKI_TRY(Bytes csr_bytes, DerOrPem(csr_text, "csr"));
  auto csr = csr_text.find("-----BEGIN") != std::string::npos ? x509::Csr::FromPem(csr_text)
                                                              : x509::Csr::FromDer(csr_bytes);
  if (!csr) return Fail(std::move(csr).error().Context("field \"csr\""));
  IOTPKI_TRY(Bytes cert_bytes, DerOrPem(cert_text, "device_cert"));
  auto cert = [&]() -> Result<x509::Certificate> {
    // Usually the TLS client certificate too, which the handshake has parsed already.
    if (tls && tls->certificate && tls->certificate->ToDer() == cert_bytes) {
      return *tls->certificate;
    }
    if (cert_text.find("-----BEGIN") != std::string::npos) {
      return x509::Certificate::FromPem(cert_text);
    }
    return x509::Certificate::FromDer(cert_bytes);
  }();
  if (!cert) return Fail(std::move(cert).error().Context("field \"device_cert\""));
  return BootstrapInput{.device_id = std::move(device_id),
                        .csr = std::move(*csr),
                        .device_cert = std::move(*cert),
                        .timestamp = timestamp,
                        .token = std::move(token)};
}

Result<void> EnrollService::AuthenticateBootstrap(const server::Request& request,
                                                  const BootstrapInput& in) {
  int64_t now = authority_.clock().NowUnix();
  // 1. A fresh token made with K_dev: one HMAC, checked before anything that costs more (a
  //    chain verification, a store read), so a request without the device's secret costs
  //    little. The window is checked first so that the replay table only ever holds tokens
  //    younger than the window.
  if (std::llabs(now - in.timestamp) > options_.token_window_seconds) {
    return Fail(Code::kUnauthenticated, "timestamp outside the accepted window of " +
                                            std::to_string(options_.token_window_seconds) +
                                            " s (is the device clock set?)");
  }
  IOTPKI_TRY(crypto::Secret k_dev, authority_.BootstrapSecret(in.device_id));
  if (!ca::VerifyBootstrapToken(k_dev.bytes(), in.device_id, in.timestamp, in.token)) {
    return Fail(Code::kUnauthenticated, "invalid bootstrap token");
  }

  // 2. device_cert is a valid IDevID of device_id. When it is also the TLS client certificate,
  //    the handshake has verified it already.
  const x509::Certificate& mfg = authority_.certificate(ca::CaName::kManufacturing);
  bool tls_verified = request.client_cert && request.client_cert->chain_valid &&
                      request.client_cert->issuer_index == 0 &&
                      request.client_cert->certificate == in.device_cert;
  if (!tls_verified) {
    // The manufacturing CA is the only anchor: nothing else's certificates are IDevIDs.
    x509::Verdict v = x509::VerifyChain(in.device_cert, {}, std::span(&mfg, 1), now);
    if (v != x509::Verdict::kValid) {
      return Fail(Code::kUnauthenticated,
                  "device_cert is not a valid IDevID (" + std::string(x509::VerdictName(v)) + ")");
    }
  }
  if (in.device_cert.common_name() != in.device_id) {
    return Fail(Code::kUnauthenticated, "device_cert is not the IDevID of device_id");
  }
  IOTPKI_CHECK(CheckRevocation(in.device_cert, nullptr));

  // 3. Possession of the IDevID's key: by the TLS handshake, or by the CSR's own signature
  //    (which the CA verifies before it signs anything). Keys compare in their canonical form.
  if (request.client_cert) {
    if (!tls_verified) {
      return Fail(Code::kUnauthenticated,
                  "the TLS client certificate must be device_cert (or present none and sign the "
                  "CSR with the IDevID key)");
    }
  } else if (!(in.csr.public_key() == in.device_cert.public_key())) {
    return Fail(Code::kUnauthenticated,
                "without a TLS client certificate the CSR must be signed with the IDevID's key");
  }
  MaybePruneReplay(now);
  return {};
}

EnrollService::TokenClaim::~TokenClaim() {
  if (service_ == nullptr) return;
  std::lock_guard<std::mutex> lock(service_->tokens_mu_);
  service_->tokens_in_flight_.erase(token_);
}

Result<EnrollService::TokenClaim> EnrollService::ClaimToken(const std::string& device_id,
                                                            int64_t timestamp) {
  auto token = std::make_pair(device_id, timestamp);
  {
    std::lock_guard<std::mutex> lock(tokens_mu_);
    if (!tokens_in_flight_.insert(token).second) {
      return Fail(Code::kAlreadyExists, "bootstrap token already used");
    }
  }
  TokenClaim claim(this, std::move(token));
  // Read after the claim: a request that held it until its commit has recorded the token by
  // now, so no second certificate is signed for it here.
  IOTPKI_TRY(bool used, authority_.store().IsTokenRecorded(device_id, timestamp));
  if (used) return Fail(Code::kAlreadyExists, "bootstrap token already used");
  return claim;
}

void EnrollService::MaybePruneReplay(int64_t now) {
  int64_t last = last_prune_.load();
  if (now - last < 60 || !last_prune_.compare_exchange_strong(last, now)) return;
  // Tokens older than the window are refused by the window check anyway.
  auto pruned = authority_.store().PruneReplay(now - options_.token_window_seconds - 1);
  if (!pruned) AuditWriteFailed("replay.prune", pruned.error());
}

server::Response EnrollService::Bootstrap(const server::Request& request) {
  double started = Now();
  if (!HasMediaType(request.content_type, "application/json")) {
    return UnsupportedMediaType("application/json", ErrorFormat::kJson, request);
  }
  auto issued = [&]() -> Result<x509::Certificate> {
    IOTPKI_TRY(BootstrapInput in, ParseBootstrap(request.body, request.client_cert));
    IOTPKI_CHECK(AuthenticateBootstrap(request, in));
    IOTPKI_CHECK(CheckCsrSubject(in.csr, in.device_id, in.device_cert.serial_number()));
    // 4. Each token once: claimed here until its issuance is committed or refused.
    IOTPKI_TRY(TokenClaim claim, ClaimToken(in.device_id, in.timestamp));
    // Without TLS client authentication the CSR carries the IDevID key itself, and the working
    // certificate certifies it; with it, the CSR may carry a new key or that one. The token is
    // recorded in the issuance's transaction, first: a request the CA refuses does not consume
    // it (docs/http-api.md says why that is safe), and of concurrent uses (on several servers)
    // one commits.
    IOTPKI_TRY(store::WriteBatch reentry, CheckReentry(in.device_id));
    return IssueLdevid({.csr = in.csr, .device_id = in.device_id, .allow_birth_key = true}, nullptr,
                       store::WriteBatch().RecordToken(in.device_id, in.timestamp).Append(reentry));
  }();
  return RenderJson(request, "bootstrap", issued, started);
}

}  // namespace iotpki::enroll
