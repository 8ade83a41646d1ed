// iotpki device ls | show | count: the inventory, read straight from the store.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "iotpki/ca/authority.h"
#include "iotpki/ca/config.h"
#include "iotpki/cli/cli.h"
#include "iotpki/common/clock.h"
#include "iotpki/crypto/primitives.h"
#include "iotpki/store/store.h"

namespace iotpki::cli {
namespace {

struct FilterArgs {
  std::string dir;
  std::string store;
  std::string state;
  std::string model;
  std::string batch;
  std::string expiring_within;
  bool json = false;
};

struct LsArgs {
  FilterArgs filter;
  size_t limit = 100;
  std::string after;
};

struct ShowArgs {
  std::string dir;
  std::string store;
  std::string device_id;
  std::string serial;
  bool json = false;
};

Result<store::DeviceFilter> MakeFilter(const FilterArgs& args) {
  store::DeviceFilter f;
  if (!args.state.empty()) {
    auto state = store::ParseDeviceState(args.state);
    if (!state) {
      return Fail(
          Code::kInvalidArgument,
          "--state must be manufactured, active, suspended or decommissioned, not " + args.state);
    }
    f.state = *state;
  }
  if (!args.model.empty()) f.model = args.model;
  if (!args.batch.empty()) f.batch = args.batch;
  if (!args.expiring_within.empty()) {
    IOTPKI_TRY(f.expiring_within, ParseDuration("--expiring-within", args.expiring_within));
  }
  return f;
}

Result<std::unique_ptr<store::Store>> OpenInventory(const std::string& dir,
                                                    const std::string& store_url) {
  IOTPKI_TRY(ca::CaConfig config, ca::LoadConfig(dir));
  return ca::OpenStore(dir, config, SystemClock::Instance(), store_url);
}

nlohmann::ordered_json DeviceJson(const store::Device& d) {
  return {{"device_id", d.device_id},
          {"serial", d.serial},
          {"model", d.model},
          {"batch", d.batch},
          {"state", store::DeviceStateName(d.state)},
          {"hardware_fingerprint",
           d.hardware_fingerprint ? nlohmann::ordered_json(*d.hardware_fingerprint) : nullptr},
          {"created_at", FormatUtc(d.created_at)},
          {"updated_at", FormatUtc(d.updated_at)}};
}

// Columns sized to their widest cell, two spaces apart.
void PrintTable(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width;
  for (const auto& row : rows) {
    width.resize(std::max(width.size(), row.size()));
    for (size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], row[i].size());
  }
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(width[i] - row[i].size() + 2, ' ');
    }
    std::cout << line << "\n";
  }
}

Result<void> RunLs(const LsArgs& args) {
  IOTPKI_TRY(store::DeviceFilter filter, MakeFilter(args.filter));
  if (args.limit == 0 || args.limit > store::kMaxPageSize) {
    return Fail(Code::kInvalidArgument,
                "--limit must be 1 to " + std::to_string(store::kMaxPageSize));
  }
  IOTPKI_TRY(auto inventory, OpenInventory(args.filter.dir, args.filter.store));
  IOTPKI_TRY(store::DevicePage page, inventory->ListDevices(filter, args.limit, args.after));
  bool expiring = filter.expiring_within.has_value();
  if (args.filter.json) {
    nlohmann::ordered_json list = nlohmann::ordered_json::array();
    for (const auto& e : page.devices) {
      auto j = DeviceJson(e.device);
      if (expiring) {
        j["cert_serial"] = *e.cert_serial;
        j["cert_not_after"] = FormatUtc(*e.cert_not_after);
      }
      list.push_back(std::move(j));
    }
    nlohmann::ordered_json out{
        {"devices", std::move(list)},
        {"next_cursor", page.next_cursor.empty() ? nlohmann::ordered_json()
                                                 : nlohmann::ordered_json(page.next_cursor)}};
    std::cout << out.dump(2) << "\n";
    return {};
  }
  std::vector<std::vector<std::string>> rows;
  rows.push_back({"DEVICE ID", "SERIAL", "MODEL", "BATCH", "STATE", "CREATED"});
  if (expiring) {
    rows[0].push_back("EXPIRES");
    rows[0].push_back("CERTIFICATE");
  }
  for (const auto& e : page.devices) {
    const store::Device& d = e.device;
    rows.push_back({d.device_id, d.serial, d.model, d.batch,
                    std::string(store::DeviceStateName(d.state)), FormatUtc(d.created_at)});
    if (expiring) {
      rows.back().push_back(FormatUtc(*e.cert_not_after));
      rows.back().push_back(*e.cert_serial);
    }
  }
  if (page.devices.empty()) {
    std::cout << "no devices\n";
  } else {
    PrintTable(rows);
  }
  if (!page.next_cursor.empty()) {
    std::cout << "next page: --after " << page.next_cursor << "\n";
  }
  return {};
}

Result<void> RunCount(const FilterArgs& args) {
  IOTPKI_TRY(store::DeviceFilter filter, MakeFilter(args));
  IOTPKI_TRY(auto inventory, OpenInventory(args.dir, args.store));
  IOTPKI_TRY(int64_t n, inventory->CountDevices(filter));
  if (args.json) {
    std::cout << nlohmann::ordered_json{{"count", n}}.dump() << "\n";
  } else {
    std::cout << n << "\n";
  }
  return {};
}

Result<void> RunShow(const ShowArgs& args) {
  if (args.device_id.empty() == args.serial.empty()) {
    return Fail(Code::kInvalidArgument, "give a DEVICE_ID or --serial SERIAL (one of them)");
  }
  IOTPKI_TRY(auto inventory, OpenInventory(args.dir, args.store));
  auto device = args.serial.empty() ? inventory->GetDevice(args.device_id)
                                    : inventory->GetDeviceBySerial(args.serial);
  if (!device) return Fail(std::move(device).error());
  IOTPKI_TRY(auto certs, inventory->ListCertificatesForDevice(device->device_id));
  nlohmann::ordered_json list = nlohmann::ordered_json::array();
  for (const auto& c : certs) {
    list.push_back(
        {{"serial", c.serial},
         {"profile", store::CertProfileName(c.profile)},
         {"issuer", c.issuer},
         {"subject", c.subject},
         {"status", store::CertStatusName(c.status)},
         {"not_before", FormatUtc(c.not_before)},
         {"not_after", FormatUtc(c.not_after)},
         {"key_fingerprint", c.key_fingerprint},
         {"sha256", ToHex(crypto::Sha256(c.der))},
         {"revoked_at", c.revoked_at ? nlohmann::ordered_json(FormatUtc(*c.revoked_at)) : nullptr},
         {"revocation_reason",
          c.revocation_reason
              ? nlohmann::ordered_json(store::RevocationReasonName(*c.revocation_reason))
              : nullptr}});
  }
  if (args.json) {
    std::cout
        << nlohmann::ordered_json{{"device", DeviceJson(*device)}, {"certificates", list}}.dump(2)
        << "\n";
    return {};
  }
  auto d = DeviceJson(*device);
  for (const auto& [k, v] : d.items()) {
    std::printf("%-21s %s\n", k.c_str(), v.is_null() ? "-" : v.get<std::string>().c_str());
  }
  std::printf("certificates (%zu)\n", certs.size());
  std::vector<std::vector<std::string>> rows{
      {"  PROFILE", "STATUS", "SERIAL", "ISSUER", "NOT BEFORE", "NOT AFTER", "REVOKED"}};
  for (const auto& c : list) {
    // A revocation is named with its reason and time.
    std::string revoked = c["revoked_at"].is_null() ? "-"
                                                    : c["revocation_reason"].get<std::string>() +
                                                          " " + c["revoked_at"].get<std::string>();
    rows.push_back({"  " + c["profile"].get<std::string>(), c["status"].get<std::string>(),
                    c["serial"].get<std::string>(), c["issuer"].get<std::string>(),
                    c["not_before"].get<std::string>(), c["not_after"].get<std::string>(),
                    revoked});
  }
  PrintTable(rows);
  return {};
}

void AddFilterOptions(CLI::App* cmd, FilterArgs& f) {
  cmd->add_option("--dir", f.dir, "CA directory")->required();
  AddStoreOption(cmd, f.store);
  cmd->add_option("--state", f.state, "manufactured, active, suspended or decommissioned");
  cmd->add_option("--model", f.model, "Device model");
  cmd->add_option("--batch", f.batch, "Manufacturing batch");
  cmd->add_option("--expiring-within", f.expiring_within,
                  "Devices with a valid certificate expiring within this window (30d, 12h, 2w)");
  cmd->add_flag("--json", f.json, "JSON output");
}

}  // namespace

void AddDeviceCommands(CLI::App& app) {
  auto* device = app.add_subcommand("device", "Inventory: list, count and show devices");
  device->require_subcommand(1);

  auto ls_args = std::make_shared<LsArgs>();
  auto* ls = device->add_subcommand("ls", "List devices, one page at a time (keyset pagination)");
  AddFilterOptions(ls, ls_args->filter);
  ls->add_option("--limit", ls_args->limit, "Devices per page (1 to 10000, default 100)");
  ls->add_option("--after", ls_args->after, "Cursor printed by the previous page");
  SetAction(ls, [ls_args] { return RunLs(*ls_args); });

  auto count_args = std::make_shared<FilterArgs>();
  auto* count = device->add_subcommand("count", "Count devices matching the filters");
  AddFilterOptions(count, *count_args);
  SetAction(count, [count_args] { return RunCount(*count_args); });

  auto show_args = std::make_shared<ShowArgs>();
  auto* show = device->add_subcommand("show", "One device and its certificates");
  show->add_option("--dir", show_args->dir, "CA directory")->required();
  AddStoreOption(show, show_args->store);
  show->add_option("device_id", show_args->device_id, "Device id (64 hex digits)");
  show->add_option("--serial", show_args->serial, "Device serial");
  show->add_flag("--json", show_args->json, "JSON output");
  SetAction(show, [show_args] { return RunShow(*show_args); });
}

}  // namespace iotpki::cli
