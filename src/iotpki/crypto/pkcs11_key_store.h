// Keys in a PKCS#11 token (an HSM, a secure element, SoftHSM2), reached through the PKCS#11 API
// directly: the module is dlopen'ed, keys are generated inside the token (non-extractable,
// sensitive) and every signature is a C_Sign in the token. See docs/hardware-keys.md.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "iotpki/common/bytes.h"
#include "iotpki/common/error.h"
#include "iotpki/crypto/key_store.h"

namespace iotpki::crypto {

inline constexpr char kDefaultPkcs11Module[] = "/usr/lib/softhsm/libsofthsm2.so";

// The parts of an RFC 7512 URI this store understands. Path attributes: token, object (the
// label), id (percent-encoded bytes), type (ignored: keys are found by class). Query attributes:
// pin-source (file:PATH), pin-value, module-path. Others are refused, so a typo is not silently
// ignored.
struct Pkcs11Uri {
  std::string token;
  std::string object;
  Bytes id;  // empty: any
  std::string pin_source;
  std::string pin_value;
  std::string module_path;
};
Result<Pkcs11Uri> ParsePkcs11Uri(std::string_view uri);
// The canonical URI of a key: token, object, id and the non-secret query attributes
// (pin-source, module-path); never pin-value.
std::string FormatPkcs11Uri(const Pkcs11Uri& uri);

std::unique_ptr<KeyStore> NewPkcs11KeyStore(const KeyStoreOptions& options);

// Writes an X.509 certificate into the token beside the key `key_uri` names (CKO_CERTIFICATE,
// same CKA_ID and label), as a device's secure element keeps its IDevID. Writing the same
// certificate again does nothing; another certificate for that key is AlreadyExists.
Result<void> StorePkcs11Certificate(std::string_view key_uri, ByteView certificate_der,
                                    const KeyStoreOptions& options);

}  // namespace iotpki::crypto
