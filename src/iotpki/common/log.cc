#include "iotpki/common/log.h"

#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <mutex>
#include <utility>

#include "iotpki/common/strings.h"

namespace iotpki::log {
namespace {

std::atomic<Level> g_level{Level::kInfo};
std::atomic<Format> g_format{Format::kText};
std::function<void(std::string_view)> g_sink;  // tests only

// Writes one line (with its newline) to standard error in one write(2) when it can, whole under
// a lock, at once: nothing is held in a buffer, so a crash loses no line already written. (spdlog
// did the same with a formatter, a log_msg and an fflush per line around it: half of the cost of
// a line that was 7% of a fresh OCSP answer; docs/performance.md, session 7.)
void WriteToStderr(std::string_view line) {
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  while (!line.empty()) {
    ssize_t n = ::write(STDERR_FILENO, line.data(), line.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // nowhere to write: the line is lost, as with any logger
    line.remove_prefix(static_cast<size_t>(n));
  }
}

std::string_view LevelName(Level level) {
  switch (level) {
    case Level::kDebug:
      return "debug";
    case Level::kInfo:
      return "info";
    case Level::kWarn:
      return "warn";
    case Level::kError:
      return "error";
    case Level::kOff:
      return "off";
  }
  return "info";
}

void AppendJsonString(std::string& out, std::string_view s) {
  static const char kHex[] = "0123456789abcdef";
  out.push_back('"');
  for (size_t i = 0; i < s.size();) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(c));
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c < 0x20 || c == 0x7f) {
      out += "\\u00";
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 0xf]);
    } else if (c >= 0x80) {
      size_t n = Utf8SequenceLength(s, i);
      if (n == 0) {
        out += "\\ufffd";
        ++i;
        continue;
      }
      out.append(s.substr(i, n));
      i += n;
      continue;
    } else {
      out.push_back(static_cast<char>(c));
    }
    ++i;
  }
  out.push_back('"');
}

// Text values: bare when they are plain tokens, otherwise quoted with C-style escapes, so that a
// value never contains a space, quote or newline that could be read as another field or line.
void AppendTextValue(std::string& out, std::string_view s) {
  static const char kHex[] = "0123456789abcdef";
  bool plain = !s.empty();
  for (char ch : s) {
    unsigned char c = static_cast<unsigned char>(ch);
    if (c <= 0x20 || c >= 0x7f || c == '"' || c == '=' || c == '\\') {
      plain = false;
      break;
    }
  }
  if (plain) {
    out.append(s);
    return;
  }
  out.push_back('"');
  for (char ch : s) {
    unsigned char c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(ch);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c < 0x20 || c >= 0x7f) {
      out += "\\x";
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 0xf]);
    } else {
      out.push_back(ch);
    }
  }
  out.push_back('"');
}

// 2026-12-06T16:40:00.123Z. The date and time to the second are formatted once per second per
// thread.
void AppendTimestamp(std::string& out, int64_t unix_millis) {
  struct Second {
    int64_t secs = -1;
    char text[80] = {};  // room for any int the compiler cannot rule out
  };
  thread_local Second cached;
  int64_t secs = unix_millis / 1000;
  if (secs != cached.secs) {
    std::time_t t = static_cast<std::time_t>(secs);
    std::tm tm{};
    gmtime_r(&t, &tm);
    std::snprintf(cached.text, sizeof cached.text, "%04d-%02d-%02dT%02d:%02d:%02d",
                  tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
    cached.secs = secs;
  }
  out.append(cached.text);
  int ms = static_cast<int>(unix_millis % 1000);
  out.push_back('.');
  out.push_back(static_cast<char>('0' + ms / 100));
  out.push_back(static_cast<char>('0' + ms / 10 % 10));
  out.push_back(static_cast<char>('0' + ms % 10));
  out.push_back('Z');
}

void AppendLine(std::string& out, Format format, Level level, int64_t unix_millis,
                std::string_view event, std::span<const Field> fields) {
  if (format == Format::kJson) {
    out += "{\"time\":\"";
    AppendTimestamp(out, unix_millis);
    out += "\",\"level\":\"";
    out += LevelName(level);
    out += "\",\"event\":";
    AppendJsonString(out, event);
    for (const Field& f : fields) {
      out.push_back(',');
      AppendJsonString(out, f.key);
      out.push_back(':');
      if (f.number) {
        out += f.text;
      } else {
        AppendJsonString(out, f.text);
      }
    }
    out.push_back('}');
    return;
  }
  AppendTimestamp(out, unix_millis);
  out.push_back(' ');
  std::string_view name = LevelName(level);
  for (char c : name) out.push_back(static_cast<char>(c - 'a' + 'A'));
  out.append(6 - name.size(), ' ');
  AppendTextValue(out, event);
  for (const Field& f : fields) {
    out.push_back(' ');
    out.append(f.key);
    out.push_back('=');
    AppendTextValue(out, f.text);
  }
}

}  // namespace

Field::Field(std::string_view k, double v) : key(k), number(true) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  text = buf;
}

Result<Level> ParseLevel(std::string_view name) {
  if (name == "debug") return Level::kDebug;
  if (name == "info") return Level::kInfo;
  if (name == "warn" || name == "warning") return Level::kWarn;
  if (name == "error") return Level::kError;
  if (name == "off") return Level::kOff;
  return Fail(Code::kInvalidArgument, "log level '" + std::string(name.substr(0, 32)) +
                                          "' is not one of debug, info, warn, error, off");
}

Result<Format> ParseFormat(std::string_view name) {
  if (name == "text") return Format::kText;
  if (name == "json") return Format::kJson;
  return Fail(Code::kInvalidArgument,
              "log format '" + std::string(name.substr(0, 32)) + "' is not one of text, json");
}

void Configure(Format format, Level level) {
  g_format.store(format);
  g_level.store(level);
}

Format DefaultFormat() { return isatty(STDERR_FILENO) == 1 ? Format::kText : Format::kJson; }

void SetSinkForTesting(std::function<void(std::string_view line)> sink) {
  g_sink = std::move(sink);
}

bool Enabled(Level level) {
  Level min = g_level.load(std::memory_order_relaxed);
  return min != Level::kOff && level >= min;
}

std::string FormatLine(Format format, Level level, int64_t unix_millis, std::string_view event,
                       std::span<const Field> fields) {
  std::string out;
  out.reserve(128);
  AppendLine(out, format, level, unix_millis, event, fields);
  return out;
}

void Write(Level level, std::string_view event, std::span<const Field> fields) {
  if (!Enabled(level)) return;
  int64_t millis = std::chrono::duration_cast<std::chrono::milliseconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count();
  // Each thread formats into its own buffer, kept between lines (no allocation per line).
  thread_local std::string line;
  line.clear();
  AppendLine(line, g_format.load(std::memory_order_relaxed), level, millis, event, fields);
  if (g_sink) return g_sink(line);
  line.push_back('\n');
  WriteToStderr(line);
  if (line.capacity() > (64u << 10)) line = std::string();  // after an unusually long line
}

}  // namespace iotpki::log
