#include "iotpki/mfg/provision.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <variant>

#include "iotpki/c509/c509.h"
#include "iotpki/ca/group_commit.h"
#include "iotpki/common/file.h"
#include "iotpki/crypto/key_store.h"
#include "iotpki/crypto/pkcs11_key_store.h"
#include "iotpki/crypto/primitives.h"
#include "iotpki/mfg/manifest.h"
#include "iotpki/mfg/output_dir.h"
#include "iotpki/mfg/transport.h"
#include "iotpki/store/audit.h"
#include "iotpki/x509/csr.h"

namespace iotpki::mfg {
namespace {

namespace fs = std::filesystem;
using Steady = std::chrono::steady_clock;

// Adds `niceness` to the calling thread's (Linux keeps a niceness per thread). Best effort: a
// sandbox that forbids it leaves the thread as it was.
void LowerThisThreadsPriority(int niceness) {
  if (niceness <= 0) return;
  auto tid = static_cast<id_t>(gettid());
  errno = 0;
  int current = getpriority(PRIO_PROCESS, tid);
  if (errno != 0) return;
  (void)setpriority(PRIO_PROCESS, tid, std::min(current + niceness, 19));
}

constexpr char kBatchFormat[] = "iotpki-mfg-batch/v1";
constexpr char kTransportScheme[] = "pkcs8-pbes2-pbkdf2-hmac-sha256-aes-256-cbc";
// Pending devices per store read of the preflight: large enough that a read transaction's fixed
// cost (a pooled connection, the WAL read lock) vanishes, small enough to spread over the workers.
constexpr size_t kPreflightChunk = 2048;

// Runs fn(i) for every i in [0, n) on `threads` threads, the calling one included.
template <class F>
void ParallelFor(size_t n, unsigned threads, const F& fn) {
  std::atomic<size_t> next{0};
  auto loop = [&] {
    for (size_t i; (i = next.fetch_add(1, std::memory_order_relaxed)) < n;) fn(i);
  };
  std::vector<std::thread> pool;
  size_t extra = std::min<size_t>(threads, n);
  for (size_t t = 1; t < extra; ++t) pool.emplace_back(loop);
  loop();
  for (auto& t : pool) t.join();
}

// The manifest entry of a device with its certificate; `c509` is empty without --c509.
ManifestEntry EntryFor(const x509::Certificate& cert, std::string serial, std::string device_id,
                       std::string hardware_fingerprint_hex, std::string model, ByteView c509) {
  return ManifestEntry{.serial = std::move(serial),
                       .device_id = std::move(device_id),
                       .hardware_fingerprint = std::move(hardware_fingerprint_hex),
                       .model = std::move(model),
                       .cert_serial = cert.serial_hex(),
                       .not_after = cert.not_after(),
                       .sha256 = cert.fingerprint_sha256(),
                       .c509_sha256 = c509.empty() ? "" : ToHex(crypto::Sha256(c509))};
}

ManifestEntry EntryFor(const x509::Certificate& cert, const store::Device& device, ByteView c509) {
  return EntryFor(cert, device.serial, device.device_id, device.hardware_fingerprint.value_or(""),
                  device.model, c509);
}

// cert.c509: the type 3 re-encoding, which EncodeX509 checks decodes back to exactly `cert`.
Result<Bytes> C509Of(const x509::Certificate& cert) {
  auto encoded = c509::EncodeX509(cert.ToDer());
  if (!encoded) {
    return Fail(std::move(encoded).error().Context("--c509: the IDevID " + cert.serial_hex() +
                                                   " cannot be written as C509"));
  }
  return encoded;
}

// The CSR file of a serial: CSR_DIR/<serial>.csr, .pem or .der, PEM or DER inside.
Result<Bytes> ReadCsrFile(const fs::path& dir, const std::string& serial) {
  for (const char* ext : {".csr", ".pem", ".der"}) {
    auto data = ReadFile(dir / (serial + ext), 64 << 10);
    if (data) return data;
    if (data.error().code() != Code::kNotFound) return Fail(std::move(data).error());
  }
  return Fail(Code::kNotFound, "no CSR for serial " + serial + " in " + dir.string() + " (" +
                                   serial + ".csr, .pem or .der)");
}

Result<x509::Csr> ParseCsr(ByteView data) {
  std::string_view text = AsString(data);
  return text.find("-----BEGIN") != std::string_view::npos ? x509::Csr::FromPem(text)
                                                           : x509::Csr::FromDer(data);
}

Error At(const DeviceInput& d, Error e) { return std::move(e).Context(d.origin); }

// One device of a group on its way through the protocol.
struct Item {
  const DeviceInput* device = nullptr;
  std::string key_uri;  // kSecureElement: the key in the token
  std::optional<ca::Authority::Prepared> prepared;
  Bytes c509;                 // --c509: the prepared certificate as C509, encoded before the commit
  std::string manifest_line;  // with its newline; rendered by the worker
  std::optional<Error> error;
  std::optional<store::WriteBatch> refusal_audit;
  bool cancelled = false;  // skipped because another device of the run failed
};

class Run {
 public:
  Run(ca::Authority& ca, const std::vector<DeviceInput>& devices, const ProvisionOptions& options)
      : ca_(ca), devices_(devices), opt_(options) {
    workers_ = opt_.workers != 0 ? opt_.workers : std::max(1u, std::thread::hardware_concurrency());
    const auto& root = ca_.certificate(ca::CaName::kRoot);
    chain_pem_ = ca_.certificate(ca::CaName::kManufacturing).ToPem() + root.ToPem();
  }

  Result<ProvisionReport> Execute() {
    IOTPKI_CHECK(CheckOptions());
    IOTPKI_CHECK(Preflight());
    // Nothing has been written so far. From here on, files and rows are.
    IOTPKI_TRY(auto out, OutputDir::Open(opt_.out, /*must_be_empty=*/!opt_.resume));
    out_.emplace(std::move(out));
    IOTPKI_CHECK(OpenBatchFile());
    std::unordered_set<std::string> listed;
    IOTPKI_TRY(auto manifest, Manifest::Open(opt_.out / kManifest, &listed));
    manifest_.emplace(std::move(manifest));
    IOTPKI_CHECK(Recover(listed));
    report_.already_done = listed.size();
    start_ = Steady::now();
    auto issued = IssuePending();
    report_.seconds = std::chrono::duration<double>(Steady::now() - start_).count();
    if (!issued) {
      const Error& e = issued.error();
      return Fail(e.code(),
                  e.message() + "; the batch stopped with " + std::to_string(Done()) + " of " +
                      std::to_string(devices_.size()) +
                      " devices finished: fix the cause and run the same command with --resume",
                  e.detail());
    }
    return report_;
  }

 private:
  size_t Done() const { return report_.already_done + report_.recovered + report_.issued; }

  Result<void> CheckOptions() {
    IOTPKI_CHECK(ValidateName("batch", opt_.batch));
    if (opt_.keys == KeyMode::kCsr && opt_.csr_dir.empty()) {
      return Fail(Code::kInvalidArgument, "--keys csr needs --csr-dir");
    }
    if (opt_.keys == KeyMode::kCa && !opt_.bundles && !opt_.discard_keys) {
      return Fail(Code::kInvalidArgument,
                  "--no-bundles with --keys ca would discard every generated device key (use "
                  "--csr-dir, or add --discard-keys for a benchmark)");
    }
    if (opt_.c509 && !opt_.bundles) {
      return Fail(Code::kInvalidArgument,
                  "--c509 writes cert.c509 into each device folder; --no-bundles writes no folder");
    }
    if (opt_.keys == KeyMode::kCa && opt_.bundles && opt_.transport_passphrase.empty()) {
      return Fail(Code::kInvalidArgument,
                  "--keys ca needs a key transport passphrase (--key-passphrase-file FILE or "
                  "$IOTPKI_KEY_PASSPHRASE): the station decrypts the device keys with it");
    }
    if (opt_.keys == KeyMode::kCa && opt_.bundles &&
        opt_.transport_passphrase.size() < kMinTransportPassphrase) {
      return Fail(Code::kInvalidArgument, "the key transport passphrase must be at least " +
                                              std::to_string(kMinTransportPassphrase) +
                                              " characters");
    }
    if (opt_.keys == KeyMode::kSecureElement) {
      if (opt_.secure_element.substr(0, 7) != "pkcs11:") {
        return Fail(Code::kInvalidArgument,
                    "--secure-element takes a PKCS#11 token URI (pkcs11:token=LABEL)");
      }
      IOTPKI_TRY(se_, crypto::KeyStoreFor(opt_.secure_element, {}));
    }
    if (devices_.empty()) return Fail(Code::kInvalidArgument, "no device to provision");
    // Unlocked? Fails early rather than in the first group.
    IOTPKI_CHECK(ca_.BootstrapSecret(devices_.front().device_id));
    return {};
  }

  // Every check that needs the store, before anything is written.
  Result<void> Preflight() {
    store::Store& store = ca_.store();
    // The devices this batch already has: an earlier run's, on --resume.
    store::DeviceFilter filter{.batch = opt_.batch};
    std::string cursor;
    do {
      IOTPKI_TRY(auto page, store.ListDevices(filter, store::kMaxPageSize, cursor));
      for (auto& d : page.devices) {
        std::string serial = d.device.serial;
        auto [it, fresh] = committed_.emplace(std::move(serial), std::move(d.device));
        if (fresh) committed_order_.push_back(&it->second);
      }
      cursor = std::move(page.next_cursor);
    } while (!cursor.empty());
    if (!opt_.resume && !committed_.empty()) {
      return Fail(Code::kAlreadyExists,
                  "batch " + opt_.batch + " already has " + std::to_string(committed_.size()) +
                      " devices in the inventory (continue it with --resume and the same --out, "
                      "or choose another --batch)");
    }

    // Which input devices are still to issue.
    for (size_t i = 0; i < devices_.size(); ++i) {
      const DeviceInput& d = devices_[i];
      auto it = committed_.find(d.serial);
      if (it == committed_.end()) {
        pending_.push_back(i);
      } else if (!d.generated && it->second.device_id != d.device_id) {
        return Fail(At(d, Error(Code::kAlreadyExists,
                                "serial " + d.serial + " was provisioned in batch " + opt_.batch +
                                    " with another hardware fingerprint (device " +
                                    it->second.device_id + ")")));
      }
    }

    // Per pending device, in chunks spread over the workers: the serial is new to the fleet, its
    // folder name is free, and (kCsr) its CSR is there, parses and carries a key new to the fleet.
    csr_.assign(devices_.size(), PendingCsr());
    keep_parsed_csrs_ = pending_.size() <= opt_.max_parsed_csrs;
    std::vector<std::optional<Error>> errors(pending_.size());
    std::vector<std::string> key_fp(pending_.size());
    size_t chunks = (pending_.size() + kPreflightChunk - 1) / kPreflightChunk;
    ParallelFor(chunks, workers_, [&](size_t c) {
      size_t begin = c * kPreflightChunk;
      PreflightChunk(begin, std::min(pending_.size(), begin + kPreflightChunk), errors, key_fp);
    });
    for (auto& e : errors) {
      if (e) return Fail(std::move(*e));
    }
    if (opt_.keys == KeyMode::kSecureElement) IOTPKI_CHECK(PreflightSecureElement());
    if (opt_.keys == KeyMode::kCsr) {
      std::unordered_map<std::string, size_t> seen;
      for (size_t p = 0; p < pending_.size(); ++p) {
        auto [it, fresh] = seen.emplace(key_fp[p], p);
        if (!fresh) {
          const DeviceInput& first = devices_[pending_[it->second]];
          return Fail(At(devices_[pending_[p]],
                         Error(Code::kAlreadyExists, "the CSR of " + devices_[pending_[p]].serial +
                                                         " carries the same public key as the "
                                                         "CSR of " +
                                                         first.serial + " (" + first.origin +
                                                         "): every device key must be unique")));
        }
      }
    }
    return {};
  }

  // The per-device checks of Preflight for pending_[begin, end), with one store read per chunk
  // and question instead of one per device. errors[p] gets device p's first failure, in the order
  // the checks are listed in Preflight, as if each device were checked alone; a store read that
  // fails is charged to the chunk's first device.
  void PreflightChunk(size_t begin, size_t end, std::vector<std::optional<Error>>& errors,
                      std::vector<std::string>& key_fp) {
    store::Store& store = ca_.store();
    auto fail = [&](size_t p, Error e) {
      if (!errors[p]) errors[p] = At(devices_[pending_[p]], std::move(e));
    };
    std::vector<std::string> serials;
    serials.reserve(end - begin);
    for (size_t p = begin; p < end; ++p) serials.push_back(devices_[pending_[p]].serial);
    auto existing = store.GetDevicesBySerial(serials);
    if (!existing) return fail(begin, std::move(existing).error());
    std::vector<std::string> keys;  // kCsr: the fingerprints of the CSRs that parsed
    std::vector<size_t> key_of;     // keys[k] is key_fp[key_of[k]]
    for (size_t p = begin; p < end; ++p) {
      const DeviceInput& d = devices_[pending_[p]];
      if (const auto& other = (*existing)[p - begin]) {
        fail(p,
             Error(Code::kAlreadyExists, "serial " + d.serial + " is already provisioned (batch " +
                                             other->batch + ", device " + other->device_id + ")"));
        continue;
      }
      if (opt_.bundles && opt_.resume) {
        std::error_code ec;
        if (fs::exists(opt_.out / d.serial, ec)) {
          fail(p, Error(Code::kFailedPrecondition, (opt_.out / d.serial).string() +
                                                       " exists but device " + d.serial +
                                                       " is not in the inventory (move it away)"));
          continue;
        }
      }
      if (opt_.keys != KeyMode::kCsr) continue;
      auto data = ReadCsrFile(opt_.csr_dir, d.serial);
      if (!data) {
        fail(p, std::move(data).error());
        continue;
      }
      auto csr = ParseCsr(*data);
      if (!csr) {
        fail(p, std::move(csr).error().Context("CSR of " + d.serial));
        continue;
      }
      key_fp[p] = ToHex(csr->public_key().Fingerprint());
      keys.push_back(key_fp[p]);
      key_of.push_back(p);
      if (keep_parsed_csrs_) {
        csr_[pending_[p]] = std::move(*csr);
      } else {
        csr_[pending_[p]] = std::move(*data);
      }
    }
    if (keys.empty()) return;
    auto holders = store.FindCertificatesByKeys(keys);
    if (!holders) return fail(key_of.front(), std::move(holders).error());
    for (size_t k = 0; k < keys.size(); ++k) {
      if ((*holders)[k].empty()) continue;
      const std::string& serial = devices_[pending_[key_of[k]]].serial;
      fail(key_of[k],
           Error(Code::kAlreadyExists,
                 "the CSR of " + serial + " carries a public key already used by certificate " +
                     (*holders)[k].front().serial + " (every device key must be unique)"));
    }
  }

  // Writes batch.json for a new batch, or checks that `out` holds this batch on --resume. Derives
  // the transport key with the batch's salt.
  Result<void> OpenBatchFile() {
    fs::path path = opt_.out / kBatchJson;
    std::string mfg_ca = ca_.certificate(ca::CaName::kManufacturing).fingerprint_sha256();
    auto text = ReadTextFile(path, 1 << 16);
    if (!text && text.error().code() != Code::kNotFound) return Fail(std::move(text).error());
    bool need_transport = opt_.keys == KeyMode::kCa && opt_.bundles;
    if (!text) {
      if (!committed_.empty()) {
        return Fail(Code::kFailedPrecondition, (opt_.out / kBatchJson).string() +
                                                   " is missing: " + opt_.out.string() +
                                                   " is not the output of batch " + opt_.batch);
      }
      nlohmann::ordered_json j{{"format", kBatchFormat},
                               {"batch", opt_.batch},
                               {"keys", KeyModeName(opt_.keys)},
                               {"bundles", opt_.bundles},
                               {"c509", opt_.c509},
                               {"manufacturing_ca_sha256", mfg_ca},
                               {"started_at", FormatUtc(ca_.clock().NowUnix())}};
      if (need_transport) {
        IOTPKI_TRY(auto key, TransportKey::Derive(opt_.transport_passphrase,
                                                  crypto::RandomBytes(16), kTransportIterations));
        j["transport"] = {{"scheme", kTransportScheme},
                          {"salt", ToHex(key.salt())},
                          {"iterations", key.iterations()},
                          {"check", key.CheckValue()}};
        transport_.emplace(std::move(key));
      }
      return WriteFileAtomic(path, j.dump(2) + "\n");
    }
    auto j = nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
    auto field = [&](const char* name) {
      return j.is_object() && j.contains(name) ? j[name] : nlohmann::json();
    };
    if (field("format") != kBatchFormat) {
      return Fail(Code::kFailedPrecondition, path.string() + " is not an iotpki batch file");
    }
    auto differs = [&](const std::string& what, const std::string& theirs,
                       const std::string& ours) -> Result<void> {
      return Fail(Code::kFailedPrecondition, opt_.out.string() + " holds a batch with " + what +
                                                 " " + theirs + ", not " + ours +
                                                 " (--resume continues the same batch)");
    };
    if (field("batch") != opt_.batch) {
      return differs("name", field("batch").dump(), opt_.batch);
    }
    if (field("keys") != KeyModeName(opt_.keys)) {
      return differs("--keys", field("keys").dump(), std::string(KeyModeName(opt_.keys)));
    }
    if (field("bundles") != opt_.bundles) {
      return differs("bundles", field("bundles").dump(), opt_.bundles ? "true" : "false");
    }
    // Batches from before --c509 have no such field: they had no cert.c509.
    bool c509 = field("c509").is_boolean() && field("c509").get<bool>();
    if (c509 != opt_.c509) {
      return differs("c509", c509 ? "true" : "false", opt_.c509 ? "true" : "false");
    }
    if (field("manufacturing_ca_sha256") != mfg_ca) {
      return Fail(Code::kFailedPrecondition,
                  opt_.out.string() + " was provisioned by another manufacturing CA");
    }
    if (need_transport) {
      auto t = field("transport");
      auto salt = t.is_object() && t["salt"].is_string()
                      ? FromHex(t["salt"].get<std::string>())
                      : Result<Bytes>(Fail(Code::kDataLoss, "no salt"));
      if (!salt || !t["iterations"].is_number_integer() || !t["check"].is_string()) {
        return Fail(Code::kDataLoss, path.string() + ": malformed transport parameters");
      }
      IOTPKI_TRY(auto key, TransportKey::Derive(opt_.transport_passphrase, *salt,
                                                t["iterations"].get<int>()));
      if (key.CheckValue() != t["check"].get<std::string>()) {
        return Fail(Code::kUnauthenticated,
                    "the key transport passphrase differs from the one batch " + opt_.batch +
                        " started with");
      }
      transport_.emplace(std::move(key));
    }
    return {};
  }

  // Finishes the devices an earlier run committed but did not list, and removes the folders of
  // devices it did not commit.
  Result<void> Recover(const std::unordered_set<std::string>& listed) {
    for (const auto& serial : listed) {
      if (!committed_.contains(serial)) {
        return Fail(Code::kDataLoss, "the manifest lists " + serial +
                                         ", which is not in the inventory under batch " +
                                         opt_.batch);
      }
    }
    if (opt_.bundles) {
      IOTPKI_TRY(auto partial, out_->ListPartial());
      for (const auto& serial : partial) {
        if (committed_.contains(serial)) continue;
        // Never committed, so its certificate (if any) never existed for the world and its key
        // was never certified: discard.
        IOTPKI_CHECK(out_->RemovePartial(serial));
      }
    }
    // In the order they were committed (the listing's), as the crashed run would have listed
    // them: the lines of each group committed with its audit row come back together and in
    // order, so they hash to the row's manifest_sha256.
    std::vector<ManifestEntry> entries;
    for (const store::Device* device : committed_order_) {
      if (listed.contains(device->serial)) continue;
      IOTPKI_TRY(auto entry, FinishCommitted(*device));
      entries.push_back(std::move(entry));
    }
    if (entries.empty()) return {};
    if (opt_.bundles) IOTPKI_CHECK(out_->Sync());
    IOTPKI_CHECK(manifest_->Append(entries));
    report_.recovered = entries.size();
    return {};
  }

  // Rebuilds the folder of a committed device from the store (its certificate), the CA (chain,
  // bootstrap secret) and, for kCa, the key the earlier run staged before committing.
  Result<ManifestEntry> FinishCommitted(const store::Device& device) {
    IOTPKI_TRY(auto records, ca_.store().ListCertificatesForDevice(device.device_id));
    auto record = std::find_if(records.begin(), records.end(), [](const auto& r) {
      return r.profile == store::CertProfile::kIDevId;
    });
    if (record == records.end()) {
      return Fail(Code::kDataLoss, "device " + device.serial + " has no IDevID in the store");
    }
    IOTPKI_TRY(auto cert, x509::Certificate::FromDer(record->der));
    std::string key_uri;
    if (opt_.keys == KeyMode::kSecureElement) {
      IOTPKI_TRY(auto key, se_->Open(SecureElementUri(device.device_id)));
      if (!(key->public_key() == cert.public_key())) {
        return Fail(KeyLost(device, cert, "the token's key is another key"));
      }
      IOTPKI_CHECK(crypto::StorePkcs11Certificate(key->uri(), cert.ToDer(), {}));
      key_uri = key->uri();
    }
    auto entry_for = [&](ByteView c509) {
      ManifestEntry e = EntryFor(cert, device, c509);
      e.key_uri = key_uri;
      return e;
    };
    if (!opt_.bundles) return entry_for({});
    Bytes c509;
    if (opt_.c509) {
      IOTPKI_TRY(c509, C509Of(cert));
    }
    std::error_code ec;
    bool published = fs::exists(out_->Final(device.serial), ec);
    bool partial = fs::exists(out_->Partial(device.serial), ec);
    if (published && partial) {
      return Fail(Code::kDataLoss, "device " + device.serial + " has both " +
                                       out_->Final(device.serial).string() + " and " +
                                       out_->Partial(device.serial).string());
    }
    if (published) IOTPKI_CHECK(out_->Unpublish(device.serial));
    if (!published && !partial) {
      if (opt_.keys == KeyMode::kCa) return Fail(KeyLost(device, cert, "no folder"));
      IOTPKI_CHECK(out_->MakePartial(device.serial));
    }
    if (opt_.keys == KeyMode::kCa) {
      auto pem = ReadTextFile(out_->Partial(device.serial) / kKeyPem, 1 << 16);
      if (!pem) return Fail(KeyLost(device, cert, pem.error().ToString()));
      auto key = transport_->Decrypt(*pem);
      if (!key) return Fail(KeyLost(device, cert, key.error().ToString()));
      if (!(key->public_key() == cert.public_key())) {
        return Fail(KeyLost(device, cert, "key.pem holds another key"));
      }
    }
    IOTPKI_CHECK(WriteDeviceFiles(device.serial, device.device_id));
    IOTPKI_CHECK(WriteCertFiles(device.serial, cert, c509));
    IOTPKI_CHECK(out_->Publish(device.serial));
    return entry_for(c509);
  }

  Error KeyLost(const store::Device& d, const x509::Certificate& cert, const std::string& why) {
    return Error(Code::kDataLoss,
                 "the generated key of device " + d.serial + " (certificate " + cert.serial_hex() +
                     ") is missing or unreadable; its certificate is unusable: revoke it",
                 why);
  }

  // The files a folder gets before its certificate is committed: nothing a crash could make
  // dangerous (the bootstrap secret is re-derivable and is no certificate).
  Result<void> WriteDeviceFiles(const std::string& serial, const std::string& device_id) {
    fs::path dir = out_->Partial(serial);
    IOTPKI_TRY(crypto::Secret k_dev, ca_.BootstrapSecret(device_id));
    std::string text = ToHex(k_dev.bytes()) + "\n";
    crypto::Secret hex = crypto::Secret::Take(text);
    auto written = WriteFileUnsynced(dir / kBootstrapHex, hex.bytes(), 0600);
    IOTPKI_CHECK(written);
    return WriteFileUnsynced(dir / kChainPem, AsBytes(chain_pem_), 0644);
  }

  // Only after the commit. `c509` is empty without --c509.
  Result<void> WriteCertFiles(const std::string& serial, const x509::Certificate& cert,
                              ByteView c509) {
    fs::path dir = out_->Partial(serial);
    IOTPKI_CHECK(WriteFileUnsynced(dir / kCertDer, cert.ToDer(), 0644));
    if (!c509.empty()) IOTPKI_CHECK(WriteFileUnsynced(dir / kCertC509, c509, 0644));
    return WriteFileUnsynced(dir / kCertPem, AsBytes(cert.ToPem()), 0644);
  }

  size_t GroupSize() const {
    if (opt_.group_size != 0) return opt_.group_size;
    // Larger groups write fewer index pages per device (a page that several devices of one group
    // change goes to the WAL once); a prepared device holds a few KB until its group commits.
    return std::clamp<size_t>(pending_.size() / 8, 64, 4096);
  }

  // The workers prepare the pending devices in input order, into up to kGroupsAhead + 1 groups
  // at a time, while this thread commits and writes each group as soon as it is prepared: neither
  // waits for the other at a group's boundary (the workers for a commit, this thread for a
  // group's slowest device) unless one is a whole group ahead.
  static constexpr size_t kGroupsAhead = 2;

  Result<void> IssuePending() {
    Progress();
    size_t size = GroupSize();
    size_t groups = (pending_.size() + size - 1) / size;
    if (groups == 0) return {};
    struct Slot {
      size_t group = SIZE_MAX;  // the group whose devices `items` holds
      std::vector<Item> items;
      size_t left = 0;  // of them, not yet prepared
    };
    std::vector<Slot> slots(kGroupsAhead + 1);
    std::mutex mu;
    std::condition_variable cv;
    size_t next = 0;      // the next index of pending_ to hand out
    size_t finished = 0;  // groups committed and written
    bool stop = false;

    auto work = [&] {
      LowerThisThreadsPriority(opt_.worker_niceness);
      for (;;) {
        size_t i;
        Slot* slot;
        std::vector<Item> retired;  // the slot's previous group, freed outside the lock
        {
          std::unique_lock lock(mu);
          cv.wait(lock, [&] {
            return stop || next >= pending_.size() || next / size < finished + slots.size();
          });
          if (stop || next >= pending_.size()) return;
          i = next++;
          slot = &slots[(i / size) % slots.size()];
          if (i % size == 0) {  // the slot's previous group is finished
            slot->group = i / size;
            retired.swap(slot->items);
            slot->items.resize(std::min(size, pending_.size() - i));
            slot->left = slot->items.size();
          }
        }
        // Its keys, certificates and rows: about 5 % of a batch's CPU time, which under the lock
        // held the other worker and the committing thread.
        retired = {};
        Item& item = slot->items[i % size];
        item.device = &devices_[pending_[i]];
        if (cancel_.load(std::memory_order_relaxed)) {
          item.cancelled = true;
        } else {
          PrepareItem(item);
          if (item.error) cancel_.store(true);
        }
        std::lock_guard lock(mu);
        if (--slot->left == 0) cv.notify_all();
      }
    };
    std::vector<std::thread> pool;
    for (unsigned t = 0; t < workers_; ++t) pool.emplace_back(work);
    auto halt = [&] {
      {
        std::lock_guard lock(mu);
        stop = true;
      }
      cv.notify_all();
      for (auto& t : pool) t.join();
    };

    for (size_t g = 0; g < groups; ++g) {
      Slot& slot = slots[g % slots.size()];
      {
        std::unique_lock lock(mu);
        cv.wait(lock, [&] { return slot.group == g && slot.left == 0; });
      }
      auto done = FinishGroup(slot.items, g);
      if (!done) {
        cancel_.store(true);
        halt();
        return done;
      }
      {
        std::lock_guard lock(mu);
        finished = g + 1;
      }
      cv.notify_all();
      Progress();
    }
    halt();
    return {};
  }

  std::string SecureElementUri(const std::string& device_id) const {
    return crypto::AppendPkcs11Attribute(opt_.secure_element, "object=" + device_id);
  }

  // The token opens (PIN, module, token label) and, on a new batch, holds no key labelled with
  // one of its device_ids: a label used twice would name two keys.
  Result<void> PreflightSecureElement() {
    for (size_t i : pending_) {
      const DeviceInput& d = devices_[i];
      auto key = se_->Open(SecureElementUri(d.device_id));
      if (key) {
        if (opt_.resume) continue;  // generated by the interrupted run, used by PrepareItem
        return Fail(At(d, Error(Code::kAlreadyExists,
                                "the secure element already holds a key labelled " + d.device_id +
                                    " (device " + d.serial +
                                    "): delete it from the token, or --resume the batch that "
                                    "made it")));
      }
      if (key.error().code() != Code::kNotFound) {
        return Fail(std::move(key).error().Context("--secure-element"));
      }
    }
    return {};
  }

  void PrepareItem(Item& item) {
    const DeviceInput& d = *item.device;
    std::optional<crypto::PrivateKey> key;
    tl::expected<ca::Authority::Prepared, ca::Authority::Refusal> prepared =
        tl::unexpected(ca::Authority::Refusal{Error(Code::kInternal, "not prepared"), {}});
    // Preflight checked every serial and CSR key of the batch against the store; a generated key,
    // and anything that reached the store since, is refused by its unique constraints when the
    // group commits. So no store read per device here (uniqueness_checked).
    if (opt_.keys == KeyMode::kSecureElement) {
      std::string uri = SecureElementUri(d.device_id);
      auto token_key = se_->Generate(uri, crypto::KeyType::kP256);
      if (!token_key && token_key.error().code() == Code::kAlreadyExists && opt_.resume) {
        token_key = se_->Open(uri);  // an interrupted run's key that never got a certificate
      }
      if (!token_key) {
        item.error = At(d, std::move(token_key).error());
        return;
      }
      item.key_uri = (*token_key)->uri();
      // The token signs the CSR: the CA sees a proof of possession like any device's.
      auto csr = x509::MakeCsr(**token_key, {.common_name = d.device_id});
      if (!csr) {
        item.error = At(d, std::move(csr).error());
        return;
      }
      prepared = ca_.Prepare({.profile = x509::ProfileKind::kIDevID,
                              .csr = std::move(*csr),
                              .serial = d.serial,
                              .hardware_fingerprint = d.hardware_fingerprint,
                              .model = d.model,
                              .batch = opt_.batch,
                              .actor = opt_.actor,
                              .uniqueness_checked = true,
                              .audited_by_caller = true,
                              .key_origin = store::KeyOrigin::kHardware});
    } else if (opt_.keys == KeyMode::kCa) {
      auto generated = crypto::PrivateKey::Generate(crypto::KeyType::kP256);
      if (!generated) {
        item.error = generated.error();
        return;
      }
      key = std::move(*generated);
      prepared = ca_.PrepareGenerated({.key = *key,
                                       .serial = d.serial,
                                       .hardware_fingerprint = d.hardware_fingerprint,
                                       .model = d.model,
                                       .batch = opt_.batch,
                                       .actor = opt_.actor,
                                       .uniqueness_checked = true,
                                       .audited_by_caller = true});
    } else {
      // Preflight's parse (moved out: a CSR lives until its device is prepared), or its bytes.
      PendingCsr pending = std::exchange(csr_[DeviceIndex(item)], PendingCsr());
      Result<x509::Csr> csr = Fail(Code::kInternal, "CSR of " + d.serial + " not read");
      if (auto* parsed = std::get_if<x509::Csr>(&pending)) {
        csr = std::move(*parsed);
      } else if (auto* bytes = std::get_if<Bytes>(&pending)) {
        csr = ParseCsr(*bytes);
      }
      if (!csr) {
        item.error = At(d, std::move(csr).error());
        return;
      }
      prepared = ca_.Prepare({.profile = x509::ProfileKind::kIDevID,
                              .csr = std::move(*csr),
                              .serial = d.serial,
                              .hardware_fingerprint = d.hardware_fingerprint,
                              .model = d.model,
                              .batch = opt_.batch,
                              .actor = opt_.actor,
                              .uniqueness_checked = true,
                              .audited_by_caller = true});
    }
    if (!prepared) {
      item.error = At(d, std::move(prepared.error().error));
      item.refusal_audit = std::move(prepared.error().audit);
      return;
    }
    item.prepared = std::move(*prepared);
    if (opt_.c509) {
      auto c509 = C509Of(item.prepared->certificate);
      if (!c509) {
        item.error = At(d, std::move(c509).error());
        return;
      }
      item.c509 = std::move(*c509);
    }
    ManifestEntry entry = EntryFor(item.prepared->certificate, d.serial, d.device_id,
                                   ToHex(d.hardware_fingerprint), d.model, item.c509);
    entry.key_uri = item.key_uri;
    item.manifest_line = ToJsonLine(entry);
    item.manifest_line += '\n';
    if (!opt_.bundles) return;
    auto staged = [&]() -> Result<void> {
      IOTPKI_CHECK(out_->MakePartial(d.serial));
      if (key) {
        IOTPKI_TRY(std::string pem, transport_->Encrypt(*key));
        IOTPKI_CHECK(WriteFileUnsynced(out_->Partial(d.serial) / kKeyPem, AsBytes(pem), 0600));
      }
      return WriteDeviceFiles(d.serial, item.prepared->device_id);
    }();
    if (!staged) item.error = At(d, std::move(staged).error());
  }

  size_t DeviceIndex(const Item& item) const {
    return static_cast<size_t>(item.device - devices_.data());
  }

  Result<void> FinishGroup(std::vector<Item>& items, size_t group) {
    // The first device that failed, in input order, stops the batch before its group commits.
    for (auto& item : items) {
      if (!item.error) continue;
      // Policy and lint refusals are audited, as Authority::Issue audits them.
      if (item.refusal_audit) {
        if (auto written = ca_.store().Commit(*item.refusal_audit); !written) {
          store::ReportAuditWriteFailure("cert.refuse", written.error());
        }
      }
      return Fail(std::move(*item.error));
    }
    for (auto& item : items) {
      if (item.cancelled) return Fail(Code::kAborted, "cancelled");
    }
    Hook(Step::kKeysStaged, group, opt_.keys == KeyMode::kCa && opt_.bundles);
    // Keys the CA generated must be durable before their certificates exist (a committed
    // certificate whose key was lost is unusable).
    if (opt_.keys == KeyMode::kCa && opt_.bundles) IOTPKI_CHECK(out_->Sync());
    // One transaction for the group, with one audit row for it: the group's manifest lines,
    // which name every device and certificate, hashed into the audit chain.
    std::string lines;
    for (const auto& item : items) lines += item.manifest_line;
    store::WriteBatch batch;
    for (auto& item : items) batch.Append(std::move(item.prepared->batch));
    batch.AppendAudit(GroupAudit(items, lines));
    IOTPKI_CHECK(ca_.store().Commit(batch));
    Hook(Step::kCommitted, group, true);
    // The certificates exist now: each goes into the token beside its key. A failure stops the
    // batch here; --resume writes the rest (FinishCommitted).
    if (opt_.keys == KeyMode::kSecureElement) {
      for (const auto& item : items) {
        auto stored =
            crypto::StorePkcs11Certificate(item.key_uri, item.prepared->certificate.ToDer(), {});
        if (!stored) return Fail(At(*item.device, std::move(stored).error()));
      }
    }
    // The certificates exist now: they may be written out.
    if (opt_.bundles) {
      for (const auto& item : items) {
        const DeviceInput& d = *item.device;
        auto written = WriteCertFiles(d.serial, item.prepared->certificate, item.c509);
        if (written) written = out_->Publish(d.serial);
        if (!written) return Fail(At(d, std::move(written).error()));
      }
      IOTPKI_CHECK(out_->Sync());
    }
    Hook(Step::kPublished, group, true);
    IOTPKI_CHECK(manifest_->Append(lines));
    report_.issued += items.size();
    Hook(Step::kListed, group, true);
    return {};
  }

  // The audit row of a committed group (docs/manufacturing.md, "Audit").
  store::AuditEvent GroupAudit(const std::vector<Item>& items, std::string_view lines) const {
    return {.actor = opt_.actor,
            .action = "mfg.issue",
            .subject = opt_.batch,
            .details =
                nlohmann::ordered_json{{"profile", "idevid"},
                                       {"devices", items.size()},
                                       {"first_serial", items.front().device->serial},
                                       {"last_serial", items.back().device->serial},
                                       {"manifest_sha256", ToHex(crypto::Sha256(AsBytes(lines)))}}
                    .dump()};
  }

  void Hook(Step step, size_t group, bool applies) {
    if (applies && opt_.step_hook) opt_.step_hook(step, group);
  }

  void Progress() {
    if (!opt_.progress) return;
    opt_.progress(
        ProgressInfo{.done = Done(),
                     .total = devices_.size(),
                     .done_at_start = report_.already_done + report_.recovered,
                     .elapsed = std::chrono::duration<double>(Steady::now() - start_).count()});
  }

  ca::Authority& ca_;
  const std::vector<DeviceInput>& devices_;
  const ProvisionOptions& opt_;
  unsigned workers_ = 1;
  std::string chain_pem_;

  std::unordered_map<std::string, store::Device> committed_;  // serial -> this batch's devices
  std::vector<const store::Device*> committed_order_;         // committed_'s, in commit order
  std::vector<size_t> pending_;  // indices of devices_ still to issue, in input order
  // kCsr: per index of devices_, the CSR Preflight parsed (or, beyond opt_.max_parsed_csrs
  // pending CSRs, its file's bytes: a batch of millions stays within a few hundred MB);
  // PrepareItem takes it.
  using PendingCsr = std::variant<std::monostate, x509::Csr, Bytes>;
  std::vector<PendingCsr> csr_;
  bool keep_parsed_csrs_ = true;

  std::optional<OutputDir> out_;
  std::optional<Manifest> manifest_;
  std::optional<TransportKey> transport_;
  std::unique_ptr<crypto::KeyStore> se_;  // kSecureElement
  std::atomic<bool> cancel_{false};
  Steady::time_point start_ = Steady::now();
  ProvisionReport report_;
};

}  // namespace

std::string_view KeyModeName(KeyMode mode) {
  switch (mode) {
    case KeyMode::kCa:
      return "ca";
    case KeyMode::kCsr:
      return "csr";
    case KeyMode::kSecureElement:
      return "secure-element";
  }
  return "ca";
}

Result<ProvisionReport> Provision(ca::Authority& authority, const std::vector<DeviceInput>& devices,
                                  const ProvisionOptions& options) {
  Run run(authority, devices, options);
  IOTPKI_TRY(ProvisionReport report, run.Execute());
  report.total = devices.size();
  return report;
}

}  // namespace iotpki::mfg
