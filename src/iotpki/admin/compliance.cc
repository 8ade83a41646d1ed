#include "iotpki/admin/compliance.h"

#include <chrono>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>

#include "iotpki/ca/crl_publisher.h"
#include "iotpki/common/file.h"
#include "iotpki/crypto/key.h"
#include "iotpki/store/audit.h"
#include "iotpki/x509/certificate.h"
#include "iotpki/x509/crl.h"

namespace iotpki::admin {
namespace {

namespace fs = std::filesystem;

constexpr int64_t kDay = 86400;

// The clause(s) of each standard a finding speaks to: the project's reading of them, which
// docs/compliance.md lists for the auditor to confirm.
struct Clauses {
  const char* etsi;
  const char* nist;
  const char* en18031;
};

std::string ClauseFor(Standard s, const Clauses& c) {
  switch (s) {
    case Standard::kEtsiEn303645:
      return c.etsi;
    case Standard::kNistir8259a:
      return c.nist;
    case Standard::kEn18031_1:
      return c.en18031;
  }
  return "";
}

std::string Percent(int64_t n, int64_t total) {
  if (total == 0) return "0.0%";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f%%", 100.0 * static_cast<double>(n) / total);
  return buf;
}

// One DER TLV's header: tag, header length and content length; none if it overruns `b`.
struct Tlv {
  uint8_t tag = 0;
  size_t header = 0;
  size_t length = 0;
};

std::optional<Tlv> ReadTlv(ByteView b) {
  if (b.size() < 2) return std::nullopt;
  Tlv t{.tag = b[0], .header = 2, .length = b[1]};
  if (b[1] & 0x80) {
    size_t n = b[1] & 0x7f;
    if (n == 0 || n > 4 || b.size() < 2 + n) return std::nullopt;
    t.length = 0;
    for (size_t i = 0; i < n; ++i) t.length = (t.length << 8) | b[2 + i];
    t.header = 2 + n;
  }
  if (b.size() - t.header < t.length) return std::nullopt;
  return t;
}

// The SubjectPublicKeyInfo of a certificate's DER, found by stepping over the TBSCertificate's
// fields (RFC 5280 4.1: [0] version, serial, signature, issuer, validity, subject, SPKI). The
// report visits every live certificate, and a full parse would cost it more than the read.
std::optional<ByteView> SpkiOf(ByteView der) {
  auto cert = ReadTlv(der);
  if (!cert || cert->tag != 0x30) return std::nullopt;
  auto tbs = ReadTlv(der.subspan(cert->header));
  if (!tbs || tbs->tag != 0x30) return std::nullopt;
  ByteView p = der.subspan(cert->header + tbs->header, tbs->length);
  auto field = ReadTlv(p);
  if (field && field->tag == 0xa0) {
    p = p.subspan(field->header + field->length);
    field = ReadTlv(p);
  }
  constexpr uint8_t kBefore[] = {0x02, 0x30, 0x30, 0x30, 0x30};  // serial .. subject
  for (uint8_t tag : kBefore) {
    if (!field || field->tag != tag) return std::nullopt;
    p = p.subspan(field->header + field->length);
    field = ReadTlv(p);
  }
  if (!field || field->tag != 0x30) return std::nullopt;
  return p.subspan(0, field->header + field->length);
}

// Tallies live device keys by type. Keys of one class (the same AlgorithmIdentifier, so the same
// algorithm and curve, and the same key length) are described by OpenSSL once, from the first
// key of the class; an RSA key's bit length follows from its encoding's length.
class KeyTally {
 public:
  void Add(ByteView der) {
    auto spki = SpkiOf(der);
    auto outer = spki ? ReadTlv(*spki) : std::nullopt;
    auto alg = outer ? ReadTlv(spki->subspan(outer->header)) : std::nullopt;
    if (!alg) {
      ++by_type_["unreadable certificate"];
      return;
    }
    ByteView rest = spki->subspan(outer->header + alg->header + alg->length);
    auto bits = ReadTlv(rest);
    std::string cls(reinterpret_cast<const char*>(spki->data()) + outer->header,
                    alg->header + alg->length);
    cls += ":" + std::to_string(bits ? bits->length : 0);
    auto it = classes_.find(cls);
    if (it == classes_.end()) {
      auto key = crypto::PublicKey::FromDer(*spki);
      it = classes_.emplace(cls, key ? key->Describe() : "unreadable key").first;
    }
    ++by_type_[it->second];
  }
  const std::map<std::string, int64_t>& by_type() const { return by_type_; }

 private:
  std::map<std::string, std::string> classes_;
  std::map<std::string, int64_t> by_type_;
};

std::string HtmlEscape(std::string_view s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

int64_t MillisSince(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t)
      .count();
}

bool IsHardwareUri(std::string_view uri) {
  return uri.rfind("pkcs11:", 0) == 0 || uri.rfind("tpm2:", 0) == 0;
}

}  // namespace

Result<Standard> ParseStandard(std::string_view name) {
  if (name == "etsi-en-303-645") return Standard::kEtsiEn303645;
  if (name == "nistir-8259a") return Standard::kNistir8259a;
  if (name == "en-18031-1") return Standard::kEn18031_1;
  return Fail(Code::kInvalidArgument,
              "--standard must be etsi-en-303-645, nistir-8259a or "
              "en-18031-1, not '" +
                  std::string(name) + "'");
}

std::string_view StandardName(Standard standard) {
  switch (standard) {
    case Standard::kEtsiEn303645:
      return "etsi-en-303-645";
    case Standard::kNistir8259a:
      return "nistir-8259a";
    case Standard::kEn18031_1:
      return "en-18031-1";
  }
  return "";
}

std::string_view StandardTitle(Standard standard) {
  switch (standard) {
    case Standard::kEtsiEn303645:
      return "ETSI EN 303 645 V2.1.1 (consumer IoT)";
    case Standard::kNistir8259a:
      return "NISTIR 8259A (IoT device cybersecurity capability core baseline)";
    case Standard::kEn18031_1:
      return "EN 18031-1:2024 (radio equipment, internet-connected: network protection)";
  }
  return "";
}

std::string_view VerdictName(Verdict verdict) {
  switch (verdict) {
    case Verdict::kPass:
      return "pass";
    case Verdict::kFail:
      return "fail";
    case Verdict::kNotApplicable:
      return "not-applicable";
    case Verdict::kNeedsManualEvidence:
      return "needs-manual-evidence";
  }
  return "";
}

Result<Report> MeasureCompliance(Standard standard, const fs::path& dir, const ca::CaConfig& config,
                                 store::Store& store, const Clock& clock) {
  auto started = std::chrono::steady_clock::now();
  Report report{.standard = standard, .generated_at = clock.NowUnix()};
  const int64_t now = report.generated_at;
  // Each finding's time is the time since the previous one was added, unless it is given
  // (stranded-devices is counted in unique-credentials' read, and its time is there).
  auto mark = std::chrono::steady_clock::now();
  auto add = [&](Finding f, const Clauses& c, std::optional<int64_t> ms = std::nullopt) {
    f.ms = ms ? *ms : MillisSince(mark);
    mark = std::chrono::steady_clock::now();
    f.provision = ClauseFor(standard, c);
    report.findings.push_back(std::move(f));
  };

  // --- Unique per-device credentials, counted from the rows ---
  IOTPKI_TRY(int64_t devices, store.CountDevices({}));
  auto scan_started = std::chrono::steady_clock::now();
  IOTPKI_TRY(store::Store::CredentialAudit creds, store.AuditCredentials(now));
  int64_t scan_ms = MillisSince(scan_started);
  std::string scan_cost = "one pass over " + std::to_string(creds.devices) + " devices and " +
                          std::to_string(creds.device_certificates) + " device certificates (" +
                          std::to_string(scan_ms) + " ms)";
  {
    bool shared = creds.shared_keys > 0 || creds.shared_device_ids > 0 ||
                  creds.shared_hardware_fingerprints > 0;
    add({.id = "unique-credentials",
         .title = "Unique per-device credentials, no shared secret or key",
         .verdict = shared ? Verdict::kFail : Verdict::kPass,
         .evidence = {{"devices", std::to_string(devices)},
                      {"public keys certified for more than one owner",
                       std::to_string(creds.shared_keys)},
                      {"devices sharing a device id (so a bootstrap secret)",
                       std::to_string(creds.shared_device_ids)},
                      {"devices sharing a hardware fingerprint",
                       std::to_string(creds.shared_hardware_fingerprints)},
                      {"cost", scan_cost}},
         .how = "Counted from the rows, not from the constraints meant to prevent them: the "
                "certificates grouped by public key (a key with two owners, or a device and a "
                "CA), the devices grouped by device id (a bootstrap secret is HKDF-SHA256 of "
                "the master and the device id, docs/formats.md) and by hardware fingerprint "
                "(Store::AuditCredentials; the SQL is in docs/compliance.md). This is a pass "
                "over the fleet's rows, as it must be to see rows written past the store. Pass: "
                "all three are 0."},
        {"5.1-1, 5.4-2", "Device Identification", "AUM-1, CCK-1"});
  }

  // --- Private keys made on the device ---
  {
    int64_t today = now / kDay;
    IOTPKI_TRY(auto issued, store.CountIssuance(today - 3660, today));
    int64_t on_device = 0, hardware = 0, generated = 0, unknown = 0;
    for (const auto& c : issued) {
      if (c.profile != store::CertProfile::kIDevId && c.profile != store::CertProfile::kLDevId) {
        continue;
      }
      if (!c.key_origin) {
        unknown += c.n;
      } else if (*c.key_origin == store::KeyOrigin::kDevice) {
        on_device += c.n;
      } else if (*c.key_origin == store::KeyOrigin::kHardware) {
        hardware += c.n;
      } else {
        generated += c.n;
      }
    }
    int64_t total = on_device + hardware + generated + unknown;
    Finding f{.id = "keys-on-device",
              .title = "Private keys made on the device (own CSR or a hardware key)",
              .verdict = total > 0 && generated == 0 && unknown == 0
                             ? Verdict::kPass
                             : Verdict::kNeedsManualEvidence,
              .evidence = {{"device certificates (10 years)", std::to_string(total)},
                           {"key made on the device (CSR)",
                            std::to_string(on_device) + " (" + Percent(on_device, total) + ")"},
                           {"key made in a secure element",
                            std::to_string(hardware) + " (" + Percent(hardware, total) + ")"},
                           {"key made by the CA or server",
                            std::to_string(generated) + " (" + Percent(generated, total) + ")"},
                           {"origin not recorded", std::to_string(unknown)}},
              .how =
                  "The certificates recorded in the last 3,661 days by key origin, from the "
                  "issuance_counts table (kept with each certificate; certificates.key_origin "
                  "per row). Pass: every device key made on the device or in hardware; keys "
                  "the CA made (mfg provision --keys ca, EST serverkeygen) need evidence that "
                  "their transport to the device was protected."};
    add(std::move(f), {"5.4-1", "Data Protection", "SSM-2"});
  }

  // --- Devices out of reach ---
  add({.id = "stranded-devices",
       .title = "Devices not heard from for longer than their certificate has left",
       .verdict = creds.stranded == 0 ? Verdict::kPass : Verdict::kNeedsManualEvidence,
       .evidence = {{"stranded devices", std::to_string(creds.stranded)},
                    {"share of the fleet", Percent(creds.stranded, devices)},
                    {"cost",
                     "a range of the index devices_stranding, read with "
                     "unique-credentials' counts (its time is theirs)"}},
       .how = "Devices not decommissioned whose last contact (their newest certificate, the first "
              "use of one, or their last state change) is longer ago than their newest valid "
              "working certificate has left to live: they may stay offline until it expires and "
              "need a new birth-certificate enrollment. Each device's last contact and newest "
              "working certificate are kept on its row by every write (schema version 8), so "
              "the count is an index range, not a pass; docs/compliance.md gives the same count "
              "from the certificates' rows. Pass: none; otherwise the operator shows what was "
              "done about them (`iotpki campaign create --dry-run` lists them)."},
      {"5.3-13", "Device Identification", "CCK-3"}, 0);

  // --- Key strength and algorithms ---
  {
    Finding f{.id = "key-algorithms",
              .title = "Key strength and algorithms of the CAs and of every device certificate",
              .verdict = Verdict::kPass,
              .how =
                  "The CA certificates' keys are read from DIR/certs; the key of every live "
                  "device certificate (IDevID or LDevID, valid, not expired) is read from its "
                  "DER in the store (Store::VisitLiveDeviceCertificates, paged by serial), "
                  "not assumed from [policy] device_key_types, and counted by type. Pass: "
                  "every CA and device key is P-256 or P-384 and the policy allows no other."};
    for (const char* name : {"root", "manufacturing", "operational"}) {
      auto pem = ReadTextFile(dir / "certs" / (std::string(name) + ".pem"));
      auto cert = pem ? x509::Certificate::FromPem(*pem)
                      : Result<x509::Certificate>(tl::unexpected(pem.error()));
      std::string desc =
          cert ? cert->public_key().Describe() + ", " + cert->signature_algorithm() : "unreadable";
      if (!cert) f.verdict = Verdict::kFail;
      f.evidence.emplace_back(std::string(name) + " CA", desc);
    }
    std::string types;
    for (const auto& t : config.device_key_types) {
      types += (types.empty() ? "" : ", ") + t;
      if (t != "P-256" && t != "P-384") f.verdict = Verdict::kFail;
    }
    f.evidence.emplace_back("device key types allowed", types);
    auto pass_started = std::chrono::steady_clock::now();
    KeyTally tally;
    IOTPKI_TRY(int64_t live,
               store.VisitLiveDeviceCertificates(now, [&](ByteView der) { tally.Add(der); }));
    int64_t pass_ms = MillisSince(pass_started);
    std::string keys;
    for (const auto& [type, n] : tally.by_type()) {
      keys += (keys.empty() ? "" : ", ") + type + ": " + std::to_string(n);
      if (type != "P-256" && type != "P-384") f.verdict = Verdict::kFail;
    }
    f.evidence.emplace_back("keys of the " + std::to_string(live) + " live device certificates",
                            keys.empty() ? "none" : keys);
    f.evidence.emplace_back(
        "cost", "one pass over the live device certificates (" + std::to_string(pass_ms) + " ms)");
    add(std::move(f), {"5.5-1", "Data Protection", "CRY-1"});
  }

  // --- CA keys in hardware ---
  {
    Finding f{.id = "ca-keys-hardware",
              .title = "CA private keys held in hardware",
              .verdict = Verdict::kPass,
              .how =
                  "The key URIs of iotpki.toml [keys]: file: is an encrypted PKCS#8 file "
                  "(AES-256-CBC, PBKDF2, mode 0600); pkcs11: or tpm2: is a hardware token."};
    for (const auto& [name, uri] :
         {std::pair{"root", config.root_key}, std::pair{"manufacturing", config.manufacturing_key},
          std::pair{"operational", config.operational_key}}) {
      bool hw = IsHardwareUri(uri);
      if (!hw) f.verdict = Verdict::kFail;
      f.evidence.emplace_back(std::string(name) + " key",
                              hw ? "hardware (" + uri + ")" : "encrypted file (" + uri + ")");
    }
    add(std::move(f), {"5.4-1", "Data Protection", "SSM-1, CCK-2"});
  }

  // --- Certificate lifetimes and the share expiring soon ---
  {
    store::DeviceFilter soon;
    soon.expiring_within = std::chrono::days(30);
    IOTPKI_TRY(int64_t expiring, store.CountDevices(soon));
    Finding f{
        .id = "certificate-lifetimes",
        .title = "Working certificate lifetimes and the fleet expiring within 30 days",
        .verdict = config.ldevid_max_validity_days <= 397 ? Verdict::kPass : Verdict::kFail,
        .evidence = {{"LDevID validity (days)", std::to_string(config.ldevid_validity_days)},
                     {"LDevID maximum (days)", std::to_string(config.ldevid_max_validity_days)},
                     {"devices expiring within 30 days", std::to_string(expiring)},
                     {"share of the fleet", Percent(expiring, devices)}},
        .how =
            "[policy] of iotpki.toml (the lint refuses longer certificates); the count is "
            "`iotpki device count --expiring-within 30d` over `iotpki device count`, "
            "answered from the expiry count tables. Pass: at most 397 days."};
    add(std::move(f), {"5.5-8", "Device Identification", "AUM-2"});
  }

  // --- Revocation capability and CRL freshness ---
  {
    Finding f{.id = "crl-freshness",
              .title = "Revocation capability: each issuing CA's CRL published and current",
              .verdict = Verdict::kPass,
              .how =
                  "DIR/crl/<ca>.crl as `iotpki serve` or `iotpki crl export` last wrote it: "
                  "thisUpdate, nextUpdate and its age now (openssl crl -in DIR/crl/<ca>.crl "
                  "-inform DER -noout -lastupdate -nextupdate). Fail: missing or past its "
                  "nextUpdate (relying parties then refuse or ignore it)."};
    for (ca::CaName ca : {ca::CaName::kManufacturing, ca::CaName::kOperational}) {
      std::string name(ca::CaNameText(ca));
      IOTPKI_TRY(int64_t revoked, store.CountRevokedCertificates(name));
      auto der = ReadFile(ca::CrlPath(dir, ca));
      auto crl = der ? x509::Crl::FromDer(*der) : Result<x509::Crl>(tl::unexpected(der.error()));
      if (!crl) {
        f.verdict = Verdict::kFail;
        f.evidence.emplace_back(name + " CRL", "missing or unreadable");
        continue;
      }
      auto next = crl->next_update();
      bool stale = !next || *next < now;
      if (stale) f.verdict = Verdict::kFail;
      f.evidence.emplace_back(name + " CRL",
                              std::string(stale ? "STALE" : "current") + ": thisUpdate " +
                                  FormatUtc(crl->this_update()) + ", nextUpdate " +
                                  (next ? FormatUtc(*next) : "none") + ", age " +
                                  std::to_string((now - crl->this_update()) / 3600) + " h, " +
                                  std::to_string(crl->revoked().size()) + " entries; " +
                                  std::to_string(revoked) + " revoked in the store");
    }
    add(std::move(f), {"5.5-8", "Logical Access to Interfaces", "AUM-3"});
  }

  // --- TLS ---
  add({.id = "tls",
       .title = "TLS versions and cipher suites the server accepts",
       .verdict = Verdict::kPass,
       .evidence = {{"versions", "TLS 1.2, TLS 1.3"},
                    {"key exchange", "ECDHE (X25519, P-256, P-384)"},
                    {"ciphers", "AES-GCM, ChaCha20-Poly1305"},
                    {"client authentication", "mutual TLS with device certificates"}},
       .how = "Fixed in the server (docs/http-api.md); check with `openssl s_client -connect "
              "HOST:PORT -tls1_1` (refused) and `-tls1_3` (accepted)."},
      {"5.5-1, 5.5-7", "Data Protection", "SCM-1, SCM-2"});

  // --- Audit chain ---
  {
    IOTPKI_TRY(store::AuditVerdict v, store::VerifyAuditChain(store, 1000));
    add({.id = "audit-chain",
         .title = "The audit log's hash chain verified end to end",
         .verdict = v.intact ? Verdict::kPass : Verdict::kFail,
         .evidence = {{"rows verified", std::to_string(v.rows_checked)},
                      {"result", v.intact ? "intact up to row " + std::to_string(v.last_seq) +
                                                ", head " + ToHex(v.head_hash)
                                          : v.explanation}},
         .how = "Every row's hash recomputed in order, as `iotpki audit verify --dir DIR` does."},
        {"5.5-8", "Cybersecurity State Awareness", "LGM-1"});
  }

  // --- Rotation ---
  {
    IOTPKI_TRY(auto campaigns, store.ListCampaigns());
    Finding f{.id = "rotation",
              .title = "Time since the last rotation campaign",
              .how =
                  "The newest campaign of `iotpki campaign ls`. Pass: one in the last 365 days; "
                  "without any, the renewal of certificates by the devices themselves must be "
                  "shown otherwise."};
    if (campaigns.empty()) {
      f.verdict = Verdict::kNeedsManualEvidence;
      f.evidence = {{"campaigns", "none"}};
    } else {
      const auto& c = campaigns.front();
      int64_t days = (now - c.created_at) / kDay;
      f.verdict = days <= 365 ? Verdict::kPass : Verdict::kFail;
      f.evidence = {{"last campaign",
                     c.spec.name + " (" + std::string(store::CampaignStateName(c.state)) + ")"},
                    {"created", FormatUtc(c.created_at)},
                    {"days ago", std::to_string(days)}};
    }
    add(std::move(f), {"5.5-8", "Device Identification", "CCK-3"});
  }

  // --- What the CA cannot speak to ---
  add({.id = "organisational",
       .title = "Organisational provisions (vulnerability disclosure, support period, update "
                "policy)",
       .verdict = Verdict::kNeedsManualEvidence,
       .how = "Not measurable from the CA: the manufacturer's documents."},
      {"5.2-1, 5.3-13", "Software Update; documentation", "GEC-1"});
  add({.id = "software-update",
       .title = "Secure software updates of the devices",
       .verdict = Verdict::kNotApplicable,
       .how = "The CA issues and renews certificates; firmware updates are another system's."},
      {"5.3", "Software Update", "SUM-1"});

  report.run_ms = MillisSince(started);
  return report;
}

std::string RenderJson(const Report& report) {
  nlohmann::ordered_json findings = nlohmann::ordered_json::array();
  std::map<std::string, int> summary;
  for (const auto& f : report.findings) {
    nlohmann::ordered_json evidence = nlohmann::ordered_json::object();
    for (const auto& [k, v] : f.evidence) evidence[k] = v;
    findings.push_back({{"id", f.id},
                        {"provision", f.provision},
                        {"title", f.title},
                        {"verdict", VerdictName(f.verdict)},
                        {"evidence", evidence},
                        {"how", f.how},
                        {"ms", f.ms}});
    ++summary[std::string(VerdictName(f.verdict))];
  }
  nlohmann::ordered_json out = {{"standard", StandardName(report.standard)},
                                {"title", StandardTitle(report.standard)},
                                {"generated_at", FormatUtc(report.generated_at)},
                                {"run_ms", report.run_ms},
                                {"summary", summary},
                                {"findings", findings}};
  return out.dump(2) + "\n";
}

std::string RenderHtml(const Report& report) {
  std::string h =
      "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Compliance "
      "evidence: " +
      HtmlEscape(StandardTitle(report.standard)) +
      "</title>\n<style>body{font:14px/1.4 system-ui,sans-serif;margin:2em;max-width:60em}"
      "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3em .6em;"
      "text-align:left;vertical-align:top}.pass{color:#18794e}.fail{color:#b42318;"
      "font-weight:600}section{break-inside:avoid;margin-top:1.5em}</style></head><body>\n";
  h += "<h1>Compliance evidence: " + HtmlEscape(StandardTitle(report.standard)) + "</h1>\n";
  h += "<p>Measured " + FormatUtc(report.generated_at) +
       " from the CA's store and configuration, "
       "in " +
       std::to_string(report.run_ms) +
       " ms.</p>\n<h2>Summary</h2>\n<table><tr><th>"
       "provision</th><th>finding</th><th>verdict</th></tr>\n";
  for (const auto& f : report.findings) {
    std::string v(VerdictName(f.verdict));
    h += "<tr><td>" + HtmlEscape(f.provision) + "</td><td><a href=\"#" + f.id + "\">" +
         HtmlEscape(f.title) + "</a></td><td class=\"" + v + "\" id=\"verdict-" + f.id + "\">" + v +
         "</td></tr>\n";
  }
  h += "</table>\n";
  for (const auto& f : report.findings) {
    std::string v(VerdictName(f.verdict));
    h += "<section id=\"" + f.id + "\"><h2>" + HtmlEscape(f.provision) + ": " +
         HtmlEscape(f.title) + "</h2>\n<p>Verdict: <strong class=\"" + v + "\">" + v +
         "</strong></p>\n";
    if (!f.evidence.empty()) {
      h += "<table>";
      for (const auto& [k, val] : f.evidence) {
        h += "<tr><th>" + HtmlEscape(k) + "</th><td>" + HtmlEscape(val) + "</td></tr>";
      }
      h += "</table>\n";
    }
    h += "<p>How measured: " + HtmlEscape(f.how) + " (" + std::to_string(f.ms) +
         " ms)</p></section>\n";
  }
  h += "</body></html>\n";
  return h;
}

}  // namespace iotpki::admin
