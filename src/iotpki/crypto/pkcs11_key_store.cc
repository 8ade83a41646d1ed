#include "iotpki/crypto/pkcs11_key_store.h"

#include <dlfcn.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include <atomic>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "iotpki/common/file.h"
#include "iotpki/crypto/ossl.h"
#include "iotpki/crypto/primitives.h"

// Last: the header's compatibility macros (value, type, count, ...) are undefined at its end.
#include <p11-kit/pkcs11.h>

namespace iotpki::crypto {
namespace {

// DER of the namedCurve OIDs, as CKA_EC_PARAMS holds them.
const Bytes kP256Params = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
const Bytes kP384Params = {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22};

std::string RvName(CK_RV rv) {
  switch (rv) {
    case CKR_PIN_INCORRECT:
      return "CKR_PIN_INCORRECT";
    case CKR_PIN_LOCKED:
      return "CKR_PIN_LOCKED";
    case CKR_DEVICE_MEMORY:
      return "CKR_DEVICE_MEMORY";
    case CKR_DEVICE_ERROR:
      return "CKR_DEVICE_ERROR";
    case CKR_DEVICE_REMOVED:
      return "CKR_DEVICE_REMOVED";
    case CKR_TOKEN_NOT_PRESENT:
      return "CKR_TOKEN_NOT_PRESENT";
    case CKR_SESSION_CLOSED:
      return "CKR_SESSION_CLOSED";
    case CKR_SESSION_HANDLE_INVALID:
      return "CKR_SESSION_HANDLE_INVALID";
    case CKR_USER_NOT_LOGGED_IN:
      return "CKR_USER_NOT_LOGGED_IN";
    case CKR_MECHANISM_INVALID:
      return "CKR_MECHANISM_INVALID";
    case CKR_FUNCTION_FAILED:
      return "CKR_FUNCTION_FAILED";
    case CKR_GENERAL_ERROR:
      return "CKR_GENERAL_ERROR";
    default: {
      char buf[32];
      std::snprintf(buf, sizeof buf, "CKR 0x%lx", static_cast<unsigned long>(rv));
      return buf;
    }
  }
}

// Maps a PKCS#11 return value to our codes: a token that went away or a session that closed is
// Unavailable (the batch stops; --resume completes it), a full token ResourceExhausted.
Error P11Error(CK_RV rv, const std::string& what) {
  Code code = Code::kInternal;
  switch (rv) {
    case CKR_PIN_INCORRECT:
    case CKR_PIN_LEN_RANGE:
    case CKR_USER_NOT_LOGGED_IN:
      code = Code::kUnauthenticated;
      break;
    case CKR_PIN_LOCKED:
    case CKR_PIN_EXPIRED:
      code = Code::kPermissionDenied;
      break;
    case CKR_DEVICE_MEMORY:
    case CKR_HOST_MEMORY:
      code = Code::kResourceExhausted;
      break;
    case CKR_DEVICE_ERROR:
    case CKR_DEVICE_REMOVED:
    case CKR_TOKEN_NOT_PRESENT:
    case CKR_SESSION_CLOSED:
    case CKR_SESSION_HANDLE_INVALID:
    case CKR_CRYPTOKI_NOT_INITIALIZED:
      code = Code::kUnavailable;
      break;
    default:
      break;
  }
  return Error(code, what, RvName(rv));
}

#ifdef IOTPKI_PKCS11_TEST_HOOKS
// Test builds only (CMake option IOTPKI_PKCS11_TEST_HOOKS): IOTPKI_TEST_PKCS11_REMOVE_AFTER=N
// makes the token "go away" after N signatures of this process: every later C_Sign fails with
// CKR_DEVICE_REMOVED, as a pulled USB token or a lost network HSM does (tests/
// hsm_batch_fault_test.sh). Unset, or in other builds, nothing changes.
CK_RV InjectedSignFault() {
  static const long limit = [] {
    const char* v = std::getenv("IOTPKI_TEST_PKCS11_REMOVE_AFTER");
    return v != nullptr && *v != '\0' ? std::strtol(v, nullptr, 10) : -1L;
  }();
  static std::atomic<long> signatures{0};
  if (limit < 0) return CKR_OK;
  return signatures.fetch_add(1) >= limit ? CKR_DEVICE_REMOVED : CKR_OK;
}
#else
CK_RV InjectedSignFault() { return CKR_OK; }
#endif

bool SessionBroken(CK_RV rv) {
  return rv == CKR_SESSION_CLOSED || rv == CKR_SESSION_HANDLE_INVALID || rv == CKR_DEVICE_REMOVED ||
         rv == CKR_TOKEN_NOT_PRESENT || rv == CKR_DEVICE_ERROR;
}

// ---- URIs (RFC 7512) ----

bool Unreserved(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_' || c == '~';
}

std::string PercentEncode(ByteView bytes, bool all) {
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  for (uint8_t c : bytes) {
    if (!all && (Unreserved(c) || c == '/' || c == ':')) {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

Result<std::string> PercentDecode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out += s[i];
      continue;
    }
    if (i + 2 >= s.size()) {
      return Fail(Code::kInvalidArgument, "truncated %-escape in a pkcs11: URI");
    }
    auto byte = FromHex(s.substr(i + 1, 2));
    if (!byte || byte->size() != 1) {
      return Fail(Code::kInvalidArgument, "bad %-escape in a pkcs11: URI");
    }
    out += static_cast<char>((*byte)[0]);
    i += 2;
  }
  return out;
}

// ---- modules ----

struct Module {
  std::string path;
  void* library = nullptr;
  CK_FUNCTION_LIST_PTR f = nullptr;
};

// One module per path for the life of the process: C_Initialize may run only once, and
// unloading a module while another thread signs would pull the code from under it.
Result<std::shared_ptr<Module>> LoadModule(const std::string& path) {
  static std::mutex mu;
  static auto* modules = new std::map<std::string, std::shared_ptr<Module>>;
  std::lock_guard lock(mu);
  auto it = modules->find(path);
  if (it != modules->end()) return it->second;
  void* lib = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr) {
    return Fail(Code::kFailedPrecondition,
                "cannot load the PKCS#11 module " + path +
                    " (install it, or name another with IOTPKI_PKCS11_MODULE or module-path=)");
  }
  auto get_list = reinterpret_cast<CK_C_GetFunctionList>(dlsym(lib, "C_GetFunctionList"));
  CK_FUNCTION_LIST_PTR f = nullptr;
  if (get_list == nullptr || get_list(&f) != CKR_OK || f == nullptr) {
    dlclose(lib);
    return Fail(Code::kFailedPrecondition, path + " is not a PKCS#11 module");
  }
  CK_C_INITIALIZE_ARGS args{};
  args.flags = CKF_OS_LOCKING_OK;
  CK_RV rv = f->C_Initialize(&args);
  if (rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED) {
    dlclose(lib);
    return Fail(P11Error(rv, "cannot initialise the PKCS#11 module " + path));
  }
  auto module = std::make_shared<Module>(Module{path, lib, f});
  (*modules)[path] = module;
  return module;
}

// ---- tokens and sessions ----

class Token;

// A session borrowed from a token's pool; back to the pool when dropped, closed if it broke.
class Session {
 public:
  Session(std::shared_ptr<Token> token, CK_SESSION_HANDLE h) : token_(std::move(token)), h_(h) {}
  Session(Session&& o) noexcept : token_(std::move(o.token_)), h_(o.h_) { o.h_ = 0; }
  Session& operator=(Session&&) = delete;
  ~Session();
  CK_SESSION_HANDLE get() const { return h_; }
  CK_FUNCTION_LIST_PTR f() const;
  // Records the return value: a session that broke is closed instead of pooled.
  CK_RV Check(CK_RV rv) {
    if (SessionBroken(rv)) broken_ = true;
    return rv;
  }

 private:
  std::shared_ptr<Token> token_;
  CK_SESSION_HANDLE h_;
  bool broken_ = false;
};

// A token found in a module, logged in once. A PKCS#11 session is not safe for concurrent use,
// so each operation borrows a session of its own from the pool (in steady state one per
// signing thread); the login is the application's, shared by every session.
class Token : public std::enable_shared_from_this<Token> {
 public:
  Token(std::shared_ptr<Module> module, CK_SLOT_ID slot, std::string label)
      : module_(std::move(module)), slot_(slot), label_(std::move(label)) {}

  const std::string& label() const { return label_; }
  const std::string& module_path() const { return module_->path; }
  CK_FUNCTION_LIST_PTR f() const { return module_->f; }

  Result<Session> Acquire() {
    {
      std::lock_guard lock(mu_);
      if (!idle_.empty()) {
        CK_SESSION_HANDLE h = idle_.back();
        idle_.pop_back();
        return Session(shared_from_this(), h);
      }
    }
    CK_SESSION_HANDLE h = 0;
    CK_RV rv = f()->C_OpenSession(slot_, CKF_SERIAL_SESSION | CKF_RW_SESSION, nullptr, nullptr, &h);
    if (rv != CKR_OK) {
      return Fail(P11Error(rv, "cannot open a session on PKCS#11 token '" + label_ + "'"));
    }
    return Session(shared_from_this(), h);
  }

  void Release(CK_SESSION_HANDLE h, bool broken) {
    if (broken) {
      f()->C_CloseSession(h);
      return;
    }
    std::lock_guard lock(mu_);
    idle_.push_back(h);
  }

  // Logs in with `pin` unless this process already did; a later caller must know the same PIN
  // (compared as SHA-256, in constant time): PKCS#11 logs in the whole application, so without
  // this check any PIN would open a token someone else unlocked.
  Result<void> Login(std::string_view pin) {
    Bytes hash = Sha256(ByteView(reinterpret_cast<const uint8_t*>(pin.data()), pin.size()));
    std::lock_guard lock(login_mu_);
    if (!pin_hash_.empty()) {
      if (CRYPTO_memcmp(hash.data(), pin_hash_.data(), hash.size()) != 0) {
        return Fail(Code::kUnauthenticated, "wrong PIN for PKCS#11 token '" + label_ + "'");
      }
      return {};
    }
    IOTPKI_TRY(Session s, Acquire());
    CK_RV rv = s.Check(
        f()->C_Login(s.get(), CKU_USER,
                     reinterpret_cast<CK_UTF8CHAR_PTR>(const_cast<char*>(pin.data())), pin.size()));
    if (rv == CKR_PIN_INCORRECT || rv == CKR_PIN_LEN_RANGE) {
      return Fail(Code::kUnauthenticated, "wrong PIN for PKCS#11 token '" + label_ + "'");
    }
    if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN) {
      return Fail(P11Error(rv, "cannot log in to PKCS#11 token '" + label_ + "'"));
    }
    pin_hash_ = std::move(hash);
    return {};
  }

 private:
  std::shared_ptr<Module> module_;
  CK_SLOT_ID slot_;
  std::string label_;
  std::mutex mu_;
  std::vector<CK_SESSION_HANDLE> idle_;
  std::mutex login_mu_;
  Bytes pin_hash_;
};

Session::~Session() {
  if (token_ != nullptr) token_->Release(h_, broken_);
}
CK_FUNCTION_LIST_PTR Session::f() const { return token_->f(); }

std::string Trim(const unsigned char* s, size_t n) {
  std::string out(reinterpret_cast<const char*>(s), n);
  while (!out.empty() && (out.back() == ' ' || out.back() == '\0')) out.pop_back();
  return out;
}

// The token labelled `label` in `module`, shared by every key of the process.
Result<std::shared_ptr<Token>> FindToken(const std::shared_ptr<Module>& module,
                                         const std::string& label) {
  static std::mutex mu;
  static auto* tokens = new std::map<std::pair<std::string, std::string>, std::shared_ptr<Token>>;
  std::lock_guard lock(mu);
  auto key = std::pair{module->path, label};
  auto it = tokens->find(key);
  if (it != tokens->end()) return it->second;
  CK_ULONG count = 0;
  CK_RV rv = module->f->C_GetSlotList(CK_TRUE, nullptr, &count);
  std::vector<CK_SLOT_ID> slots(count);
  if (rv == CKR_OK && count > 0) rv = module->f->C_GetSlotList(CK_TRUE, slots.data(), &count);
  if (rv != CKR_OK) return Fail(P11Error(rv, "cannot list the slots of " + module->path));
  slots.resize(count);
  for (CK_SLOT_ID slot : slots) {
    CK_TOKEN_INFO info{};
    if (module->f->C_GetTokenInfo(slot, &info) != CKR_OK) continue;
    if (Trim(info.label, sizeof info.label) != label) continue;
    if (!(info.flags & CKF_TOKEN_INITIALIZED)) {
      return Fail(Code::kFailedPrecondition, "PKCS#11 token '" + label + "' is not initialised");
    }
    auto token = std::make_shared<Token>(module, slot, label);
    (*tokens)[key] = token;
    return token;
  }
  // FailedPrecondition, not NotFound: NotFound means "no such key" to callers that probe for one.
  return Fail(Code::kFailedPrecondition,
              "no PKCS#11 token labelled '" + label + "' in " + module->path +
                  " (list them with pkcs11-tool --module " + module->path + " -L)");
}

// ---- objects ----

Result<std::vector<CK_OBJECT_HANDLE>> FindObjects(Session& s, CK_OBJECT_CLASS cls,
                                                  const std::string& label, const Bytes& id) {
  std::vector<CK_ATTRIBUTE> tmpl;
  tmpl.push_back({CKA_CLASS, &cls, sizeof cls});
  if (!label.empty()) {
    tmpl.push_back({CKA_LABEL, const_cast<char*>(label.data()), label.size()});
  }
  if (!id.empty()) tmpl.push_back({CKA_ID, const_cast<uint8_t*>(id.data()), id.size()});
  CK_RV rv = s.Check(s.f()->C_FindObjectsInit(s.get(), tmpl.data(), tmpl.size()));
  if (rv != CKR_OK) return Fail(P11Error(rv, "cannot search the PKCS#11 token"));
  std::vector<CK_OBJECT_HANDLE> out;
  CK_OBJECT_HANDLE batch[16];
  CK_ULONG n = 0;
  do {
    rv = s.Check(s.f()->C_FindObjects(s.get(), batch, 16, &n));
    if (rv != CKR_OK) break;
    out.insert(out.end(), batch, batch + n);
  } while (n == 16);
  s.f()->C_FindObjectsFinal(s.get());
  if (rv != CKR_OK) return Fail(P11Error(rv, "cannot search the PKCS#11 token"));
  return out;
}

Result<Bytes> GetAttribute(Session& s, CK_OBJECT_HANDLE obj, CK_ATTRIBUTE_TYPE type) {
  CK_ATTRIBUTE a{type, nullptr, 0};
  CK_RV rv = s.Check(s.f()->C_GetAttributeValue(s.get(), obj, &a, 1));
  if (rv != CKR_OK || a.ulValueLen == CK_UNAVAILABLE_INFORMATION) {
    return Fail(P11Error(rv, "cannot read a key attribute from the PKCS#11 token"));
  }
  Bytes out(a.ulValueLen);
  a.pValue = out.data();
  rv = s.Check(s.f()->C_GetAttributeValue(s.get(), obj, &a, 1));
  if (rv != CKR_OK) return Fail(P11Error(rv, "cannot read a key attribute from the PKCS#11 token"));
  out.resize(a.ulValueLen);
  return out;
}

// The public key of a token key pair, from the public object's CKA_EC_PARAMS and CKA_EC_POINT.
Result<PublicKey> ReadPublicKey(Session& s, CK_OBJECT_HANDLE pub) {
  IOTPKI_TRY(Bytes params, GetAttribute(s, pub, CKA_EC_PARAMS));
  IOTPKI_TRY(Bytes point, GetAttribute(s, pub, CKA_EC_POINT));
  KeyType type;
  size_t raw_len;
  if (params == kP256Params) {
    type = KeyType::kP256;
    raw_len = 65;
  } else if (params == kP384Params) {
    type = KeyType::kP384;
    raw_len = 97;
  } else {
    return Fail(Code::kFailedPrecondition, "the token key is not a P-256 or P-384 EC key");
  }
  // CKA_EC_POINT is a DER OCTET STRING holding the point; some modules give the bare point.
  if (point.size() == raw_len + 2 && point[0] == 0x04 && point[1] == raw_len) {
    point.erase(point.begin(), point.begin() + 2);
  }
  if (point.size() != raw_len) return Fail(Code::kDataLoss, "the token's EC point is malformed");
  return PublicKey::FromDer(EncodeEcSpki(type, point));
}

struct KeyObjects {
  CK_OBJECT_HANDLE priv = 0;
  CK_OBJECT_HANDLE pub = 0;
  Bytes id;
};

Result<KeyObjects> FindKey(Session& s, const Pkcs11Uri& uri, const std::string& token) {
  if (uri.object.empty() && uri.id.empty()) {
    return Fail(Code::kInvalidArgument, "a pkcs11: key URI needs object= (the label) or id=");
  }
  IOTPKI_TRY(auto privs, FindObjects(s, CKO_PRIVATE_KEY, uri.object, uri.id));
  std::string name = uri.object.empty() ? "id " + ToHex(uri.id) : "'" + uri.object + "'";
  if (privs.empty()) {
    return Fail(Code::kNotFound, "no private key " + name + " in PKCS#11 token '" + token + "'");
  }
  if (privs.size() > 1) {
    return Fail(Code::kInvalidArgument, "several private keys " + name + " in PKCS#11 token '" +
                                            token + "'; name one with id=");
  }
  KeyObjects k;
  k.priv = privs[0];
  IOTPKI_TRY(k.id, GetAttribute(s, k.priv, CKA_ID));
  IOTPKI_TRY(auto pubs, FindObjects(s, CKO_PUBLIC_KEY, "", k.id));
  if (pubs.size() != 1) {
    return Fail(Code::kFailedPrecondition,
                "the private key " + name + " has no single public key with its CKA_ID");
  }
  k.pub = pubs[0];
  return k;
}

// r||s (fixed width) from C_Sign with CKM_ECDSA, as the DER SEQUENCE{r, s} X.509 carries.
Result<Bytes> RawToDer(ByteView raw) {
  if (raw.empty() || raw.size() % 2 != 0) {
    return Fail(Code::kInternal, "the token returned a malformed ECDSA signature");
  }
  size_t half = raw.size() / 2;
  auto sig = ossl::Own(ECDSA_SIG_new());
  BIGNUM* r = BN_bin2bn(raw.data(), static_cast<int>(half), nullptr);
  BIGNUM* s = BN_bin2bn(raw.data() + half, static_cast<int>(half), nullptr);
  if (!sig || r == nullptr || s == nullptr || ECDSA_SIG_set0(sig.get(), r, s) != 1) {
    BN_free(r);
    BN_free(s);
    return Fail(ossl::Drain(Code::kInternal, "cannot encode an ECDSA signature"));
  }
  return ossl::ToDer(sig.get(), i2d_ECDSA_SIG);
}

class Pkcs11Signer final : public Signer {
 public:
  Pkcs11Signer(std::shared_ptr<Token> token, CK_OBJECT_HANDLE key, PublicKey pub, std::string uri)
      : token_(std::move(token)), key_(key), public_(std::move(pub)), uri_(std::move(uri)) {}

  const PublicKey& public_key() const override { return public_; }
  std::string uri() const override { return uri_; }

  Result<Bytes> Sign(ByteView data) const override {
    const EVP_MD* md = digest() == DigestAlgorithm::kSha384 ? ossl::Sha384Md() : ossl::Sha256Md();
    uint8_t hash[EVP_MAX_MD_SIZE];
    unsigned int hash_len = 0;
    if (EVP_Digest(data.data(), data.size(), hash, &hash_len, md, nullptr) != 1) {
      return Fail(ossl::Drain(Code::kInternal, "hashing for a token signature failed"));
    }
    return SignDigest(ByteView(hash, hash_len));
  }

  // CKM_ECDSA signs the digest as given (the token truncates it to the curve's order size).
  Result<Bytes> SignDigest(ByteView hash) const override {
    if (hash.empty() || hash.size() > 64) {
      return Fail(Code::kInvalidArgument, "a token signs digests of 1 to 64 bytes");
    }
    IOTPKI_TRY(Session s, token_->Acquire());
    CK_MECHANISM mech{CKM_ECDSA, nullptr, 0};
    CK_RV rv = s.Check(InjectedSignFault());
    if (rv == CKR_OK) rv = s.Check(s.f()->C_SignInit(s.get(), &mech, key_));
    uint8_t raw[2 * 66];
    CK_ULONG raw_len = sizeof raw;
    if (rv == CKR_OK) {
      rv = s.Check(
          s.f()->C_Sign(s.get(), const_cast<uint8_t*>(hash.data()), hash.size(), raw, &raw_len));
    }
    if (SessionBroken(rv)) {
      // The token or its session went away (unplugged, HSM fail-over, module error): Unavailable,
      // so that a batch stops and a request gets a 5xx; this process must restart to log in again.
      return Fail(P11Error(rv, "PKCS#11 token '" + token_->label() +
                                   "' went away while signing (reconnect it, then restart or "
                                   "--resume)"));
    }
    if (rv != CKR_OK) {
      return Fail(P11Error(rv, "PKCS#11 token '" + token_->label() + "' refused to sign"));
    }
    return RawToDer(ByteView(raw, raw_len));
  }

 private:
  std::shared_ptr<Token> token_;
  CK_OBJECT_HANDLE key_;
  PublicKey public_;
  std::string uri_;
};

Result<std::string> ReadPin(const Pkcs11Uri& uri, const KeyStoreOptions& options) {
  if (!uri.pin_value.empty()) {
    if (!options.allow_pin_value) {
      return Fail(Code::kInvalidArgument,
                  "pin-value in a pkcs11: URI is refused (it ends up in files and shell "
                  "history): set IOTPKI_PKCS11_PIN or use pin-source=file:PATH");
    }
    return uri.pin_value;
  }
  if (!uri.pin_source.empty()) {
    if (uri.pin_source.substr(0, 5) != "file:") {
      return Fail(Code::kInvalidArgument, "pin-source must be file:PATH");
    }
    auto text = ReadTextFile(uri.pin_source.substr(5), 4096);
    if (!text) return Fail(std::move(text).error().Context("reading the PKCS#11 pin-source"));
    std::string pin = text->substr(0, text->find_first_of("\r\n"));
    OPENSSL_cleanse(text->data(), text->size());
    if (pin.empty()) return Fail(Code::kInvalidArgument, "the pin-source file is empty");
    return pin;
  }
  if (const char* env = std::getenv("IOTPKI_PKCS11_PIN"); env != nullptr && *env != '\0') {
    return std::string(env);
  }
  return Fail(Code::kFailedPrecondition,
              "no PIN for PKCS#11 token '" + uri.token +
                  "': set IOTPKI_PKCS11_PIN or add ?pin-source=file:PATH to the key URI");
}

class Pkcs11KeyStore final : public KeyStore {
 public:
  explicit Pkcs11KeyStore(const KeyStoreOptions& options) : options_(options) {
    options_.passphrase = {};
  }

  std::string_view scheme() const override { return "pkcs11"; }

  Result<std::unique_ptr<Signer>> Generate(std::string_view uri_text, KeyType type) override {
    IOTPKI_TRY(Pkcs11Uri uri, ParsePkcs11Uri(uri_text));
    if (uri.object.empty()) {
      return Fail(Code::kInvalidArgument,
                  "a new token key needs a label: add object=NAME to the pkcs11: URI");
    }
    const Bytes* params = type == KeyType::kP256   ? &kP256Params
                          : type == KeyType::kP384 ? &kP384Params
                                                   : nullptr;
    if (params == nullptr) {
      return Fail(Code::kInvalidArgument, "token keys are P-256 or P-384 EC keys");
    }
    IOTPKI_TRY(auto token, Unlock(uri));
    IOTPKI_TRY(Session s, token->Acquire());
    for (CK_OBJECT_CLASS cls : {CKO_PRIVATE_KEY, CKO_PUBLIC_KEY, CKO_CERTIFICATE}) {
      IOTPKI_TRY(auto found, FindObjects(s, cls, uri.object, {}));
      if (!found.empty()) {
        return Fail(Code::kAlreadyExists, "PKCS#11 token '" + uri.token +
                                              "' already holds an object labelled '" + uri.object +
                                              "'; choose another label");
      }
    }
    if (uri.id.empty()) uri.id = RandomBytes(8);
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_ATTRIBUTE pub_tmpl[] = {
        {CKA_TOKEN, &yes, sizeof yes},
        {CKA_PRIVATE, &no, sizeof no},
        {CKA_VERIFY, &yes, sizeof yes},
        {CKA_ENCRYPT, &no, sizeof no},
        {CKA_WRAP, &no, sizeof no},
        {CKA_EC_PARAMS, const_cast<uint8_t*>(params->data()), params->size()},
        {CKA_LABEL, uri.object.data(), uri.object.size()},
        {CKA_ID, uri.id.data(), uri.id.size()},
    };
    // The private half never leaves the token: sensitive (no CKA_VALUE read), not extractable
    // (no wrapping), a token object (survives the session), usable only to sign.
    CK_ATTRIBUTE priv_tmpl[] = {
        {CKA_TOKEN, &yes, sizeof yes},          {CKA_PRIVATE, &yes, sizeof yes},
        {CKA_SENSITIVE, &yes, sizeof yes},      {CKA_EXTRACTABLE, &no, sizeof no},
        {CKA_SIGN, &yes, sizeof yes},           {CKA_DECRYPT, &no, sizeof no},
        {CKA_DERIVE, &no, sizeof no},           {CKA_LABEL, uri.object.data(), uri.object.size()},
        {CKA_ID, uri.id.data(), uri.id.size()},
    };
    CK_MECHANISM mech{CKM_EC_KEY_PAIR_GEN, nullptr, 0};
    CK_OBJECT_HANDLE pub = 0, priv = 0;
    CK_RV rv = s.Check(s.f()->C_GenerateKeyPair(s.get(), &mech, pub_tmpl, std::size(pub_tmpl),
                                                priv_tmpl, std::size(priv_tmpl), &pub, &priv));
    if (rv == CKR_DEVICE_MEMORY) {
      return Fail(Code::kResourceExhausted,
                  "PKCS#11 token '" + uri.token + "' is full (CKR_DEVICE_MEMORY); free or add one");
    }
    if (rv != CKR_OK) {
      return Fail(P11Error(rv, "PKCS#11 token '" + uri.token + "' could not generate a key"));
    }
    auto pk = ReadPublicKey(s, pub);
    if (!pk) {
      s.f()->C_DestroyObject(s.get(), priv);
      s.f()->C_DestroyObject(s.get(), pub);
      return Fail(std::move(pk).error());
    }
    uri.pin_value.clear();
    return std::unique_ptr<Signer>(new Pkcs11Signer(token, priv, *pk, FormatPkcs11Uri(uri)));
  }

  Result<std::unique_ptr<Signer>> Open(std::string_view uri_text) override {
    IOTPKI_TRY(Pkcs11Uri uri, ParsePkcs11Uri(uri_text));
    IOTPKI_TRY(auto token, Unlock(uri));
    IOTPKI_TRY(Session s, token->Acquire());
    IOTPKI_TRY(KeyObjects k, FindKey(s, uri, uri.token));
    IOTPKI_TRY(PublicKey pk, ReadPublicKey(s, k.pub));
    uri.id = k.id;
    uri.pin_value.clear();
    return std::unique_ptr<Signer>(new Pkcs11Signer(token, k.priv, pk, FormatPkcs11Uri(uri)));
  }

  Result<void> Delete(std::string_view uri_text) override {
    IOTPKI_TRY(Pkcs11Uri uri, ParsePkcs11Uri(uri_text));
    IOTPKI_TRY(auto token, Unlock(uri));
    IOTPKI_TRY(Session s, token->Acquire());
    IOTPKI_TRY(KeyObjects k, FindKey(s, uri, uri.token));
    IOTPKI_TRY(auto certs, FindObjects(s, CKO_CERTIFICATE, "", k.id));
    std::vector<CK_OBJECT_HANDLE> all = certs;
    all.push_back(k.pub);
    all.push_back(k.priv);
    for (CK_OBJECT_HANDLE obj : all) {
      CK_RV rv = s.Check(s.f()->C_DestroyObject(s.get(), obj));
      if (rv != CKR_OK) return Fail(P11Error(rv, "cannot delete the token key"));
    }
    return {};
  }

  Result<std::shared_ptr<Token>> Unlock(const Pkcs11Uri& uri) {
    if (uri.token.empty()) {
      return Fail(Code::kInvalidArgument, "a pkcs11: key URI needs token=LABEL");
    }
    std::string path = uri.module_path;
    if (path.empty()) path = options_.pkcs11_module;
    if (path.empty()) {
      const char* env = std::getenv("IOTPKI_PKCS11_MODULE");
      path = env != nullptr && *env != '\0' ? env : kDefaultPkcs11Module;
    }
    IOTPKI_TRY(auto module, LoadModule(path));
    IOTPKI_TRY(auto token, FindToken(module, uri.token));
    IOTPKI_TRY(std::string pin, ReadPin(uri, options_));
    auto ok = token->Login(pin);
    OPENSSL_cleanse(pin.data(), pin.size());
    IOTPKI_CHECK(std::move(ok));
    return token;
  }

 private:
  KeyStoreOptions options_;
};

}  // namespace

Result<Pkcs11Uri> ParsePkcs11Uri(std::string_view text) {
  if (text.substr(0, 7) != "pkcs11:") {
    return Fail(Code::kInvalidArgument, "expected a pkcs11: URI");
  }
  Pkcs11Uri uri;
  std::string_view rest = text.substr(7);
  auto q = rest.find('?');
  std::string_view path = rest.substr(0, q);
  std::string_view query = q == std::string_view::npos ? "" : rest.substr(q + 1);
  auto each = [](std::string_view list, char sep, auto&& fn) -> Result<void> {
    while (!list.empty()) {
      auto end = list.find(sep);
      std::string_view item = list.substr(0, end);
      list = end == std::string_view::npos ? "" : list.substr(end + 1);
      if (item.empty()) continue;
      auto eq = item.find('=');
      if (eq == std::string_view::npos) {
        return Fail(Code::kInvalidArgument,
                    "pkcs11: URI attribute '" + std::string(item.substr(0, 40)) + "' has no '='");
      }
      IOTPKI_TRY(std::string value, PercentDecode(item.substr(eq + 1)));
      IOTPKI_CHECK(fn(item.substr(0, eq), std::move(value)));
    }
    return {};
  };
  IOTPKI_CHECK(each(path, ';', [&](std::string_view name, std::string value) -> Result<void> {
    if (name == "token") {
      uri.token = std::move(value);
    } else if (name == "object") {
      uri.object = std::move(value);
    } else if (name == "id") {
      uri.id.assign(value.begin(), value.end());
    } else if (name == "type" || name == "manufacturer" || name == "model" || name == "serial") {
      // Narrowing attributes this store does not need: keys are found by class and label.
    } else {
      return Fail(Code::kInvalidArgument,
                  "unsupported pkcs11: URI attribute '" + std::string(name) + "'");
    }
    return {};
  }));
  IOTPKI_CHECK(each(query, '&', [&](std::string_view name, std::string value) -> Result<void> {
    if (name == "pin-source") {
      uri.pin_source = std::move(value);
    } else if (name == "pin-value") {
      uri.pin_value = std::move(value);
    } else if (name == "module-path") {
      uri.module_path = std::move(value);
    } else {
      return Fail(Code::kInvalidArgument,
                  "unsupported pkcs11: URI query attribute '" + std::string(name) + "'");
    }
    return {};
  }));
  return uri;
}

std::string FormatPkcs11Uri(const Pkcs11Uri& uri) {
  auto text = [](const std::string& s) {
    return PercentEncode(ByteView(reinterpret_cast<const uint8_t*>(s.data()), s.size()), false);
  };
  std::string out = "pkcs11:token=" + text(uri.token);
  if (!uri.object.empty()) out += ";object=" + text(uri.object);
  if (!uri.id.empty()) out += ";id=" + PercentEncode(uri.id, true);
  std::string query;
  if (!uri.pin_source.empty()) query += "pin-source=" + text(uri.pin_source);
  if (!uri.module_path.empty()) {
    query += std::string(query.empty() ? "" : "&") + "module-path=" + text(uri.module_path);
  }
  if (!query.empty()) out += "?" + query;
  return out;
}

std::unique_ptr<KeyStore> NewPkcs11KeyStore(const KeyStoreOptions& options) {
  return std::make_unique<Pkcs11KeyStore>(options);
}

Result<void> StorePkcs11Certificate(std::string_view key_uri, ByteView certificate_der,
                                    const KeyStoreOptions& options) {
  IOTPKI_TRY(Pkcs11Uri uri, ParsePkcs11Uri(key_uri));
  // CKA_SUBJECT is required of an X.509 certificate object (and tools look certificates up by
  // it); issuer and serial help the same lookups.
  const unsigned char* p = certificate_der.data();
  auto x509 = ossl::Own(d2i_X509(nullptr, &p, static_cast<long>(certificate_der.size())));
  if (!x509 || p != certificate_der.data() + certificate_der.size()) {
    return Fail(ossl::Drain(Code::kInvalidArgument, "not a DER X.509 certificate"));
  }
  Bytes subject = ossl::ToDer(X509_get_subject_name(x509.get()), i2d_X509_NAME);
  Bytes issuer = ossl::ToDer(X509_get_issuer_name(x509.get()), i2d_X509_NAME);
  Bytes serial = ossl::ToDer(X509_get0_serialNumber(x509.get()), i2d_ASN1_INTEGER);
  Pkcs11KeyStore store(options);
  IOTPKI_TRY(auto token, store.Unlock(uri));
  IOTPKI_TRY(Session s, token->Acquire());
  IOTPKI_TRY(KeyObjects k, FindKey(s, uri, uri.token));
  // Idempotent, so that a resumed batch can write what an interrupted one may have written.
  IOTPKI_TRY(auto existing, FindObjects(s, CKO_CERTIFICATE, "", k.id));
  for (CK_OBJECT_HANDLE obj : existing) {
    IOTPKI_TRY(Bytes value, GetAttribute(s, obj, CKA_VALUE));
    if (value == Bytes(certificate_der.begin(), certificate_der.end())) return {};
  }
  if (!existing.empty()) {
    return Fail(Code::kAlreadyExists, "PKCS#11 token '" + uri.token +
                                          "' already holds another certificate for key '" +
                                          uri.object + "'");
  }
  CK_OBJECT_CLASS cls = CKO_CERTIFICATE;
  CK_CERTIFICATE_TYPE type = CKC_X_509;
  CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
  std::string label = uri.object;
  CK_ATTRIBUTE tmpl[] = {
      {CKA_CLASS, &cls, sizeof cls},
      {CKA_CERTIFICATE_TYPE, &type, sizeof type},
      {CKA_TOKEN, &yes, sizeof yes},
      {CKA_PRIVATE, &no, sizeof no},
      {CKA_LABEL, label.data(), label.size()},
      {CKA_ID, k.id.data(), k.id.size()},
      {CKA_SUBJECT, subject.data(), subject.size()},
      {CKA_ISSUER, issuer.data(), issuer.size()},
      {CKA_SERIAL_NUMBER, serial.data(), serial.size()},
      {CKA_VALUE, const_cast<uint8_t*>(certificate_der.data()), certificate_der.size()},
  };
  CK_OBJECT_HANDLE obj = 0;
  CK_RV rv = s.Check(s.f()->C_CreateObject(s.get(), tmpl, std::size(tmpl), &obj));
  if (rv == CKR_DEVICE_MEMORY) {
    return Fail(Code::kResourceExhausted,
                "PKCS#11 token '" + uri.token + "' is full; the certificate was not stored");
  }
  if (rv != CKR_OK) return Fail(P11Error(rv, "cannot store the certificate in the token"));
  return {};
}

}  // namespace iotpki::crypto
