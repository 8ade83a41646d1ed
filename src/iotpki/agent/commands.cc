#include "iotpki/agent/commands.h"

#include <nlohmann/json.hpp>
#include <sstream>

#include "iotpki/common/file.h"

namespace iotpki::agent {
namespace {

namespace fs = std::filesystem;

// One line of at most 300 bytes: what goes into a status message.
std::string OneLine(std::string text) {
  for (char& c : text) {
    if (static_cast<unsigned char>(c) < 0x20) c = ' ';
  }
  if (text.size() > 300) text.resize(300);
  return text;
}

}  // namespace

std::string CommandTopic(std::string_view device_id) {
  return "iotpki/devices/" + std::string(device_id) + "/cmd";
}
std::string StatusTopic(std::string_view device_id) {
  return "iotpki/devices/" + std::string(device_id) + "/status";
}

Result<std::unique_ptr<FileReplayCache>> FileReplayCache::Open(fs::path file, size_t capacity) {
  std::unique_ptr<FileReplayCache> cache(new FileReplayCache(std::move(file), capacity));
  auto text = ReadTextFile(cache->file_, 1 << 20);
  if (!text) {
    if (text.error().code() == Code::kNotFound) return cache;
    return Fail(Code::kFailedPrecondition, text.error().message());
  }
  std::istringstream in(*text);
  int64_t not_after = 0;
  std::string nonce;
  while (in >> not_after >> nonce) cache->nonces_[nonce] = not_after;
  return cache;
}

size_t FileReplayCache::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return nonces_.size();
}

Result<void> FileReplayCache::CheckAndRecord(std::string_view nonce, int64_t not_after,
                                             int64_t now) {
  std::lock_guard<std::mutex> lock(mu_);
  std::erase_if(nonces_, [now](const auto& entry) { return entry.second < now; });
  if (nonces_.count(std::string(nonce)) != 0) {
    return Fail(Code::kAlreadyExists, "replayed command (nonce seen before)");
  }
  if (nonces_.size() >= capacity_) {
    return Fail(Code::kResourceExhausted, "too many unexpired commands remembered");
  }
  nonces_[std::string(nonce)] = not_after;
  std::string text;
  for (const auto& [n, t] : nonces_) text += std::to_string(t) + " " + n + "\n";
  // Written before the command is acted on: a crash after this never lets it run twice.
  auto written = WriteFileAtomic(file_, text, 0600);
  if (!written) {
    nonces_.erase(std::string(nonce));
    return Fail(Code::kFailedPrecondition,
                "cannot record the command's nonce: " + written.error().message());
  }
  return {};
}

CommandOutcome HandleCommand(const AgentOptions& o, std::string_view envelope,
                             campaign::ReplayCache& replay, const RotateHooks& hooks) {
  CommandOutcome out;
  auto reject = [&](const Error& e) {
    out.kind = CommandOutcome::kRejected;
    out.error = e;
    out.status_json = nlohmann::json{{"op", "rejected"}, {"reason", OneLine(e.message())}}.dump();
    return out;
  };
  // Whom the command must name, and who must have signed it: the active slot says both.
  auto cert_pem = ReadTextFile(o.state / "active" / "cert.pem", 1 << 16);
  auto chain_pem = ReadTextFile(o.state / "active" / "chain.pem", 1 << 16);
  if (!cert_pem || !chain_pem) {
    return reject(Error(Code::kFailedPrecondition, "no active working certificate"));
  }
  auto cert = x509::Certificate::FromPem(*cert_pem);
  auto ops = x509::Certificate::FromPem(*chain_pem);
  if (!cert || !ops)
    return reject(Error(Code::kFailedPrecondition, "the active slot is unreadable"));
  auto command =
      campaign::VerifyCommand(envelope, *ops, cert->common_name(), o.clock->NowUnix(), replay);
  if (!command) return reject(command.error());

  nlohmann::json status = {
      {"op", "rotate"}, {"campaign", command->campaign}, {"job", command->job}};
  auto rotated = Rotate(
      o, {.campaign = command->campaign, .job = command->job, .rekey = command->mode == "rekey"},
      hooks);
  if (!rotated) {
    out.kind = CommandOutcome::kFailed;
    out.error = rotated.error();
    status["status"] = "failed";
    status["reason"] = OneLine(rotated.error().message());
  } else {
    out.kind = CommandOutcome::kRotated;
    status["status"] = "installed";
    status["serial"] = rotated->installed.certificate.serial_hex();
    out.rotated = std::move(*rotated);
  }
  out.status_json = status.dump();
  return out;
}

}  // namespace iotpki::agent
