// The floor of a factory batch (issue 3): the least work any conforming `iotpki mfg provision`
// must do per device, timed on one thread with OpenSSL and SQLite directly, and set against the
// two-core limit of `openssl speed -multi 2` that bench/run.sh passes in. If the floor alone takes
// most of the limit, no implementation reaches 80% of it; this says how much room is left.
//
//   mfg_floor --dir DIR [--devices N] [--limit-ca PER_S] [--limit-csr PER_S]
//
// Each part is timed over N devices and reported in microseconds per device:
//   1. keygen   P-256 key generation (one EVP_PKEY_CTX, reused) and the exported public point.
//   2. sign     SHA-256 of a 450-byte to-be-signed certificate and an ECDSA signature with the
//               CA key (one EVP_PKEY_CTX, sign_init once).
//   3. verify   proof of possession: the device's key built from its point, a new context,
//               one verification. Also with one reused key and context, as `openssl speed` does.
//   4. read CSR open + read + close of a ~300-byte file among N in one directory.
//   5. store    one row with three unique indexes, WAL, synchronous=NORMAL, 4,096 rows a commit.
// Parts 1-3 are thread CPU time; 4 and 5 make system calls and are user + system time of the
// process (getrusage), which is single-threaded. Neither counts time spent waiting for the disk.
// DIR (created if missing, else must be empty) keeps the CSR files and the database afterwards.
#include <fcntl.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <sqlite3.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <array>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <initializer_list>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace {

namespace fs = std::filesystem;

constexpr size_t kPointLen = 65;   // uncompressed P-256 point: 04 || x || y
constexpr size_t kMaxSigLen = 72;  // DER ECDSA-Sig-Value for P-256, at most
constexpr size_t kDigestLen = 32;
constexpr size_t kTbsLen = 450;  // a device certificate's TBSCertificate, about
constexpr size_t kCsrLen = 300;
constexpr size_t kDerLen = 600;  // the stored certificate
constexpr size_t kRowsPerCommit = 4096;
constexpr int kSerialLen = 10;  // "S-%08d" up to kMaxDevices
constexpr int kMaxDevices = 1000000;
char kGroup[] = "P-256";  // OSSL_PARAM_construct_utf8_string takes a char*

// Any failure of OpenSSL, SQLite or the file system: main prints it on one line and exits 1.
struct Failure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

[[noreturn]] void FailOpenssl(const char* what) {
  char reason[256] = "no OpenSSL error queued";
  if (unsigned long e = ERR_get_error(); e != 0) ERR_error_string_n(e, reason, sizeof reason);
  ERR_clear_error();
  throw Failure(std::string(what) + " failed: " + reason);
}

[[noreturn]] void FailSqlite(sqlite3* db, const char* what) {
  throw Failure(std::string(what) + " failed: " + sqlite3_errmsg(db));
}

[[noreturn]] void FailErrno(const std::string& what) {
  throw Failure(what + " failed: " + std::strerror(errno));
}

template <auto F>
struct Deleter {
  template <class T>
  void operator()(T* p) const {
    F(p);
  }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY_free>>;
using PkeyCtxPtr = std::unique_ptr<EVP_PKEY_CTX, Deleter<EVP_PKEY_CTX_free>>;
using MdPtr = std::unique_ptr<EVP_MD, Deleter<EVP_MD_free>>;
using MdCtxPtr = std::unique_ptr<EVP_MD_CTX, Deleter<EVP_MD_CTX_free>>;
using DbPtr = std::unique_ptr<sqlite3, Deleter<sqlite3_close>>;
using StmtPtr = std::unique_ptr<sqlite3_stmt, Deleter<sqlite3_finalize>>;

struct Fd {
  int fd = -1;
  explicit Fd(int f) : fd(f) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

double ThreadCpuUs() {
  timespec ts{};
  if (::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0) FailErrno("clock_gettime");
  return static_cast<double>(ts.tv_sec) * 1e6 + static_cast<double>(ts.tv_nsec) / 1e3;
}

double ProcessCpuUs() {  // user + system
  rusage ru{};
  if (::getrusage(RUSAGE_SELF, &ru) != 0) FailErrno("getrusage");
  auto us = [](const timeval& tv) {
    return static_cast<double>(tv.tv_sec) * 1e6 + static_cast<double>(tv.tv_usec);
  };
  return us(ru.ru_utime) + us(ru.ru_stime);
}

void RandomBytes(unsigned char* p, size_t n) {
  if (RAND_bytes(p, static_cast<int>(n)) != 1) FailOpenssl("RAND_bytes");
}

// --- crypto ------------------------------------------------------------------------------------

struct Crypto {
  PkeyCtxPtr keygen;    // "EC", keygen_init, group P-256
  PkeyCtxPtr fromdata;  // "EC", fromdata_init
  MdPtr sha256;
  MdCtxPtr md;

  Crypto() {
    keygen.reset(EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr));
    if (!keygen) FailOpenssl("EVP_PKEY_CTX_new_from_name(EC)");
    if (EVP_PKEY_keygen_init(keygen.get()) <= 0) FailOpenssl("EVP_PKEY_keygen_init");
    if (EVP_PKEY_CTX_set_group_name(keygen.get(), kGroup) <= 0) {
      FailOpenssl("EVP_PKEY_CTX_set_group_name");
    }
    fromdata.reset(EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr));
    if (!fromdata) FailOpenssl("EVP_PKEY_CTX_new_from_name(EC)");
    if (EVP_PKEY_fromdata_init(fromdata.get()) <= 0) FailOpenssl("EVP_PKEY_fromdata_init");
    sha256.reset(EVP_MD_fetch(nullptr, "SHA256", nullptr));
    if (!sha256) FailOpenssl("EVP_MD_fetch(SHA256)");
    md.reset(EVP_MD_CTX_new());
    if (!md) FailOpenssl("EVP_MD_CTX_new");
  }

  PkeyPtr Generate() {
    EVP_PKEY* key = nullptr;
    if (EVP_PKEY_generate(keygen.get(), &key) <= 0) FailOpenssl("EVP_PKEY_generate");
    return PkeyPtr(key);
  }

  void ExportPoint(EVP_PKEY* key, unsigned char* point) {
    size_t len = 0;
    if (EVP_PKEY_get_octet_string_param(key, OSSL_PKEY_PARAM_PUB_KEY, point, kPointLen, &len) !=
            1 ||
        len != kPointLen) {
      FailOpenssl("EVP_PKEY_get_octet_string_param(pub)");
    }
  }

  PkeyPtr FromPoint(const unsigned char* point) {
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, kGroup, 0),
        OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY,
                                          const_cast<unsigned char*>(point), kPointLen),
        OSSL_PARAM_construct_end()};
    EVP_PKEY* key = nullptr;
    if (EVP_PKEY_fromdata(fromdata.get(), &key, EVP_PKEY_PUBLIC_KEY, params) != 1) {
      FailOpenssl("EVP_PKEY_fromdata");
    }
    return PkeyPtr(key);
  }

  void Digest(const unsigned char* data, size_t len, unsigned char* out) {
    unsigned int out_len = 0;
    if (EVP_DigestInit_ex2(md.get(), sha256.get(), nullptr) != 1 ||
        EVP_DigestUpdate(md.get(), data, len) != 1 ||
        EVP_DigestFinal_ex(md.get(), out, &out_len) != 1 || out_len != kDigestLen) {
      FailOpenssl("SHA-256");
    }
  }
};

PkeyCtxPtr SignContext(EVP_PKEY* key) {
  PkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, key, nullptr));
  if (!ctx) FailOpenssl("EVP_PKEY_CTX_new_from_pkey");
  if (EVP_PKEY_sign_init(ctx.get()) <= 0) FailOpenssl("EVP_PKEY_sign_init");
  return ctx;
}

PkeyCtxPtr VerifyContext(EVP_PKEY* key) {
  PkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, key, nullptr));
  if (!ctx) FailOpenssl("EVP_PKEY_CTX_new_from_pkey");
  if (EVP_PKEY_verify_init(ctx.get()) <= 0) FailOpenssl("EVP_PKEY_verify_init");
  return ctx;
}

size_t Sign(EVP_PKEY_CTX* ctx, const unsigned char* digest, unsigned char* sig) {
  size_t sig_len = kMaxSigLen;
  if (EVP_PKEY_sign(ctx, sig, &sig_len, digest, kDigestLen) <= 0) FailOpenssl("EVP_PKEY_sign");
  return sig_len;
}

void Verify(EVP_PKEY_CTX* ctx, const unsigned char* sig, size_t sig_len,
            const unsigned char* digest) {
  if (EVP_PKEY_verify(ctx, sig, sig_len, digest, kDigestLen) != 1) {
    FailOpenssl("EVP_PKEY_verify");
  }
}

// A device as its CSR presents it: the public point and a signature over a digest.
struct Device {
  unsigned char point[kPointLen];
  unsigned char sig[kMaxSigLen];
  size_t sig_len;
  unsigned char digest[kDigestLen];
};

double TimeKeygen(Crypto& c, int n) {
  unsigned char point[kPointLen];
  double t0 = ThreadCpuUs();
  for (int i = 0; i < n; ++i) {
    PkeyPtr key = c.Generate();
    c.ExportPoint(key.get(), point);
  }
  return (ThreadCpuUs() - t0) / n;
}

double TimeSign(Crypto& c, EVP_PKEY* ca_key, int n) {
  PkeyCtxPtr ctx = SignContext(ca_key);
  unsigned char tbs[kTbsLen], digest[kDigestLen], sig[kMaxSigLen];
  RandomBytes(tbs, sizeof tbs);
  double t0 = ThreadCpuUs();
  for (int i = 0; i < n; ++i) {
    std::memcpy(tbs + 16, &i, sizeof i);  // where the serial number goes, about
    c.Digest(tbs, sizeof tbs, digest);
    Sign(ctx.get(), digest, sig);
  }
  return (ThreadCpuUs() - t0) / n;
}

std::vector<Device> MakeDevices(Crypto& c, int n) {
  std::vector<Device> devices(static_cast<size_t>(n));
  for (Device& d : devices) {
    PkeyPtr key = c.Generate();
    c.ExportPoint(key.get(), d.point);
    RandomBytes(d.digest, sizeof d.digest);
    PkeyCtxPtr ctx = SignContext(key.get());
    d.sig_len = Sign(ctx.get(), d.digest, d.sig);
  }
  return devices;
}

double TimeVerifyNewKey(Crypto& c, const std::vector<Device>& devices) {
  double t0 = ThreadCpuUs();
  for (const Device& d : devices) {
    PkeyPtr key = c.FromPoint(d.point);
    PkeyCtxPtr ctx = VerifyContext(key.get());
    Verify(ctx.get(), d.sig, d.sig_len, d.digest);
  }
  return (ThreadCpuUs() - t0) / static_cast<double>(devices.size());
}

// The part of the above that builds the key alone: EVP_PKEY_fromdata and EVP_PKEY_free.
double TimeFromPoint(Crypto& c, const std::vector<Device>& devices) {
  double t0 = ThreadCpuUs();
  for (const Device& d : devices) PkeyPtr key = c.FromPoint(d.point);
  return (ThreadCpuUs() - t0) / static_cast<double>(devices.size());
}

double TimeVerifyReused(Crypto& c, const Device& d, int n) {
  PkeyPtr key = c.FromPoint(d.point);
  PkeyCtxPtr ctx = VerifyContext(key.get());
  double t0 = ThreadCpuUs();
  for (int i = 0; i < n; ++i) Verify(ctx.get(), d.sig, d.sig_len, d.digest);
  return (ThreadCpuUs() - t0) / n;
}

// --- files -------------------------------------------------------------------------------------

std::vector<std::string> CsrNames(int n) {
  std::vector<std::string> names;
  names.reserve(static_cast<size_t>(n));
  char name[32];
  for (int i = 0; i < n; ++i) {
    std::snprintf(name, sizeof name, "CSR-%08d.csr", i + 1);
    names.emplace_back(name);
  }
  return names;
}

void WriteCsrs(const fs::path& dir, const std::vector<std::string>& names) {
  fs::create_directory(dir);
  unsigned char content[kCsrLen];
  RandomBytes(content, sizeof content);
  for (const std::string& name : names) {
    fs::path p = dir / name;
    Fd f(::open(p.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
    if (f.fd < 0) FailErrno("open " + p.string());
    if (::write(f.fd, content, sizeof content) != static_cast<ssize_t>(sizeof content)) {
      FailErrno("write " + p.string());
    }
    int fd = f.fd;
    f.fd = -1;
    if (::close(fd) != 0) FailErrno("close " + p.string());
  }
}

// Each file opened relative to the directory (no path walk from /), read to end of file.
double TimeReadCsrs(const fs::path& dir, const std::vector<std::string>& names) {
  Fd d(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (d.fd < 0) FailErrno("open " + dir.string());
  unsigned char buf[4096];
  size_t total = 0;
  double t0 = ProcessCpuUs();
  for (const std::string& name : names) {
    int fd = ::openat(d.fd, name.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) FailErrno("open " + name);
    for (;;) {
      ssize_t got = ::read(fd, buf, sizeof buf);
      if (got < 0) {
        int e = errno;
        ::close(fd);
        errno = e;
        FailErrno("read " + name);
      }
      if (got == 0) break;
      total += static_cast<size_t>(got);
    }
    if (::close(fd) != 0) FailErrno("close " + name);
  }
  double us = (ProcessCpuUs() - t0) / static_cast<double>(names.size());
  if (total != kCsrLen * names.size()) throw Failure("read CSR files: short read");
  return us;
}

// --- store -------------------------------------------------------------------------------------

void Exec(sqlite3* db, const char* sql) {
  if (sqlite3_exec(db, sql, nullptr, nullptr, nullptr) != SQLITE_OK) FailSqlite(db, sql);
}

StmtPtr Prepare(sqlite3* db, const char* sql) {
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt, nullptr) != SQLITE_OK) {
    FailSqlite(db, sql);
  }
  return StmtPtr(stmt);
}

void StepDone(sqlite3* db, sqlite3_stmt* stmt, const char* what) {
  if (sqlite3_step(stmt) != SQLITE_DONE) FailSqlite(db, what);
  if (sqlite3_reset(stmt) != SQLITE_OK) FailSqlite(db, what);
}

struct StoreResult {
  double row_us;         // insert, commits included
  double checkpoint_us;  // the WAL copied into the database afterwards, per device
};

StoreResult TimeStore(const fs::path& path, int n) {
  // Row contents made beforehand: an implementation has them in hand when it writes the row.
  std::vector<unsigned char> ids(32 * static_cast<size_t>(n)), fps(ids.size());
  std::vector<unsigned char> der(kDerLen * static_cast<size_t>(n));
  RandomBytes(ids.data(), ids.size());
  RandomBytes(fps.data(), fps.size());
  RandomBytes(der.data(), der.size());
  std::vector<std::array<char, 16>> serials(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) std::snprintf(serials[i].data(), serials[i].size(), "S-%08d", i + 1);

  sqlite3* raw = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &raw, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr);
  DbPtr db(raw);
  if (rc != SQLITE_OK) {
    throw Failure("sqlite3_open_v2 " + path.string() +
                  " failed: " + (raw != nullptr ? sqlite3_errmsg(raw) : sqlite3_errstr(rc)));
  }
  {
    StmtPtr mode = Prepare(db.get(), "PRAGMA journal_mode=WAL");
    if (sqlite3_step(mode.get()) != SQLITE_ROW) FailSqlite(db.get(), "PRAGMA journal_mode=WAL");
    auto text = reinterpret_cast<const char*>(sqlite3_column_text(mode.get(), 0));
    if (text == nullptr || std::string_view(text) != "wal") {
      throw Failure("PRAGMA journal_mode=WAL: the database stays in another mode");
    }
  }
  Exec(db.get(), "PRAGMA synchronous=NORMAL");
  Exec(db.get(), "PRAGMA cache_size=-524288");
  Exec(db.get(), "PRAGMA wal_autocheckpoint=65536");
  Exec(db.get(),
       "CREATE TABLE devices (seq INTEGER PRIMARY KEY, device_id BLOB NOT NULL UNIQUE, "
       "serial TEXT NOT NULL UNIQUE, key_fp BLOB NOT NULL UNIQUE, der BLOB NOT NULL)");

  StmtPtr begin = Prepare(db.get(), "BEGIN IMMEDIATE");
  StmtPtr commit = Prepare(db.get(), "COMMIT");
  StmtPtr insert =
      Prepare(db.get(), "INSERT INTO devices (device_id, serial, key_fp, der) VALUES (?, ?, ?, ?)");
  sqlite3* d = db.get();
  sqlite3_stmt* ins = insert.get();

  double t0 = ProcessCpuUs();
  for (int i = 0; i < n; ++i) {
    if (i % kRowsPerCommit == 0) StepDone(d, begin.get(), "BEGIN IMMEDIATE");
    size_t k = static_cast<size_t>(i);
    if (sqlite3_bind_blob(ins, 1, &ids[32 * k], 32, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_bind_text(ins, 2, serials[k].data(), kSerialLen, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_bind_blob(ins, 3, &fps[32 * k], 32, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_bind_blob(ins, 4, &der[kDerLen * k], kDerLen, SQLITE_STATIC) != SQLITE_OK) {
      FailSqlite(d, "bind");
    }
    StepDone(d, ins, "INSERT INTO devices");
    if ((i + 1) % kRowsPerCommit == 0 || i + 1 == n) StepDone(d, commit.get(), "COMMIT");
  }
  double row_us = (ProcessCpuUs() - t0) / n;

  {
    StmtPtr count = Prepare(d, "SELECT count(*) FROM devices");
    if (sqlite3_step(count.get()) != SQLITE_ROW) FailSqlite(d, "SELECT count(*)");
    if (sqlite3_column_int64(count.get(), 0) != n) throw Failure("store: row count is not N");
  }
  t0 = ProcessCpuUs();
  if (sqlite3_wal_checkpoint_v2(d, nullptr, SQLITE_CHECKPOINT_TRUNCATE, nullptr, nullptr) !=
      SQLITE_OK) {
    FailSqlite(d, "sqlite3_wal_checkpoint_v2");
  }
  double checkpoint_us = (ProcessCpuUs() - t0) / n;

  insert.reset();
  commit.reset();
  begin.reset();
  if (sqlite3_close(db.get()) != SQLITE_OK) FailSqlite(db.get(), "sqlite3_close");
  (void)db.release();
  return {row_us, checkpoint_us};
}

// --- command line ------------------------------------------------------------------------------

struct Options {
  int devices = 20000;
  fs::path dir;
  std::optional<double> limit_ca, limit_csr;
};

struct BadArgs : std::runtime_error {
  using std::runtime_error::runtime_error;
};

template <class T>
T ParseNumber(std::string_view flag, std::string_view text) {
  T value{};
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size()) {
    throw BadArgs(std::string(flag) + ": not a number: '" + std::string(text) + "'");
  }
  return value;
}

Options ParseArgs(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string_view flag = argv[i];
    if (flag != "--devices" && flag != "--dir" && flag != "--limit-ca" && flag != "--limit-csr") {
      throw BadArgs("unknown argument '" + std::string(flag) +
                    "' (usage: mfg_floor --dir DIR [--devices N] [--limit-ca PER_S] "
                    "[--limit-csr PER_S])");
    }
    if (i + 1 == argc) throw BadArgs(std::string(flag) + " needs a value");
    std::string_view value = argv[++i];
    if (flag == "--devices") {
      o.devices = ParseNumber<int>(flag, value);
      if (o.devices < 1 || o.devices > kMaxDevices) {
        throw BadArgs("--devices: must be 1 to " + std::to_string(kMaxDevices));
      }
    } else if (flag == "--dir") {
      if (value.empty()) throw BadArgs("--dir: empty path");
      o.dir = value;
    } else {
      double limit = ParseNumber<double>(flag, value);
      if (!(limit > 0) || limit > 1e12) throw BadArgs(std::string(flag) + ": must be above 0");
      (flag == "--limit-ca" ? o.limit_ca : o.limit_csr) = limit;
    }
  }
  if (o.dir.empty()) throw BadArgs("--dir is required");
  std::error_code ec;
  if (fs::exists(o.dir, ec) && !(fs::is_directory(o.dir, ec) && fs::is_empty(o.dir, ec))) {
    throw BadArgs("--dir " + o.dir.string() + ": not an empty directory");
  }
  return o;
}

// --- report ------------------------------------------------------------------------------------

void PrintFloor(const char* mode, const char* parts, std::initializer_list<double> us,
                std::optional<double> limit, const char* limit_name) {
  double total = 0;
  std::string sum;
  for (double u : us) {
    char part[32];
    std::snprintf(part, sizeof part, "%s%.1f", sum.empty() ? "" : " + ", u);
    sum += part;
    total += u;
  }
  std::printf("%s floor: %s = %s = %.1f us/device on one core", mode, parts, sum.c_str(), total);
  if (!limit) {
    std::printf("\n");
    return;
  }
  double rate = 2e6 / total;
  std::printf(" -> 2-core rate 2e6/%.1f = %.0f per s = %.0f%% of the limit (%s %.0f/s)\n", total,
              rate, 100 * rate / *limit, limit_name, *limit);
  double budget = 2e6 / (0.8 * *limit);
  std::printf(
      "    80%% of the limit (%.0f/s) allows 2e6/%.0f = %.1f us/device on one core: %.1f us "
      "left after the floor\n",
      0.8 * *limit, 0.8 * *limit, budget, budget - total);
}

int Run(const Options& o) {
  fs::create_directories(o.dir);
  const int n = o.devices;
  Crypto c;
  PkeyPtr ca_key = c.Generate();

  double keygen = TimeKeygen(c, n);
  double sign = TimeSign(c, ca_key.get(), n);
  std::vector<Device> devices = MakeDevices(c, n);
  double verify_new = TimeVerifyNewKey(c, devices);
  double from_point = TimeFromPoint(c, devices);
  double verify_reused = TimeVerifyReused(c, devices.front(), n);
  devices = {};

  std::vector<std::string> names = CsrNames(n);
  WriteCsrs(o.dir / "csrs", names);
  double read_csr = TimeReadCsrs(o.dir / "csrs", names);
  StoreResult store = TimeStore(o.dir / "floor.db", n);

  std::printf("mfg_floor: %d devices on one thread, %s, SQLite %s, files and store in %s\n", n,
              OpenSSL_version(OPENSSL_VERSION), sqlite3_libversion(), o.dir.c_str());
  std::printf("\n%-52s %10s  %s\n", "part", "us/device", "clock");
  auto row = [](const char* part, double us, const char* clock) {
    std::printf("%-52s %10.2f  %s\n", part, us, clock);
  };
  row("1. keygen P-256 (one ctx) + export public point", keygen, "thread CPU");
  row("2. sign: SHA-256 of 450 B + ECDSA sign (one ctx)", sign, "thread CPU");
  row("3. verify, new key from point + new ctx (PoP)", verify_new, "thread CPU");
  row("   of which the key from the point (fromdata + free)", from_point, "thread CPU");
  row("   verify, one reused key and ctx (openssl speed)", verify_reused, "thread CPU");
  row("4. read CSR file (open + read to EOF + close)", read_csr, "user+sys");
  row("5. store row (3 unique indexes, 4096 rows/commit)", store.row_us, "user+sys");
  row("   WAL checkpoint after the run (not in the floors)", store.checkpoint_us, "user+sys");
  std::printf("\n");

  if (o.limit_ca || o.limit_csr) {
    std::printf("openssl speed -multi 2 limits passed, as per-device CPU on one core (2e6/limit):");
    if (o.limit_ca) {
      std::printf(" --keys ca %.0f/s = %.1f us of ecdh + sign;", *o.limit_ca, 2e6 / *o.limit_ca);
    }
    if (o.limit_csr) {
      std::printf(" --csr-dir %.0f/s = %.1f us of verify + sign;", *o.limit_csr,
                  2e6 / *o.limit_csr);
    }
    std::printf(
        "\n  measured here on one thread: keygen + sign %.1f us, verify (reused) + sign %.1f us\n",
        keygen + sign, verify_reused + sign);
  }
  PrintFloor("--keys ca", "keygen + sign + store row", {keygen, sign, store.row_us}, o.limit_ca,
             "limit_ca");
  PrintFloor("--csr-dir", "read CSR + verify (new key) + sign + store row",
             {read_csr, verify_new, sign, store.row_us}, o.limit_csr, "limit_csr");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  try {
    o = ParseArgs(argc, argv);
  } catch (const BadArgs& e) {
    std::fprintf(stderr, "mfg_floor: %s\n", e.what());
    return 2;
  }
  try {
    return Run(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mfg_floor: %s\n", e.what());
    return 1;
  }
}
