// The signed rotate command that the server publishes on iotpki/devices/<id>/cmd and the agent
// verifies (docs/rotation.md#signed-commands). Wire format: a JWS in compact serialization
// (RFC 7515), alg ES256, the command certificate in the protected header's x5c, the payload
// the command's JSON object:
//
//   BASE64URL({"alg":"ES256","x5c":["<base64 DER>"]}) "." BASE64URL(command JSON) "."
//   BASE64URL(r || s)
//
// Its own library (iotpki_command: x509 and crypto only), so the device agent links it without
// the store.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <utility>

#include "iotpki/common/error.h"
#include "iotpki/crypto/signer.h"
#include "iotpki/x509/certificate.h"

namespace iotpki::campaign {

struct Command {
  std::string op = "rotate";  // The only operation so far.
  std::string campaign;
  int64_t job = 0;             // The job's ordinal in its campaign.
  std::string device_id;       // 64 lowercase hex digits: who must act on it.
  std::string mode = "renew";  // "renew" (keep the key) or "rekey" (a new key).
  std::string nonce;           // 32 lowercase hex digits, fresh per command.
  int64_t not_after = 0;       // Unix seconds; the agent drops it afterwards.

  bool operator==(const Command&) const = default;
};

// A fresh nonce: 16 random bytes as lowercase hex.
std::string NewNonce();

// The command's JSON object (the JWS payload).
std::string CommandJson(const Command& command);

// Signs `command` with the command key (`key` must be `certificate`'s, a command-signer
// certificate from the operational CA). InvalidArgument for a command Verify would refuse as
// malformed or a key that is not P-256.
Result<std::string> SignCommand(const Command& command, const crypto::Signer& key,
                                const x509::Certificate& certificate);

// Nonces of commands already acted on. The agent's implementation survives restarts (a file);
// the server never needs one.
class ReplayCache {
 public:
  virtual ~ReplayCache() = default;
  // Records `nonce`, which the caller has verified belongs to a command valid until
  // `not_after`. AlreadyExists if it was recorded before; ResourceExhausted if the cache is full
  // of nonces still valid (refusing is safe: the server notifies again later).
  virtual Result<void> CheckAndRecord(std::string_view nonce, int64_t not_after, int64_t now) = 0;
};

// Bounded, in memory: nonces are forgotten once their command has expired (Verify refuses an
// expired command before it asks the cache). Thread-safe.
class InMemoryReplayCache final : public ReplayCache {
 public:
  explicit InMemoryReplayCache(size_t capacity = 1024) : capacity_(capacity) {}
  Result<void> CheckAndRecord(std::string_view nonce, int64_t not_after, int64_t now) override;
  size_t size() const;

 private:
  const size_t capacity_;
  mutable std::mutex mu_;
  std::set<std::pair<int64_t, std::string>> by_expiry_;  // Guarded by mu_.
  std::set<std::string> nonces_;                         // Guarded by mu_.
};

// Verifies an envelope received by the device `my_device_id` at `now`, in this order, each
// refusal with its own code and a one-line message (never the envelope's bytes):
//   InvalidArgument     not a compact JWS, not base64url, not JSON, a field missing or mistyped,
//                       an unknown op or mode, oversized (more than 16 KiB)
//   Unauthenticated     unsigned (alg none, empty signature), an alg other than ES256, no or a
//                       bad x5c certificate, a certificate that does not chain to
//                       `operational_ca` at `now`, a signature that does not verify
//   PermissionDenied    the certificate lacks the command-signing key purpose
//                       (x509::kOidCommandSigning), or the command is for another device
//   FailedPrecondition  expired (now > not_after)
//   AlreadyExists       replayed (the nonce is in `replay`), from ReplayCache
// On success the nonce is recorded in `replay`.
Result<Command> VerifyCommand(std::string_view envelope, const x509::Certificate& operational_ca,
                              std::string_view my_device_id, int64_t now, ReplayCache& replay);

}  // namespace iotpki::campaign
