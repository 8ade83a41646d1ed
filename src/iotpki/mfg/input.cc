#include "iotpki/mfg/input.h"

#include <toml++/toml.h>

#include <fstream>
#include <unordered_map>

#include "iotpki/ca/authority.h"
#include "iotpki/ca/config.h"
#include "iotpki/common/file.h"
#include "iotpki/common/strings.h"
#include "iotpki/crypto/primitives.h"
#include "iotpki/x509/profile.h"

namespace iotpki::mfg {
namespace {

std::vector<std::string_view> SplitFields(std::string_view line) {
  std::vector<std::string_view> fields;
  for (;;) {
    size_t comma = line.find(',');
    fields.push_back(Trim(line.substr(0, comma)));
    if (comma == std::string_view::npos) return fields;
    line.remove_prefix(comma + 1);
  }
}

// The serial names a folder in the output directory: x509's rule, plus no leading '.', which
// would make "." and ".." (and hidden names that clash with the bundle protocol's own).
Result<void> CheckSerial(std::string_view serial) {
  if (serial.empty()) return Fail(Code::kInvalidArgument, "empty serial");
  auto valid = x509::ValidateSerial(serial);
  if (!valid) {
    return Fail(Code::kInvalidArgument,
                "serial '" + std::string(serial.substr(0, 64)) + "': " + valid.error().message());
  }
  if (serial.front() == '.') {
    return Fail(Code::kInvalidArgument,
                "serial '" + std::string(serial) + "' starts with '.' (it names a folder)");
  }
  return {};
}

// Seen serials and fingerprints, for the duplicate checks.
class Seen {
 public:
  Result<void> Add(const DeviceInput& d) {
    auto [s, new_serial] = serials_.emplace(ToLowerAscii(d.serial), d.origin);
    if (!new_serial) {
      return Fail(Code::kInvalidArgument, "serial '" + d.serial + "' repeats " + s->second +
                                              " (serials must be unique, ignoring case)");
    }
    if (!d.generated) {
      auto [f, new_fp] = fingerprints_.emplace(ToHex(d.hardware_fingerprint), d.origin);
      if (!new_fp) {
        return Fail(Code::kInvalidArgument,
                    "hardware fingerprint " + f->first + " repeats " + f->second);
      }
    }
    return {};
  }

 private:
  std::unordered_map<std::string, std::string> serials_;
  std::unordered_map<std::string, std::string> fingerprints_;
};

}  // namespace

Result<MfgConfig> LoadMfgConfig(const std::filesystem::path& ca_dir) {
  auto file = ca_dir / ca::kConfigFile;
  IOTPKI_TRY(std::string text, ReadTextFile(file, 1 << 20));
  MfgConfig config;
  toml::table t;
  // Debian's toml++ is built with exceptions; they stop here.
  try {
    t = toml::parse(text, file.string());
  } catch (const toml::parse_error& err) {
    return Fail(Code::kInvalidArgument, file.string() + ": line " +
                                            std::to_string(err.source().begin.line) + ": " +
                                            std::string(err.description()));
  }
  auto node = t.at_path("mfg.models");
  if (!node) return config;
  auto* list = node.as_array();
  if (list == nullptr) {
    return Fail(Code::kInvalidArgument, file.string() + ": mfg.models must be an array");
  }
  for (const auto& e : *list) {
    auto v = e.value<std::string>();
    if (!v) return Fail(Code::kInvalidArgument, file.string() + ": mfg.models must hold strings");
    auto ok = ValidateName("model", *v);
    if (!ok) return Fail(std::move(ok).error().Context(file.string() + ": mfg.models"));
    config.models.push_back(*v);
  }
  if (config.models.empty()) {
    return Fail(Code::kInvalidArgument,
                file.string() + ": mfg.models is empty (remove it to accept any model)");
  }
  return config;
}

Result<void> ValidateName(std::string_view what, std::string_view name) {
  if (name.empty()) return Fail(Code::kInvalidArgument, "empty " + std::string(what));
  if (name.size() > 64) {
    return Fail(Code::kInvalidArgument, std::string(what) + " is longer than 64 characters");
  }
  for (size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    bool alnum = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
    if (!(alnum || (i > 0 && (c == '.' || c == '_' || c == '-')))) {
      return Fail(Code::kInvalidArgument,
                  std::string(what) + " '" + std::string(name) +
                      "' is not 1 to 64 of A-Z a-z 0-9 . _ - starting with a letter or digit");
    }
  }
  return {};
}

Result<void> CheckModel(const MfgConfig& config, std::string_view model) {
  IOTPKI_CHECK(ValidateName("model", model));
  if (config.models.empty()) return {};
  for (const auto& m : config.models) {
    if (m == model) return {};
  }
  std::string known;
  for (const auto& m : config.models) known += (known.empty() ? "" : ", ") + m;
  return Fail(Code::kInvalidArgument, "unknown model '" + std::string(model) +
                                          "' (iotpki.toml [mfg] models: " + known + ")");
}

Result<std::vector<DeviceInput>> ReadSerialsCsv(const std::filesystem::path& path,
                                                std::string_view default_model,
                                                const MfgConfig& config) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return Fail(Code::kInvalidArgument, "cannot read --serials " + path.string());
  }
  std::string name = path.filename().string();
  std::vector<DeviceInput> out;
  Seen seen;
  std::string line;
  size_t number = 0;
  bool first_data_line = true;
  while (std::getline(in, line)) {
    ++number;
    std::string_view text = line;
    if (number == 1 && text.substr(0, 3) == "\xEF\xBB\xBF") text.remove_prefix(3);  // UTF-8 BOM
    text = Trim(text);
    if (text.empty() || text.front() == '#') continue;
    std::string where = name + " line " + std::to_string(number);
    auto at = [&](Error e) { return Fail(std::move(e).Context(where)); };
    auto fields = SplitFields(text);
    if (first_data_line && ToLowerAscii(fields[0]) == "serial") {
      first_data_line = false;
      continue;
    }
    first_data_line = false;
    if (text.find('"') != std::string_view::npos) {
      return at(Error(Code::kInvalidArgument, "quoted fields are not supported"));
    }
    if (fields.size() < 2 || fields.size() > 3) {
      return at(Error(Code::kInvalidArgument, "expected serial,fingerprint[,model] but found " +
                                                  std::to_string(fields.size()) + " field(s)"));
    }
    DeviceInput d{.origin = where, .serial = std::string(fields[0])};
    if (auto ok = CheckSerial(d.serial); !ok) return at(std::move(ok).error());
    auto fp = ca::ParseFingerprint(fields[1]);
    if (!fp) return at(std::move(fp).error());
    d.hardware_fingerprint = std::move(*fp);
    d.model = std::string(fields.size() == 3 && !fields[2].empty() ? fields[2] : default_model);
    if (d.model.empty()) {
      return at(Error(Code::kInvalidArgument, "empty model (give --model or a third column)"));
    }
    if (auto ok = CheckModel(config, d.model); !ok) return at(std::move(ok).error());
    d.device_id = x509::ComputeDeviceId(d.serial, d.hardware_fingerprint);
    if (auto ok = seen.Add(d); !ok) return at(std::move(ok).error());
    out.push_back(std::move(d));
  }
  if (in.bad()) return Fail(Code::kDataLoss, "error reading --serials " + path.string());
  if (out.empty()) {
    return Fail(Code::kInvalidArgument, "--serials " + path.string() + " lists no device");
  }
  return out;
}

Result<std::vector<DeviceInput>> GenerateSerials(size_t count, std::string_view prefix,
                                                 std::string_view model, const MfgConfig& config) {
  if (count == 0 || count > kMaxGeneratedCount) {
    return Fail(Code::kInvalidArgument,
                "--count must be 1 to " + std::to_string(kMaxGeneratedCount));
  }
  if (model.empty()) return Fail(Code::kInvalidArgument, "empty model (give --model)");
  IOTPKI_CHECK(CheckModel(config, model));
  size_t width = std::max<size_t>(6, std::to_string(count).size());
  std::string widest = std::string(prefix) + std::string(width, '9');
  if (auto ok = CheckSerial(widest); !ok) {
    return Fail(std::move(ok).error().Context("--serial-prefix '" + std::string(prefix) + "'"));
  }
  std::vector<DeviceInput> out;
  out.reserve(count);
  for (size_t i = 1; i <= count; ++i) {
    std::string digits = std::to_string(i);
    DeviceInput d{.origin = "device " + digits,
                  .serial = std::string(prefix) + std::string(width - digits.size(), '0') + digits,
                  .hardware_fingerprint = crypto::RandomBytes(16),
                  .model = std::string(model),
                  .generated = true};
    d.device_id = x509::ComputeDeviceId(d.serial, d.hardware_fingerprint);
    out.push_back(std::move(d));
  }
  return out;
}

}  // namespace iotpki::mfg
