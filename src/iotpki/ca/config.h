// The CA directory and its configuration file (iotpki.toml).
//
//   DIR/iotpki.toml           this configuration
//   DIR/keys/<name>.key       encrypted PKCS#8 keys, 0600 (or, later, pkcs11:/tpm2: URIs); the root
//                             key may live elsewhere (ca init --root-key-dir, an absolute file:
//                             URI)
//   DIR/keys/audit.key        the audit checkpoint key; DIR/certs/audit-key.pem its public key
//   DIR/keys/bootstrap-master.key  the bootstrap master secret (openssl enc format), 0600
//   DIR/certs/<name>.pem      root.pem, manufacturing.pem, operational.pem
//   DIR/iotpki.db             the SQLite store (unless [store] url names another)
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "iotpki/common/error.h"

namespace iotpki::ca {

inline constexpr char kConfigFile[] = "iotpki.toml";

struct CaConfig {
  std::string organization = "iotpki";
  // Key URIs (crypto::OpenSigner); file: paths are relative to the CA directory.
  std::string root_key = "file:keys/root.key";
  std::string manufacturing_key = "file:keys/manufacturing.key";
  std::string operational_key = "file:keys/operational.key";
  // The audit key signs audit checkpoints (store/checkpoint.h); its public key sits beside the
  // certificates so that anyone can check a checkpoint. Empty in a CA made before it existed.
  std::string audit_key;
  std::string audit_public_key;
  std::string root_cert = "certs/root.pem";
  std::string manufacturing_cert = "certs/manufacturing.pem";
  std::string operational_cert = "certs/operational.pem";

  // [bootstrap]: the master key K_dev is derived from (secret, encrypted with the passphrase)
  // and the HKDF salt (public, random per CA).
  std::string bootstrap_master_key = "keys/bootstrap-master.key";
  std::string bootstrap_salt;  // hex

  // [store] url: sqlite:PATH (relative to the CA directory) or postgresql://... (store/open.h).
  // A file written before the url key read `backend = "sqlite"` and `path`; those still load.
  std::string store_url = "sqlite:iotpki.db";

  // [policy]
  int ldevid_validity_days = 90;
  int ldevid_max_validity_days = 397;
  std::vector<std::string> device_key_types = {"P-256"};
  int device_size_budget = 0;  // 0: the x509 policy's default.
  // A device whose working certificate expired (or was revoked, but not for keyCompromise) at
  // most this many days ago may enroll again with its IDevID (re-entry); 0 refuses re-entry.
  int reentry_max_days_expired = 365;

  // [identity]: RFC 9039 device URN urn:dev:os:<enterprise_number>-<serial> and the 802.1AR
  // hardwareModuleName hwType. 32473 is RFC 5612's documentation enterprise number: set your own.
  int64_t enterprise_number = 32473;
  std::string hw_type_oid = "1.3.6.1.4.1.32473.1";
  // [status] public_url: where relying parties reach `iotpki serve`
  // ("https://pki.example.com:8443", no trailing slash). When set, device certificates carry
  // cRLDistributionPoints <url>/crl/<issuer>.crl and an authorityInfoAccess OCSP URL <url>/ocsp.
  // Empty: neither.
  std::string public_url;
  // [crl] partition_bytes: when an issuing CA's whole CRL is larger than this (DER), relying
  // parties get it in partitions by issuance month (docs/formats.md, CRLs); 0 never partitions,
  // and certificates then name the whole CRL. Needs public_url (the partitions' URLs).
  int64_t crl_partition_bytes = 1 << 20;
  // [crl] max_bytes: the size budget of every CRL signed (whole or partition), checked by the
  // CRL lint before signing; past it the CRL is refused and the previous one stays published
  // (OCSP still answers). 64 MiB holds about 1.6 million revocations; 0 never refuses.
  int64_t crl_max_bytes = int64_t{64} << 20;
};

// InvalidArgument unless `url` is empty or http(s)://, printable ASCII without spaces, without
// a trailing slash, query or fragment.
Result<void> ValidatePublicUrl(std::string_view url);

// Reads and validates DIR/iotpki.toml. FailedPrecondition "no CA in DIR (run iotpki ca init)"
// when it is missing; InvalidArgument naming the key and line for a malformed file.
Result<CaConfig> LoadConfig(const std::filesystem::path& dir);
Result<void> SaveConfig(const std::filesystem::path& dir, const CaConfig& config);
std::string ConfigToToml(const CaConfig& config);

}  // namespace iotpki::ca
