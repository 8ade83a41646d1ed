#include "iotpki/ca/authority.h"

#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "iotpki/ca/bootstrap.h"
#include "iotpki/common/file.h"
#include "iotpki/crypto/primitives.h"
#include "iotpki/crypto/secret_file.h"
#include "iotpki/store/audit.h"
#include "iotpki/store/open.h"
#include "iotpki/x509/crl.h"

namespace iotpki::ca {

std::string CrlUrl(std::string_view public_url, std::string_view ca_name, std::string_view month) {
  std::string url = std::string(public_url) + "/crl/" + std::string(ca_name);
  return month.empty() ? url + ".crl" : url + "/" + std::string(month) + ".crl";
}
namespace {

namespace fs = std::filesystem;
using x509::ProfileKind;

store::CertificateRecord RecordFor(const x509::Certificate& cert, store::CertProfile profile,
                                   std::string issuer, std::optional<std::string> device_id) {
  store::CertificateRecord r;
  r.serial = cert.serial_hex();
  r.device_id = std::move(device_id);
  r.profile = profile;
  r.issuer = std::move(issuer);
  r.subject = cert.subject();
  r.not_before = cert.not_before();
  r.not_after = cert.not_after();
  r.key_fingerprint = ToHex(cert.public_key().Fingerprint());
  r.der = cert.ToDer();
  return r;
}

Result<void> MakeDir(const fs::path& dir, int mode) {
  if (::mkdir(dir.c_str(), static_cast<mode_t>(mode)) != 0 && errno != EEXIST) {
    return Fail(Code::kPermissionDenied, "cannot create directory " + dir.string());
  }
  return {};
}

std::string Json(const nlohmann::json& j) { return j.dump(); }

}  // namespace

std::string_view CaNameText(CaName name) {
  switch (name) {
    case CaName::kRoot:
      return "root";
    case CaName::kManufacturing:
      return "manufacturing";
    case CaName::kOperational:
      return "operational";
  }
  return "unknown";
}

Result<Bytes> ParseFingerprint(std::string_view hex) {
  auto bytes = FromHex(hex);
  if (!bytes || bytes->empty() || bytes->size() > 64) {
    std::string shown(hex.substr(0, 40));
    return Fail(Code::kInvalidArgument,
                "hardware fingerprint '" + shown + "' is not 2 to 128 hex digits");
  }
  return bytes;
}

Result<x509::Policy> PolicyFromConfig(const CaConfig& config) {
  x509::Policy p;
  p.ldevid.default_validity = int64_t{config.ldevid_validity_days} * x509::kSecondsPerDay;
  p.ldevid.max_validity = int64_t{config.ldevid_max_validity_days} * x509::kSecondsPerDay;
  std::vector<crypto::KeyType> types;
  for (const auto& name : config.device_key_types) {
    IOTPKI_TRY(crypto::KeyType t, crypto::ParseCurve(name));
    types.push_back(t);
  }
  if (types.empty()) return Fail(Code::kInvalidArgument, "policy.device_key_types is empty");
  p.idevid.key_types = types;
  p.ldevid.key_types = types;
  if (config.device_size_budget > 0) {
    p.idevid.max_der_size = static_cast<size_t>(config.device_size_budget);
    p.ldevid.max_der_size = static_cast<size_t>(config.device_size_budget);
  }
  p.enterprise_number = static_cast<uint32_t>(config.enterprise_number);
  return p;
}

Result<std::unique_ptr<store::Store>> OpenStore(const fs::path& dir, const CaConfig& config,
                                                const Clock& clock, std::string_view store_url) {
  return store::Open(store_url.empty() ? config.store_url : store_url, clock, {.base_dir = dir});
}

fs::path KeyFilePath(const fs::path& dir, std::string_view uri) {
  if (uri.substr(0, 5) != "file:") return {};
  fs::path path(uri.substr(5));
  return path.is_relative() ? dir / path : path;
}

Result<void> InitCa(const fs::path& dir, const InitOptions& options,
                    const KeyPassphrases& passphrases, const Clock& clock) {
  std::error_code ec;
  if (fs::exists(dir, ec) && !(fs::is_directory(dir, ec) && fs::is_empty(dir, ec))) {
    return Fail(Code::kAlreadyExists, "a CA (or other files) already exists in " + dir.string() +
                                          "; refusing to overwrite it (choose an empty --dir)");
  }
  IOTPKI_CHECK(x509::ValidateOrganization(options.organization));
  for (auto [name, p] : {std::pair{"root", passphrases.root},
                         {"manufacturing", passphrases.manufacturing},
                         {"operational", passphrases.operational},
                         {"bootstrap", passphrases.bootstrap},
                         {"audit", passphrases.audit}}) {
    // With a token only the bootstrap master is a file.
    if (!options.key_store.empty() && std::string_view(name) != "bootstrap") continue;
    if (p.size() < 8) {
      return Fail(Code::kInvalidArgument,
                  std::string("the ") + name + " key's passphrase must be at least 8 characters");
    }
  }
  bool in_token = !options.key_store.empty();
  if (in_token && options.key_store.substr(0, 7) != "pkcs11:") {
    return Fail(Code::kInvalidArgument,
                "--key-store takes a PKCS#11 token URI (pkcs11:token=LABEL); without it the keys "
                "are encrypted files in DIR/keys");
  }
  if (in_token && !options.root_key_dir.empty()) {
    return Fail(Code::kInvalidArgument,
                "--root-key-dir and --key-store exclude each other: with a token the root key "
                "never exists as a file");
  }
  fs::path root_key_path;
  if (!options.root_key_dir.empty()) {
    std::error_code ec2;
    if (!fs::is_directory(options.root_key_dir, ec2)) {
      return Fail(Code::kInvalidArgument, "--root-key-dir " + options.root_key_dir.string() +
                                              " is not a directory (create or mount it first)");
    }
    root_key_path = fs::absolute(options.root_key_dir, ec2) / "root.key";
    if (fs::exists(root_key_path, ec2)) {
      return Fail(Code::kAlreadyExists, root_key_path.string() +
                                            " already exists; refusing to overwrite a root key "
                                            "(choose an empty --root-key-dir)");
    }
  }
  fs::path parent = dir.parent_path().empty() ? fs::path(".") : dir.parent_path();
  fs::create_directories(parent, ec);
  fs::path tmp = parent / (dir.filename().string() + ".init-" + ToHex(crypto::RandomBytes(4)));
  // Removes the half-built directory (and keys made in a token) on any failure.
  struct Cleanup {
    fs::path path;
    fs::path root_key;  // outside `path` with --root-key-dir
    crypto::KeyStore* token = nullptr;
    std::vector<std::string> token_keys;
    bool armed = true;
    ~Cleanup() {
      std::error_code ignored;
      if (!armed) return;
      fs::remove_all(path, ignored);
      if (!root_key.empty()) fs::remove(root_key, ignored);
      // Best effort: a key left behind only blocks its label, and the error that got here is
      // the one to report.
      for (const auto& uri : token_keys) (void)token->Delete(uri);
    }
  } cleanup{tmp, {}};
  IOTPKI_CHECK(MakeDir(tmp, 0755));
  IOTPKI_CHECK(MakeDir(tmp / "keys", 0700));
  IOTPKI_CHECK(MakeDir(tmp / "certs", 0755));

  CaConfig config;
  config.organization = options.organization;
  if (!options.store_url.empty()) config.store_url = options.store_url;
  if (!root_key_path.empty()) config.root_key = "file:" + root_key_path.string();
  config.audit_key = "file:keys/audit.key";
  config.audit_public_key = "certs/audit-key.pem";
  config.bootstrap_salt = ToHex(crypto::RandomBytes(16));
  x509::Policy policy;
  int64_t now = clock.NowUnix();

  // The keys: generated inside the token named by --key-store (labelled iotpki-<name>, only
  // their URIs reach iotpki.toml), or here, to be written encrypted below.
  std::unique_ptr<crypto::KeyStore> token;
  std::unique_ptr<crypto::Signer> root_owned, mfg_owned, ops_owned, audit_owned;
  struct Wanted {
    const char* name;
    crypto::KeyType type;
    std::unique_ptr<crypto::Signer>* out;
  };
  const Wanted wanted[] = {{"root", options.root_curve, &root_owned},
                           {"manufacturing", crypto::KeyType::kP256, &mfg_owned},
                           {"operational", crypto::KeyType::kP256, &ops_owned},
                           {"audit", crypto::KeyType::kP256, &audit_owned}};
  if (in_token) {
    IOTPKI_TRY(token, crypto::KeyStoreFor(options.key_store, {}));
    cleanup.token = token.get();
    for (const Wanted& w : wanted) {
      std::string uri =
          crypto::AppendPkcs11Attribute(options.key_store, std::string("object=iotpki-") + w.name);
      auto key = token->Generate(uri, w.type);
      if (!key) {
        return Fail(std::move(key).error().Context(std::string("generating the ") + w.name +
                                                   " key in the token"));
      }
      cleanup.token_keys.push_back((*key)->uri());
      *w.out = std::move(*key);
    }
    config.root_key = root_owned->uri();
    config.manufacturing_key = mfg_owned->uri();
    config.operational_key = ops_owned->uri();
    config.audit_key = audit_owned->uri();
  } else {
    for (const Wanted& w : wanted) {
      IOTPKI_TRY(crypto::PrivateKey key, crypto::PrivateKey::Generate(w.type));
      *w.out = std::make_unique<crypto::PrivateKey>(std::move(key));
    }
  }
  const crypto::Signer& root_key = *root_owned;
  const crypto::Signer& mfg_key = *mfg_owned;
  const crypto::Signer& ops_key = *ops_owned;
  const crypto::Signer& audit_key = *audit_owned;
  // File keys only: the PrivateKey behind a signer made above.
  auto file_key = [](const crypto::Signer& s) -> const crypto::PrivateKey& {
    return static_cast<const crypto::PrivateKey&>(s);
  };

  auto root_tmpl = x509::NewTemplate(ProfileKind::kRoot, root_key.public_key(), now, policy);
  root_tmpl.subject = {.organization = options.organization, .common_name = "Root CA"};
  IOTPKI_TRY(x509::Certificate root, x509::Issue(root_tmpl, nullptr, root_key, policy));

  auto mfg_tmpl = x509::NewTemplate(ProfileKind::kIssuingCa, mfg_key.public_key(), now, policy);
  mfg_tmpl.subject = {.organization = options.organization, .common_name = "Manufacturing CA"};
  IOTPKI_TRY(x509::Certificate mfg, x509::Issue(mfg_tmpl, &root, root_key, policy));

  auto ops_tmpl = x509::NewTemplate(ProfileKind::kIssuingCa, ops_key.public_key(), now, policy);
  ops_tmpl.subject = {.organization = options.organization, .common_name = "Operational CA"};
  IOTPKI_TRY(x509::Certificate ops, x509::Issue(ops_tmpl, &root, root_key, policy));

  if (in_token) {
    // Nothing to write: the keys stay in the token.
  } else if (root_key_path.empty()) {
    IOTPKI_CHECK(crypto::SaveKeyFile(tmp / "keys/root.key", file_key(root_key), passphrases.root));
  } else {
    cleanup.root_key = root_key_path;
    IOTPKI_CHECK(crypto::SaveKeyFile(root_key_path, file_key(root_key), passphrases.root));
  }
  if (!in_token) {
    IOTPKI_CHECK(crypto::SaveKeyFile(tmp / "keys/manufacturing.key", file_key(mfg_key),
                                     passphrases.manufacturing));
    IOTPKI_CHECK(crypto::SaveKeyFile(tmp / "keys/operational.key", file_key(ops_key),
                                     passphrases.operational));
    IOTPKI_CHECK(
        crypto::SaveKeyFile(tmp / "keys/audit.key", file_key(audit_key), passphrases.audit));
  }
  IOTPKI_CHECK(WriteFileAtomic(tmp / config.audit_public_key, audit_key.public_key().ToPem()));
  IOTPKI_CHECK(WriteFileAtomic(tmp / config.root_cert, root.ToPem()));
  IOTPKI_CHECK(WriteFileAtomic(tmp / config.manufacturing_cert, mfg.ToPem()));
  IOTPKI_CHECK(WriteFileAtomic(tmp / config.operational_cert, ops.ToPem()));
  // The chains devices and servers present: issuing CA then root.
  IOTPKI_CHECK(WriteFileAtomic(tmp / "certs/manufacturing-chain.pem", mfg.ToPem() + root.ToPem()));
  IOTPKI_CHECK(WriteFileAtomic(tmp / "certs/operational-chain.pem", ops.ToPem() + root.ToPem()));
  {
    crypto::Secret master(crypto::RandomBytes(32));
    IOTPKI_CHECK(crypto::SaveSecretFile(tmp / config.bootstrap_master_key, master.bytes(),
                                        kBootstrapMasterLabel, passphrases.bootstrap));
  }
  IOTPKI_CHECK(SaveConfig(tmp, config));

  {
    IOTPKI_TRY(auto store, OpenStore(tmp, config, clock));
    // A database shared by several nodes may already serve a CA: never mix two in one store.
    IOTPKI_TRY(auto audit, store->ReadAudit(1, 1));
    if (!audit.empty()) {
      return Fail(Code::kAlreadyExists,
                  "the store " + store::RedactStoreUrl(config.store_url) +
                      " already holds a CA's records; ca init needs an empty database");
    }
    store::WriteBatch batch;
    batch.InsertCertificate(RecordFor(root, store::CertProfile::kRoot, "root", std::nullopt));
    batch.InsertCertificate(RecordFor(mfg, store::CertProfile::kIssuingCa, "root", std::nullopt));
    batch.InsertCertificate(RecordFor(ops, store::CertProfile::kIssuingCa, "root", std::nullopt));
    batch.AppendAudit(
        {.actor = options.actor,
         .action = "ca.init",
         .subject = root.serial_hex(),
         .details = Json({{"organization", options.organization},
                          {"root", root.fingerprint_sha256()},
                          {"manufacturing", mfg.fingerprint_sha256()},
                          {"operational", ops.fingerprint_sha256()},
                          {"root_key", root_key.public_key().Describe()},
                          {"key_store", in_token ? "pkcs11" : "file"},
                          {"audit_key", ToHex(audit_key.public_key().Fingerprint())}})});
    IOTPKI_CHECK(store->Commit(batch));
  }
  IOTPKI_CHECK(SyncDirectory(tmp));
  // rename(2) replaces an empty directory atomically.
  if (::rename(tmp.c_str(), dir.c_str()) != 0) {
    return Fail(Code::kAlreadyExists, "cannot create the CA in " + dir.string() +
                                          " (it appeared meanwhile or is not empty)");
  }
  cleanup.armed = false;
  IOTPKI_CHECK(SyncDirectory(parent));
  return {};
}

Result<void> Authority::SetPublicUrl(std::string url) {
  IOTPKI_CHECK(ValidatePublicUrl(url));
  public_url_ = std::move(url);
  return {};
}

Result<std::unique_ptr<Authority>> Authority::Open(const fs::path& dir, const Clock& clock,
                                                   std::string_view store_url) {
  IOTPKI_TRY(CaConfig config, LoadConfig(dir));
  std::unique_ptr<Authority> a(new Authority(dir, std::move(config), clock));
  IOTPKI_TRY(a->policy_, PolicyFromConfig(a->config_));
  a->public_url_ = a->config_.public_url;
  auto load = [&](const std::string& rel) -> Result<x509::Certificate> {
    auto pem = ReadTextFile(dir / rel);
    if (!pem) return Fail(std::move(pem).error().Context("reading CA certificate"));
    auto cert = x509::Certificate::FromPem(*pem);
    if (!cert) return Fail(std::move(cert).error().Context((dir / rel).string()));
    return cert;
  };
  IOTPKI_TRY(a->root_, load(a->config_.root_cert));
  IOTPKI_TRY(a->manufacturing_, load(a->config_.manufacturing_cert));
  IOTPKI_TRY(a->operational_, load(a->config_.operational_cert));
  IOTPKI_TRY(a->store_, OpenStore(dir, a->config_, clock, store_url));
  return a;
}

const x509::Certificate& Authority::certificate(CaName name) const {
  switch (name) {
    case CaName::kRoot:
      return *root_;
    case CaName::kManufacturing:
      return *manufacturing_;
    case CaName::kOperational:
      return *operational_;
  }
  return *root_;
}

const crypto::Signer* Authority::issuer_key(CaName name) const {
  switch (name) {
    case CaName::kRoot:
      return nullptr;
    case CaName::kManufacturing:
      return manufacturing_key_.get();
    case CaName::kOperational:
      return operational_key_.get();
  }
  return nullptr;
}

Result<void> Authority::Unlock(CaName name, std::string_view passphrase) {
  const std::string& uri = name == CaName::kRoot            ? config_.root_key
                           : name == CaName::kManufacturing ? config_.manufacturing_key
                                                            : config_.operational_key;
  IOTPKI_TRY(auto signer, crypto::OpenSigner(uri, passphrase, dir_));
  if (!(signer->public_key() == certificate(name).public_key())) {
    return Fail(Code::kFailedPrecondition,
                "the " + std::string(CaNameText(name)) + " CA key does not match its certificate");
  }
  if (name == CaName::kManufacturing) manufacturing_key_ = std::move(signer);
  if (name == CaName::kOperational) operational_key_ = std::move(signer);
  return {};
}

Result<void> Authority::UnlockBootstrap(std::string_view passphrase) {
  fs::path path = config_.bootstrap_master_key;
  if (path.is_relative()) path = dir_ / path;
  IOTPKI_TRY(Bytes master, crypto::LoadSecretFile(path, kBootstrapMasterLabel, passphrase));
  bootstrap_master_ = crypto::Secret(std::move(master));
  IOTPKI_TRY(bootstrap_salt_, FromHex(config_.bootstrap_salt));
  return {};
}

Result<crypto::Secret> Authority::BootstrapSecret(std::string_view device_id) const {
  if (bootstrap_master_.empty()) {
    return Fail(Code::kFailedPrecondition, "the bootstrap master secret is not unlocked");
  }
  return DeriveBootstrapSecret(bootstrap_master_.bytes(), bootstrap_salt_, device_id);
}

Result<store::WriteBatch> Authority::CheckAndPlan(const RuleInput& req,
                                                  const x509::DeviceIdentity& identity,
                                                  const std::optional<store::Device>& existing) {
  // 1. Proof of possession: the CSR is signed by the key it carries (a key the CA generated is
  //    possessed by construction).
  if (req.csr != nullptr && !req.csr->VerifySignature()) {
    return Fail(Code::kInvalidArgument,
                "CSR signature does not verify (no proof of possession of the key)");
  }
  // 2. Key type and strength allowed for the profile.
  IOTPKI_CHECK(x509::CheckKeyAllowed(policy_, req.profile, req.key));

  // 3. Device state for the profile.
  store::WriteBatch batch;
  if (req.profile == ProfileKind::kIDevID) {
    if (existing) {
      return Fail(Code::kAlreadyExists, "device serial " + identity.serial +
                                            " is already provisioned (device " +
                                            existing->device_id + ")");
    }
    batch.InsertDevice({.device_id = identity.device_id,
                        .serial = identity.serial,
                        .model = req.model,
                        .batch = req.batch,
                        .state = store::DeviceState::kManufactured,
                        .hardware_fingerprint = ToHex(req.hardware_fingerprint)});
  } else if (req.profile == ProfileKind::kLDevID) {
    if (!existing) {
      return Fail(Code::kNotFound, req.device_id.empty() ? "no device with serial " + req.serial +
                                                               " (provision its IDevID first)"
                                                         : "unknown device " + req.device_id);
    }
    if (existing->device_id != identity.device_id) {
      return Fail(Code::kPermissionDenied, "serial " + identity.serial +
                                               " is registered with a different hardware "
                                               "fingerprint");
    }
    if (existing->state != store::DeviceState::kManufactured &&
        existing->state != store::DeviceState::kActive) {
      return Fail(Code::kPermissionDenied,
                  "device " + identity.device_id + " is " +
                      std::string(store::DeviceStateName(existing->state)) +
                      " and may not receive a working certificate");
    }
    batch.UpdateDeviceState(identity.device_id, existing->state, store::DeviceState::kActive);
  } else {
    return Fail(Code::kInvalidArgument, "only idevid and ldevid certificates are issued here");
  }

  // 4. The key is new to the fleet (a repeated key means a broken key generator), except that
  //    a device may renew its working certificate with the same key.
  if (req.uniqueness_checked && req.profile == ProfileKind::kIDevID) return batch;
  std::string fp = ToHex(req.key.Fingerprint());
  IOTPKI_TRY(auto holders, store_->FindCertificatesByKey(fp));
  for (const auto& h : holders) {
    bool same_device = h.device_id && *h.device_id == identity.device_id;
    if (!same_device) {
      return Fail(Code::kAlreadyExists,
                  "the CSR's public key is already used by another certificate (serial " +
                      h.serial + "); every device key must be unique");
    }
    if (h.profile != store::CertProfile::kLDevId || req.profile != ProfileKind::kLDevID) {
      if (req.allow_birth_key && req.profile == ProfileKind::kLDevID &&
          h.profile == store::CertProfile::kIDevId) {
        continue;
      }
      // The same rule, and status, as simpleenroll's check against the IDevID's key: a
      // device's own key is a permission question, not a fleet duplicate.
      bool birth_key =
          req.profile == ProfileKind::kLDevID && h.profile == store::CertProfile::kIDevId;
      return Fail(birth_key ? Code::kPermissionDenied : Code::kAlreadyExists,
                  "the CSR's public key is the device's birth-certificate key; a working "
                  "certificate needs a new key");
    }
  }
  return batch;
}

store::WriteBatch Authority::RefusalAudit(const RuleInput& req, const std::string& device_id,
                                          const Error& error) const {
  store::WriteBatch batch;
  batch.AppendAudit({.actor = req.actor,
                     .action = "cert.refuse",
                     .subject = device_id,
                     .details = Json({{"profile", x509::ProfileName(req.profile)},
                                      {"serial", req.serial},
                                      {"code", CodeName(error.code())},
                                      {"reason", error.message()}})});
  return batch;
}

tl::expected<Authority::Prepared, Authority::Refusal> Authority::Prepare(const IssueRequest& req) {
  return PrepareInput({.profile = req.profile,
                       .csr = &req.csr,
                       .key = req.csr.public_key(),
                       .serial = req.serial,
                       .hardware_fingerprint = req.hardware_fingerprint,
                       .device_id = req.device_id,
                       .model = req.model,
                       .batch = req.batch,
                       .actor = req.actor,
                       .allow_birth_key = req.allow_birth_key,
                       .uniqueness_checked = req.uniqueness_checked,
                       .audited_by_caller = req.audited_by_caller,
                       .key_origin = req.key_origin});
}

tl::expected<Authority::Prepared, Authority::Refusal> Authority::PrepareGenerated(
    const GeneratedKeyRequest& req) {
  static const std::string kNoDeviceId;
  return PrepareInput({.profile = ProfileKind::kIDevID,
                       .csr = nullptr,
                       .key = req.key.public_key(),
                       .serial = req.serial,
                       .hardware_fingerprint = req.hardware_fingerprint,
                       .device_id = kNoDeviceId,
                       .model = req.model,
                       .batch = req.batch,
                       .actor = req.actor,
                       .uniqueness_checked = req.uniqueness_checked,
                       .audited_by_caller = req.audited_by_caller,
                       .key_origin = store::KeyOrigin::kGenerated});
}

tl::expected<Authority::Prepared, Authority::Refusal> Authority::PrepareInput(
    const RuleInput& req) {
  auto plain = [](Error e) { return tl::unexpected<Refusal>(Refusal{std::move(e), std::nullopt}); };
  bool manufacturing = req.profile == ProfileKind::kIDevID;
  const crypto::Signer* key = manufacturing ? manufacturing_key_.get() : operational_key_.get();
  const x509::Certificate& issuer = manufacturing ? *manufacturing_ : *operational_;
  if (key == nullptr) {
    return plain(Error(Code::kFailedPrecondition, "the issuing CA key is not unlocked"));
  }

  // Who the device is, and what the store knows of it.
  std::optional<store::Device> existing;
  x509::DeviceIdentity identity{.organization = config_.organization,
                                .hw_type_oid = config_.hw_type_oid};
  if (!req.device_id.empty() && req.profile == ProfileKind::kLDevID) {
    auto d = store_->GetDevice(req.device_id);
    if (d) {
      existing = *d;
      identity.device_id = d->device_id;
      identity.serial = d->serial;
    } else if (d.error().code() == Code::kNotFound) {
      identity.device_id = req.device_id;
    } else {
      return plain(std::move(d).error());
    }
  } else {
    if (auto v = x509::ValidateSerial(req.serial); !v) return plain(std::move(v).error());
    identity.serial = req.serial;
    identity.device_id = x509::ComputeDeviceId(req.serial, req.hardware_fingerprint);
    // Unless the caller checked the serial, the store's UNIQUE (serial) being the final guard.
    if (!req.uniqueness_checked || req.profile != ProfileKind::kIDevID) {
      auto d = store_->GetDeviceBySerial(req.serial);
      if (d) {
        existing = *d;
      } else if (d.error().code() != Code::kNotFound) {
        return plain(std::move(d).error());
      }
    }
  }

  auto refuse = [&](Error error) {
    store::WriteBatch audit = RefusalAudit(req, identity.device_id, error);
    return tl::unexpected<Refusal>(Refusal{std::move(error), std::move(audit)});
  };

  auto planned = CheckAndPlan(req, identity, existing);
  if (!planned) {
    Code c = planned.error().code();
    // Store failures are not policy decisions.
    if (c == Code::kUnavailable || c == Code::kDataLoss || c == Code::kInternal ||
        c == Code::kResourceExhausted) {
      return plain(std::move(planned).error());
    }
    return refuse(std::move(planned).error());
  }

  auto tmpl = x509::NewTemplate(req.profile, req.key, clock_.NowUnix(), policy_);
  tmpl.device = identity;
  if (!public_url_.empty()) {
    std::string ca_name = manufacturing ? "manufacturing" : "operational";
    tmpl.crl_url =
        CrlUrl(public_url_, ca_name,
               config_.crl_partition_bytes > 0 ? x509::IssuanceMonth(tmpl.serial) : std::string());
    tmpl.ocsp_url = public_url_ + "/ocsp";
  }
  auto cert = x509::Issue(tmpl, &issuer, *key, policy_);
  if (!cert) {
    if (cert.error().code() == Code::kFailedPrecondition) return refuse(std::move(cert).error());
    return plain(std::move(cert).error());
  }

  Prepared out{.certificate = *cert, .batch = std::move(*planned), .device_id = identity.device_id};
  store::CertificateRecord record =
      RecordFor(*cert, manufacturing ? store::CertProfile::kIDevId : store::CertProfile::kLDevId,
                manufacturing ? "manufacturing" : "operational", identity.device_id);
  record.key_origin = req.key_origin;
  out.batch.InsertCertificate(std::move(record));
  if (req.audited_by_caller) return out;
  out.batch.AppendAudit({.actor = req.actor,
                         .action = "cert.issue",
                         .subject = identity.device_id,
                         .details = Json({{"profile", x509::ProfileName(req.profile)},
                                          {"serial", identity.serial},
                                          {"cert_serial", cert->serial_hex()},
                                          {"not_after", cert->not_after()},
                                          {"sha256", cert->fingerprint_sha256()}})});
  return out;
}

Result<x509::Certificate> Authority::Issue(const IssueRequest& req) {
  auto prepared = Prepare(req);
  if (!prepared) {
    Refusal& r = prepared.error();
    // The refusal is what the requester must see, even if recording it fails too.
    if (r.audit) {
      if (auto written = store_->Commit(*r.audit); !written) {
        store::ReportAuditWriteFailure("cert.refuse", written.error());
      }
    }
    return Fail(std::move(r.error));
  }
  // Durable first; only then may the certificate leave.
  IOTPKI_CHECK(store_->Commit(prepared->batch));
  return std::move(prepared->certificate);
}

}  // namespace iotpki::ca
