// Keys in a TPM 2.0, reached through the tpm2-openssl provider (OpenSSL 3) loaded into a library
// context of its own. Keys are generated inside the TPM under the owner hierarchy's storage key;
// what leaves it is a key blob that only this TPM can load (its private part is encrypted by the
// TPM's storage key). Every signature is computed in the TPM. See docs/hardware-keys.md.
//
//   tpm2:blob=PATH            a key blob ("TSS2 PRIVATE KEY" PEM, 0600); relative paths against
//                             KeyStoreOptions::base_dir. Generate, Open and Delete.
//   tpm2:handle=0x81000001    a persistent key (made by the device's provisioning, e.g.
//                             tpm2_evictcontrol). Open only: Generate and Delete are refused.
//
// The TPM is named by TPM2OPENSSL_TCTI (e.g. "device:/dev/tpmrm0", "tabrmd:",
// "swtpm:host=127.0.0.1,port=2321"); unset, tpm2-tss tries tabrmd, /dev/tpmrm0 and /dev/tpm0.
// KeyStoreOptions::passphrase is the key's authorization value (empty: none).
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "iotpki/common/error.h"
#include "iotpki/crypto/key_store.h"

namespace iotpki::crypto {

struct Tpm2Uri {
  std::string blob;  // as written in the URI (relative or absolute)
  uint32_t handle = 0;
};
// InvalidArgument for anything but exactly one of blob=PATH or handle=0x81xxxxxx.
Result<Tpm2Uri> ParseTpm2Uri(std::string_view uri);

std::unique_ptr<KeyStore> NewTpm2KeyStore(const KeyStoreOptions& options);

}  // namespace iotpki::crypto
