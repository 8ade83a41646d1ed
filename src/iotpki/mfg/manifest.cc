#include "iotpki/mfg/manifest.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <unordered_map>

#include "iotpki/common/clock.h"
#include "iotpki/common/file.h"
#include "iotpki/crypto/primitives.h"
#include "iotpki/mfg/output_dir.h"

namespace iotpki::mfg {
namespace {

Result<int64_t> ParseUtc(const std::string& text) {
  std::tm tm{};
  const char* end = strptime(text.c_str(), "%Y-%m-%dT%H:%M:%SZ", &tm);
  if (end == nullptr || *end != '\0') {
    return Fail(Code::kInvalidArgument, "not_after '" + text + "' is not RFC 3339 UTC");
  }
  return static_cast<int64_t>(timegm(&tm));
}

// Printable ASCII other than '"' and '\\' stands for itself in a JSON string.
bool Plain(std::string_view s) {
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return c >= 0x20 && c < 0x7f && c != '"' && c != '\\'; });
}

}  // namespace

std::string ToJsonLine(const ManifestEntry& e) {
  std::string not_after = FormatUtc(e.not_after);
  if (!(Plain(e.serial) && Plain(e.device_id) && Plain(e.hardware_fingerprint) && Plain(e.model) &&
        Plain(e.cert_serial) && Plain(not_after) && Plain(e.sha256) && Plain(e.c509_sha256) &&
        Plain(e.key_uri))) {
    nlohmann::ordered_json j{{"serial", e.serial},
                             {"device_id", e.device_id},
                             {"hardware_fingerprint", e.hardware_fingerprint},
                             {"model", e.model},
                             {"cert_serial", e.cert_serial},
                             {"not_after", not_after},
                             {"sha256", e.sha256}};
    if (!e.c509_sha256.empty()) j["c509_sha256"] = e.c509_sha256;
    if (!e.key_uri.empty()) j["key_uri"] = e.key_uri;
    return j.dump();
  }
  // A line per device, millions per batch: when no field needs escaping, written directly, byte
  // for byte what the dump above writes (manifest_test compares the two).
  std::string line;
  line.reserve(300 + e.serial.size() + e.model.size() + e.hardware_fingerprint.size());
  auto field = [&line](std::string_view name, std::string_view value) {
    line += line.empty() ? "{\"" : ",\"";
    line += name;
    line += "\":\"";
    line += value;
    line += '"';
  };
  field("serial", e.serial);
  field("device_id", e.device_id);
  field("hardware_fingerprint", e.hardware_fingerprint);
  field("model", e.model);
  field("cert_serial", e.cert_serial);
  field("not_after", not_after);
  field("sha256", e.sha256);
  if (!e.c509_sha256.empty()) field("c509_sha256", e.c509_sha256);
  if (!e.key_uri.empty()) field("key_uri", e.key_uri);
  line += '}';
  return line;
}

Result<ManifestEntry> ParseJsonLine(std::string_view line) {
  auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return Fail(Code::kInvalidArgument, "not a JSON object");
  ManifestEntry e;
  for (auto [name, field] : {std::pair{"serial", &e.serial},
                             {"device_id", &e.device_id},
                             {"hardware_fingerprint", &e.hardware_fingerprint},
                             {"model", &e.model},
                             {"cert_serial", &e.cert_serial},
                             {"sha256", &e.sha256}}) {
    auto it = j.find(name);
    if (it == j.end() || !it->is_string()) {
      return Fail(Code::kInvalidArgument, std::string("missing string field \"") + name + "\"");
    }
    *field = it->get<std::string>();
  }
  auto na = j.find("not_after");
  if (na == j.end() || !na->is_string()) {
    return Fail(Code::kInvalidArgument, "missing string field \"not_after\"");
  }
  IOTPKI_TRY(e.not_after, ParseUtc(na->get<std::string>()));
  if (auto c5 = j.find("c509_sha256"); c5 != j.end()) {
    if (!c5->is_string()) return Fail(Code::kInvalidArgument, "\"c509_sha256\" is not a string");
    e.c509_sha256 = c5->get<std::string>();
  }
  if (auto k = j.find("key_uri"); k != j.end()) {
    if (!k->is_string()) return Fail(Code::kInvalidArgument, "\"key_uri\" is not a string");
    e.key_uri = k->get<std::string>();
  }
  return e;
}

namespace {

// One mfg.issue row, as VerifyManifest needs it.
struct AuditedGroup {
  int64_t seq;
  size_t devices;
  std::string last_serial;
  std::string manifest_sha256;
};

// The mfg.issue rows by first_serial. A row of another batch may share a first serial with this
// manifest's only if serials were reused across batches, which provisioning refuses.
Result<std::unordered_map<std::string, AuditedGroup>> ReadGroups(store::Store& store) {
  std::unordered_map<std::string, AuditedGroup> groups;
  int64_t from = 1;
  for (;;) {
    IOTPKI_TRY(auto rows, store.ReadAudit(from, store::kMaxPageSize));
    for (const auto& row : rows) {
      if (row.action != "mfg.issue") continue;
      auto details = nlohmann::json::parse(row.details, nullptr, /*allow_exceptions=*/false);
      std::string where = "audit row " + std::to_string(row.seq);
      if (!details.is_object() || !details["devices"].is_number_unsigned() ||
          !details["first_serial"].is_string() || !details["last_serial"].is_string() ||
          !details["manifest_sha256"].is_string() || details["devices"].get<size_t>() == 0) {
        return Fail(Code::kDataLoss, where + " (mfg.issue) does not describe a group");
      }
      groups[details["first_serial"].get<std::string>()] = AuditedGroup{
          row.seq, details["devices"].get<size_t>(), details["last_serial"].get<std::string>(),
          details["manifest_sha256"].get<std::string>()};
    }
    if (rows.size() < store::kMaxPageSize) return groups;
    from = rows.back().seq + 1;
  }
}

}  // namespace

Result<ManifestAudit> VerifyManifest(store::Store& store, const std::filesystem::path& path) {
  std::error_code ec;
  std::ifstream in;
  if (std::filesystem::is_regular_file(path, ec)) in.open(path, std::ios::binary);
  if (!in.is_open()) {
    return Fail(Code::kNotFound, "cannot read the manifest " + path.string() +
                                     " (give the batch's OUT/manifest.jsonl)");
  }
  IOTPKI_TRY(auto groups, ReadGroups(store));
  ManifestAudit result;
  std::optional<AuditedGroup> open;  // the group the current line belongs to
  size_t open_at = 0;                // its first line
  std::string lines;                 // its lines so far, each with its newline
  std::string line;
  size_t number = 0;
  auto at = [&](size_t n) { return "manifest line " + std::to_string(n); };
  while (std::getline(in, line)) {
    ++number;
    if (in.eof()) {
      return Fail(Code::kDataLoss, at(number) +
                                       " has no newline: an append was interrupted "
                                       "(finish the batch with mfg provision --resume)");
    }
    auto entry = ParseJsonLine(line);
    if (!entry) return Fail(Code::kDataLoss, at(number) + ": " + entry.error().message());
    if (!open) {
      // Taken out of the map: a group matches once.
      auto found = groups.find(entry->serial);
      if (found == groups.end()) {
        return Fail(Code::kDataLoss, at(number) + " (serial '" + entry->serial +
                                         "') begins no group of the audit log's mfg.issue rows");
      }
      open = std::move(found->second);
      groups.erase(found);
      open_at = number;
      lines.clear();
    }
    lines += line;
    lines += '\n';
    if (number - open_at + 1 < open->devices) continue;
    std::string row = "audit row " + std::to_string(open->seq);
    if (entry->serial != open->last_serial) {
      return Fail(Code::kDataLoss, at(number) + " (serial '" + entry->serial + "') should be '" +
                                       open->last_serial + "', the last of " + row);
    }
    if (ToHex(crypto::Sha256(AsBytes(lines))) != open->manifest_sha256) {
      return Fail(Code::kDataLoss, "manifest lines " + std::to_string(open_at) + " to " +
                                       std::to_string(number) + " do not hash to " + row +
                                       "'s manifest_sha256: they were changed");
    }
    ++result.groups;
    result.devices += open->devices;
    open.reset();
  }
  if (in.bad()) {
    return Fail(Code::kDataLoss,
                "reading the manifest failed after line " + std::to_string(number));
  }
  if (open) {
    return Fail(Code::kDataLoss, "the manifest ends inside the group of audit row " +
                                     std::to_string(open->seq) + " (from line " +
                                     std::to_string(open_at) + "): lines are missing");
  }
  return result;
}

Result<Manifest> Manifest::Open(const std::filesystem::path& path,
                                std::unordered_set<std::string>* listed) {
  Fd owned(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
  if (!owned.valid()) return Fail(FileError("cannot open", path, errno));
  int fd = owned.get();
  Manifest m(path, std::move(owned));
  // Files of hundreds of MB (10M devices) are read in one piece: the serial set is as large.
  IOTPKI_TRY(std::string text, ReadTextFile(path, size_t{4} << 30));
  size_t complete = text.rfind('\n');
  complete = complete == std::string::npos ? 0 : complete + 1;
  if (complete != text.size()) {
    if (::ftruncate(fd, static_cast<off_t>(complete)) != 0 || ::fdatasync(fd) != 0) {
      return Fail(FileError("cannot cut the unfinished last line of", path, errno));
    }
  }
  size_t pos = 0, number = 0;
  while (pos < complete) {
    size_t nl = text.find('\n', pos);
    std::string_view line(text.data() + pos, nl - pos);
    pos = nl + 1;
    ++number;
    auto entry = ParseJsonLine(line);
    if (!entry) {
      return Fail(Code::kDataLoss, path.string() + " line " + std::to_string(number) + ": " +
                                       entry.error().message());
    }
    if (listed != nullptr && !listed->insert(entry->serial).second) {
      return Fail(Code::kDataLoss, path.string() + " line " + std::to_string(number) + ": serial " +
                                       entry->serial + " is listed twice");
    }
  }
  if (::lseek(fd, 0, SEEK_END) < 0) return Fail(FileError("cannot seek", path, errno));
  return m;
}

Result<void> Manifest::Append(const std::vector<ManifestEntry>& entries) {
  std::string text;
  for (const auto& e : entries) {
    text += ToJsonLine(e);
    text += '\n';
  }
  return Append(std::string_view(text));
}

Result<void> Manifest::Append(std::string_view text) {
  size_t done = 0;
  while (done < text.size()) {
    ssize_t n = ::write(fd_.get(), text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Fail(FileError("cannot append to", path_, n < 0 ? errno : EIO));
    done += static_cast<size_t>(n);
  }
  if (::fdatasync(fd_.get()) != 0) return Fail(FileError("cannot flush", path_, errno));
  return {};
}

}  // namespace iotpki::mfg
