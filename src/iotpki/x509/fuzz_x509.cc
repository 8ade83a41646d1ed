// libFuzzer target: a differential test of the two certificate and CSR parsers.
//
// Certificate::FromDer and Csr::FromDer read the shapes this project issues with the strict DER
// reader and everything else with OpenSSL (certificate.cc). On arbitrary bytes, beyond "no
// crash, no sanitizer report", it aborts when the fast reader accepts what OpenSSL refuses, or
// when the two parses of one input disagree on any field.
#include <cstdint>
#include <cstdlib>

#include "iotpki/x509/certificate.h"
#include "iotpki/x509/csr.h"
#include "iotpki/x509/internal.h"

namespace x509 = iotpki::x509;
using iotpki::ByteView;

namespace {

template <class T, class Parse>
std::pair<iotpki::Result<T>, iotpki::Result<T>> BothWays(Parse parse, ByteView input) {
  auto fast = parse(input);
  x509::internal::g_fast_parse = false;
  auto slow = parse(input);
  x509::internal::g_fast_parse = true;
  return {std::move(fast), std::move(slow)};
}

void Check(bool same) {
  if (!same) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const ByteView input(data, size);

  auto [cert, cert_slow] = BothWays<x509::Certificate>(
      [](ByteView in) { return x509::Certificate::FromDer(in); }, input);
  Check(cert.has_value() == cert_slow.has_value());
  if (cert) {
    const x509::Certificate& a = *cert;
    const x509::Certificate& b = *cert_slow;
    Check(a.serial() == b.serial() && a.subject() == b.subject() && a.issuer() == b.issuer());
    Check(a.common_name() == b.common_name() && a.serial_number() == b.serial_number() &&
          a.organization() == b.organization());
    Check(a.not_before() == b.not_before() && a.not_after() == b.not_after());
    Check(a.public_key() == b.public_key() && a.public_key().type() == b.public_key().type());
    Check(a.is_ca() == b.is_ca() && a.path_len() == b.path_len() &&
          a.key_usage() == b.key_usage() && a.extended_key_usage() == b.extended_key_usage());
    Check(a.subject_key_id() == b.subject_key_id() && a.authority_key_id() == b.authority_key_id());
    Check(a.subject_alt_names() == b.subject_alt_names() && a.extensions() == b.extensions());
    Check(a.signature_algorithm() == b.signature_algorithm() && a.version() == b.version() &&
          a.tbs_signature_algorithm() == b.tbs_signature_algorithm() &&
          a.tbs_signature_has_parameters() == b.tbs_signature_has_parameters());
    Check(a.not_before_is_utc_time() == b.not_before_is_utc_time() &&
          a.not_after_is_utc_time() == b.not_after_is_utc_time());
    Check(a.subject_attributes() == b.subject_attributes() &&
          a.extensions_decode() == b.extensions_decode());
    Check(a.handle() != nullptr);
  }

  auto [csr, csr_slow] =
      BothWays<x509::Csr>([](ByteView in) { return x509::Csr::FromDer(in); }, input);
  Check(csr.has_value() == csr_slow.has_value());
  if (csr) {
    Check(csr->public_key() == csr_slow->public_key() && csr->subject() == csr_slow->subject());
    Check(csr->common_name() == csr_slow->common_name() &&
          csr->serial_number() == csr_slow->serial_number() &&
          csr->organization() == csr_slow->organization());
    Check(csr->subject_alt_names() == csr_slow->subject_alt_names());
    Check(csr->VerifySignature() == csr_slow->VerifySignature());
    Check(csr->handle() != nullptr);
  }
  return 0;
}
