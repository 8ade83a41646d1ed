// The batch manifest for the factory's MES: OUT/manifest.jsonl, one JSON object per line and
// per finished device, in the order devices finished:
//
//   {"serial":"TH-000001","device_id":"<64 hex>","hardware_fingerprint":"<hex>","model":"TH-100",
//    "cert_serial":"<32 hex>","not_after":"9999-12-31T23:59:59Z","sha256":"<64 hex>"}
//
// (one line each; wrapped here), plus "c509_sha256":"<64 hex>" last for a --c509 batch. sha256 is
// over the certificate's DER. A device is listed only
// once its store row is committed and its folder (if bundles are written) is durable, so the
// manifest is the list of devices the factory may ship.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <unordered_set>
#include <vector>

#include "iotpki/common/error.h"
#include "iotpki/common/file.h"
#include "iotpki/store/store.h"

namespace iotpki::mfg {

struct ManifestEntry {
  std::string serial;
  std::string device_id;
  std::string hardware_fingerprint;  // lowercase hex
  std::string model;
  std::string cert_serial;  // lowercase hex
  int64_t not_after = 0;    // Unix seconds; written as RFC 3339 UTC
  std::string sha256;       // lowercase hex of SHA-256 over the certificate DER
  // --c509 only (else empty, and absent from the line): lowercase hex of SHA-256 over cert.c509,
  // the C509Certificate; also the certificate's c5t thumbprint with SHA-256.
  std::string c509_sha256;
  // --secure-element only (else empty and absent): the device key's URI in the token.
  std::string key_uri;

  bool operator==(const ManifestEntry&) const = default;
};

std::string ToJsonLine(const ManifestEntry& entry);  // without the newline
// InvalidArgument for a line that is not such an object.
Result<ManifestEntry> ParseJsonLine(std::string_view line);

// What VerifyManifest found: the audit log's mfg.issue rows for the manifest's groups, and the
// manifest lines they cover (every line, when it succeeds).
struct ManifestAudit {
  size_t groups = 0;
  size_t devices = 0;
};

// Checks a manifest against the audit log (`iotpki audit verify --manifest`). Every mfg.issue row
// whose first_serial the manifest lists must match the lines from there on: `devices` lines, the
// last with `last_serial`, hashing (each with its newline) to `manifest_sha256`; and every line
// must be in such a group. Rows of other batches are skipped. Reads the manifest once, holding
// one group's lines. DataLoss naming the first line (1-based) or row that does not match;
// NotFound if there is no manifest. Does not verify the chain itself (store::VerifyAuditChain).
Result<ManifestAudit> VerifyManifest(store::Store& store, const std::filesystem::path& path);

// Append-only. Move-only; closes its file when destroyed.
class Manifest {
 public:
  // Opens (creating) the manifest and reads the serials it lists into `listed`. A last line
  // without its newline, which only a crash in the middle of an append leaves, is cut off
  // (those devices are finished again by --resume). DataLoss naming the line for a complete line
  // that does not parse, or a serial listed twice.
  static Result<Manifest> Open(const std::filesystem::path& path,
                               std::unordered_set<std::string>* listed);

  Manifest(Manifest&& other) noexcept = default;
  Manifest& operator=(Manifest&&) = delete;

  // Appends the lines in one write(2) and fdatasyncs. On a failure the file may hold part of the
  // lines (the next Open cuts an unterminated tail); the caller stops.
  Result<void> Append(const std::vector<ManifestEntry>& entries);
  // The same for lines already rendered: ToJsonLine's, each followed by its newline.
  Result<void> Append(std::string_view lines);

 private:
  Manifest(std::filesystem::path path, Fd fd) : path_(std::move(path)), fd_(std::move(fd)) {}
  std::filesystem::path path_;
  Fd fd_;
};

}  // namespace iotpki::mfg
