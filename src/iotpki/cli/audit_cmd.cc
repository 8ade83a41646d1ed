// iotpki audit verify [--expect SEQ:HASH]... [--manifest FILE] | head | checkpoint
#include <CLI/CLI.hpp>
#include <algorithm>
#include <filesystem>
#include <iostream>
#include <optional>

#include "iotpki/ca/audit_check.h"
#include "iotpki/ca/authority.h"
#include "iotpki/ca/config.h"
#include "iotpki/cli/cli.h"
#include "iotpki/common/file.h"
#include "iotpki/crypto/signer.h"
#include "iotpki/mfg/manifest.h"
#include "iotpki/store/audit.h"

namespace iotpki::cli {
namespace {

struct VerifyArgs {
  std::string dir;
  std::string store;
  std::string manifest;
  std::vector<std::string> expect;
  std::string audit_key;
};

struct CheckpointArgs {
  std::string dir;
  std::string store;
  int64_t min_rows = 0;
  PassphraseSources passphrases;
};

// The audit key's public half: --audit-key (a copy the auditor keeps) or the CA's file. Empty
// optional for a CA made before audit keys existed.
Result<std::optional<crypto::PublicKey>> AuditPublicKey(const std::string& dir,
                                                        const ca::CaConfig& config,
                                                        const std::string& given) {
  std::filesystem::path path = given;
  if (path.empty()) {
    if (config.audit_public_key.empty()) return std::optional<crypto::PublicKey>();
    path = std::filesystem::path(config.audit_public_key);
    if (path.is_relative()) path = std::filesystem::path(dir) / path;
  }
  IOTPKI_TRY(std::string pem, ReadTextFile(path, 1 << 16));
  auto key = crypto::PublicKey::FromPem(pem);
  if (!key) return Fail(std::move(key).error().Context(path.string()));
  return std::optional<crypto::PublicKey>(std::move(*key));
}

struct HeadArgs {
  std::string dir;
  std::string store;
};

Result<void> RunVerify(const VerifyArgs& args) {
  // Anchors are checked before anything is opened: a typo is a usage error, not a broken log.
  std::vector<store::AuditAnchor> anchors;
  for (const auto& text : args.expect) {
    auto anchor = store::ParseAuditAnchor(text);
    if (!anchor) return Fail(std::move(anchor).error().Context("--expect"));
    anchors.push_back(std::move(*anchor));
  }
  IOTPKI_TRY(ca::CaConfig config, ca::LoadConfig(args.dir));
  IOTPKI_TRY(auto store, ca::OpenStore(args.dir, config, SystemClock::Instance(), args.store));
  IOTPKI_TRY(store::AuditVerdict verdict, store::VerifyAuditChain(*store, 1000, anchors));
  if (!verdict.intact) {
    return Fail(Code::kDataLoss, "audit log is broken: " + verdict.explanation);
  }
  IOTPKI_TRY(auto audit_key, AuditPublicKey(args.dir, config, args.audit_key));
  ca::CheckpointVerdict checkpoints;
  if (audit_key) {
    IOTPKI_TRY(checkpoints, ca::VerifyCheckpoints(*store, *audit_key));
    if (!checkpoints.valid) {
      return Fail(Code::kDataLoss, "audit log is broken: " + checkpoints.problem);
    }
  }
  IOTPKI_TRY(ca::CrossCheckVerdict cross, ca::CrossCheckCertificates(*store));
  if (!cross.consistent) {
    std::string all;
    for (const auto& p : cross.problems) all += (all.empty() ? "" : "; ") + p;
    return Fail(Code::kDataLoss, "certificates disagree with the audit log: " + all);
  }
  std::cout << "audit log intact: " << verdict.rows_checked << " rows, head " << verdict.last_seq
            << " " << ToHex(verdict.head_hash);
  if (!anchors.empty()) std::cout << "; " << anchors.size() << " anchor(s) match";
  if (audit_key) {
    std::cout << "; " << checkpoints.checkpoints << " signed checkpoint(s)";
    if (checkpoints.checkpoints > 0)
      std::cout << ", the last at row " << checkpoints.last_checkpoint_seq;
  } else {
    std::cout << "; no audit key (a CA made before audit keys): checkpoints not checked";
  }
  std::cout << "\n";
  std::cout << "certificates match the audit log: " << cross.certificates << " certificates, "
            << cross.revoked << " revoked\n";
  if (args.manifest.empty()) return {};
  auto checked = mfg::VerifyManifest(*store, args.manifest);
  if (!checked) return Fail(std::move(checked).error().Context(args.manifest));
  std::cout << "manifest " << args.manifest << ": " << checked->devices << " devices in "
            << checked->groups << " groups, each matching its mfg.issue row\n";
  return {};
}

Result<void> RunCheckpoint(CheckpointArgs& args) {
  IOTPKI_TRY(ca::CaConfig config, ca::LoadConfig(args.dir));
  if (config.audit_key.empty()) {
    return Fail(Code::kFailedPrecondition,
                "this CA has no audit key (made before audit keys): add [keys] audit and "
                "audit_public to iotpki.toml (docs/operations.md)");
  }
  IOTPKI_TRY(auto store, ca::OpenStore(args.dir, config, SystemClock::Instance(), args.store));
  if (args.min_rows > 0) {
    // For a timer: sign only once at least --min-rows rows follow the last checkpoint.
    IOTPKI_TRY(auto head, store::ReadAuditHead(*store));
    int64_t last = 0;
    if (head) {
      int64_t from = std::max<int64_t>(1, head->seq - args.min_rows + 1);
      for (;;) {
        IOTPKI_TRY(auto rows, store->ReadAudit(from, store::kMaxPageSize));
        for (const auto& r : rows) {
          if (r.action == "audit.checkpoint") last = r.seq;
          from = r.seq + 1;
        }
        if (rows.size() < store::kMaxPageSize) break;
      }
    }
    if (!head || last > 0) {
      std::cout << "no checkpoint needed: fewer than " << args.min_rows
                << " rows since the last one\n";
      return {};
    }
  }
  IOTPKI_TRY(crypto::Secret passphrase, ReadPassphrase(args.passphrases, KeyRole::kAudit));
  IOTPKI_TRY(auto key, crypto::OpenSigner(config.audit_key, passphrase.view(), args.dir));
  IOTPKI_TRY(auto public_key, AuditPublicKey(args.dir, config, ""));
  if (!public_key || !(*public_key == key->public_key())) {
    return Fail(Code::kFailedPrecondition,
                "the audit key does not match " + config.audit_public_key);
  }
  IOTPKI_TRY(store::AuditAnchor anchor, ca::WriteCheckpoint(*store, *key, Actor()));
  std::cout << "signed checkpoint of " << store::FormatAuditAnchor(anchor) << "\n";
  return {};
}

Result<void> RunHead(const HeadArgs& args) {
  IOTPKI_TRY(ca::CaConfig config, ca::LoadConfig(args.dir));
  IOTPKI_TRY(auto store, ca::OpenStore(args.dir, config, SystemClock::Instance(), args.store));
  IOTPKI_TRY(auto head, store::ReadAuditHead(*store));
  if (!head) return Fail(Code::kFailedPrecondition, "the audit log is empty (run iotpki ca init)");
  std::cout << store::FormatAuditAnchor({.seq = head->seq, .hash = head->hash}) << "\n";
  return {};
}

}  // namespace

void AddAuditCommands(CLI::App& app) {
  auto* audit = app.add_subcommand("audit", "The hash-chained audit log");
  audit->require_subcommand(1);

  auto verify_args = std::make_shared<VerifyArgs>();
  auto* verify = audit->add_subcommand("verify", "Recompute the chain; name the first broken row");
  verify->add_option("--dir", verify_args->dir, "CA directory")->required();
  AddStoreOption(verify, verify_args->store);
  verify->add_option("--manifest", verify_args->manifest,
                     "Also check a batch's manifest.jsonl against its mfg.issue rows");
  verify->add_option("--expect", verify_args->expect,
                     "SEQ:HASH from an earlier `iotpki audit head`, kept outside the database: "
                     "row SEQ must still have HASH (repeatable)");
  verify->add_option("--audit-key", verify_args->audit_key,
                     "The audit key's public key (PEM) to check checkpoints with, e.g. a copy "
                     "kept off the CA machine (default: [keys] audit_public of iotpki.toml)");
  SetAction(verify, [verify_args] { return RunVerify(*verify_args); });

  auto cp_args = std::make_shared<CheckpointArgs>();
  auto* cp = audit->add_subcommand("checkpoint",
                                   "Sign the latest row with the audit key, as a row of the log");
  cp->add_option("--dir", cp_args->dir, "CA directory")->required();
  AddStoreOption(cp, cp_args->store);
  cp->add_option("--min-rows", cp_args->min_rows,
                 "Sign only when the last N rows hold no checkpoint (for a timer)")
      ->check(CLI::NonNegativeNumber);
  AddPassphraseOptions(cp, cp_args->passphrases, {KeyRole::kAudit});
  SetAction(cp, [cp_args] { return RunCheckpoint(*cp_args); });

  auto head_args = std::make_shared<HeadArgs>();
  auto* head = audit->add_subcommand(
      "head", "Print SEQ:HASH of the latest row, to keep outside the database as an anchor");
  head->add_option("--dir", head_args->dir, "CA directory")->required();
  AddStoreOption(head, head_args->store);
  SetAction(head, [head_args] { return RunHead(*head_args); });
}

}  // namespace iotpki::cli
