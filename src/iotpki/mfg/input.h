// The devices of a manufacturing batch as the factory supplies them (a CSV of serials and
// hardware fingerprints, or serials generated from a prefix), and the names a batch is filed
// under. Everything here is checked before the CA or the output directory is touched, so a bad
// input writes nothing.
#pragma once

#include <cstddef>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "iotpki/common/bytes.h"
#include "iotpki/common/error.h"

namespace iotpki::mfg {

// The `[mfg]` table of the CA's iotpki.toml. Optional: `ca init` does not write one.
//
//   [mfg]
//   models = ["TH-100", "CAM-2"]   # the only models `mfg provision` accepts
struct MfgConfig {
  // Empty when the file has no `[mfg] models` list: then any well-formed model name is accepted.
  std::vector<std::string> models;
};

// Reads `[mfg]` from DIR/iotpki.toml. InvalidArgument naming the key for a malformed table;
// ca::LoadConfig reports a missing or unparsable file first, so callers open the CA before this.
Result<MfgConfig> LoadMfgConfig(const std::filesystem::path& ca_dir);

// A model or batch name: 1 to 64 of A-Z a-z 0-9 '.' '_' '-', starting with a letter or digit.
// `what` names the field in the message ("model", "batch").
Result<void> ValidateName(std::string_view what, std::string_view name);
// ValidateName, then membership in `config.models` when that list is set. InvalidArgument:
// "empty model", "unknown model 'X' (iotpki.toml [mfg] models: A, B)".
Result<void> CheckModel(const MfgConfig& config, std::string_view model);

// One device of the batch, validated: a serial the x509 profile and a file system accept, a
// fingerprint of 1 to 64 bytes, a known model.
struct DeviceInput {
  // Where the device came from, for messages: "serials.csv line 7" or "device 7".
  std::string origin;
  std::string serial;
  Bytes hardware_fingerprint;
  std::string model;
  // x509::ComputeDeviceId(serial, hardware_fingerprint).
  std::string device_id;
  // True for --count: the fingerprint was drawn at random here and means nothing on resume.
  bool generated = false;
};

// Reads `serial,fingerprint_hex[,model]` lines. Blank lines and lines starting with '#' are
// skipped, as is a first line whose first field is "serial" (a header); fields are trimmed of
// spaces and tabs; quoting is not supported (no field may contain a comma). A row without a
// model takes `default_model`. Refused, naming the file and line: a wrong number of fields, an
// empty or malformed serial, a serial starting with '.', a fingerprint that is not hex, an
// empty or unknown model, and a serial (compared case-insensitively, since bundle folders are
// named by serial) or fingerprint that repeats an earlier line.
Result<std::vector<DeviceInput>> ReadSerialsCsv(const std::filesystem::path& path,
                                                std::string_view default_model,
                                                const MfgConfig& config);

// `count` serials: prefix followed by the 1-based index, zero-padded to at least 6 digits (the
// same list on every call, which is what --resume relies on), each with a random 16-byte
// hardware fingerprint. For lines whose devices have no readable unique id.
Result<std::vector<DeviceInput>> GenerateSerials(size_t count, std::string_view prefix,
                                                 std::string_view model, const MfgConfig& config);

// Longest batch GenerateSerials makes; ReadSerialsCsv is bounded only by memory.
inline constexpr size_t kMaxGeneratedCount = 100'000'000;

}  // namespace iotpki::mfg
