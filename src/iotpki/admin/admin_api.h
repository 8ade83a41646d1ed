// The operator's view (issue 18): the JSON API under /admin/api/v1/ and the dashboard's pages,
// mounted on the router of `iotpki serve --admin-listen`'s own listener. Every request must carry
// an operator certificate of the admin CA (admin_ca.h), else 403; the listener trusts no other
// CA, so a device certificate never authenticates here.
//
// Reads answer from the store's count tables and keyset pages: nothing walks the fleet.
// Operator actions (campaign pause/resume/cancel, certificate revoke, device decommission) are
// POSTs only, refused with 403 to the read-only role, and need a CSRF-safe request: a JSON body,
// an X-CSRF-Token header equal to the token GET /admin/api/v1/session gave this certificate (an
// HMAC under a key of this process, compared in constant time), no cross-site Sec-Fetch-Site,
// and an Origin, if sent, equal to the listener's own. Each action is an audit row whose actor
// is "admin:<operator name>". docs/http-api.md, "The admin API".
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "iotpki/ca/crl_publisher.h"
#include "iotpki/common/bytes.h"
#include "iotpki/common/clock.h"
#include "iotpki/server/router.h"
#include "iotpki/store/store.h"

namespace iotpki::admin {

struct AdminOptions {
  store::Store* store = nullptr;  // must outlive the API
  const Clock* clock = nullptr;   // must outlive the API
  // The CA directory: the OCSP responder certificates (certs/ocsp-<ca>.pem) are read from it.
  std::filesystem::path dir;
  // The published CRLs, for their status; null: none shown. Must outlive the API.
  const ca::CrlPublisher* crls = nullptr;
  // How often the background thread verifies the audit chain (Start); the first run is at once.
  std::chrono::seconds audit_interval{6 * 3600};
};

// The last verification of the audit chain the API ran.
struct AuditRun {
  int64_t finished_at = 0;
  bool intact = false;
  int64_t rows = 0;
  int64_t last_seq = 0;
  std::string head_hash;    // hex
  std::string explanation;  // when broken, or the error that stopped it
};

class AdminApi {
 public:
  explicit AdminApi(AdminOptions options);
  ~AdminApi();  // Stop()
  AdminApi(const AdminApi&) = delete;
  AdminApi& operator=(const AdminApi&) = delete;

  // The API and the pages. `issuer_index` is the admin CA's index in the listener's
  // client_issuers: only certificates that chained to it are operators.
  void Mount(server::Router& router, int issuer_index = 0);

  // Verifies the audit chain now, then every audit_interval on a thread of its own until Stop.
  void Start();
  // Cancels a verification in flight (it stops before its next page of 1,000 rows, keeping the
  // last complete result) and joins the thread: serve's shutdown does not wait for a whole log.
  void Stop();
  // One verification on the calling thread; its result is what GET /admin/api/v1/audit shows.
  // After Stop it is cancelled at once: the returned run says so and the last result stays.
  AuditRun VerifyAuditNow();

  // The CSRF token of the operator certificate with this SHA-256 fingerprint (hex).
  std::string CsrfToken(std::string_view fingerprint) const;

 private:
  AdminOptions options_;
  Bytes csrf_key_;
  mutable std::mutex audit_mu_;
  std::optional<AuditRun> audit_;
  std::thread thread_;
  std::mutex stop_mu_;
  std::condition_variable stop_cv_;
  bool stop_ = false;
  std::atomic<bool> cancel_{false};
};

}  // namespace iotpki::admin
