#include "iotpki/crypto/secret.h"

#include <openssl/crypto.h>

namespace iotpki::crypto {

Secret Secret::Take(std::string& text) {
  Secret s = CopyOf(AsBytes(text));
  OPENSSL_cleanse(text.data(), text.size());
  text.clear();
  return s;
}

Secret& Secret::operator=(Secret&& other) noexcept {
  if (this != &other) {
    Wipe();
    data_ = std::move(other.data_);
    other.data_.clear();
  }
  return *this;
}

bool Secret::operator==(const Secret& other) const {
  return data_.size() == other.data_.size() &&
         CRYPTO_memcmp(data_.data(), other.data_.data(), data_.size()) == 0;
}

void Secret::Wipe() {
  // A Secret never shrinks its buffer, so size() covers every byte it ever held.
  if (!data_.empty()) OPENSSL_cleanse(data_.data(), data_.size());
  data_.clear();
}

}  // namespace iotpki::crypto
