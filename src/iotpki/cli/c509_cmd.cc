// iotpki c509 encode | decode | show | verify
//
// Inputs are files or stdin ("-"); C509 input may be binary or hex text (the draft's vectors are
// hex), X.509 input DER or PEM. Outputs are files (written atomically) or stdout.
#include <CLI/CLI.hpp>
#include <iostream>
#include <iterator>
#include <memory>
#include <string>

#include "iotpki/c509/c509.h"
#include "iotpki/cli/cli.h"
#include "iotpki/common/file.h"
#include "iotpki/common/strings.h"
#include "iotpki/x509/certificate.h"

namespace iotpki::cli {
namespace {

constexpr size_t kMaxInput = 1 << 20;  // certificates are a few kilobytes

struct Args {
  std::string in = "-";
  std::string out = "-";
  std::string issuer;
  bool pem = false;
  bool hex = false;
};

Result<Bytes> ReadInput(const std::string& path, std::string_view what) {
  if (path != "-") {
    auto data = ReadFile(path, kMaxInput);
    if (!data) return Fail(std::move(data).error().Context("reading " + std::string(what)));
    return data;
  }
  Bytes data;
  std::istreambuf_iterator<char> it(std::cin), end;
  for (; it != end; ++it) {
    if (data.size() >= kMaxInput) {
      return Fail(Code::kInvalidArgument, std::string(what) + " on stdin is larger than 1 MiB");
    }
    data.push_back(static_cast<uint8_t>(*it));
  }
  return data;
}

Result<void> WriteOutput(const std::string& path, ByteView data) {
  if (path == "-") {
    std::cout.write(reinterpret_cast<const char*>(data.data()),
                    static_cast<std::streamsize>(data.size()));
    std::cout.flush();
    if (!std::cout) return Fail(Code::kUnavailable, "writing to stdout failed");
    return {};
  }
  return WriteFileAtomic(path, data);
}

bool IsPem(ByteView data) {
  return AsString(data).find("-----BEGIN CERTIFICATE-----") != std::string_view::npos;
}

// The DER of the first CERTIFICATE block. Done here rather than through an X.509 parser so
// that the bytes are passed on exactly as they are.
Result<Bytes> PemCertificate(ByteView data) {
  constexpr std::string_view kBegin = "-----BEGIN CERTIFICATE-----";
  constexpr std::string_view kEnd = "-----END CERTIFICATE-----";
  std::string_view text = AsString(data);
  size_t b = text.find(kBegin);
  size_t e = b == std::string_view::npos ? b : text.find(kEnd, b);
  if (e == std::string_view::npos) return Fail(Code::kInvalidArgument, "no PEM certificate");
  auto der = Base64Decode(text.substr(b + kBegin.size(), e - b - kBegin.size()));
  if (!der) return Fail(Code::kInvalidArgument, "PEM certificate is not valid base64");
  return der;
}

// X.509 DER from DER or PEM input.
Result<Bytes> X509Input(ByteView data) {
  if (IsPem(data)) return PemCertificate(data);
  return Bytes(data.begin(), data.end());
}

// C509 bytes from binary or hex-text input.
Bytes C509Input(ByteView data) {
  std::string_view text = Trim(AsString(data));
  if (!text.empty() && text.size() % 2 == 0 &&
      text.find_first_not_of("0123456789abcdefABCDEF") == std::string_view::npos) {
    if (auto bytes = FromHex(text)) return *bytes;
  }
  return Bytes(data.begin(), data.end());
}

// An X.509 certificate as opposed to C509: PEM, or a DER SEQUENCE (C509 starts with 0x8B, or
// with the type 0x02/0x03 in the legacy sequence form).
bool LooksLikeX509(ByteView data) { return IsPem(data) || (!data.empty() && data[0] == 0x30); }

Result<void> RunEncode(const Args& args) {
  IOTPKI_TRY(Bytes input, ReadInput(args.in, "the certificate"));
  IOTPKI_TRY(Bytes der, X509Input(input));
  IOTPKI_TRY(Bytes c509, c509::EncodeX509(der));
  if (args.hex) {
    std::string line = ToHex(c509) + "\n";
    return WriteOutput(args.out, AsBytes(line));
  }
  return WriteOutput(args.out, c509);
}

Result<void> RunDecode(const Args& args) {
  IOTPKI_TRY(Bytes input, ReadInput(args.in, "the C509 certificate"));
  IOTPKI_TRY(Bytes der, c509::DecodeToX509(C509Input(input)));
  if (args.pem) {
    IOTPKI_TRY(x509::Certificate cert, x509::Certificate::FromDer(der));
    return WriteOutput(args.out, AsBytes(cert.ToPem()));
  }
  return WriteOutput(args.out, der);
}

Result<void> RunShow(const Args& args) {
  IOTPKI_TRY(Bytes input, ReadInput(args.in, "the certificate"));
  std::string header;
  Bytes c509 = C509Input(input);
  if (LooksLikeX509(input)) {
    IOTPKI_TRY(Bytes der, X509Input(input));
    IOTPKI_TRY(c509, c509::EncodeX509(der));
    header = "X.509 " + std::to_string(der.size()) + " bytes -> C509 " +
             std::to_string(c509.size()) + " bytes\n";
  } else {
    header = "C509 " + std::to_string(c509.size()) + " bytes\n";
  }
  IOTPKI_TRY(c509::C509Certificate cert, c509::Parse(c509));
  std::cout << header << c509::Describe(cert);
  return {};
}

// The issuer's public key from an X.509 (DER/PEM) or C509 (binary/hex) certificate.
Result<crypto::PublicKey> IssuerKey(const std::string& path) {
  IOTPKI_TRY(Bytes input, ReadInput(path, "--issuer"));
  if (LooksLikeX509(input)) {
    IOTPKI_TRY(Bytes der, X509Input(input));
    IOTPKI_TRY(x509::Certificate cert, x509::Certificate::FromDer(der));
    return cert.public_key();
  }
  IOTPKI_TRY(c509::C509Certificate cert, c509::Parse(C509Input(input)));
  return c509::SubjectPublicKey(cert);
}

Result<void> RunVerify(const Args& args) {
  if (args.in == "-" && args.issuer == "-") {
    return Fail(Code::kInvalidArgument, "the certificate and --issuer cannot both be stdin");
  }
  IOTPKI_TRY(crypto::PublicKey issuer, IssuerKey(args.issuer));
  IOTPKI_TRY(Bytes input, ReadInput(args.in, "the C509 certificate"));
  IOTPKI_TRY(bool ok, c509::Verify(C509Input(input), issuer));
  if (!ok) {
    return Fail(Code::kUnauthenticated, "signature does not verify with the issuer's key");
  }
  std::cout << "OK\n";
  return {};
}

}  // namespace

void AddC509Commands(CLI::App& app) {
  auto* c509 = app.add_subcommand("c509", "C509 (CBOR-encoded X.509) certificates");
  c509->require_subcommand(1);

  auto encode_args = std::make_shared<Args>();
  auto* encode = c509->add_subcommand("encode", "X.509 (DER or PEM) -> C509 (type 3, lossless)");
  encode->add_option("--in", encode_args->in, "X.509 certificate file, or - for stdin");
  encode->add_option("--out", encode_args->out, "C509 output file, or - for stdout");
  encode->add_flag("--hex", encode_args->hex, "write hex text instead of binary");
  SetAction(encode, [encode_args]() -> Result<void> { return RunEncode(*encode_args); });

  auto decode_args = std::make_shared<Args>();
  auto* decode = c509->add_subcommand("decode", "C509 type 3 -> the original X.509 DER");
  decode->add_option("--in", decode_args->in, "C509 file (binary or hex), or - for stdin");
  decode->add_option("--out", decode_args->out, "X.509 output file, or - for stdout");
  decode->add_flag("--pem", decode_args->pem, "write PEM instead of DER");
  SetAction(decode, [decode_args]() -> Result<void> { return RunDecode(*decode_args); });

  auto show_args = std::make_shared<Args>();
  auto* show = c509->add_subcommand("show", "Print a C509 certificate (or an X.509 one as C509)");
  show->add_option("--in", show_args->in, "C509 or X.509 file, or - for stdin");
  SetAction(show, [show_args]() -> Result<void> { return RunShow(*show_args); });

  auto verify_args = std::make_shared<Args>();
  auto* verify = c509->add_subcommand("verify", "Check a C509 certificate's issuer signature");
  verify->add_option("--in", verify_args->in, "C509 file (binary or hex), or - for stdin");
  verify->add_option("--issuer", verify_args->issuer, "issuer certificate, X.509 or C509")
      ->required();
  SetAction(verify, [verify_args]() -> Result<void> { return RunVerify(*verify_args); });
}

}  // namespace iotpki::cli
