// `iotpki serve --config FILE`: the TOML file's [server], [bootstrap], [campaigns] and [log] tables
// read into the options of the transport, the enrollment service and the logger. Every key is
// optional. A refusal is one line naming the file, the key and what it must be.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "iotpki/common/error.h"
#include "iotpki/common/log.h"
#include "iotpki/enroll/service.h"
#include "iotpki/server/server.h"

namespace iotpki::cli {

// [campaigns]: the rotation scheduler inside serve
// (docs/rotation.md#the-scheduler-in-iotpki-serve).
struct CampaignsConfig {
  bool enabled = false;
  std::string mqtt_url;      // mqtts://HOST[:PORT] of the broker
  std::string mqtt_ca_file;  // PEM CAs that sign the broker's certificate
  int64_t interval_s = 1;    // between scheduler passes when idle
  int64_t lease_s = 300;     // how long a pass's claim holds a job
};

struct ServeConfig {
  std::string listen = "127.0.0.1:8443";
  // The dashboard's listener (admin/admin_listener.h); empty: none.
  std::string admin_listen;
  std::vector<std::string> names;  // extra subjectAltNames for the server certificate
  std::string certificate;         // PEM chain (leaf first); empty: made and kept in DIR
  std::string key;                 // PEM key for `certificate`, encrypted with the passphrase
  server::ServerOptions server;
  enroll::EnrollOptions enroll;
  CampaignsConfig campaigns;
  // [log]; unset: the command line's choice, else its default.
  std::optional<log::Format> log_format;
  std::optional<log::Level> log_level;
};

// The configuration in `path`; the defaults for an empty path. InvalidArgument for a file that
// is not TOML (with the line), an unknown table or key, a mistyped value or one out of range.
Result<ServeConfig> LoadServeConfig(const std::string& path);
// Parses the same text as LoadServeConfig; `path` only names the file in errors.
Result<ServeConfig> ParseServeConfig(std::string_view text, const std::string& path);

// "127.0.0.1:8443", "[::1]:0", "localhost:8443": the host (without brackets) and the port.
Result<std::pair<std::string, uint16_t>> ParseListen(const std::string& listen);

}  // namespace iotpki::cli
