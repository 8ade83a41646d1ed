// A throwaway Mosquitto broker for C++ tests: the same tests/mqtt_broker.sh the shell tests use
// (mutual TLS on loopback, CN as username, the rotation topics' ACLs), so both kinds of test run
// the broker configuration docs/operations.md describes. Tests only (needs IOTPKI_SOURCE_DIR).
#pragma once

#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <string>

#include "iotpki/common/error.h"

namespace iotpki::mqtt::testing {

class TestBroker {
 public:
  // Starts a broker whose state lives in `dir`, trusting client certificates from `ca_file`
  // and checking them against `crl_file` when given; `port` 0 picks a free one. NotFound when
  // mosquitto is not installed (tests skip), Internal when it did not start.
  static Result<TestBroker> Start(const std::filesystem::path& dir,
                                  const std::filesystem::path& ca_file,
                                  const std::filesystem::path& crl_file = {}, int port = 0) {
    std::string cmd;
    if (port != 0) cmd += "MQTT_BROKER_PORT=" + std::to_string(port) + " ";
    cmd += "bash '" + Script() + "' start '" + dir.string() + "' '" + ca_file.string() + "'";
    if (!crl_file.empty()) cmd += " '" + crl_file.string() + "'";
    FILE* p = ::popen(cmd.c_str(), "r");
    if (p == nullptr) return Fail(Code::kInternal, "popen failed");
    char buf[64] = {};
    std::string out;
    while (std::fgets(buf, sizeof buf, p) != nullptr) out += buf;
    int status = ::pclose(p);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 3) {
      return Fail(Code::kNotFound, "mosquitto is not installed");
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      return Fail(Code::kInternal,
                  "mqtt_broker.sh start failed (see " + (dir / "mosquitto.log").string() + ")");
    }
    TestBroker b;
    b.dir_ = dir;
    b.port_ = std::stoi(out);
    return b;
  }

  TestBroker() = default;
  TestBroker(TestBroker&& o) noexcept : dir_(std::move(o.dir_)), port_(o.port_) { o.dir_.clear(); }
  TestBroker& operator=(TestBroker&& o) noexcept {
    Stop();
    dir_ = std::move(o.dir_);
    port_ = o.port_;
    o.dir_.clear();
    return *this;
  }
  ~TestBroker() { Stop(); }

  int port() const { return port_; }
  // The broker's self-signed certificate: the ca_file of every client.
  std::filesystem::path certificate() const { return dir_ / "broker.crt"; }

  void Stop() {
    if (dir_.empty()) return;
    std::string cmd = "bash '" + Script() + "' stop '" + dir_.string() + "'";
    (void)std::system(cmd.c_str());  // Best effort: a test tearing down.
    dir_.clear();
  }

 private:
  static std::string Script() { return std::string(IOTPKI_SOURCE_DIR) + "/tests/mqtt_broker.sh"; }

  std::filesystem::path dir_;
  int port_ = 0;
};

}  // namespace iotpki::mqtt::testing
