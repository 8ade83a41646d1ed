// iotpki-fleet: a simulated fleet of devices running the agent's rotation code (fleet.h).
//
//   iotpki-fleet bootstrap --factory DIR --fleet DIR --server URL [--devices N] [--workers 8]
//   iotpki-fleet run --fleet DIR --mqtt mqtts://HOST:PORT --mqtt-ca FILE [--devices N]
//       [--first K] [--offline-share 0.1 --back-after 20s] [--fail-install-share 0.05]
//       [--slow-share 0.1 --slow-by 2s] [--seed S] [--workers 8] [--until-rotated N]
//       [--out outcomes.jsonl] [--ready-file FILE]
//
// Exit codes: 0 done, 1 failure, 2 bad usage.
#include <CLI/CLI.hpp>
#include <cstdlib>
#include <iostream>

#include "fleet.h"
#include "iotpki/common/file.h"

namespace {

// "20s", "2m", "500ms", or plain seconds.
std::optional<std::chrono::milliseconds> ParseDuration(const std::string& s) {
  size_t used = 0;
  long long v = 0;
  try {
    v = std::stoll(s, &used);
  } catch (...) {
    return std::nullopt;
  }
  std::string unit = s.substr(used);
  if (v < 0) return std::nullopt;
  if (unit.empty() || unit == "s") return std::chrono::seconds(v);
  if (unit == "ms") return std::chrono::milliseconds(v);
  if (unit == "m") return std::chrono::minutes(v);
  return std::nullopt;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"iotpki-fleet: simulated devices rotating their certificates", "iotpki-fleet"};
  app.require_subcommand(1);
  std::string key_passphrase_file;
  int timeout = 30;
  app.add_option("--key-passphrase-file", key_passphrase_file,
                 "First line decrypts the factory keys (default: $IOTPKI_DEVICE_KEY_PASSPHRASE)");
  app.add_option("--timeout", timeout, "Seconds for each request (default 30)")
      ->check(CLI::Range(1, 3600));

  fleet::BootstrapOptions b;
  std::string factory, bfleet, server;
  auto* boot = app.add_subcommand("bootstrap", "Onboard the devices of a factory batch over EST");
  boot->add_option("--factory", factory, "The folder of `iotpki mfg provision --out`")->required();
  boot->add_option("--fleet", bfleet, "Where the devices' state directories go")->required();
  boot->add_option("--server", server, "https://HOST:PORT")->required();
  boot->add_option("--devices", b.devices, "The first N devices (default: all)")
      ->check(CLI::Range(1, 10000000));
  boot->add_option("--workers", b.workers, "Enrollments at once (default 8)")
      ->check(CLI::Range(1, 256));

  fleet::RunOptions r;
  std::string rfleet, mqtt_ca, back_after = "20s", slow_by = "2s", awake = "2s", out, ready_file;
  auto* run = app.add_subcommand("run", "Keep the fleet online and act on rotate commands");
  run->add_option("--fleet", rfleet, "The fleet directory of `bootstrap`")->required();
  run->add_option("--mqtt", r.mqtt_url, "mqtts://HOST[:PORT]")->required();
  run->add_option("--mqtt-ca", mqtt_ca, "The broker's CA certificate (PEM)")->required();
  run->add_option("--devices", r.devices, "How many devices (default: all from --first)")
      ->check(CLI::Range(1, 10000000));
  run->add_option("--first", r.first, "Skip the first K devices (shards)")
      ->check(CLI::Range(0, 10000000));
  auto share = CLI::Range(0.0, 1.0);
  run->add_option("--offline-share", r.offline_share, "Share offline at first (0..1)")
      ->check(share);
  run->add_option("--back-after", back_after, "When they come back (default 20s)");
  run->add_option("--fail-install-share", r.fail_install_share,
                  "Share whose install always fails, rolled back (0..1)")
      ->check(share);
  run->add_option("--slow-share", r.slow_share, "Share slow to act on a command (0..1)")
      ->check(share);
  run->add_option("--slow-by", slow_by, "How slow (default 2s)");
  run->add_option("--seed", r.seed, "Which devices are offline, failing, slow (default 1)");
  run->add_option("--workers", r.workers, "Rotations at once (default 8)")
      ->check(CLI::Range(1, 256));
  run->add_option("--max-online", r.max_online,
                  "Sleepy devices: at most N online at once, the others asleep with their "
                  "sessions kept by the broker (default: all online)")
      ->check(CLI::Range(1, 10000000));
  run->add_option("--awake", awake,
                  "With --max-online: how long a woken device with nothing "
                  "to do stays online (default 2s)");
  run->add_option("--until-rotated", r.until_rotated,
                  "Exit once N devices rotated (default: at SIGTERM or SIGINT)")
      ->check(CLI::Range(1, 10000000));
  run->add_option("--out", out, "Per-device outcomes, JSON Lines");
  run->add_option("--ready-file", ready_file, "Written once the fleet is online");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);
    std::cerr << "iotpki-fleet: usage: " << e.what() << " (see iotpki-fleet --help)\n";
    return 2;
  }

  iotpki::agent::AgentOptions agent;
  agent.timeout = std::chrono::seconds(timeout);
  if (!key_passphrase_file.empty()) {
    auto text = iotpki::ReadTextFile(key_passphrase_file, 4096);
    if (!text) {
      std::cerr << "iotpki-fleet: cannot read " << key_passphrase_file << std::endl;
      return 1;
    }
    agent.key_passphrase = text->substr(0, text->find_first_of("\r\n"));
  } else if (const char* env = std::getenv("IOTPKI_DEVICE_KEY_PASSPHRASE")) {
    agent.key_passphrase = env;
  }
  if (*boot) {
    b.factory = factory;
    b.fleet = bfleet;
    agent.server_url = server;
    b.agent = agent;
    return fleet::BootstrapFleet(b);
  }
  auto back = ParseDuration(back_after);
  auto slow = ParseDuration(slow_by);
  auto up = ParseDuration(awake);
  if (!back || !slow || !up) {
    std::cerr << "iotpki-fleet: bad duration '"
              << (!back   ? back_after
                  : !slow ? slow_by
                          : awake)
              << "': use seconds, or a number with ms, s or m (20s)" << std::endl;
    return 2;
  }
  if (r.offline_share + r.fail_install_share + r.slow_share > 1.0) {
    std::cerr << "iotpki-fleet: the offline, failing and slow shares are disjoint: their sum "
                 "must be at most 1"
              << std::endl;
    return 2;
  }
  r.back_after = std::chrono::duration_cast<std::chrono::seconds>(*back);
  r.slow_by = *slow;
  r.awake = *up;
  r.fleet = rfleet;
  r.mqtt_ca = mqtt_ca;
  r.out = out;
  r.ready_file = ready_file;
  r.agent = agent;
  return fleet::RunFleet(r);
}
