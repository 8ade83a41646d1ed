// iotpki crl export: the CRLs of the issuing CAs, brought up to date from the store, written to
// DIR/crl/ and as the combined PEM set an MQTT broker loads (Mosquitto's crlfile).
#include <CLI/CLI.hpp>
#include <filesystem>
#include <iostream>

#include "iotpki/ca/authority.h"
#include "iotpki/ca/crl_publisher.h"
#include "iotpki/cli/cli.h"
#include "iotpki/common/file.h"

namespace iotpki::cli {
namespace {

struct ExportArgs {
  std::string dir;
  std::string store;
  std::string out;
  PassphraseSources passphrases;
};

Result<void> RunExport(ExportArgs& args) {
  if (std::filesystem::is_directory(args.out)) {
    return Fail(Code::kInvalidArgument, "--out " + args.out +
                                            " is a directory; name the file to write, e.g. " +
                                            (std::filesystem::path(args.out) / "crl.pem").string());
  }
  IOTPKI_TRY(auto authority, ca::Authority::Open(args.dir, SystemClock::Instance(), args.store));
  // Each issuing CA signs its own CRL.
  {
    IOTPKI_TRY(crypto::Secret mfg, ReadPassphrase(args.passphrases, KeyRole::kManufacturing));
    IOTPKI_CHECK(authority->Unlock(ca::CaName::kManufacturing, mfg.view()));
  }
  {
    IOTPKI_TRY(crypto::Secret op, ReadPassphrase(args.passphrases, KeyRole::kOperational));
    IOTPKI_CHECK(authority->Unlock(ca::CaName::kOperational, op.view()));
  }
  ca::CrlPublisher publisher(*authority, {});
  IOTPKI_TRY(int rebuilt, publisher.Refresh());
  std::vector<x509::Crl> crls;
  int64_t entries = 0;
  for (auto name : {"manufacturing", "operational"}) {
    auto current = publisher.Current(name);
    if (!current) return Fail(Code::kInternal, std::string("no CRL of the ") + name + " CA");
    ca::AppendBrokerCrls(*current, crls);
    entries += current->revoked_count;
  }
  IOTPKI_CHECK(WriteFileAtomic(args.out, ca::CombinedPem(crls)));
  std::cout << "wrote " << args.out << ": " << crls.size() << " CRLs, " << entries
            << " revoked certificates (" << rebuilt << " rebuilt, in "
            << (authority->dir() / "crl").string() << ")\n";
  return {};
}

}  // namespace

void AddCrlCommands(CLI::App& app) {
  auto* crl = app.add_subcommand("crl", "Certificate revocation lists of the issuing CAs");
  crl->require_subcommand(1);
  auto args = std::make_shared<ExportArgs>();
  auto* exp = crl->add_subcommand(
      "export", "Bring the CRLs up to date and write them as one PEM file for an MQTT broker");
  exp->add_option("--dir", args->dir, "CA directory")->required();
  AddStoreOption(exp, args->store);
  exp->add_option("--out", args->out, "File to write the combined PEM CRLs to")->required();
  AddPassphraseOptions(exp, args->passphrases, {KeyRole::kManufacturing, KeyRole::kOperational});
  SetAction(exp, [args] { return RunExport(*args); });
}

}  // namespace iotpki::cli
