// Issue 2's benchmark: one certificate at a time through the CA's sign path, with the ratio to
// the ECDSA P-256 verify + sign rate `openssl speed` measures in the same run (one core).
//
//   BM_IssueDurable  Authority::Issue: CSR verify (proof of possession), policy rules, lint,
//                    sign, self-check, and the store commit with its fsync (durable record).
//   BM_Prepare       the same without the commit: what group commits amortize it down to.
//
// The limit is one verify plus one sign per certificate: 1 / (1/sign_rate + 1/verify_rate).
#include <benchmark/benchmark.h>

#include <chrono>
#include <filesystem>
#include <iostream>

#include "bench_util.h"
#include "iotpki/ca/authority.h"
#include "iotpki/common/clock.h"
#include "iotpki/crypto/primitives.h"
#include "iotpki/x509/csr.h"

namespace iotpki::bench {
namespace {

constexpr char kPass[] = "benchmark passphrase";

OpensslSpeed& Baseline() {
  static OpensslSpeed speed = MeasureOpensslSpeed(2, 1, false);
  return speed;
}

double Limit() {
  const OpensslSpeed& s = Baseline();
  return s.ecdsa_sign > 0 && s.ecdsa_verify > 0 ? 1.0 / (1.0 / s.ecdsa_sign + 1.0 / s.ecdsa_verify)
                                                : 0;
}

struct Fixture {
  std::filesystem::path dir;
  std::unique_ptr<ca::Authority> authority;
  std::vector<x509::Csr> csrs;
  size_t next = 0;

  explicit Fixture(size_t n) {
    dir = MakeTempDir("iotpki-issue-bench");
    auto ca_dir = dir / "ca";
    if (!ca::InitCa(ca_dir, {.organization = "Bench"}, kPass, SystemClock::Instance())) abort();
    auto a = ca::Authority::Open(ca_dir, SystemClock::Instance());
    if (!a || !(*a)->Unlock(ca::CaName::kManufacturing, kPass)) abort();
    authority = std::move(*a);
    for (size_t i = 0; i < n; ++i) {
      auto key = crypto::PrivateKey::Generate();
      csrs.push_back(*x509::MakeCsr(*key, {.common_name = "device"}));
    }
  }
  ~Fixture() {
    authority.reset();
    std::filesystem::remove_all(dir);
  }
  ca::IssueRequest Next() {
    size_t i = next++;
    return {.profile = x509::ProfileKind::kIDevID,
            .csr = csrs[i],
            .serial = "BENCH-" + std::to_string(i),
            .hardware_fingerprint = crypto::RandomBytes(8),
            .model = "bench"};
  }
};

void Report(benchmark::State& state, double seconds) {
  double rate = static_cast<double>(state.iterations()) / seconds;
  state.counters["certs_per_s"] = rate;
  state.counters["openssl_limit_per_s"] = Limit();
  state.counters["ratio_to_limit"] = Limit() > 0 ? rate / Limit() : 0;
}

void BM_IssueDurable(benchmark::State& state) {
  Fixture f(static_cast<size_t>(state.max_iterations));
  double seconds = 0;
  for (auto _ : state) {
    auto t0 = std::chrono::steady_clock::now();
    auto cert = f.authority->Issue(f.Next());
    seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (!cert) state.SkipWithError(cert.error().ToString().c_str());
  }
  Report(state, seconds);
}

void BM_Prepare(benchmark::State& state) {
  Fixture f(static_cast<size_t>(state.max_iterations));
  double seconds = 0;
  for (auto _ : state) {
    auto t0 = std::chrono::steady_clock::now();
    auto prepared = f.authority->Prepare(f.Next());
    seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (!prepared) state.SkipWithError(prepared.error().error.ToString().c_str());
  }
  Report(state, seconds);
}

BENCHMARK(BM_IssueDurable)->Iterations(300)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Prepare)->Iterations(2000)->Unit(benchmark::kMicrosecond)->UseRealTime();

}  // namespace
}  // namespace iotpki::bench

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  const auto& s = iotpki::bench::Baseline();
  std::cout << "openssl speed -seconds 2 ecdsap256: " << s.ecdsa_sign << " sign/s, "
            << s.ecdsa_verify << " verify/s; limit (verify + sign) " << iotpki::bench::Limit()
            << " certs/s on one core\n";
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
