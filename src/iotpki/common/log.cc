#include "iotpki/common/log.h"

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <memory>
#include <mutex>
#include <utility>

#include "iotpki/common/strings.h"

namespace iotpki::log {
namespace {

std::atomic<Level> g_level{Level::kInfo};
std::atomic<Format> g_format{Format::kText};
std::function<void(std::string_view)> g_sink;  // tests only

spdlog::logger& Logger() {
  // Formatting is ours (one line, already escaped); spdlog writes it whole under its lock.
  static std::shared_ptr<spdlog::logger> logger = [] {
    auto l = std::make_shared<spdlog::logger>("iotpki",
                                              std::make_shared<spdlog::sinks::stderr_sink_mt>());
    l->set_pattern("%v");
    l->set_level(spdlog::level::trace);
    l->flush_on(spdlog::level::trace);
    return l;
  }();
  return *logger;
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

std::string Timestamp(int64_t unix_millis) {
  std::time_t secs = static_cast<std::time_t>(unix_millis / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[96];  // room for any int the compiler cannot rule out
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>(unix_millis % 1000));
  return buf;
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
  if (format == Format::kJson) {
    out += "{\"time\":\"" + Timestamp(unix_millis) + "\",\"level\":\"";
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
    return out;
  }
  out += Timestamp(unix_millis);
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
  return out;
}

void Write(Level level, std::string_view event, std::span<const Field> fields) {
  if (!Enabled(level)) return;
  int64_t millis = std::chrono::duration_cast<std::chrono::milliseconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count();
  std::string line = FormatLine(g_format.load(), level, millis, event, fields);
  if (g_sink) return g_sink(line);
  Logger().log(spdlog::level::info, std::string_view(line));
}

}  // namespace iotpki::log
