#include "iotpki/crypto/key_store.h"

#include <map>
#include <mutex>
#include <system_error>

#include "iotpki/crypto/pkcs11_key_store.h"
#include "iotpki/crypto/tpm2_key_store.h"

namespace iotpki::crypto {
namespace {

namespace fs = std::filesystem;

class FileKeyStore final : public KeyStore {
 public:
  explicit FileKeyStore(const KeyStoreOptions& options)
      : passphrase_(options.passphrase), base_dir_(options.base_dir) {}

  std::string_view scheme() const override { return "file"; }

  Result<std::unique_ptr<Signer>> Generate(std::string_view uri, KeyType type) override {
    IOTPKI_TRY(fs::path path, PathOf(uri));
    std::error_code ec;
    if (fs::exists(path, ec)) {
      return Fail(Code::kAlreadyExists,
                  path.string() + " already exists; refusing to overwrite a key");
    }
    if (passphrase_.size() < 8) {
      return Fail(Code::kInvalidArgument, "a key file's passphrase must be at least 8 characters");
    }
    IOTPKI_TRY(PrivateKey key, PrivateKey::Generate(type));
    IOTPKI_CHECK(SaveKeyFile(path, key, passphrase_));
    key.set_uri(std::string(uri));
    return std::unique_ptr<Signer>(new PrivateKey(std::move(key)));
  }

  Result<std::unique_ptr<Signer>> Open(std::string_view uri) override {
    IOTPKI_TRY(fs::path path, PathOf(uri));
    std::error_code ec;
    if (!fs::exists(path, ec)) return Fail(Code::kNotFound, "no key file " + path.string());
    IOTPKI_TRY(PrivateKey key, LoadKeyFile(path, passphrase_));
    return std::unique_ptr<Signer>(new PrivateKey(std::move(key)));
  }

  Result<void> Delete(std::string_view uri) override {
    IOTPKI_TRY(fs::path path, PathOf(uri));
    std::error_code ec;
    if (!fs::remove(path, ec)) {
      if (ec) return Fail(Code::kInternal, "cannot delete " + path.string() + ": " + ec.message());
      return Fail(Code::kNotFound, "no key file " + path.string());
    }
    return {};
  }

 private:
  Result<fs::path> PathOf(std::string_view uri) const {
    if (uri.substr(0, 5) != "file:" || uri.size() == 5) {
      return Fail(Code::kInvalidArgument,
                  "expected a key URI file:PATH, not '" + std::string(uri.substr(0, 80)) + "'");
    }
    fs::path path(uri.substr(5));
    if (path.is_relative() && !base_dir_.empty()) path = base_dir_ / path;
    return path;
  }

  std::string passphrase_;
  fs::path base_dir_;
};

struct Registry {
  std::mutex mu;
  std::map<std::string, KeyStoreFactory, std::less<>> factories;
};

Registry& TheRegistry() {
  static Registry* registry = [] {
    auto* r = new Registry;
    r->factories["file"] = [](const KeyStoreOptions& o) -> Result<std::unique_ptr<KeyStore>> {
      return NewFileKeyStore(o);
    };
    r->factories["pkcs11"] = [](const KeyStoreOptions& o) -> Result<std::unique_ptr<KeyStore>> {
      return NewPkcs11KeyStore(o);
    };
    r->factories["tpm2"] = [](const KeyStoreOptions& o) -> Result<std::unique_ptr<KeyStore>> {
      return NewTpm2KeyStore(o);
    };
    return r;
  }();
  return *registry;
}

}  // namespace

std::unique_ptr<KeyStore> NewFileKeyStore(const KeyStoreOptions& options) {
  return std::make_unique<FileKeyStore>(options);
}

void RegisterKeyStore(std::string scheme, KeyStoreFactory factory) {
  Registry& r = TheRegistry();
  std::lock_guard lock(r.mu);
  r.factories[std::move(scheme)] = std::move(factory);
}

Result<std::unique_ptr<KeyStore>> KeyStoreFor(std::string_view uri,
                                              const KeyStoreOptions& options) {
  auto colon = uri.find(':');
  std::string_view scheme = colon == std::string_view::npos ? "" : uri.substr(0, colon);
  KeyStoreFactory factory;
  std::string known;
  {
    Registry& r = TheRegistry();
    std::lock_guard lock(r.mu);
    auto it = r.factories.find(scheme);
    if (it != r.factories.end()) factory = it->second;
    for (const auto& [name, f] : r.factories) known += (known.empty() ? "" : ", ") + name + ":";
  }
  if (!factory) {
    return Fail(Code::kInvalidArgument, "unknown key URI '" + std::string(uri.substr(0, 80)) +
                                            "' (expected one of " + known + ")");
  }
  return factory(options);
}

std::string AppendPkcs11Attribute(std::string_view uri, std::string_view attribute) {
  auto q = uri.find('?');
  std::string_view path = uri.substr(0, q);
  std::string out(path);
  if (!out.empty() && out.back() != ':' && out.back() != ';') out += ';';
  out += attribute;
  if (q != std::string_view::npos) out += uri.substr(q);
  return out;
}

}  // namespace iotpki::crypto
