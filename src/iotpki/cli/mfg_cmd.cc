// iotpki mfg provision
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iostream>

#include "iotpki/ca/authority.h"
#include "iotpki/cli/cli.h"
#include "iotpki/common/file.h"
#include "iotpki/mfg/input.h"
#include "iotpki/mfg/provision.h"

namespace iotpki::cli {
namespace {

struct ProvisionArgs {
  std::string dir;
  std::string store;
  std::string serials;
  size_t count = 0;
  std::string serial_prefix;
  std::string model;
  std::string batch;
  std::string keys;
  std::string csr_dir;
  std::string secure_element;
  std::string out;
  bool resume = false;
  bool no_bundles = false;
  bool discard_keys = false;
  bool c509 = false;
  unsigned workers = 0;
  size_t group_size = 0;
  PassphraseSources passphrases;
  std::string key_passphrase_file;
};

// The station's key transport passphrase: the first line of the file, else
// $IOTPKI_KEY_PASSPHRASE.
Result<std::string> ReadKeyPassphrase(const std::string& file) {
  if (!file.empty()) {
    auto text = ReadTextFile(file, 4096);
    if (!text) return Fail(std::move(text).error().Context("reading --key-passphrase-file"));
    std::string line = text->substr(0, text->find('\n'));
    if (!line.empty() && line.back() == '\r') line.pop_back();
    return line;
  }
  const char* env = std::getenv("IOTPKI_KEY_PASSPHRASE");
  return std::string(env != nullptr ? env : "");
}

std::string Duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "--:--";
  auto s = static_cast<long>(seconds + 0.5);
  char buf[32];
  if (s >= 3600) {
    std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60);
  } else {
    std::snprintf(buf, sizeof buf, "%ld:%02ld", s / 60, s % 60);
  }
  return buf;
}

// A bar redrawn in place on a terminal; a plain line every few seconds otherwise (logs, CI).
class ProgressPrinter {
 public:
  explicit ProgressPrinter(std::string batch)
      : batch_(std::move(batch)), tty_(::isatty(STDERR_FILENO) == 1) {}

  void operator()(const mfg::ProgressInfo& p) {
    size_t issued = p.done - p.done_at_start;
    double rate = p.elapsed > 0 ? static_cast<double>(issued) / p.elapsed : 0;
    double eta = rate > 0 ? static_cast<double>(p.total - p.done) / rate : NAN;
    int percent = p.total == 0 ? 100 : static_cast<int>(p.done * 100 / p.total);
    if (tty_) {
      constexpr int kWidth = 30;
      int filled = static_cast<int>(p.total == 0 ? kWidth : p.done * kWidth / p.total);
      std::fprintf(stderr, "\r%s [%s%s] %zu/%zu %3d%%  %.0f/s  ETA %s   ", batch_.c_str(),
                   std::string(static_cast<size_t>(filled), '#').c_str(),
                   std::string(static_cast<size_t>(kWidth - filled), '-').c_str(), p.done, p.total,
                   percent, rate, p.done == p.total ? "0:00" : Duration(eta).c_str());
      if (p.done == p.total) std::fputc('\n', stderr);
      std::fflush(stderr);
      return;
    }
    bool first = !printed_;
    if (!first && p.done != p.total && p.elapsed - last_ < 5.0) return;
    printed_ = true;
    last_ = p.elapsed;
    std::fprintf(stderr, "mfg %s: %zu/%zu devices (%d%%), %.0f/s, ETA %s\n", batch_.c_str(), p.done,
                 p.total, percent, rate, p.done == p.total ? "0:00" : Duration(eta).c_str());
  }

 private:
  std::string batch_;
  bool tty_;
  bool printed_ = false;
  double last_ = 0;
};

Result<void> RunProvision(ProvisionArgs& args) {
  // The input first: a bad row is reported before the CA is opened.
  mfg::ProvisionOptions options{.batch = args.batch,
                                .out = args.out,
                                .resume = args.resume,
                                .bundles = !args.no_bundles,
                                .c509 = args.c509,
                                .discard_keys = args.discard_keys,
                                .workers = args.workers,
                                .group_size = args.group_size,
                                .actor = Actor()};
  IOTPKI_CHECK(mfg::ValidateName("batch", args.batch));
  if (!args.secure_element.empty()) {
    if (!args.keys.empty() || !args.csr_dir.empty()) {
      return Fail(Code::kInvalidArgument,
                  "--secure-element generates the keys in the token: drop --keys and --csr-dir");
    }
    options.keys = mfg::KeyMode::kSecureElement;
    options.secure_element = args.secure_element;
  } else if (!args.csr_dir.empty()) {
    if (!args.keys.empty() && args.keys != "csr") {
      return Fail(Code::kInvalidArgument, "--csr-dir means --keys csr, not --keys " + args.keys);
    }
    options.keys = mfg::KeyMode::kCsr;
    options.csr_dir = args.csr_dir;
  } else if (args.keys == "ca") {
    options.keys = mfg::KeyMode::kCa;
  } else if (args.keys == "csr") {
    return Fail(Code::kInvalidArgument, "--keys csr needs --csr-dir DIR");
  } else {
    return Fail(Code::kInvalidArgument,
                args.keys.empty() ? "choose where device keys come from: --keys ca, --csr-dir DIR "
                                    "or --secure-element pkcs11:token=LABEL"
                                  : "--keys must be ca or csr, not " + args.keys);
  }
  if (args.serials.empty() == (args.count == 0)) {
    return Fail(Code::kInvalidArgument,
                "give either --serials FILE or --count N --serial-prefix P");
  }
  if (args.count != 0 && args.serial_prefix.empty()) {
    return Fail(Code::kInvalidArgument, "--count needs --serial-prefix");
  }
  // A token key is labelled with its device_id, which --count draws anew on every run: a --resume
  // would not find the keys the interrupted run made, and would leave them in the token.
  if (args.count != 0 && options.keys == mfg::KeyMode::kSecureElement) {
    return Fail(Code::kInvalidArgument,
                "--secure-element needs each device's real fingerprint: give --serials FILE "
                "(serial,fingerprint_hex per line), not --count");
  }
  // "no CA in DIR" before anything else about DIR.
  IOTPKI_CHECK(ca::LoadConfig(args.dir));
  IOTPKI_TRY(mfg::MfgConfig mfg_config, mfg::LoadMfgConfig(args.dir));
  std::vector<mfg::DeviceInput> devices;
  if (!args.serials.empty()) {
    IOTPKI_TRY(devices, mfg::ReadSerialsCsv(args.serials, args.model, mfg_config));
  } else {
    IOTPKI_TRY(devices,
               mfg::GenerateSerials(args.count, args.serial_prefix, args.model, mfg_config));
  }

  IOTPKI_TRY(auto authority, ca::Authority::Open(args.dir, SystemClock::Instance(), args.store));
  // A manufacturing key in a PKCS#11 token is unlocked by the token's PIN, not by a passphrase:
  // none is asked for, and none is required (docs/hardware-keys.md).
  bool file_key = authority->config().manufacturing_key.rfind("pkcs11:", 0) != 0;
  crypto::Secret passphrase;
  if (file_key) {
    IOTPKI_TRY(passphrase, ReadPassphrase(args.passphrases, KeyRole::kManufacturing));
  }
  IOTPKI_TRY(crypto::Secret bootstrap, ReadPassphrase(args.passphrases, KeyRole::kBootstrap));
  if (options.keys == mfg::KeyMode::kCa && options.bundles) {
    IOTPKI_TRY(options.transport_passphrase, ReadKeyPassphrase(args.key_passphrase_file));
    if ((file_key && options.transport_passphrase == passphrase.view()) ||
        options.transport_passphrase == bootstrap.view()) {
      return Fail(Code::kInvalidArgument,
                  "the key transport passphrase must differ from the CA passphrase (the station "
                  "gets it)");
    }
  }
  IOTPKI_CHECK(authority->Unlock(ca::CaName::kManufacturing, passphrase.view()));
  IOTPKI_CHECK(authority->UnlockBootstrap(bootstrap.view()));

  ProgressPrinter printer(args.batch);
  options.progress = [&printer](const mfg::ProgressInfo& p) { printer(p); };
  IOTPKI_TRY(mfg::ProvisionReport report, mfg::Provision(*authority, devices, options));
  double rate = report.seconds > 0 ? static_cast<double>(report.issued) / report.seconds : 0;
  std::printf(
      "batch %s: %zu devices provisioned (%zu issued now at %.0f/s in %.1f s, %zu finished "
      "earlier, %zu completed from an interrupted run)\n",
      args.batch.c_str(), report.total, report.issued, rate, report.seconds, report.already_done,
      report.recovered);
  std::printf("manifest: %s/manifest.jsonl\n", args.out.c_str());
  return {};
}

}  // namespace

void AddMfgCommands(CLI::App& app) {
  auto* mfg = app.add_subcommand("mfg", "Manufacturing: provision devices in batches");
  mfg->require_subcommand(1);
  auto args = std::make_shared<ProvisionArgs>();
  auto* p = mfg->add_subcommand(
      "provision",
      "Issue IDevIDs, bootstrap secrets and device folders for a batch, and register the devices");
  p->add_option("--dir", args->dir, "CA directory")->required();
  AddStoreOption(p, args->store);
  p->add_option("--serials", args->serials, "CSV: serial,fingerprint_hex[,model] per line");
  p->add_option("--count", args->count, "Generate N serials (with --serial-prefix)");
  p->add_option("--serial-prefix", args->serial_prefix, "Prefix of generated serials");
  p->add_option("--model", args->model, "Device model (default for CSV rows without one)");
  p->add_option("--batch", args->batch, "Batch name: A-Z a-z 0-9 . _ -")->required();
  p->add_option("--keys", args->keys, "ca: the CA generates each key; csr: keys from --csr-dir");
  p->add_option("--csr-dir", args->csr_dir, "One CSR per serial: SERIAL.csr, .pem or .der");
  p->add_option("--secure-element", args->secure_element,
                "Generate each device key in this PKCS#11 token (pkcs11:token=LABEL), labelled "
                "with the device_id, and store its IDevID beside it (PIN: IOTPKI_PKCS11_PIN)");
  p->add_option("--out", args->out, "Output directory: device folders and manifest.jsonl")
      ->required();
  p->add_flag("--resume", args->resume, "Continue the batch already started in --out");
  p->add_flag("--no-bundles", args->no_bundles, "Write the manifest only, no device folders");
  p->add_flag("--c509", args->c509,
              "Also write cert.c509 (the IDevID as C509, type 3) into each device folder");
  p->add_flag("--discard-keys", args->discard_keys,
              "With --keys ca --no-bundles: drop the generated keys (benchmarks only)");
  p->add_option("--workers", args->workers, "Signing threads (default: one per core)");
  p->add_option("--group-size", args->group_size, "Devices per store transaction (default: auto)");
  AddPassphraseOptions(p, args->passphrases, {KeyRole::kManufacturing, KeyRole::kBootstrap});
  p->add_option("--key-passphrase-file", args->key_passphrase_file,
                "--keys ca: file whose first line encrypts the device keys for the station "
                "(default: $IOTPKI_KEY_PASSPHRASE)");
  SetAction(p, [args] { return RunProvision(*args); });
}

}  // namespace iotpki::cli
