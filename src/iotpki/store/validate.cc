#include "iotpki/store/validate.h"

#include <array>
#include <charconv>
#include <type_traits>

#include "iotpki/common/strings.h"

namespace iotpki::store {
namespace {

constexpr size_t kDeviceIdHexDigits = 64;
constexpr size_t kKeyFingerprintHexDigits = 64;
// RFC 5280 4.1.2.2: at most 20 octets.
constexpr size_t kMaxCertSerialHexDigits = 40;

// Well-formed UTF-8 without NUL: PostgreSQL TEXT refuses both.
bool IsCleanUtf8(std::string_view s) {
  return s.find('\0') == std::string_view::npos && IsValidUtf8(s);
}

Result<void> CheckText(std::string_view value, std::string_view field, bool allow_empty,
                       size_t max_bytes = kMaxTextBytes) {
  if (!allow_empty && value.empty()) {
    return Fail(Code::kInvalidArgument, std::string(field) + " is empty");
  }
  if (value.size() > max_bytes) {
    return Fail(Code::kInvalidArgument,
                std::string(field) + " is longer than " + std::to_string(max_bytes) + " bytes");
  }
  if (!IsCleanUtf8(value)) {
    return Fail(Code::kInvalidArgument,
                std::string(field) + " is not valid UTF-8 or contains a NUL character");
  }
  return {};
}

Result<void> CheckHex(std::string_view value, std::string_view field, size_t min_digits,
                      size_t max_digits) {
  if (!IsLowerHex(value) || value.size() < min_digits || value.size() > max_digits) {
    std::string want = min_digits == max_digits
                           ? std::to_string(min_digits)
                           : std::to_string(min_digits) + " to " + std::to_string(max_digits);
    return Fail(Code::kInvalidArgument,
                std::string(field) + " must be " + want + " lowercase hex digits");
  }
  return {};
}

Result<void> CheckDeviceId(std::string_view id) {
  return CheckHex(id, "device_id", kDeviceIdHexDigits, kDeviceIdHexDigits);
}

Result<void> ValidateDevice(const Device& d) {
  IOTPKI_CHECK(CheckDeviceId(d.device_id));
  IOTPKI_CHECK(CheckText(d.serial, "serial", /*allow_empty=*/false));
  IOTPKI_CHECK(CheckText(d.model, "model", /*allow_empty=*/true));
  IOTPKI_CHECK(CheckText(d.batch, "batch", /*allow_empty=*/true));
  if (d.hardware_fingerprint) {
    IOTPKI_CHECK(CheckHex(*d.hardware_fingerprint, "hardware_fingerprint", 2, kMaxTextBytes));
  }
  if (d.created_at != 0 || d.updated_at != 0) {
    return Fail(Code::kInvalidArgument,
                "created_at and updated_at are set by the store; leave them at 0");
  }
  return {};
}

Result<void> ValidateCertificate(const CertificateRecord& c) {
  IOTPKI_CHECK(CheckHex(c.serial, "certificate serial", 2, kMaxCertSerialHexDigits));
  if (c.device_id) IOTPKI_CHECK(CheckDeviceId(*c.device_id));
  IOTPKI_CHECK(CheckText(c.issuer, "issuer", /*allow_empty=*/false));
  IOTPKI_CHECK(CheckText(c.subject, "subject", /*allow_empty=*/false));
  IOTPKI_CHECK(CheckHex(c.key_fingerprint, "key_fingerprint", kKeyFingerprintHexDigits,
                        kKeyFingerprintHexDigits));
  if (c.not_before > c.not_after) {
    return Fail(Code::kInvalidArgument, "not_before is after not_after");
  }
  if (c.der.empty() || c.der.size() > kMaxDerBytes) {
    return Fail(Code::kInvalidArgument, "certificate DER is empty or larger than " +
                                            std::to_string(kMaxDerBytes) + " bytes");
  }
  if (c.status != CertStatus::kValid || c.revoked_at || c.revocation_reason || c.created_at != 0 ||
      c.first_used_at) {
    return Fail(Code::kInvalidArgument,
                "status, revoked_at, revocation_reason, created_at and first_used_at are set by "
                "the store; insert certificates as valid and revoke them with RevokeCertificate");
  }
  return {};
}

Result<void> ValidateAuditEvent(const AuditEvent& e) {
  IOTPKI_CHECK(CheckText(e.actor, "audit actor", /*allow_empty=*/false));
  IOTPKI_CHECK(CheckText(e.action, "audit action", /*allow_empty=*/false));
  IOTPKI_CHECK(CheckText(e.subject, "audit subject", /*allow_empty=*/true));
  IOTPKI_CHECK(CheckText(e.details, "audit details", /*allow_empty=*/true, kMaxDetailsBytes));
  return {};
}

Result<void> ValidateOp(const WriteOp& op) {
  return std::visit(
      [](const auto& o) -> Result<void> {
        using T = std::decay_t<decltype(o)>;
        if constexpr (std::is_same_v<T, InsertDeviceOp>) {
          return ValidateDevice(o.device);
        } else if constexpr (std::is_same_v<T, UpdateDeviceStateOp>) {
          return CheckDeviceId(o.device_id);
        } else if constexpr (std::is_same_v<T, InsertCertificateOp>) {
          return ValidateCertificate(o.cert);
        } else if constexpr (std::is_same_v<T, RevokeCertificateOp>) {
          if (o.revoked_at < 0) return Fail(Code::kInvalidArgument, "revoked_at is negative");
          IOTPKI_CHECK(CheckHex(o.serial, "certificate serial", 2, kMaxCertSerialHexDigits));
          if (!IsFinalRevocationReason(o.reason)) {
            return Fail(Code::kInvalidArgument, "revocation reason " +
                                                    std::string(RevocationReasonName(o.reason)) +
                                                    " is not supported: a revocation is final");
          }
          return {};
        } else if constexpr (std::is_same_v<T, MarkCertificateUsedOp>) {
          return CheckHex(o.serial, "certificate serial", 2, kMaxCertSerialHexDigits);
        } else if constexpr (std::is_same_v<T, AppendAuditOp>) {
          return ValidateAuditEvent(o.event);
        } else if constexpr (std::is_same_v<T, RecordTokenOp>) {
          return CheckDeviceId(o.device_id);
        } else if constexpr (std::is_same_v<T, UpdateJobOp>) {
          if (o.last_error) IOTPKI_CHECK(CheckText(*o.last_error, "job last_error", true));
          if (o.new_serial) {
            IOTPKI_CHECK(CheckHex(*o.new_serial, "job new_serial", 2, kMaxCertSerialHexDigits));
          }
          return {};
        } else if constexpr (std::is_same_v<T, UpdateCampaignOp>) {
          return CheckText(o.reason, "campaign reason", true);
        } else if constexpr (std::is_same_v<T, InsertOperatorCertificateOp>) {
          const OperatorCertificate& c = o.cert;
          IOTPKI_CHECK(
              CheckHex(c.serial, "operator certificate serial", 2, kMaxCertSerialHexDigits));
          IOTPKI_CHECK(CheckText(c.name, "operator name", /*allow_empty=*/false));
          if (c.role != "operator" && c.role != "read-only") {
            return Fail(Code::kInvalidArgument, "operator role must be operator or read-only");
          }
          if (c.status != CertStatus::kValid || c.revoked_at || c.created_at != 0) {
            return Fail(Code::kInvalidArgument,
                        "status, revoked_at and created_at are set by the store");
          }
          return {};
        } else {
          static_assert(std::is_same_v<T, RevokeOperatorCertificateOp>);
          return CheckHex(o.serial, "operator certificate serial", 2, kMaxCertSerialHexDigits);
        }
      },
      op);
}

bool ParseInt64(std::string_view s, int64_t& out) {
  if (s.empty()) return false;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && ptr == s.data() + s.size();
}

// "d1." cursors (schema version 2 and before) named a device_id; a listing started before an
// upgrade is started again.
constexpr std::string_view kDeviceSeqCursorPrefix = "d2.";
constexpr std::string_view kExpiringCursorPrefix = "e1.";

}  // namespace

bool IsLowerHex(std::string_view s) {
  if (s.empty() || s.size() % 2 != 0) return false;
  // A table, and no branch per digit: a factory batch checks a few hundred digits per device on
  // the thread that commits.
  static constexpr auto kLowerHex = [] {
    std::array<bool, 256> table{};
    for (char c : std::string_view("0123456789abcdef")) table[static_cast<uint8_t>(c)] = true;
    return table;
  }();
  bool all = true;
  for (char c : s) all &= kLowerHex[static_cast<uint8_t>(c)];
  return all;
}

Result<void> ValidateBatch(const WriteBatch& batch) {
  const auto& ops = batch.ops();
  for (size_t i = 0; i < ops.size(); ++i) {
    auto r = ValidateOp(ops[i]);
    if (!r) return Fail(std::move(r).error().Context("batch operation " + std::to_string(i + 1)));
  }
  return {};
}

Result<void> ValidateFilter(const DeviceFilter& filter) {
  if (filter.model) IOTPKI_CHECK(CheckText(*filter.model, "model filter", true));
  if (filter.batch) IOTPKI_CHECK(CheckText(*filter.batch, "batch filter", true));
  if (filter.expiring_within && filter.expiring_within->count() < 0) {
    return Fail(Code::kInvalidArgument, "expiring_within must not be negative");
  }
  return {};
}

Result<void> ValidateCampaignName(std::string_view name) {
  bool ok = !name.empty() && name.size() <= 128;
  for (char c : name) {
    ok &= (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
          c == '_' || c == '-';
  }
  if (!ok) {
    return Fail(Code::kInvalidArgument,
                "campaign name must be 1 to 128 characters of A-Z a-z 0-9 . _ -");
  }
  return {};
}

Result<void> ValidateCampaignSpec(const CampaignSpec& spec) {
  IOTPKI_CHECK(ValidateCampaignName(spec.name));
  IOTPKI_CHECK(CheckText(spec.filter_json, "campaign filter", false, kMaxDetailsBytes));
  if (spec.wave_size < 1) return Fail(Code::kInvalidArgument, "wave size must be at least 1");
  if (spec.max_failure_ppm < 0 || spec.max_failure_ppm > 1000000) {
    return Fail(Code::kInvalidArgument, "maximum failure rate must lie in 0..1");
  }
  if (spec.retry_after < 1) return Fail(Code::kInvalidArgument, "retry delay must be >= 1 s");
  if (spec.max_attempts < 1) {
    return Fail(Code::kInvalidArgument, "maximum attempts must be at least 1");
  }
  if (spec.deadline <= 0) return Fail(Code::kInvalidArgument, "campaign deadline is not set");
  return {};
}

Result<void> ValidateCohort(const CampaignCohort& cohort) {
  int selections =
      (cohort.devices ? 1 : 0) + (cohort.issued_by ? 1 : 0) + (cohort.device_ids ? 1 : 0);
  if (selections != 1) {
    return Fail(Code::kInvalidArgument, "a campaign cohort needs exactly one selection");
  }
  if (cohort.devices) {
    const DeviceFilter& f = *cohort.devices;
    int filters = (f.model ? 1 : 0) + (f.batch ? 1 : 0) + (f.expiring_within ? 1 : 0);
    if (filters != 1 || f.state) {
      return Fail(Code::kInvalidArgument,
                  "a campaign cohort filter is one of model, batch or expiring_within");
    }
    IOTPKI_CHECK(ValidateFilter(f));
  }
  if (cohort.issued_by) IOTPKI_CHECK(CheckText(*cohort.issued_by, "issuing CA name", false));
  if (cohort.device_ids) {
    for (const std::string& id : *cohort.device_ids) IOTPKI_CHECK(CheckDeviceId(id));
  }
  return {};
}

Result<void> ValidatePageSize(size_t limit) {
  if (limit == 0 || limit > kMaxPageSize) {
    return Fail(Code::kInvalidArgument,
                "page size must be between 1 and " + std::to_string(kMaxPageSize));
  }
  return {};
}

std::string EncodeCursor(const DeviceSeqCursor& cursor) {
  return std::string(kDeviceSeqCursorPrefix) + std::to_string(cursor.seq);
}

std::string EncodeCursor(const ExpiringCursor& cursor) {
  return std::string(kExpiringCursorPrefix) + std::to_string(cursor.not_after) + "." +
         cursor.cert_serial;
}

Result<DeviceSeqCursor> DecodeDeviceSeqCursor(std::string_view cursor) {
  DeviceSeqCursor out;
  if (cursor.substr(0, kDeviceSeqCursorPrefix.size()) != kDeviceSeqCursorPrefix ||
      !ParseInt64(cursor.substr(kDeviceSeqCursorPrefix.size()), out.seq) || out.seq < 0) {
    return Fail(Code::kInvalidArgument,
                "invalid cursor for this device listing (pass the one the previous page printed, "
                "or start again without it)");
  }
  return out;
}

Result<ExpiringCursor> DecodeExpiringCursor(std::string_view cursor) {
  auto bad = [] {
    return Fail(Code::kInvalidArgument,
                "invalid cursor for this expiry listing (pass the one the previous page printed, "
                "or start again without it)");
  };
  if (cursor.substr(0, kExpiringCursorPrefix.size()) != kExpiringCursorPrefix) return bad();
  cursor.remove_prefix(kExpiringCursorPrefix.size());
  size_t dot = cursor.find('.');
  if (dot == std::string_view::npos) return bad();
  ExpiringCursor out;
  if (!ParseInt64(cursor.substr(0, dot), out.not_after)) return bad();
  std::string_view serial = cursor.substr(dot + 1);
  if (!CheckHex(serial, "serial", 2, kMaxCertSerialHexDigits)) return bad();
  out.cert_serial = std::string(serial);
  return out;
}

}  // namespace iotpki::store
