// Time is injected so that expiry, rotation and token windows are testable without sleeping.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace iotpki {

using TimePoint = std::chrono::system_clock::time_point;

class Clock {
 public:
  virtual ~Clock() = default;
  virtual TimePoint Now() const = 0;
  // Seconds since the Unix epoch.
  int64_t NowUnix() const {
    return std::chrono::duration_cast<std::chrono::seconds>(Now().time_since_epoch()).count();
  }
};

class SystemClock final : public Clock {
 public:
  TimePoint Now() const override { return std::chrono::system_clock::now(); }
  static const SystemClock& Instance() {
    static const SystemClock clock;
    return clock;
  }
};

// For tests. Not thread-safe: set it before handing it out.
class FakeClock final : public Clock {
 public:
  explicit FakeClock(int64_t unix_seconds) : now_(std::chrono::seconds(unix_seconds)) {}
  TimePoint Now() const override { return now_; }
  void Set(int64_t unix_seconds) { now_ = TimePoint(std::chrono::seconds(unix_seconds)); }
  void Advance(std::chrono::seconds by) { now_ += by; }

 private:
  TimePoint now_;
};

// 99991231235959Z, the 802.1AR "no well-defined expiration" notAfter.
inline constexpr int64_t kNoExpiryUnix = 253402300799;

// "2026-11-27T21:20:58Z".
std::string FormatUtc(int64_t unix_seconds);

}  // namespace iotpki
