// iotpki audit verify [--manifest FILE]
#include <CLI/CLI.hpp>
#include <iostream>

#include "iotpki/ca/authority.h"
#include "iotpki/ca/config.h"
#include "iotpki/cli/cli.h"
#include "iotpki/mfg/manifest.h"
#include "iotpki/store/audit.h"

namespace iotpki::cli {
namespace {

Result<void> RunVerify(const std::string& dir, const std::string& store_url,
                       const std::string& manifest) {
  IOTPKI_TRY(ca::CaConfig config, ca::LoadConfig(dir));
  IOTPKI_TRY(auto store, ca::OpenStore(dir, config, SystemClock::Instance(), store_url));
  IOTPKI_TRY(store::AuditVerdict verdict, store::VerifyAuditChain(*store));
  if (!verdict.intact) {
    return Fail(Code::kDataLoss, "audit log is broken: " + verdict.explanation);
  }
  std::cout << "audit log intact: " << verdict.rows_checked << " rows, head " << verdict.last_seq
            << " " << ToHex(verdict.head_hash) << "\n";
  if (manifest.empty()) return {};
  auto checked = mfg::VerifyManifest(*store, manifest);
  if (!checked) return Fail(std::move(checked).error().Context(manifest));
  std::cout << "manifest " << manifest << ": " << checked->devices << " devices in "
            << checked->groups << " groups, each matching its mfg.issue row\n";
  return {};
}

}  // namespace

void AddAuditCommands(CLI::App& app) {
  auto* audit = app.add_subcommand("audit", "The hash-chained audit log");
  audit->require_subcommand(1);
  auto dir = std::make_shared<std::string>();
  auto manifest = std::make_shared<std::string>();
  auto store_url = std::make_shared<std::string>();
  auto* verify = audit->add_subcommand("verify", "Recompute the chain; name the first broken row");
  verify->add_option("--dir", *dir, "CA directory")->required();
  AddStoreOption(verify, *store_url);
  verify->add_option("--manifest", *manifest,
                     "Also check a batch's manifest.jsonl against its mfg.issue rows");
  SetAction(verify, [dir, store_url, manifest] { return RunVerify(*dir, *store_url, *manifest); });
}

}  // namespace iotpki::cli
