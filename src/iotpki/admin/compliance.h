// `iotpki compliance report`: evidence for an IoT security standard's provisions, measured from
// the store and the CA directory at the moment the report runs, each with a verdict and how it
// was measured (docs/compliance.md). Counts come from the store's count tables and indexes; the
// one whole pass is the audit chain's verification, which is the evidence asked for.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "iotpki/ca/config.h"
#include "iotpki/common/clock.h"
#include "iotpki/common/error.h"
#include "iotpki/store/store.h"

namespace iotpki::admin {

enum class Standard { kEtsiEn303645, kNistir8259a, kEn18031_1 };
// "etsi-en-303-645", "nistir-8259a", "en-18031-1"; InvalidArgument naming them otherwise.
Result<Standard> ParseStandard(std::string_view name);
std::string_view StandardName(Standard standard);
std::string_view StandardTitle(Standard standard);  // "ETSI EN 303 645 V2.1.1", ...

enum class Verdict { kPass, kFail, kNotApplicable, kNeedsManualEvidence };
std::string_view VerdictName(Verdict verdict);  // "pass", "fail", "not-applicable", ...

struct Finding {
  std::string id;         // stable for tools: "unique-credentials", "crl-freshness", ...
  std::string provision;  // the standard's clause(s) it speaks to
  std::string title;
  Verdict verdict = Verdict::kNeedsManualEvidence;
  std::vector<std::pair<std::string, std::string>> evidence;  // measured figures
  std::string how;  // how it was measured, so an auditor can reproduce it
  int64_t ms = 0;   // how long measuring it took (JSON "ms"), so a slow one can be named
};

struct Report {
  Standard standard = Standard::kEtsiEn303645;
  int64_t generated_at = 0;
  int64_t run_ms = 0;
  std::vector<Finding> findings;
};

// Measures every finding for `standard`. Errors only when the store cannot be read.
Result<Report> MeasureCompliance(Standard standard, const std::filesystem::path& dir,
                                 const ca::CaConfig& config, store::Store& store,
                                 const Clock& clock);

std::string RenderJson(const Report& report);
// One printable HTML page: a summary table first, then a section per finding.
std::string RenderHtml(const Report& report);

}  // namespace iotpki::admin
