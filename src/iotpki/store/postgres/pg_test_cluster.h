// Test support: the throwaway PostgreSQL cluster that a test binary's PostgreSQL tests share, and
// a fresh database per test. Under ctest the cluster is the one the `pg_cluster_start` fixture
// started for the whole run ($IOTPKI_TEST_PG_DIR, tests/CMakeLists.txt); a binary run by hand
// starts its own on first use with tests/pg_cluster.sh and stops it when its tests end.
//
// Without PostgreSQL's server binaries the PostgreSQL tests are skipped with the reason, except
// under CI=true, where they fail: CI must never pass with them skipped.
#pragma once

#include <gtest/gtest.h>

#include <string>

#include "iotpki/common/error.h"

namespace iotpki::store::testing {

class PgTestCluster {
 public:
  static PgTestCluster& Get();

  // The URL of a new, empty database (CREATE DATABASE ... TEMPLATE template0). Unavailable when
  // there is no cluster (the message says why).
  Result<std::string> NewDatabase();
  // Drops a database NewDatabase made (connections to it are ended first).
  void DropDatabase(const std::string& url);

  // True when a test should skip rather than fail for `error` from NewDatabase.
  static bool MaySkip(const Error& error);

 private:
  PgTestCluster() = default;
  Result<void> Start();

  bool started_ = false;
  bool own_ = false;  // started here, stopped at the end of the tests
  std::string dir_;
  std::string unavailable_;
  int next_ = 0;

  friend class PgTestClusterEnvironment;
};

}  // namespace iotpki::store::testing

// In a test's SetUp or body: declares `std::string var`, the URL of a new database, or skips
// (fails under CI=true) when PostgreSQL is not available.
#define IOTPKI_PG_DATABASE(var)                                                   \
  auto var##_made = ::iotpki::store::testing::PgTestCluster::Get().NewDatabase(); \
  if (!var##_made) {                                                              \
    if (::iotpki::store::testing::PgTestCluster::MaySkip(var##_made.error())) {   \
      GTEST_SKIP() << var##_made.error().message();                               \
    }                                                                             \
    FAIL() << var##_made.error().ToString();                                      \
  }                                                                               \
  std::string var = *var##_made
