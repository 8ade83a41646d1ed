#include "iotpki/crypto/secret_file.h"

#include <openssl/rand.h>

#include <string>

#include "iotpki/common/file.h"
#include "iotpki/crypto/ossl.h"
#include "iotpki/crypto/primitives.h"
#include "iotpki/crypto/secret.h"

namespace iotpki::crypto {
namespace {

constexpr std::string_view kMagic = "Salted__";
constexpr size_t kSaltSize = 8;

// key (32) || iv (16) from the passphrase, as `openssl enc -pbkdf2 -md sha256` derives them.
Result<Secret> KeyAndIv(std::string_view passphrase, ByteView salt) {
  return Pbkdf2Sha256(passphrase, salt, kSecretFileIterations, 48);
}

Result<Bytes> Cipher(bool encrypt, const Secret& key_iv, ByteView in) {
  return Aes256Cbc(encrypt, key_iv.bytes().first(32), key_iv.bytes().subspan(32), in);
}

}  // namespace

Result<Bytes> SealSecret(ByteView secret, std::string_view label, std::string_view passphrase) {
  if (passphrase.empty()) {
    return Fail(Code::kInvalidArgument, "refusing to write a secret without a passphrase");
  }
  Bytes salt(kSaltSize);
  if (RAND_bytes(salt.data(), static_cast<int>(salt.size())) != 1) {
    return Fail(ossl::Drain(Code::kInternal, "no randomness"));
  }
  IOTPKI_TRY(Secret key_iv, KeyAndIv(passphrase, salt));
  std::string text = std::string(label) + "\n" + ToHex(secret) + "\n";
  Secret plain = Secret::Take(text);
  auto ct = Cipher(true, key_iv, plain.bytes());
  if (!ct) return Fail(Code::kInternal, "cannot encrypt the secret");
  Bytes out(kMagic.begin(), kMagic.end());
  out.insert(out.end(), salt.begin(), salt.end());
  out.insert(out.end(), ct->begin(), ct->end());
  return out;
}

Result<Bytes> OpenSecret(ByteView sealed, std::string_view label, std::string_view passphrase) {
  if (sealed.size() < kMagic.size() + kSaltSize + 16 ||
      AsString(sealed.first(kMagic.size())) != kMagic ||
      (sealed.size() - kMagic.size() - kSaltSize) % 16 != 0) {
    return Fail(Code::kDataLoss, "secret file is corrupted (not an openssl enc file)");
  }
  ByteView salt = sealed.subspan(kMagic.size(), kSaltSize);
  IOTPKI_TRY(Secret key_iv, KeyAndIv(passphrase, salt));
  auto plain = Cipher(false, key_iv, sealed.subspan(kMagic.size() + kSaltSize));
  std::string expected_head = std::string(label) + "\n";
  if (!plain || plain->size() < expected_head.size() ||
      AsString(ByteView(*plain).first(expected_head.size())) != expected_head) {
    if (plain) OPENSSL_cleanse(plain->data(), plain->size());
    return Fail(Code::kUnauthenticated, "wrong passphrase (or the secret file is corrupted)");
  }
  std::string_view hex = AsString(ByteView(*plain).subspan(expected_head.size()));
  if (!hex.empty() && hex.back() == '\n') hex.remove_suffix(1);
  auto secret = FromHex(hex);
  OPENSSL_cleanse(plain->data(), plain->size());
  if (!secret) return Fail(Code::kDataLoss, "secret file is corrupted (bad contents)");
  return secret;
}

Result<void> SaveSecretFile(const std::filesystem::path& path, ByteView secret,
                            std::string_view label, std::string_view passphrase) {
  IOTPKI_TRY(Bytes sealed, SealSecret(secret, label, passphrase));
  return WriteFileAtomic(path, sealed, 0600);
}

Result<Bytes> LoadSecretFile(const std::filesystem::path& path, std::string_view label,
                             std::string_view passphrase) {
  auto data = ReadFile(path, 1 << 16);
  if (!data) return Fail(std::move(data).error().Context("reading secret"));
  auto secret = OpenSecret(*data, label, passphrase);
  if (!secret) return Fail(std::move(secret).error().Context(path.string()));
  return secret;
}

}  // namespace iotpki::crypto
