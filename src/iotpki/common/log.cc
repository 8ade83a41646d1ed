#include "iotpki/common/log.h"

#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <mutex>
#include <thread>
#include <utility>

#include "iotpki/common/strings.h"

namespace iotpki::log {
namespace {

std::atomic<Level> g_level{Level::kInfo};
std::atomic<Format> g_format{Format::kText};
std::function<void(std::string_view)> g_sink;  // tests only

// Writes to standard error, retrying EINTR and partial writes. Called with the writer's lock.
void WriteAll(std::string_view text) {
  while (!text.empty()) {
    ssize_t n = ::write(STDERR_FILENO, text.data(), text.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // nowhere to write: the lines are lost, as with any logger
    text.remove_prefix(static_cast<size_t>(n));
  }
}

class StderrSink;
StderrSink& Sink();

// Standard error, with batched lines (Delivery::kBatched: the access log's info lines) held for
// at most kBatchDelay and written together by a thread of its own; every other line is written
// at once, after the lines held before it, so the order of lines is kept. A crash (or a kill)
// loses at most the batched lines of the last kBatchDelay; an orderly exit (exit(), a return
// from main) writes them, and writes any later line at once. Never destroyed, so that a line
// logged by another static destructor still has somewhere to go. Before, every line was a write(2)
// of its own: 3.7% of a fresh OCSP answer's CPU (docs/performance.md, session 7).
class StderrSink {
 public:
  static constexpr std::chrono::milliseconds kBatchDelay{20};
  static constexpr size_t kBatchBytes = 64 << 10;  // written at once beyond this

  // At exit: what is held is written, and batched lines from now on are written at once.
  void Stop() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_one();
    Flush();
  }

  void WriteNow(std::string_view line) {
    std::lock_guard<std::mutex> write_lock(write_mu_);
    WritePendingLocked();
    WriteAll(line);
  }

  void WriteBatched(std::string_view line) {
    bool full = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stop_) {
        full = true;  // exiting: no thread to write it later
      } else {
        if (!thread_.joinable()) {
          thread_ = std::thread([this] { Run(); });
          std::atexit([] { Sink().Stop(); });
        }
        bool was_empty = pending_.empty();
        pending_.append(line);
        full = pending_.size() >= kBatchBytes;
        if (was_empty && !full) cv_.notify_one();
      }
    }
    if (full) Flush();
  }

  void Flush() {
    std::lock_guard<std::mutex> write_lock(write_mu_);
    WritePendingLocked();
  }

 private:
  // The lines held so far, taken under mu_ and written under write_mu_ (held by the caller), so
  // that appending never waits for a write.
  void WritePendingLocked() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (pending_.empty()) return;
      writing_.swap(pending_);
    }
    WriteAll(writing_);
    writing_.clear();
    if (writing_.capacity() > 4 * kBatchBytes) writing_ = std::string();
  }

  void Run() {
    std::unique_lock<std::mutex> lock(mu_);
    while (!stop_) {
      cv_.wait(lock, [&] { return stop_ || !pending_.empty(); });
      if (stop_) break;
      cv_.wait_for(lock, kBatchDelay, [&] { return stop_; });
      lock.unlock();
      Flush();
      lock.lock();
    }
  }

  std::mutex write_mu_;  // one writer of standard error at a time, in order
  std::string writing_;  // guarded by write_mu_
  std::mutex mu_;        // guards what follows
  std::condition_variable cv_;
  std::string pending_;
  bool stop_ = false;
  std::thread thread_;
};

StderrSink& Sink() {
  static StderrSink* sink = new StderrSink();
  return *sink;
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
        out += f.value();
      } else {
        AppendJsonString(out, f.value());
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
    AppendTextValue(out, f.value());
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

void Write(Level level, std::string_view event, std::span<const Field> fields, Delivery delivery) {
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
  if (delivery == Delivery::kBatched && level < Level::kWarn) {
    Sink().WriteBatched(line);
  } else {
    Sink().WriteNow(line);
  }
  if (line.capacity() > (64u << 10)) line = std::string();  // after an unusually long line
}

}  // namespace iotpki::log
