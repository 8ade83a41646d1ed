#include "iotpki/store/postgres/pg_db.h"

#include <charconv>
#include <cstring>
#include <utility>

namespace iotpki::store::postgres {
namespace {

// Type OIDs of pg_type.h (server headers, not installed with libpq).
constexpr Oid kBoolOid = 16;
constexpr Oid kInt8Oid = 20;
constexpr Oid kInt2Oid = 21;
constexpr Oid kInt4Oid = 23;

struct ResultDeleter {
  void operator()(PGresult* r) const { PQclear(r); }
};
using ResultPtr = std::unique_ptr<PGresult, ResultDeleter>;

bool Ok(const PGresult* r) {
  ExecStatusType s = PQresultStatus(r);
  return s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK;
}

int64_t BigEndian(const char* p, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; ++i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  // Sign-extend 2- and 4-byte integers.
  if (n < 8 && n > 0 && (static_cast<uint8_t>(p[0]) & 0x80)) v |= ~uint64_t{0} << (8 * n);
  return static_cast<int64_t>(v);
}

}  // namespace

Error PgError(const PGresult* result, PGconn* conn, std::string_view what) {
  const char* state = result ? PQresultErrorField(result, PG_DIAG_SQLSTATE) : nullptr;
  std::string code = state ? state : "";
  std::string detail = std::string(what) + ": ";
  const char* text = result ? PQresultErrorMessage(result) : nullptr;
  detail += (text && *text) ? text : PQerrorMessage(conn);
  while (!detail.empty() && (detail.back() == '\n' || detail.back() == ' ')) detail.pop_back();
  if (!code.empty()) detail += " (SQLSTATE " + code + ")";
  auto cls = [&](std::string_view prefix) { return code.rfind(prefix, 0) == 0; };
  if (code.empty() || cls("08") || cls("57P") || code == "40001" || code == "40P01" ||
      code == "25006") {
    if (code.empty() && PQstatus(conn) != CONNECTION_BAD) {
      return Error(Code::kInternal, "database error", detail);
    }
    return Error(Code::kUnavailable,
                 code == "25006" ? "the database is read-only (a standby); try again later"
                                 : "the database is unavailable or busy; try again later",
                 detail);
  }
  if (code == "53100") return Error(Code::kResourceExhausted, "the database disk is full", detail);
  if (cls("53")) return Error(Code::kResourceExhausted, "the database is out of resources", detail);
  if (cls("28") || code == "42501") {
    return Error(Code::kPermissionDenied, "the database refused access", detail);
  }
  if (code == "XX001" || code == "XX002" || cls("58")) {
    return Error(Code::kDataLoss, "database I/O error or corruption", detail);
  }
  if (cls("23")) {
    return Error(Code::kFailedPrecondition, "a database constraint was violated", detail);
  }
  if (code == "3D000") {
    return Error(Code::kFailedPrecondition, "the database does not exist (create it first)",
                 detail);
  }
  if (cls("22"))
    return Error(Code::kInvalidArgument, "a value is not valid for the database", detail);
  return Error(Code::kInternal, "database error", detail);
}

std::string RedactUrl(std::string_view url) {
  std::string out(url);
  // user:password@ in the authority part.
  size_t scheme = out.find("://");
  if (scheme != std::string::npos) {
    size_t start = scheme + 3;
    size_t end = out.find_first_of("/?", start);
    if (end == std::string::npos) end = out.size();
    size_t at = out.rfind('@', end);
    if (at != std::string::npos && at >= start) {
      size_t colon = out.find(':', start);
      if (colon != std::string::npos && colon < at) out.replace(colon + 1, at - colon - 1, "***");
    }
  }
  // password=... among the query parameters.
  for (size_t pos = 0; (pos = out.find("password=", pos)) != std::string::npos;) {
    if (pos > 0 && out[pos - 1] != '?' && out[pos - 1] != '&') {
      pos += 9;
      continue;
    }
    size_t value = pos + 9;
    size_t end = out.find('&', value);
    out.replace(value, (end == std::string::npos ? out.size() : end) - value, "***");
    pos = value + 3;
  }
  return out;
}

std::string ToDollarParameters(std::string_view sql, int* count) {
  std::string out;
  out.reserve(sql.size() + 16);
  int next = 0;
  int highest = 0;
  char quote = 0;
  for (size_t i = 0; i < sql.size(); ++i) {
    char c = sql[i];
    if (quote != 0) {
      if (c == quote) quote = 0;
      out += c;
      continue;
    }
    if (c == '\'' || c == '"') {
      quote = c;
      out += c;
      continue;
    }
    if (c != '?') {
      out += c;
      continue;
    }
    size_t digits = i + 1;
    while (digits < sql.size() && sql[digits] >= '0' && sql[digits] <= '9') ++digits;
    int n = 0;
    if (digits > i + 1) {
      std::from_chars(sql.data() + i + 1, sql.data() + digits, n);
      i = digits - 1;
    } else {
      n = ++next;
    }
    highest = std::max(highest, n);
    out += '$';
    out += std::to_string(n);
  }
  *count = highest;
  return out;
}

Statement::Statement(Connection* conn, std::string name, std::string text, int param_count)
    : conn_(conn), name_(std::move(name)), text_(std::move(text)), params_(param_count) {}

Statement::~Statement() { PQclear(result_); }

Statement::Param* Statement::At(int index) {
  if (index < 1 || index > static_cast<int>(params_.size())) {
    if (!bad_index_) bad_index_ = index;
    return nullptr;
  }
  return &params_[index - 1];
}

void Statement::Bind(int index, int64_t value) {
  if (Param* p = At(index)) *p = Param{std::to_string(value), 0};
}

void Statement::Bind(int index, std::string_view text) {
  if (Param* p = At(index)) *p = Param{std::string(text), 0};
}

void Statement::Bind(int index, ByteView blob) {
  if (Param* p = At(index)) {
    *p = Param{std::string(reinterpret_cast<const char*>(blob.data()), blob.size()), 1};
  }
}

void Statement::BindNull(int index) {
  if (Param* p = At(index)) *p = Param{};
}

Result<void> Statement::Execute() {
  PGconn* pg = conn_->handle();
  if (bad_index_) {
    return Fail(Code::kInternal, "database error",
                "binding parameter " + std::to_string(*bad_index_) + " of " + text_);
  }
  if (!name_.empty() && !prepared_) {
    ResultPtr prep(PQprepare(pg, name_.c_str(), text_.c_str(), 0, nullptr));
    if (!Ok(prep.get())) return Fail(PgError(prep.get(), pg, text_));
    prepared_ = true;
  }
  std::vector<const char*> values(params_.size());
  std::vector<int> lengths(params_.size());
  std::vector<int> formats(params_.size());
  for (size_t i = 0; i < params_.size(); ++i) {
    const Param& p = params_[i];
    values[i] = p.value ? p.value->data() : nullptr;
    lengths[i] = p.value ? static_cast<int>(p.value->size()) : 0;
    formats[i] = p.format;
  }
  int n = static_cast<int>(params_.size());
  result_ = name_.empty() ? PQexecParams(pg, text_.c_str(), n, nullptr, values.data(),
                                         lengths.data(), formats.data(), 1)
                          : PQexecPrepared(pg, name_.c_str(), n, values.data(), lengths.data(),
                                           formats.data(), 1);
  if (!Ok(result_)) return Fail(PgError(result_, pg, text_));
  const char* tuples = PQcmdTuples(result_);
  changes_ = (tuples && *tuples) ? std::stoll(tuples) : 0;
  return {};
}

Result<bool> Statement::Step() {
  if (!executed_) {
    executed_ = true;
    IOTPKI_CHECK(Execute());
  }
  if (result_ == nullptr) return false;
  ++row_;
  return row_ < PQntuples(result_);
}

bool Statement::IsNull(int col) const { return PQgetisnull(result_, row_, col) != 0; }

int64_t Statement::Int64(int col) const {
  if (IsNull(col)) return 0;
  const char* p = PQgetvalue(result_, row_, col);
  int n = PQgetlength(result_, row_, col);
  switch (PQftype(result_, col)) {
    case kInt8Oid:
    case kInt4Oid:
    case kInt2Oid:
    case kBoolOid:
      return BigEndian(p, n);
    default:
      return 0;  // The shared SQL casts every number it reads to BIGINT.
  }
}

std::string Statement::Text(int col) const {
  return std::string(PQgetvalue(result_, row_, col),
                     static_cast<size_t>(PQgetlength(result_, row_, col)));
}

Bytes Statement::Blob(int col) const {
  const auto* p = reinterpret_cast<const uint8_t*>(PQgetvalue(result_, row_, col));
  return Bytes(p, p + PQgetlength(result_, row_, col));
}

void Statement::Unprepare() {
  Reset();
  prepared_ = false;
}

void Statement::Reset() {
  PQclear(result_);
  result_ = nullptr;
  executed_ = false;
  row_ = -1;
  bad_index_.reset();
  for (Param& p : params_) p = Param{};
}

Result<std::unique_ptr<Connection>> Connection::Open(const std::string& url) {
  // Later keywords override earlier ones: the URL's own connect_timeout wins over the default.
  // JIT compilation pays off for long analytical queries; these are short, and with it a count
  // over a large fleet, whose estimated cost passes jit_above_cost, would spend more time
  // compiling than running.
  const char* keys[] = {"connect_timeout", "fallback_application_name",
                        "client_encoding", "options",
                        "dbname",          nullptr};
  const char* values[] = {"10", "iotpki", "UTF8", "-c jit=off", url.c_str(), nullptr};
  PGconn* pg = PQconnectdbParams(keys, values, /*expand_dbname=*/1);
  if (pg == nullptr) {
    return Fail(Code::kResourceExhausted, "out of memory connecting to the database");
  }
  if (PQstatus(pg) != CONNECTION_OK) {
    std::string message = PQerrorMessage(pg);
    while (!message.empty() && message.back() == '\n') message.pop_back();
    PQfinish(pg);
    bool refused = message.find("password") != std::string::npos ||
                   message.find("authentication") != std::string::npos;
    return Fail(refused ? Code::kPermissionDenied : Code::kUnavailable,
                refused ? "the PostgreSQL server refused the credentials"
                        : "cannot connect to the PostgreSQL server",
                RedactUrl(url) + ": " + message);
  }
  // Notices (CREATE ... IF NOT EXISTS skipping, and the like) are not errors; keep stderr clean.
  PQsetNoticeProcessor(
      pg, [](void*, const char*) {}, nullptr);
  return std::unique_ptr<Connection>(new Connection(pg));
}

Connection::~Connection() {
  cache_.clear();
  PQfinish(conn_);
}

Result<void> Connection::Exec(std::string_view sql) {
  std::string text(sql);
  ResultPtr r(PQexec(conn_, text.c_str()));
  if (!Ok(r.get())) return Fail(PgError(r.get(), conn_, text));
  return {};
}

Result<sql::StatementUse> Connection::Prepare(std::string_view sql) {
  auto it = cache_.find(std::string(sql));
  if (it == cache_.end()) {
    int count = 0;
    std::string text = ToDollarParameters(sql, &count);
    auto stmt = std::make_unique<Statement>(this, "iotpki_" + std::to_string(++next_statement_),
                                            std::move(text), count);
    it = cache_.emplace(std::string(sql), std::move(stmt)).first;
  }
  return sql::StatementUse(it->second.get());
}

Result<std::unique_ptr<sql::Statement>> Connection::PrepareUncached(std::string_view sql) {
  int count = 0;
  std::string text = ToDollarParameters(sql, &count);
  return std::unique_ptr<sql::Statement>(new Statement(this, "", std::move(text), count));
}

Result<void> Connection::Begin(TxMode mode) {
  if (in_transaction()) Rollback();
  const std::string begin =
      mode == TxMode::kRead
          ? "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY"
          : "BEGIN; SELECT pg_advisory_xact_lock(" + std::to_string(kWriterLockKey) + ")";
  auto begun = Exec(begin);
  if (begun || !broken()) return begun;
  // The server ended this connection while it sat idle (a restart, a failover, an operator's
  // pg_terminate_backend): nothing of this transaction was done, so a new connection may run it.
  // PQreset connects again with the same parameters: with several hosts and
  // target_session_attrs=read-write, to whichever is the primary now.
  PQreset(conn_);
  if (PQstatus(conn_) != CONNECTION_OK) return begun;
  for (auto& [sql, stmt] : cache_) stmt->Unprepare();
  return Exec(begin);
}

Result<void> Connection::Commit() {
  ResultPtr r(PQexec(conn_, "COMMIT"));
  if (!Ok(r.get())) return Fail(PgError(r.get(), conn_, "COMMIT"));
  if (std::strcmp(PQcmdStatus(r.get()), "COMMIT") != 0) {
    return Fail(Code::kInternal, "database error", "COMMIT of a failed transaction was a rollback");
  }
  return {};
}

void Connection::Rollback() {
  // Best effort: a connection that cannot roll back is broken, and the pool replaces it.
  ResultPtr r(PQexec(conn_, "ROLLBACK"));
}

bool Connection::in_transaction() const {
  PGTransactionStatusType s = PQtransactionStatus(conn_);
  return s == PQTRANS_INTRANS || s == PQTRANS_INERROR || s == PQTRANS_ACTIVE;
}

Result<std::string> Connection::Explain(const sql::Query& q) {
  IOTPKI_CHECK(Exec("BEGIN; SET LOCAL enable_seqscan = off"));
  auto plan = [&]() -> Result<std::string> {
    IOTPKI_TRY(auto stmt, PrepareUncached("EXPLAIN " + q.sql));
    q.BindTo(*stmt);
    std::string out;
    for (;;) {
      IOTPKI_TRY(bool row, stmt->Step());
      if (!row) return out;
      out += stmt->Text(0);
      out += '\n';
    }
  }();
  Rollback();
  return plan;
}

const sql::Dialect& Connection::dialect() const {
  static const sql::Dialect kPostgres{
      .name = "postgresql",
      .index_hints = false,
      .after_copy_sql =
          "SELECT setval(pg_get_serial_sequence('devices', 'seq'), "
          "COALESCE((SELECT MAX(seq) FROM devices), 0) + 1, false); "
          "SELECT setval(pg_get_serial_sequence('campaigns', 'id'), "
          "COALESCE((SELECT MAX(id) FROM campaigns), 0) + 1, false)"};
  return kPostgres;
}

Result<void> Connection::CopyIn(std::string_view copy_sql, ByteView data) {
  std::string text(copy_sql);
  ResultPtr start(PQexec(conn_, text.c_str()));
  if (PQresultStatus(start.get()) != PGRES_COPY_IN) {
    return Fail(PgError(start.get(), conn_, text));
  }
  // Sent in pieces below libpq's own buffer limits; the server checks the stream at the end.
  constexpr size_t kChunk = 1 << 20;
  for (size_t off = 0; off < data.size(); off += kChunk) {
    size_t n = std::min(kChunk, data.size() - off);
    if (PQputCopyData(conn_, reinterpret_cast<const char*>(data.data() + off),
                      static_cast<int>(n)) != 1) {
      break;  // The error is reported by the result below.
    }
  }
  if (PQputCopyEnd(conn_, nullptr) != 1) return Fail(PgError(nullptr, conn_, text));
  Result<void> outcome;
  // Every result of the COPY is read, so that the connection is ready for the next command.
  while (PGresult* r = PQgetResult(conn_)) {
    ResultPtr owned(r);
    if (outcome && !Ok(r)) outcome = Fail(PgError(r, conn_, text));
  }
  return outcome;
}

}  // namespace iotpki::store::postgres
