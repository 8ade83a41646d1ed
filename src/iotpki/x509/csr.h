// PKCS#10 certification requests (RFC 2986) as immutable values.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "iotpki/common/bytes.h"
#include "iotpki/common/error.h"
#include "iotpki/crypto/key.h"
#include "iotpki/crypto/signer.h"
#include "iotpki/x509/names.h"

typedef struct X509_req_st X509_REQ;

namespace iotpki::x509 {

// A parsed CSR. Cheap to copy; thread-safe. Parsing does not check the signature: call
// VerifySignature() (proof of possession) before trusting anything in it.
class Csr {
 public:
  // InvalidArgument "not a PKCS#10 CSR" for garbage, truncated input, trailing bytes or BER;
  // InvalidArgument "CSR public key is not supported" for keys OpenSSL cannot load.
  static Result<Csr> FromDer(ByteView der);
  // "CERTIFICATE REQUEST" (or the legacy "NEW CERTIFICATE REQUEST") PEM block.
  static Result<Csr> FromPem(std::string_view pem);

  const Bytes& ToDer() const;
  std::string ToPem() const;

  // True if the CSR is signed by the key it carries; never an error.
  bool VerifySignature() const;

  const crypto::PublicKey& public_key() const;
  // RFC 4514-style text and the first attribute of each kind (UTF-8, empty if absent).
  std::string subject() const;
  std::string common_name() const;
  std::string serial_number() const;
  std::string organization() const;
  // From the extensionRequest attribute; empty if there is none.
  const SubjectAltNames& subject_alt_names() const;

  // Borrowed OpenSSL handle for the library's own use; must not be modified.
  X509_REQ* handle() const;

  // Opaque; defined in csr.cc.
  struct Impl;

 private:
  explicit Csr(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<const Impl> impl_;
};

// Builds and signs a CSR with `key` (the device agent's, or a factory station's): the subject
// from `subject` (see NameFields for the encoding) and, if `san` is not empty, an
// extensionRequest with a non-critical subjectAltName.
Result<Csr> MakeCsr(const crypto::Signer& key, const NameFields& subject,
                    const SubjectAltNames& san = {});

}  // namespace iotpki::x509
