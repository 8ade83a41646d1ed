// The agent's side of the signed rotate commands (campaign/command.h) that arrive on its MQTT
// command topic: the replay cache that survives restarts, and what one message leads to
// (verified, then the rotation of agent.h, or refused), as the status to publish. No MQTT here:
// the daemon and a fleet simulator hand messages in and publish what comes out.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "iotpki/agent/agent.h"
#include "iotpki/campaign/command.h"
#include "iotpki/common/error.h"

namespace iotpki::agent {

// "iotpki/devices/<id>/cmd" and "iotpki/devices/<id>/status"
// (docs/rotation.md#mqtt-topics-and-acls).
std::string CommandTopic(std::string_view device_id);
std::string StatusTopic(std::string_view device_id);

// Nonces of commands acted on, in a file (STATE/nonces: one "<not_after> <nonce>" per line),
// rewritten atomically (fsynced) at each new nonce and pruned of expired ones, so a command
// replayed after a restart is still refused. Thread-safe.
class FileReplayCache final : public campaign::ReplayCache {
 public:
  // Loads the file if it exists (a malformed line is skipped: the worst case is a command of
  // that line acted on again, which the server answers as a repeat).
  static Result<std::unique_ptr<FileReplayCache>> Open(std::filesystem::path file,
                                                       size_t capacity = 1024);
  Result<void> CheckAndRecord(std::string_view nonce, int64_t not_after, int64_t now) override;
  size_t size() const;

 private:
  FileReplayCache(std::filesystem::path file, size_t capacity)
      : file_(std::move(file)), capacity_(capacity) {}
  const std::filesystem::path file_;
  const size_t capacity_;
  mutable std::mutex mu_;
  std::map<std::string, int64_t> nonces_;  // nonce -> not_after. Guarded by mu_.
};

// What became of one command message.
struct CommandOutcome {
  enum Kind {
    kRejected,  // not verified (unsigned, expired, replayed, misaddressed, malformed): dropped
    kRotated,   // verified, rotated and confirmed
    kFailed,    // verified, but the rotation failed (rolled back, or left pending)
  };
  Kind kind = kRejected;
  std::string status_json;         // what to publish on the status topic
  std::optional<Rotated> rotated;  // kRotated
  std::optional<Error> error;      // kRejected, kFailed: why
};

// Verifies `envelope` (against the operational CA in STATE/active/chain.pem, the active
// certificate's device id, the clock and `replay`), then runs Rotate for it. The status JSON:
//   {"op":"rotate","campaign","job","status":"installed","serial"}                 kRotated
//   {"op":"rotate","campaign","job","status":"failed","reason"}                    kFailed
//   {"op":"rejected","reason"}                                                     kRejected
// A reason is one line, at most 300 bytes, never the envelope's bytes.
CommandOutcome HandleCommand(const AgentOptions& options, std::string_view envelope,
                             campaign::ReplayCache& replay, const RotateHooks& hooks = {});

}  // namespace iotpki::agent
