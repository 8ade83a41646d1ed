// iotpki cert revoke | cert ls --revoked | device decommission: revocation from the command
// line, over ca/revocation.h. No CA key is needed: a revocation is a store write (the CRL and
// OCSP answers are signed from it by the server).
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <ctime>
#include <iostream>
#include <nlohmann/json.hpp>

#include "iotpki/ca/authority.h"
#include "iotpki/ca/config.h"
#include "iotpki/ca/revocation.h"
#include "iotpki/cli/cli.h"
#include "iotpki/common/clock.h"

namespace iotpki::cli {
// A named namespace: cli/ is a unity build, and these helpers must not meet their namesakes.
namespace revoke_cmd {

struct RevokeArgs {
  std::string dir;
  std::string store;
  std::string serial;
  std::string device;
  std::string batch;
  bool all = false;
  bool dry_run = false;
  std::string reason;
  bool json = false;
  size_t group = 1000;
};

struct DecommissionArgs {
  std::string dir;
  std::string store;
  std::string device;
  bool json = false;
};

struct CertLsArgs {
  std::string dir;
  std::string store;
  bool revoked = false;
  std::string since;
  size_t limit = 1000;
  std::string after;
  bool json = false;
};

Result<std::unique_ptr<store::Store>> OpenStoreOf(const std::string& dir, const std::string& url) {
  IOTPKI_TRY(ca::CaConfig config, ca::LoadConfig(dir));
  return ca::OpenStore(dir, config, SystemClock::Instance(), url);
}

nlohmann::ordered_json CertJson(const store::CertificateRecord& c, store::RevocationReason reason,
                                int64_t revoked_at) {
  return {{"serial", c.serial},
          {"profile", store::CertProfileName(c.profile)},
          {"device_id", c.device_id ? nlohmann::ordered_json(*c.device_id) : nullptr},
          {"reason", store::RevocationReasonName(reason)},
          {"revoked_at", FormatUtc(revoked_at)}};
}

void PrintRevoked(const ca::Revoked& r, store::RevocationReason reason, bool json) {
  if (json) {
    nlohmann::ordered_json list = nlohmann::ordered_json::array();
    for (const auto& c : r.certificates) list.push_back(CertJson(c, reason, r.revoked_at));
    std::cout << nlohmann::ordered_json{{"revoked", std::move(list)}}.dump(2) << "\n";
    return;
  }
  for (const auto& c : r.certificates) {
    std::cout << "revoked " << store::CertProfileName(c.profile) << " " << c.serial;
    if (c.device_id) std::cout << " of device " << *c.device_id;
    std::cout << " (" << store::RevocationReasonName(reason) << ", " << FormatUtc(r.revoked_at)
              << ")\n";
  }
}

// The batch's progress on stderr, redrawn in place, when stderr is a terminal.
class BatchProgressLine {
 public:
  explicit BatchProgressLine(std::string batch)
      : batch_(std::move(batch)), tty_(::isatty(STDERR_FILENO) == 1) {}
  void operator()(const ca::BatchProgress& p) {
    if (!tty_) return;
    int pct = p.devices_total == 0 ? 100 : static_cast<int>(100 * p.devices_done / p.devices_total);
    constexpr int kWidth = 30;
    int filled = pct * kWidth / 100;
    std::fprintf(stderr, "\r%s [%s%s] %lld/%lld devices %3d%%  %lld certificates revoked ",
                 batch_.c_str(), std::string(filled, '#').c_str(),
                 std::string(kWidth - filled, '.').c_str(), static_cast<long long>(p.devices_done),
                 static_cast<long long>(p.devices_total), pct,
                 static_cast<long long>(p.certificates_revoked));
    if (p.devices_done == p.devices_total) std::fputc('\n', stderr);
  }

 private:
  std::string batch_;
  bool tty_;
};

Result<void> RunRevoke(const RevokeArgs& args) {
  int targets = !args.serial.empty() + !args.device.empty() + !args.batch.empty();
  if (targets != 1) {
    return Fail(Code::kInvalidArgument,
                "give exactly one of --serial HEX, --device DEVICE_ID or --batch NAME");
  }
  if (args.all && args.device.empty()) {
    return Fail(Code::kInvalidArgument, "--all goes with --device (every certificate of it)");
  }
  if (args.dry_run && args.batch.empty()) {
    return Fail(Code::kInvalidArgument, "--dry-run goes with --batch");
  }
  if (args.group == 0 || args.group > store::kMaxPageSize) {
    return Fail(Code::kInvalidArgument,
                "--group must be 1 to " + std::to_string(store::kMaxPageSize));
  }
  IOTPKI_TRY(store::RevocationReason reason, ca::ParseOperatorReason(args.reason));
  IOTPKI_TRY(auto st, OpenStoreOf(args.dir, args.store));
  const Clock& clock = SystemClock::Instance();
  if (!args.serial.empty()) {
    IOTPKI_TRY(ca::Revoked r, ca::RevokeSerial(*st, clock, args.serial, reason, Actor()));
    PrintRevoked(r, reason, args.json);
    return {};
  }
  if (!args.device.empty()) {
    IOTPKI_TRY(ca::Revoked r, ca::RevokeDevice(*st, clock, args.device, args.all, reason, Actor()));
    PrintRevoked(r, reason, args.json);
    return {};
  }
  BatchProgressLine line(args.batch);
  IOTPKI_TRY(ca::BatchProgress p,
             ca::RevokeBatch(*st, clock, args.batch, reason, Actor(), args.dry_run, args.group,
                             [&line](const ca::BatchProgress& p) { line(p); }));
  if (args.json) {
    std::cout << nlohmann::ordered_json{{"batch", args.batch},
                                        {"dry_run", args.dry_run},
                                        {"devices", p.devices_total},
                                        {"certificates_revoked", p.certificates_revoked},
                                        {"certificates_already_revoked", p.certificates_skipped}}
                     .dump(2)
              << "\n";
  } else if (args.dry_run) {
    std::cout << "batch " << args.batch << ": would revoke " << p.certificates_revoked
              << " certificates of " << p.devices_total << " devices (" << p.certificates_skipped
              << " already revoked); nothing changed\n";
  } else {
    std::cout << "batch " << args.batch << ": revoked " << p.certificates_revoked
              << " certificates of " << p.devices_total << " devices (" << p.certificates_skipped
              << " were revoked already)\n";
  }
  return {};
}

Result<void> RunDecommission(const DecommissionArgs& args) {
  IOTPKI_TRY(auto st, OpenStoreOf(args.dir, args.store));
  IOTPKI_TRY(ca::Revoked r, ca::Decommission(*st, SystemClock::Instance(), args.device, Actor()));
  if (args.json) {
    nlohmann::ordered_json list = nlohmann::ordered_json::array();
    for (const auto& c : r.certificates) {
      list.push_back(CertJson(c, store::RevocationReason::kCessationOfOperation, r.revoked_at));
    }
    std::cout << nlohmann::ordered_json{{"device_id", args.device},
                                        {"state", "decommissioned"},
                                        {"revoked", std::move(list)}}
                     .dump(2)
              << "\n";
    return {};
  }
  std::cout << "device " << args.device << " decommissioned\n";
  PrintRevoked(r, store::RevocationReason::kCessationOfOperation, false);
  return {};
}

// Unix seconds, a UTC date (2026-01-31) or time (2026-01-31T12:00:00Z), or an age (7d, 12h, 30m,
// 3600s, 2w) counted back from now.
Result<int64_t> ParseSince(const std::string& text, int64_t now) {
  auto bad = [&] {
    return Fail(Code::kInvalidArgument,
                "--since '" + text +
                    "': expected Unix seconds, a UTC date or time (2026-01-31, "
                    "2026-01-31T12:00:00Z) or an age such as 7d or 12h");
  };
  if (text.empty() || text.size() > 20) return bad();
  if (text.find_first_not_of("0123456789") == std::string::npos) return std::stoll(text);
  char unit = text.back();
  std::string digits = text.substr(0, text.size() - 1);
  if (!digits.empty() && digits.size() <= 9 &&
      digits.find_first_not_of("0123456789") == std::string::npos) {
    int64_t n = std::stoll(digits);
    switch (unit) {
      case 's':
        return now - n;
      case 'm':
        return now - n * 60;
      case 'h':
        return now - n * 3600;
      case 'd':
        return now - n * 86400;
      case 'w':
        return now - n * 7 * 86400;
      default:
        return bad();
    }
  }
  std::tm tm{};
  int y = 0, mo = 0, d = 0, h = 0, mi = 0, s = 0;
  char tail = 0;
  int n = 0;
  if (text.size() == 10 && std::sscanf(text.c_str(), "%4d-%2d-%2d%n", &y, &mo, &d, &n) == 3 &&
      n == 10) {
  } else if (text.size() == 20 &&
             std::sscanf(text.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%c", &y, &mo, &d, &h, &mi, &s,
                         &tail) == 7 &&
             tail == 'Z') {
  } else {
    return bad();
  }
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || s > 60) return bad();
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = s;
  return static_cast<int64_t>(timegm(&tm));
}

Result<void> RunCertLs(const CertLsArgs& args) {
  if (!args.revoked) {
    return Fail(Code::kInvalidArgument,
                "cert ls lists revoked certificates: add --revoked (device show lists a "
                "device's certificates)");
  }
  if (args.limit == 0 || args.limit > store::kMaxPageSize) {
    return Fail(Code::kInvalidArgument,
                "--limit must be 1 to " + std::to_string(store::kMaxPageSize));
  }
  store::RevokedFilter filter;
  if (!args.since.empty()) {
    IOTPKI_TRY(filter.since, ParseSince(args.since, SystemClock::Instance().NowUnix()));
  }
  IOTPKI_TRY(auto st, OpenStoreOf(args.dir, args.store));
  IOTPKI_TRY(store::CertificatePage page,
             st->ListRevokedCertificates(filter, args.limit, args.after));
  if (args.json) {
    nlohmann::ordered_json list = nlohmann::ordered_json::array();
    for (const auto& c : page.certificates) {
      list.push_back(CertJson(c,
                              c.revocation_reason.value_or(store::RevocationReason::kUnspecified),
                              c.revoked_at.value_or(0)));
    }
    std::cout << nlohmann::ordered_json{{"certificates", std::move(list)},
                                        {"next_cursor",
                                         page.next_cursor.empty()
                                             ? nlohmann::ordered_json()
                                             : nlohmann::ordered_json(page.next_cursor)}}
                     .dump(2)
              << "\n";
    return {};
  }
  if (page.certificates.empty()) {
    std::cout << "no revoked certificates\n";
    return {};
  }
  std::printf("%-20s  %-21s  %-7s  %-64s  %s\n", "REVOKED AT", "REASON", "PROFILE", "DEVICE ID",
              "SERIAL");
  for (const auto& c : page.certificates) {
    std::printf("%-20s  %-21s  %-7s  %-64s  %s\n", FormatUtc(c.revoked_at.value_or(0)).c_str(),
                std::string(store::RevocationReasonName(c.revocation_reason.value_or(
                                store::RevocationReason::kUnspecified)))
                    .c_str(),
                std::string(store::CertProfileName(c.profile)).c_str(),
                c.device_id ? c.device_id->c_str() : "-", c.serial.c_str());
  }
  if (!page.next_cursor.empty()) std::cout << "next page: --after " << page.next_cursor << "\n";
  return {};
}

}  // namespace revoke_cmd

void AddRevocationCommands(CLI::App& app) {
  constexpr char kReasons[] =
      "keyCompromise, superseded, cessationOfOperation, affiliationChanged or unspecified";
  auto* cert = app.get_subcommand("cert");
  auto args = std::make_shared<revoke_cmd::RevokeArgs>();
  auto* revoke = cert->add_subcommand(
      "revoke", "Revoke a certificate, a device's certificates or a whole factory batch");
  revoke->add_option("--dir", args->dir, "CA directory")->required();
  AddStoreOption(revoke, args->store);
  revoke->add_option("--serial", args->serial, "Certificate serial, hex");
  revoke->add_option("--device", args->device,
                     "Device id: its working certificates (current LDevID and a renewal not yet "
                     "in use)");
  revoke->add_flag("--all", args->all, "With --device: every certificate, the IDevID too");
  revoke->add_option("--batch", args->batch,
                     "Every certificate of every device of this factory batch, in groups; "
                     "resumable");
  revoke->add_option("--group", args->group, "With --batch: devices per transaction (1000)");
  revoke->add_flag("--dry-run", args->dry_run,
                   "With --batch: say how many devices and certificates, change nothing");
  revoke->add_option("--reason", args->reason, kReasons)->required();
  revoke->add_flag("--json", args->json, "JSON output");
  SetAction(revoke, [args] { return revoke_cmd::RunRevoke(*args); });

  auto ls_args = std::make_shared<revoke_cmd::CertLsArgs>();
  auto* ls = cert->add_subcommand("ls", "List revoked certificates, by revocation time");
  ls->add_option("--dir", ls_args->dir, "CA directory")->required();
  AddStoreOption(ls, ls_args->store);
  ls->add_flag("--revoked", ls_args->revoked, "Revoked certificates (required)");
  ls->add_option("--since", ls_args->since,
                 "Revoked at or after: Unix seconds, 2026-01-31, 2026-01-31T12:00:00Z or an age "
                 "(7d, 12h)");
  ls->add_option("--limit", ls_args->limit, "Certificates per page (1 to 10000, default 1000)");
  ls->add_option("--after", ls_args->after, "Cursor printed by the previous page");
  ls->add_flag("--json", ls_args->json, "JSON output");
  SetAction(ls, [ls_args] { return revoke_cmd::RunCertLs(*ls_args); });

  auto dec_args = std::make_shared<revoke_cmd::DecommissionArgs>();
  auto* dec = app.get_subcommand("device")->add_subcommand(
      "decommission",
      "Retire a device for good: state decommissioned, every certificate revoked "
      "(cessationOfOperation), in one transaction");
  dec->add_option("--dir", dec_args->dir, "CA directory")->required();
  AddStoreOption(dec, dec_args->store);
  dec->add_option("device_id", dec_args->device, "Device id (64 hex digits)")->required();
  dec->add_flag("--json", dec_args->json, "JSON output");
  SetAction(dec, [dec_args] { return revoke_cmd::RunDecommission(*dec_args); });
}

}  // namespace iotpki::cli
