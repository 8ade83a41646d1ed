// `iotpki-agent run`: the daemon around the agent library. Without --mqtt it recovers a pending
// rotation and renews by itself at two thirds of the certificate's lifetime; with --mqtt it
// also keeps an MQTT session with the active LDevID and acts on the signed rotate commands of
// its command topic (agent/commands.h), moving the session to the new certificate after each
// rotation.
#pragma once

#include <string>

#include "iotpki/agent/agent.h"
#include "iotpki/common/error.h"

struct DaemonOptions {
  std::string mqtt_url;  // empty: no MQTT
  std::string mqtt_ca;   // empty: the root in factory/chain.pem
  iotpki::agent::RotateHooks hooks;
};

// Runs until SIGTERM or SIGINT (exit 0). One line per event on stdout, errors on stderr.
int RunDaemon(const iotpki::agent::AgentOptions& options, const DaemonOptions& daemon);

// The agent's one-line error report (main.cc); returns the exit code for it.
int Report(const iotpki::Error& e);
