// CMS EnvelopedData (RFC 5652) sealed to one certificate's EC key: what EST serverkeygen (RFC
// 7030 section 4.4.2) uses to hand a server-generated private key to the device that owns the
// recipient certificate (its IDevID).
#pragma once

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

}  // namespace iotpki::x509
