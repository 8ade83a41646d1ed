// iotpki campaign create | ls | status | pause | resume | cancel | failures: rotation campaigns
// in the store (docs/rotation.md). The campaigns run inside `iotpki serve`; these commands
// create them, look at them and steer them.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "iotpki/ca/authority.h"
#include "iotpki/ca/config.h"
#include "iotpki/campaign/waves.h"
#include "iotpki/cli/cli.h"
#include "iotpki/common/clock.h"
#include "iotpki/common/file.h"
#include "iotpki/store/store.h"
#include "iotpki/store/validate.h"

namespace iotpki::cli {
// A namespace of its own: the CLI is one unity translation unit (CMakeLists.txt), where every
// file's anonymous namespace is the same one.
namespace campaign_cmd {
namespace {

// At most this many stranded devices are listed by a dry run (all are counted).
constexpr size_t kStrandedListed = 1000;

struct CreateArgs {
  std::string dir;
  std::string store;
  std::string name;
  std::string expiring_within;
  std::string batch;
  std::string model;
  std::string issued_by_ca;
  std::string devices_file;
  std::string mode = "renew";
  int64_t wave_size = 1000;
  double max_failure_rate = 0.05;
  int64_t retry_after = 3600;
  int64_t max_attempts = 5;
  std::string deadline = "72h";
  bool dry_run = false;
  bool json = false;
};

struct NamedArgs {
  std::string dir;
  std::string store;
  std::string name;
  bool json = false;
};

Result<std::unique_ptr<store::Store>> OpenCampaignStore(const std::string& dir,
                                                        const std::string& store_url) {
  IOTPKI_TRY(ca::CaConfig config, ca::LoadConfig(dir));
  return ca::OpenStore(dir, config, SystemClock::Instance(), store_url);
}

// The CA whose certificate has this SHA-256 fingerprint (hex, colons and case ignored), by the
// name the store records as a certificate's issuer.
Result<std::string> IssuerByFingerprint(const CreateArgs& args) {
  std::string want;
  for (char c : args.issued_by_ca) {
    if (c == ':') continue;
    want += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  IOTPKI_TRY(auto authority, ca::Authority::Open(args.dir, SystemClock::Instance(), args.store));
  for (ca::CaName name :
       {ca::CaName::kRoot, ca::CaName::kManufacturing, ca::CaName::kOperational}) {
    std::string have;
    for (char c : authority->certificate(name).fingerprint_sha256()) {
      if (c != ':') have += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
    if (have == want) return std::string(ca::CaNameText(name));
  }
  return Fail(Code::kInvalidArgument,
              "--issued-by-ca " + args.issued_by_ca +
                  " is not the fingerprint of a CA of this directory (see iotpki ca show)");
}

// One device id per line; blank lines and lines starting with # are skipped.
Result<std::vector<std::string>> ReadDeviceList(const std::string& path) {
  auto text = ReadTextFile(path);
  if (!text) return Fail(std::move(text).error().Context("reading --devices " + path));
  std::vector<std::string> ids;
  size_t line_no = 0;
  size_t at = 0;
  while (at <= text->size()) {
    size_t end = text->find('\n', at);
    if (end == std::string::npos) end = text->size();
    std::string line = text->substr(at, end - at);
    at = end + 1;
    ++line_no;
    while (!line.empty() && std::isspace(static_cast<unsigned char>(line.back()))) line.pop_back();
    size_t first = line.find_first_not_of(" \t");
    if (first == std::string::npos || line[first] == '#') continue;
    line = line.substr(first);
    bool hex = line.size() == 64 && std::all_of(line.begin(), line.end(), [](char c) {
                 return std::isxdigit(static_cast<unsigned char>(c)) != 0;
               });
    if (!hex) {
      return Fail(Code::kInvalidArgument, "--devices " + path + " line " + std::to_string(line_no) +
                                              ": expected a device id (64 hex digits)");
    }
    std::transform(line.begin(), line.end(), line.begin(),
                   [](char c) { return static_cast<char>(std::tolower(c)); });
    ids.push_back(std::move(line));
  }
  if (ids.empty()) {
    return Fail(Code::kInvalidArgument, "--devices " + path + " lists no device id");
  }
  return ids;
}

Result<void> RunCreate(const CreateArgs& args) {
  // Everything that needs no store is checked first, so a bad command writes nothing.
  IOTPKI_CHECK(store::ValidateCampaignName(args.name));
  int filters = !args.expiring_within.empty() + !args.batch.empty() + !args.model.empty() +
                !args.issued_by_ca.empty() + !args.devices_file.empty();
  if (filters != 1) {
    return Fail(Code::kInvalidArgument,
                "give exactly one of --expiring-within, --batch, --model, --issued-by-ca or "
                "--devices to choose the devices");
  }
  auto mode = store::ParseCampaignMode(args.mode);
  if (!mode) return Fail(Code::kInvalidArgument, "--mode must be renew or rekey");
  if (args.wave_size < 1) {
    return Fail(Code::kInvalidArgument, "--wave-size must be at least 1");
  }
  if (!(args.max_failure_rate >= 0.0 && args.max_failure_rate <= 1.0)) {
    return Fail(Code::kInvalidArgument,
                "--max-failure-rate must lie between 0 and 1 (0.05 halts above 5 %)");
  }
  if (args.retry_after < 1) {
    return Fail(Code::kInvalidArgument, "--retry-after must be at least 1 (seconds)");
  }
  if (args.max_attempts < 1) {
    return Fail(Code::kInvalidArgument, "--max-attempts must be at least 1");
  }
  IOTPKI_TRY(std::chrono::seconds deadline_span, ParseDuration("--deadline", args.deadline));
  const int64_t deadline = deadline_span.count();
  if (deadline < 1) return Fail(Code::kInvalidArgument, "--deadline must be longer than 0s");

  store::CampaignCohort cohort;
  nlohmann::ordered_json filter;
  if (!args.expiring_within.empty()) {
    IOTPKI_TRY(std::chrono::seconds window,
               ParseDuration("--expiring-within", args.expiring_within));
    cohort.devices = store::DeviceFilter{.expiring_within = window};
    filter["expiring_within"] = args.expiring_within;
  } else if (!args.batch.empty()) {
    cohort.devices = store::DeviceFilter{.batch = args.batch};
    filter["batch"] = args.batch;
  } else if (!args.model.empty()) {
    cohort.devices = store::DeviceFilter{.model = args.model};
    filter["model"] = args.model;
  } else if (!args.devices_file.empty()) {
    IOTPKI_TRY(cohort.device_ids, ReadDeviceList(args.devices_file));
    filter["devices_file"] = args.devices_file;
    filter["devices_listed"] = cohort.device_ids->size();
  }
  if (!args.issued_by_ca.empty()) {
    IOTPKI_TRY(cohort.issued_by, IssuerByFingerprint(args));
    filter["issued_by_ca"] = args.issued_by_ca;
    filter["issuer"] = *cohort.issued_by;
  }

  IOTPKI_TRY(auto db, OpenCampaignStore(args.dir, args.store));
  store::CampaignSpec spec{
      .name = args.name,
      .filter_json = filter.dump(),
      .mode = *mode,
      .wave_size = args.wave_size,
      .max_failure_ppm = static_cast<int64_t>(std::llround(args.max_failure_rate * 1e6)),
      .retry_after = args.retry_after,
      .max_attempts = args.max_attempts,
      .deadline = SystemClock::Instance().NowUnix() + deadline};
  nlohmann::ordered_json details = {{"filter", filter},
                                    {"mode", args.mode},
                                    {"wave_size", args.wave_size},
                                    {"max_failure_rate", args.max_failure_rate},
                                    {"retry_after", args.retry_after},
                                    {"max_attempts", args.max_attempts},
                                    {"deadline", FormatUtc(spec.deadline)}};
  auto created =
      db->CreateCampaign(spec, cohort, {Actor(), "campaign.create", args.name, details.dump()},
                         args.dry_run, kStrandedListed);
  if (!created && created.error().code() == Code::kFailedPrecondition) {
    return Fail(Code::kFailedPrecondition,
                "the filter selects no device: nothing created (check it with iotpki device "
                "count)");
  }
  if (!created) return Fail(std::move(created).error());
  const store::Campaign& c = created->campaign;
  if (args.json) {
    nlohmann::ordered_json out = {{"name", c.spec.name},
                                  {"dry_run", args.dry_run},
                                  {"devices", c.jobs},
                                  {"waves", c.waves},
                                  {"wave_size", c.spec.wave_size}};
    if (args.dry_run) {
      out["stranded"] = created->stranded;
      nlohmann::ordered_json listed = nlohmann::ordered_json::array();
      for (const auto& j : created->stranded_jobs) {
        listed.push_back(
            {{"device_id", j.device_id}, {"certificate", j.old_serial ? *j.old_serial : ""}});
      }
      out["stranded_devices"] = listed;
    }
    std::cout << out.dump(2) << "\n";
    return {};
  }
  std::cout << (args.dry_run ? "dry run, nothing created: " : "created ") << "campaign "
            << c.spec.name << ": " << c.jobs << " devices in " << c.waves << " wave"
            << (c.waves == 1 ? "" : "s") << " of up to " << c.spec.wave_size << ", mode "
            << args.mode << ", deadline " << FormatUtc(spec.deadline) << "\n";
  if (args.dry_run) {
    std::cout << created->stranded
              << " devices have not been seen for longer than their certificate's remaining "
                 "validity (they may come back only after it expired)"
              << (created->stranded == 0 ? "" : ":") << "\n";
    for (const auto& j : created->stranded_jobs) {
      std::string not_after;
      if (j.old_serial) {
        if (auto cert = db->GetCertificate(*j.old_serial)) not_after = FormatUtc(cert->not_after);
      }
      std::cout << "  " << j.device_id << "  certificate " << j.old_serial.value_or("-") << " ends "
                << not_after << "\n";
    }
    if (created->stranded > static_cast<int64_t>(created->stranded_jobs.size())) {
      std::cout << "  ... and " << created->stranded - created->stranded_jobs.size() << " more\n";
    }
  }
  return {};
}

Result<store::Campaign> FindCampaign(store::Store& db, const std::string& name) {
  auto c = db.GetCampaign(name);
  if (!c && c.error().code() == Code::kNotFound) {
    return Fail(Code::kNotFound,
                "no campaign named '" + name + "' (iotpki campaign ls lists them)");
  }
  return c;
}

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

std::string Percent(double rate) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f%%", rate * 100);
  return buf;
}

nlohmann::ordered_json CountsJson(const campaign::WaveCounts& w) {
  nlohmann::ordered_json out;
  for (int s = 0; s < store::kJobStateCount; ++s) {
    out[std::string(store::JobStateName(static_cast<store::JobState>(s)))] = w.n[s];
  }
  return out;
}

nlohmann::ordered_json CampaignJson(const store::Campaign& c,
                                    const std::vector<campaign::WaveCounts>& waves) {
  campaign::WaveCounts all = campaign::Sum(waves);
  campaign::WaveCounts current;
  if (c.current_wave < static_cast<int64_t>(waves.size())) current = waves[c.current_wave];
  nlohmann::ordered_json per_wave = nlohmann::ordered_json::array();
  for (size_t i = 0; i < waves.size(); ++i) {
    nlohmann::ordered_json w = CountsJson(waves[i]);
    w["wave"] = i;
    per_wave.push_back(w);
  }
  return {{"name", c.spec.name},
          {"state", store::CampaignStateName(c.state)},
          {"reason", c.state_reason},
          {"mode", store::CampaignModeName(c.spec.mode)},
          {"filter", nlohmann::ordered_json::parse(c.spec.filter_json, nullptr, false)},
          {"jobs", c.jobs},
          {"waves", c.waves},
          {"current_wave", c.current_wave},
          {"wave_started_at", FormatUtc(c.wave_started_at)},
          {"failure_rate", campaign::FailureRate(current)},
          {"max_failure_rate", campaign::MaxFailureRate(c)},
          {"counts", CountsJson(all)},
          {"per_wave", per_wave},
          {"retry_after", c.spec.retry_after},
          {"max_attempts", c.spec.max_attempts},
          {"deadline", FormatUtc(c.spec.deadline)},
          {"created_at", FormatUtc(c.created_at)}};
}

Result<std::vector<campaign::WaveCounts>> WavesOf(store::Store& db, const store::Campaign& c) {
  IOTPKI_TRY(auto rows, db.CountJobs(c.id));
  return campaign::ByWave(rows, c.waves);
}

Result<void> RunLs(const NamedArgs& args) {
  IOTPKI_TRY(auto db, OpenCampaignStore(args.dir, args.store));
  IOTPKI_TRY(auto campaigns, db->ListCampaigns());
  if (args.json) {
    nlohmann::ordered_json out = nlohmann::ordered_json::array();
    for (const auto& c : campaigns) {
      IOTPKI_TRY(auto waves, WavesOf(*db, c));
      out.push_back(CampaignJson(c, waves));
    }
    std::cout << out.dump(2) << "\n";
    return {};
  }
  std::vector<std::vector<std::string>> rows = {
      {"NAME", "STATE", "MODE", "JOBS", "CONFIRMED", "FAILED", "WAVE", "CREATED"}};
  for (const auto& c : campaigns) {
    IOTPKI_TRY(auto waves, WavesOf(*db, c));
    campaign::WaveCounts all = campaign::Sum(waves);
    rows.push_back({c.spec.name, std::string(store::CampaignStateName(c.state)),
                    std::string(store::CampaignModeName(c.spec.mode)), std::to_string(c.jobs),
                    std::to_string(all.of(store::JobState::kConfirmed)),
                    std::to_string(all.of(store::JobState::kFailed)),
                    std::to_string(c.current_wave + 1) + "/" + std::to_string(c.waves),
                    FormatUtc(c.created_at)});
  }
  if (campaigns.empty()) {
    std::cout << "no campaigns (iotpki campaign create makes one)\n";
    return {};
  }
  PrintTable(rows);
  return {};
}

Result<void> RunStatus(const NamedArgs& args) {
  IOTPKI_TRY(auto db, OpenCampaignStore(args.dir, args.store));
  IOTPKI_TRY(auto c, FindCampaign(*db, args.name));
  IOTPKI_TRY(auto waves, WavesOf(*db, c));
  if (args.json) {
    std::cout << CampaignJson(c, waves).dump(2) << "\n";
    return {};
  }
  campaign::WaveCounts all = campaign::Sum(waves);
  campaign::WaveCounts current;
  if (c.current_wave < static_cast<int64_t>(waves.size())) current = waves[c.current_wave];
  std::cout << "campaign " << c.spec.name << ": " << store::CampaignStateName(c.state);
  if (!c.state_reason.empty()) std::cout << " (" << c.state_reason << ")";
  std::cout << ", mode " << store::CampaignModeName(c.spec.mode) << ", wave " << c.current_wave + 1
            << " of " << c.waves << " (started " << FormatUtc(c.wave_started_at) << "), deadline "
            << FormatUtc(c.spec.deadline) << "\n";
  std::cout << "jobs " << c.jobs;
  for (int s = 0; s < store::kJobStateCount; ++s) {
    std::cout << ", " << store::JobStateName(static_cast<store::JobState>(s)) << " " << all.n[s];
  }
  std::cout << "\nfailure rate of the current wave " << Percent(campaign::FailureRate(current))
            << " (halts above " << Percent(campaign::MaxFailureRate(c)) << ")\n";
  std::vector<std::vector<std::string>> rows = {
      {"WAVE", "PENDING", "NOTIFIED", "ENROLLED", "CONFIRMED", "FAILED"}};
  for (size_t i = 0; i < waves.size(); ++i) {
    std::vector<std::string> row = {std::to_string(i + 1)};
    for (int s = 0; s < store::kJobStateCount; ++s) row.push_back(std::to_string(waves[i].n[s]));
    rows.push_back(std::move(row));
  }
  PrintTable(rows);
  return {};
}

Result<void> RunFailures(const NamedArgs& args) {
  IOTPKI_TRY(auto db, OpenCampaignStore(args.dir, args.store));
  IOTPKI_TRY(auto c, FindCampaign(*db, args.name));
  std::vector<store::Job> jobs;
  for (int64_t after = -1;;) {
    IOTPKI_TRY(auto page, db->ListJobs(c.id, /*only_errors=*/true, after, store::kMaxPageSize));
    jobs.insert(jobs.end(), page.begin(), page.end());
    if (page.size() < store::kMaxPageSize) break;
    after = page.back().ordinal;
  }
  auto next_retry = [](const store::Job& j) -> std::string {
    if (j.state == store::JobState::kFailed || j.state == store::JobState::kConfirmed) return "";
    return j.next_attempt_at >= store::kNotYetDue ? "" : FormatUtc(j.next_attempt_at);
  };
  if (args.json) {
    nlohmann::ordered_json out = nlohmann::ordered_json::array();
    for (const auto& j : jobs) {
      std::string retry = next_retry(j);
      out.push_back(
          {{"device_id", j.device_id},
           {"state", store::JobStateName(j.state)},
           {"wave", j.wave},
           {"attempts", j.attempts},
           {"last_error", j.last_error.value_or("")},
           {"next_retry", retry.empty() ? nlohmann::ordered_json() : nlohmann::ordered_json(retry)},
           {"old_certificate", j.old_serial.value_or("")}});
    }
    std::cout << out.dump(2) << "\n";
    return {};
  }
  if (jobs.empty()) {
    std::cout << "campaign " << c.spec.name << ": no failures\n";
    return {};
  }
  std::vector<std::vector<std::string>> rows = {
      {"DEVICE", "STATE", "ATTEMPTS", "NEXT RETRY", "LAST ERROR"}};
  for (const auto& j : jobs) {
    std::string retry = next_retry(j);
    rows.push_back({j.device_id, std::string(store::JobStateName(j.state)),
                    std::to_string(j.attempts), retry.empty() ? "-" : retry,
                    j.last_error.value_or("")});
  }
  PrintTable(rows);
  return {};
}

Result<void> RunTransition(const NamedArgs& args, const std::string& verb) {
  IOTPKI_TRY(auto db, OpenCampaignStore(args.dir, args.store));
  IOTPKI_TRY(auto c, FindCampaign(*db, args.name));
  IOTPKI_TRY(auto batch, campaign::CampaignTransition(c, verb, "by " + Actor(), Actor()));
  auto committed = db->Commit(batch);
  if (!committed && committed.error().code() == Code::kAborted) {
    return Fail(Code::kAborted, "campaign " + c.spec.name +
                                    " changed while this command ran; look at it again with "
                                    "iotpki campaign status " +
                                    c.spec.name);
  }
  if (!committed) return Fail(std::move(committed).error());
  IOTPKI_TRY(auto now, db->GetCampaign(c.spec.name));
  std::cout << "campaign " << c.spec.name << ": " << store::CampaignStateName(c.state) << " -> "
            << store::CampaignStateName(now.state) << "\n";
  return {};
}

void AddStoreArgs(CLI::App* cmd, NamedArgs& args) {
  cmd->add_option("--dir", args.dir, "CA directory")->required();
  AddStoreOption(cmd, args.store);
}

}  // namespace

void Add(CLI::App& app) {
  auto* group = app.add_subcommand("campaign", "Rotation campaigns: create, watch and steer them");
  group->require_subcommand(1);

  auto create_args = std::make_shared<CreateArgs>();
  auto* create = group->add_subcommand(
      "create", "Select devices and make one rotation job per device, run in waves by serve");
  create->add_option("--dir", create_args->dir, "CA directory")->required();
  AddStoreOption(create, create_args->store);
  create->add_option("--name", create_args->name, "Campaign name (A-Z a-z 0-9 . _ -)")->required();
  create->add_option("--expiring-within", create_args->expiring_within,
                     "Devices whose certificate expires within this window (30d, 12h, ...)");
  create->add_option("--batch", create_args->batch, "Devices of this manufacturing batch");
  create->add_option("--model", create_args->model, "Devices of this model");
  create->add_option("--issued-by-ca", create_args->issued_by_ca,
                     "Devices holding a valid certificate from the CA with this SHA-256 "
                     "fingerprint (iotpki ca show)");
  create->add_option("--devices", create_args->devices_file, "File of device ids, one per line");
  create->add_option("--mode", create_args->mode, "renew (keep the key) or rekey (new key)");
  create->add_option("--wave-size", create_args->wave_size, "Jobs per wave (default 1000)");
  create->add_option("--max-failure-rate", create_args->max_failure_rate,
                     "Halt when a wave's failed share passes this, 0..1 (default 0.05)");
  create->add_option("--retry-after", create_args->retry_after,
                     "Seconds before the first retry, doubled per attempt (default 3600)");
  create->add_option("--max-attempts", create_args->max_attempts,
                     "Attempts per device before it is failed (default 5)");
  create->add_option("--deadline", create_args->deadline,
                     "Time the campaign may run from now (default 72h)");
  create->add_flag("--dry-run", create_args->dry_run,
                   "Count the cohort and the stranded devices; create nothing");
  create->add_flag("--json", create_args->json, "JSON output");
  SetAction(create, [create_args] { return RunCreate(*create_args); });

  auto ls_args = std::make_shared<NamedArgs>();
  auto* ls = group->add_subcommand("ls", "Every campaign, newest first");
  AddStoreArgs(ls, *ls_args);
  ls->add_flag("--json", ls_args->json, "JSON output");
  SetAction(ls, [ls_args] { return RunLs(*ls_args); });

  auto status_args = std::make_shared<NamedArgs>();
  auto* status = group->add_subcommand(
      "status", "One campaign: state, current wave, jobs per state and wave, failure rate");
  AddStoreArgs(status, *status_args);
  status->add_option("name", status_args->name, "Campaign name")->required();
  status->add_flag("--json", status_args->json, "JSON output");
  SetAction(status, [status_args] { return RunStatus(*status_args); });

  auto failures_args = std::make_shared<NamedArgs>();
  auto* failures = group->add_subcommand(
      "failures", "Jobs that failed at least once: device, attempts, last error, next retry");
  AddStoreArgs(failures, *failures_args);
  failures->add_option("name", failures_args->name, "Campaign name")->required();
  failures->add_flag("--json", failures_args->json, "JSON output");
  SetAction(failures, [failures_args] { return RunFailures(*failures_args); });

  for (const char* verb : {"pause", "resume", "cancel"}) {
    auto args = std::make_shared<NamedArgs>();
    std::string help = std::string(verb) == "pause"    ? "Stop notifying devices until resumed"
                       : std::string(verb) == "resume" ? "Continue a paused or halted campaign"
                                                       : "End a campaign for good";
    auto* cmd = group->add_subcommand(verb, help);
    AddStoreArgs(cmd, *args);
    cmd->add_option("name", args->name, "Campaign name")->required();
    std::string v = verb;
    SetAction(cmd, [args, v] { return RunTransition(*args, v); });
  }
}

}  // namespace campaign_cmd

void AddCampaignCommands(CLI::App& app) { campaign_cmd::Add(app); }

}  // namespace iotpki::cli
