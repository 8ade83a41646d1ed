#include "iotpki/ca/config.h"

#include <toml++/toml.h>

#include <algorithm>
#include <optional>
#include <sstream>

#include "iotpki/common/der.h"
#include "iotpki/common/file.h"
#include "iotpki/store/open.h"

namespace iotpki::ca {
namespace {

Error Invalid(const std::filesystem::path& file, const std::string& what) {
  return Error(Code::kInvalidArgument, file.string() + ": " + what);
}

// [store] url, or the backend and path keys of files written before it (backend "sqlite" only).
Result<void> LoadStoreUrl(const toml::table& t, const std::filesystem::path& file,
                          std::string& url) {
  auto text = [&](const char* path) -> Result<std::optional<std::string>> {
    auto node = t.at_path(path);
    if (!node) return std::optional<std::string>();
    auto v = node.value<std::string>();
    if (!v) return Fail(Invalid(file, std::string(path) + " must be a string"));
    return std::optional<std::string>(*v);
  };
  IOTPKI_TRY(auto given, text("store.url"));
  IOTPKI_TRY(auto backend, text("store.backend"));
  IOTPKI_TRY(auto path, text("store.path"));
  if (given && (backend || path)) {
    return Fail(Invalid(file, "store.url replaces store.backend and store.path: keep only url"));
  }
  if (given) {
    auto parsed = store::ParseStoreUrl(*given);
    if (!parsed) return Fail(Invalid(file, "store.url: " + parsed.error().message()));
    url = *given;
    return {};
  }
  if (backend && *backend != "sqlite") {
    return Fail(Invalid(file, "store.backend '" + *backend +
                                  "' is not supported: set store.url (sqlite:PATH or "
                                  "postgresql://HOST/DATABASE)"));
  }
  if (path) {
    if (path->empty()) return Fail(Invalid(file, "store.path is empty"));
    url = "sqlite:" + *path;
  }
  return {};
}

}  // namespace

std::string ConfigToToml(const CaConfig& c) {
  toml::array key_types;
  for (const auto& t : c.device_key_types) key_types.push_back(t);
  toml::table root{
      {"ca", toml::table{{"organization", c.organization}}},
      {"keys", toml::table{{"root", c.root_key},
                           {"manufacturing", c.manufacturing_key},
                           {"operational", c.operational_key},
                           {"audit", c.audit_key},
                           {"audit_public", c.audit_public_key}}},
      {"certs", toml::table{{"root", c.root_cert},
                            {"manufacturing", c.manufacturing_cert},
                            {"operational", c.operational_cert}}},
      {"bootstrap",
       toml::table{{"master_key", c.bootstrap_master_key}, {"salt", c.bootstrap_salt}}},
      {"store", toml::table{{"url", c.store_url}}},
      {"policy", toml::table{{"ldevid_validity_days", c.ldevid_validity_days},
                             {"ldevid_max_validity_days", c.ldevid_max_validity_days},
                             {"device_key_types", key_types},
                             {"device_size_budget", c.device_size_budget},
                             {"reentry_max_days_expired", c.reentry_max_days_expired}}},
      {"identity",
       toml::table{{"enterprise_number", c.enterprise_number}, {"hw_type_oid", c.hw_type_oid}}},
  };
  if (!c.public_url.empty()) root.insert("status", toml::table{{"public_url", c.public_url}});
  if (c.crl_partition_bytes != CaConfig().crl_partition_bytes ||
      c.crl_max_bytes != CaConfig().crl_max_bytes) {
    root.insert("crl", toml::table{{"partition_bytes", c.crl_partition_bytes},
                                   {"max_bytes", c.crl_max_bytes}});
  }
  std::ostringstream out;
  out << "# iotpki CA configuration. Keys are URIs: file:PATH (relative to this directory),\n"
         "# later pkcs11: and tpm2:.\n";
  out << root << "\n";
  return out.str();
}

Result<void> ValidatePublicUrl(std::string_view url) {
  if (url.empty()) return {};
  bool scheme = url.starts_with("http://") || url.starts_with("https://");
  bool printable = std::all_of(url.begin(), url.end(), [](char ch) {
    return ch > 0x20 && ch < 0x7f && ch != '?' && ch != '#';
  });
  if (!scheme || !printable || url.back() == '/' || url.size() > 512) {
    return Fail(Code::kInvalidArgument,
                "the public URL must look like https://pki.example.com:8443 (http or https, no "
                "spaces, no trailing slash, query or fragment)");
  }
  return {};
}

Result<void> SaveConfig(const std::filesystem::path& dir, const CaConfig& config) {
  return WriteFileAtomic(dir / kConfigFile, ConfigToToml(config), 0644);
}

Result<CaConfig> LoadConfig(const std::filesystem::path& dir) {
  auto file = dir / kConfigFile;
  auto text = ReadTextFile(file, 1 << 20);
  if (!text) {
    if (text.error().code() == Code::kNotFound) {
      return Fail(Code::kFailedPrecondition, "no CA in " + dir.string() +
                                                 " (create one with: iotpki ca init --dir " +
                                                 dir.string() + ")");
    }
    return Fail(std::move(text).error());
  }
  // Debian's toml++ is built with exceptions; this is the one place they are caught.
  toml::table t;
  try {
    t = toml::parse(*text, file.string());
  } catch (const toml::parse_error& err) {
    return Fail(Invalid(file, "line " + std::to_string(err.source().begin.line) + ": " +
                                  std::string(err.description())));
  }
  CaConfig c;
  auto str = [&](const char* path, std::string& out) -> Result<void> {
    auto node = t.at_path(path);
    if (!node) return {};
    auto v = node.value<std::string>();
    if (!v) return Fail(Invalid(file, std::string(path) + " must be a string"));
    out = *v;
    return {};
  };
  auto integer = [&](const char* path, auto& out, int64_t lo, int64_t hi) -> Result<void> {
    auto node = t.at_path(path);
    if (!node) return {};
    auto v = node.value<int64_t>();
    if (!v || *v < lo || *v > hi) {
      return Fail(Invalid(file, std::string(path) + " must be an integer in [" +
                                    std::to_string(lo) + ", " + std::to_string(hi) + "]"));
    }
    out = static_cast<std::remove_reference_t<decltype(out)>>(*v);
    return {};
  };
  IOTPKI_CHECK(str("ca.organization", c.organization));
  IOTPKI_CHECK(str("keys.root", c.root_key));
  IOTPKI_CHECK(str("keys.manufacturing", c.manufacturing_key));
  IOTPKI_CHECK(str("keys.operational", c.operational_key));
  IOTPKI_CHECK(str("keys.audit", c.audit_key));
  IOTPKI_CHECK(str("keys.audit_public", c.audit_public_key));
  IOTPKI_CHECK(str("certs.root", c.root_cert));
  IOTPKI_CHECK(str("certs.manufacturing", c.manufacturing_cert));
  IOTPKI_CHECK(str("certs.operational", c.operational_cert));
  IOTPKI_CHECK(str("bootstrap.master_key", c.bootstrap_master_key));
  IOTPKI_CHECK(str("bootstrap.salt", c.bootstrap_salt));
  IOTPKI_CHECK(LoadStoreUrl(t, file, c.store_url));
  IOTPKI_CHECK(integer("policy.ldevid_validity_days", c.ldevid_validity_days, 1, 3650));
  IOTPKI_CHECK(integer("policy.ldevid_max_validity_days", c.ldevid_max_validity_days, 1, 3650));
  IOTPKI_CHECK(integer("policy.device_size_budget", c.device_size_budget, 0, 65536));
  IOTPKI_CHECK(integer("policy.reentry_max_days_expired", c.reentry_max_days_expired, 0, 36500));
  IOTPKI_CHECK(integer("identity.enterprise_number", c.enterprise_number, 1, 4294967295LL));
  IOTPKI_CHECK(str("identity.hw_type_oid", c.hw_type_oid));
  IOTPKI_CHECK(str("status.public_url", c.public_url));
  IOTPKI_CHECK(integer("crl.partition_bytes", c.crl_partition_bytes, 0, int64_t{1} << 40));
  IOTPKI_CHECK(integer("crl.max_bytes", c.crl_max_bytes, 0, int64_t{1} << 40));
  if (auto valid = ValidatePublicUrl(c.public_url); !valid) {
    return Fail(Invalid(file, "status.public_url: " + valid.error().message()));
  }
  if (auto node = t.at_path("policy.device_key_types")) {
    auto* arr = node.as_array();
    if (arr == nullptr) return Fail(Invalid(file, "policy.device_key_types must be an array"));
    c.device_key_types.clear();
    for (const auto& e : *arr) {
      auto v = e.value<std::string>();
      if (!v) return Fail(Invalid(file, "policy.device_key_types must hold strings"));
      c.device_key_types.push_back(*v);
    }
  }
  if (c.ldevid_validity_days > c.ldevid_max_validity_days) {
    return Fail(Invalid(file, "policy.ldevid_validity_days exceeds ldevid_max_validity_days"));
  }
  if (auto salt = FromHex(c.bootstrap_salt); !salt) {
    return Fail(Invalid(file, "bootstrap.salt must be hex"));
  }
  if (der::OidContent(c.hw_type_oid).empty()) {
    return Fail(Invalid(file, "identity.hw_type_oid is not a dotted OID"));
  }
  if (c.organization.empty() || c.organization.size() > 64) {
    return Fail(Invalid(file, "ca.organization must be 1 to 64 characters"));
  }
  return c;
}

}  // namespace iotpki::ca
