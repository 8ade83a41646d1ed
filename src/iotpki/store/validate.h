// Input rules shared by every Store backend, so that all of them refuse exactly the same inputs
// before touching their database, plus the cursor format of ListDevices. For backends only.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "iotpki/common/error.h"
#include "iotpki/common/strings.h"
#include "iotpki/store/store.h"

namespace iotpki::store {

// Upper bounds that keep a single row from being abusive; generous for legitimate use.
inline constexpr size_t kMaxTextBytes = 1024;         // serial, model, batch, subject, actor, ...
inline constexpr size_t kMaxDetailsBytes = 64 << 10;  // audit details (JSON).
inline constexpr size_t kMaxDerBytes = 64 << 10;      // one certificate.

// True if s is non-empty, even-length and only 0-9a-f.
bool IsLowerHex(std::string_view s);

// InvalidArgument naming the first offending operation and field. Checks formats (ids, hex,
// UTF-8 without NUL, since PostgreSQL TEXT refuses both), lengths, and that store-managed fields
// are left at their defaults. Does not check anything that needs the database.
Result<void> ValidateBatch(const WriteBatch& batch);
Result<void> ValidateFilter(const DeviceFilter& filter);
Result<void> ValidatePageSize(size_t limit);
// A campaign name: 1..128 bytes of [A-Za-z0-9._-]. Also used by the CLI, to refuse a bad name
// before opening the store.
Result<void> ValidateCampaignName(std::string_view name);
Result<void> ValidateCampaignSpec(const CampaignSpec& spec);
// Exactly one selection, and a valid one.
Result<void> ValidateCohort(const CampaignCohort& cohort);

// ListDevices cursors. The two query kinds have distinct, self-describing cursors so that one
// passed to the other kind of query is refused rather than misread.
struct DeviceSeqCursor {
  int64_t seq = 0;  // Insertion sequence of the last device returned.
};
struct ExpiringCursor {
  int64_t not_after = 0;    // Last matched certificate's not_after ...
  std::string cert_serial;  // ... and serial.
};
std::string EncodeCursor(const DeviceSeqCursor& cursor);
std::string EncodeCursor(const ExpiringCursor& cursor);
Result<DeviceSeqCursor> DecodeDeviceSeqCursor(std::string_view cursor);
Result<ExpiringCursor> DecodeExpiringCursor(std::string_view cursor);

}  // namespace iotpki::store
