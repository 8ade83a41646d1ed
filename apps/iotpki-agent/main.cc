// iotpki-agent: the device side of onboarding and renewal. Parses flags, calls the agent library,
// maps the outcome to an exit code and one line.
//
// Exit codes: 0 done, 1 local failure (state directory, files, keys), 2 bad usage, 3 server
// unreachable, 4 TLS failure, 5 refused by the server (its reason shown), 6 bad answer.
#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <random>
#include <thread>

#ifdef IOTPKI_AGENT_SMALL_INIT
#include <malloc.h>
#include <openssl/crypto.h>
#include <openssl/ssl.h>
#endif

#include "daemon.h"
#include "iotpki/agent/agent.h"
#include "iotpki/common/file.h"

namespace {

using iotpki::agent::Outcome;

}  // namespace

int Report(const iotpki::Error& e) {
  Outcome outcome = iotpki::agent::Classify(e);
  std::string line = e.message();
  for (char& c : line) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  std::cerr << "iotpki-agent: " << iotpki::agent::OutcomeName(outcome) << ": " << line << "\n";
  return static_cast<int>(outcome);
}

namespace {

// Test builds only: IOTPKI_AGENT_TEST_STOP_AT=<step> stops the process (SIGSTOP) at that step
// of a rotation, for a test to kill -9 it there; IOTPKI_AGENT_TEST_FAIL_INSTALL=1 fails the
// install on purpose.
iotpki::agent::RotateHooks TestHooks() {
  iotpki::agent::RotateHooks hooks;
#ifdef IOTPKI_AGENT_TEST_HOOKS
  if (const char* at = std::getenv("IOTPKI_AGENT_TEST_STOP_AT")) {
    if (auto step = iotpki::agent::ParseRotateStep(at)) {
      hooks.at_step = [stop = *step](iotpki::agent::RotateStep s) {
        if (s == stop) std::raise(SIGSTOP);
      };
    }
  }
  const char* fail = std::getenv("IOTPKI_AGENT_TEST_FAIL_INSTALL");
  hooks.fail_install = fail != nullptr && std::string(fail) == "1";
#endif
  return hooks;
}

#ifdef IOTPKI_AGENT_SMALL_INIT
// A device's build (IOTPKI_AGENT_MINIMAL, docs/performance.md "Agent memory, session 5"): the
// peak resident memory is what a device pays. Must run before any other OpenSSL call and before
// the MQTT client's thread starts: OpenSSL keeps the first choice of each of its run-once steps,
// and glibc fixes a thread's arena at its first allocation.
void InitForSmallFootprint() {
  // One malloc arena: the MQTT thread shares the main thread's heap instead of reserving and
  // touching an arena of its own; the two threads rarely allocate at the same time.
  mallopt(M_ARENA_MAX, 1);
  // openssl.cnf is not read: the agent fetches only the default provider's algorithms and loads
  // the TPM's provider itself (crypto/tpm2_key_store.cc). Calls without the flag later
  // (libmosquitto's) find the step done and do not read it either. The crypto library's error
  // strings are not loaded: they reach an Error's detail, which the agent never prints, and,
  // rarely, a TLS failure raised by the crypto library (then printed as "asio.ssl error");
  // libssl's stay, for the TLS alerts the agent prints. No cleanup at exit: it would fault more
  // of libcrypto in only to free memory the exit frees anyway.
  OPENSSL_init_ssl(
      OPENSSL_INIT_NO_LOAD_CONFIG | OPENSSL_INIT_NO_LOAD_CRYPTO_STRINGS | OPENSSL_INIT_NO_ATEXIT,
      nullptr);
}
#endif

}  // namespace

int main(int argc, char** argv) {
#ifdef IOTPKI_AGENT_SMALL_INIT
  InitForSmallFootprint();
#endif
  // On the heap so that `run` can free it before the daemon starts (below).
  auto parser = std::make_unique<CLI::App>(
      "iotpki-agent: device onboarding (IDevID -> LDevID) and renewal", "iotpki-agent");
  CLI::App& app = *parser;
  app.require_subcommand(1);
  iotpki::agent::AgentOptions options;
  std::string state, key_passphrase_file;
  int timeout = 30;
  app.add_option("--state", state, "The device's state directory")->required();
  app.add_option("--key-passphrase-file", key_passphrase_file,
                 "First line decrypts factory/key.pem (default: $IOTPKI_DEVICE_KEY_PASSPHRASE)");
  app.add_option("--key-store", options.key_store,
                 "Make new device keys inside a TPM, tpm2: (TPM2OPENSSL_TCTI names the TPM), or a "
                 "PKCS#11 token, pkcs11:token=LABEL (PIN from IOTPKI_PKCS11_PIN; default: the "
                 "one bootstrap was given)");
  app.add_option("--timeout", timeout, "Seconds for each request (default 30)")
      ->check(CLI::Range(1, 3600));

  auto* bootstrap = app.add_subcommand("bootstrap", "Trade the IDevID for a working certificate");
  std::string server;
  bool est = false, json = false, no_client_cert = false;
  bootstrap->add_option("--server", server, "https://HOST:PORT")->required();
  auto* est_flag = bootstrap->add_flag("--est", est, "EST simpleenroll (default)");
  auto* json_flag = bootstrap->add_flag("--json", json, "The JSON bootstrap API with a token");
  bootstrap
      ->add_flag("--no-client-cert", no_client_cert,
                 "With --json: no TLS client certificate; the CSR is signed with the IDevID key")
      ->needs(json_flag);
  est_flag->excludes(json_flag);
  bool serverkeygen = false;
  bootstrap
      ->add_flag("--serverkeygen", serverkeygen,
                 "EST serverkeygen: the server makes the key and seals it to the IDevID")
      ->excludes(json_flag);
  bool c509 = false;
  bootstrap
      ->add_flag("--c509", c509,
                 "With --est: ask for the certificate in C509 (application/cose-c509-cert+cbor)")
      ->excludes(json_flag);

  auto* renew = app.add_subcommand("renew", "EST simplereenroll with the active certificate");
  bool rekey = false;
  renew->add_option("--server", server, "https://HOST:PORT (default: the one bootstrapped with)");
  renew->add_flag("--rekey", rekey, "A new key (default: keep the current key)");
  renew->add_flag("--c509", c509,
                  "Ask for the certificate in C509 (application/cose-c509-cert+cbor)");

  auto* rotate = app.add_subcommand(
      "rotate",
      "One rotation without MQTT: re-enroll, confirm with the new certificate, then switch");
  iotpki::agent::RotateCommand command;
  std::string mode = "renew";
  rotate->add_option("--server", server, "https://HOST:PORT (default: the one bootstrapped with)");
  rotate->add_option("--campaign", command.campaign, "The campaign's name")->required();
  rotate->add_option("--job", command.job, "The job's number in the campaign")
      ->required()
      ->check(CLI::NonNegativeNumber);
  rotate->add_option("--mode", mode, "renew (keep the key) or rekey (a new key)")
      ->check(CLI::IsMember({"renew", "rekey"}));
  auto* recover = app.add_subcommand(
      "recover", "Finish or discard a rotation a crash left pending (rotate does this first)");
  recover->add_option("--server", server, "https://HOST:PORT (default: the one bootstrapped with)");

  auto* run = app.add_subcommand(
      "run",
      "The daemon: finish a pending rotation, then renew by itself at two thirds of the "
      "certificate's lifetime (campaigns over MQTT come later)");
  run->add_option("--server", server, "https://HOST:PORT (default: the one bootstrapped with)");
  DaemonOptions daemon;
  run->add_option("--mqtt", daemon.mqtt_url,
                  "mqtts://HOST:PORT: take rotate commands from this broker (mutual TLS with the "
                  "active certificate)");
  run->add_option("--mqtt-ca", daemon.mqtt_ca,
                  "PEM file of the CAs that sign the broker's certificate (default: the root in "
                  "factory/chain.pem)");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);
    std::cerr << "iotpki-agent: usage: " << e.what() << " (see iotpki-agent --help)\n";
    return static_cast<int>(Outcome::kUsage);
  }
  try {
    options.state = state;
    options.server_url = server;
    options.timeout = std::chrono::seconds(timeout);
    options.c509 = c509;
    if (!key_passphrase_file.empty()) {
      auto text = iotpki::ReadTextFile(key_passphrase_file, 4096);
      if (!text)
        return Report(
            iotpki::Error(iotpki::Code::kFailedPrecondition, "cannot read " + key_passphrase_file));
      options.key_passphrase = text->substr(0, text->find_first_of("\r\n"));
    } else if (const char* env = std::getenv("IOTPKI_DEVICE_KEY_PASSPHRASE")) {
      options.key_passphrase = env;
    }
    if (run->parsed()) {
      daemon.hooks = TestHooks();
      // The parser (every subcommand's options and help texts) is not used past this point;
      // freed now, its heap is reused by the TLS sessions instead of adding to the daemon's peak.
      parser.reset();
      return RunDaemon(options, daemon);
    }
    if (rotate->parsed() || recover->parsed()) {
      auto recovered = iotpki::agent::Recover(options);
      if (!recovered) return Report(recovered.error());
      for (const auto& uri : recovered->orphans_deleted) {
        std::cout << "recover: deleted the orphaned key " << uri << " (no slot names it)\n";
      }
      if (recovered->what != iotpki::agent::Recovery::kNothing || recover->parsed()) {
        std::cout << "recover: " << iotpki::agent::RecoveryName(recovered->what) << "\n";
      }
      if (recover->parsed()) return 0;
      // The pending rotation was this very job's, and is done now: nothing more to do.
      if (recovered->campaign == command.campaign && recovered->job == command.job &&
          (recovered->what == iotpki::agent::Recovery::kCompleted ||
           recovered->what == iotpki::agent::Recovery::kActivated)) {
        std::cout << "rotated: job " << command.job << " of campaign " << command.campaign
                  << " completed by the recovery\n";
        return 0;
      }
      command.rekey = mode == "rekey";
      auto rotated = iotpki::agent::Rotate(options, command, TestHooks());
      if (!rotated) return Report(rotated.error());
      std::cout << "rotated: device " << rotated->installed.device_id << ", certificate "
                << rotated->old_serial << " -> " << rotated->installed.certificate.serial_hex()
                << " until " << iotpki::FormatUtc(rotated->installed.certificate.not_after())
                << ", confirmed, slot " << rotated->installed.slot << "\n";
      return 0;
    }
    auto bootstrap_mode = !json ? iotpki::agent::BootstrapMode::kEst
                          : no_client_cert
                              ? iotpki::agent::BootstrapMode::kJsonWithoutClientCertificate
                              : iotpki::agent::BootstrapMode::kJson;
    auto done = !bootstrap->parsed() ? iotpki::agent::Renew(options, rekey)
                : serverkeygen       ? iotpki::agent::BootstrapServerKeygen(options)
                                     : iotpki::agent::Bootstrap(options, bootstrap_mode);
    if (!done) return Report(done.error());
    std::cout << (bootstrap->parsed() ? "bootstrapped" : (rekey ? "rekeyed" : "renewed"))
              << ": device " << done->device_id << ", certificate "
              << done->certificate.serial_hex() << " until "
              << iotpki::FormatUtc(done->certificate.not_after()) << ", slot " << done->slot
              << "\n";
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "iotpki-agent: local failure: internal error: " << e.what() << "\n";
    return static_cast<int>(Outcome::kLocal);
  }
}
