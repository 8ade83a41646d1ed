#include "iotpki/ca/crl_publisher.h"

#include <sys/wait.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "iotpki/common/file.h"
#include "iotpki/common/log.h"

namespace iotpki::ca {

namespace fs = std::filesystem;

namespace {

constexpr CaName kIssuers[] = {CaName::kManufacturing, CaName::kOperational};

// A page of the store's revoked list at a time, so a large CRL never holds two copies of it.
constexpr size_t kPage = 5000;

}  // namespace

fs::path CrlPath(const fs::path& dir, CaName ca) {
  return dir / "crl" / (std::string(CaNameText(ca)) + ".crl");
}

int64_t NextCrlNumber(const fs::path& dir, CaName ca) {
  auto der = ReadFile(CrlPath(dir, ca));
  if (!der) return 1;
  auto crl = x509::Crl::FromDer(*der);
  if (!crl || !crl->crl_number()) return 1;
  return *crl->crl_number() + 1;
}

std::string CombinedPem(const std::vector<x509::Crl>& crls) {
  std::string out;
  for (const auto& crl : crls) out += crl.ToPem();
  return out;
}

void AppendBrokerCrls(const PublishedCrl& published, std::vector<x509::Crl>& out) {
  out.push_back(published.crl);
  for (const auto& [month, crl] : published.partitions) out.push_back(crl);
}

namespace {

// "2026-12" -> (2026, 12).
std::pair<int, int> YearMonth(const std::string& month) {
  return {std::stoi(month.substr(0, 4)), std::stoi(month.substr(5, 2))};
}

std::string MonthText(int year, int month) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%04d-%02d", year, month);
  return buf;
}

}  // namespace

Result<std::map<std::string, x509::Crl, std::less<>>> BuildPartitionCrls(
    Authority& authority, CaName ca, const x509::Crl& whole, std::string_view public_url) {
  const crypto::Signer* key = authority.issuer_key(ca);
  if (key == nullptr) {
    return Fail(Code::kFailedPrecondition,
                "the " + std::string(CaNameText(ca)) + " CA key is not unlocked");
  }
  // Entries keep the whole CRL's (ascending) order within each partition.
  std::map<std::string, std::vector<x509::RevokedEntry>, std::less<>> by_month;
  for (const auto& e : whole.revoked()) {
    std::string month = x509::IssuanceMonth(e.serial);
    if (!month.empty()) by_month[month].push_back(e);
  }
  // Every month a certificate of this CA can have been issued in gets a CRL, empty or not: a
  // certificate whose partition has no CRL could not be checked at all. Months are those of the
  // serials (the system clock at issuance): from the CA certificate's to the current one.
  const x509::Certificate& issuer = authority.certificate(ca);
  std::string first = x509::IssuanceMonth(issuer.serial());
  if (first.empty()) first = FormatUtc(issuer.not_before()).substr(0, 7);
  auto [year, month] = YearMonth(first);
  std::string last =
      std::max(x509::CurrentIssuanceMonth(), FormatUtc(whole.this_update()).substr(0, 7));
  for (std::string m = MonthText(year, month); m <= last;) {
    by_month.try_emplace(m);
    if (++month > 12) {
      month = 1;
      ++year;
    }
    m = MonthText(year, month);
  }
  int64_t this_update = whole.this_update();
  int64_t next_update = whole.next_update().value_or(this_update + 1);
  int64_t number = whole.crl_number().value_or(0);
  std::map<std::string, x509::Crl, std::less<>> out;
  for (const auto& [m, entries] : by_month) {
    IOTPKI_CHECK(
        x509::LintCrlEntries(entries, this_update, next_update, authority.config().crl_max_bytes));
    IOTPKI_TRY(x509::Crl crl, x509::BuildCrl(issuer, *key, entries, this_update, next_update,
                                             number, CrlUrl(public_url, CaNameText(ca), m)));
    out.emplace(m, std::move(crl));
  }
  return out;
}

Result<x509::Crl> BuildIssuerCrl(Authority& authority, CaName ca, int64_t crl_number, int64_t now,
                                 std::chrono::seconds validity) {
  const crypto::Signer* key = authority.issuer_key(ca);
  if (key == nullptr) {
    return Fail(Code::kFailedPrecondition,
                "the " + std::string(CaNameText(ca)) + " CA key is not unlocked");
  }
  std::vector<x509::RevokedEntry> entries;
  std::string after;
  for (;;) {
    IOTPKI_TRY(auto page,
               authority.store().ListRevokedCertificatesOfIssuer(CaNameText(ca), after, kPage));
    for (auto& r : page) {
      IOTPKI_TRY(Bytes serial, FromHex(r.serial));
      entries.push_back({std::move(serial), r.revoked_at, r.reason});
    }
    if (page.size() < kPage) break;
    after = page.back().serial;
  }
  // The store orders serials as hex text; the lint wants them by value. Every serial the CA
  // issues has 16 octets, so the two agree, but a store may hold imported ones.
  std::stable_sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) {
    auto strip = [](const Bytes& s) {
      size_t i = 0;
      while (i + 1 < s.size() && s[i] == 0) ++i;
      return ByteView(s).subspan(i);
    };
    ByteView x = strip(a.serial), y = strip(b.serial);
    if (x.size() != y.size()) return x.size() < y.size();
    return std::lexicographical_compare(x.begin(), x.end(), y.begin(), y.end());
  });
  int64_t next_update = now + validity.count();
  IOTPKI_CHECK(x509::LintCrlEntries(entries, now, next_update, authority.config().crl_max_bytes));
  return x509::BuildCrl(authority.certificate(ca), *key, entries, now, next_update, crl_number);
}

bool CrlPublisher::WantsPartitions(const x509::Crl& whole) const {
  int64_t limit = options_.partition_bytes.value_or(authority_.config().crl_partition_bytes);
  return limit > 0 && !authority_.public_url().empty() &&
         static_cast<int64_t>(whole.ToDer().size()) > limit;
}

CrlPublisher::CrlPublisher(Authority& authority, CrlOptions options)
    : authority_(authority), options_(std::move(options)) {}

CrlPublisher::~CrlPublisher() { Stop(); }

std::shared_ptr<const PublishedCrl> CrlPublisher::Current(std::string_view ca_name) const {
  std::lock_guard lock(mu_);
  auto it = current_.find(ca_name);
  return it == current_.end() ? nullptr : it->second;
}

void CrlPublisher::OnChange(std::function<void()> callback) {
  std::lock_guard lock(mu_);
  on_change_ = std::move(callback);
}

Result<bool> CrlPublisher::RefreshOne(CaName ca, bool force) {
  std::string name(CaNameText(ca));
  int64_t now = authority_.clock().NowUnix();
  IOTPKI_TRY(int64_t revoked, authority_.store().CountRevokedCertificates(name));
  auto current = Current(name);
  if (!current) {
    // A CRL this directory published before (by an earlier run) is kept while it is fresh and
    // complete, so that restarts do not churn CRL numbers.
    if (auto der = ReadFile(CrlPath(authority_.dir(), ca))) {
      if (auto crl = x509::Crl::FromDer(*der);
          crl && crl->IsSignedBy(authority_.certificate(ca).public_key()) && crl->crl_number()) {
        current = std::make_shared<PublishedCrl>(
            PublishedCrl{*crl, "\"crl-" + std::to_string(*crl->crl_number()) + "\"",
                         static_cast<int64_t>(crl->revoked().size())});
      }
    }
  }
  // A whole CRL kept from an earlier run carries no partitions: rebuild when they are due.
  bool partitions_missing = current && current->partitions.empty() && WantsPartitions(current->crl);
  if (current && !force && current->revoked_count == revoked && !partitions_missing) {
    int64_t this_update = current->crl.this_update();
    int64_t next_update = current->crl.next_update().value_or(this_update);
    bool half_life_passed = now >= this_update + (next_update - this_update) / 2;
    if (!half_life_passed) {
      std::lock_guard lock(mu_);
      if (!current_.count(name)) current_[name] = current;
      return false;
    }
  }
  int64_t number = current && current->crl.crl_number() ? *current->crl.crl_number() + 1
                                                        : NextCrlNumber(authority_.dir(), ca);
  IOTPKI_TRY(x509::Crl crl, BuildIssuerCrl(authority_, ca, number, now, options_.validity));
  fs::path der_path = CrlPath(authority_.dir(), ca);
  std::error_code ec;
  fs::create_directories(der_path.parent_path(), ec);
  IOTPKI_CHECK(WriteFileAtomic(fs::path(der_path).replace_extension(".pem"), crl.ToPem()));
  // The DER file last: it carries the CRL number a restart continues from.
  IOTPKI_CHECK(WriteFileAtomic(der_path, ByteView(crl.ToDer())));
  auto published = std::make_shared<PublishedCrl>(PublishedCrl{
      crl, "\"crl-" + std::to_string(number) + "\"", static_cast<int64_t>(crl.revoked().size())});
  if (WantsPartitions(crl)) {
    IOTPKI_TRY(published->partitions,
               BuildPartitionCrls(authority_, ca, crl, authority_.public_url()));
    fs::path dir = der_path.parent_path() / name;
    fs::create_directories(dir, ec);
    for (const auto& [month, part] : published->partitions) {
      IOTPKI_CHECK(WriteFileAtomic(dir / (month + ".crl"), ByteView(part.ToDer())));
    }
  }
  {
    std::lock_guard lock(mu_);
    current_[name] = published;
  }
  log::Info("crl.published", {{"ca", name},
                              {"crl_number", number},
                              {"entries", published->revoked_count},
                              {"partitions", static_cast<int64_t>(published->partitions.size())},
                              {"bytes", static_cast<int64_t>(crl.ToDer().size())}});
  return true;
}

Result<void> CrlPublisher::WriteBrokerFile() {
  if (options_.broker_crl.empty()) return {};
  std::vector<x509::Crl> crls;
  for (CaName ca : kIssuers) {
    if (auto c = Current(CaNameText(ca))) AppendBrokerCrls(*c, crls);
  }
  IOTPKI_CHECK(WriteFileAtomic(options_.broker_crl, CombinedPem(crls)));
  if (!options_.broker_reload.empty()) {
    // The command is the operator's own configuration, run by the shell like a cron line.
    int status = std::system(options_.broker_reload.c_str());
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    if (code != 0) {
      log::Warn("crl.broker_reload_failed",
                {{"command", options_.broker_reload}, {"exit_status", code}});
    }
  }
  return {};
}

Result<int> CrlPublisher::Refresh(bool force) {
  std::lock_guard serial(refresh_mu_);
  int changed = 0;
  for (CaName ca : kIssuers) {
    // The manufacturing key may be kept off the server (docs/operations.md); its CRL is then
    // published where that key is (`crl export`). The operational key is always required.
    if (ca == CaName::kManufacturing && authority_.issuer_key(ca) == nullptr) continue;
    IOTPKI_TRY(bool rebuilt, RefreshOne(ca, force));
    if (rebuilt) ++changed;
  }
  bool first_broker_write = !options_.broker_crl.empty() && !fs::exists(options_.broker_crl);
  if (changed > 0 || first_broker_write) {
    IOTPKI_CHECK(WriteBrokerFile());
    std::function<void()> callback;
    {
      std::lock_guard lock(mu_);
      callback = on_change_;
    }
    if (callback) callback();
  }
  return changed;
}

void CrlPublisher::Start() {
  thread_ = std::thread([this] {
    std::unique_lock lock(stop_mu_);
    while (!stop_) {
      lock.unlock();
      if (auto r = Refresh(); !r) {
        log::Warn("crl.refresh_failed",
                  {{"error", r.error().message()}, {"detail", r.error().detail()}});
      }
      lock.lock();
      stop_cv_.wait_for(lock, options_.poll, [this] { return stop_; });
    }
  });
}

void CrlPublisher::Stop() {
  {
    std::lock_guard lock(stop_mu_);
    stop_ = true;
  }
  stop_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

}  // namespace iotpki::ca
