// Internal to the c509 layer: conversions shared by the implementation files.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "iotpki/c509/c509.h"
#include "iotpki/c509/cbor.h"
#include "iotpki/c509/registry.h"
#include "iotpki/common/bytes.h"
#include "iotpki/common/der.h"
#include "iotpki/common/error.h"

namespace iotpki::c509::internal {

// Input that is well-formed but uses something C509 (or this implementation) cannot carry.
Error Unsupported(std::string_view what);
// C509 input that breaks the format's rules.
Error Malformed(std::string_view what);
// X.509 DER input that is not a well-formed certificate.
Error BadX509(std::string_view what);

// --- Text values (draft section 3.1.4) ---

// text -> bstr (lower-case hex), tag 48 (EUI-64 / MAC-48 text) or text.
cbor::Item SpecialText(std::string_view text);
// The inverse; refuses items that are not text, bytes or tag 48 over 6 or 8 bytes.
Result<std::string> FromSpecialText(const cbor::Item& item);
bool IsPrintableString(std::string_view s);
bool IsIa5String(std::string_view s);

// --- Names ---

// `der` is the whole Name element (SEQUENCE). Registered attributes whose string type C509 can
// carry take the int form; every other attribute takes the (~oid, bytes) form, so the
// conversion is always exact. Refuses multi-valued RDNs.
Result<Name> NameFromDer(ByteView der);
Result<Bytes> NameToDer(const Name& name);
cbor::Item NameToCbor(const Name& name);
Result<Name> NameFromCbor(const cbor::Item& item);
// Native certificates carry every attribute as UTF-8: negative types become positive, here and
// inside Names nested in an extension value.
void MakeNameNative(Name& name);
cbor::Item MakeExtensionValueNative(int64_t id, const cbor::Item& value);

// --- Extensions (draft section 3.3) ---

// Whether this implementation has the specific CBOR encoding of a registered extension.
bool HasSpecificEncoding(int64_t id);
// extnValue contents -> C509 extensionValue; an error means the value is not representable in
// the specific encoding (the caller then uses the generic form).
Result<cbor::Item> ExtensionValueFromDer(int64_t id, ByteView extn_value);
// C509 extensionValue -> extnValue contents.
Result<Bytes> ExtensionValueToDer(int64_t id, const cbor::Item& value);

// KeyUsage/ReasonFlags BIT STRING contents (unused-bits byte + bytes) <-> integer with bit k of
// the BIT STRING as 2^k.
Result<uint64_t> FlagsFromBitString(ByteView contents);
Bytes FlagsToBitString(uint64_t flags);  // contents, minimal (trailing zero bits dropped)

// --- Keys and signatures ---

// A type-3 compressed point (0xFE/0xFD prefix) for an uncompressed SEC1 point, or nullopt when
// the point cannot be compressed and restored exactly (not on the curve, unknown curve).
std::optional<Bytes> CompressPoint(const registry::EcCurve& curve, ByteView point);
// 0x02/0x03/0xFE/0xFD-prefixed x -> 0x04 || x || y.
Result<Bytes> DecompressPoint(const registry::EcCurve& curve, ByteView point);

// DER ECDSA-Sig-Value -> r || s, each left-padded to `n` bytes (0: the smallest common group
// size that fits).
Result<Bytes> EcdsaDerToRaw(ByteView der, size_t n);
Result<Bytes> EcdsaRawToDer(ByteView raw);

// The DER AlgorithmIdentifier of a C509 AlgorithmId (signature or public-key table).
Result<Bytes> SignatureAlgorithmToDer(const AlgorithmId& alg);
Result<Bytes> PublicKeyAlgorithmToDer(const AlgorithmId& alg);
// The SubjectPublicKeyInfo DER for the C509 key fields. Points with the type-3 prefixes
// 0xFE/0xFD are decompressed; so are SEC1 0x02/0x03 points if `decompress_sec1` (to hand
// OpenSSL the usual uncompressed form; a type-3 DER rebuild keeps them as they were).
Result<Bytes> SubjectPublicKeyInfoToDer(const AlgorithmId& alg, const cbor::Item& key,
                                        bool decompress_sec1 = false);

// Bytes with tag replaced: for IMPLICIT tagging of an already encoded single-byte-tag TLV.
Bytes Retag(Bytes tlv, uint8_t tag);

// A parsed certificate and the exact bytes of its TBS items 0..9.
struct Parsed {
  C509Certificate cert;
  Bytes tbs_cbor;
};
Result<Parsed> ParseWithTbs(ByteView c509);

}  // namespace iotpki::c509::internal
