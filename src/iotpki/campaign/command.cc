#include "iotpki/campaign/command.h"

#include <openssl/bn.h>
#include <openssl/ecdsa.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "iotpki/common/bytes.h"
#include "iotpki/crypto/ossl.h"
#include "iotpki/crypto/primitives.h"
#include "iotpki/x509/profile.h"
#include "iotpki/x509/verify.h"

namespace iotpki::campaign {
namespace {

using nlohmann::json;

constexpr size_t kMaxEnvelope = 16 * 1024;
constexpr size_t kP256Half = 32;  // bytes of r and of s in a JWS ES256 signature

std::string Base64Url(ByteView data) {
  std::string s = Base64Encode(data);
  while (!s.empty() && s.back() == '=') s.pop_back();
  for (char& c : s) {
    if (c == '+') c = '-';
    if (c == '/') c = '_';
  }
  return s;
}
std::string Base64Url(std::string_view text) {
  return Base64Url(ByteView(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
}

Result<Bytes> FromBase64Url(std::string_view text) {
  auto bad = [] { return Fail(Code::kInvalidArgument, "command is not base64url"); };
  if (text.size() % 4 == 1) return bad();
  std::string s(text);
  for (char& c : s) {
    bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_';
    if (!ok) return bad();
    if (c == '-') c = '+';
    if (c == '_') c = '/';
  }
  while (s.size() % 4 != 0) s += '=';
  auto out = Base64Decode(s);
  if (!out) return bad();
  return *out;
}

bool IsLowerHex(std::string_view s) {
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

Result<void> CheckFields(const Command& c) {
  auto bad = [](std::string what) {
    return Fail(Code::kInvalidArgument, "malformed command: " + std::move(what));
  };
  if (c.op != "rotate") return bad("unknown op (expected rotate)");
  if (c.campaign.empty() || c.campaign.size() > 128) return bad("campaign must be 1..128 bytes");
  if (c.job < 0) return bad("job must be >= 0");
  if (c.device_id.size() != 64 || !IsLowerHex(c.device_id)) {
    return bad("device_id must be 64 lowercase hex digits");
  }
  if (c.mode != "renew" && c.mode != "rekey") return bad("mode must be renew or rekey");
  if (c.nonce.size() < 32 || c.nonce.size() > 64 || !IsLowerHex(c.nonce)) {
    return bad("nonce must be 32 to 64 lowercase hex digits");
  }
  if (c.not_after <= 0) return bad("not_after must be a positive Unix time");
  return {};
}

Result<Command> ParsePayload(ByteView bytes) {
  auto bad = [](std::string what) {
    return Fail(Code::kInvalidArgument, "malformed command: " + std::move(what));
  };
  json j = json::parse(bytes.begin(), bytes.end(), nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return bad("the payload is not a JSON object");
  Command c;
  auto str = [&](const char* key, std::string& out) {
    auto it = j.find(key);
    if (it == j.end() || !it->is_string()) return false;
    out = it->get<std::string>();
    return true;
  };
  auto num = [&](const char* key, int64_t& out) {
    auto it = j.find(key);
    if (it == j.end() || !it->is_number_integer()) return false;
    out = it->get<int64_t>();
    return true;
  };
  if (!str("op", c.op) || !str("campaign", c.campaign) || !num("job", c.job) ||
      !str("device_id", c.device_id) || !str("mode", c.mode) || !str("nonce", c.nonce) ||
      !num("not_after", c.not_after)) {
    return bad("op, campaign, job, device_id, mode, nonce and not_after are required, typed");
  }
  IOTPKI_CHECK(CheckFields(c));
  return c;
}

// JWS ES256 carries r || s (RFC 7518 3.4); OpenSSL signs and verifies DER ECDSA-Sig-Value.
Result<Bytes> DerToRaw(ByteView der) {
  const unsigned char* p = der.data();
  auto sig = ossl::Own(d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(der.size())));
  if (!sig) return Fail(ossl::Drain(Code::kInternal, "bad ECDSA signature from the signer"));
  Bytes raw(2 * kP256Half);
  const BIGNUM* r = ECDSA_SIG_get0_r(sig.get());
  const BIGNUM* s = ECDSA_SIG_get0_s(sig.get());
  if (BN_bn2binpad(r, raw.data(), kP256Half) != static_cast<int>(kP256Half) ||
      BN_bn2binpad(s, raw.data() + kP256Half, kP256Half) != static_cast<int>(kP256Half)) {
    return Fail(ossl::Drain(Code::kInvalidArgument, "the command key must be P-256"));
  }
  return raw;
}

Result<Bytes> RawToDer(ByteView raw) {
  auto sig = ossl::Own(ECDSA_SIG_new());
  BIGNUM* r = BN_bin2bn(raw.data(), kP256Half, nullptr);
  BIGNUM* s = BN_bin2bn(raw.data() + kP256Half, kP256Half, nullptr);
  if (!sig || r == nullptr || s == nullptr || ECDSA_SIG_set0(sig.get(), r, s) != 1) {
    BN_free(r);
    BN_free(s);
    return Fail(ossl::Drain(Code::kInternal, "out of memory"));
  }
  return ossl::ToDer(sig.get(), i2d_ECDSA_SIG);
}

Error Unauthenticated(std::string why) {
  return Error(Code::kUnauthenticated, "unauthenticated command: " + std::move(why));
}

}  // namespace

std::string NewNonce() { return ToHex(crypto::RandomBytes(16)); }

std::string CommandJson(const Command& c) {
  return json({{"op", c.op},
               {"campaign", c.campaign},
               {"job", c.job},
               {"device_id", c.device_id},
               {"mode", c.mode},
               {"nonce", c.nonce},
               {"not_after", c.not_after}})
      .dump();
}

Result<std::string> SignCommand(const Command& command, const crypto::Signer& key,
                                const x509::Certificate& certificate) {
  IOTPKI_CHECK(CheckFields(command));
  if (key.public_key().type() != crypto::KeyType::kP256) {
    return Fail(Code::kInvalidArgument, "the command key must be P-256 (ES256)");
  }
  json header = {{"alg", "ES256"}, {"x5c", json::array({Base64Encode(certificate.ToDer())})}};
  std::string input = Base64Url(header.dump()) + "." + Base64Url(CommandJson(command));
  IOTPKI_TRY(Bytes der,
             key.Sign(ByteView(reinterpret_cast<const uint8_t*>(input.data()), input.size())));
  IOTPKI_TRY(Bytes raw, DerToRaw(der));
  return input + "." + Base64Url(raw);
}

Result<void> InMemoryReplayCache::CheckAndRecord(std::string_view nonce, int64_t not_after,
                                                 int64_t now) {
  std::lock_guard<std::mutex> lock(mu_);
  while (!by_expiry_.empty() && by_expiry_.begin()->first < now) {
    nonces_.erase(by_expiry_.begin()->second);
    by_expiry_.erase(by_expiry_.begin());
  }
  std::string n(nonce);
  if (nonces_.count(n) != 0) {
    return Fail(Code::kAlreadyExists, "replayed command (its nonce was seen before)");
  }
  if (nonces_.size() >= capacity_) {
    return Fail(Code::kResourceExhausted, "too many unexpired commands remembered; try later");
  }
  nonces_.insert(n);
  by_expiry_.emplace(not_after, std::move(n));
  return {};
}

size_t InMemoryReplayCache::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return nonces_.size();
}

Result<Command> VerifyCommand(std::string_view envelope, const x509::Certificate& operational_ca,
                              std::string_view my_device_id, int64_t now, ReplayCache& replay) {
  if (envelope.size() > kMaxEnvelope) {
    return Fail(Code::kInvalidArgument, "malformed command: larger than 16 KiB");
  }
  size_t dot1 = envelope.find('.');
  size_t dot2 = dot1 == std::string_view::npos ? dot1 : envelope.find('.', dot1 + 1);
  if (dot2 == std::string_view::npos || envelope.find('.', dot2 + 1) != std::string_view::npos) {
    return Fail(Code::kInvalidArgument, "malformed command: not a compact JWS (three parts)");
  }
  std::string_view header_b64 = envelope.substr(0, dot1);
  std::string_view payload_b64 = envelope.substr(dot1 + 1, dot2 - dot1 - 1);
  std::string_view sig_b64 = envelope.substr(dot2 + 1);

  IOTPKI_TRY(Bytes header_bytes, FromBase64Url(header_b64));
  json header = json::parse(header_bytes.begin(), header_bytes.end(), nullptr, false);
  if (!header.is_object() || !header.contains("alg") || !header["alg"].is_string()) {
    return Fail(Code::kInvalidArgument, "malformed command: a JWS header with alg is required");
  }
  IOTPKI_TRY(Bytes payload, FromBase64Url(payload_b64));
  // Parsed before the signature is checked only to tell malformed from forged; nothing in it is
  // trusted until the signature verifies.
  IOTPKI_TRY(Command command, ParsePayload(payload));

  std::string alg = header["alg"].get<std::string>();
  if (alg == "none" || sig_b64.empty()) return Fail(Unauthenticated("unsigned"));
  if (alg != "ES256") return Fail(Unauthenticated("alg " + alg + " is not ES256"));
  if (header.contains("crit")) return Fail(Unauthenticated("unknown critical header"));
  auto x5c = header.find("x5c");
  if (x5c == header.end() || !x5c->is_array() || x5c->empty() || !(*x5c)[0].is_string()) {
    return Fail(Unauthenticated("no signer certificate (x5c)"));
  }
  auto cert_der = Base64Decode((*x5c)[0].get<std::string>());
  if (!cert_der) return Fail(Unauthenticated("the signer certificate is not base64"));
  auto cert = x509::Certificate::FromDer(*cert_der);
  if (!cert) return Fail(Unauthenticated("the signer certificate does not parse"));
  x509::Verdict verdict = x509::VerifyChain(*cert, {}, {&operational_ca, 1}, now);
  if (verdict != x509::Verdict::kValid) {
    return Fail(Unauthenticated("the signer certificate is " +
                                std::string(x509::VerdictName(verdict)) +
                                " against the operational CA"));
  }
  const auto& eku = cert->extended_key_usage();
  if (std::find(eku.begin(), eku.end(), x509::kOidCommandSigning) == eku.end()) {
    return Fail(Code::kPermissionDenied,
                "the signer certificate lacks the command-signing key purpose");
  }
  auto raw = FromBase64Url(sig_b64);
  if (!raw || raw->size() != 2 * kP256Half) return Fail(Unauthenticated("bad signature"));
  IOTPKI_TRY(Bytes der_sig, RawToDer(*raw));
  std::string_view input = envelope.substr(0, dot2);
  if (!cert->public_key().Verify(
          ByteView(reinterpret_cast<const uint8_t*>(input.data()), input.size()), der_sig,
          crypto::DigestAlgorithm::kSha256)) {
    return Fail(Unauthenticated("bad signature"));
  }

  if (command.device_id != my_device_id) {
    return Fail(Code::kPermissionDenied, "command for another device");
  }
  if (now > command.not_after) return Fail(Code::kFailedPrecondition, "expired command");
  IOTPKI_CHECK(replay.CheckAndRecord(command.nonce, command.not_after, now));
  return command;
}

}  // namespace iotpki::campaign
