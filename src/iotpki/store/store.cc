#include "iotpki/store/store.h"

#include <array>
#include <utility>

namespace iotpki::store {
namespace {

template <class E, size_t N>
Result<E> ParseName(const std::array<std::pair<E, std::string_view>, N>& table,
                    std::string_view name, std::string_view what) {
  for (const auto& [value, text] : table) {
    if (text == name) return value;
  }
  return Fail(Code::kInvalidArgument,
              "unknown " + std::string(what) + " '" + std::string(name) + "'");
}

template <class E, size_t N>
std::string_view NameOf(const std::array<std::pair<E, std::string_view>, N>& table, E value) {
  for (const auto& [v, text] : table) {
    if (v == value) return text;
  }
  return "unknown";
}

constexpr std::array<std::pair<DeviceState, std::string_view>, 4> kDeviceStates{{
    {DeviceState::kManufactured, "manufactured"},
    {DeviceState::kActive, "active"},
    {DeviceState::kSuspended, "suspended"},
    {DeviceState::kDecommissioned, "decommissioned"},
}};

constexpr std::array<std::pair<CertProfile, std::string_view>, 5> kCertProfiles{{
    {CertProfile::kRoot, "root"},
    {CertProfile::kIssuingCa, "issuing-ca"},
    {CertProfile::kIDevId, "idevid"},
    {CertProfile::kLDevId, "ldevid"},
    {CertProfile::kServer, "server"},
}};

constexpr std::array<std::pair<KeyOrigin, std::string_view>, 3> kKeyOrigins{{
    {KeyOrigin::kDevice, "device"},
    {KeyOrigin::kHardware, "hardware"},
    {KeyOrigin::kGenerated, "generated"},
}};

constexpr std::array<std::pair<CertStatus, std::string_view>, 2> kCertStatuses{{
    {CertStatus::kValid, "valid"},
    {CertStatus::kRevoked, "revoked"},
}};

constexpr std::array<std::pair<CampaignMode, std::string_view>, 2> kCampaignModes{{
    {CampaignMode::kRenew, "renew"},
    {CampaignMode::kRekey, "rekey"},
}};

constexpr std::array<std::pair<CampaignState, std::string_view>, 5> kCampaignStates{{
    {CampaignState::kRunning, "running"},
    {CampaignState::kPaused, "paused"},
    {CampaignState::kHalted, "halted"},
    {CampaignState::kCancelled, "cancelled"},
    {CampaignState::kDone, "done"},
}};

constexpr std::array<std::pair<JobState, std::string_view>, kJobStateCount> kJobStates{{
    {JobState::kPending, "pending"},
    {JobState::kNotified, "notified"},
    {JobState::kEnrolled, "enrolled"},
    {JobState::kConfirmed, "confirmed"},
    {JobState::kFailed, "failed"},
}};

}  // namespace

std::string_view CampaignModeName(CampaignMode mode) { return NameOf(kCampaignModes, mode); }
Result<CampaignMode> ParseCampaignMode(std::string_view name) {
  return ParseName(kCampaignModes, name, "campaign mode");
}
std::string_view CampaignStateName(CampaignState state) { return NameOf(kCampaignStates, state); }
Result<CampaignState> ParseCampaignState(std::string_view name) {
  return ParseName(kCampaignStates, name, "campaign state");
}
std::string_view JobStateName(JobState state) { return NameOf(kJobStates, state); }
Result<JobState> ParseJobState(std::string_view name) {
  return ParseName(kJobStates, name, "job state");
}

std::string_view DeviceStateName(DeviceState state) { return NameOf(kDeviceStates, state); }
Result<DeviceState> ParseDeviceState(std::string_view name) {
  return ParseName(kDeviceStates, name, "device state");
}

std::string_view CertProfileName(CertProfile profile) { return NameOf(kCertProfiles, profile); }
Result<CertProfile> ParseCertProfile(std::string_view name) {
  return ParseName(kCertProfiles, name, "certificate profile");
}

std::string_view KeyOriginName(KeyOrigin origin) { return NameOf(kKeyOrigins, origin); }
Result<KeyOrigin> ParseKeyOrigin(std::string_view name) {
  return ParseName(kKeyOrigins, name, "key origin");
}

std::string_view CertStatusName(CertStatus status) { return NameOf(kCertStatuses, status); }
Result<CertStatus> ParseCertStatus(std::string_view name) {
  return ParseName(kCertStatuses, name, "certificate status");
}

Result<RevocationReason> ParseRevocationReason(std::string_view name) {
  IOTPKI_TRY(RevocationReason reason, x509::ParseRevocationReason(name));
  if (!IsFinalRevocationReason(reason)) {
    return Fail(Code::kInvalidArgument, "revocation reason '" + std::string(name) +
                                            "' is not supported: a revocation is final");
  }
  return reason;
}

bool IsFinalRevocationReason(RevocationReason reason) {
  return reason != RevocationReason::kCertificateHold && reason != RevocationReason::kRemoveFromCrl;
}

WriteBatch& WriteBatch::InsertDevice(Device device) {
  ops_.emplace_back(InsertDeviceOp{std::move(device)});
  return *this;
}

WriteBatch& WriteBatch::UpdateDeviceState(std::string device_id, DeviceState from, DeviceState to) {
  ops_.emplace_back(UpdateDeviceStateOp{std::move(device_id), from, to});
  return *this;
}

WriteBatch& WriteBatch::InsertCertificate(CertificateRecord cert) {
  ops_.emplace_back(InsertCertificateOp{std::move(cert)});
  return *this;
}

WriteBatch& WriteBatch::RevokeCertificate(std::string serial, RevocationReason reason,
                                          int64_t revoked_at) {
  ops_.emplace_back(RevokeCertificateOp{std::move(serial), reason, revoked_at});
  return *this;
}

WriteBatch& WriteBatch::MarkCertificateUsed(std::string serial) {
  ops_.emplace_back(MarkCertificateUsedOp{std::move(serial)});
  return *this;
}

WriteBatch& WriteBatch::AppendAudit(AuditEvent event) {
  ops_.emplace_back(AppendAuditOp{std::move(event)});
  return *this;
}

WriteBatch& WriteBatch::RecordToken(std::string device_id, int64_t timestamp) {
  ops_.emplace_back(RecordTokenOp{std::move(device_id), timestamp});
  return *this;
}

WriteBatch& WriteBatch::UpdateJob(UpdateJobOp op) {
  ops_.emplace_back(std::move(op));
  return *this;
}

WriteBatch& WriteBatch::UpdateCampaign(UpdateCampaignOp op) {
  ops_.emplace_back(std::move(op));
  return *this;
}

WriteBatch& WriteBatch::InsertOperatorCertificate(OperatorCertificate cert) {
  ops_.emplace_back(InsertOperatorCertificateOp{std::move(cert)});
  return *this;
}

WriteBatch& WriteBatch::RevokeOperatorCertificate(std::string serial) {
  ops_.emplace_back(RevokeOperatorCertificateOp{std::move(serial)});
  return *this;
}

WriteBatch& WriteBatch::Append(const WriteBatch& other) {
  ops_.insert(ops_.end(), other.ops_.begin(), other.ops_.end());
  return *this;
}

WriteBatch& WriteBatch::Append(WriteBatch&& other) {
  if (ops_.empty()) {
    ops_ = std::move(other.ops_);
  } else {
    ops_.insert(ops_.end(), std::make_move_iterator(other.ops_.begin()),
                std::make_move_iterator(other.ops_.end()));
  }
  other.ops_.clear();
  return *this;
}

}  // namespace iotpki::store
