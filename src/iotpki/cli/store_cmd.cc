// iotpki store migrate
#include <CLI/CLI.hpp>
#include <iostream>

#include "iotpki/cli/cli.h"
#include "iotpki/common/bytes.h"
#include "iotpki/common/clock.h"
#include "iotpki/store/migrate.h"

namespace iotpki::cli {
namespace {

struct MigrateArgs {
  std::string from;
  std::string to;
};

Result<void> RunMigrate(const MigrateArgs& args) {
  IOTPKI_TRY(store::MigrateReport report,
             store::MigrateStore(args.from, args.to, SystemClock::Instance()));
  std::cout << "migrated " << store::RedactStoreUrl(args.from) << " to "
            << store::RedactStoreUrl(args.to) << ":";
  for (const auto& [table, rows] : report.tables) std::cout << " " << table << " " << rows << ";";
  std::cout << "\naudit log verified after the move: " << report.audit_rows << " rows, head "
            << report.audit_head_seq << " " << ToHex(report.audit_head_hash) << "\n";
  return {};
}

}  // namespace

void AddStoreCommands(CLI::App& app) {
  auto* group = app.add_subcommand("store", "The store: move it between backends");
  group->require_subcommand(1);
  auto args = std::make_shared<MigrateArgs>();
  auto* migrate = group->add_subcommand(
      "migrate", "Copy a whole store into a new, empty one (e.g. SQLite to PostgreSQL)");
  migrate->add_option("--from", args->from, "Source store URL: sqlite:PATH or postgresql://...")
      ->required();
  migrate->add_option("--to", args->to, "Target store URL (an empty database)")->required();
  SetAction(migrate, [args] { return RunMigrate(*args); });
}

}  // namespace iotpki::cli
