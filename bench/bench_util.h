// Shared by the benchmarks: the `openssl speed` baselines, measured in the same run.
#pragma once

#include <string>

namespace iotpki::bench {

struct OpensslSpeed {
  double ecdsa_sign = 0;    // ecdsap256 signatures per second
  double ecdsa_verify = 0;  // ecdsap256 verifications per second
  double ecdh = 0;          // ecdhp256 operations per second (0 unless asked for)
};

// Runs `openssl speed -seconds S [-multi N] ecdsap256 [ecdhp256]` and parses its table. Zeros if
// openssl is missing or its output changed.
OpensslSpeed MeasureOpensslSpeed(int seconds, int multi, bool ecdh);

// A fresh directory under $TMPDIR (default /var/tmp, which is on disk rather than tmpfs on most
// systems, so that fsync costs what it costs in production).
std::string MakeTempDir(const std::string& prefix);

}  // namespace iotpki::bench
