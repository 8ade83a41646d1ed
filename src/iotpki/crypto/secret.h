// Secret bytes (a passphrase, the bootstrap master key, a per-device bootstrap secret) that are
// wiped with OPENSSL_cleanse when they are destroyed or replaced. Move-only: a copy is made only
// by Copy(), so no stray duplicate outlives its use. Moving hands the buffer over without
// copying the bytes.
//
// Not thread-safe beyond what const access to a std::vector is.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "iotpki/common/bytes.h"

namespace iotpki::crypto {

class Secret {
 public:
  Secret() = default;
  // Takes the buffer of `bytes`; nothing is left behind in the argument.
  explicit Secret(Bytes&& bytes) : data_(std::move(bytes)) {}
  // Copies `bytes`; the caller wipes its own buffer.
  static Secret CopyOf(ByteView bytes) { return Secret(Bytes(bytes.begin(), bytes.end())); }
  // Copies `text` and wipes it (a passphrase read into a std::string).
  static Secret Take(std::string& text);

  ~Secret() { Wipe(); }
  Secret(const Secret&) = delete;
  Secret& operator=(const Secret&) = delete;
  Secret(Secret&& other) noexcept : data_(std::move(other.data_)) { other.data_.clear(); }
  Secret& operator=(Secret&& other) noexcept;

  Secret Copy() const { return CopyOf(data_); }
  ByteView bytes() const { return data_; }
  // The bytes as text (a passphrase).
  std::string_view view() const {
    return {reinterpret_cast<const char*>(data_.data()), data_.size()};
  }
  size_t size() const { return data_.size(); }
  bool empty() const { return data_.empty(); }
  bool operator==(const Secret& other) const;  // constant-time for equal sizes

 private:
  void Wipe();
  Bytes data_;
};

}  // namespace iotpki::crypto
