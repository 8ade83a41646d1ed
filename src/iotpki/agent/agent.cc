#include "iotpki/agent/agent.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>

#include "iotpki/agent/https_client.h"
#include "iotpki/c509/c509.h"
#include "iotpki/common/file.h"
#include "iotpki/common/strings.h"
#include "iotpki/crypto/key_store.h"
#include "iotpki/crypto/ossl.h"
#include "iotpki/crypto/pkcs11_key_store.h"
#include "iotpki/crypto/primitives.h"
#include "iotpki/crypto/signer.h"
#include "iotpki/x509/cms.h"
#include "iotpki/x509/csr.h"
#include "iotpki/x509/verify.h"

namespace iotpki::agent {
namespace {

namespace fs = std::filesystem;

constexpr char kEst[] = "/.well-known/est";

// Local failures keep their message but never a code that means "remote" to Classify.
Error Local(Error e) {
  Code c = e.code();
  if (c == Code::kUnavailable || c == Code::kUnauthenticated || c == Code::kPermissionDenied ||
      c == Code::kDataLoss || c == Code::kInvalidArgument) {
    return Error(Code::kFailedPrecondition, e.message(), e.detail());
  }
  return e;
}

template <class T>
Result<T> Local(Result<T> r) {
  if (!r) return Fail(Local(std::move(r).error()));
  return r;
}

Error BadAnswer(const std::string& what) { return Error(Code::kDataLoss, "bad answer: " + what); }

// The server's reason from an error body: JSON {"message"} or the first line of text.
Error Refused(const HttpResponse& r) {
  std::string reason;
  auto j = nlohmann::json::parse(r.body, nullptr, false);
  if (j.is_object() && j.contains("message") && j["message"].is_string()) {
    reason = j["message"].get<std::string>();
  } else {
    reason = r.body.substr(0, r.body.find_first_of("\r\n"));
  }
  if (reason.size() > 300) reason.resize(300);
  for (char& c : reason) {
    if (static_cast<unsigned char>(c) < 0x20) c = ' ';
  }
  return Error(Code::kPermissionDenied,
               "HTTP " + std::to_string(r.status) + (reason.empty() ? "" : ": " + reason));
}

using DeviceKey = std::shared_ptr<const crypto::Signer>;

struct Factory {
  x509::Certificate idevid;
  // The IDevID key (null when loaded without it): from key.pem, or from the device's token or
  // TPM when key.uri names it there (the factory's secure element).
  DeviceKey key;
  std::vector<x509::Certificate> chain;  // manufacturing CA, root
  x509::Certificate root;
  std::string device_id;
  Bytes k_dev;  // empty if the bundle has no bootstrap.hex
};

Result<x509::Certificate> FindRoot(const std::vector<x509::Certificate>& chain,
                                   const fs::path& where) {
  for (const auto& c : chain) {
    if (c.subject() == c.issuer() && c.IsSignedBy(c.public_key())) return c;
  }
  return Fail(Code::kFailedPrecondition, where.string() + " holds no root CA certificate");
}

Result<crypto::PrivateKey> LoadKey(const fs::path& path, const std::string& passphrase) {
  IOTPKI_TRY(std::string pem, Local(ReadTextFile(path, 1 << 16)));
  bool encrypted = pem.find("ENCRYPTED PRIVATE KEY") != std::string::npos;
  if (encrypted && passphrase.empty()) {
    return Fail(Code::kFailedPrecondition,
                path.string() + " is encrypted: give its passphrase (--key-passphrase-file)");
  }
  auto key = crypto::PrivateKey::FromPem(pem, encrypted ? passphrase : "");
  if (!key) return Fail(Local(std::move(key).error().Context(path.string())));
  return key;
}

// The key store new device keys are made in: the option, else the one bootstrap saved.
std::string KeyStoreOf(const AgentOptions& o) {
  if (!o.key_store.empty()) return o.key_store;
  auto saved = ReadTextFile(o.state / "key-store", 4096);
  return saved ? saved->substr(0, saved->find('\n')) : std::string();
}

// The --key-store value: "tpm2:" or a PKCS#11 token's URI (the agent names each key itself).
Result<void> CheckKeyStore(const std::string& store) {
  if (store.empty() || store == "tpm2:") return {};
  if (store.rfind("pkcs11:", 0) == 0) {
    auto uri = crypto::ParsePkcs11Uri(store);
    if (!uri) {
      return Fail(Code::kInvalidArgument,
                  "--key-store: " + uri.error().message() + " (expected pkcs11:token=LABEL)");
    }
    if (uri->token.empty() || !uri->object.empty() || !uri->id.empty()) {
      return Fail(Code::kInvalidArgument,
                  "--key-store pkcs11: names the token only (pkcs11:token=LABEL); the agent "
                  "labels each key it makes there");
    }
    if (!uri->pin_value.empty()) {
      return Fail(Code::kInvalidArgument,
                  "--key-store: a PIN in the URI (pin-value) is refused: set IOTPKI_PKCS11_PIN "
                  "or add ?pin-source=file:PATH");
    }
    return {};
  }
  return Fail(Code::kInvalidArgument,
              "--key-store: expected tpm2: (keys made in the TPM named by TPM2OPENSSL_TCTI) or "
              "pkcs11:token=LABEL (a PKCS#11 token), not '" +
                  store.substr(0, 80) + "'");
}

// A token key the agent makes is recorded in STATE/keys/<label>.p11 (its URI, one line) from
// just before the token makes it until the key is deleted: the record plays the part a TPM key's
// blob plays, so that a key a crash left behind without a slot is found in the state directory.
// The token itself is never searched: it may hold other software's keys.
constexpr char kTokenKeyRecord[] = ".p11";

// The record of the token key `uri` names, if the agent made it (label ldevid-<hex>).
std::optional<fs::path> TokenKeyRecordOf(const fs::path& state, std::string_view uri) {
  if (uri.rfind("pkcs11:", 0) != 0) return std::nullopt;
  auto parsed = crypto::ParsePkcs11Uri(uri);
  if (!parsed || parsed->object.rfind("ldevid-", 0) != 0 ||
      parsed->object.find('/') != std::string::npos) {
    return std::nullopt;
  }
  return state / "keys" / (parsed->object + kTokenKeyRecord);
}

// Deletes a key the agent made in a store (a TPM blob, a token key and its record). The record
// stays while the token cannot be reached, so that a later start deletes the key.
Result<void> DeleteDeviceKey(const fs::path& state, const std::string& uri) {
  IOTPKI_TRY(auto ks, crypto::KeyStoreFor(uri, {.base_dir = state}));
  auto deleted = ks->Delete(uri);
  if (!deleted && deleted.error().code() != Code::kNotFound) return deleted;
  if (auto record = TokenKeyRecordOf(state, uri)) {
    std::error_code ec;
    fs::remove(*record, ec);
  }
  return deleted;
}

// A new device key: in memory (the slot's key.pem), or made inside the key store (only its URI,
// the slot's key.uri, is written: a TPM key blob in STATE/keys/ that only this TPM can load, or
// a token key labelled ldevid-<random> that never leaves the token).
Result<DeviceKey> NewDeviceKey(const AgentOptions& o) {
  std::string store = KeyStoreOf(o);
  IOTPKI_CHECK(CheckKeyStore(store));
  if (store.empty()) {
    IOTPKI_TRY(crypto::PrivateKey key, Local(crypto::PrivateKey::Generate(crypto::KeyType::kP256)));
    return DeviceKey(std::make_shared<crypto::PrivateKey>(std::move(key)));
  }
  std::string name = "ldevid-" + ToHex(crypto::RandomBytes(8));
  std::string uri;
  std::error_code ec;
  fs::create_directories(o.state / "keys", ec);
  if (store == "tpm2:") {
    uri = "tpm2:blob=keys/" + name + ".tpm";
  } else {
    uri = crypto::AppendPkcs11Attribute(store, "object=" + name);
    // Durable before the key exists: a crash from here on leaves a record that Recover finds.
    IOTPKI_CHECK(
        Local(WriteFileAtomic(o.state / "keys" / (name + kTokenKeyRecord), uri + "\n", 0600)));
    IOTPKI_CHECK(Local(SyncDirectory(o.state / "keys")));
  }
  IOTPKI_TRY(auto ks, Local(crypto::KeyStoreFor(uri, {.base_dir = o.state})));
  auto key = ks->Generate(uri, crypto::KeyType::kP256);
  if (!key) {
    // No key was made, unless the token went away during the call (Unavailable): then the
    // record stays until the key it may have made is deleted (now, or at a later start).
    if (key.error().code() == Code::kUnavailable) {
      (void)DeleteDeviceKey(o.state, uri);
    } else if (auto record = TokenKeyRecordOf(o.state, uri)) {
      fs::remove(*record, ec);
    }
    fs::remove(o.state / "keys", ec);  // only if empty: a refused first key leaves nothing
    return Fail(Local(std::move(key).error().Context("a new key in " + store)));
  }
  return DeviceKey(std::move(*key));
}

// Deletes a store key made for a request that failed before a slot named it (a key left behind
// exposes nothing, but fills the TPM's owner or a token).
class NewKeyGuard {
 public:
  NewKeyGuard(const fs::path& state, const DeviceKey& key, bool fresh)
      : state_(state), uri_(fresh && !key->in_process() ? key->uri() : "") {}
  ~NewKeyGuard() {
    if (uri_.empty()) return;
    (void)DeleteDeviceKey(state_, uri_);
  }
  void Release() { uri_.clear(); }

 private:
  fs::path state_;
  std::string uri_;
};

// A slot's key: key.uri names a key in a store; else key.pem (the factory's key when linked).
Result<DeviceKey> LoadSlotKey(const fs::path& dir, const fs::path& state,
                              const std::string& passphrase) {
  if (fs::exists(dir / "key.uri")) {
    IOTPKI_TRY(std::string uri, Local(ReadTextFile(dir / "key.uri", 4096)));
    uri = uri.substr(0, uri.find('\n'));
    IOTPKI_TRY(auto ks, Local(crypto::KeyStoreFor(uri, {.base_dir = state})));
    auto key = ks->Open(uri);
    if (!key) return Fail(Local(std::move(key).error().Context((dir / "key.uri").string())));
    return DeviceKey(std::move(*key));
  }
  IOTPKI_TRY(crypto::PrivateKey key, LoadKey(dir / "key.pem", passphrase));
  return DeviceKey(std::make_shared<crypto::PrivateKey>(std::move(key)));
}

std::string SlotKeyUri(const fs::path& slot_dir) {
  auto text = ReadTextFile(slot_dir / "key.uri", 4096);
  return text ? text->substr(0, text->find('\n')) : std::string();
}

// Removes a slot, and the store key it names unless a slot that stays (active, previous) names
// it too (a renewal without a new key shares it), or it is the IDevID key (factory/key.uri).
void RemoveSlot(const fs::path& state, const fs::path& slot_dir) {
  std::string uri = SlotKeyUri(slot_dir);
  if (!uri.empty() && uri != SlotKeyUri(state / "active") &&
      uri != SlotKeyUri(state / "previous") && uri != SlotKeyUri(state / "factory")) {
    (void)DeleteDeviceKey(state, uri);
  }
  std::error_code ec;
  fs::remove_all(slot_dir, ec);
}

// `with_key`: also the IDevID key (decrypting it costs a key derivation; a rotation, which
// authenticates with the working certificate, does without).
Result<Factory> LoadFactory(const AgentOptions& o, bool with_key = true) {
  fs::path dir = o.state / "factory";
  if (!fs::is_directory(dir)) {
    return Fail(Code::kFailedPrecondition,
                "no factory bundle in " + dir.string() +
                    " (copy the device's folder from iotpki mfg provision there)");
  }
  IOTPKI_TRY(std::string cert_pem, Local(ReadTextFile(dir / "cert.pem", 1 << 16)));
  IOTPKI_TRY(x509::Certificate idevid, Local(x509::Certificate::FromPem(cert_pem)));
  IOTPKI_TRY(std::string chain_pem, Local(ReadTextFile(dir / "chain.pem", 1 << 20)));
  IOTPKI_TRY(auto chain, Local(x509::Certificate::ChainFromPem(chain_pem)));
  IOTPKI_TRY(x509::Certificate root, FindRoot(chain, dir / "chain.pem"));
  DeviceKey key;
  if (with_key) {
    // key.uri: the IDevID key lives in the device's token or TPM (the folder has no key.pem).
    IOTPKI_TRY(key, LoadSlotKey(dir, o.state, o.key_passphrase));
    if (!(key->public_key() == idevid.public_key())) {
      return Fail(Code::kFailedPrecondition, "the key of " + dir.string() + " is not the key of " +
                                                 (dir / "cert.pem").string());
    }
  }
  Factory f{.idevid = idevid,
            .key = std::move(key),
            .chain = chain,
            .root = root,
            .device_id = idevid.common_name()};
  if (fs::exists(dir / "bootstrap.hex")) {
    IOTPKI_TRY(std::string hex, Local(ReadTextFile(dir / "bootstrap.hex", 4096)));
    while (!hex.empty() && (hex.back() == '\n' || hex.back() == '\r' || hex.back() == ' ')) {
      hex.pop_back();
    }
    auto k = FromHex(hex);
    if (!k || k->size() != 32) {
      return Fail(Code::kFailedPrecondition,
                  (dir / "bootstrap.hex").string() + " is not 64 hex digits");
    }
    f.k_dev = std::move(*k);
  }
  return f;
}

std::string KeyPem(const crypto::PrivateKey& key) {
  auto der = key.ToDer();
  return der ? ossl::PemEncode("PRIVATE KEY", *der) : std::string();
}

Result<std::vector<x509::Certificate>> CertsFromPkcs7(std::string_view base64_body) {
  auto der = Base64Decode(base64_body);
  if (!der) return Fail(BadAnswer("the EST answer is not base64"));
  const unsigned char* p = der->data();
  auto p7 = ossl::Own(d2i_PKCS7(nullptr, &p, static_cast<long>(der->size())));
  if (!p7 || !PKCS7_type_is_signed(p7.get()) || p7->d.sign == nullptr) {
    ossl::ClearErrors();
    return Fail(BadAnswer("the EST answer is not a certs-only PKCS#7"));
  }
  std::vector<x509::Certificate> out;
  STACK_OF(X509)* certs = p7->d.sign->cert;
  for (int i = 0; certs != nullptr && i < sk_X509_num(certs); ++i) {
    auto cert = x509::Certificate::FromDer(ossl::ToDer(sk_X509_value(certs, i), i2d_X509));
    if (!cert) return Fail(BadAnswer("a certificate in the EST answer does not parse"));
    out.push_back(*cert);
  }
  if (out.empty()) return Fail(BadAnswer("the EST answer holds no certificate"));
  return out;
}

constexpr char kC509Cert[] = "application/cose-c509-cert+cbor";

// An EST answer in C509: base64 (RFC 8951) of one re-encoded certificate.
Result<x509::Certificate> CertFromC509(const HttpResponse& r) {
  if (r.content_type.rfind(kC509Cert, 0) != 0) {
    return Fail(
        BadAnswer("asked for " + std::string(kC509Cert) + ", got '" + r.content_type + "'"));
  }
  auto c509 = Base64Decode(r.body);
  if (!c509) return Fail(BadAnswer("the C509 answer is not base64"));
  auto der = c509::DecodeToX509(*c509);
  if (!der) return Fail(BadAnswer("the C509 answer does not decode: " + der.error().message()));
  auto cert = x509::Certificate::FromDer(*der);
  if (!cert) return Fail(BadAnswer("the certificate in the C509 answer does not parse"));
  return cert;
}

// An enrollment answer: the first certificate of a certs-only PKCS#7, or the C509 certificate.
Result<x509::Certificate> EnrolledCert(const HttpResponse& r, bool c509) {
  if (c509) return CertFromC509(r);
  IOTPKI_TRY(auto certs, CertsFromPkcs7(r.body));
  return certs[0];
}

// The answer must be what was asked: our key, our device, a chain to our root.
Result<void> CheckIssued(const x509::Certificate& cert, const crypto::PublicKey& key,
                         const std::string& device_id, const x509::Certificate& issuer,
                         const x509::Certificate& root, int64_t now) {
  if (!(cert.public_key() == key)) return Fail(BadAnswer("the certificate is not for our key"));
  if (cert.common_name() != device_id) {
    return Fail(BadAnswer("the certificate names another device"));
  }
  auto verdict = x509::VerifyChain(cert, std::span(&issuer, 1), std::span(&root, 1), now);
  if (verdict != x509::Verdict::kValid) {
    return Fail(BadAnswer("the certificate does not verify to the root (" +
                          std::string(x509::VerdictName(verdict)) + ")"));
  }
  return {};
}

Result<void> WriteSlotFile(const fs::path& path, std::string_view data, int mode) {
  return Local(WriteFileAtomic(path, data, mode));
}

// Writes the slot in full under a temporary name, then renames it into place (the slots
// directory fsynced). A working certificate on the factory key (--json --no-client-cert) gets
// key.pem as a symbolic link to factory/key.pem: the key stays where it was given, encrypted if
// it was, and no decrypted copy of it is ever written.
Result<std::string> WriteSlot(const fs::path& state, const x509::Certificate& cert,
                              const x509::Certificate& issuer, const crypto::Signer& key,
                              bool factory_key) {
  std::string slot = "ldevid-" + cert.serial_hex().substr(0, 16);
  fs::path slots = state / "slots";
  std::error_code ec;
  fs::create_directories(slots, ec);
  fs::path tmp = slots / (".tmp-" + ToHex(crypto::RandomBytes(4)));
  fs::path final_dir = slots / slot;
  fs::create_directory(tmp, ec);
  if (ec) return Fail(Code::kFailedPrecondition, "cannot create " + tmp.string(), ec.message());
  IOTPKI_CHECK(WriteSlotFile(tmp / "cert.pem", cert.ToPem(), 0644));
  IOTPKI_CHECK(WriteSlotFile(tmp / "chain.pem", issuer.ToPem(), 0644));
  if (factory_key) {
    fs::create_symlink(fs::path("../../factory/key.pem"), tmp / "key.pem", ec);
    if (ec) {
      return Fail(Code::kFailedPrecondition, "cannot link " + (tmp / "key.pem").string(),
                  ec.message());
    }
  } else if (const auto* in_memory = dynamic_cast<const crypto::PrivateKey*>(&key)) {
    IOTPKI_CHECK(WriteSlotFile(tmp / "key.pem", KeyPem(*in_memory), 0600));
  } else {
    // A key in a store: its URI only (no secret in it).
    IOTPKI_CHECK(WriteSlotFile(tmp / "key.uri", key.uri() + "\n", 0644));
  }
  fs::remove_all(final_dir, ec);
  fs::rename(tmp, final_dir, ec);
  if (ec)
    return Fail(Code::kFailedPrecondition, "cannot install " + final_dir.string(), ec.message());
  IOTPKI_CHECK(Local(SyncDirectory(slots)));
  return slot;
}

std::string LinkTarget(const fs::path& link) {
  std::error_code ec;
  if (!fs::is_symlink(link, ec)) return {};
  return fs::read_symlink(link, ec).string();
}

// Points `active` at the slot with one rename (and `previous` at the slot it named), fsyncs the
// state directory, and removes every slot but these two.
Result<void> Activate(const fs::path& state, const std::string& slot) {
  std::error_code ec;
  fs::path active = state / "active";
  std::string old_target = LinkTarget(active);
  fs::path link_tmp = state / ".active.tmp";
  fs::remove(link_tmp, ec);
  fs::create_symlink(fs::path("slots") / slot, link_tmp, ec);
  if (!ec) fs::rename(link_tmp, active, ec);
  if (ec) return Fail(Code::kFailedPrecondition, "cannot switch " + active.string(), ec.message());
  if (!old_target.empty() && old_target != (fs::path("slots") / slot).string()) {
    fs::path prev_tmp = state / ".previous.tmp";
    fs::remove(prev_tmp, ec);
    fs::create_symlink(old_target, prev_tmp, ec);
    if (!ec) fs::rename(prev_tmp, state / "previous", ec);
  }
  IOTPKI_CHECK(Local(SyncDirectory(state)));
  // Only the active slot and the one before it are kept.
  std::string keep_previous = fs::path(LinkTarget(state / "previous")).filename().string();
  for (const auto& entry : fs::directory_iterator(state / "slots", ec)) {
    std::string name = entry.path().filename().string();
    if (name != slot && name != keep_previous && name.rfind(".tmp-", 0) != 0) {
      RemoveSlot(state, entry.path());
    }
  }
  return {};
}

Result<std::string> Install(const fs::path& state, const x509::Certificate& cert,
                            const x509::Certificate& issuer, const crypto::Signer& key,
                            bool factory_key) {
  IOTPKI_TRY(std::string slot, WriteSlot(state, cert, issuer, key, factory_key));
  IOTPKI_CHECK(Activate(state, slot));
  return slot;
}

Result<ServerAddress> ServerFor(const AgentOptions& o) {
  std::string url = o.server_url;
  if (url.empty()) {
    auto saved = ReadTextFile(o.state / "server", 4096);
    if (!saved) {
      return Fail(Code::kInvalidArgument,
                  "no --server given and none saved in " + (o.state / "server").string());
    }
    url = saved->substr(0, saved->find('\n'));
  }
  return ParseServerUrl(url);
}

Result<HttpResponse> Call(const ServerAddress& server, const TlsSettings& tls,
                          std::string_view method, std::string_view target,
                          std::string_view content_type, std::string_view body,
                          std::string_view accept = {}) {
  IOTPKI_TRY(HttpResponse r, HttpsRequest(server, tls, method, target, content_type, body, accept));
  if (r.status != 200) return Fail(Refused(r));
  return r;
}

// A slot's certificate, issuing CA and key.
struct Slot {
  x509::Certificate cert;
  x509::Certificate issuer;
  DeviceKey key;
};

Result<Slot> LoadSlot(const fs::path& dir, const fs::path& state, const std::string& passphrase) {
  IOTPKI_TRY(std::string cert_pem, Local(ReadTextFile(dir / "cert.pem", 1 << 16)));
  IOTPKI_TRY(x509::Certificate cert, Local(x509::Certificate::FromPem(cert_pem)));
  IOTPKI_TRY(std::string chain_pem, Local(ReadTextFile(dir / "chain.pem", 1 << 16)));
  IOTPKI_TRY(x509::Certificate issuer, Local(x509::Certificate::FromPem(chain_pem)));
  // The factory's key when the slot links to it (encrypted there, perhaps).
  IOTPKI_TRY(DeviceKey key, LoadSlotKey(dir, state, passphrase));
  if (!(key->public_key() == cert.public_key())) {
    return Fail(Code::kFailedPrecondition,
                "the key of " + dir.string() + " is not the key of " + (dir / "cert.pem").string());
  }
  return Slot{.cert = std::move(cert), .issuer = std::move(issuer), .key = std::move(key)};
}

Result<Slot> LoadActive(const AgentOptions& o) {
  if (!fs::exists(o.state / "active")) {
    return Fail(Code::kFailedPrecondition,
                "no active working certificate in " + o.state.string() + " (bootstrap first)");
  }
  return LoadSlot(o.state / "active", o.state, o.key_passphrase);
}

// A key in a store, opened for each signature and closed after it: for a TLS session that signs
// once per handshake and then lives for hours (MQTT), so that it holds no TPM object slot in
// between (a TPM without a resource manager has three, and a rotation needs two besides).
class OpenPerUseSigner final : public crypto::Signer {
 public:
  OpenPerUseSigner(std::string uri, fs::path state, crypto::PublicKey pub)
      : uri_(std::move(uri)), state_(std::move(state)), public_(std::move(pub)) {}
  const crypto::PublicKey& public_key() const override { return public_; }
  std::string uri() const override { return uri_; }
  Result<Bytes> Sign(ByteView data) const override {
    IOTPKI_TRY(auto key, Open());
    return key->Sign(data);
  }
  Result<Bytes> SignDigest(ByteView hash) const override {
    IOTPKI_TRY(auto key, Open());
    return key->SignDigest(hash);
  }

 private:
  Result<std::unique_ptr<crypto::Signer>> Open() const {
    IOTPKI_TRY(auto ks, crypto::KeyStoreFor(uri_, {.base_dir = state_}));
    IOTPKI_TRY(auto key, ks->Open(uri_));
    if (!(key->public_key() == public_)) {
      return Fail(Code::kFailedPrecondition, "the key at " + uri_ + " changed");
    }
    return key;
  }

  std::string uri_;
  fs::path state_;
  crypto::PublicKey public_;
};

// POST /api/v1/devices/<id>/rotation over mutual TLS with `slot`'s certificate.
Result<HttpResponse> SendRotationAnswer(const ServerAddress& server, const x509::Certificate& root,
                                        const Slot& slot, const std::string& campaign, int64_t job,
                                        bool installed, const std::string& reason,
                                        std::chrono::seconds timeout) {
  TlsSettings tls{.trust_anchors = {root.ToDer()},
                  .client_chain = {slot.cert.ToDer()},
                  .client_key = slot.key.get(),
                  .timeout = timeout};
  nlohmann::json body = {
      {"campaign", campaign}, {"job", job}, {"status", installed ? "installed" : "failed"}};
  if (!reason.empty()) body["reason"] = reason.substr(0, 300);
  return Call(server, tls, "POST", "/api/v1/devices/" + slot.cert.common_name() + "/rotation",
              "application/json", body.dump());
}

struct PendingRecord {
  std::string slot;
  std::string serial;
  std::string campaign;
  int64_t job = 0;
};

Result<void> WritePending(const fs::path& state, const PendingRecord& p) {
  nlohmann::json j = {
      {"slot", p.slot}, {"serial", p.serial}, {"campaign", p.campaign}, {"job", p.job}};
  return Local(WriteFileAtomic(state / "pending", j.dump() + "\n"));
}

std::optional<PendingRecord> ReadPending(const fs::path& state) {
  auto text = ReadTextFile(state / "pending", 4096);
  if (!text) return std::nullopt;
  auto j = nlohmann::json::parse(*text, nullptr, false);
  if (!j.is_object() || !j.contains("slot") || !j["slot"].is_string() || !j.contains("serial") ||
      !j["serial"].is_string() || !j.contains("campaign") || !j["campaign"].is_string() ||
      !j.contains("job") || !j["job"].is_number_integer()) {
    return PendingRecord{};  // unreadable: discarded by Recover
  }
  PendingRecord p{.slot = j["slot"].get<std::string>(),
                  .serial = j["serial"].get<std::string>(),
                  .campaign = j["campaign"].get<std::string>(),
                  .job = j["job"].get<int64_t>()};
  // One path segment, as WriteSlot names it: nothing outside STATE/slots is ever removed.
  if (p.slot.rfind("ldevid-", 0) != 0 || p.slot.find('/') != std::string::npos) p.slot.clear();
  return p;
}

// Removes the pending slot (unless `active` names it) and STATE/pending, durably.
Result<void> DropPending(const fs::path& state, const std::string& slot) {
  std::error_code ec;
  if (!slot.empty() && LinkTarget(state / "active") != (fs::path("slots") / slot).string()) {
    RemoveSlot(state, state / "slots" / slot);
  }
  fs::remove(state / "pending", ec);
  if (ec) {
    return Fail(Code::kFailedPrecondition, "cannot remove " + (state / "pending").string(),
                ec.message());
  }
  return Local(SyncDirectory(state));
}

// A key made for a request in flight is named by no slot until the slot is written (seconds
// later); only keys older than this are orphans.
constexpr int64_t kOrphanKeyAge = 3600;

// Keys the agent made that no slot (nor the factory) names: what a crash between making a key and
// writing its slot leaves behind (NewKeyGuard deletes it on every other failure). Found in
// STATE/keys/: TPM key blobs (the TPM keeps no copy of a blob's key, so deleting the blob destroys
// the key) and the records of token keys (the key is destroyed in the token, then its record).
// Returns the URIs of the keys deleted; a key whose store cannot be reached now is kept for the
// next start.
std::vector<std::string> RemoveOrphanKeys(const AgentOptions& o) {
  std::vector<std::string> removed;
  std::error_code ec;
  if (!fs::is_directory(o.state / "keys", ec)) return removed;
  // Token keys are compared by their record (by label): a slot's URI carries the key's id too,
  // the record's does not.
  std::set<std::string> named;
  std::set<fs::path> named_records;
  auto name = [&](const std::string& uri) {
    named.insert(uri);
    if (auto record = TokenKeyRecordOf(o.state, uri)) named_records.insert(*record);
  };
  name(SlotKeyUri(o.state / "factory"));
  for (const auto& entry : fs::directory_iterator(o.state / "slots", ec)) {
    name(SlotKeyUri(entry.path()));
  }
  int64_t now = o.clock->NowUnix();
  auto ends_with = [](const std::string& s, std::string_view suffix) {
    return s.size() > suffix.size() &&
           s.compare(s.size() - suffix.size(), suffix.size(), suffix.data(), suffix.size()) == 0;
  };
  for (const auto& entry : fs::directory_iterator(o.state / "keys", ec)) {
    std::string file = entry.path().filename().string();
    std::string uri;
    if (ends_with(file, ".tpm")) {
      uri = "tpm2:blob=keys/" + file;
      if (named.count(uri) != 0) continue;
    } else if (ends_with(file, kTokenKeyRecord)) {
      auto text = ReadTextFile(entry.path(), 4096);
      if (!text) continue;
      uri = text->substr(0, text->find('\n'));
      // Only a record that names the key its file is named after (nothing else is touched).
      auto record = TokenKeyRecordOf(o.state, uri);
      if (!record || *record != entry.path() || named_records.count(*record) != 0) continue;
    } else {
      continue;
    }
    struct stat st {};
    if (::lstat(entry.path().c_str(), &st) != 0 || !S_ISREG(st.st_mode) ||
        now - static_cast<int64_t>(st.st_mtime) < kOrphanKeyAge) {
      continue;
    }
    // A token key that does not exist (a crash before the token made it) loses its record only.
    if (DeleteDeviceKey(o.state, uri)) removed.push_back(uri);
  }
  return removed;
}

}  // namespace

Result<ActiveIdentity> LoadActiveIdentity(const AgentOptions& o) {
  IOTPKI_TRY(Slot slot, LoadActive(o));
  std::shared_ptr<const crypto::Signer> key = slot.key;
  if (!key->in_process()) {
    // Opened once above (it matches the certificate); from now on only for each signature.
    key = std::make_shared<OpenPerUseSigner>(key->uri(), o.state, key->public_key());
    slot.key.reset();
  }
  return ActiveIdentity{.certificate = std::move(slot.cert), .key = std::move(key)};
}

Outcome Classify(const Error& error) {
  switch (error.code()) {
    case Code::kUnavailable:
      return Outcome::kUnreachable;
    case Code::kUnauthenticated:
      return Outcome::kTls;
    case Code::kPermissionDenied:
      return Outcome::kRefused;
    case Code::kDataLoss:
      return Outcome::kBadAnswer;
    case Code::kInvalidArgument:
      return Outcome::kUsage;
    default:
      return Outcome::kLocal;
  }
}

std::string_view OutcomeName(Outcome outcome) {
  switch (outcome) {
    case Outcome::kOk:
      return "ok";
    case Outcome::kLocal:
      return "local failure";
    case Outcome::kUsage:
      return "usage";
    case Outcome::kUnreachable:
      return "server unreachable";
    case Outcome::kTls:
      return "TLS failure";
    case Outcome::kRefused:
      return "refused by server";
    case Outcome::kBadAnswer:
      return "bad answer from server";
  }
  return "failure";
}

Result<Installed> Bootstrap(const AgentOptions& o, BootstrapMode mode) {
  IOTPKI_TRY(ServerAddress server, ParseServerUrl(o.server_url));
  IOTPKI_TRY(Factory f, LoadFactory(o));
  int64_t now = o.clock->NowUnix();

  TlsSettings tls{.trust_anchors = {f.root.ToDer()}, .timeout = o.timeout};
  bool client_auth = mode != BootstrapMode::kJsonWithoutClientCertificate;
  if (client_auth) {
    tls.client_chain = {f.idevid.ToDer()};
    tls.client_key = f.key.get();
  }
  // A new key for the working certificate, unless the IDevID key must sign the CSR itself.
  if (!client_auth && !KeyStoreOf(o).empty()) {
    return Fail(Code::kInvalidArgument,
                "--no-client-cert keeps the factory key, --key-store makes a new one: not both");
  }
  if (!client_auth && !f.key->in_process()) {
    return Fail(Code::kInvalidArgument,
                "--no-client-cert keeps the IDevID key as the working key, which a key in a "
                "token or TPM (factory/key.uri) cannot be: use --est or --json");
  }
  DeviceKey key = f.key;
  if (client_auth) {
    IOTPKI_TRY(key, NewDeviceKey(o));
  }
  NewKeyGuard guard(o.state, key, client_auth);
  x509::NameFields subject{.organization = f.idevid.organization(),
                           .common_name = f.device_id,
                           .serial_number = f.idevid.serial_number()};
  IOTPKI_TRY(x509::Csr csr, Local(x509::MakeCsr(*key, subject)));

  x509::Certificate issued = f.idevid;
  std::optional<x509::Certificate> issuer;
  if (mode == BootstrapMode::kEst) {
    IOTPKI_TRY(HttpResponse ca, Call(server, tls, "GET", std::string(kEst) + "/cacerts", "", ""));
    IOTPKI_TRY(auto ca_certs, CertsFromPkcs7(ca.body));
    IOTPKI_TRY(HttpResponse r,
               Call(server, tls, "POST", std::string(kEst) + "/simpleenroll", "application/pkcs10",
                    Base64Encode(csr.ToDer()), o.c509 ? kC509Cert : ""));
    IOTPKI_TRY(issued, EnrolledCert(r, o.c509));
    for (const auto& c : ca_certs) {
      if (c.subject() == issued.issuer() && issued.IsSignedBy(c.public_key())) issuer = c;
    }
  } else {
    if (o.c509) {
      return Fail(Code::kInvalidArgument, "C509 answers are an EST option (use --est)");
    }
    if (f.k_dev.empty()) {
      return Fail(Code::kFailedPrecondition,
                  "the factory bundle has no bootstrap.hex (needed for --json)");
    }
    nlohmann::json body = {{"device_id", f.device_id},
                           {"csr", Base64Encode(csr.ToDer())},
                           {"device_cert", Base64Encode(f.idevid.ToDer())},
                           {"timestamp", now},
                           {"token", BootstrapToken(f.k_dev, f.device_id, now)}};
    IOTPKI_TRY(HttpResponse r,
               Call(server, tls, "POST", "/api/v1/bootstrap", "application/json", body.dump()));
    auto j = nlohmann::json::parse(r.body, nullptr, false);
    if (!j.is_object() || !j.contains("certificate") || !j["certificate"].is_string() ||
        !j.contains("chain") || !j["chain"].is_array() || j["chain"].empty() ||
        !j["chain"][0].is_string()) {
      return Fail(BadAnswer("the bootstrap answer lacks certificate or chain"));
    }
    auto cert_der = Base64Decode(j["certificate"].get<std::string>());
    auto chain_der = Base64Decode(j["chain"][0].get<std::string>());
    if (!cert_der || !chain_der) return Fail(BadAnswer("the bootstrap answer is not base64"));
    auto cert = x509::Certificate::FromDer(*cert_der);
    auto ca = x509::Certificate::FromDer(*chain_der);
    if (!cert || !ca) return Fail(BadAnswer("the bootstrap answer's certificates do not parse"));
    issued = *cert;
    issuer = *ca;
  }
  if (!issuer) return Fail(BadAnswer("no issuing CA for the certificate"));
  IOTPKI_CHECK(CheckIssued(issued, key->public_key(), f.device_id, *issuer, f.root, now));
  IOTPKI_TRY(std::string slot, Install(o.state, issued, *issuer, *key, !client_auth));
  guard.Release();
  IOTPKI_CHECK(Local(WriteFileAtomic(o.state / "server", o.server_url + "\n")));
  if (!o.key_store.empty()) {
    // Renewals and rotations make their new keys in the same store.
    IOTPKI_CHECK(Local(WriteFileAtomic(o.state / "key-store", o.key_store + "\n")));
  }
  return Installed{
      .certificate = issued, .device_id = f.device_id, .slot = slot, .new_key = client_auth};
}

Result<Installed> Renew(const AgentOptions& o, bool rekey) {
  IOTPKI_TRY(ServerAddress server, ServerFor(o));
  IOTPKI_TRY(Factory f, LoadFactory(o, /*with_key=*/false));
  fs::path active = o.state / "active";
  if (!fs::exists(active)) {
    return Fail(Code::kFailedPrecondition,
                "no active working certificate in " + o.state.string() + " (bootstrap first)");
  }
  IOTPKI_TRY(std::string cert_pem, Local(ReadTextFile(active / "cert.pem", 1 << 16)));
  IOTPKI_TRY(x509::Certificate current, Local(x509::Certificate::FromPem(cert_pem)));
  IOTPKI_TRY(std::string chain_pem, Local(ReadTextFile(active / "chain.pem", 1 << 16)));
  IOTPKI_TRY(x509::Certificate issuer, Local(x509::Certificate::FromPem(chain_pem)));
  // The factory's key when the active slot links to it (encrypted there, perhaps).
  IOTPKI_TRY(DeviceKey current_key, LoadSlotKey(active, o.state, o.key_passphrase));
  int64_t now = o.clock->NowUnix();

  TlsSettings tls{.trust_anchors = {f.root.ToDer()},
                  .client_chain = {current.ToDer()},
                  .client_key = current_key.get(),
                  .timeout = o.timeout};
  DeviceKey key = current_key;
  if (rekey) {
    IOTPKI_TRY(key, NewDeviceKey(o));
  }
  NewKeyGuard guard(o.state, key, rekey);
  // RFC 7030 4.2.2: the same subject and subjectAltName as the certificate renewed.
  x509::NameFields subject{.organization = current.organization(),
                           .common_name = current.common_name(),
                           .serial_number = current.serial_number()};
  IOTPKI_TRY(x509::Csr csr, Local(x509::MakeCsr(*key, subject, current.subject_alt_names())));
  IOTPKI_TRY(HttpResponse r,
             Call(server, tls, "POST", std::string(kEst) + "/simplereenroll", "application/pkcs10",
                  Base64Encode(csr.ToDer()), o.c509 ? kC509Cert : ""));
  IOTPKI_TRY(x509::Certificate issued, EnrolledCert(r, o.c509));
  IOTPKI_CHECK(CheckIssued(issued, key->public_key(), current.common_name(), issuer, f.root, now));
  IOTPKI_TRY(std::string slot,
             Install(o.state, issued, issuer, *key, key->public_key() == f.idevid.public_key()));
  guard.Release();
  return Installed{
      .certificate = issued, .device_id = current.common_name(), .slot = slot, .new_key = rekey};
}

// ---------------------------------------------------------------------------------------------
// EST serverkeygen.

namespace {

struct MimePart {
  std::string content_type;  // lower case, parameters kept
  Bytes content;             // base64-decoded
};

// The parts of a multipart/mixed answer (RFC 2046 section 5.1), each base64 (RFC 7030 4.4.2).
// Boundary from the Content-Type; CRLF or LF line breaks.
Result<std::vector<MimePart>> MultipartParts(const HttpResponse& r) {
  std::string type = ToLowerAscii(r.content_type);
  if (type.rfind("multipart/mixed", 0) != 0) {
    return Fail(
        BadAnswer("asked for serverkeygen's multipart/mixed, got '" + r.content_type + "'"));
  }
  size_t b = type.find("boundary=");
  if (b == std::string::npos) return Fail(BadAnswer("the multipart answer names no boundary"));
  // The boundary keeps its case: take it from the original header.
  std::string boundary = r.content_type.substr(b + 9);
  boundary = boundary.substr(0, boundary.find(';'));
  if (boundary.size() >= 2 && boundary.front() == '"')
    boundary = boundary.substr(1, boundary.size() - 2);
  if (boundary.empty() || boundary.size() > 70) {
    return Fail(BadAnswer("the multipart answer's boundary is malformed"));
  }
  const std::string delimiter = "--" + boundary;
  std::vector<MimePart> parts;
  size_t at = r.body.find(delimiter);
  while (at != std::string::npos) {
    at += delimiter.size();
    if (r.body.compare(at, 2, "--") == 0) return parts;  // the close delimiter
    size_t next = r.body.find(delimiter, at);
    if (next == std::string::npos) break;
    std::string part = r.body.substr(at, next - at);
    size_t end = part.find("\r\n\r\n");
    size_t skip = 4;
    if (end == std::string::npos) {
      end = part.find("\n\n");
      skip = 2;
    }
    if (end == std::string::npos) return Fail(BadAnswer("a multipart part has no header end"));
    MimePart m;
    std::string headers = part.substr(0, end);
    for (size_t line = 0; line < headers.size();) {
      size_t eol = headers.find('\n', line);
      std::string h =
          headers.substr(line, eol == std::string::npos ? std::string::npos : eol - line);
      if (!h.empty() && h.back() == '\r') h.pop_back();
      std::string lower = ToLowerAscii(h);
      if (lower.rfind("content-type:", 0) == 0) {
        m.content_type = lower.substr(13);
        while (!m.content_type.empty() && m.content_type.front() == ' ') {
          m.content_type.erase(0, 1);
        }
      }
      if (eol == std::string::npos) break;
      line = eol + 1;
    }
    auto der = Base64Decode(part.substr(end + skip));
    if (!der) return Fail(BadAnswer("a multipart part is not base64"));
    m.content = std::move(*der);
    parts.push_back(std::move(m));
    at = next;
  }
  return Fail(BadAnswer("the multipart answer is not closed"));
}

}  // namespace

Result<Installed> BootstrapServerKeygen(const AgentOptions& o) {
  IOTPKI_TRY(ServerAddress server, ParseServerUrl(o.server_url));
  IOTPKI_TRY(Factory f, LoadFactory(o));
  if (o.c509) return Fail(Code::kInvalidArgument, "serverkeygen answers in X.509 only (no --c509)");
  if (!KeyStoreOf(o).empty()) {
    return Fail(Code::kInvalidArgument,
                "serverkeygen makes the key on the server; with --key-store the key is made "
                "in the store (use --est)");
  }
  if (!f.key->in_process()) {
    return Fail(Code::kInvalidArgument,
                "serverkeygen seals the new key to the IDevID key, which a token or TPM key "
                "(factory/key.uri) cannot open here: use --est");
  }
  int64_t now = o.clock->NowUnix();
  TlsSettings tls{.trust_anchors = {f.root.ToDer()},
                  .client_chain = {f.idevid.ToDer()},
                  .client_key = f.key.get(),
                  .timeout = o.timeout};
  // RFC 7030 4.4.1: a CSR as for simpleenroll, whose key the server ignores. The IDevID key
  // signs it: this device may have no randomness for a key of its own.
  x509::NameFields subject{.organization = f.idevid.organization(),
                           .common_name = f.device_id,
                           .serial_number = f.idevid.serial_number()};
  IOTPKI_TRY(x509::Csr csr, Local(x509::MakeCsr(*f.key, subject)));
  IOTPKI_TRY(HttpResponse ca, Call(server, tls, "GET", std::string(kEst) + "/cacerts", "", ""));
  IOTPKI_TRY(auto ca_certs, CertsFromPkcs7(ca.body));
  IOTPKI_TRY(HttpResponse r, Call(server, tls, "POST", std::string(kEst) + "/serverkeygen",
                                  "application/pkcs10", Base64Encode(csr.ToDer())));
  IOTPKI_TRY(auto parts, MultipartParts(r));
  const MimePart* sealed = nullptr;
  const MimePart* certs = nullptr;
  for (const auto& p : parts) {
    if (p.content_type.find("smime-type=server-generated-key") != std::string::npos) sealed = &p;
    if (p.content_type.find("smime-type=certs-only") != std::string::npos) certs = &p;
  }
  if (sealed == nullptr || certs == nullptr) {
    return Fail(BadAnswer("the serverkeygen answer lacks the sealed key or the certificate"));
  }
  // RFC 7030 4.4.2: the key package is signed by the server that made it, then sealed to the
  // IDevID. The signer must chain to this device's root (it is the server's TLS certificate).
  auto opened = x509::OpenKeyPackage(sealed->content, *f.key, f.idevid);
  if (!opened) return Fail(BadAnswer("the sealed key: " + opened.error().message()));
  std::vector<x509::Certificate> untrusted = ca_certs;
  untrusted.insert(untrusted.end(), opened->certificates.begin(), opened->certificates.end());
  if (x509::VerifyChain(opened->signer, untrusted, std::span(&f.root, 1), now) !=
      x509::Verdict::kValid) {
    return Fail(BadAnswer("the sealed key is signed by a certificate this device does not trust"));
  }
  auto key = crypto::PrivateKey::FromDer(opened->pkcs8.bytes());
  if (!key) return Fail(BadAnswer("the sealed key is not a PKCS#8 private key"));
  IOTPKI_TRY(auto issued_certs, CertsFromPkcs7(Base64Encode(certs->content)));
  const x509::Certificate& issued = issued_certs[0];
  std::optional<x509::Certificate> issuer;
  for (const auto& c : ca_certs) {
    if (c.subject() == issued.issuer() && issued.IsSignedBy(c.public_key())) issuer = c;
  }
  if (!issuer) return Fail(BadAnswer("no issuing CA for the certificate"));
  // CheckIssued compares the certificate's key with the key just opened.
  IOTPKI_CHECK(CheckIssued(issued, key->public_key(), f.device_id, *issuer, f.root, now));
  IOTPKI_TRY(std::string slot, Install(o.state, issued, *issuer, *key, /*factory_key=*/false));
  IOTPKI_CHECK(Local(WriteFileAtomic(o.state / "server", o.server_url + "\n")));
  return Installed{.certificate = issued, .device_id = f.device_id, .slot = slot, .new_key = true};
}

std::string_view RotateStepName(RotateStep step) {
  switch (step) {
    case RotateStep::kBeforeCsr:
      return "before-csr";
    case RotateStep::kAfterEnroll:
      return "after-enroll";
    case RotateStep::kBeforeConfirm:
      return "before-confirm";
    case RotateStep::kBeforeRename:
      return "before-rename";
    case RotateStep::kAfterRename:
      return "after-rename";
  }
  return "?";
}

std::optional<RotateStep> ParseRotateStep(std::string_view name) {
  for (int i = 1; i <= 5; ++i) {
    auto step = static_cast<RotateStep>(i);
    if (RotateStepName(step) == name) return step;
  }
  return std::nullopt;
}

std::string_view RecoveryName(Recovery r) {
  switch (r) {
    case Recovery::kNothing:
      return "nothing pending";
    case Recovery::kCompleted:
      return "pending rotation completed";
    case Recovery::kActivated:
      return "pending rotation was active already";
    case Recovery::kDiscarded:
      return "pending rotation discarded";
  }
  return "?";
}

Result<Rotated> Rotate(const AgentOptions& o, const RotateCommand& command,
                       const RotateHooks& hooks) {
  auto at = [&](RotateStep step) {
    if (hooks.at_step) hooks.at_step(step);
  };
  if (command.campaign.empty() || command.campaign.size() > 128 || command.job < 0) {
    return Fail(Code::kInvalidArgument, "a rotation names its campaign and job number (>= 0)");
  }
  if (fs::exists(o.state / "pending")) {
    return Fail(Code::kFailedPrecondition,
                "a rotation is pending in " + (o.state / "pending").string() +
                    " (the agent finishes it at start: iotpki-agent recover)");
  }
  IOTPKI_TRY(ServerAddress server, ServerFor(o));
  IOTPKI_TRY(Factory f, LoadFactory(o, /*with_key=*/false));
  IOTPKI_TRY(Slot current, LoadActive(o));
  const std::string device_id = current.cert.common_name();
  at(RotateStep::kBeforeCsr);

  DeviceKey key = current.key;
  if (command.rekey) {
    IOTPKI_TRY(key, NewDeviceKey(o));
  }
  // Until the slot names it; then a rollback (DropPending) deletes it with the slot.
  NewKeyGuard guard(o.state, key, command.rekey);
  x509::NameFields subject{.organization = current.cert.organization(),
                           .common_name = device_id,
                           .serial_number = current.cert.serial_number()};
  IOTPKI_TRY(x509::Csr csr, Local(x509::MakeCsr(*key, subject, current.cert.subject_alt_names())));
  TlsSettings tls{.trust_anchors = {f.root.ToDer()},
                  .client_chain = {current.cert.ToDer()},
                  .client_key = current.key.get(),
                  .timeout = o.timeout};
  IOTPKI_TRY(HttpResponse r,
             Call(server, tls, "POST", std::string(kEst) + "/simplereenroll", "application/pkcs10",
                  Base64Encode(csr.ToDer()), o.c509 ? kC509Cert : ""));
  IOTPKI_TRY(x509::Certificate issued, EnrolledCert(r, o.c509));
  int64_t now = o.clock->NowUnix();
  IOTPKI_CHECK(CheckIssued(issued, key->public_key(), device_id, current.issuer, f.root, now));
  at(RotateStep::kAfterEnroll);

  // The rollback: the new slot and its record go, the server hears why (with the old
  // certificate, which is still valid: nothing is revoked before a confirmation).
  auto roll_back = [&](const std::string& slot, const Error& why) -> Error {
    auto dropped = DropPending(o.state, slot);
    auto reported = SendRotationAnswer(server, f.root, current, command.campaign, command.job,
                                       false, why.message(), o.timeout);
    std::string note = dropped ? "rolled back to " + current.cert.serial_hex()
                               : "rollback incomplete: " + dropped.error().message();
    if (!reported) note += "; the failure could not be reported: " + reported.error().message();
    return Error(why.code(), why.message() + " (" + note + ")", why.detail());
  };
  IOTPKI_TRY(std::string slot, WriteSlot(o.state, issued, current.issuer, *key,
                                         key->public_key() == f.idevid.public_key()));
  guard.Release();
  IOTPKI_CHECK(WritePending(o.state, {.slot = slot,
                                      .serial = issued.serial_hex(),
                                      .campaign = command.campaign,
                                      .job = command.job}));
  if (hooks.fail_install) {
    return Fail(
        roll_back(slot, Error(Code::kFailedPrecondition,
                              "install failed on purpose (IOTPKI_AGENT_TEST_FAIL_INSTALL)")));
  }
  at(RotateStep::kBeforeConfirm);

  // The slot's key is opened again as it will be at the next start; the handle made for the CSR
  // is closed first (a TPM without a resource manager holds only a few loaded keys).
  key.reset();
  IOTPKI_TRY(Slot fresh, LoadSlot(o.state / "slots" / slot, o.state, o.key_passphrase));
  auto confirmed =
      SendRotationAnswer(server, f.root, fresh, command.campaign, command.job, true, "", o.timeout);
  if (!confirmed) {
    if (confirmed.error().code() == Code::kUnavailable) {
      // The server may have accepted it (and revoked the old certificate): only Recover, with
      // an answer from the server, may decide.
      return Fail(Error(Code::kUnavailable,
                        confirmed.error().message() +
                            " (the confirmation did not get through; the new slot stays pending "
                            "and the agent finishes it at its next start)"));
    }
    return Fail(roll_back(
        slot, Error(confirmed.error().code(),
                    "the new certificate was not confirmed: " + confirmed.error().message())));
  }
  at(RotateStep::kBeforeRename);
  IOTPKI_CHECK(Activate(o.state, slot));
  at(RotateStep::kAfterRename);
  IOTPKI_CHECK(DropPending(o.state, ""));
  return Rotated{.installed = {.certificate = issued,
                               .device_id = device_id,
                               .slot = slot,
                               .new_key = command.rekey},
                 .old_serial = current.cert.serial_hex()};
}

Result<Recovered> Recover(const AgentOptions& o) {
  std::error_code ec;
  // Slots a crash left half written are never named by anything.
  for (const auto& entry : fs::directory_iterator(o.state / "slots", ec)) {
    if (entry.path().filename().string().rfind(".tmp-", 0) == 0) fs::remove_all(entry.path(), ec);
  }
  std::vector<std::string> orphans = RemoveOrphanKeys(o);
  auto pending = ReadPending(o.state);
  if (!pending) return Recovered{.orphans_deleted = std::move(orphans)};
  auto done = [&](Recovery what) {
    return Recovered{.what = what,
                     .campaign = pending->campaign,
                     .job = pending->job,
                     .orphans_deleted = orphans};
  };
  if (!pending->slot.empty() &&
      LinkTarget(o.state / "active") == (fs::path("slots") / pending->slot).string()) {
    // Stopped after the switch: the confirmation was accepted before it.
    IOTPKI_CHECK(DropPending(o.state, ""));
    return done(Recovery::kActivated);
  }
  std::optional<Slot> fresh;
  if (!pending->slot.empty()) {
    auto loaded = LoadSlot(o.state / "slots" / pending->slot, o.state, o.key_passphrase);
    if (loaded && loaded->cert.serial_hex() == pending->serial) fresh = std::move(*loaded);
  }
  IOTPKI_TRY(ServerAddress server, ServerFor(o));
  IOTPKI_TRY(Factory f, LoadFactory(o, /*with_key=*/false));
  auto discard = [&](const std::string& why) -> Result<Recovered> {
    IOTPKI_CHECK(DropPending(o.state, pending->slot));
    if (!pending->campaign.empty()) {
      if (auto current = LoadActive(o)) {
        // Best effort: the job's wait ends without an answer otherwise, which is also retried.
        (void)SendRotationAnswer(server, f.root, *current, pending->campaign, pending->job, false,
                                 why, o.timeout);
      }
    }
    return done(Recovery::kDiscarded);
  };
  if (!fresh) return discard("the pending slot was incomplete after a restart");
  auto confirmed = SendRotationAnswer(server, f.root, *fresh, pending->campaign, pending->job, true,
                                      "", o.timeout);
  if (!confirmed) {
    if (confirmed.error().code() == Code::kUnavailable) return Fail(confirmed.error());
    return discard("the pending certificate was not confirmed after a restart: " +
                   confirmed.error().message());
  }
  IOTPKI_CHECK(Activate(o.state, pending->slot));
  IOTPKI_CHECK(DropPending(o.state, ""));
  return done(Recovery::kCompleted);
}

int64_t AutoRenewAt(int64_t not_before, int64_t not_after, double unit_random) {
  if (not_after <= not_before) return not_before;
  int64_t life = not_after - not_before;
  double u = unit_random < 0 ? 0 : (unit_random >= 1 ? 0.999999 : unit_random);
  int64_t at = not_before + life / 3 * 2 + (life % 3) * 2 / 3 +
               static_cast<int64_t>(u * static_cast<double>(life / 12));
  return std::min(at, not_after - 1);
}

int64_t SecondsUntilAutoRenew(int64_t not_before, int64_t not_after, double unit_random,
                              const Clock& clock) {
  return std::max<int64_t>(0, AutoRenewAt(not_before, not_after, unit_random) - clock.NowUnix());
}

int64_t RetryBackoff(int attempt, double unit_random) {
  int64_t base = 5;
  for (int i = 1; i < attempt && base < 3600; ++i) base *= 2;
  base = std::min<int64_t>(base, 3600);
  double u = unit_random < 0 ? 0 : (unit_random > 1 ? 1 : unit_random);
  return std::max<int64_t>(1, static_cast<int64_t>(static_cast<double>(base) * (0.5 + u / 2)));
}

double DeviceJitter(std::string_view device_id) {
  Bytes digest = crypto::Sha256(AsBytes(device_id));
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | digest[i];
  return static_cast<double>(v >> 11) / static_cast<double>(uint64_t{1} << 53);
}

Result<AutoRenewal> AutoRenewPass(const AgentOptions& o) {
  IOTPKI_TRY(Slot current, LoadActive(o));
  double u = DeviceJitter(current.cert.common_name());
  int64_t wait =
      SecondsUntilAutoRenew(current.cert.not_before(), current.cert.not_after(), u, *o.clock);
  if (wait > 0) return AutoRenewal{.next_in = wait};
  IOTPKI_TRY(Installed installed, Renew(o, /*rekey=*/true));
  int64_t next = SecondsUntilAutoRenew(installed.certificate.not_before(),
                                       installed.certificate.not_after(), u, *o.clock);
  return AutoRenewal{.renewed = std::move(installed), .next_in = next};
}

}  // namespace iotpki::agent
