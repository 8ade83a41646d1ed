// CMS EnvelopedData (RFC 5652) sealed to one certificate's EC key: what EST serverkeygen (RFC
// 7030 section 4.4.2) uses to hand a server-generated private key to the device that owns the
// recipient certificate (its IDevID).
#pragma once

#include <span>
#include <vector>

#include "iotpki/common/bytes.h"
#include "iotpki/common/error.h"
#include "iotpki/crypto/secret.h"
#include "iotpki/crypto/signer.h"
#include "iotpki/x509/certificate.h"

namespace iotpki::x509 {

// DER EnvelopedData carrying `content` (id-data) for `recipient`, whose key must be P-256: one
// KeyAgreeRecipientInfo, ephemeral-static ECDH with the recipient's key
// (dhSinglePass-stdDH-sha256kdf-scheme: the X9.63 KDF with SHA-256, RFC 5753), the content key
// wrapped with AES-256 key wrap (RFC 3394), the content encrypted with AES-256-CBC. The
// recipient is named by issuer and serial number, so `openssl cms -decrypt -inkey KEY -recip
// CERT` opens it. FailedPrecondition for a recipient whose key is not P-256.
Result<Bytes> SealToCertificate(ByteView content, const Certificate& recipient);

// The content of an EnvelopedData that SealToCertificate (or any CMS sender using key agreement
// or key transport) made for `recipient`, opened with its private key `key`. The plaintext is
// returned as a Secret (it is a private key). DataLoss for anything that is not such an
// EnvelopedData for this recipient, or that does not decrypt.
Result<crypto::Secret> OpenSealed(ByteView enveloped_der, const crypto::Signer& key,
                                  const Certificate& recipient);

// RFC 7030 section 4.4.2 with additional encryption, as RFC 5958 section 4 describes it: the key
// (`pkcs8`, a PrivateKeyInfo, which is a version 1 OneAsymmetricKey) in an AsymmetricKeyPackage
// (content type id-ct-KP-aKeyPackage, 2.16.840.1.101.2.1.2.78.5), in a SignedData signed by the
// party that generated the key (`signer`, whose certificate is `signer_chain[0]`; the whole chain
// is included), the SignedData sealed to `recipient` as SealToCertificate does, the envelope's
// content type id-signedData and its content the SignedData itself (RFC 5652 nesting).
// FailedPrecondition for a signer OpenSSL cannot reach (a token key) or a recipient that is not
// P-256; InvalidArgument if signer_chain[0] is not the signer's certificate.
Result<Bytes> SealKeyPackage(ByteView pkcs8, const crypto::Signer& signer,
                             std::span<const Certificate> signer_chain,
                             const Certificate& recipient);

struct OpenedKeyPackage {
  crypto::Secret pkcs8;                   // the one key of the package, PrivateKeyInfo DER
  Certificate signer;                     // whose signature over the package verified
  std::vector<Certificate> certificates;  // every certificate the SignedData carries
};

// Opens what SealKeyPackage made: the envelope with `key` (the recipient's), then the
// SignedData, whose signature (and messageDigest and content-type attributes) must verify with
// the signer certificate it names. Whether that signer is to be trusted is the caller's to
// decide (a chain to its trust anchors). DataLoss for anything else: another envelope, a
// SignedData over another content type, a bad signature, a package of other than one key.
Result<OpenedKeyPackage> OpenKeyPackage(ByteView enveloped_der, const crypto::Signer& key,
                                        const Certificate& recipient);

}  // namespace iotpki::x509
