#include "iotpki/store/open.h"

#include "iotpki/store/postgres/pg_db.h"

namespace iotpki::store {
namespace {

constexpr std::string_view kForms = "sqlite:PATH, a file path, or postgresql://HOST/DATABASE";

bool StartsWith(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

// The redacted URL in the detail (for the operator's logs), not in the message.
Error AtUrl(Error error, std::string_view url) {
  std::string detail = error.detail();
  if (!detail.empty()) detail += "; ";
  detail += "store " + RedactStoreUrl(url);
  return Error(error.code(), error.message(), std::move(detail));
}

}  // namespace

Result<StoreUrl> ParseStoreUrl(std::string_view url) {
  if (url.empty()) {
    return Fail(Code::kInvalidArgument, "the store URL is empty (use " + std::string(kForms) + ")");
  }
  if (StartsWith(url, "postgresql://") || StartsWith(url, "postgres://")) {
    return StoreUrl{BackendKind::kPostgres, std::string(url)};
  }
  if (StartsWith(url, "sqlite:")) {
    std::string_view path = url.substr(7);
    // sqlite:///abs/path, as some tools write file URLs.
    if (StartsWith(path, "//")) path.remove_prefix(2);
    if (path.empty()) {
      return Fail(Code::kInvalidArgument,
                  "the store URL 'sqlite:' names no file (use " + std::string(kForms) + ")");
    }
    return StoreUrl{BackendKind::kSqlite, std::string(path)};
  }
  if (size_t scheme = url.find("://"); scheme != std::string_view::npos) {
    return Fail(Code::kInvalidArgument, "store URL scheme '" + std::string(url.substr(0, scheme)) +
                                            "' is not supported (use " + std::string(kForms) + ")");
  }
  return StoreUrl{BackendKind::kSqlite, std::string(url)};
}

std::string RedactStoreUrl(std::string_view url) { return postgres::RedactUrl(url); }

Result<std::unique_ptr<Store>> Open(std::string_view url, const Clock& clock,
                                    const OpenOptions& options) {
  IOTPKI_TRY(StoreUrl parsed, ParseStoreUrl(url));
  if (parsed.backend == BackendKind::kPostgres) {
    auto store = OpenPostgresStore(parsed.target, clock, options.postgres);
    if (!store) return Fail(AtUrl(std::move(store).error(), url));
    return store;
  }
  std::filesystem::path path = parsed.target;
  if (path.is_relative() && path != ":memory:" && !options.base_dir.empty()) {
    path = options.base_dir / path;
  }
  return OpenSqliteStore(path, clock, options.sqlite);
}

}  // namespace iotpki::store
