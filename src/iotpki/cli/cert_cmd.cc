// iotpki cert issue
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <iostream>

#include "iotpki/ca/authority.h"
#include "iotpki/cli/cli.h"
#include "iotpki/common/file.h"
#include "iotpki/x509/csr.h"

namespace iotpki::cli {
namespace {

struct IssueArgs {
  std::string dir;
  std::string csr;
  std::string profile;
  std::string serial;
  std::string fingerprint;
  std::string model;
  std::string out;
  std::string passphrase_file;
};

// PEM or DER, whichever the file holds.
Result<x509::Csr> ReadCsr(const std::string& path) {
  auto data = ReadFile(path, 1 << 20);
  if (!data) return Fail(std::move(data).error().Context("reading --csr"));
  auto text = AsString(*data);
  auto csr = text.find("-----BEGIN") != std::string_view::npos ? x509::Csr::FromPem(text)
                                                               : x509::Csr::FromDer(*data);
  if (!csr) return Fail(std::move(csr).error().Context(path));
  return csr;
}

std::string Actor() {
  const char* user = std::getenv("USER");
  return std::string("cli:") + (user != nullptr ? user : std::to_string(::getuid()));
}

Result<void> RunIssue(const IssueArgs& args) {
  // Everything the requester supplies is parsed before the CA is touched.
  IOTPKI_TRY(x509::ProfileKind profile, x509::ParseProfile(args.profile));
  if (profile != x509::ProfileKind::kIDevID && profile != x509::ProfileKind::kLDevID) {
    return Fail(Code::kInvalidArgument, "--profile must be idevid or ldevid");
  }
  IOTPKI_CHECK(x509::ValidateSerial(args.serial));
  IOTPKI_TRY(Bytes fingerprint, ca::ParseFingerprint(args.fingerprint));
  IOTPKI_TRY(x509::Csr csr, ReadCsr(args.csr));
  IOTPKI_TRY(auto authority, ca::Authority::Open(args.dir, SystemClock::Instance()));
  IOTPKI_TRY(std::string passphrase, ReadPassphrase(args.passphrase_file));
  IOTPKI_CHECK(authority->Unlock(
      profile == x509::ProfileKind::kIDevID ? ca::CaName::kManufacturing : ca::CaName::kOperational,
      passphrase));
  IOTPKI_TRY(x509::Certificate cert, authority->Issue({.profile = profile,
                                                       .csr = csr,
                                                       .serial = args.serial,
                                                       .hardware_fingerprint = fingerprint,
                                                       .model = args.model,
                                                       .actor = Actor()}));
  // The certificate is durable in the store; now it may leave.
  if (args.out.empty()) {
    std::cout << cert.ToPem();
  } else {
    IOTPKI_CHECK(WriteFileAtomic(args.out, cert.ToPem()));
    std::cerr << "issued " << x509::ProfileName(profile) << " " << cert.serial_hex() << " for "
              << cert.common_name() << " -> " << args.out << "\n";
  }
  return {};
}

}  // namespace

void AddCertCommands(CLI::App& app) {
  auto* cert = app.add_subcommand("cert", "Issue certificates");
  cert->require_subcommand(1);
  auto args = std::make_shared<IssueArgs>();
  auto* issue = cert->add_subcommand("issue", "Issue one device certificate from a CSR");
  issue->add_option("--dir", args->dir, "CA directory")->required();
  issue->add_option("--csr", args->csr, "PKCS#10 request, PEM or DER")->required();
  issue->add_option("--profile", args->profile, "idevid (birth) or ldevid (working)")->required();
  issue->add_option("--serial", args->serial, "Device serial: A-Z a-z 0-9 . -")->required();
  issue->add_option("--fingerprint", args->fingerprint, "Hardware fingerprint, hex")->required();
  issue->add_option("--model", args->model, "Device model (recorded with an IDevID)");
  issue->add_option("--out", args->out, "Write the PEM here (default: stdout)");
  issue->add_option("--passphrase-file", args->passphrase_file,
                    "File whose first line unlocks the CA key (default: $IOTPKI_PASSPHRASE)");
  SetAction(issue, [args] { return RunIssue(*args); });
}

}  // namespace iotpki::cli
