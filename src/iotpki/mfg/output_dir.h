// The output directory of a batch, and the file operations of its crash-safe protocol (see
// docs/manufacturing.md, "Crash safety"):
//
//   OUT/batch.json         what the batch is; written once, atomically and durably
//   OUT/manifest.jsonl     one line per finished device (manifest.h)
//   OUT/.lock              flock(2) held by the one run working on OUT
//   OUT/.partial/SERIAL/   a device folder being written; never holds a certificate that is not
//                          committed to the store
//   OUT/SERIAL/            a finished device folder, renamed from .partial/ as a whole, so a
//                          folder under its final name is always complete
//
// Files inside a device folder are written without an fsync each (an fsync costs milliseconds,
// a device several files); instead Sync() flushes the whole file system once per group, at the
// points where the protocol needs durability. A folder that is not yet durable is never listed
// in the manifest, and --resume rebuilds every folder the manifest does not list.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "iotpki/common/bytes.h"
#include "iotpki/common/error.h"
#include "iotpki/common/file.h"  // FileError

namespace iotpki::mfg {

// Folder and file names inside a device folder.
inline constexpr char kCertDer[] = "cert.der";
inline constexpr char kCertPem[] = "cert.pem";
inline constexpr char kCertC509[] = "cert.c509";  // with --c509
inline constexpr char kChainPem[] = "chain.pem";
inline constexpr char kBootstrapHex[] = "bootstrap.hex";
inline constexpr char kKeyPem[] = "key.pem";
inline constexpr char kBatchJson[] = "batch.json";
inline constexpr char kManifest[] = "manifest.jsonl";

// Creates or truncates `path` with exactly `mode` and writes `data`, without fsync (see above).
Result<void> WriteFileUnsynced(const std::filesystem::path& path, ByteView data, int mode);

// Move-only; releases the lock when destroyed (and the kernel does on a crash).
class OutputDir {
 public:
  // Creates OUT (and parents) if needed and takes the lock: FailedPrecondition if another run
  // holds it. `must_be_empty`: FailedPrecondition unless OUT is new or empty (a new batch never
  // mixes with old files).
  static Result<OutputDir> Open(const std::filesystem::path& out, bool must_be_empty);

  OutputDir(OutputDir&& other) noexcept = default;
  OutputDir& operator=(OutputDir&&) = delete;
  OutputDir(const OutputDir&) = delete;
  OutputDir& operator=(const OutputDir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path Partial(std::string_view serial) const;
  std::filesystem::path Final(std::string_view serial) const;

  // A fresh, empty .partial/SERIAL (a leftover from an earlier attempt is removed first).
  Result<void> MakePartial(std::string_view serial) const;
  // .partial/SERIAL -> SERIAL, atomically. AlreadyExists if SERIAL exists.
  Result<void> Publish(std::string_view serial) const;
  // SERIAL -> .partial/SERIAL, for --resume to check and complete a folder the manifest does not
  // list. NotFound if SERIAL does not exist.
  Result<void> Unpublish(std::string_view serial) const;
  Result<void> RemovePartial(std::string_view serial) const;
  // Serials with a folder under .partial/.
  Result<std::vector<std::string>> ListPartial() const;
  // Flushes the file system holding OUT (syncfs(2)): everything written so far is durable.
  Result<void> Sync() const;

 private:
  OutputDir(std::filesystem::path path, Fd lock_fd)
      : path_(std::move(path)), lock_fd_(std::move(lock_fd)) {}
  std::filesystem::path path_;
  Fd lock_fd_;  // holds the flock
};

}  // namespace iotpki::mfg
