// The key store conformance suite: every store (encrypted files, a SoftHSM2 token, a TPM) passes
// the same typed tests. The token is real: a private SOFTHSM2_CONF and token directory made here,
// the tokens initialised by softhsm2-util, everything removed afterwards. The TPM is swtpm,
// started on a free loopback port by tests/swtpm.sh and stopped afterwards; the TPM tests skip,
// saying so, only where swtpm is not installed.
#include "iotpki/crypto/key_store.h"

#include <gtest/gtest.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "iotpki/common/bytes.h"
#include "iotpki/crypto/ossl.h"
#include "iotpki/crypto/pkcs11_key_store.h"
#include "iotpki/crypto/primitives.h"
#include "iotpki/crypto/signer.h"
#include "iotpki/crypto/tpm2_key_store.h"

namespace iotpki::crypto {
namespace {

namespace fs = std::filesystem;

constexpr char kPin[] = "4711-test";
constexpr char kToken[] = "iotpki-test";
// Initialised but never logged into by the suite: a wrong PIN reaches C_Login.
constexpr char kFreshToken[] = "iotpki-fresh";

// One SoftHSM2 configuration per test process: the module reads SOFTHSM2_CONF once, at
// C_Initialize, and stays loaded.
class SoftHsm : public ::testing::Environment {
 public:
  static const fs::path& dir() { return dir_; }

  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("iotpki-softhsm-" + std::to_string(::getpid()) + "-" + ToHex(RandomBytes(4)));
    fs::create_directories(dir_ / "tokens");
    std::ofstream(dir_ / "softhsm2.conf") << "directories.tokendir = " << (dir_ / "tokens").string()
                                          << "\nobjectstore.backend = file\nlog.level = ERROR\n";
    ::setenv("SOFTHSM2_CONF", (dir_ / "softhsm2.conf").c_str(), 1);
    ::setenv("IOTPKI_PKCS11_PIN", kPin, 1);
    ::unsetenv("IOTPKI_PKCS11_MODULE");
    for (const char* label : {kToken, kFreshToken}) {
      std::string cmd = std::string("softhsm2-util --init-token --free --label ") + label +
                        " --pin " + kPin + " --so-pin 12345678 >/dev/null";
      ASSERT_EQ(std::system(cmd.c_str()), 0) << "softhsm2-util failed (scripts/setup.sh installs "
                                                "softhsm2): "
                                             << cmd;
    }
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

 private:
  static inline fs::path dir_;
};

const auto* const kEnv = ::testing::AddGlobalTestEnvironment(new SoftHsm);

// A persistent key the "device's provisioning" made with tpm2-tools before this process first
// reached the TPM (swtpm serves one connection at a time).
constexpr char kPersistentHandle[] = "0x81000001";

class SwTpm : public ::testing::Environment {
 public:
  static bool available() { return available_; }
  static const std::string& why_not() { return why_not_; }

  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("iotpki-swtpm-" + std::to_string(::getpid()) + "-" + ToHex(RandomBytes(4)));
    std::string script = std::string(IOTPKI_SOURCE_DIR) + "/tests/swtpm.sh";
    int rc = std::system(("bash " + script + " start " + dir_.string() + " >/dev/null").c_str());
    if (WIFEXITED(rc) && WEXITSTATUS(rc) == 3) {
      why_not_ =
          "swtpm is not installed (scripts/setup.sh installs swtpm, tpm2-tools, tpm2-openssl)";
      return;
    }
    ASSERT_EQ(rc, 0) << script << " start failed";
    std::string tcti;
    std::getline(std::ifstream(dir_ / "tcti"), tcti);
    ::setenv("TPM2OPENSSL_TCTI", tcti.c_str(), 1);
    ::setenv("TPM2TOOLS_TCTI", tcti.c_str(), 1);
    std::string d = dir_.string();
    // No resource manager between tpm2-tools and swtpm: transient objects stay loaded until
    // flushed, and the TPM has room for three: flushed after every step.
    std::string make_persistent =
        "cd " + d +
        " && tpm2_createprimary -Q -C o -c primary.ctx && tpm2_flushcontext -t && tpm2_create -Q "
        "-C primary.ctx -G ecc256 -u k.pub -r k.priv && tpm2_flushcontext -t && tpm2_load -Q -C "
        "primary.ctx -u k.pub -r k.priv -c k.ctx && tpm2_flushcontext -t && tpm2_evictcontrol -Q "
        "-C o -c k.ctx " +
        std::string(kPersistentHandle) + " >/dev/null && tpm2_flushcontext -t";
    if (std::system(make_persistent.c_str()) != 0) {
      TearDown();  // gtest does not tear down an environment whose SetUp failed
      FAIL() << make_persistent;
    }
    available_ = true;
  }
  void TearDown() override {
    std::string script = std::string(IOTPKI_SOURCE_DIR) + "/tests/swtpm.sh";
    std::system(("bash " + script + " stop " + dir_.string()).c_str());
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

 private:
  static inline fs::path dir_;
  static inline bool available_ = false;
  static inline std::string why_not_;
};

const auto* const kTpmEnv = ::testing::AddGlobalTestEnvironment(new SwTpm);

std::string Unique(const std::string& name) { return name + "-" + ToHex(RandomBytes(4)); }

// How each store names a new key, and how it is opened with a wrong secret.
struct FileStore {
  static constexpr char kPassphrase[] = "file-store-passphrase";
  KeyStoreOptions options() { return {.passphrase = kPassphrase, .base_dir = SoftHsm::dir()}; }
  KeyStoreOptions wrong_options() {
    return {.passphrase = "not-the-passphrase", .base_dir = SoftHsm::dir()};
  }
  std::string NewUri(const std::string& name) { return "file:" + Unique(name) + ".key"; }
  std::string WrongSecretUri(const std::string& uri) { return uri; }
  static bool Available() { return true; }
};

struct Pkcs11Store {
  KeyStoreOptions options() { return {}; }
  KeyStoreOptions wrong_options() { return {.allow_pin_value = true}; }
  std::string NewUri(const std::string& name) {
    return std::string("pkcs11:token=") + kToken + ";object=" + Unique(name);
  }
  std::string WrongSecretUri(const std::string& uri) { return uri + "?pin-value=0000-wrong"; }
  static bool Available() { return true; }
};

// Key blobs beside the token directory, each key with an authorization value.
struct Tpm2Store {
  KeyStoreOptions options() { return {.passphrase = "tpm-key-auth", .base_dir = SoftHsm::dir()}; }
  KeyStoreOptions wrong_options() {
    return {.passphrase = "not-the-auth", .base_dir = SoftHsm::dir()};
  }
  std::string NewUri(const std::string& name) { return "tpm2:blob=" + Unique(name) + ".tpm"; }
  std::string WrongSecretUri(const std::string& uri) { return uri; }
  static bool Available() { return SwTpm::available(); }
};

template <class T>
class KeyStoreConformance : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!T::Available()) GTEST_SKIP() << SwTpm::why_not();
  }
  std::unique_ptr<KeyStore> Store() {
    auto store = KeyStoreFor(traits_.NewUri("x"), traits_.options());
    EXPECT_TRUE(store) << store.error().ToString();
    return std::move(*store);
  }
  T traits_;
};

using Stores = ::testing::Types<FileStore, Pkcs11Store, Tpm2Store>;
TYPED_TEST_SUITE(KeyStoreConformance, Stores);

TYPED_TEST(KeyStoreConformance, GeneratesOpensSignsVerifies) {
  auto store = this->Store();
  std::string uri = this->traits_.NewUri("sign");
  auto key = store->Generate(uri, KeyType::kP256);
  ASSERT_TRUE(key) << key.error().ToString();
  EXPECT_EQ((*key)->public_key().type(), KeyType::kP256);
  auto sig = (*key)->Sign(AsBytes("to be signed"));
  ASSERT_TRUE(sig) << sig.error().ToString();
  EXPECT_TRUE((*key)->public_key().Verify(AsBytes("to be signed"), *sig, DigestAlgorithm::kSha256));
  EXPECT_FALSE((*key)->public_key().Verify(AsBytes("other data"), *sig, DigestAlgorithm::kSha256));

  // Opened again by the URI the store gave, through the registry as every caller does.
  EXPECT_EQ((*key)->uri().find("pin-value"), std::string::npos);
  auto again = KeyStoreFor((*key)->uri(), this->traits_.options());
  ASSERT_TRUE(again);
  auto opened = (*again)->Open((*key)->uri());
  ASSERT_TRUE(opened) << opened.error().ToString();
  EXPECT_EQ((*opened)->public_key(), (*key)->public_key());
  auto sig2 = (*opened)->Sign(AsBytes("again"));
  ASSERT_TRUE(sig2);
  EXPECT_TRUE((*key)->public_key().Verify(AsBytes("again"), *sig2, DigestAlgorithm::kSha256));
}

TYPED_TEST(KeyStoreConformance, P384SignsWithSha384) {
  auto store = this->Store();
  auto key = store->Generate(this->traits_.NewUri("p384"), KeyType::kP384);
  ASSERT_TRUE(key) << key.error().ToString();
  EXPECT_EQ((*key)->digest(), DigestAlgorithm::kSha384);
  auto sig = (*key)->Sign(AsBytes("data"));
  ASSERT_TRUE(sig);
  EXPECT_TRUE((*key)->public_key().Verify(AsBytes("data"), *sig, DigestAlgorithm::kSha384));
}

TYPED_TEST(KeyStoreConformance, RefusesToOverwriteAKey) {
  auto store = this->Store();
  std::string uri = this->traits_.NewUri("twice");
  auto first = store->Generate(uri, KeyType::kP256);
  ASSERT_TRUE(first);
  auto second = store->Generate(uri, KeyType::kP256);
  ASSERT_FALSE(second);
  EXPECT_EQ(second.error().code(), Code::kAlreadyExists) << second.error().ToString();
  // The first key is untouched.
  auto opened = store->Open((*first)->uri());
  ASSERT_TRUE(opened);
  EXPECT_EQ((*opened)->public_key(), (*first)->public_key());
}

TYPED_TEST(KeyStoreConformance, MissingKeyIsNotFound) {
  auto store = this->Store();
  auto missing = store->Open(this->traits_.NewUri("absent"));
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code(), Code::kNotFound) << missing.error().ToString();
}

TYPED_TEST(KeyStoreConformance, WrongSecretIsUnauthenticated) {
  auto store = this->Store();
  auto key = store->Generate(this->traits_.NewUri("secret"), KeyType::kP256);
  ASSERT_TRUE(key);
  auto wrong_store = KeyStoreFor((*key)->uri(), this->traits_.wrong_options());
  ASSERT_TRUE(wrong_store);
  auto opened = (*wrong_store)->Open(this->traits_.WrongSecretUri((*key)->uri()));
  ASSERT_FALSE(opened);
  EXPECT_EQ(opened.error().code(), Code::kUnauthenticated) << opened.error().ToString();
}

TYPED_TEST(KeyStoreConformance, DeleteRemovesTheKey) {
  auto store = this->Store();
  auto key = store->Generate(this->traits_.NewUri("delete"), KeyType::kP256);
  ASSERT_TRUE(key);
  std::string uri = (*key)->uri();
  ASSERT_TRUE(store->Delete(uri));
  auto opened = store->Open(uri);
  ASSERT_FALSE(opened);
  EXPECT_EQ(opened.error().code(), Code::kNotFound);
  auto again = store->Delete(uri);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code(), Code::kNotFound);
}

TYPED_TEST(KeyStoreConformance, SignsFromSeveralThreads) {
  auto store = this->Store();
  auto key = store->Generate(this->traits_.NewUri("threads"), KeyType::kP256);
  ASSERT_TRUE(key);
  const Signer& signer = **key;
  std::atomic<int> good{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 25; ++i) {
        std::string msg = "thread " + std::to_string(t) + " message " + std::to_string(i);
        auto sig = signer.Sign(AsBytes(msg));
        if (sig && signer.public_key().Verify(AsBytes(msg), *sig, DigestAlgorithm::kSha256)) {
          ++good;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(good.load(), 100);
}

// What TLS does with a client key: sign the handshake through an EVP_PKEY in the default library
// context, where digests and verification stay with the default provider. A file key lends its
// own handle; a token or TPM key its TLS face, whose signatures the store makes.
TYPED_TEST(KeyStoreConformance, TlsKeySignsThroughTheStore) {
  auto store = this->Store();
  for (KeyType type : {KeyType::kP256, KeyType::kP384}) {
    auto key = store->Generate(this->traits_.NewUri("tls"), type);
    ASSERT_TRUE(key) << key.error().ToString();
    auto tls = TlsKeyOf(**key);
    ASSERT_TRUE(tls) << tls.error().ToString();
    const char* md_name = type == KeyType::kP384 ? "SHA384" : "SHA256";
    auto md = ossl::Own(EVP_MD_CTX_new());
    ASSERT_EQ(
        EVP_DigestSignInit_ex(md.get(), nullptr, md_name, nullptr, nullptr, tls->get(), nullptr),
        1);
    uint8_t sig[160];
    size_t len = sizeof sig;
    ASSERT_EQ(EVP_DigestSign(md.get(), sig, &len, reinterpret_cast<const uint8_t*>("hello"), 5), 1);
    EXPECT_TRUE(
        (*key)->public_key().Verify(AsBytes("hello"), ByteView(sig, len), (*key)->digest()));
    if (!(*key)->in_process()) {
      // The face holds no private key OpenSSL could use by itself.
      EXPECT_EQ(EVP_PKEY_get_bn_param(tls->get(), "priv", nullptr), 0);
      // SignDigest signs the digest as given: OpenSSL verifies it as a prehashed digest.
      Bytes digest = Sha256(AsBytes("digest"));
      auto direct = (*key)->SignDigest(digest);
      ASSERT_TRUE(direct) << direct.error().ToString();
      auto vctx = ossl::Own(EVP_PKEY_CTX_new((*key)->public_key().get(), nullptr));
      ASSERT_EQ(EVP_PKEY_verify_init(vctx.get()), 1);
      EXPECT_EQ(
          EVP_PKEY_verify(vctx.get(), direct->data(), direct->size(), digest.data(), digest.size()),
          1);
    }
    ossl::ClearErrors();
  }
}

// ---- PKCS#11 only ----

TEST(Pkcs11Uri, ParsesAndFormatsRfc7512) {
  auto uri = ParsePkcs11Uri(
      "pkcs11:token=My%20CA;object=root;id=%01%ff;type=private?pin-source=file:/run/pin&"
      "module-path=/usr/lib/x.so");
  ASSERT_TRUE(uri) << uri.error().ToString();
  EXPECT_EQ(uri->token, "My CA");
  EXPECT_EQ(uri->object, "root");
  EXPECT_EQ(uri->id, (Bytes{0x01, 0xff}));
  EXPECT_EQ(uri->pin_source, "file:/run/pin");
  EXPECT_EQ(uri->module_path, "/usr/lib/x.so");
  EXPECT_EQ(FormatPkcs11Uri(*uri),
            "pkcs11:token=My%20CA;object=root;id=%01%ff?pin-source=file:/run/pin&"
            "module-path=/usr/lib/x.so");
  auto round = ParsePkcs11Uri(FormatPkcs11Uri(*uri));
  ASSERT_TRUE(round);
  EXPECT_EQ(round->pin_source, "file:/run/pin");

  for (const char* bad : {"pkcs11:token=a;bogus=1", "pkcs11:token=a?pin=1", "pkcs11:token=%4",
                          "pkcs11:token", "file:x"}) {
    auto r = ParsePkcs11Uri(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().code(), Code::kInvalidArgument) << bad;
  }
  EXPECT_EQ(AppendPkcs11Attribute("pkcs11:token=ca?pin-source=file:p", "object=root"),
            "pkcs11:token=ca;object=root?pin-source=file:p");
}

TEST(Pkcs11Store, RefusesPinValueOutsideTests) {
  auto store = NewPkcs11KeyStore({});
  auto key = store->Open(std::string("pkcs11:token=") + kToken + ";object=x?pin-value=" + kPin);
  ASSERT_FALSE(key);
  EXPECT_EQ(key.error().code(), Code::kInvalidArgument);
  EXPECT_NE(key.error().message().find("IOTPKI_PKCS11_PIN"), std::string::npos);
  // And the PIN does not appear in the error.
  EXPECT_EQ(key.error().ToString().find(kPin), std::string::npos);
}

TEST(Pkcs11Store, WrongPinAtLoginIsUnauthenticated) {
  auto store = NewPkcs11KeyStore({.allow_pin_value = true});
  auto key =
      store->Open(std::string("pkcs11:token=") + kFreshToken + ";object=x?pin-value=0000-wrong");
  ASSERT_FALSE(key);
  EXPECT_EQ(key.error().code(), Code::kUnauthenticated) << key.error().ToString();
  EXPECT_EQ(key.error().ToString().find("0000-wrong"), std::string::npos);
}

TEST(Pkcs11Store, MissingTokenOrModuleIsAClearError) {
  auto store = NewPkcs11KeyStore({});
  auto token = store->Open("pkcs11:token=no-such-token;object=x");
  ASSERT_FALSE(token);
  // Not NotFound, which callers read as "no such key in the token".
  EXPECT_EQ(token.error().code(), Code::kFailedPrecondition);
  EXPECT_NE(token.error().message().find("no-such-token"), std::string::npos);

  auto module = NewPkcs11KeyStore({.pkcs11_module = "/nonexistent/libpkcs11.so"})
                    ->Open(std::string("pkcs11:token=") + kToken + ";object=x");
  ASSERT_FALSE(module);
  EXPECT_EQ(module.error().code(), Code::kFailedPrecondition);

  auto no_label = store->Generate(std::string("pkcs11:token=") + kToken, KeyType::kP256);
  ASSERT_FALSE(no_label);
  EXPECT_EQ(no_label.error().code(), Code::kInvalidArgument);
}

TEST(Pkcs11Store, PinFromPinSourceFile) {
  fs::path pin_file = SoftHsm::dir() / "pin.txt";
  std::ofstream(pin_file) << kPin << "\n";
  auto store = NewPkcs11KeyStore({});
  auto key =
      store->Generate(std::string("pkcs11:token=") + kToken + ";object=" + Unique("pinfile") +
                          "?pin-source=file:" + pin_file.string(),
                      KeyType::kP256);
  ASSERT_TRUE(key) << key.error().ToString();
  EXPECT_NE((*key)->uri().find("pin-source="), std::string::npos);
  EXPECT_FALSE((*key)->in_process());
  // A token key has no OpenSSL handle: nothing in this process holds its bytes.
  EXPECT_EQ(OpenSslHandle(**key), nullptr);
}

TEST(Pkcs11Store, StoresACertificateBesideTheKey) {
  auto store = NewPkcs11KeyStore({});
  auto key = store->Generate(std::string("pkcs11:token=") + kToken + ";object=" + Unique("cert"),
                             KeyType::kP256);
  ASSERT_TRUE(key);
  // A minimal self-signed certificate made with OpenSSL (the x509 layer sits above this one).
  auto ca = PrivateKey::Generate(KeyType::kP256);
  ASSERT_TRUE(ca);
  auto x = ossl::Own(X509_new());
  X509_NAME* name = X509_get_subject_name(x.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("device"), -1, -1, 0);
  X509_set_issuer_name(x.get(), name);
  ASN1_INTEGER_set(X509_get_serialNumber(x.get()), 7);
  X509_gmtime_adj(X509_getm_notBefore(x.get()), 0);
  X509_gmtime_adj(X509_getm_notAfter(x.get()), 3600);
  X509_set_pubkey(x.get(), ca->handle());
  ASSERT_GT(X509_sign(x.get(), ca->handle(), EVP_sha256()), 0);
  Bytes der = ossl::ToDer(x.get(), i2d_X509);
  auto stored = StorePkcs11Certificate((*key)->uri(), der, {});
  ASSERT_TRUE(stored) << stored.error().ToString();
  // Again (a resumed batch): nothing changes. Another certificate for the key: refused.
  ASSERT_TRUE(StorePkcs11Certificate((*key)->uri(), der, {}));
  ASN1_INTEGER_set(X509_get_serialNumber(x.get()), 8);
  ASSERT_GT(X509_sign(x.get(), ca->handle(), EVP_sha256()), 0);
  auto other = StorePkcs11Certificate((*key)->uri(), ossl::ToDer(x.get(), i2d_X509), {});
  ASSERT_FALSE(other);
  EXPECT_EQ(other.error().code(), Code::kAlreadyExists);
  auto not_a_cert = StorePkcs11Certificate((*key)->uri(), Bytes{0x30, 0x00}, {});
  ASSERT_FALSE(not_a_cert);
  EXPECT_EQ(not_a_cert.error().code(), Code::kInvalidArgument);
  // Delete takes the certificate with the key.
  ASSERT_TRUE(store->Delete((*key)->uri()));
}

// ---- TPM 2.0 only ----

TEST(Tpm2Uri, ParsesBlobAndPersistentHandle) {
  auto blob = ParseTpm2Uri("tpm2:blob=keys/device.tpm");
  ASSERT_TRUE(blob) << blob.error().ToString();
  EXPECT_EQ(blob->blob, "keys/device.tpm");
  auto handle = ParseTpm2Uri("tpm2:handle=0x81000001");
  ASSERT_TRUE(handle);
  EXPECT_EQ(handle->handle, 0x81000001u);
  for (const char* bad : {"tpm2:", "tpm2:blob=", "tpm2:handle=", "tpm2:handle=0x80000001",
                          "tpm2:handle=0x81zz", "tpm2:path=x", "pkcs11:token=a"}) {
    auto r = ParseTpm2Uri(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().code(), Code::kInvalidArgument) << bad;
    EXPECT_NE(r.error().message().find("tpm2:blob=PATH"), std::string::npos);
  }
}

class Tpm2StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!SwTpm::available()) GTEST_SKIP() << SwTpm::why_not();
  }
};

TEST_F(Tpm2StoreTest, BlobOnDiskIsWrappedByTheTpm) {
  auto store = NewTpm2KeyStore({.base_dir = SoftHsm::dir()});
  std::string name = Unique("wrapped") + ".tpm";
  auto key = store->Generate("tpm2:blob=" + name, KeyType::kP256);
  ASSERT_TRUE(key) << key.error().ToString();
  EXPECT_EQ((*key)->uri(), "tpm2:blob=" + name);
  EXPECT_FALSE((*key)->in_process());
  fs::path path = SoftHsm::dir() / name;
  EXPECT_EQ(fs::status(path).permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write);
  std::ifstream in(path);
  std::string pem((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // Only the TPM's wrapped form: OpenSSL cannot read a private key from it.
  EXPECT_EQ(pem.rfind("-----BEGIN TSS2 PRIVATE KEY-----", 0), 0u) << pem;
  auto bio = ossl::Own(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  EXPECT_EQ(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr), nullptr);
  ossl::ClearErrors();
}

TEST_F(Tpm2StoreTest, PersistentHandleOpensButIsNotMadeOrRemovedHere) {
  auto store = NewTpm2KeyStore({});
  std::string uri = std::string("tpm2:handle=") + kPersistentHandle;
  auto key = store->Open(uri);
  ASSERT_TRUE(key) << key.error().ToString();
  EXPECT_EQ((*key)->uri(), uri);
  EXPECT_EQ((*key)->public_key().type(), KeyType::kP256);
  auto sig = (*key)->Sign(AsBytes("persistent"));
  ASSERT_TRUE(sig);
  EXPECT_TRUE((*key)->public_key().Verify(AsBytes("persistent"), *sig, DigestAlgorithm::kSha256));

  auto missing = store->Open("tpm2:handle=0x81000077");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code(), Code::kNotFound) << missing.error().ToString();
  auto generate = store->Generate("tpm2:handle=0x81000002", KeyType::kP256);
  ASSERT_FALSE(generate);
  EXPECT_EQ(generate.error().code(), Code::kInvalidArgument);
  auto remove = store->Delete(uri);
  ASSERT_FALSE(remove);
  EXPECT_EQ(remove.error().code(), Code::kInvalidArgument);
}

}  // namespace
}  // namespace iotpki::crypto
