#include "iotpki/cli/cli.h"

#include <dlfcn.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <vector>

#include "iotpki/common/file.h"

namespace iotpki::cli {
namespace {

// The action of the chosen subcommand, set by its callback while CLI11 parses.
Action& Chosen() {
  static Action action;
  return action;
}

}  // namespace

void SetAction(CLI::App* sub, Action action) {
  sub->callback([action = std::move(action)]() { Chosen() = action; });
}

void AddStoreOption(CLI::App* cmd, std::string& url) {
  cmd->add_option("--store", url,
                  "Store URL, instead of [store] url in iotpki.toml: sqlite:PATH or "
                  "postgresql://HOST/DATABASE");
}

std::string Actor() {
  const char* user = std::getenv("USER");
  return std::string("cli:") + (user != nullptr ? user : std::to_string(::getuid()));
}

Result<std::string> ReadPassphrase(const std::string& passphrase_file) {
  if (!passphrase_file.empty()) {
    auto text = ReadTextFile(passphrase_file, 4096);
    if (!text) return Fail(std::move(text).error().Context("reading --passphrase-file"));
    std::string line = text->substr(0, text->find('\n'));
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) {
      return Fail(Code::kInvalidArgument, "--passphrase-file " + passphrase_file + " is empty");
    }
    return line;
  }
  const char* env = std::getenv("IOTPKI_PASSPHRASE");
  if (env != nullptr && *env != '\0') return std::string(env);
  return Fail(Code::kFailedPrecondition,
              "no CA passphrase: set IOTPKI_PASSPHRASE or pass --passphrase-file FILE");
}

namespace {

// The allocator the process runs on: jemalloc when the command was linked with it
// (apps/iotpki/CMakeLists.txt) or it was preloaded, else the C library's.
std::string Allocator() {
  using Mallctl = int (*)(const char*, void*, size_t*, void*, size_t);
  if (auto mallctl = reinterpret_cast<Mallctl>(dlsym(RTLD_DEFAULT, "mallctl"))) {
    const char* version = nullptr;
    size_t len = sizeof version;
    if (mallctl("version", &version, &len, nullptr, 0) == 0 && version != nullptr) {
      return std::string("jemalloc ") + version;
    }
  }
  return "libc";
}

}  // namespace

int Main(int argc, char** argv) {
  CLI::App app{"iotpki: certificate authority and device lifecycle for IoT fleets", "iotpki"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "iotpki 0.1.0 (malloc: " + Allocator() + ")");
  AddCaCommands(app);
  AddCertCommands(app);
  AddAuditCommands(app);
  AddCrlCommands(app);
  AddC509Commands(app);
  AddServeCommands(app);
  AddMfgCommands(app);
  AddDeviceCommands(app);
  AddStoreCommands(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    // One line: what is wrong, and where to look.
    std::cerr << "iotpki: " << e.what() << " (see iotpki --help)\n";
    return 2;
  }
  if (!Chosen()) {
    std::cerr << "iotpki: choose a subcommand (see iotpki --help)\n";
    return 2;
  }
  Result<void> result;
  try {
    result = Chosen()();
  } catch (const std::exception& e) {
    std::cerr << "iotpki: internal error: " << e.what() << "\n";
    return 1;
  }
  if (!result) {
    const Error& e = result.error();
    std::string line = e.message();
    // The operator runs the CLI on the CA's own machine; the detail helps and holds no secret,
    // but stays on the same line.
    if (!e.detail().empty() && e.code() != Code::kUnauthenticated) line += " (" + e.detail() + ")";
    for (char& c : line) {
      if (c == '\n' || c == '\r') c = ' ';
    }
    std::cerr << "iotpki: " << line << "\n";
    return e.code() == Code::kInvalidArgument ? 2 : 1;
  }
  return 0;
}

}  // namespace iotpki::cli
