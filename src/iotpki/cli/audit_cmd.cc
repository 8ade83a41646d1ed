// iotpki audit verify
#include <CLI/CLI.hpp>
#include <iostream>

#include "iotpki/ca/authority.h"
#include "iotpki/ca/config.h"
#include "iotpki/cli/cli.h"
#include "iotpki/store/audit.h"

namespace iotpki::cli {
namespace {

Result<void> RunVerify(const std::string& dir) {
  IOTPKI_TRY(ca::CaConfig config, ca::LoadConfig(dir));
  IOTPKI_TRY(auto store, ca::OpenStore(dir, config, SystemClock::Instance()));
  IOTPKI_TRY(store::AuditVerdict verdict, store::VerifyAuditChain(*store));
  if (!verdict.intact) {
    return Fail(Code::kDataLoss, "audit log is broken: " + verdict.explanation);
  }
  std::cout << "audit log intact: " << verdict.rows_checked << " rows, head " << verdict.last_seq
            << " " << ToHex(verdict.head_hash) << "\n";
  return {};
}

}  // namespace

void AddAuditCommands(CLI::App& app) {
  auto* audit = app.add_subcommand("audit", "The hash-chained audit log");
  audit->require_subcommand(1);
  auto dir = std::make_shared<std::string>();
  auto* verify = audit->add_subcommand("verify", "Recompute the chain; name the first broken row");
  verify->add_option("--dir", *dir, "CA directory")->required();
  SetAction(verify, [dir] { return RunVerify(*dir); });
}

}  // namespace iotpki::cli
