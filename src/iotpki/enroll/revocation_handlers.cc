#include "iotpki/enroll/revocation_handlers.h"

#include <algorithm>

#include "iotpki/enroll/errors.h"

namespace iotpki::enroll {

namespace {

// How long a cache may keep a CRL: a revocation reaches the served CRL within seconds, so a
// cache should not hold it much longer than that.
constexpr int64_t kCrlMaxAge = 60;

constexpr std::string_view kIssuerNames[] = {"manufacturing", "operational"};

// A CRL answer: `crl` as DER (ext ".crl") or PEM, with its ETag and Cache-Control.
server::Response CrlAnswer(const server::Request& req, const x509::Crl& crl, std::string etag,
                           const std::string& ext, int64_t now) {
  int64_t next = crl.next_update().value_or(now);
  int64_t max_age = std::clamp<int64_t>(next - now, 0, kCrlMaxAge);
  if (ext != ".crl") etag = etag.substr(0, etag.size() - 1) + "-pem\"";
  server::Response r;
  r.headers = {{"ETag", etag},
               {"Cache-Control", "public, max-age=" + std::to_string(max_age) + ", no-transform"}};
  if (!req.if_none_match.empty() && (req.if_none_match == etag || req.if_none_match == "*")) {
    r.status = 304;
    return r;
  }
  if (ext == ".crl") {
    r.content_type = "application/pkix-crl";
    const Bytes& der = crl.ToDer();
    r.body.assign(der.begin(), der.end());
  } else {
    r.content_type = "application/x-pem-file";
    r.body = crl.ToPem();
  }
  return r;
}

// "2026-12.crl" -> ("2026-12", ".crl"); empty month for anything else.
std::pair<std::string, std::string> PartitionFile(const std::string& file) {
  size_t dot = file.rfind('.');
  if (dot != 7) return {};
  std::string month = file.substr(0, 7), ext = file.substr(7);
  bool digits = true;
  for (size_t i : {0, 1, 2, 3, 5, 6}) digits = digits && month[i] >= '0' && month[i] <= '9';
  if (!digits || month[4] != '-' || month.substr(5) < "01" || month.substr(5) > "12" ||
      (ext != ".crl" && ext != ".pem")) {
    return {};
  }
  return {month, ext};
}

}  // namespace

void MountCrl(server::Router& router, const ca::CrlPublisher& publisher, const Clock& clock,
              server::Registry& metrics) {
  router.Add("GET", "/crl/{file}", "crl", [&publisher, &clock](const server::Request& req) {
    const std::string& file = req.params[0];
    size_t dot = file.rfind('.');
    std::string name = file.substr(0, dot);
    std::string ext = dot == std::string::npos ? "" : file.substr(dot);
    bool known =
        std::find(std::begin(kIssuerNames), std::end(kIssuerNames), name) != std::end(kIssuerNames);
    if (!known || (ext != ".crl" && ext != ".pem")) {
      return ErrorResponse(Error(Code::kNotFound,
                                 "no such CRL: ask for /crl/manufacturing.crl or "
                                 "/crl/operational.crl"),
                           ErrorFormat::kEst, req);
    }
    auto current = publisher.Current(name);
    if (!current) {
      return ErrorResponse(Error(Code::kUnavailable, "the CRL is not built yet; retry shortly"),
                           ErrorFormat::kEst, req);
    }
    return CrlAnswer(req, current->crl, current->etag, ext, clock.NowUnix());
  });

  // A partition (docs/formats.md, CRLs): the partition CRL when the CA's CRL is partitioned,
  // otherwise the whole CRL, which answers for every certificate of the CA.
  router.Add("GET", "/crl/{ca}/{file}", "crl", [&publisher, &clock](const server::Request& req) {
    const std::string& name = req.params[0];
    auto [month, ext] = PartitionFile(req.params[1]);
    bool known =
        std::find(std::begin(kIssuerNames), std::end(kIssuerNames), name) != std::end(kIssuerNames);
    if (!known || month.empty()) {
      return ErrorResponse(Error(Code::kNotFound,
                                 "no such CRL: ask for /crl/operational/YYYY-MM.crl or "
                                 "/crl/manufacturing/YYYY-MM.crl"),
                           ErrorFormat::kEst, req);
    }
    auto current = publisher.Current(name);
    if (!current) {
      return ErrorResponse(Error(Code::kUnavailable, "the CRL is not built yet; retry shortly"),
                           ErrorFormat::kEst, req);
    }
    if (current->partitions.empty()) {
      return CrlAnswer(req, current->crl, current->etag, ext, clock.NowUnix());
    }
    auto it = current->partitions.find(month);
    if (it == current->partitions.end()) {
      return ErrorResponse(
          Error(Code::kNotFound, "no CRL partition " + month + " (no certificate of the " + name +
                                     " CA can have been issued then)"),
          ErrorFormat::kEst, req);
    }
    std::string etag = current->etag.substr(0, current->etag.size() - 1) + "-" + month + "\"";
    return CrlAnswer(req, it->second, etag, ext, clock.NowUnix());
  });

  metrics.AddGauge("iotpki_crl_bytes", "Size of the published CRL, by CA", [&publisher] {
    server::Registry::GaugeSamples out;
    for (auto name : kIssuerNames) {
      if (auto c = publisher.Current(name)) {
        out.push_back({{{"ca", std::string(name)}}, static_cast<double>(c->crl.ToDer().size())});
      }
    }
    return out;
  });
  metrics.AddGauge("iotpki_crl_age_seconds", "Seconds since the published CRL's thisUpdate, by CA",
                   [&publisher, &clock] {
                     server::Registry::GaugeSamples out;
                     int64_t now = clock.NowUnix();
                     for (auto name : kIssuerNames) {
                       if (auto c = publisher.Current(name)) {
                         out.push_back({{{"ca", std::string(name)}},
                                        static_cast<double>(now - c->crl.this_update())});
                       }
                     }
                     return out;
                   });
  metrics.AddGauge(
      "iotpki_crl_entries", "Revoked certificates listed in the published CRL, by CA",
      [&publisher] {
        server::Registry::GaugeSamples out;
        for (auto name : kIssuerNames) {
          if (auto c = publisher.Current(name)) {
            out.push_back({{{"ca", std::string(name)}}, static_cast<double>(c->revoked_count)});
          }
        }
        return out;
      });
}

}  // namespace iotpki::enroll
