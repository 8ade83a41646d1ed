// The `iotpki` command line. Each group of subcommands lives in its own file and registers
// itself on the root App; an action returns Result<void>, and Main turns an error into one line
// on stderr and a non-zero exit code. Only cli/ and apps/ include CLI11.
#pragma once

#include <functional>
#include <string>

#include "iotpki/common/error.h"

namespace CLI {
class App;
}

namespace iotpki::cli {

using Action = std::function<Result<void>()>;

// Runs `action` when `sub` is the chosen subcommand.
void SetAction(CLI::App* sub, Action action);

// The CA passphrase: the first line of `passphrase_file` if given, else $IOTPKI_PASSPHRASE.
// FailedPrecondition (with how to fix it) if neither is set.
Result<std::string> ReadPassphrase(const std::string& passphrase_file);

// --store URL for a command that opens the store: overrides [store] url of iotpki.toml
// (sqlite:PATH or postgresql://..., store/open.h).
void AddStoreOption(CLI::App* cmd, std::string& url);

// Who runs the command, for audit rows: "cli:" and $USER, else the numeric uid.
std::string Actor();

// Command groups, one file each.
void AddCaCommands(CLI::App& app);     // ca init, ca show
void AddCertCommands(CLI::App& app);   // cert issue
void AddAuditCommands(CLI::App& app);  // audit verify
void AddCrlCommands(CLI::App& app);    // crl export
void AddC509Commands(CLI::App& app);   // c509 encode/decode/show/verify
void AddServeCommands(CLI::App& app);  // serve

// Manufacturing and inventory (mfg/, over the store).
void AddMfgCommands(CLI::App& app);     // mfg provision
void AddDeviceCommands(CLI::App& app);  // device ls, show, count
void AddStoreCommands(CLI::App& app);   // store migrate

// Exit codes: 0 success, 1 the operation failed, 2 bad usage or invalid input.
int Main(int argc, char** argv);

}  // namespace iotpki::cli
