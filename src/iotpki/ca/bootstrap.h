// Per-device bootstrap secrets and tokens: the functions live in crypto/bootstrap_token.h (the
// agent uses them too); the CA's names for them, and the master key file's label, are here.
#pragma once

#include "iotpki/crypto/bootstrap_token.h"

namespace iotpki::ca {

inline constexpr char kBootstrapMasterLabel[] = "iotpki-bootstrap-master-v1";
using crypto::BootstrapToken;
using crypto::BootstrapTokenMessage;
using crypto::DeriveBootstrapSecret;
using crypto::kBootstrapInfoPrefix;
using crypto::VerifyBootstrapToken;

}  // namespace iotpki::ca
