// iotpki cert issue
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <iostream>

#include "iotpki/c509/c509.h"
#include "iotpki/ca/authority.h"
#include "iotpki/cli/cli.h"
#include "iotpki/common/file.h"
#include "iotpki/x509/csr.h"

namespace iotpki::cli {
namespace {

struct IssueArgs {
  std::string dir;
  std::string store;
  std::string csr;
  std::string profile;
  std::string serial;
  std::string fingerprint;
  std::string model;
  std::string out;
  std::string format = "pem";
  PassphraseSources passphrases;
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

// The issued certificate in the requested --format. Derived from the recorded X.509 certificate;
// a natively signed C509 is signed by the same issuing CA key.
Result<Bytes> Render(const x509::Certificate& cert, const std::string& format,
                     const crypto::Signer& issuer_key) {
  if (format == "der") return cert.ToDer();
  if (format == "c509") return c509::EncodeX509(cert.ToDer());
  if (format == "c509-native") return c509::ToNative(cert.ToDer(), issuer_key);
  std::string pem = cert.ToPem();
  return Bytes(pem.begin(), pem.end());
}

Result<void> RunIssue(IssueArgs& args) {
  // Everything the requester supplies is parsed before the CA is touched.
  IOTPKI_TRY(x509::ProfileKind profile, x509::ParseProfile(args.profile));
  if (profile != x509::ProfileKind::kIDevID && profile != x509::ProfileKind::kLDevID) {
    return Fail(Code::kInvalidArgument, "--profile must be idevid or ldevid");
  }
  IOTPKI_CHECK(x509::ValidateSerial(args.serial));
  IOTPKI_TRY(Bytes fingerprint, ca::ParseFingerprint(args.fingerprint));
  IOTPKI_TRY(x509::Csr csr, ReadCsr(args.csr));
  IOTPKI_TRY(auto authority, ca::Authority::Open(args.dir, SystemClock::Instance(), args.store));
  const bool idevid = profile == x509::ProfileKind::kIDevID;
  const ca::CaName issuer = idevid ? ca::CaName::kManufacturing : ca::CaName::kOperational;
  IOTPKI_TRY(
      crypto::Secret passphrase,
      ReadPassphrase(args.passphrases, idevid ? KeyRole::kManufacturing : KeyRole::kOperational));
  IOTPKI_CHECK(authority->Unlock(issuer, passphrase.view()));
  IOTPKI_TRY(x509::Certificate cert, authority->Issue({.profile = profile,
                                                       .csr = csr,
                                                       .serial = args.serial,
                                                       .hardware_fingerprint = fingerprint,
                                                       .model = args.model,
                                                       .actor = Actor()}));
  // The certificate is durable in the store; now it, or a form derived from it, may leave.
  auto output = Render(cert, args.format, *authority->issuer_key(issuer));
  if (!output) {
    // Not the requester's fault: the CA made the certificate.
    return Fail(Code::kInternal,
                "certificate " + cert.serial_hex() + " was issued and recorded, but its " +
                    args.format + " form failed: " + output.error().message(),
                output.error().detail());
  }
  if (args.out.empty()) {
    std::cout.write(reinterpret_cast<const char*>(output->data()),
                    static_cast<std::streamsize>(output->size()));
    std::cout.flush();
    if (!std::cout) return Fail(Code::kUnavailable, "writing to stdout failed");
  } else {
    IOTPKI_CHECK(WriteFileAtomic(args.out, *output));
    std::cerr << "issued " << x509::ProfileName(profile) << " " << cert.serial_hex() << " for "
              << cert.common_name() << " -> " << args.out;
    if (args.format != "pem") {
      std::cerr << " (" << args.format << ", " << output->size() << " bytes)";
    }
    std::cerr << "\n";
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
  AddStoreOption(issue, args->store);
  issue->add_option("--csr", args->csr, "PKCS#10 request, PEM or DER")->required();
  issue->add_option("--profile", args->profile, "idevid (birth) or ldevid (working)")->required();
  issue->add_option("--serial", args->serial, "Device serial: A-Z a-z 0-9 . -")->required();
  issue->add_option("--fingerprint", args->fingerprint, "Hardware fingerprint, hex")->required();
  issue->add_option("--model", args->model, "Device model (recorded with an IDevID)");
  issue->add_option("--out", args->out, "Write the certificate here (default: stdout)");
  issue
      ->add_option("--format", args->format,
                   "pem, der, c509 (re-encoded X.509) or c509-native (signed over CBOR); the CA "
                   "records the X.509 certificate in every case")
      ->check(CLI::IsMember({"pem", "der", "c509", "c509-native"}))
      ->default_str("pem");
  AddPassphraseOptions(issue, args->passphrases, {KeyRole::kManufacturing, KeyRole::kOperational});
  SetAction(issue, [args] { return RunIssue(*args); });
}

}  // namespace iotpki::cli
