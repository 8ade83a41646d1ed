#include "iotpki/cli/serve_config.h"

#include <gtest/gtest.h>

namespace iotpki::cli {
namespace {

TEST(ServeConfigTest, NoFileGivesTheDefaults) {
  auto c = LoadServeConfig("");
  ASSERT_TRUE(c) << c.error().ToString();
  EXPECT_EQ(c->listen, "127.0.0.1:8443");
  EXPECT_TRUE(c->admin_listen.empty());
  EXPECT_EQ(c->server.limits.max_connections, server::Limits().max_connections);
  EXPECT_EQ(c->enroll.token_window_seconds, 300);
  EXPECT_FALSE(c->log_format);
  EXPECT_FALSE(c->log_level);
}

TEST(ServeConfigTest, EveryKeyIsRead) {
  auto c = ParseServeConfig(R"([server]
listen = "0.0.0.0:9443"
admin_listen = "127.0.0.1:9444"
names = ["est.example.com", "192.0.2.7"]
certificate = "/etc/iotpki/chain.pem"
key = "/etc/iotpki/server.key"
io_threads = 2
handler_threads = 16
max_body_bytes = 2048
max_header_bytes = 4096
max_connections = 64
max_connections_per_source = 16
handshake_timeout_s = 5
request_timeout_s = 6
idle_timeout_s = 7
drain_timeout_s = 8
max_group_commit = 100

[bootstrap]
token_window_s = 60

[campaigns]
enabled = true
mqtt_url = "mqtts://broker.example.com:8884"
mqtt_ca_file = "/etc/iotpki/broker-ca.pem"
interval_s = 5
lease_s = 600

[log]
format = "json"
level = "debug"
)",
                            "serve.toml");
  ASSERT_TRUE(c) << c.error().ToString();
  EXPECT_EQ(c->listen, "0.0.0.0:9443");
  EXPECT_EQ(c->admin_listen, "127.0.0.1:9444");
  EXPECT_EQ(c->names, (std::vector<std::string>{"est.example.com", "192.0.2.7"}));
  EXPECT_EQ(c->certificate, "/etc/iotpki/chain.pem");
  EXPECT_EQ(c->key, "/etc/iotpki/server.key");
  EXPECT_EQ(c->server.io_threads, 2);
  EXPECT_EQ(c->server.handler_threads, 16);
  const server::Limits& l = c->server.limits;
  EXPECT_EQ(l.max_body_bytes, 2048u);
  EXPECT_EQ(l.max_header_bytes, 4096u);
  EXPECT_EQ(l.max_connections, 64u);
  EXPECT_EQ(l.max_connections_per_source, 16u);
  EXPECT_EQ(l.handshake_timeout, std::chrono::seconds(5));
  EXPECT_EQ(l.request_timeout, std::chrono::seconds(6));
  EXPECT_EQ(l.idle_timeout, std::chrono::seconds(7));
  EXPECT_EQ(l.drain_timeout, std::chrono::seconds(8));
  EXPECT_EQ(c->enroll.max_group_commit, 100u);
  EXPECT_TRUE(c->campaigns.enabled);
  EXPECT_EQ(c->campaigns.mqtt_url, "mqtts://broker.example.com:8884");
  EXPECT_EQ(c->campaigns.mqtt_ca_file, "/etc/iotpki/broker-ca.pem");
  EXPECT_EQ(c->campaigns.interval_s, 5);
  EXPECT_EQ(c->campaigns.lease_s, 600);
  EXPECT_EQ(c->enroll.token_window_seconds, 60);
  EXPECT_EQ(c->log_format, log::Format::kJson);
  EXPECT_EQ(c->log_level, log::Level::kDebug);
}

// Each refusal is one line: the file, the key and what it must be.
TEST(ServeConfigTest, EachBadConfigSaysWhatIsWrong) {
  struct Case {
    const char* toml;
    const char* error;
  };
  const Case cases[] = {
      {"[server]\nmax_body_bytes = 10",
       "serve.toml: server.max_body_bytes must be an integer in [1024, 16777216]"},
      {"[server]\nmax_body_bytes = \"64k\"",
       "serve.toml: server.max_body_bytes must be an integer in [1024, 16777216]"},
      {"[server]\nio_threads = 1.5",
       "serve.toml: server.io_threads must be an integer in [0, 1024]"},
      {"[server]\nrequest_timeout_s = 3601",
       "serve.toml: server.request_timeout_s must be an integer in [1, 3600]"},
      {"[server]\nmax_connections = 0",
       "serve.toml: server.max_connections must be an integer in [1, 1048576]"},
      {"[server]\nmax_connections_per_source = -1",
       "serve.toml: server.max_connections_per_source must be an integer in [1, 1048576]"},
      {"[server]\nmax_group_commit = 0",
       "serve.toml: server.max_group_commit must be an integer in [1, 100000]"},
      {"[bootstrap]\ntoken_window_s = 0",
       "serve.toml: bootstrap.token_window_s must be an integer in [1, 86400]"},
      {"[server]\nlisten = 8443", "serve.toml: server.listen must be a string"},
      {"[server]\nnames = \"est.example.com\"",
       "serve.toml: server.names must be an array of strings"},
      {"[server]\nnames = [\"a\", 2]", "serve.toml: server.names must be an array of strings"},
      {"[sever]\nlisten = \"x\"",
       "serve.toml: unknown table [sever] (the tables are [server], [bootstrap], [campaigns] and "
       "[log])"},
      {"[server]\nmax_conections = 4", "serve.toml: unknown key server.max_conections"},
      {"server = 3", "serve.toml: server must be a table"},
      {"[log]\nformat = \"xml\"",
       "serve.toml: log.format: log format 'xml' is not one of text, json"},
      {"[log]\nlevel = \"loud\"",
       "serve.toml: log.level: log level 'loud' is not one of debug, info, warn, error, off"},
      {"[log]\nlevel = 3", "serve.toml: log.level must be a string"},
      {"[log]\ncolour = true", "serve.toml: unknown key log.colour"},
      {"[campaigns]\nenabled = 1", "serve.toml: campaigns.enabled must be true or false"},
      {"[campaigns]\nmqtt_url = \"mqtt://b:1883\"",
       "serve.toml: campaigns.mqtt_url: bad MQTT broker URL 'mqtt://b:1883': use "
       "mqtts://HOST[:PORT]"},
      {"[campaigns]\nlease_s = 1",
       "serve.toml: campaigns.lease_s must be an integer in [10, 86400]"},
  };
  for (const Case& c : cases) {
    auto r = ParseServeConfig(c.toml, "serve.toml");
    ASSERT_FALSE(r) << c.toml;
    EXPECT_EQ(r.error().code(), Code::kInvalidArgument) << c.toml;
    EXPECT_EQ(r.error().message(), c.error) << c.toml;
  }
}

TEST(ServeConfigTest, ATomlSyntaxErrorNamesTheLine) {
  auto r = ParseServeConfig("[server]\nlisten = \"0.0.0.0:8443\"\nmax_connections = = 3\n",
                            "serve.toml");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Code::kInvalidArgument);
  EXPECT_EQ(r.error().message().rfind("serve.toml:3: ", 0), 0u) << r.error().message();
}

TEST(ServeConfigTest, AMissingFileIsNamed) {
  auto r = LoadServeConfig("/nonexistent/serve.toml");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().ToString().find("/nonexistent/serve.toml"), std::string::npos)
      << r.error().ToString();
}

TEST(ServeConfigTest, ListenAddresses) {
  using Listen = std::pair<std::string, uint16_t>;
  EXPECT_EQ(ParseListen("127.0.0.1:8443").value(), Listen("127.0.0.1", 8443));
  EXPECT_EQ(ParseListen("[::1]:0").value(), Listen("::1", 0));
  EXPECT_EQ(ParseListen("localhost:65535").value(), Listen("localhost", 65535));
  for (const char* bad :
       {"8443", "localhost:", ":8443", "localhost:65536", "host:84x3", "[]:1", "host:123456"}) {
    auto r = ParseListen(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().message(),
              std::string("the listen address must be HOST:PORT (port 0 to 65535; IPv6 as "
                          "[::1]:8443), not '") +
                  bad + "'");
  }
}

// The example `cmake --install` puts in share/doc/iotpki/examples is read without complaint and
// holds the defaults, so it cannot drift from the code.
TEST(ServeConfigTest, TheInstalledExampleHoldsTheDefaults) {
  auto c = LoadServeConfig(IOTPKI_SOURCE_DIR "/docs/examples/serve.toml");
  ASSERT_TRUE(c) << c.error().ToString();
  const ServeConfig defaults;
  EXPECT_EQ(c->listen, defaults.listen);
  EXPECT_EQ(c->names, defaults.names);
  EXPECT_EQ(c->certificate, defaults.certificate);
  EXPECT_EQ(c->key, defaults.key);
  EXPECT_EQ(c->server.io_threads, defaults.server.io_threads);
  EXPECT_EQ(c->server.handler_threads, defaults.server.handler_threads);
  const server::Limits& l = c->server.limits;
  const server::Limits& d = defaults.server.limits;
  EXPECT_EQ(l.max_body_bytes, d.max_body_bytes);
  EXPECT_EQ(l.max_header_bytes, d.max_header_bytes);
  EXPECT_EQ(l.max_connections, d.max_connections);
  EXPECT_EQ(l.max_connections_per_source, d.max_connections_per_source);
  EXPECT_EQ(l.handshake_timeout, d.handshake_timeout);
  EXPECT_EQ(l.request_timeout, d.request_timeout);
  EXPECT_EQ(l.idle_timeout, d.idle_timeout);
  EXPECT_EQ(l.drain_timeout, d.drain_timeout);
  EXPECT_EQ(c->enroll.token_window_seconds, defaults.enroll.token_window_seconds);
  EXPECT_EQ(c->enroll.max_group_commit, defaults.enroll.max_group_commit);
  EXPECT_FALSE(c->log_format);
  EXPECT_EQ(c->log_level, log::Level::kInfo);
}

}  // namespace
}  // namespace iotpki::cli
