// Versioned schema migrations of the SQLite store. Private to the SQLite store.
#pragma once

#include <cstdint>

#include "iotpki/common/error.h"
#include "iotpki/store/sqlite/sqlite_db.h"

namespace iotpki::store::sqlite {

// Applies every migration newer than the database, each in its own IMMEDIATE transaction that
// re-reads the version first, so concurrent openers (two processes) apply each migration once.
// Idempotent: on an up-to-date database it only reads. FailedPrecondition if the database was
// written by a newer build (its version is above kLatestSchemaVersion); nothing is changed then.
Result<void> Migrate(Connection& conn, int64_t now);

}  // namespace iotpki::store::sqlite
