#include "iotpki/cli/serve_config.h"

#include <toml++/toml.h>

#include <algorithm>
#include <array>
#include <string_view>

#include "iotpki/common/file.h"
#include "iotpki/mqtt/client.h"

namespace iotpki::cli {
namespace {

// The keys of each table; anything else is a typo that would otherwise silently keep a default.
struct Table {
  std::string_view name;
  std::vector<std::string_view> keys;
};
const std::array<Table, 4>& Tables() {
  static const std::array<Table, 4> tables = {
      Table{"server",
            {"listen", "admin_listen", "names", "certificate", "key", "io_threads",
             "handler_threads", "max_body_bytes", "max_header_bytes", "max_connections",
             "max_connections_per_source", "handshake_timeout_s", "request_timeout_s",
             "idle_timeout_s", "drain_timeout_s", "max_group_commit"}},
      Table{"bootstrap", {"token_window_s"}},
      Table{"campaigns", {"enabled", "mqtt_url", "mqtt_ca_file", "interval_s", "lease_s"}},
      Table{"log", {"format", "level"}},
  };
  return tables;
}

// Reads the values of one parsed file, each refusal naming the file and the key.
class Reader {
 public:
  Reader(const toml::table& t, const std::string& path) : t_(t), path_(path) {}

  tl::unexpected<Error> Bad(std::string_view key, std::string_view what) const {
    return Fail(Code::kInvalidArgument, path_ + ": " + std::string(key) + " " + std::string(what));
  }

  Result<void> CheckLayout() const {
    for (const auto& [name, node] : t_) {
      // A copy for the lambda: clang 14 cannot capture a structured binding.
      std::string_view table_name = name.str();
      auto table = std::find_if(Tables().begin(), Tables().end(),
                                [&](const Table& t) { return t.name == table_name; });
      if (table == Tables().end()) {
        return Fail(Code::kInvalidArgument,
                    path_ + ": unknown table [" + std::string(name.str()) +
                        "] (the tables are [server], [bootstrap], [campaigns] and [log])");
      }
      const toml::table* keys = node.as_table();
      if (keys == nullptr) return Bad(name.str(), "must be a table");
      for (const auto& [key, value] : *keys) {
        if (std::find(table->keys.begin(), table->keys.end(), key.str()) == table->keys.end()) {
          return Fail(Code::kInvalidArgument, path_ + ": unknown key " + std::string(name.str()) +
                                                  "." + std::string(key.str()));
        }
      }
    }
    return {};
  }

  Result<std::optional<int64_t>> Integer(const char* key, int64_t lo, int64_t hi) const {
    auto node = t_.at_path(key);
    if (!node) return std::optional<int64_t>();
    auto v = node.value_exact<int64_t>();
    if (!v || *v < lo || *v > hi) {
      return Bad(key,
                 "must be an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
    }
    return v;
  }

  Result<void> String(const char* key, std::string& out) const {
    auto node = t_.at_path(key);
    if (!node) return {};
    auto v = node.value_exact<std::string>();
    if (!v) return Bad(key, "must be a string");
    out = *v;
    return {};
  }

  Result<void> Bool(const char* key, bool& out) const {
    auto node = t_.at_path(key);
    if (!node) return {};
    auto v = node.value_exact<bool>();
    if (!v) return Bad(key, "must be true or false");
    out = *v;
    return {};
  }

  Result<void> Strings(const char* key, std::vector<std::string>& out) const {
    auto node = t_.at_path(key);
    if (!node) return {};
    const toml::array* arr = node.as_array();
    if (arr == nullptr) return Bad(key, "must be an array of strings");
    for (const auto& n : *arr) {
      auto s = n.value_exact<std::string>();
      if (!s) return Bad(key, "must be an array of strings");
      out.push_back(*s);
    }
    return {};
  }

  Result<void> Size(const char* key, size_t& out, int64_t lo, int64_t hi) const {
    IOTPKI_TRY(auto v, Integer(key, lo, hi));
    if (v) out = static_cast<size_t>(*v);
    return {};
  }

  Result<void> Seconds(const char* key, std::chrono::seconds& out) const {
    IOTPKI_TRY(auto v, Integer(key, 1, 3600));
    if (v) out = std::chrono::seconds(*v);
    return {};
  }

  Result<void> Threads(const char* key, int& out) const {
    IOTPKI_TRY(auto v, Integer(key, 0, 1024));
    if (v) out = static_cast<int>(*v);
    return {};
  }

  // A string parsed by `parse` (log::ParseFormat, log::ParseLevel), whose error names the choices.
  template <class T, class Parse>
  Result<void> Choice(const char* key, std::optional<T>& out, Parse parse) const {
    std::string text;
    IOTPKI_CHECK(String(key, text));
    if (!t_.at_path(key)) return {};
    auto v = parse(text);
    if (!v) {
      return Fail(Code::kInvalidArgument, path_ + ": " + key + ": " + v.error().message());
    }
    out = *v;
    return {};
  }

 private:
  const toml::table& t_;
  const std::string& path_;
};

}  // namespace

Result<ServeConfig> LoadServeConfig(const std::string& path) {
  if (path.empty()) return ServeConfig{};
  IOTPKI_TRY(std::string text, ReadTextFile(path, 1 << 20));
  return ParseServeConfig(text, path);
}

Result<ServeConfig> ParseServeConfig(std::string_view text, const std::string& path) {
  toml::table t;
  // Debian's toml++ reports parse errors by exception; this is where they stop.
  try {
    t = toml::parse(text, path);
  } catch (const toml::parse_error& e) {
    return Fail(Code::kInvalidArgument, path + ":" + std::to_string(e.source().begin.line) + ": " +
                                            std::string(e.description()));
  }
  Reader r(t, path);
  IOTPKI_CHECK(r.CheckLayout());
  ServeConfig c;
  IOTPKI_CHECK(r.String("server.listen", c.listen));
  IOTPKI_CHECK(r.String("server.admin_listen", c.admin_listen));
  IOTPKI_CHECK(r.String("server.certificate", c.certificate));
  IOTPKI_CHECK(r.String("server.key", c.key));
  IOTPKI_CHECK(r.Strings("server.names", c.names));
  server::Limits& l = c.server.limits;
  IOTPKI_CHECK(r.Threads("server.io_threads", c.server.io_threads));
  IOTPKI_CHECK(r.Threads("server.handler_threads", c.server.handler_threads));
  IOTPKI_CHECK(r.Size("server.max_body_bytes", l.max_body_bytes, 1024, 16 << 20));
  IOTPKI_CHECK(r.Size("server.max_header_bytes", l.max_header_bytes, 1024, 1 << 20));
  IOTPKI_CHECK(r.Size("server.max_connections", l.max_connections, 1, 1 << 20));
  IOTPKI_CHECK(
      r.Size("server.max_connections_per_source", l.max_connections_per_source, 1, 1 << 20));
  IOTPKI_CHECK(r.Seconds("server.handshake_timeout_s", l.handshake_timeout));
  IOTPKI_CHECK(r.Seconds("server.request_timeout_s", l.request_timeout));
  IOTPKI_CHECK(r.Seconds("server.idle_timeout_s", l.idle_timeout));
  IOTPKI_CHECK(r.Seconds("server.drain_timeout_s", l.drain_timeout));
  IOTPKI_TRY(auto window, r.Integer("bootstrap.token_window_s", 1, 86400));
  if (window) c.enroll.token_window_seconds = *window;
  IOTPKI_TRY(auto group, r.Integer("server.max_group_commit", 1, 100000));
  if (group) c.enroll.max_group_commit = static_cast<size_t>(*group);
  IOTPKI_CHECK(r.Bool("campaigns.enabled", c.campaigns.enabled));
  IOTPKI_CHECK(r.String("campaigns.mqtt_url", c.campaigns.mqtt_url));
  if (!c.campaigns.mqtt_url.empty()) {
    if (auto url = mqtt::ParseBrokerUrl(c.campaigns.mqtt_url); !url) {
      return Fail(Code::kInvalidArgument, path + ": campaigns.mqtt_url: " + url.error().message());
    }
  }
  IOTPKI_CHECK(r.String("campaigns.mqtt_ca_file", c.campaigns.mqtt_ca_file));
  IOTPKI_TRY(auto interval, r.Integer("campaigns.interval_s", 1, 3600));
  if (interval) c.campaigns.interval_s = *interval;
  IOTPKI_TRY(auto lease, r.Integer("campaigns.lease_s", 10, 86400));
  if (lease) c.campaigns.lease_s = *lease;
  IOTPKI_CHECK(r.Choice("log.format", c.log_format, log::ParseFormat));
  IOTPKI_CHECK(r.Choice("log.level", c.log_level, log::ParseLevel));
  return c;
}

Result<std::pair<std::string, uint16_t>> ParseListen(const std::string& listen) {
  auto bad = [&] {
    return Fail(Code::kInvalidArgument,
                "the listen address must be HOST:PORT (port 0 to 65535; "
                "IPv6 as [::1]:8443), not '" +
                    listen + "'");
  };
  size_t colon = listen.rfind(':');
  if (colon == std::string::npos || colon + 1 == listen.size()) return bad();
  std::string host = listen.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  std::string port_text = listen.substr(colon + 1);
  if (host.empty() || port_text.size() > 5 ||
      port_text.find_first_not_of("0123456789") != std::string::npos ||
      std::stoi(port_text) > 65535) {
    return bad();
  }
  return std::make_pair(host, static_cast<uint16_t>(std::stoi(port_text)));
}

}  // namespace iotpki::cli
