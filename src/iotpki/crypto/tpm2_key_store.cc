#include "iotpki/crypto/tpm2_key_store.h"

#include <openssl/core_names.h>
#include <openssl/encoder.h>
#include <openssl/err.h>
#include <openssl/provider.h>
#include <openssl/store.h>
#include <openssl/ui.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <system_error>

#include "iotpki/common/file.h"
#include "iotpki/crypto/ossl.h"
#include "iotpki/crypto/signer.h"

// Handles only this store uses (ossl.h, included everywhere, stays as it is).
namespace iotpki::ossl {
template <>
struct Deleter<OSSL_STORE_CTX> {
  void operator()(OSSL_STORE_CTX* p) const { OSSL_STORE_close(p); }
};
template <>
struct Deleter<OSSL_STORE_INFO> {
  void operator()(OSSL_STORE_INFO* p) const { OSSL_STORE_INFO_free(p); }
};
template <>
struct Deleter<OSSL_ENCODER_CTX> {
  void operator()(OSSL_ENCODER_CTX* p) const { OSSL_ENCODER_CTX_free(p); }
};
template <>
struct Deleter<UI_METHOD> {
  void operator()(UI_METHOD* p) const { UI_destroy_method(p); }
};
}  // namespace iotpki::ossl

namespace iotpki::crypto {
namespace {

namespace fs = std::filesystem;

// Everything our own code asks of the TPM asks the tpm2 provider explicitly.
constexpr char kTpm2Only[] = "provider=tpm2";
// The tpm2 provider and the default provider in a library context of their own, so that loading
// the TPM changes nothing for the rest of the process (the default context keeps only the
// default provider, and nothing there is ever fetched from the TPM by accident). Made once,
// never freed: every TPM key refers to the provider until the process ends. The provider's ESAPI
// context is not thread-safe; `mu` serialises every TPM operation this store performs.
struct Tpm {
  OSSL_LIB_CTX* lib = nullptr;
  std::mutex mu;
};

Result<Tpm*> TheTpm() {
  static std::mutex init_mu;
  static Tpm* tpm = nullptr;
  std::lock_guard lock(init_mu);
  if (tpm != nullptr) return tpm;
  // tpm2-tss logs every TPM error response to stderr; ours carry the reason already (a wrong
  // password is an answer, not a log line). An operator's TSS2_LOG still wins.
  ::setenv("TSS2_LOG", "all+NONE", 0);
  OSSL_LIB_CTX* lib = OSSL_LIB_CTX_new();
  if (lib == nullptr) return Fail(ossl::Drain(Code::kInternal, "OSSL_LIB_CTX_new failed"));
  OSSL_PROVIDER* base = OSSL_PROVIDER_load(lib, "default");
  OSSL_PROVIDER* tpm2 = base == nullptr ? nullptr : OSSL_PROVIDER_load(lib, "tpm2");
  if (tpm2 == nullptr) {
    // Not cached: the TPM (or swtpm, or the resource manager) may come up later.
    const char* tcti = std::getenv("TPM2OPENSSL_TCTI");
    Error e = ossl::Drain(
        Code::kFailedPrecondition,
        std::string("cannot reach a TPM 2.0 through the tpm2-openssl provider (TPM2OPENSSL_TCTI=") +
            (tcti != nullptr ? tcti : "unset") +
            "; install tpm2-openssl and name the TPM, e.g. device:/dev/tpmrm0)");
    if (base != nullptr) OSSL_PROVIDER_unload(base);
    OSSL_LIB_CTX_free(lib);
    return Fail(std::move(e));
  }
  tpm = new Tpm;
  tpm->lib = lib;
  return tpm;
}

// The TPM's errors come as text on OpenSSL's queue; an authorization failure is the one callers
// must tell apart (a wrong key password).
Error TpmError(Code code, const std::string& message) {
  Error e = ossl::Drain(code, message);
  std::string text = e.ToString();
  if (text.find("authorization failure") != std::string::npos ||
      text.find("authorization HMAC check failed") != std::string::npos) {
    return Error(Code::kUnauthenticated, message + ": wrong key authorization (password)");
  }
  return e;
}

// No OpenSslKey face of its own: TLS signs through TlsKeyOf (signer.h), which calls SignDigest.
class Tpm2Signer final : public Signer {
 public:
  Tpm2Signer(Tpm* tpm, ossl::UniquePtr<EVP_PKEY> key, PublicKey pub, std::string uri)
      : tpm_(tpm), key_(std::move(key)), public_(std::move(pub)), uri_(std::move(uri)) {}

  const PublicKey& public_key() const override { return public_; }
  std::string uri() const override { return uri_; }

  Result<Bytes> Sign(ByteView data) const override {
    const EVP_MD* md = digest() == DigestAlgorithm::kSha384 ? ossl::Sha384Md() : ossl::Sha256Md();
    uint8_t hash[EVP_MAX_MD_SIZE];
    unsigned int hash_len = 0;
    if (EVP_Digest(data.data(), data.size(), hash, &hash_len, md, nullptr) != 1) {
      return Fail(ossl::Drain(Code::kInternal, "hashing for a TPM signature failed"));
    }
    return SignDigest(ByteView(hash, hash_len));
  }

  // A DER ECDSA signature over a SHA-256 or SHA-384 digest, made in the TPM.
  Result<Bytes> SignDigest(ByteView hash) const override {
    const EVP_MD* md = hash.size() == 48 ? ossl::Sha384Md() : ossl::Sha256Md();
    if (hash.size() != 32 && hash.size() != 48) {
      return Fail(Code::kInvalidArgument, "a TPM signs SHA-256 or SHA-384 digests");
    }
    std::lock_guard lock(tpm_->mu);
    auto ctx = ossl::Own(EVP_PKEY_CTX_new_from_pkey(tpm_->lib, key_.get(), kTpm2Only));
    Bytes sig(EVP_PKEY_get_size(key_.get()) + 16);
    size_t len = sig.size();
    if (ctx == nullptr || EVP_PKEY_sign_init(ctx.get()) != 1 ||
        EVP_PKEY_CTX_set_signature_md(ctx.get(), md) != 1 ||
        EVP_PKEY_sign(ctx.get(), sig.data(), &len, hash.data(), hash.size()) != 1) {
      return Fail(TpmError(Code::kUnavailable, "the TPM refused to sign with " + uri_));
    }
    sig.resize(len);
    return sig;
  }

 private:
  Tpm* tpm_;
  ossl::UniquePtr<EVP_PKEY> key_;
  PublicKey public_;
  std::string uri_;
};

int PassphraseCallback(char* buf, int size, int /*rwflag*/, void* u) {
  const auto* pass = static_cast<const std::string*>(u);
  if (pass == nullptr || pass->empty() || static_cast<int>(pass->size()) >= size) return -1;
  std::memcpy(buf, pass->data(), pass->size());
  return static_cast<int>(pass->size());
}

class Tpm2KeyStore final : public KeyStore {
 public:
  explicit Tpm2KeyStore(const KeyStoreOptions& options)
      : passphrase_(options.passphrase), base_dir_(options.base_dir) {}

  std::string_view scheme() const override { return "tpm2"; }

  Result<std::unique_ptr<Signer>> Generate(std::string_view uri, KeyType type) override {
    IOTPKI_TRY(Tpm2Uri parsed, ParseTpm2Uri(uri));
    if (parsed.blob.empty()) {
      return Fail(Code::kInvalidArgument,
                  "a tpm2:handle= key is made by the device's provisioning (tpm2_evictcontrol); "
                  "generate into tpm2:blob=PATH instead");
    }
    if (type != KeyType::kP256 && type != KeyType::kP384) {
      return Fail(Code::kInvalidArgument, "a TPM key is P-256 or P-384");
    }
    fs::path path = PathOf(parsed);
    std::error_code ec;
    if (fs::exists(path, ec)) {
      return Fail(Code::kAlreadyExists,
                  path.string() + " already exists; refusing to overwrite a key");
    }
    IOTPKI_TRY(Tpm * tpm, TheTpm());
    std::string pem;
    ossl::UniquePtr<EVP_PKEY> key;
    {
      std::lock_guard lock(tpm->mu);
      auto ctx = ossl::Own(EVP_PKEY_CTX_new_from_name(tpm->lib, "EC", kTpm2Only));
      std::string group = type == KeyType::kP384 ? "P-384" : "P-256";
      OSSL_PARAM params[3];
      int n = 0;
      params[n++] =
          OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, group.data(), group.size());
      if (!passphrase_.empty()) {
        params[n++] =
            OSSL_PARAM_construct_utf8_string("user-auth", passphrase_.data(), passphrase_.size());
      }
      params[n] = OSSL_PARAM_construct_end();
      EVP_PKEY* raw = nullptr;
      if (ctx == nullptr || EVP_PKEY_keygen_init(ctx.get()) != 1 ||
          EVP_PKEY_CTX_set_params(ctx.get(), params) != 1 ||
          EVP_PKEY_generate(ctx.get(), &raw) != 1) {
        return Fail(TpmError(Code::kUnavailable, "the TPM could not generate a key"));
      }
      key = ossl::Own(raw);
      // The blob: the public part and the private part wrapped by the TPM's storage key, which
      // only this TPM can load again.
      auto enc = ossl::Own(OSSL_ENCODER_CTX_new_for_pkey(key.get(), EVP_PKEY_KEYPAIR, "PEM",
                                                         "PrivateKeyInfo", kTpm2Only));
      unsigned char* out = nullptr;
      size_t out_len = 0;
      if (enc == nullptr || OSSL_ENCODER_CTX_get_num_encoders(enc.get()) == 0 ||
          OSSL_ENCODER_to_data(enc.get(), &out, &out_len) != 1) {
        return Fail(ossl::Drain(Code::kInternal, "cannot encode the TPM key blob"));
      }
      pem.assign(reinterpret_cast<const char*>(out), out_len);
      OPENSSL_free(out);
      // Unloaded from the TPM now: a TPM has room for only a few loaded objects (three in
      // swtpm), and the caller may hold another key open while this one is opened again.
      key.reset();
    }
    IOTPKI_CHECK(WriteFileAtomic(path, pem, 0600));
    // The provider's freshly generated key does not carry its authorization value for use: the
    // key is opened again from the blob, as every later user will, which also checks it.
    return Open(uri);
  }

  Result<std::unique_ptr<Signer>> Open(std::string_view uri) override {
    IOTPKI_TRY(Tpm2Uri parsed, ParseTpm2Uri(uri));
    std::string store_uri;
    std::string canonical;
    if (!parsed.blob.empty()) {
      fs::path path = PathOf(parsed);
      std::error_code ec;
      if (!fs::exists(path, ec)) return Fail(Code::kNotFound, "no TPM key blob " + path.string());
      store_uri = path.string();
      canonical = "tpm2:blob=" + parsed.blob;
    } else {
      char buf[32];
      std::snprintf(buf, sizeof buf, "0x%08x", parsed.handle);
      store_uri = std::string("handle:") + buf;
      canonical = std::string("tpm2:handle=") + buf;
    }
    IOTPKI_TRY(Tpm * tpm, TheTpm());
    ossl::UniquePtr<EVP_PKEY> key;
    {
      std::lock_guard lock(tpm->mu);
      auto ui = ossl::Own(UI_UTIL_wrap_read_pem_callback(PassphraseCallback, 0));
      auto store = ossl::Own(OSSL_STORE_open_ex(store_uri.c_str(), tpm->lib, nullptr, ui.get(),
                                                &passphrase_, nullptr, nullptr, nullptr));
      while (store != nullptr && key == nullptr && !OSSL_STORE_eof(store.get())) {
        auto info = ossl::Own(OSSL_STORE_load(store.get()));
        if (info == nullptr) break;
        if (OSSL_STORE_INFO_get_type(info.get()) == OSSL_STORE_INFO_PKEY) {
          key = ossl::Own(OSSL_STORE_INFO_get1_PKEY(info.get()));
        }
      }
      if (key == nullptr) {
        // A handle the TPM does not have, or a file that is no TPM key.
        return Fail(ossl::Drain(parsed.blob.empty() ? Code::kNotFound : Code::kInvalidArgument,
                                "no TPM key at " + canonical));
      }
      ossl::ClearErrors();
    }
    IOTPKI_TRY(PublicKey pub, PublicOf(key.get()));
    auto signer = std::make_unique<Tpm2Signer>(tpm, std::move(key), std::move(pub), canonical);
    // Loading checks nothing about the key's password: the TPM does, when it signs. One
    // signature now turns a wrong password into Unauthenticated here rather than at first use,
    // and proves the key is this TPM's and matches its public part.
    static constexpr char kProbe[] = "iotpki tpm2 key check";
    IOTPKI_TRY(Bytes sig, signer->Sign(AsBytes(kProbe)));
    if (!signer->public_key().Verify(AsBytes(kProbe), sig, signer->digest())) {
      return Fail(Code::kDataLoss,
                  "the TPM key at " + canonical + " does not match its public key");
    }
    return std::unique_ptr<Signer>(std::move(signer));
  }

  Result<void> Delete(std::string_view uri) override {
    IOTPKI_TRY(Tpm2Uri parsed, ParseTpm2Uri(uri));
    if (parsed.blob.empty()) {
      return Fail(Code::kInvalidArgument,
                  "a tpm2:handle= key is removed by the device's provisioning "
                  "(tpm2_evictcontrol), not by iotpki");
    }
    // The TPM keeps no copy of a blob's key: removing the blob destroys the key.
    fs::path path = PathOf(parsed);
    std::error_code ec;
    if (!fs::remove(path, ec)) {
      if (ec) return Fail(Code::kInternal, "cannot delete " + path.string() + ": " + ec.message());
      return Fail(Code::kNotFound, "no TPM key blob " + path.string());
    }
    return {};
  }

 private:
  fs::path PathOf(const Tpm2Uri& uri) const {
    fs::path path(uri.blob);
    if (path.is_relative() && !base_dir_.empty()) path = base_dir_ / path;
    return path;
  }

  static Result<PublicKey> PublicOf(EVP_PKEY* key) {
    unsigned char* der = nullptr;
    int len = i2d_PUBKEY(key, &der);
    if (len <= 0) return Fail(ossl::Drain(Code::kInternal, "cannot encode a TPM public key"));
    Bytes spki(der, der + len);
    OPENSSL_free(der);
    return PublicKey::FromDer(spki);
  }

  std::string passphrase_;
  fs::path base_dir_;
};

}  // namespace

Result<Tpm2Uri> ParseTpm2Uri(std::string_view uri) {
  auto bad = [&](const std::string& why) -> Error {
    return Error(Code::kInvalidArgument,
                 "bad TPM key URI '" + std::string(uri.substr(0, 120)) + "': " + why +
                     " (expected tpm2:blob=PATH or tpm2:handle=0x81xxxxxx)");
  };
  if (uri.substr(0, 5) != "tpm2:") return Fail(bad("not a tpm2: URI"));
  std::string_view rest = uri.substr(5);
  Tpm2Uri out;
  if (rest.substr(0, 5) == "blob=" && rest.size() > 5) {
    out.blob = std::string(rest.substr(5));
    return out;
  }
  if (rest.substr(0, 7) == "handle=") {
    std::string h(rest.substr(7));
    char* end = nullptr;
    unsigned long v = std::strtoul(h.c_str(), &end, 0);
    // Persistent object handles: 0x81000000-0x81ffffff (TPM 2.0 Part 2, 7.2).
    if (h.empty() || end == nullptr || *end != '\0' || (v >> 24) != 0x81) {
      return Fail(bad("a persistent handle is 0x81000000 to 0x81ffffff"));
    }
    out.handle = static_cast<uint32_t>(v);
    return out;
  }
  return Fail(bad("unknown attribute"));
}

std::unique_ptr<KeyStore> NewTpm2KeyStore(const KeyStoreOptions& options) {
  return std::make_unique<Tpm2KeyStore>(options);
}

}  // namespace iotpki::crypto
