// The admin CA and its operator certificates: who may use the dashboard (`iotpki serve
// --admin-listen`). The admin CA is a self-signed CA of its own, apart from the device hierarchy,
// so that no device certificate can ever open the admin listener, and an operator certificate can
// never enroll as a device. Its key (DIR/keys/admin-ca.key) is encrypted with the operational
// CA's passphrase; the server needs only its certificate (DIR/certs/admin-ca.pem).
//
// An operator certificate names its operator in the subject CN and its role in the subject OU:
// "operator" (may act) or "read-only" (may look). docs/formats.md, "Operator certificates".
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "iotpki/common/clock.h"
#include "iotpki/common/error.h"
#include "iotpki/store/store.h"
#include "iotpki/x509/certificate.h"

namespace iotpki::admin {

enum class Role { kReadOnly, kOperator };
std::string_view RoleName(Role role);  // "read-only", "operator"
// InvalidArgument naming the two roles for anything else.
Result<Role> ParseRole(std::string_view name);

std::filesystem::path AdminCaCertPath(const std::filesystem::path& dir);  // DIR/certs/admin-ca.pem
std::filesystem::path AdminCaKeyPath(const std::filesystem::path& dir);   // DIR/keys/admin-ca.key

// Creates the admin CA in an existing CA directory: a P-256 key (encrypted PKCS#8, 0600, under
// `passphrase`) and a self-signed certificate valid 10 years, then an admin.init audit row when
// `store` is given. AlreadyExists if DIR has an admin CA.
Result<x509::Certificate> InitAdminCa(const std::filesystem::path& dir,
                                      std::string_view organization, std::string_view passphrase,
                                      const Clock& clock, store::Store* store,
                                      std::string_view actor);

// DIR/certs/admin-ca.pem. FailedPrecondition saying how to create it if it is missing.
Result<x509::Certificate> LoadAdminCa(const std::filesystem::path& dir);

struct IssueOperatorRequest {
  std::string name;  // 1..64 of [A-Za-z0-9._@-]
  Role role = Role::kReadOnly;
  std::filesystem::path out_dir;    // created if missing; must not hold NAME's files
  std::string_view key_passphrase;  // protects the key file and the PKCS#12, >= 8 characters
  int64_t days = 365;
};

struct IssuedOperator {
  x509::Certificate certificate;
  std::filesystem::path cert_path;  // OUT/NAME.pem: the certificate then the admin CA
  std::filesystem::path key_path;   // OUT/NAME.key: encrypted PKCS#8, 0600
  std::filesystem::path p12_path;   // OUT/NAME.p12: key + certificate + admin CA, 0600
};

// Issues an operator's key and certificate from the admin CA (its key opened with
// `ca_passphrase`) and writes them to out_dir, then an admin.issue audit row (subject the
// serial; details name, role, not_after) when `store` is given. InvalidArgument for a bad name,
// days or passphrase; AlreadyExists if out_dir holds NAME's files.
Result<IssuedOperator> IssueOperator(const std::filesystem::path& dir,
                                     std::string_view ca_passphrase,
                                     const IssueOperatorRequest& request, const Clock& clock,
                                     store::Store* store, std::string_view actor);

// Revokes the operator certificate `serial`, or (with `name`) every valid certificate of that
// operator, each with an admin.revoke audit row, in one commit; returns what it revoked. The admin
// listener refuses a revoked certificate from the next request on. InvalidArgument unless exactly
// one of name and serial is given; NotFound for an unknown operator or serial;
// FailedPrecondition if there is nothing left to revoke.
Result<std::vector<store::OperatorCertificate>> RevokeOperator(store::Store& store,
                                                               std::string_view name,
                                                               std::string_view serial,
                                                               std::string_view actor);

// Who a client certificate (already verified as issued by the admin CA) names.
struct Operator {
  std::string name;  // subject CN
  Role role = Role::kReadOnly;
  std::string serial;       // lowercase hex
  std::string fingerprint;  // SHA-256 of the certificate, lowercase hex
};
// PermissionDenied if the certificate has no CN or its OU is not a role.
Result<Operator> OperatorOf(const x509::Certificate& cert);

}  // namespace iotpki::admin
