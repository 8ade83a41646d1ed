// iotpki-fleet: many simulated devices in one process, for rotation tests, benchmarks and the
// demo (docs/rotation.md#the-fleet-simulator). Each device has its own state directory (the
// agent's layout, agent/agent.h), its own key and certificate, and its own MQTT session; every
// rotation goes through the agent's own code (agent::HandleCommand, agent::Rotate,
// agent::Recover), not a copy of it. A separate program rather than `iotpki-agent simulate` so
// that the device's binary carries none of it.
//
// Threads: one event loop drives every MQTT session (epoll over the sockets, libmosquitto's
// read/write/misc steps: no thread per session, no select() bound, and a pass costs what its
// sockets had to say, not the size of the fleet); a bounded pool of workers
// runs the blocking parts (EST enrollments, confirmations, recoveries). A device is on at most
// one worker at a time, so its state directory sees one rotation at a time, as on a device.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>

#include "iotpki/agent/agent.h"

namespace fleet {

struct BootstrapOptions {
  std::filesystem::path factory;      // `iotpki mfg provision --out` folder: one folder per device
  std::filesystem::path fleet;        // one state directory per device, named as its factory folder
  int devices = 0;                    // the first N factory folders by name; 0: all
  int workers = 8;                    // enrollments in flight at once
  iotpki::agent::AgentOptions agent;  // server_url, key_passphrase, timeout
};

// Onboards every device that has no active certificate yet (EST simpleenroll with its IDevID,
// agent::Bootstrap); devices onboarded before are kept. Prints one summary line; exit code.
int BootstrapFleet(const BootstrapOptions& options);

struct RunOptions {
  std::filesystem::path fleet;
  int first = 0;    // devices [first, first + devices) of the fleet directory, by name
  int devices = 0;  // 0: all from `first`
  std::string mqtt_url;
  std::filesystem::path mqtt_ca;  // the broker's CA (PEM)
  double offline_share = 0;       // connect, subscribe, then drop off until back_after
  std::chrono::seconds back_after{20};
  double fail_install_share = 0;  // every install fails on purpose (RotateHooks::fail_install)
  double slow_share = 0;          // act on each command only after slow_by
  std::chrono::milliseconds slow_by{2000};
  uint64_t seed = 1;  // which devices are offline, failing or slow (disjoint sets)
  int workers = 8;
  // Sleepy devices: at most this many hold a session at once (0: every device, always). The
  // others sleep, disconnected, while the broker keeps their sessions and queues their
  // commands; they wake in turn, act on what was queued, and sleep again once they rotated or
  // after `awake` with nothing to do. How a fleet larger than one broker's descriptors (or a
  // battery-powered one) is rotated.
  int max_online = 0;
  std::chrono::milliseconds awake{2000};
  int until_rotated = 0;      // exit once this many devices rotated; 0: run until SIGTERM/SIGINT
  std::filesystem::path out;  // outcomes, JSON Lines; empty: none
  std::filesystem::path ready_file;  // written once the fleet is online (for scripts)
  iotpki::agent::AgentOptions agent;
};

// Runs the fleet until SIGTERM or SIGINT (or until_rotated), then writes the outcomes and
// prints the summary table. Exit code.
int RunFleet(const RunOptions& options);

}  // namespace fleet
