// Issue 5's benchmark: C509 encode and decode rates for our IDevID and LDevID, next to OpenSSL's
// DER parse (d2i_X509) of the same certificates, measured in the same run (one core).
//
//   BM_D2iX509        the baseline: d2i_X509 of the DER, then free.
//   BM_EncodeX509     DER -> C509 type 3; includes the encoder's own decode-and-compare check.
//   BM_DecodeToX509   C509 type 3 -> the original DER.
//   BM_Parse          C509 type 2 -> fields (what a constrained device does before verifying).
//
// Google Benchmark prints each rate. The ratios to the baseline, printed last, come from a
// separate run that interleaves short rounds of every operation, timed in this thread's CPU time,
// so that other work on the machine shifts all of them alike. The certificates are issued by a
// P-256 hierarchy made here with the x509 layer, named as `iotpki ca init --org "SmartHome
// Industries"` names its CAs, for the device of scripts/demo.sh (serial STH-2026-000042).
#include <benchmark/benchmark.h>
#include <time.h>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "iotpki/c509/c509.h"
#include "iotpki/common/clock.h"
#include "iotpki/crypto/ossl.h"
#include "iotpki/crypto/signer.h"
#include "iotpki/x509/builder.h"

namespace iotpki::bench {
namespace {

using x509::ProfileKind;

constexpr char kOrganization[] = "SmartHome Industries";
constexpr char kSerial[] = "STH-2026-000042";

template <class T>
T Must(Result<T> r, const char* what) {
  if (!r) {
    std::cerr << what << ": " << r.error().ToString() << "\n";
    std::abort();
  }
  return std::move(*r);
}

struct Sample {
  Bytes der;
  Bytes type3;
  Bytes type2;
};

// One IDevID and one LDevID, with their C509 forms.
const std::map<ProfileKind, Sample>& Samples() {
  static const std::map<ProfileKind, Sample> samples = [] {
    const int64_t now = SystemClock::Instance().NowUnix();
    x509::Policy policy;
    auto ca = [&](ProfileKind kind, const std::string& cn, const crypto::PrivateKey& key,
                  const x509::Certificate* issuer, const crypto::PrivateKey& issuer_key) {
      x509::CertificateTemplate t = x509::NewTemplate(kind, key.public_key(), now, policy);
      t.subject = {.organization = kOrganization, .common_name = cn};
      return Must(x509::Issue(t, issuer, issuer_key, policy), "issue CA");
    };
    auto root_key = Must(crypto::PrivateKey::Generate(), "key");
    auto mfg_key = Must(crypto::PrivateKey::Generate(), "key");
    auto ops_key = Must(crypto::PrivateKey::Generate(), "key");
    auto device_key = Must(crypto::PrivateKey::Generate(), "key");
    auto root = ca(ProfileKind::kRoot, "Root CA", root_key, nullptr, root_key);
    auto mfg = ca(ProfileKind::kIssuingCa, "Manufacturing CA", mfg_key, &root, root_key);
    auto ops = ca(ProfileKind::kIssuingCa, "Operational CA", ops_key, &root, root_key);

    std::map<ProfileKind, Sample> out;
    for (ProfileKind kind : {ProfileKind::kIDevID, ProfileKind::kLDevID}) {
      x509::CertificateTemplate t = x509::NewTemplate(kind, device_key.public_key(), now, policy);
      t.device = {.device_id = x509::ComputeDeviceId(kSerial, Bytes(16, 0x5a)),
                  .serial = kSerial,
                  .organization = kOrganization};
      const bool birth = kind == ProfileKind::kIDevID;
      auto cert = Must(x509::Issue(t, birth ? &mfg : &ops, birth ? mfg_key : ops_key, policy),
                       "issue device certificate");
      Sample s{.der = cert.ToDer()};
      s.type3 = Must(c509::EncodeX509(s.der), "encode");
      s.type2 = Must(c509::ToNative(s.der, birth ? mfg_key : ops_key), "native");
      out.emplace(kind, std::move(s));
    }
    return out;
  }();
  return samples;
}

// CPU time of this thread: rates and ratios stay meaningful on a machine busy with other work.
double ThreadSeconds() {
  timespec ts{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

bool D2i(const Sample& s) {
  const unsigned char* p = s.der.data();
  auto x = ossl::Own(d2i_X509(nullptr, &p, static_cast<long>(s.der.size())));
  benchmark::DoNotOptimize(x.get());
  return x != nullptr;
}
bool Encode(const Sample& s) {
  auto c509 = c509::EncodeX509(s.der);
  benchmark::DoNotOptimize(c509);
  return c509.has_value();
}
bool Decode(const Sample& s) {
  auto der = c509::DecodeToX509(s.type3);
  benchmark::DoNotOptimize(der);
  return der.has_value();
}
bool ParseNative(const Sample& s) {
  auto cert = c509::Parse(s.type2);
  benchmark::DoNotOptimize(cert);
  return cert.has_value();
}

using Operation = bool (*)(const Sample&);

void Run(benchmark::State& state, Operation op) {
  const Sample& s = Samples().at(static_cast<ProfileKind>(state.range(0)));
  for (auto _ : state) {
    if (!op(s)) state.SkipWithError("operation failed");
  }
  state.counters["certs_per_s"] =
      benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
  state.SetLabel(std::string(x509::ProfileName(static_cast<ProfileKind>(state.range(0)))));
}

void BM_D2iX509(benchmark::State& state) { Run(state, D2i); }
void BM_EncodeX509(benchmark::State& state) { Run(state, Encode); }
void BM_DecodeToX509(benchmark::State& state) { Run(state, Decode); }
void BM_Parse(benchmark::State& state) { Run(state, ParseNative); }

// Rates (per CPU second) of the four operations on one sample, measured in interleaved rounds.
std::vector<double> InterleavedRates(const Sample& s, const std::vector<Operation>& ops) {
  constexpr int kRounds = 40;
  std::vector<double> seconds(ops.size()), count(ops.size());
  for (int round = 0; round < kRounds; ++round) {
    for (size_t k = 0; k < ops.size(); ++k) {
      // About 25 ms per operation and round: d2i ~150 us, parse ~2 us.
      const int n = k == ops.size() - 1 ? 10000 : 200;
      const double start = ThreadSeconds();
      for (int i = 0; i < n; ++i) ops[k](s);
      seconds[k] += ThreadSeconds() - start;
      count[k] += n;
    }
  }
  std::vector<double> rates;
  for (size_t k = 0; k < ops.size(); ++k) rates.push_back(count[k] / seconds[k]);
  return rates;
}

void PrintRatios() {
  const std::vector<Operation> ops = {D2i, Encode, Decode, ParseNative};
  std::cout << "\nratio to d2i_X509 (interleaved rounds, CPU time of one thread):\n"
            << "certificate  d2i_X509/s  EncodeX509/s (ratio)  DecodeToX509/s (ratio)  "
               "Parse type 2/s (ratio)\n";
  for (const auto& [kind, s] : Samples()) {
    std::vector<double> r = InterleavedRates(s, ops);
    auto cell = [&](size_t k) {
      char buf[64];
      std::snprintf(buf, sizeof buf, "%9.0f (%5.2f)", r[k], r[k] / r[0]);
      return std::string(buf);
    };
    char base[32];
    std::snprintf(base, sizeof base, "%10.0f", r[0]);
    std::cout << x509::ProfileName(kind) << "       " << base << "  " << cell(1) << "       "
              << cell(2) << "        " << cell(3) << "\n";
  }
}

void Profiles(benchmark::internal::Benchmark* b) {
  b->Arg(static_cast<int>(ProfileKind::kIDevID))->Arg(static_cast<int>(ProfileKind::kLDevID));
  b->Unit(benchmark::kMicrosecond);
}

BENCHMARK(BM_D2iX509)->Apply(Profiles);
BENCHMARK(BM_EncodeX509)->Apply(Profiles);
BENCHMARK(BM_DecodeToX509)->Apply(Profiles);
BENCHMARK(BM_Parse)->Apply(Profiles);

}  // namespace
}  // namespace iotpki::bench

int main(int argc, char** argv) {
  using iotpki::bench::Samples;
  benchmark::Initialize(&argc, argv);
  std::cout << "certificate  X.509 DER  C509 type 3  C509 type 2\n";
  for (const auto& [kind, s] : Samples()) {
    // The size by value: clang 14 cannot capture a structured binding.
    auto pct = [der = s.der.size()](size_t n) { return std::to_string(100 * n / der) + "%"; };
    std::cout << iotpki::x509::ProfileName(kind) << "       " << s.der.size() << "        "
              << s.type3.size() << " (" << pct(s.type3.size()) << ")    " << s.type2.size() << " ("
              << pct(s.type2.size()) << ")\n";
  }
  benchmark::RunSpecifiedBenchmarks();
  iotpki::bench::PrintRatios();
  benchmark::Shutdown();
  return 0;
}
