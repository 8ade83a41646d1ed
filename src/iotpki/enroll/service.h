// The onboarding endpoints: EST (RFC 7030) and the JSON bootstrap API, mounted on the server's
// Router. Each handler is a straight line: parse -> authenticate/authorize -> call the CA (which
// applies the issuance policy) -> commit durably (group commit) -> render. Errors become HTTP
// answers in one place (errors.h).
//
//   GET  /.well-known/est[/<label>]/cacerts          operational CA + root, certs-only PKCS#7
//   GET  /.well-known/est[/<label>]/csrattrs         what the CA signs (P-256, ECDSA-SHA256)
//   POST /.well-known/est[/<label>]/simpleenroll     IDevID client certificate -> LDevID
//   POST /.well-known/est[/<label>]/simplereenroll   current LDevID -> new LDevID (renew/rekey)
//   POST /.well-known/est[/<label>]/serverkeygen     IDevID -> server-made key (sealed) + LDevID
//   POST /api/v1/bootstrap                           JSON: IDevID + bootstrap token -> LDevID
//   POST /api/v1/devices/<device_id>/rotation        a rotation job's outcome, confirmed with
//                                                    the new LDevID (rotation_handler.cc)
//
// Thread safety: handlers may run concurrently on any number of threads.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "iotpki/ca/authority.h"
#include "iotpki/ca/group_commit.h"
#include "iotpki/campaign/waves.h"
#include "iotpki/common/bytes.h"
#include "iotpki/common/error.h"
#include "iotpki/enroll/est.h"
#include "iotpki/server/http.h"
#include "iotpki/server/metrics.h"
#include "iotpki/server/router.h"
#include "iotpki/x509/certificate.h"
#include "iotpki/x509/csr.h"

namespace iotpki::enroll {

struct EnrollOptions {
  // Bootstrap tokens are accepted if their timestamp is within this many seconds of now, either
  // way; each (device_id, timestamp) once.
  int64_t token_window_seconds = 300;
  // Audit actor for everything these endpoints issue or refuse.
  std::string actor = "server";
  // Most batches merged into one store transaction.
  size_t max_group_commit = 512;
};

class EnrollService {
 public:
  // `authority` must have the operational CA and the bootstrap secret unlocked, and outlive the
  // service; `metrics` too.
  static Result<std::unique_ptr<EnrollService>> Create(ca::Authority& authority,
                                                       server::Registry& metrics,
                                                       const EnrollOptions& options);

  // What the TLS layer must trust for client certificates (ServerOptions::client_issuers):
  // index 0 the manufacturing CA (IDevIDs), index 1 the operational CA (LDevIDs).
  std::vector<Bytes> ClientIssuers() const;

  // Adds every route above, plus GET /healthz (the store answers) to `router`.
  void Mount(server::Router& router);

  // The key and chain (leaf first) that sign serverkeygen's key packages: RFC 7030 4.4.2 has the
  // party that generated the key sign it (`iotpki serve`: its TLS identity). Set before the
  // first request; `key` must outlive the service. Until then serverkeygen answers 503.
  void SetKeyPackageSigner(const crypto::Signer* key, std::vector<x509::Certificate> chain);

  server::Response CaCerts(const server::Request& request);
  server::Response CsrAttrs(const server::Request& request);
  server::Response SimpleEnroll(const server::Request& request);
  server::Response SimpleReenroll(const server::Request& request);
  server::Response ServerKeygen(const server::Request& request);  // serverkeygen.cc
  server::Response Bootstrap(const server::Request& request);
  server::Response ConfirmRotation(const server::Request& request);
  server::Response Healthz(const server::Request& request);

  const ca::GroupCommitter& committer() const { return committer_; }

 private:
  enum class ClientCa { kManufacturing = 0, kOperational = 1 };
  // An authenticated client: its verified certificate and the device it names.
  struct Client {
    x509::Certificate cert;
    std::string device_id;
    std::optional<store::CertificateRecord> record;  // the CA's row for the certificate
  };
  struct BootstrapInput {
    std::string device_id;
    x509::Csr csr;
    x509::Certificate device_cert;
    int64_t timestamp = 0;
    std::string token;
  };

  // A rotation answer's body.
  struct Confirmation {
    std::string campaign;
    int64_t job = 0;
    bool installed = false;  // "installed"; false: "failed"
    std::string reason;
  };

  EnrollService(ca::Authority& authority, server::Registry& metrics, const EnrollOptions& options);

  static Result<Confirmation> ParseConfirmation(std::string_view body);
  // The rotation answer's straight line; the JSON answer, or the refusal.
  Result<nlohmann::json> Confirm(const server::Request& request);
  // The device's notified (or enrolled) jobs recording `serial` as their new certificate
  // (state enrolled), for the issuance's transaction.
  Result<store::WriteBatch> JobsEnrolled(const std::string& device_id, const std::string& serial);

  // Authentication and authorization steps, each a Result for the handler's straight line.
  Result<void> CheckLabel(const server::Request& request) const;
  Result<Client> Authenticate(const server::Request& request, ClientCa expected) const;
  Result<void> CheckRevocation(const x509::Certificate& cert,
                               std::optional<store::CertificateRecord>* record) const;
  Result<void> AuthorizeEnroll(const Client& client, const x509::Csr& csr) const;
  // The one rule, for simpleenroll and the JSON API alike, against a CSR whose subject names
  // another device: its CN must be `device_id` and its serialNumber `serial`, when present.
  static Result<void> CheckCsrSubject(const x509::Csr& csr, const std::string& device_id,
                                      const std::string& serial);
  Result<void> AuthorizeReenroll(const Client& client, const x509::Csr& csr) const;
  // serverkeygen: a well-formed CSR (its key is ignored), a P-256 IDevID to seal the key to, and
  // CheckCsrSubject.
  Result<void> AuthorizeServerKeygen(const Client& client, const x509::Csr& csr) const;
  // The lifecycle rules (lifecycle.cc). BindRenewal: simplereenroll only with the current
  // working certificate (or the one before it while the newest is unused); returns the client
  // certificate's first use (retiring earlier ones; empty if it was used before), which the
  // renewal's transaction carries and which is committed alone if the renewal is not, and the
  // revocations the renewal's transaction carries. CheckReentry: for simpleenroll and the JSON
  // API, refuses a device that may not enroll again and returns the cert.reentry audit row of one
  // that re-enters after expiry (empty otherwise).
  struct Renewal {
    store::WriteBatch first_use;
    store::WriteBatch replaced;
  };
  Result<Renewal> BindRenewal(const Client& client);
  Result<store::WriteBatch> CheckReentry(const std::string& device_id);
  // `tls` is the TLS client certificate, if any: a device_cert with the same DER is taken from
  // it instead of being parsed again.
  Result<BootstrapInput> ParseBootstrap(std::string_view body,
                                        const std::optional<server::ClientCertificate>& tls) const;
  Result<void> AuthenticateBootstrap(const server::Request& request, const BootstrapInput& in);

  // Bootstrap tokens between their replay check and their commit on this server. Concurrent
  // uses of one token all pass the store's replay check; the claim lets one of them go on to the
  // CA and refuses the others before anything is signed for them (the replay row, committed
  // with the certificate, still decides between servers).
  class TokenClaim {
   public:
    TokenClaim(EnrollService* service, std::pair<std::string, int64_t> token)
        : service_(service), token_(std::move(token)) {}
    TokenClaim(TokenClaim&& other) noexcept
        : service_(std::exchange(other.service_, nullptr)), token_(std::move(other.token_)) {}
    TokenClaim(const TokenClaim&) = delete;
    TokenClaim& operator=(const TokenClaim&) = delete;
    TokenClaim& operator=(TokenClaim&&) = delete;
    ~TokenClaim();

   private:
    EnrollService* service_;
    std::pair<std::string, int64_t> token_;
  };
  // AlreadyExists "bootstrap token already used" when the token is in flight or recorded.
  Result<TokenClaim> ClaimToken(const std::string& device_id, int64_t timestamp);

  // The CA's policy, signature and the durable commit. A refusal is audited and counted.
  // `before_commit`, if set, sees the signed certificate before it is committed; its error is
  // the answer and nothing is committed (EST checks there that it can send the certificate in
  // the form the client accepts). `first` is committed in the issuance's transaction, before
  // its operations (the JSON API's replay row): if it fails, nothing is issued.
  Result<x509::Certificate> IssueLdevid(
      ca::IssueRequest request,
      const std::function<Result<void>(const x509::Certificate&)>& before_commit = nullptr,
      const store::WriteBatch& first = store::WriteBatch());

  // EST enrollment: issues, and answers in the first of `formats` (never empty) that can carry
  // the certificate, checked before the commit. `first` as for IssueLdevid.
  Result<server::Response> IssueAndAnswer(ca::IssueRequest issue,
                                          const std::vector<CertFormat>& formats,
                                          const store::WriteBatch& first = store::WriteBatch());

  // An EST answer: the refusal (counted) as an error response, or the answer (its latency
  // observed when it is a 200).
  server::Response RenderEst(const server::Request& request, const std::string& endpoint,
                             Result<server::Response> answer, double started);
  server::Response RenderJson(const server::Request& request, const std::string& endpoint,
                              const Result<x509::Certificate>& issued, double started);
  void CountRefusal(const std::string& endpoint, const Error& error);
  void MaybePruneReplay(int64_t now);
  // A refusal's audit row or the replay prune could not be written: logged and counted
  // (store::ReportAuditWriteFailure, and /metrics), never silent.
  void AuditWriteFailed(std::string_view what, const Error& error);

  const crypto::Signer* key_package_signer_ = nullptr;
  std::vector<x509::Certificate> key_package_chain_;
  server::Registry::GaugeSamples ExpiringGauge();

  ca::Authority& authority_;
  server::Registry& metrics_;
  EnrollOptions options_;
  ca::GroupCommitter committer_;
  std::string cacerts_body_;
  Bytes csrattrs_der_;
  server::Counter& issued_ldevid_;
  std::atomic<int64_t> last_prune_{0};
  campaign::RandomJitter jitter_;  // retry delays after a reported failure

  std::mutex tokens_mu_;
  std::set<std::pair<std::string, int64_t>> tokens_in_flight_;  // guarded by tokens_mu_

  std::mutex gauge_mu_;
  int64_t gauge_at_ = 0;
  server::Registry::GaugeSamples gauge_cache_;
};

}  // namespace iotpki::enroll
