// Opening a store by URL: the one place that knows which backends exist.
//
//   sqlite:PATH, or a bare PATH     the embedded SQLite store (a relative PATH is resolved
//                                   against OpenOptions::base_dir, the CA directory)
//   postgresql://... postgres://... a PostgreSQL database (libpq connection URI, several
//                                   hosts allowed: postgresql://h1,h2/iotpki?target_session_attrs=
//                                   read-write)
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

#include "iotpki/common/clock.h"
#include "iotpki/common/error.h"
#include "iotpki/store/postgres/pg_store.h"
#include "iotpki/store/sqlite/sqlite_store.h"
#include "iotpki/store/store.h"

namespace iotpki::store {

struct OpenOptions {
  SqliteOptions sqlite;
  PostgresOptions postgres;
  std::filesystem::path base_dir;
};

enum class BackendKind { kSqlite, kPostgres };

struct StoreUrl {
  BackendKind backend = BackendKind::kSqlite;
  std::string target;  // the SQLite path (not yet resolved), or the whole PostgreSQL URI
};

// InvalidArgument, with the forms accepted, for an empty URL, an empty SQLite path or another
// scheme.
Result<StoreUrl> ParseStoreUrl(std::string_view url);

// The URL for messages and logs: a PostgreSQL password is replaced by ***.
std::string RedactStoreUrl(std::string_view url);

// Opens (creating a SQLite file if needed) and migrates the store at `url`. Errors are those of
// the backend's open, with the redacted URL in the detail.
Result<std::unique_ptr<Store>> Open(std::string_view url, const Clock& clock,
                                    const OpenOptions& options = {});

}  // namespace iotpki::store
