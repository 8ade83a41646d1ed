// Test helpers for the server layer: a PKI with a server certificate for 127.0.0.1 and device
// certificates, a clock tests move while server threads read it, and the options of a real Server
// on a free loopback port. Tests only (server_test, the agent's HTTPS client test).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

#include "iotpki/common/clock.h"
#include "iotpki/server/server.h"
#include "iotpki/x509/test_util.h"

namespace iotpki::server::testing {

// Thread-safe, unlike FakeClock: the server reads it on its I/O threads while a test moves it.
class TestClock final : public Clock {
 public:
  explicit TestClock(int64_t unix_seconds) : now_(unix_seconds) {}
  TimePoint Now() const override { return TimePoint(std::chrono::seconds(now_.load())); }
  void Set(int64_t unix_seconds) { now_.store(unix_seconds); }

 private:
  std::atomic<int64_t> now_;
};

struct TestPki : x509::testing::Pki {
  // The device all device certificates name (their CN).
  std::string device_id() const { return x509::testing::Identity().device_id; }

  crypto::PrivateKey server_key = x509::testing::NewKey();
  // Valid at the real time: TLS clients check it against the system clock, which tests cannot
  // move.
  x509::Certificate server_cert = IssueServerCertificate();
  crypto::PrivateKey idevid_key = x509::testing::NewKey();
  // From the manufacturing CA; never expires.
  x509::Certificate idevid = x509::testing::Must(
      IssueFor(DeviceTemplate(x509::ProfileKind::kIDevID, idevid_key.public_key())), "idevid");
  crypto::PrivateKey ldevid_key = x509::testing::NewKey();
  // From the operational CA, valid from kNow (minus the policy's backdate) for 90 days.
  x509::Certificate ldevid = x509::testing::Must(
      IssueFor(DeviceTemplate(x509::ProfileKind::kLDevID, ldevid_key.public_key())), "ldevid");

 private:
  x509::Certificate IssueServerCertificate() const {
    x509::CertificateTemplate t = x509::NewTemplate(
        x509::ProfileKind::kTlsServer, server_key.public_key(), SystemClock().NowUnix(), policy);
    t.subject = {.organization = "Acme Devices", .common_name = "localhost"};
    t.dns_names = {"localhost"};
    t.ip_addresses = {"127.0.0.1"};
    return x509::testing::Must(IssueFor(t), "issue server certificate");
  }
};

// A server on 127.0.0.1, any free port, with one I/O thread: client_issuers are the
// manufacturing CA (index 0) and the operational CA (index 1), as enroll/ mounts them; client
// certificates judged by `clock`.
inline ServerOptions TestOptions(const TestPki& pki, const Clock& clock) {
  ServerOptions o;
  o.host = "127.0.0.1";
  o.port = 0;
  o.io_threads = 1;
  o.handler_threads = 2;
  o.certificate_chain = {pki.server_cert.ToDer(), pki.ops.ToDer()};
  o.key = &pki.server_key;
  o.client_issuers = {pki.mfg.ToDer(), pki.ops.ToDer()};
  o.clock = &clock;
  return o;
}

}  // namespace iotpki::server::testing
