// Fixtures and timings for bench/run.sh and bench/scale.sh. Not part of the product.
//
//   bench_tool make-csrs OUT_DIR CSV COUNT PREFIX
//       COUNT P-256 keys and CSRs as a factory line's secure elements would make them
//       (OUT_DIR/<serial>.csr), and the CSV (serial,fingerprint) that goes with them.
//   bench_tool add-ldevids CA_DIR [MAX]   (at most MAX rows; default every manufactured device)
//       BENCH-ONLY FAST PATH: gives every manufactured device a working certificate (LDevID) row
//       through the Store API, with notAfter spread uniformly over the next 1 to 90 days, as in
//       a fleet onboarded over the last 90 days, and marks the device active. The rows are not
//       the devices' certificates: the DER is the operational CA's own certificate (a real
//       certificate of about an LDevID's size, with a P-256 key, so that the compliance report's
//       key pass parses real DER) and the key fingerprints are random; each gets the audit row
//       of an enrollment. The expiry queries read only the index columns (status, not_after,
//       serial, device_id), so their timings are those of real data.
//   bench_tool time-queries CA_DIR
//       In-process latency of the inventory queries (`device count` and one page of `device ls`
//       with --expiring-within 30d, and others), best and median of 5.
//   bench_tool crl-gen CA_DIR COUNT OUT_DIR
//       COUNT synthetic revocations of the operational CA (16-octet serials as the CA makes them,
//       revoked over the last 90 days, keyCompromise), then the CRL built in process as the
//       publisher does (sort, lint, encode, sign; the store read is not in it), timed; writes
//       OUT_DIR/ours.crl and OUT_DIR/index.txt, the same entries as an `openssl ca` database,
//       so that `openssl ca -gencrl` can sign the same CRL (bench/revocation.sh). The CA key's
//       passphrase comes from IOTPKI_PASSPHRASE.
#include <algorithm>
#include <cctype>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "iotpki/ca/authority.h"
#include "iotpki/ca/config.h"
#include "iotpki/common/clock.h"
#include "iotpki/common/file.h"
#include "iotpki/crypto/primitives.h"
#include "iotpki/x509/builder.h"
#include "iotpki/x509/certificate.h"
#include "iotpki/x509/crl.h"
#include "iotpki/x509/csr.h"

namespace iotpki::bench {
namespace {

namespace fs = std::filesystem;
using Steady = std::chrono::steady_clock;

int Usage() {
  std::fprintf(stderr,
               "usage: bench_tool make-csrs OUT_DIR CSV COUNT PREFIX\n"
               "       bench_tool add-ldevids CA_DIR [MAX]\n"
               "       bench_tool time-queries CA_DIR\n"
               "       bench_tool crl-gen CA_DIR COUNT OUT_DIR\n");
  return 2;
}

int Die(const Error& e) {
  std::fprintf(stderr, "bench_tool: %s\n", e.ToString().c_str());
  return 1;
}

int MakeCsrs(const fs::path& dir, const fs::path& csv, size_t count, const std::string& prefix) {
  fs::create_directories(dir);
  std::vector<std::string> lines(count);
  unsigned threads = std::max(1u, std::thread::hardware_concurrency());
  std::vector<std::thread> pool;
  for (unsigned t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      for (size_t i = t; i < count; i += threads) {
        char serial[80];
        std::snprintf(serial, sizeof serial, "%s%07zu", prefix.c_str(), i + 1);
        auto key = crypto::PrivateKey::Generate();
        auto csr = x509::MakeCsr(*key, {.common_name = serial});
        if (!csr || !WriteFileAtomic(dir / (std::string(serial) + ".csr"), csr->ToPem())) abort();
        lines[i] = std::string(serial) + "," + ToHex(crypto::RandomBytes(16));
      }
    });
  }
  for (auto& t : pool) t.join();
  std::ofstream out(csv);
  out << "serial,fingerprint\n";
  for (const auto& l : lines) out << l << "\n";
  return 0;
}

int AddLdevids(const fs::path& ca_dir, size_t max_rows) {
  auto config = ca::LoadConfig(ca_dir);
  if (!config) return Die(config.error());
  auto store = ca::OpenStore(ca_dir, *config, SystemClock::Instance());
  if (!store) return Die(store.error());
  std::mt19937_64 rng(42);
  std::uniform_int_distribution<int64_t> spread(86400, 90 * 86400);
  int64_t now = SystemClock::Instance().NowUnix();
  auto pem = ReadTextFile(ca_dir / "certs" / "operational.pem");
  if (!pem) return Die(pem.error());
  auto stand_in = x509::Certificate::FromPem(*pem);
  if (!stand_in) return Die(stand_in.error());
  const Bytes& placeholder = stand_in->ToDer();
  size_t total = 0;
  std::string cursor;
  auto t0 = Steady::now();
  do {
    size_t want = std::min<size_t>(5000, max_rows - total);
    auto page = (*store)->ListDevices({.state = store::DeviceState::kManufactured}, want, cursor);
    if (!page) return Die(page.error());
    store::WriteBatch batch;
    for (const auto& e : page->devices) {
      const store::Device& d = e.device;
      int64_t not_after = now + spread(rng);
      std::string serial = ToHex(x509::NewSerial());
      batch.InsertCertificate({.serial = serial,
                               .device_id = d.device_id,
                               .profile = store::CertProfile::kLDevId,
                               .issuer = "operational",
                               .subject = "serialNumber=" + d.serial + ",CN=" + d.device_id,
                               .not_before = not_after - 90 * 86400,
                               .not_after = not_after,
                               .key_fingerprint = ToHex(crypto::RandomBytes(32)),
                               .der = placeholder});
      batch.UpdateDeviceState(d.device_id, store::DeviceState::kManufactured,
                              store::DeviceState::kActive);
      // The audit row an enrollment writes (Authority's cert.issue, of its size), so that the
      // audit log, which the compliance report verifies whole, is as long as a real fleet's.
      batch.AppendAudit({.actor = "est",
                         .action = "cert.issue",
                         .subject = d.device_id,
                         .details = "{\"profile\":\"ldevid\",\"serial\":\"" + d.serial +
                                    "\",\"cert_serial\":\"" + serial +
                                    "\",\"not_after\":" + std::to_string(not_after) +
                                    ",\"sha256\":\"" + ToHex(crypto::RandomBytes(32)) + "\"}"});
    }
    if (!batch.empty()) {
      auto c = (*store)->Commit(batch);
      if (!c) return Die(c.error());
    }
    total += page->devices.size();
    cursor = page->next_cursor;
  } while (!cursor.empty() && total < max_rows);
  std::printf("added %zu LDevID rows in %.1f s (bench-only fast path)\n", total,
              std::chrono::duration<double>(Steady::now() - t0).count());
  return 0;
}

int TimeQueries(const fs::path& ca_dir) {
  auto config = ca::LoadConfig(ca_dir);
  if (!config) return Die(config.error());
  auto store = ca::OpenStore(ca_dir, *config, SystemClock::Instance());
  if (!store) return Die(store.error());
  auto time = [&](const char* name, auto&& query) {
    std::vector<double> ms;
    std::string result;
    for (int i = 0; i < 5; ++i) {
      auto t0 = Steady::now();
      result = query();
      ms.push_back(std::chrono::duration<double, std::milli>(Steady::now() - t0).count());
    }
    std::sort(ms.begin(), ms.end());
    std::printf("%-44s %-22s best %8.2f ms  median %8.2f ms\n", name, result.c_str(), ms[0], ms[2]);
  };
  auto count = [&](store::DeviceFilter f) {
    return [&store, f] {
      auto n = (*store)->CountDevices(f);
      return n ? std::to_string(*n) + " devices" : n.error().ToString();
    };
  };
  auto page = [&](store::DeviceFilter f) {
    return [&store, f] {
      auto p = (*store)->ListDevices(f, 100, "");
      return p ? std::to_string(p->devices.size()) + " rows" : p.error().ToString();
    };
  };
  using std::chrono::days;
  time("count --expiring-within 30d", count({.expiring_within = days(30)}));
  time("ls --expiring-within 30d --limit 100", page({.expiring_within = days(30)}));
  time("count --expiring-within 7d", count({.expiring_within = days(7)}));
  time("count --expiring-within 30d --state active",
       count({.state = store::DeviceState::kActive, .expiring_within = days(30)}));
  time("count (all devices)", count({}));
  time("ls --limit 100", page({}));
  return 0;
}

int CrlGen(const fs::path& ca_dir, size_t count, const fs::path& out) {
  auto authority = ca::Authority::Open(ca_dir, SystemClock::Instance());
  if (!authority) return Die(authority.error());
  const char* pass = std::getenv("IOTPKI_PASSPHRASE");
  if (auto u = (*authority)->Unlock(ca::CaName::kOperational, pass ? pass : ""); !u) {
    return Die(u.error());
  }
  int64_t now = SystemClock::Instance().NowUnix();
  std::mt19937_64 rng(7);
  std::uniform_int_distribution<int64_t> age(60, 90 * 86400);
  std::vector<x509::RevokedEntry> entries(count);
  for (auto& e : entries) {
    e = {x509::NewSerial(), now - age(rng), x509::RevocationReason::kKeyCompromise};
  }
  auto t0 = Steady::now();
  // As BuildIssuerCrl: by value (every serial has 16 octets, so bytewise), then lint and sign.
  std::sort(entries.begin(), entries.end(),
            [](const auto& a, const auto& b) { return BytesLess()(a.serial, b.serial); });
  int64_t next_update = now + 7 * 86400;
  if (auto lint = x509::LintCrlEntries(entries, now, next_update, 0); !lint) {
    return Die(lint.error());
  }
  auto crl = x509::BuildCrl((*authority)->certificate(ca::CaName::kOperational),
                            *(*authority)->issuer_key(ca::CaName::kOperational), entries, now,
                            next_update, 1);
  if (!crl) return Die(crl.error());
  double seconds = std::chrono::duration<double>(Steady::now() - t0).count();
  fs::create_directories(out);
  if (!WriteFileAtomic(out / "ours.crl", ByteView(crl->ToDer()))) return 1;
  std::printf("ours: %zu entries, %.3f s, %zu bytes\n", count, seconds, crl->ToDer().size());
  std::ofstream index(out / "index.txt");
  auto utc = [](int64_t t) {
    std::time_t tt = static_cast<std::time_t>(t);
    std::tm tm{};
    gmtime_r(&tt, &tm);
    char buf[16];
    std::strftime(buf, sizeof buf, "%y%m%d%H%M%SZ", &tm);
    return std::string(buf);
  };
  for (const auto& e : entries) {
    std::string serial = ToHex(e.serial);
    for (auto& c : serial) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    index << "R\t" << utc(now + 90 * 86400) << "\t" << utc(e.revoked_at) << ",keyCompromise\t"
          << serial << "\tunknown\t/CN=" << serial << "\n";
  }
  return index.good() ? 0 : 1;
}

}  // namespace
}  // namespace iotpki::bench

int main(int argc, char** argv) {
  using namespace iotpki::bench;
  std::vector<std::string> a(argv + 1, argv + argc);
  if (a.size() == 5 && a[0] == "make-csrs") return MakeCsrs(a[1], a[2], std::stoul(a[3]), a[4]);
  if (a.size() == 2 && a[0] == "add-ldevids") return AddLdevids(a[1], SIZE_MAX);
  if (a.size() == 3 && a[0] == "add-ldevids") {
    size_t max_rows = 0;
    auto [end, ec] = std::from_chars(a[2].data(), a[2].data() + a[2].size(), max_rows);
    if (ec != std::errc() || end != a[2].data() + a[2].size() || max_rows == 0) {
      std::fprintf(stderr, "bench_tool: MAX must be a positive number of rows\n");
      return 2;
    }
    return AddLdevids(a[1], max_rows);
  }
  if (a.size() == 2 && a[0] == "time-queries") return TimeQueries(a[1]);
  if (a.size() == 4 && a[0] == "crl-gen") return CrlGen(a[1], std::stoul(a[2]), a[3]);
  return Usage();
}
