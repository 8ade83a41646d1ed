#include "iotpki/store/postgres/pg_test_cluster.h"

#include <libpq-fe.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <memory>

namespace iotpki::store::testing {
namespace {

constexpr char kPort[] = "5432";  // tests/pg_cluster.sh: it names the socket file only

bool InCi() {
  const char* ci = std::getenv("CI");
  return ci != nullptr && std::string(ci) == "true";
}

std::string Script() { return std::string(IOTPKI_SOURCE_DIR) + "/tests/pg_cluster.sh"; }

// Runs the helper; its standard output, and its exit status in *status.
std::string RunScript(const std::string& args, int* status) {
  std::string command = "bash '" + Script() + "' " + args;
  std::string out;
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) {
    *status = -1;
    return out;
  }
  char buf[512];
  while (size_t n = std::fread(buf, 1, sizeof buf, pipe)) out.append(buf, n);
  int rc = ::pclose(pipe);
  *status = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  return out;
}

struct ConnDeleter {
  void operator()(PGconn* c) const { PQfinish(c); }
};

Result<void> Admin(const std::string& dir, const std::string& sql) {
  std::string conninfo = "host=" + dir + " port=" + kPort + " user=postgres dbname=postgres";
  std::unique_ptr<PGconn, ConnDeleter> conn(PQconnectdb(conninfo.c_str()));
  if (PQstatus(conn.get()) != CONNECTION_OK) {
    return Fail(Code::kUnavailable, "cannot reach the test PostgreSQL cluster in " + dir,
                PQerrorMessage(conn.get()));
  }
  PGresult* r = PQexec(conn.get(), sql.c_str());
  bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
  std::string message = ok ? "" : PQresultErrorMessage(r);
  PQclear(r);
  if (!ok) return Fail(Code::kInternal, sql + ": " + message);
  return {};
}

std::string DatabaseOf(const std::string& url) {
  size_t start = url.find(":///") + 4;
  return url.substr(start, url.find('?') - start);
}

}  // namespace

// Stops a cluster this process started, after the last test.
class PgTestClusterEnvironment : public ::testing::Environment {
 public:
  explicit PgTestClusterEnvironment(pid_t owner) : owner_(owner) {}
  void TearDown() override {
    PgTestCluster& cluster = PgTestCluster::Get();
    // A forked child (a death test) never stops its parent's cluster.
    if (!cluster.own_ || ::getpid() != owner_) return;
    int status = 0;
    (void)RunScript("stop '" + cluster.dir_ + "'", &status);  // best effort: /tmp is temporary
    cluster.started_ = false;
  }

 private:
  pid_t owner_;
};

PgTestCluster& PgTestCluster::Get() {
  static PgTestCluster* cluster = new PgTestCluster();
  return *cluster;
}

bool PgTestCluster::MaySkip(const Error& error) {
  return error.code() == Code::kUnavailable && !InCi();
}

Result<void> PgTestCluster::Start() {
  if (const char* shared = std::getenv("IOTPKI_TEST_PG_DIR")) {
    dir_ = shared;
    struct stat st {};
    if (::stat((dir_ + "/.s.PGSQL." + kPort).c_str(), &st) != 0) {
      unavailable_ = "no PostgreSQL server in " + dir_ +
                     " (the pg_cluster_start test did not start one; without PostgreSQL's "
                     "server binaries, scripts/setup.sh installs them)";
    }
    started_ = true;
    return {};
  }
  char tmpl[] = "/tmp/iotpki-pg-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) {
    return Fail(Code::kInternal, "cannot create a directory for the test cluster");
  }
  dir_ = tmpl;
  int status = 0;
  (void)RunScript("start '" + dir_ + "'", &status);  // prints the URL, which is derived here
  started_ = true;
  if (status != 0) {
    unavailable_ = status == 3 ? "PostgreSQL's server binaries are not installed "
                                 "(scripts/setup.sh installs them): PostgreSQL tests skipped"
                               : "tests/pg_cluster.sh start failed (exit " +
                                     std::to_string(status) + "): see its output above";
    (void)RunScript("stop '" + dir_ + "'", &status);
    return {};
  }
  own_ = true;
  ::testing::AddGlobalTestEnvironment(new PgTestClusterEnvironment(::getpid()));
  return {};
}

Result<std::string> PgTestCluster::NewDatabase() {
  if (!started_) IOTPKI_CHECK(Start());
  if (!unavailable_.empty()) return Fail(Code::kUnavailable, unavailable_);
  std::string name = "iotpki_t" + std::to_string(::getpid()) + "_" + std::to_string(++next_);
  IOTPKI_CHECK(Admin(dir_, "CREATE DATABASE " + name + " TEMPLATE template0"));
  return "postgresql:///" + name + "?host=" + dir_ + "&port=" + kPort + "&user=postgres";
}

void PgTestCluster::DropDatabase(const std::string& url) {
  // Best effort: the cluster and its databases go when the run ends.
  (void)Admin(dir_, "DROP DATABASE IF EXISTS " + DatabaseOf(url) + " WITH (FORCE)");
}

}  // namespace iotpki::store::testing
