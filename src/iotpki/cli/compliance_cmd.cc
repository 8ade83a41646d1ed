// iotpki compliance report: evidence for an IoT security standard (admin/compliance.h).
#include <CLI/CLI.hpp>
#include <iostream>

#include "iotpki/admin/compliance.h"
#include "iotpki/ca/authority.h"
#include "iotpki/ca/config.h"
#include "iotpki/cli/cli.h"
#include "iotpki/common/file.h"

namespace iotpki::cli {
namespace compliance_cmd {

struct ReportArgs {
  std::string dir;
  std::string store;
  std::string standard;
  std::string format = "html";
  std::string out;
};

Result<void> RunReport(const ReportArgs& args) {
  IOTPKI_TRY(admin::Standard standard, admin::ParseStandard(args.standard));
  if (args.format != "html" && args.format != "json") {
    return Fail(Code::kInvalidArgument, "--format must be html or json, not '" + args.format + "'");
  }
  IOTPKI_TRY(ca::CaConfig config, ca::LoadConfig(args.dir));
  IOTPKI_TRY(auto store, ca::OpenStore(args.dir, config, SystemClock::Instance(), args.store));
  IOTPKI_TRY(admin::Report report,
             admin::MeasureCompliance(standard, args.dir, config, *store, SystemClock::Instance()));
  std::string text = args.format == "json" ? admin::RenderJson(report) : admin::RenderHtml(report);
  IOTPKI_CHECK(WriteFileAtomic(args.out, text));
  int fails = 0, manual = 0;
  for (const auto& f : report.findings) {
    fails += f.verdict == admin::Verdict::kFail;
    manual += f.verdict == admin::Verdict::kNeedsManualEvidence;
  }
  std::cout << "wrote " << args.out << ": " << report.findings.size() << " findings for "
            << admin::StandardTitle(standard) << ", " << fails << " fail, " << manual
            << " need manual evidence (" << report.run_ms << " ms)\n";
  return {};
}

}  // namespace compliance_cmd

void AddComplianceCommands(CLI::App& app) {
  using namespace compliance_cmd;
  auto* group = app.add_subcommand("compliance", "Compliance evidence drawn from the fleet");
  group->require_subcommand(1);
  auto args = std::make_shared<ReportArgs>();
  auto* report = group->add_subcommand(
      "report", "Evidence and verdicts for etsi-en-303-645, nistir-8259a or en-18031-1");
  report->add_option("--dir", args->dir, "CA directory")->required();
  AddStoreOption(report, args->store);
  report->add_option("--standard", args->standard, "etsi-en-303-645, nistir-8259a or en-18031-1")
      ->required();
  report->add_option("--format", args->format, "html (default) or json");
  report->add_option("--out", args->out, "File to write")->required();
  SetAction(report, [args] { return RunReport(*args); });
}

}  // namespace iotpki::cli
