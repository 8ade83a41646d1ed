#include "iotpki/store/sql/db.h"

namespace iotpki::store::sql {

void Statement::Bind(int index, const std::optional<std::string>& text) {
  if (text) {
    Bind(index, std::string_view(*text));
  } else {
    BindNull(index);
  }
}

void Statement::Bind(int index, const std::optional<int64_t>& value) {
  if (value) {
    Bind(index, *value);
  } else {
    BindNull(index);
  }
}

Result<void> Statement::Run() {
  for (;;) {
    IOTPKI_TRY(bool row, Step());
    if (!row) return {};
  }
}

std::optional<std::string> Statement::OptionalText(int col) const {
  if (IsNull(col)) return std::nullopt;
  return Text(col);
}

std::optional<int64_t> Statement::OptionalInt64(int col) const {
  if (IsNull(col)) return std::nullopt;
  return Int64(col);
}

void Query::BindTo(Statement& s) const {
  for (size_t i = 0; i < params.size(); ++i) {
    int index = static_cast<int>(i) + 1;
    if (const auto* text = std::get_if<std::string>(&params[i])) {
      s.Bind(index, std::string_view(*text));
    } else if (const auto* number = std::get_if<int64_t>(&params[i])) {
      s.Bind(index, *number);
    } else if (const auto* blob = std::get_if<Bytes>(&params[i])) {
      s.Bind(index, ByteView(*blob));
    } else {
      s.BindNull(index);
    }
  }
}

Result<Transaction> Transaction::Begin(Connection& conn, Connection::TxMode mode) {
  IOTPKI_CHECK(conn.Begin(mode));
  return Transaction(&conn);
}

Result<void> Transaction::Commit() {
  Connection* conn = conn_;
  conn_ = nullptr;
  auto committed = conn->Commit();
  // A failed COMMIT may leave the transaction open (SQLite, on SQLITE_BUSY): end it here.
  if (!committed && conn->in_transaction()) conn->Rollback();
  return committed;
}

}  // namespace iotpki::store::sql
