// iotpki admin init | issue | revoke: the admin CA and the operators of the dashboard
// (admin/admin_ca.h).
#include <CLI/CLI.hpp>
#include <cstdlib>
#include <iostream>

#include "iotpki/admin/admin_ca.h"
#include "iotpki/ca/authority.h"
#include "iotpki/ca/config.h"
#include "iotpki/cli/cli.h"
#include "iotpki/common/file.h"

namespace iotpki::cli {
namespace admin_cmd {

struct AdminInitArgs {
  std::string dir;
  std::string store;
  PassphraseSources passphrases;
};

struct AdminIssueArgs {
  std::string dir;
  std::string store;
  std::string name;
  std::string role;
  std::string out_dir;
  std::string out_passphrase_file;
  int64_t days = 365;
  PassphraseSources passphrases;
};

struct AdminRevokeArgs {
  std::string dir;
  std::string store;
  std::string name;
  std::string serial;
};

Result<void> RunAdminInit(AdminInitArgs& args) {
  IOTPKI_TRY(crypto::Secret ops, ReadPassphrase(args.passphrases, KeyRole::kOperational));
  IOTPKI_TRY(std::string subject, CreateAdminCa(args.dir, ops.view(), args.store));
  std::cout << "created the admin CA in " << args.dir << "/certs/admin-ca.pem (" << subject
            << "); issue operators with iotpki admin issue\n";
  return {};
}

// The operator's passphrase: --out-passphrase-file's first line, else
// $IOTPKI_OPERATOR_PASSPHRASE.
Result<crypto::Secret> OperatorPassphrase(const std::string& file) {
  if (!file.empty()) {
    IOTPKI_TRY(std::string text, ReadTextFile(file, 4096));
    std::string line = text.substr(0, text.find('\n'));
    if (!line.empty() && line.back() == '\r') line.pop_back();
    return crypto::Secret::Take(line);
  }
  if (const char* env = std::getenv("IOTPKI_OPERATOR_PASSPHRASE"); env != nullptr && *env) {
    std::string text(env);
    return crypto::Secret::Take(text);
  }
  return Fail(Code::kFailedPrecondition,
              "no passphrase for the operator's key: give --out-passphrase-file FILE or set "
              "IOTPKI_OPERATOR_PASSPHRASE");
}

Result<void> RunAdminIssue(AdminIssueArgs& args) {
  IOTPKI_TRY(admin::Role role, admin::ParseRole(args.role));
  IOTPKI_TRY(crypto::Secret out_pass, OperatorPassphrase(args.out_passphrase_file));
  IOTPKI_TRY(crypto::Secret ops, ReadPassphrase(args.passphrases, KeyRole::kOperational));
  IOTPKI_TRY(ca::CaConfig config, ca::LoadConfig(args.dir));
  IOTPKI_TRY(auto store, ca::OpenStore(args.dir, config, SystemClock::Instance(), args.store));
  IOTPKI_TRY(admin::IssuedOperator issued,
             admin::IssueOperator(args.dir, ops.view(),
                                  {.name = args.name,
                                   .role = role,
                                   .out_dir = args.out_dir,
                                   .key_passphrase = out_pass.view(),
                                   .days = args.days},
                                  SystemClock::Instance(), store.get(), Actor()));
  std::cout << "issued operator " << args.name << " (" << admin::RoleName(role) << "), serial "
            << issued.certificate.serial_hex() << ", valid until "
            << FormatUtc(issued.certificate.not_after()) << "\n"
            << "  certificate " << issued.cert_path.string() << "\n"
            << "  key         " << issued.key_path.string() << " (encrypted)\n"
            << "  browser     " << issued.p12_path.string()
            << " (PKCS#12; import it into the browser with the same passphrase)\n";
  return {};
}

// Needs no passphrase: revoking signs nothing; the admin listener reads the store on every
// request.
Result<void> RunAdminRevoke(AdminRevokeArgs& args) {
  IOTPKI_TRY(ca::CaConfig config, ca::LoadConfig(args.dir));
  IOTPKI_TRY(auto store, ca::OpenStore(args.dir, config, SystemClock::Instance(), args.store));
  IOTPKI_TRY(auto revoked, admin::RevokeOperator(*store, args.name, args.serial, Actor()));
  for (const auto& c : revoked) {
    std::cout << "revoked operator certificate " << c.serial << " of " << c.name << " (" << c.role
              << ") at " << FormatUtc(*c.revoked_at) << "\n";
  }
  std::cout << "the admin listener refuses " << (revoked.size() == 1 ? "it" : "them")
            << " from the next request on\n";
  return {};
}

}  // namespace admin_cmd

Result<std::string> CreateAdminCa(const std::string& dir, std::string_view passphrase,
                                  const std::string& store_url) {
  IOTPKI_TRY(ca::CaConfig config, ca::LoadConfig(dir));
  IOTPKI_TRY(auto store, ca::OpenStore(dir, config, SystemClock::Instance(), store_url));
  IOTPKI_TRY(x509::Certificate cert,
             admin::InitAdminCa(dir, config.organization, passphrase, SystemClock::Instance(),
                                store.get(), Actor()));
  return cert.subject();
}

void AddAdminCommands(CLI::App& app) {
  using namespace admin_cmd;
  auto* group = app.add_subcommand("admin", "The dashboard's admin CA and operator certificates");
  group->require_subcommand(1);

  auto init_args = std::make_shared<AdminInitArgs>();
  auto* init = group->add_subcommand(
      "init", "Create the admin CA in a CA directory made before ca init created one");
  init->add_option("--dir", init_args->dir, "CA directory")->required();
  AddStoreOption(init, init_args->store);
  AddPassphraseOptions(init, init_args->passphrases, {KeyRole::kOperational});
  SetAction(init, [init_args] { return RunAdminInit(*init_args); });

  auto issue_args = std::make_shared<AdminIssueArgs>();
  auto* issue = group->add_subcommand(
      "issue", "Issue an operator's key and client certificate for the dashboard");
  issue->add_option("--dir", issue_args->dir, "CA directory")->required();
  AddStoreOption(issue, issue_args->store);
  issue->add_option("--name", issue_args->name, "Operator name (A-Z a-z 0-9 . _ @ -)")->required();
  issue->add_option("--role", issue_args->role, "read-only or operator")->required();
  issue
      ->add_option("--out-dir", issue_args->out_dir,
                   "Directory for NAME.pem, NAME.key and NAME.p12")
      ->required();
  issue->add_option("--out-passphrase-file", issue_args->out_passphrase_file,
                    "File whose first line protects the key and the PKCS#12 (default: "
                    "$IOTPKI_OPERATOR_PASSPHRASE)");
  issue->add_option("--days", issue_args->days, "Validity in days (default 365, at most 825)");
  AddPassphraseOptions(issue, issue_args->passphrases, {KeyRole::kOperational});
  SetAction(issue, [issue_args] { return RunAdminIssue(*issue_args); });

  auto revoke_args = std::make_shared<AdminRevokeArgs>();
  auto* revoke = group->add_subcommand(
      "revoke", "Revoke an operator's certificates (--name) or one certificate (--serial)");
  revoke->add_option("--dir", revoke_args->dir, "CA directory")->required();
  AddStoreOption(revoke, revoke_args->store);
  auto* by_name =
      revoke->add_option("--name", revoke_args->name, "Every valid certificate of this operator");
  auto* by_serial = revoke->add_option("--serial", revoke_args->serial,
                                       "One operator certificate, by serial (hex)");
  by_name->excludes(by_serial);
  SetAction(revoke, [revoke_args] { return RunAdminRevoke(*revoke_args); });
}

}  // namespace iotpki::cli
