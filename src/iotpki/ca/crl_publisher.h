// CRLs of the issuing CAs (manufacturing, operational), built from the store and published: kept
// in memory for `GET /crl/<ca>.crl`, written atomically to DIR/crl/<ca>.crl (DER) and
// DIR/crl/<ca>.pem, and optionally as the combined PEM file a broker loads (Mosquitto's crlfile).
//
// A CRL is rebuilt when a revocation of its CA was committed (by any process: the publisher polls
// the store's count of revoked certificates, which only grows), at half its validity, or when it
// is missing. A burst of revocations between two polls yields one CRL, so 10,000 revocations
// make a handful of CRLs, not 10,000.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "iotpki/ca/authority.h"
#include "iotpki/common/error.h"
#include "iotpki/x509/crl.h"

namespace iotpki::ca {

struct CrlOptions {
  // nextUpdate - thisUpdate. A CRL is rebuilt at half of it.
  std::chrono::seconds validity{7 * 86400};
  // How often the store is asked whether revocations were committed.
  std::chrono::seconds poll{2};
  // Also write the combined PEM set of every published CRL here (atomic replace), and after each
  // change run `broker_reload` (a shell command) if set.
  std::filesystem::path broker_crl;
  std::string broker_reload;
  // Overrides the configuration's crl.partition_bytes (CaConfig::crl_partition_bytes).
  std::optional<int64_t> partition_bytes;
};

// One published CRL.
struct PublishedCrl {
  x509::Crl crl;     // the whole CRL: every revoked certificate of the CA
  std::string etag;  // quoted, from the CRL number: "\"crl-7\""
  int64_t revoked_count = 0;
  // When the whole CRL passes the partition size: one CRL per issuance month ("2026-12"), from
  // the CA certificate's month to the current one, each with the issuingDistributionPoint its
  // certificates name (CrlUrl) and the same CRL number as `crl`. Empty: not partitioned, and
  // the whole CRL answers for every partition URL.
  std::map<std::string, x509::Crl, std::less<>> partitions;
};

// The CRL of `ca` (kManufacturing or kOperational), listing every certificate it issued that the
// store holds as revoked, in serial order, linted and signed. FailedPrecondition if that CA's key
// is not unlocked.
Result<x509::Crl> BuildIssuerCrl(Authority& authority, CaName ca, int64_t crl_number, int64_t now,
                                 std::chrono::seconds validity);

// DIR/crl/<ca>.crl.
std::filesystem::path CrlPath(const std::filesystem::path& dir, CaName ca);

// The CRL number a new CRL of `ca` takes: one more than the one in DIR/crl/<ca>.crl, or 1.
int64_t NextCrlNumber(const std::filesystem::path& dir, CaName ca);

// The combined PEM set (manufacturing, then operational) of `crls`.
std::string CombinedPem(const std::vector<x509::Crl>& crls);

// The CRLs of `published` a broker loads: the whole CRL, then every partition in month order.
// The whole one covers certificates that name no partition (issued before partitioning, or
// without a public URL); the partitions are there for verifiers that select CRLs by scope.
void AppendBrokerCrls(const PublishedCrl& published, std::vector<x509::Crl>& out);

// The partition CRLs of the whole CRL `whole` of `ca` (see PublishedCrl::partitions), signed
// with the CA's key, under the public URL `public_url`.
Result<std::map<std::string, x509::Crl, std::less<>>> BuildPartitionCrls(
    Authority& authority, CaName ca, const x509::Crl& whole, std::string_view public_url);

// Thread-safe. The operational CA's key must be unlocked before Refresh or Start; without the
// manufacturing CA's key its CRL is neither built nor published (Current is null for it).
class CrlPublisher {
 public:
  CrlPublisher(Authority& authority, CrlOptions options);
  ~CrlPublisher();  // Stop()
  CrlPublisher(const CrlPublisher&) = delete;
  CrlPublisher& operator=(const CrlPublisher&) = delete;

  // Rebuilds and publishes every CRL that needs it (see above); `force` rebuilds all. Returns
  // how many were rebuilt. On error the CRLs published before stay in place.
  Result<int> Refresh(bool force = false);

  // Refresh every `poll` on a thread of its own until Stop; errors are logged and retried.
  void Start();
  void Stop();

  // The current CRL of "manufacturing" or "operational"; null for another name or before the
  // first Refresh.
  std::shared_ptr<const PublishedCrl> Current(std::string_view ca_name) const;

  // Called after each Refresh that changed something (on the refreshing thread).
  void OnChange(std::function<void()> callback);

 private:
  Result<bool> RefreshOne(CaName ca, bool force);
  // Partitions are made when the whole CRL passes the configured size and a public URL is set.
  bool WantsPartitions(const x509::Crl& whole) const;
  Result<void> WriteBrokerFile();

  Authority& authority_;
  CrlOptions options_;
  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<const PublishedCrl>, std::less<>> current_;
  std::function<void()> on_change_;
  std::mutex refresh_mu_;  // one Refresh at a time
  std::thread thread_;
  std::mutex stop_mu_;
  std::condition_variable stop_cv_;
  bool stop_ = false;
};

}  // namespace iotpki::ca
