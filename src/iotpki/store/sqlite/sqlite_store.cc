#include "iotpki/store/sqlite/sqlite_store.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "iotpki/store/sqlite/sqlite_db.h"
#include "iotpki/store/sqlite/sqlite_schema.h"

namespace iotpki::store {

using sqlite::Connection;

namespace {

constexpr std::string_view kMemoryPath = ":memory:";

Result<void> CreateOwnerOnlyFile(const std::filesystem::path& path) {
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    int err = errno;
    std::string detail = path.string() + ": " + std::strerror(err);
    if (err == EACCES || err == EPERM || err == EROFS) {
      return Fail(Code::kPermissionDenied, "cannot create the database file", detail);
    }
    return Fail(Code::kFailedPrecondition, "cannot create the database file", detail);
  }
  ::close(fd);
  return {};
}

Result<std::string> QueryText(Connection& conn, std::string_view sql) {
  IOTPKI_TRY(auto stmt, conn.PrepareUncached(sql));
  IOTPKI_TRY(bool row, stmt->Step());
  return row ? stmt->Text(0) : std::string();
}

// The connection that carries every write, its pragmas set, the schema brought up to date.
Result<std::unique_ptr<Connection>> OpenWriter(const std::string& path, bool memory,
                                               const SqliteOptions& options, int64_t now) {
  if (!memory) IOTPKI_CHECK(CreateOwnerOnlyFile(path));
  IOTPKI_TRY(auto writer,
             Connection::Open(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                                        SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_PRIVATECACHE));
  sqlite3_busy_timeout(writer->handle(), options.busy_timeout_ms);
  IOTPKI_CHECK(writer->Exec("PRAGMA foreign_keys = ON; PRAGMA trusted_schema = OFF"));
  IOTPKI_TRY(std::string fk, QueryText(*writer, "PRAGMA foreign_keys"));
  if (fk != "1") {
    return Fail(Code::kFailedPrecondition, "this SQLite cannot enforce foreign keys");
  }
  IOTPKI_TRY(std::string mode, QueryText(*writer, "PRAGMA journal_mode = WAL"));
  if (mode != (memory ? "memory" : "wal")) {
    return Fail(Code::kFailedPrecondition, "cannot switch the database to WAL mode",
                "journal_mode is " + mode);
  }
  IOTPKI_CHECK(writer->Exec(options.synchronous == SqliteOptions::Synchronous::kFull
                                ? "PRAGMA synchronous = FULL"
                                : "PRAGMA synchronous = NORMAL"));
  IOTPKI_CHECK(writer->Exec("PRAGMA cache_size = -" + std::to_string(options.writer_cache_kib)));
  IOTPKI_CHECK(writer->Exec("PRAGMA wal_autocheckpoint = " +
                            std::to_string(options.wal_autocheckpoint_pages)));
  IOTPKI_CHECK(sqlite::Migrate(*writer, now));
  return writer;
}

Result<std::unique_ptr<sql::Connection>> OpenReader(const std::string& path,
                                                    const SqliteOptions& options) {
  IOTPKI_TRY(auto conn, Connection::Open(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX |
                                                   SQLITE_OPEN_PRIVATECACHE));
  sqlite3_busy_timeout(conn->handle(), options.busy_timeout_ms);
  IOTPKI_CHECK(conn->Exec("PRAGMA query_only = ON; PRAGMA trusted_schema = OFF"));
  IOTPKI_CHECK(conn->Exec("PRAGMA cache_size = -" + std::to_string(options.reader_cache_kib)));
  return std::unique_ptr<sql::Connection>(std::move(conn));
}

}  // namespace

SqliteStore::SqliteStore(const Clock& clock, std::unique_ptr<sql::Pool> pool)
    : SqlStore(clock, std::move(pool)) {}
SqliteStore::~SqliteStore() = default;

Result<std::unique_ptr<SqliteStore>> SqliteStore::Open(const std::filesystem::path& path,
                                                       const Clock& clock,
                                                       const SqliteOptions& options) {
  std::string file = path.string();
  bool memory = file == kMemoryPath;
  auto writer = OpenWriter(file, memory, options, clock.NowUnix());
  if (!writer) return Fail(std::move(writer).error().Context("opening the store"));
  // A private in-memory database cannot be shared: its one connection also serves the reads.
  sql::Pool::Opener open_reader;
  if (!memory) open_reader = [file, options] { return OpenReader(file, options); };
  auto pool = std::make_unique<sql::Pool>(std::move(*writer), nullptr, std::move(open_reader),
                                          options.max_idle_readers);
  return std::unique_ptr<SqliteStore>(new SqliteStore(clock, std::move(pool)));
}

Result<std::unique_ptr<Store>> OpenSqliteStore(const std::filesystem::path& path,
                                               const Clock& clock, const SqliteOptions& options) {
  IOTPKI_TRY(auto store, SqliteStore::Open(path, clock, options));
  return std::unique_ptr<Store>(std::move(store));
}

}  // namespace iotpki::store
