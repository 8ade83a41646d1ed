// The certificate authority: a CA directory opened, its hierarchy, its store, and the one sign
// path every certificate takes (policy rules, lint, sign, durable record, then release).
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "iotpki/ca/config.h"
#include "iotpki/common/bytes.h"
#include "iotpki/common/clock.h"
#include "iotpki/common/error.h"
#include "iotpki/crypto/key_store.h"
#include "iotpki/crypto/secret.h"
#include "iotpki/crypto/signer.h"
#include "iotpki/store/store.h"
#include "iotpki/x509/builder.h"
#include "iotpki/x509/certificate.h"
#include "iotpki/x509/csr.h"
#include "iotpki/x509/profile.h"

namespace iotpki::ca {

enum class CaName { kRoot, kManufacturing, kOperational };
std::string_view CaNameText(CaName name);  // "root", "manufacturing", "operational"

// One passphrase per key, so that a process holding one (the server: operational and bootstrap)
// learns nothing that opens another (the root, the manufacturing CA). Each at least 8 characters.
struct KeyPassphrases {
  std::string_view root, manufacturing, operational, bootstrap, audit;
  static KeyPassphrases Same(std::string_view p) { return {p, p, p, p, p}; }
};

struct InitOptions {
  std::string organization = "iotpki";
  crypto::KeyType root_curve = crypto::KeyType::kP256;
  std::string actor = "cli";
  // The store's URL (store/open.h), recorded in iotpki.toml; empty: sqlite:iotpki.db in `dir`.
  std::string store_url;
  // Where the root key is written instead of DIR/keys (removable media for an offline root):
  // DIR/root.key there, recorded in iotpki.toml as an absolute file: URI. Must not hold one.
  std::filesystem::path root_key_dir;
  // A PKCS#11 token URI ("pkcs11:token=iotpki-ca", RFC 7512): the root, manufacturing,
  // operational and audit keys are generated inside it (non-extractable, labelled
  // iotpki-<name>) and only their URIs are written. Empty: encrypted key files in DIR/keys.
  std::string key_store;
};

// Creates a CA in `dir`: root, manufacturing and operational CAs, the audit key and the
// bootstrap master, each encrypted with its own passphrase (0600) or, with
// options.key_store, the four keys in a token (a failure deletes those made), iotpki.toml and
// the store,
// with the three certificates recorded and a ca.init audit row. Everything is built in a
// temporary sibling directory and renamed into place, so a crash leaves either no CA or a whole
// one. AlreadyExists if `dir` holds anything.
Result<void> InitCa(const std::filesystem::path& dir, const InitOptions& options,
                    const KeyPassphrases& passphrases, const Clock& clock);
inline Result<void> InitCa(const std::filesystem::path& dir, const InitOptions& options,
                           std::string_view passphrase, const Clock& clock) {
  return InitCa(dir, options, KeyPassphrases::Same(passphrase), clock);
}

// The path of a file: key URI (relative ones against `dir`); empty for any other scheme.
std::filesystem::path KeyFilePath(const std::filesystem::path& dir, std::string_view uri);

// Parses a hardware fingerprint given as hex (1 to 64 bytes).
Result<Bytes> ParseFingerprint(std::string_view hex);

// A request that reached the CA: inputs already parsed. A device is named either by serial and
// hardware fingerprint (the factory's view; required for an IDevID), or, for an LDevID, by the
// device_id of a registered device (the onboarding server's view, from the IDevID it saw).
struct IssueRequest {
  x509::ProfileKind profile = x509::ProfileKind::kIDevID;
  x509::Csr csr;
  std::string serial;
  Bytes hardware_fingerprint;
  std::string device_id;  // LDevID only; when set, serial and fingerprint are ignored.
  std::string model;
  std::string batch;
  std::string actor = "cli";
  // LDevID only: the CSR may carry the key of the device's own IDevID. The JSON bootstrap without
  // a client certificate proves possession of the IDevID key by a CSR signed with it, so the
  // working certificate then certifies that key. Off by default: a new key is the rule.
  bool allow_birth_key = false;
  // IDevID only. The caller checked, for its whole batch before signing, that the serial is new
  // to the inventory and the CSR's key new to the fleet (mfg::Provision's preflight): the two
  // per-request store reads that would repeat those checks are skipped. A serial or key that
  // appears in the store meanwhile is still refused, by the store's unique constraints when the
  // prepared batch commits (AlreadyExists; not audited as a refusal).
  bool uniqueness_checked = false;
  // Prepare only: the prepared batch carries no cert.issue audit row, because the caller commits
  // it with others under one audit row of its own (mfg::Provision: one mfg.issue row per group).
  // Refusals are audited as always.
  bool audited_by_caller = false;
  // Where the CSR's key was made, recorded with the certificate (compliance report): the device
  // itself unless the caller knows better (a secure element; a key the server generated).
  store::KeyOrigin key_origin = store::KeyOrigin::kDevice;
};

// Where relying parties fetch the CRL covering a certificate of `ca_name` issued in `month`
// ("2026-12", x509::IssuanceMonth): `<public_url>/crl/<ca_name>/<month>.crl`, its partition; or
// the whole CRL, `<public_url>/crl/<ca_name>.crl`, when `month` is empty (partitioning off, or
// a serial of another form).
std::string CrlUrl(std::string_view public_url, std::string_view ca_name, std::string_view month);

// Thread-safe once the issuers needed are unlocked.
class Authority {
 public:
  // Reads the configuration, the three CA certificates and opens the store (`store_url` if
  // given, else the configuration's). No key is opened.
  static Result<std::unique_ptr<Authority>> Open(const std::filesystem::path& dir,
                                                 const Clock& clock,
                                                 std::string_view store_url = {});

  // Opens an issuing CA's key; Unauthenticated for a wrong passphrase, DataLoss for a corrupted
  // key file. Checks that the key belongs to the CA certificate.
  Result<void> Unlock(CaName name, std::string_view passphrase);

  // Opens the bootstrap master secret (needed to derive per-device bootstrap secrets).
  Result<void> UnlockBootstrap(std::string_view passphrase);
  // K_dev for a device (bootstrap.h), wiped when the caller drops it. FailedPrecondition until
  // UnlockBootstrap succeeded.
  Result<crypto::Secret> BootstrapSecret(std::string_view device_id) const;

  // A certificate signed and its store writes planned, but nothing committed: the caller commits
  // `batch` (alone or merged with others, e.g. the factory's group commit) and must not release
  // the certificate before that commit succeeded.
  struct Prepared {
    x509::Certificate certificate;
    // Device insert or state change, certificate, and the audit row unless audited_by_caller.
    store::WriteBatch batch;
    std::string device_id;
  };
  // Policy rules, lint and signature, as Issue, without the commit. A refusal is returned with
  // `refusal` set to the audit row to commit for it (Issue commits it). Thread-safe.
  struct Refusal {
    Error error;
    std::optional<store::WriteBatch> audit;  // absent for store or signer failures
  };
  tl::expected<Prepared, Refusal> Prepare(const IssueRequest& request);

  // A device key the CA generated itself (`iotpki mfg provision --keys ca`), in place of a CSR.
  struct GeneratedKeyRequest {
    crypto::PrivateKey key;
    std::string serial;
    Bytes hardware_fingerprint;
    std::string model;
    std::string batch;
    std::string actor = "cli";
    // As IssueRequest::uniqueness_checked; for a key generated in this process, the store's check
    // at commit is the check.
    bool uniqueness_checked = false;
    bool audited_by_caller = false;  // as IssueRequest::audited_by_caller
  };
  // As Prepare for an IDevID whose key the CA generated: holding the private key is the proof of
  // possession, so no CSR is built, signed and verified only to be discarded. Every other rule
  // (key allowed, serial new, key unused in the fleet), the lint and the signature are Prepare's.
  // The private key is only read for its public half. Thread-safe.
  tl::expected<Prepared, Refusal> PrepareGenerated(const GeneratedKeyRequest& request);

  // Issues a device certificate. The policy rules run first, in order (proof of possession, key
  // allowed, device state for the profile, key not used elsewhere); then x509::Issue lints and
  // signs; then the device and certificate rows and an audit row are committed in one
  // transaction. Only then is the certificate returned. A refusal by policy or lint is audited
  // (cert.refuse) and writes nothing else.
  Result<x509::Certificate> Issue(const IssueRequest& request);

  // A TLS server certificate (profile tls-server) from the operational CA for `key`, with the
  // given names in its subjectAltName, recorded in the store (profile server, no device) with a
  // cert.issue audit row before it is returned. FailedPrecondition until the operational CA is
  // unlocked. Defined in server_cert.cc.
  Result<x509::Certificate> IssueServerCertificate(const crypto::PublicKey& key,
                                                   const std::string& common_name,
                                                   const std::vector<std::string>& dns_names,
                                                   const std::vector<std::string>& ip_addresses,
                                                   const std::string& actor);

  // A delegated OCSP responder certificate (profile ocsp-responder) from `ca` (manufacturing or
  // operational) for `key`, recorded in the store (profile server, no device) with a cert.issue
  // audit row before it is returned. FailedPrecondition until that CA is unlocked. Defined in
  // server_cert.cc.
  Result<x509::Certificate> IssueOcspResponderCertificate(CaName ca, const crypto::PublicKey& key,
                                                          const std::string& actor);

  // The rotation-command certificate (profile command-signer, CN `common_name`, the
  // organisation's O) from the operational CA for `key`, recorded and audited like the OCSP
  // responder's. FailedPrecondition until the operational CA is unlocked. In server_cert.cc.
  Result<x509::Certificate> IssueCommandCertificate(const crypto::PublicKey& key,
                                                    const std::string& common_name,
                                                    const std::string& actor);

  // Overrides the configuration's [status] public_url for this process (`serve --public-url`);
  // call before issuing. InvalidArgument as ValidatePublicUrl.
  Result<void> SetPublicUrl(std::string url);
  const std::string& public_url() const { return public_url_; }

  const std::filesystem::path& dir() const { return dir_; }
  const CaConfig& config() const { return config_; }
  const x509::Policy& policy() const { return policy_; }
  const x509::Certificate& certificate(CaName name) const;
  // The unlocked key of an issuing CA, for signing other forms of what it issued (a natively
  // signed C509 of an issued certificate). Null for the root and until Unlock succeeded. Owned
  // by the Authority; Signer is thread-safe.
  const crypto::Signer* issuer_key(CaName name) const;
  store::Store& store() { return *store_; }
  const Clock& clock() const { return clock_; }

 private:
  Authority(std::filesystem::path dir, CaConfig config, const Clock& clock)
      : dir_(std::move(dir)), config_(std::move(config)), clock_(clock) {}

  // A request as the rules see it, whether it came with a CSR or with a generated key.
  struct RuleInput {
    x509::ProfileKind profile;
    const x509::Csr* csr;  // null for a key the CA generated (possession by construction)
    const crypto::PublicKey& key;
    const std::string& serial;
    const Bytes& hardware_fingerprint;
    const std::string& device_id;
    const std::string& model;
    const std::string& batch;
    const std::string& actor;
    bool allow_birth_key = false;     // IssueRequest::allow_birth_key
    bool uniqueness_checked = false;  // IssueRequest::uniqueness_checked (IDevID only)
    bool audited_by_caller = false;   // IssueRequest::audited_by_caller
    store::KeyOrigin key_origin = store::KeyOrigin::kDevice;  // IssueRequest::key_origin
  };
  tl::expected<Prepared, Refusal> PrepareInput(const RuleInput& request);

  // The policy rules; each returns the refusal, if any.
  Result<store::WriteBatch> CheckAndPlan(const RuleInput& request,
                                         const x509::DeviceIdentity& identity,
                                         const std::optional<store::Device>& existing);
  store::WriteBatch RefusalAudit(const RuleInput& request, const std::string& device_id,
                                 const Error& error) const;

  std::filesystem::path dir_;
  CaConfig config_;
  const Clock& clock_;
  x509::Policy policy_;
  std::optional<x509::Certificate> root_, manufacturing_, operational_;
  std::unique_ptr<crypto::Signer> manufacturing_key_, operational_key_;
  std::unique_ptr<store::Store> store_;
  std::string public_url_;
  crypto::Secret bootstrap_master_;
  Bytes bootstrap_salt_;
};

// Builds the x509 issuance policy from the configuration.
Result<x509::Policy> PolicyFromConfig(const CaConfig& config);

// Opens the store at `store_url`, or if it is empty the one the configuration names (relative
// SQLite paths against `dir`).
Result<std::unique_ptr<store::Store>> OpenStore(const std::filesystem::path& dir,
                                                const CaConfig& config, const Clock& clock,
                                                std::string_view store_url = {});

}  // namespace iotpki::ca
