#include "iotpki/cli/cli.h"

#include <dlfcn.h>
#include <openssl/crypto.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <cstdint>
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

Result<std::chrono::seconds> ParseDuration(std::string_view option, const std::string& text) {
  auto bad = [&] {
    return Fail(Code::kInvalidArgument,
                std::string(option) + " '" + text +
                    "': expected a whole number and a unit s, m, h, d or w (e.g. 30d)");
  };
  if (text.size() < 2 || text.size() > 12) return bad();
  int64_t n = 0;
  for (size_t i = 0; i + 1 < text.size(); ++i) {
    if (text[i] < '0' || text[i] > '9') return bad();
    n = n * 10 + (text[i] - '0');
  }
  int64_t unit = 0;
  switch (text.back()) {
    case 's':
      unit = 1;
      break;
    case 'm':
      unit = 60;
      break;
    case 'h':
      unit = 3600;
      break;
    case 'd':
      unit = 86400;
      break;
    case 'w':
      unit = 7 * 86400;
      break;
    default:
      return bad();
  }
  // Beyond a century a window means "everything"; the bound keeps the arithmetic finite.
  if (n > int64_t{36500} * 86400 / unit) return bad();
  return std::chrono::seconds(n * unit);
}

std::string Actor() {
  const char* user = std::getenv("USER");
  return std::string("cli:") + (user != nullptr ? user : std::to_string(::getuid()));
}

namespace {

const char* RoleName(KeyRole role) {
  switch (role) {
    case KeyRole::kRoot:
      return "root";
    case KeyRole::kManufacturing:
      return "manufacturing";
    case KeyRole::kOperational:
      return "operational";
    case KeyRole::kBootstrap:
      return "bootstrap";
    case KeyRole::kAudit:
      return "audit";
  }
  return "unknown";
}

std::string RoleEnv(KeyRole role) {
  std::string name = RoleName(role);
  for (char& c : name) c = static_cast<char>(c - 'a' + 'A');
  return "IOTPKI_" + name + "_PASSPHRASE";
}

// The first line of `text`, without a trailing CR; `text` is wiped.
crypto::Secret PassphraseLine(std::string& text) {
  std::string line = text.substr(0, text.find('\n'));
  if (!line.empty() && line.back() == '\r') line.pop_back();
  OPENSSL_cleanse(text.data(), text.size());
  return crypto::Secret::Take(line);
}

Result<crypto::Secret> PassphraseFromFile(const std::string& path, const std::string& option) {
  auto text = ReadTextFile(path, 4096);
  if (!text) return Fail(std::move(text).error().Context("reading " + option));
  crypto::Secret line = PassphraseLine(*text);
  if (line.empty()) return Fail(Code::kInvalidArgument, option + " " + path + " is empty");
  return line;
}

Result<crypto::Secret> PassphraseFromFd(int fd) {
  std::string text;
  char buf[512];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      return Fail(Code::kFailedPrecondition, "cannot read --passphrase-fd " + std::to_string(fd) +
                                                 " (open it for reading, e.g. 3<passphrase.txt)");
    }
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
    if (text.find('\n') != std::string::npos || text.size() > 4096) break;
  }
  OPENSSL_cleanse(buf, sizeof buf);
  ::close(fd);
  crypto::Secret line = PassphraseLine(text);
  if (line.empty()) {
    return Fail(Code::kInvalidArgument,
                "--passphrase-fd " + std::to_string(fd) + " gave an empty passphrase");
  }
  return line;
}

}  // namespace

void AddPassphraseOptions(CLI::App* cmd, PassphraseSources& sources,
                          std::initializer_list<KeyRole> roles) {
  cmd->add_option("--passphrase-file", sources.file,
                  "File whose first line is the passphrase of every key without its own "
                  "(default: $IOTPKI_PASSPHRASE)");
  cmd->add_option("--passphrase-fd", sources.fd,
                  "Read that shared passphrase's first line from this open file descriptor")
      ->check(CLI::NonNegativeNumber);
  for (KeyRole role : roles) {
    std::string name = RoleName(role);
    cmd->add_option("--" + name + "-passphrase-file", sources.role_file[static_cast<int>(role)],
                    "File whose first line unlocks the " + name + " key (default: $" +
                        RoleEnv(role) + ", else the shared passphrase)");
  }
}

bool HasPassphrase(const PassphraseSources& sources, KeyRole role) {
  auto set = [](const char* env) { return env != nullptr && *env != '\0'; };
  return !sources.role_file[static_cast<int>(role)].empty() ||
         set(std::getenv(RoleEnv(role).c_str())) || !sources.file.empty() || sources.fd >= 0 ||
         sources.fd_cache.has_value() || set(std::getenv("IOTPKI_PASSPHRASE"));
}

Result<crypto::Secret> ReadPassphrase(PassphraseSources& sources, KeyRole role) {
  std::string name = RoleName(role);
  const std::string& own = sources.role_file[static_cast<int>(role)];
  if (!own.empty()) return PassphraseFromFile(own, "--" + name + "-passphrase-file");
  std::string env_name = RoleEnv(role);
  if (const char* env = std::getenv(env_name.c_str()); env != nullptr && *env != '\0') {
    return crypto::Secret::CopyOf(AsBytes(env));
  }
  if (!sources.file.empty() && sources.fd >= 0) {
    return Fail(Code::kInvalidArgument, "give --passphrase-file or --passphrase-fd, not both");
  }
  if (!sources.file.empty()) return PassphraseFromFile(sources.file, "--passphrase-file");
  if (sources.fd >= 0) {
    if (!sources.fd_cache) {
      IOTPKI_TRY(crypto::Secret s, PassphraseFromFd(sources.fd));
      sources.fd_cache = std::move(s);
    }
    return sources.fd_cache->Copy();
  }
  if (const char* env = std::getenv("IOTPKI_PASSPHRASE"); env != nullptr && *env != '\0') {
    return crypto::Secret::CopyOf(AsBytes(env));
  }
  return Fail(Code::kFailedPrecondition, "no passphrase for the " + name + " key: pass --" + name +
                                             "-passphrase-file FILE, " + "set " + env_name +
                                             ", or give the shared one (--passphrase-file, " +
                                             "--passphrase-fd or IOTPKI_PASSPHRASE)");
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
  AddCampaignCommands(app);
  AddStoreCommands(app);
  AddRevocationCommands(app);
  AddAdminCommands(app);
  AddComplianceCommands(app);
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
