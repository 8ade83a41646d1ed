// iotpki ca init | show
#include <CLI/CLI.hpp>
#include <iostream>
#include <nlohmann/json.hpp>

#include "iotpki/ca/authority.h"
#include "iotpki/ca/config.h"
#include "iotpki/cli/cli.h"
#include "iotpki/common/clock.h"
#include "iotpki/common/file.h"
#include "iotpki/store/open.h"
#include "iotpki/x509/certificate.h"

namespace iotpki::cli {
namespace {

struct InitArgs {
  std::string dir;
  std::string org = "iotpki";
  std::string root_curve = "P-256";
  std::string root_key_dir;
  PassphraseSources passphrases;
  std::string store;
  std::string key_store;
};

struct CaShowArgs {
  std::string dir;
  std::string store;
  bool json = false;
};

Result<void> RunInit(InitArgs& args) {
  IOTPKI_TRY(crypto::KeyType curve, crypto::ParseCurve(args.root_curve));
  // With --key-store the four signing keys live in the token (its PIN: IOTPKI_PKCS11_PIN or
  // pin-source); only the bootstrap master needs a passphrase.
  bool in_token = !args.key_store.empty();
  auto read = [&](KeyRole role) -> Result<crypto::Secret> {
    if (in_token && role != KeyRole::kBootstrap) return crypto::Secret();
    return ReadPassphrase(args.passphrases, role);
  };
  IOTPKI_TRY(crypto::Secret root, read(KeyRole::kRoot));
  IOTPKI_TRY(crypto::Secret mfg, read(KeyRole::kManufacturing));
  IOTPKI_TRY(crypto::Secret ops, read(KeyRole::kOperational));
  IOTPKI_TRY(crypto::Secret boot, read(KeyRole::kBootstrap));
  IOTPKI_TRY(crypto::Secret audit, read(KeyRole::kAudit));
  if (!args.store.empty()) IOTPKI_CHECK(store::ParseStoreUrl(args.store));
  ca::InitOptions options{.organization = args.org,
                          .root_curve = curve,
                          .store_url = args.store,
                          .root_key_dir = args.root_key_dir,
                          .key_store = args.key_store};
  IOTPKI_CHECK(ca::InitCa(args.dir, options,
                          {.root = root.view(),
                           .manufacturing = mfg.view(),
                           .operational = ops.view(),
                           .bootstrap = boot.view(),
                           .audit = audit.view()},
                          SystemClock::Instance()));
  // The dashboard's admin CA (a file key under the operational passphrase, the server's). A CA
  // whose keys are in a token has no operational passphrase: `iotpki admin init` makes it later.
  if (!in_token) IOTPKI_CHECK(CreateAdminCa(args.dir, ops.view(), args.store));
  std::cout << "created CA in " << args.dir << " (root, manufacturing and operational CAs; keys ";
  if (in_token) {
    std::cout << "in the token " << args.key_store << ", only their URIs on disk";
  } else {
    std::cout << "encrypted in " << args.dir << "/keys";
  }
  if (!args.root_key_dir.empty()) {
    std::cout << ", the root key in " << args.root_key_dir << ": keep it offline";
  }
  if (in_token) {
    std::cout << "; no admin CA for the dashboard yet: `iotpki admin init --dir " << args.dir
              << "` makes one)\n";
  } else {
    std::cout << "; an admin CA for the dashboard in " << args.dir << "/certs/admin-ca.pem)\n";
  }
  return {};
}

Result<void> RunCaShow(const CaShowArgs& args) {
  IOTPKI_TRY(auto authority, ca::Authority::Open(args.dir, SystemClock::Instance(), args.store));
  nlohmann::json out = nlohmann::json::array();
  for (ca::CaName name :
       {ca::CaName::kRoot, ca::CaName::kManufacturing, ca::CaName::kOperational}) {
    const x509::Certificate& c = authority->certificate(name);
    out.push_back({{"name", ca::CaNameText(name)},
                   {"subject", c.subject()},
                   {"issuer", c.issuer()},
                   {"serial", c.serial_hex()},
                   {"key", c.public_key().Describe()},
                   {"not_before", FormatUtc(c.not_before())},
                   {"not_after", FormatUtc(c.not_after())},
                   {"path_len", c.path_len() ? nlohmann::json(*c.path_len()) : nlohmann::json()},
                   {"sha256_fingerprint", c.fingerprint_sha256()},
                   {"der_bytes", c.ToDer().size()}});
  }
  if (args.json) {
    std::cout << nlohmann::json{{"dir", args.dir},
                                {"organization", authority->config().organization},
                                {"hierarchy", out}}
                     .dump(2)
              << "\n";
    return {};
  }
  std::cout << "CA directory " << args.dir << " (organization: " << authority->config().organization
            << ")\n";
  const char* tree[] = {"", "├── ", "└── "};
  int i = 0;
  for (const auto& c : out) {
    std::string indent = i == 0 ? "" : "    ";
    std::cout << tree[i] << c["name"].get<std::string>() << ": " << c["subject"].get<std::string>()
              << "\n";
    std::cout << indent << "    key " << c["key"].get<std::string>() << ", valid "
              << c["not_before"].get<std::string>() << " to " << c["not_after"].get<std::string>()
              << "\n";
    std::cout << indent << "    sha256 " << c["sha256_fingerprint"].get<std::string>() << "\n";
    ++i;
  }
  return {};
}

}  // namespace

void AddCaCommands(CLI::App& app) {
  auto* ca = app.add_subcommand("ca", "Create and inspect the CA hierarchy");
  ca->require_subcommand(1);

  auto init_args = std::make_shared<InitArgs>();
  auto* init = ca->add_subcommand("init", "Create root, manufacturing and operational CAs");
  init->add_option("--dir", init_args->dir, "CA directory (must not exist or be empty)")
      ->required();
  init->add_option("--org", init_args->org, "Organization name (subject O)");
  init->add_option("--root-curve", init_args->root_curve, "Root key curve: P-256 or P-384");
  AddPassphraseOptions(init, init_args->passphrases,
                       {KeyRole::kRoot, KeyRole::kManufacturing, KeyRole::kOperational,
                        KeyRole::kBootstrap, KeyRole::kAudit});
  init->add_option("--root-key-dir", init_args->root_key_dir,
                   "Write the root key here (removable media for an offline root) instead of "
                   "DIR/keys");
  init->add_option("--key-store", init_args->key_store,
                   "Generate the root, manufacturing, operational and audit keys inside this "
                   "PKCS#11 token (pkcs11:token=LABEL; PIN from IOTPKI_PKCS11_PIN or "
                   "?pin-source=file:PATH; module from IOTPKI_PKCS11_MODULE)");
  init->add_option("--store", init_args->store,
                   "Store URL recorded in iotpki.toml (default sqlite:iotpki.db): sqlite:PATH or "
                   "postgresql://HOST/DATABASE (an empty database)");
  SetAction(init, [init_args] { return RunInit(*init_args); });

  auto show_args = std::make_shared<CaShowArgs>();
  auto* show = ca->add_subcommand("show", "Show the hierarchy with fingerprints");
  show->add_option("--dir", show_args->dir, "CA directory")->required();
  AddStoreOption(show, show_args->store);
  show->add_flag("--json", show_args->json, "Machine-readable output");
  SetAction(show, [show_args] { return RunCaShow(*show_args); });
}

}  // namespace iotpki::cli
