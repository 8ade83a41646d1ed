// Issue 15: how fast the server notifies devices. Signed rotate commands (SignCommand: JSON,
// base64url, one ECDSA P-256 signature) per second, alone and published through a real
// Mosquitto (tests/mqtt_broker.sh, mutual TLS) with QoS 1 and the PUBACK awaited, one after the
// other as MqttNotifier does; next to `openssl speed ecdsap256`'s sign rate in the same run.
// Usage: rotation_notify [COMMANDS] (default 2000). Runs for a few seconds.
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <iostream>
#include <string>

#include "iotpki/campaign/command.h"
#include "iotpki/campaign/mqtt_notifier.h"
#include "iotpki/common/bytes.h"
#include "iotpki/common/clock.h"
#include "iotpki/common/file.h"
#include "iotpki/mqtt/client.h"
#include "iotpki/mqtt/testing/broker.h"
#include "iotpki/x509/test_util.h"

namespace {

using namespace iotpki;  // NOLINT: a benchmark's main
using Steady = std::chrono::steady_clock;

double Seconds(Steady::time_point since) {
  return std::chrono::duration<double>(Steady::now() - since).count();
}

// CPU seconds of this process (every thread: the MQTT client's counts): `openssl speed` also
// reports per CPU second, so the ratio holds on a loaded machine.
double CpuSeconds() {
  timespec ts{};
  ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

// ECDSA P-256 signs per second from `openssl speed`, or 0.
double OpensslSignRate() {
  FILE* p = ::popen("openssl speed -seconds 2 ecdsap256 2>/dev/null", "r");
  if (p == nullptr) return 0;
  char line[512];
  double rate = 0;
  while (std::fgets(line, sizeof line, p) != nullptr) {
    double sign_s = 0, verify_s = 0, sign_per = 0, verify_per = 0;
    if (std::sscanf(line, " 256 bits ecdsa (nistp256) %lfs %lfs %lf %lf", &sign_s, &verify_s,
                    &sign_per, &verify_per) == 4) {
      rate = sign_per;
    }
  }
  ::pclose(p);
  return rate;
}

std::string PlainKeyPem(const crypto::PrivateKey& key) {
  std::string b64 = Base64Encode(x509::testing::Must(key.ToDer(), "key"));
  std::string pem = "-----BEGIN PRIVATE KEY-----\n";
  for (size_t i = 0; i < b64.size(); i += 64) pem += b64.substr(i, 64) + "\n";
  return pem + "-----END PRIVATE KEY-----\n";
}

}  // namespace

int main(int argc, char** argv) {
  int n = argc > 1 ? std::atoi(argv[1]) : 2000;
  if (n < 1) {
    std::cerr << "usage: rotation_notify [COMMANDS >= 1]\n";
    return 2;
  }
  char tmpl[] = "/tmp/iotpki-rotation-bench-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) return 1;
  std::filesystem::path dir = tmpl;
  int64_t now = SystemClock().NowUnix();
  x509::testing::Pki pki;
  crypto::PrivateKey key = x509::testing::NewKey();
  x509::CertificateTemplate t =
      x509::NewTemplate(x509::ProfileKind::kCommandSigner, key.public_key(), now, pki.policy);
  t.subject = {.organization = "Acme Devices", .common_name = "iotpki-server"};
  x509::Certificate cert = x509::testing::Must(pki.IssueFor(t), "command cert");
  if (!WriteFileAtomic(dir / "cas.pem", pki.root.ToPem() + pki.ops.ToPem(), 0644) ||
      !WriteFileAtomic(dir / "server.pem", cert.ToPem() + pki.ops.ToPem(), 0644) ||
      !WriteFileAtomic(dir / "server.key", PlainKeyPem(key), 0600)) {
    return 1;
  }
  auto broker = mqtt::testing::TestBroker::Start(dir / "broker", dir / "cas.pem");
  if (!broker) {
    std::cerr << "broker: " << broker.error().ToString() << "\n";
    return 1;
  }
  auto client = mqtt::Client::Create({.port = broker->port(),
                                      .client_id = "iotpki-server-bench",
                                      .ca_file = broker->certificate(),
                                      .cert_file = dir / "server.pem",
                                      .key_file = dir / "server.key"},
                                     nullptr);
  if (!client || !(*client)->Connect()) {
    std::cerr << "cannot connect to the broker\n";
    return 1;
  }
  (*client)->Start();

  std::string device = x509::testing::Identity("SN-BENCH").device_id;
  campaign::Command c{.campaign = "bench", .device_id = device, .not_after = now + 3600};
  double cpu = CpuSeconds();
  for (int i = 0; i < n; ++i) {
    c.job = i;
    c.nonce = campaign::NewNonce();
    if (!campaign::SignCommand(c, key, cert)) return 1;
  }
  double sign_rate = n / (CpuSeconds() - cpu);

  std::string topic = campaign::CommandTopic(device);
  auto start = Steady::now();
  cpu = CpuSeconds();
  for (int i = 0; i < n; ++i) {
    c.job = i;
    c.nonce = campaign::NewNonce();
    auto env = campaign::SignCommand(c, key, cert);
    if (!env || !(*client)->Publish(topic, *env)) {
      std::cerr << "publish failed\n";
      return 1;
    }
  }
  double publish_cpu_rate = n / (CpuSeconds() - cpu);
  double publish_rate = n / Seconds(start);
  (*client)->Stop();
  broker->Stop();
  std::filesystem::remove_all(dir);

  double openssl = OpensslSignRate();
  std::printf("commands                          %d\n", n);
  std::printf("signed commands per CPU second            %.0f\n", sign_rate);
  std::printf("signed + published (PUBACK awaited) per s  %.0f wall, %.0f per CPU second\n",
              publish_rate, publish_cpu_rate);
  std::printf("openssl speed ecdsap256 signs per CPU s    %.0f\n", openssl);
  if (openssl > 0) {
    std::printf("ratio to openssl: signing %.2f, signing + publishing %.2f (CPU)\n",
                sign_rate / openssl, publish_cpu_rate / openssl);
  }
  return 0;
}
