// EST wire formats (RFC 7030 with RFC 8951's base64 rules): certs-only PKCS#7, CSR attributes,
// request bodies; and the C509 answers (draft-ietf-cose-cbor-encoded-cert for the media types,
// draft-liao-ace-est-c509 for their use in EST) chosen by the Accept header.
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <vector>

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
inline constexpr char kC509CertType[] = "application/cose-c509-cert+cbor";
inline constexpr char kCoseC509Type[] = "application/cose-c509+cbor";
inline constexpr char kCoseC509ChainType[] = "application/cose-c509+cbor; usage=chain";
// serverkeygen (RFC 7030 section 4.4.2): the key part when it is encrypted to the client.
inline constexpr char kServerGeneratedKey[] =
    "application/pkcs7-mime; smime-type=server-generated-key";
// The multipart boundary. base64 never holds '-', so no part's content can contain it.
inline constexpr char kServerKeygenBoundary[] = "iotpki-est-serverkeygen";
inline constexpr char kServerKeygenType[] = "multipart/mixed; boundary=iotpki-est-serverkeygen";

// A degenerate PKCS#7 SignedData (no signers, no content) carrying `certs` in order: the
// "certs-only" Simple PKI Response of RFC 7030 section 4.1.3. Built with OpenSSL's PKCS7 API.
Result<Bytes> CertsOnlyPkcs7(std::span<const x509::Certificate> certs);

// base64 of DER in lines of 64 characters, each ending in LF (RFC 8951 lets receivers take any
// line breaks; LF alone also suits `base64 -d`, which refuses CR).
std::string EstBase64(ByteView der);

// CsrAttrs (RFC 7030 section 4.5.2) saying what the CA signs: ECDSA with SHA-256 on a P-256 key.
Bytes CsrAttributes();

// The body of a serverkeygen answer (RFC 7030 section 4.4.2): multipart/mixed with boundary
// kServerKeygenBoundary and CRLF line breaks; first the private key, `sealed_key` (a CMS
// EnvelopedData, kServerGeneratedKey), then the certificate, `certs_pkcs7` (certs-only PKCS#7);
// each part base64 in lines of 64 characters with Content-Transfer-Encoding: base64.
std::string ServerKeygenBody(ByteView sealed_key, ByteView certs_pkcs7);

// An EST request body: base64 of a DER PKCS#10, whitespace and CRLF line breaks tolerated (any
// Content-Transfer-Encoding header is ignored, RFC 8951). InvalidArgument for anything else.
Result<x509::Csr> ParseEstCsr(std::string_view body);

// The forms a certificate answer can take. Each endpoint offers its own list, in its order of
// preference (PKCS#7 first, so `Accept: */*` and no Accept at all keep RFC 7030's answer).
enum class CertFormat {
  kPkcs7,      // certs-only PKCS#7, base64 (RFC 7030)
  kC509Cert,   // application/cose-c509-cert+cbor: one C509Certificate, the first certificate
  kC509Set,    // application/cose-c509+cbor: COSE_C509 holding every certificate
  kC509Chain,  // application/cose-c509+cbor; usage=chain: the same, as an ordered chain
};

// Content negotiation over the Accept header (RFC 9110 section 12.5.1): a comma-separated list
// of media ranges (`type/subtype`, `type/*`, `*/*`) with optional parameters and a q-value
// (0 to 1, at most three decimals; q=0 means "not acceptable"). Each offered format takes the
// q-value of the most specific range that matches it: the exact type with a matching `usage`
// (C509 sets) or `smime-type` (PKCS#7, which must say certs-only) parameter, then the exact
// type, then `application/*`, then `*/*`; other parameters are ignored. Returns the formats with
// a q-value above 0, highest first, ties in `offered` order; empty when none is acceptable
// (answer 406). An absent or blank header accepts every format. InvalidArgument, naming the
// problem, for a header that does not parse.
Result<std::vector<CertFormat>> NegotiateCertFormat(std::string_view accept,
                                                    std::span<const CertFormat> offered);

// The Content-Type of a C509 format (not kPkcs7, whose type depends on the endpoint).
std::string_view C509ContentType(CertFormat format);

// COSE_C509 (draft-ietf-cose-cbor-encoded-cert section 3.4): `C509CertData / [2* C509CertData]`,
// where C509CertData is a byte string holding one C509Certificate (type 3, re-encoded: the
// certificate's own signature, so DecodeToX509 gives back its DER). One certificate is a bare
// byte string, two or more an array of byte strings. Errors name the certificate that C509
// cannot represent.
Result<Bytes> CoseC509(std::span<const x509::Certificate> certs);

// The body of a C509 answer: kC509Cert the C509Certificate of certs[0], the sets COSE_C509 of
// all of `certs`; base64 in lines of 64 characters, as every EST payload over HTTPS (RFC 8951;
// draft-liao-ace-est-c509 section "CBOR Transfer"). Precondition: format != kPkcs7.
Result<std::string> C509Body(CertFormat format, std::span<const x509::Certificate> certs);

}  // namespace iotpki::enroll
