// Where a factory batch spends its time, per device, on one thread: the steps of
// mfg::Provision measured one at a time, with the `openssl speed` figures of the same run for
// scale. bench/run.sh measures the whole batch on every core; this explains its figure.
#include <benchmark/benchmark.h>

#include <chrono>
#include <filesystem>
#include <iostream>

#include "bench_util.h"
#include "iotpki/ca/authority.h"
#include "iotpki/common/clock.h"
#include "iotpki/crypto/primitives.h"
#include "iotpki/mfg/output_dir.h"
#include "iotpki/mfg/transport.h"
#include "iotpki/x509/csr.h"

namespace iotpki::bench {
namespace {

namespace fs = std::filesystem;
constexpr char kPass[] = "benchmark passphrase";

struct Ca {
  fs::path dir;
  std::unique_ptr<ca::Authority> authority;
  size_t serial = 0;

  Ca() {
    dir = MakeTempDir("iotpki-mfg-bench");
    if (!ca::InitCa(dir / "ca", {.organization = "Bench"}, kPass, SystemClock::Instance())) abort();
    auto a = ca::Authority::Open(dir / "ca", SystemClock::Instance());
    if (!a || !(*a)->Unlock(ca::CaName::kManufacturing, kPass) || !(*a)->UnlockBootstrap(kPass)) {
      abort();
    }
    authority = std::move(*a);
  }
  ~Ca() {
    authority.reset();
    fs::remove_all(dir);
  }
  std::string NextSerial() { return "B-" + std::to_string(++serial); }
};

Ca& TheCa() {
  static Ca ca;
  return ca;
}

void BM_GenerateKey(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(crypto::PrivateKey::Generate());
}

void BM_PrepareGenerated(benchmark::State& state) {
  std::vector<crypto::PrivateKey> keys;
  for (int64_t i = 0; i < state.max_iterations; ++i)
    keys.push_back(*crypto::PrivateKey::Generate());
  TheCa();  // created (ca init, unlocking) outside the timed loop
  size_t i = 0;
  for (auto _ : state) {
    auto p = TheCa().authority->PrepareGenerated({.key = keys[i++],
                                                  .serial = TheCa().NextSerial(),
                                                  .hardware_fingerprint = {1, 2, 3},
                                                  .uniqueness_checked = state.range(0) != 0});
    if (!p) state.SkipWithError(p.error().error.ToString().c_str());
  }
}

void BM_PrepareCsr(benchmark::State& state) {
  std::vector<x509::Csr> csrs;
  for (int64_t i = 0; i < state.max_iterations; ++i) {
    csrs.push_back(*x509::MakeCsr(*crypto::PrivateKey::Generate(), {.common_name = "d"}));
  }
  TheCa();  // created (ca init, unlocking) outside the timed loop
  size_t i = 0;
  for (auto _ : state) {
    auto p = TheCa().authority->Prepare({.profile = x509::ProfileKind::kIDevID,
                                         .csr = csrs[i++],
                                         .serial = TheCa().NextSerial(),
                                         .hardware_fingerprint = {1, 2, 3},
                                         .uniqueness_checked = state.range(0) != 0});
    if (!p) state.SkipWithError(p.error().error.ToString().c_str());
  }
}

void BM_CertificateFromDer(benchmark::State& state) {
  auto p = TheCa().authority->PrepareGenerated({.key = *crypto::PrivateKey::Generate(),
                                                .serial = TheCa().NextSerial(),
                                                .hardware_fingerprint = {1}});
  Bytes der = p->certificate.ToDer();
  for (auto _ : state) benchmark::DoNotOptimize(x509::Certificate::FromDer(der));
}

void BM_CsrFromDer(benchmark::State& state) {
  Bytes der = x509::MakeCsr(*crypto::PrivateKey::Generate(), {.common_name = "d"})->ToDer();
  for (auto _ : state) benchmark::DoNotOptimize(x509::Csr::FromDer(der));
}

void BM_PublicKeyFromDer(benchmark::State& state) {
  Bytes spki = crypto::PrivateKey::Generate()->public_key().ToDer();
  for (auto _ : state) benchmark::DoNotOptimize(crypto::PublicKey::FromDer(spki));
}

void BM_TransportEncrypt(benchmark::State& state) {
  auto tk = mfg::TransportKey::Derive("bench transport passphrase", crypto::RandomBytes(16),
                                      mfg::kTransportIterations);
  auto key = crypto::PrivateKey::Generate();
  for (auto _ : state) benchmark::DoNotOptimize(tk->Encrypt(*key));
}

void BM_BootstrapSecret(benchmark::State& state) {
  std::string id(64, 'a');
  for (auto _ : state) benchmark::DoNotOptimize(TheCa().authority->BootstrapSecret(id));
}

// The five files of a device folder, written into .partial/ and published, without fsync.
void BM_DeviceFolder(benchmark::State& state) {
  fs::path out = TheCa().dir / ("out-" + std::to_string(state.max_iterations));
  auto dir = mfg::OutputDir::Open(out, true);
  Bytes cert(560, 0x30), key(420, 0x2d), chain(1230, 0x2d), secret(65, 0x61);
  size_t n = 0;
  for (auto _ : state) {
    std::string serial = "F-" + std::to_string(++n);
    (void)dir->MakePartial(serial);
    fs::path p = dir->Partial(serial);
    (void)mfg::WriteFileUnsynced(p / mfg::kKeyPem, key, 0600);
    (void)mfg::WriteFileUnsynced(p / mfg::kBootstrapHex, secret, 0600);
    (void)mfg::WriteFileUnsynced(p / mfg::kChainPem, chain, 0644);
    (void)mfg::WriteFileUnsynced(p / mfg::kCertDer, cert, 0644);
    (void)mfg::WriteFileUnsynced(p / mfg::kCertPem, cert, 0644);
    if (!dir->Publish(serial)) state.SkipWithError("publish failed");
  }
  (void)dir->Sync();  // after the timed loop: the batch pays one syncfs per group
}

// Store rows of one device (device, certificate, key, audit), committed 2,000 at a time with
// the fsync that makes them durable.
void BM_GroupCommitPerDevice(benchmark::State& state) {
  constexpr size_t kGroup = 2000;
  std::vector<store::WriteBatch> prepared;
  for (size_t i = 0; i < kGroup; ++i) {
    auto p = TheCa().authority->PrepareGenerated({.key = *crypto::PrivateKey::Generate(),
                                                  .serial = TheCa().NextSerial(),
                                                  .hardware_fingerprint = {1}});
    prepared.push_back(p->batch);
  }
  store::WriteBatch group;
  for (const auto& b : prepared) {
    for (const auto& op : b.ops()) {
      if (auto* d = std::get_if<store::InsertDeviceOp>(&op)) group.InsertDevice(d->device);
      if (auto* c = std::get_if<store::InsertCertificateOp>(&op)) group.InsertCertificate(c->cert);
      if (auto* a = std::get_if<store::AppendAuditOp>(&op)) group.AppendAudit(a->event);
    }
  }
  for (auto _ : state) {
    auto r = TheCa().authority->store().Commit(group);
    if (!r) state.SkipWithError(r.error().ToString().c_str());
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * kGroup));
}

BENCHMARK(BM_GenerateKey)->Unit(benchmark::kMicrosecond);
// checked:1 is how mfg provision calls them: serial and key checked for the whole batch
// beforehand (uniqueness_checked), no store read per device.
BENCHMARK(BM_PrepareGenerated)
    ->ArgName("checked")
    ->Arg(0)
    ->Arg(1)
    ->Iterations(3000)
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_PrepareCsr)
    ->ArgName("checked")
    ->Arg(0)
    ->Arg(1)
    ->Iterations(3000)
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_CertificateFromDer)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_CsrFromDer)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_PublicKeyFromDer)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_TransportEncrypt)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_BootstrapSecret)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_DeviceFolder)->Iterations(3000)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_GroupCommitPerDevice)->Iterations(1)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
}  // namespace iotpki::bench

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  auto s = iotpki::bench::MeasureOpensslSpeed(2, 1, true);
  std::cout << "openssl speed -seconds 2 ecdsap256 ecdhp256 (one core): sign " << 1e6 / s.ecdsa_sign
            << " us, verify " << 1e6 / s.ecdsa_verify << " us, ecdh " << 1e6 / s.ecdh << " us\n";
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
