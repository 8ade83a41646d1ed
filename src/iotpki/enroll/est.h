// EST wire formats (RFC 7030 with RFC 8951's base64 rules): certs-only PKCS#7, CSR attributes,
// request bodies.
#pragma once

#include <span>
#include <string>
#include <string_view>

#include "iotpki/common/bytes.h"
#include "iotpki/common/error.h"
#include "iotpki/x509/certificate.h"
#include "iotpki/x509/csr.h"

namespace iotpki::enroll {

inline constexpr char kEstPrefix[] = "/.well-known/est";
inline constexpr char kPkcs10[] = "application/pkcs10";
inline constexpr char kCertsOnly[] = "application/pkcs7-mime; smime-type=certs-only";
inline constexpr char kPkcs7Mime[] = "application/pkcs7-mime";
inline constexpr char kCsrAttrs[] = "application/csrattrs";

// A degenerate PKCS#7 SignedData (no signers, no content) carrying `certs` in order: the
// "certs-only" Simple PKI Response of RFC 7030 section 4.1.3. Built with OpenSSL's PKCS7 API.
Result<Bytes> CertsOnlyPkcs7(std::span<const x509::Certificate> certs);

// base64 of DER in lines of 64 characters, each ending in LF (RFC 8951 lets receivers take any
// line breaks; LF alone also suits `base64 -d`, which refuses CR).
std::string EstBase64(ByteView der);

// CsrAttrs (RFC 7030 section 4.5.2) saying what the CA signs: ECDSA with SHA-256 on a P-256 key.
Bytes CsrAttributes();

// An EST request body: base64 of a DER PKCS#10, whitespace and CRLF line breaks tolerated (any
// Content-Transfer-Encoding header is ignored, RFC 8951). InvalidArgument for anything else.
Result<x509::Csr> ParseEstCsr(std::string_view body);

}  // namespace iotpki::enroll
