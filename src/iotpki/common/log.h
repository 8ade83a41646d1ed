// Structured logging for operators: one line per event, as text on a terminal or JSON Lines
// (`--log-format json`), on standard error, a line per write. An event is a short stable name
// ("http.request", "enroll.refused") and key/value fields; grep for a device id or a request id
// finds every line about it.
//
// Never log a secret: no passphrase, bootstrap secret, token, private key or key share. Fields
// that come from a client are escaped (text) or JSON-encoded, so a hostile value cannot forge a
// line.
//
// Thread-safe. Configure once at start (before threads); until then the logger writes text at
// level info.
#pragma once

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <span>
#include <string>
#include <string_view>

#include "iotpki/common/error.h"

namespace iotpki::log {

enum class Level { kDebug, kInfo, kWarn, kError, kOff };
enum class Format { kText, kJson };

// "debug", "info", "warn" (or "warning"), "error", "off"; InvalidArgument naming the choices.
Result<Level> ParseLevel(std::string_view name);
// "text", "json".
Result<Format> ParseFormat(std::string_view name);

void Configure(Format format, Level level);
bool Enabled(Level level);
// Text when standard error is a terminal (a person reads it), JSON Lines otherwise (a file, a
// journal, a log shipper).
Format DefaultFormat();

// One key/value pair. Numbers are written as numbers in JSON.
struct Field {
  Field(std::string_view k, std::string_view v) : key(k), text(v) {}
  Field(std::string_view k, const std::string& v) : key(k), text(v) {}
  Field(std::string_view k, const char* v) : key(k), text(v == nullptr ? "" : v) {}
  Field(std::string_view k, int64_t v) : key(k), number(true), text(std::to_string(v)) {}
  Field(std::string_view k, int v) : key(k), number(true), text(std::to_string(v)) {}
  Field(std::string_view k, uint64_t v) : key(k), number(true), text(std::to_string(v)) {}
  Field(std::string_view k, double v);
  Field(std::string_view k, bool v) : key(k), number(true), text(v ? "true" : "false") {}

  // A text field that refers to `v` instead of copying it: `v` must outlive the Write the field
  // is given to (for a hot path's lines, built from values it holds anyway).
  static Field View(std::string_view k, std::string_view v) {
    Field f(k, std::string_view());
    f.view = v;
    return f;
  }
  // The value, as text (a number's digits).
  std::string_view value() const { return view.data() != nullptr ? view : text; }

  std::string_view key;
  bool number = false;
  std::string text;
  std::string_view view;  // View's value; null otherwise
};

// kNow: written before Write returns. kBatched (for the access log's lines, one per request):
// debug and info lines are held and written together at most 20 ms later (a crash loses at most
// those), warnings and errors at once; the order of lines is kept either way.
enum class Delivery { kNow, kBatched };

void Write(Level level, std::string_view event, std::span<const Field> fields,
           Delivery delivery = Delivery::kNow);
inline void Write(Level level, std::string_view event, std::initializer_list<Field> fields,
                  Delivery delivery = Delivery::kNow) {
  Write(level, event, std::span<const Field>(fields.begin(), fields.size()), delivery);
}

inline void Debug(std::string_view event, std::initializer_list<Field> fields = {}) {
  if (Enabled(Level::kDebug)) Write(Level::kDebug, event, fields);
}
inline void Info(std::string_view event, std::initializer_list<Field> fields = {}) {
  if (Enabled(Level::kInfo)) Write(Level::kInfo, event, fields);
}
inline void Warn(std::string_view event, std::initializer_list<Field> fields = {}) {
  if (Enabled(Level::kWarn)) Write(Level::kWarn, event, fields);
}
inline void Error(std::string_view event, std::initializer_list<Field> fields = {}) {
  if (Enabled(Level::kError)) Write(Level::kError, event, fields);
}

// The formatted line without the trailing newline, as Write would print it at `unix_millis`
// (for tests and for callers that need the line itself).
std::string FormatLine(Format format, Level level, int64_t unix_millis, std::string_view event,
                       std::span<const Field> fields);
inline std::string FormatLine(Format format, Level level, int64_t unix_millis,
                              std::string_view event, std::initializer_list<Field> fields) {
  return FormatLine(format, level, unix_millis, event,
                    std::span<const Field>(fields.begin(), fields.size()));
}

// Sends every line (without its newline) to `sink` instead of standard error; nullptr restores
// standard error. For tests: set it before the threads that log start and reset it after they
// stop; `sink` must be thread-safe.
void SetSinkForTesting(std::function<void(std::string_view line)> sink);

}  // namespace iotpki::log
