// The `iotpki` command line. Each group of subcommands lives in its own file and registers
// itself on the root App; an action returns Result<void>, and Main turns an error into one line
// on stderr and a non-zero exit code. Only cli/ and apps/ include CLI11.
#pragma once

#include <chrono>
#include <functional>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>

#include "iotpki/common/error.h"
#include "iotpki/crypto/secret.h"

namespace CLI {
class App;
}

namespace iotpki::cli {

using Action = std::function<Result<void>()>;

// Runs `action` when `sub` is the chosen subcommand.
void SetAction(CLI::App* sub, Action action);

// The keys a command may unlock, each with its own passphrase.
enum class KeyRole { kRoot, kManufacturing, kOperational, kBootstrap, kAudit };

// Where passphrases come from; one per command, filled by AddPassphraseOptions. For a role, the
// first of these that is set wins:
//   --<role>-passphrase-file FILE, $IOTPKI_<ROLE>_PASSPHRASE,
//   --passphrase-file FILE or --passphrase-fd N (the shared passphrase), $IOTPKI_PASSPHRASE.
// A file or descriptor gives its first line. The descriptor is read once, then closed, and its
// passphrase serves every role without its own.
struct PassphraseSources {
  std::string file;  // --passphrase-file
  int fd = -1;       // --passphrase-fd
  std::string role_file[5];
  std::optional<crypto::Secret> fd_cache;
};

// Adds --passphrase-file, --passphrase-fd and --<role>-passphrase-file for `roles`.
void AddPassphraseOptions(CLI::App* cmd, PassphraseSources& sources,
                          std::initializer_list<KeyRole> roles);

// The passphrase of `role` (see PassphraseSources). FailedPrecondition naming every way to give
// it if none is set; InvalidArgument for an empty file, FailedPrecondition for an unreadable one.
Result<crypto::Secret> ReadPassphrase(PassphraseSources& sources, KeyRole role);
// Whether any source gives a passphrase for `role` (ReadPassphrase would not say "no
// passphrase"); reads nothing.
bool HasPassphrase(const PassphraseSources& sources, KeyRole role);

// A duration as operators write it: a whole number and a unit s, m, h, d or w ("30d", "12h",
// "2w"), at most a century. `option` names the flag in the error.
Result<std::chrono::seconds> ParseDuration(std::string_view option, const std::string& text);

// --store URL for a command that opens the store: overrides [store] url of iotpki.toml
// (sqlite:PATH or postgresql://..., store/open.h).
void AddStoreOption(CLI::App* cmd, std::string& url);

// Who runs the command, for audit rows: "cli:" and $USER, else the numeric uid.
std::string Actor();

// Command groups, one file each.
void AddCaCommands(CLI::App& app);     // ca init, ca show
void AddCertCommands(CLI::App& app);   // cert issue
void AddAuditCommands(CLI::App& app);  // audit verify, head, checkpoint
void AddCrlCommands(CLI::App& app);    // crl export
void AddC509Commands(CLI::App& app);   // c509 encode/decode/show/verify
void AddServeCommands(CLI::App& app);  // serve

// Manufacturing and inventory (mfg/, over the store).
void AddMfgCommands(CLI::App& app);       // mfg provision
void AddDeviceCommands(CLI::App& app);    // device ls, show, count
void AddStoreCommands(CLI::App& app);     // store migrate
void AddCampaignCommands(CLI::App& app);  // campaign create, ls, status, pause, ...
// cert revoke, cert ls --revoked, device decommission; after AddCertCommands and
// AddDeviceCommands, whose groups it extends.
void AddRevocationCommands(CLI::App& app);
// admin init, admin issue: the dashboard's admin CA and operator certificates.
void AddAdminCommands(CLI::App& app);
// compliance report: evidence for an IoT security standard (admin/compliance.h).
void AddComplianceCommands(CLI::App& app);
// The admin CA in `dir` (admin::InitAdminCa with the CA's organization and an audit row), its key
// under `passphrase` (the operational CA's); returns its subject. ca init and admin init.
Result<std::string> CreateAdminCa(const std::string& dir, std::string_view passphrase,
                                  const std::string& store_url);

// Exit codes: 0 success, 1 the operation failed, 2 bad usage or invalid input.
int Main(int argc, char** argv);

}  // namespace iotpki::cli
