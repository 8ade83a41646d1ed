#include "iotpki/enroll/ocsp_responder.h"

#include <algorithm>

#include "iotpki/enroll/errors.h"

namespace iotpki::enroll {

namespace {

constexpr std::string_view kRequestType = "application/ocsp-request";
constexpr std::string_view kResponseType = "application/ocsp-response";
constexpr std::string_view kHashes[] = {"sha1", "sha256", "sha384", "sha512"};
// iotpki_ocsp_answers_total's statuses: per CertID, then per refused request.
constexpr std::string_view kStatuses[] = {"good",         "revoked",   "unknown",       "malformed",
                                          "unauthorized", "try_later", "internal_error"};

// GET's request: base64 (RFC 6960 A.1), percent-encoded in the path; the base64url alphabet
// (with or without padding) is accepted too.
Result<Bytes> DecodeGetRequest(std::string_view segment) {
  std::string b64;
  b64.reserve(segment.size());
  for (size_t i = 0; i < segment.size(); ++i) {
    char c = segment[i];
    if (c == '%' && i + 2 < segment.size()) {
      int hi = HexDigitValue(segment[i + 1]), lo = HexDigitValue(segment[i + 2]);
      if (hi < 0 || lo < 0) return Fail(Code::kInvalidArgument, "bad percent-encoding");
      c = static_cast<char>(hi * 16 + lo);
      i += 2;
    } else if (c == '%') {
      return Fail(Code::kInvalidArgument, "bad percent-encoding");
    }
    if (c == '-') c = '+';
    if (c == '_') c = '/';
    b64.push_back(c);
  }
  while (b64.size() % 4 != 0) b64.push_back('=');
  return Base64Decode(b64);
}

}  // namespace

OcspResponder::OcspResponder(store::Store& store, const Clock& clock, server::Registry& metrics,
                             OcspOptions options)
    : store_(store), clock_(clock), metrics_(metrics), options_(options) {
  for (std::string_view status : kStatuses) {
    counters_.emplace_back(
        status, &metrics_.GetCounter("iotpki_ocsp_answers_total",
                                     "OCSP answers: per CertID good, revoked or unknown; per "
                                     "request malformed, unauthorized, try_later or internal_error",
                                     {{"status", std::string(status)}}));
  }
}

void OcspResponder::SetIssuer(std::string issuer_name, const x509::Certificate& issuer,
                              const x509::Certificate& responder,
                              std::shared_ptr<const crypto::Signer> key) {
  auto entry = std::make_shared<Issuer>(
      Issuer{std::move(issuer_name), issuer, responder, std::move(key), {}, {}, {}, {}});
  if (auto signing = x509::OcspSigningContext::Make(*entry->key)) entry->signing = *signing;
  if (auto response = x509::OcspResponseTemplate::Make(responder, *entry->key)) {
    entry->response = std::move(*response);
  } else {
    entry->refusal = response.error().ToString();
  }
  for (auto hash : kHashes) {
    if (auto h = x509::OcspIssuerHashesOf(issuer, hash)) entry->hashes.emplace(hash, *h);
  }
  std::lock_guard lock(mu_);
  std::erase_if(issuers_, [&](const auto& i) { return i->name == entry->name; });
  issuers_.push_back(std::move(entry));
  // Answers signed by the previous responder: simplest to start over.
  cache_.clear();
}

std::shared_ptr<const OcspResponder::Issuer> OcspResponder::IssuerOf(
    const x509::OcspCertId& id) const {
  std::lock_guard lock(mu_);
  for (const auto& issuer : issuers_) {
    auto it = issuer->hashes.find(id.hash);
    if (it != issuer->hashes.end() && it->second.name_hash == id.issuer_name_hash &&
        it->second.key_hash == id.issuer_key_hash) {
      return issuer;
    }
  }
  return nullptr;
}

void OcspResponder::Count(std::string_view status) {
  for (const auto& [name, counter] : counters_) {
    if (name == status) return counter->Inc();
  }
}

OcspResponder::Answer OcspResponder::Respond(ByteView request_der) {
  auto failed = [this](x509::OcspResponseStatus status, std::string_view name, std::string reason) {
    Count(name);
    return Answer{x509::OcspErrorResponse(status), 0, std::move(reason)};
  };
  auto request = x509::ParseOcspRequest(request_der);
  if (!request) {
    return failed(x509::OcspResponseStatus::kMalformedRequest, "malformed",
                  request.error().message());
  }
  // One response has one signer: every CertID must name the same CA of ours.
  auto issuer = IssuerOf(request->cert_ids[0]);
  if (!issuer) {
    return failed(x509::OcspResponseStatus::kUnauthorized, "unauthorized",
                  "the request names an issuer this responder does not serve");
  }
  for (size_t i = 1; i < request->cert_ids.size(); ++i) {
    if (IssuerOf(request->cert_ids[i]) != issuer) {
      return failed(x509::OcspResponseStatus::kUnauthorized, "unauthorized",
                    "the request names certificates of several issuers");
    }
  }

  int64_t now = clock_.NowUnix();
  std::vector<x509::OcspSingleAnswer> answers;
  answers.reserve(request->cert_ids.size());
  for (const auto& id : request->cert_ids) {
    x509::OcspSingleAnswer a{&id, x509::OcspCertStatus::kUnknown,
                             0,   x509::RevocationReason::kUnspecified,
                             now, now + options_.validity};
    auto record = store_.GetCertificateStatus(ToHex(id.serial));
    if (!record && record.error().code() != Code::kNotFound) {
      return failed(x509::OcspResponseStatus::kTryLater, "try_later", record.error().ToString());
    }
    // A serial this CA never issued is unknown, even if another CA issued it.
    if (record && record->issuer == issuer->name) {
      if (record->status == store::CertStatus::kRevoked) {
        a.status = x509::OcspCertStatus::kRevoked;
        a.revoked_at = record->revoked_at.value_or(0);
        a.reason = record->revocation_reason.value_or(x509::RevocationReason::kUnspecified);
      } else {
        a.status = x509::OcspCertStatus::kGood;
      }
    }
    answers.push_back(a);
  }

  // A single good answer without nonce is served from the cache while it is in its first half.
  bool cacheable =
      answers.size() == 1 && !request->nonce && answers[0].status == x509::OcspCertStatus::kGood;
  const Bytes& key = request->cert_ids[0].der;
  if (cacheable) {
    std::lock_guard lock(mu_);
    auto it = cache_.find(key);
    if (it != cache_.end() && now < it->second.this_update + options_.validity / 2) {
      Count("good");
      return Answer{it->second.der, it->second.this_update + options_.validity - now, {}};
    }
  }
  if (!issuer->response) {
    return failed(x509::OcspResponseStatus::kInternalError, "internal_error", issuer->refusal);
  }
  auto der =
      issuer->response->Write(*issuer->key, answers, request->nonce, now, issuer->signing.get());
  if (!der) {
    return failed(x509::OcspResponseStatus::kInternalError, "internal_error",
                  der.error().ToString());
  }
  for (const auto& a : answers) {
    Count(a.status == x509::OcspCertStatus::kGood      ? "good"
          : a.status == x509::OcspCertStatus::kRevoked ? "revoked"
                                                       : "unknown");
  }
  if (cacheable) {
    std::lock_guard lock(mu_);
    // Not an answer signed by a responder replaced meanwhile (SetIssuer, which emptied the
    // cache while this one was being signed): it would be served after the rotation, up to the
    // old certificate's end and past it.
    bool current = std::find(issuers_.begin(), issuers_.end(), issuer) != issuers_.end();
    if (current) {
      if (cache_.size() >= options_.max_cached) cache_.clear();
      cache_[key] = Cached{*der, now};
    }
  }
  bool http_cacheable =
      answers.size() == 1 && !request->nonce && answers[0].status != x509::OcspCertStatus::kUnknown;
  return Answer{std::move(*der), http_cacheable ? options_.validity : 0, {}};
}

server::Response OcspResponder::Render(const server::Request& req, ByteView der) {
  Answer answer = Respond(der);
  server::Response r;
  r.content_type = std::string(kResponseType);
  r.body.assign(answer.der.begin(), answer.der.end());
  // RFC 5019 6.2: caches may keep an answer until its nextUpdate; POST answers are not cached.
  r.headers.push_back({"Cache-Control", req.method == "GET" && answer.max_age > 0
                                            ? "public, max-age=" + std::to_string(answer.max_age) +
                                                  ", no-transform, must-revalidate"
                                            : "no-store"});
  if (!answer.log_reason.empty()) {
    r.log.error = "ocsp";
    r.log.reason = answer.log_reason;
  }
  return r;
}

void OcspResponder::Mount(server::Router& router) {
  // An answer is a status read and at most one signature: no reason to pay two thread hand-offs.
  server::RouteOptions route{.on_io_thread = options_.on_io_thread};
  router.Add(
      "POST", "/ocsp", "ocsp",
      [this](const server::Request& req) {
        if (!HasMediaType(req.content_type, kRequestType)) {
          return UnsupportedMediaType(kRequestType, ErrorFormat::kEst, req);
        }
        return Render(req, AsBytes(req.body));
      },
      route);
  router.Add(
      "GET", "/ocsp/{request}", "ocsp",
      [this](const server::Request& req) {
        auto der = DecodeGetRequest(req.params[0]);
        if (!der) return Render(req, ByteView());  // malformedRequest
        return Render(req, *der);
      },
      route);
}

}  // namespace iotpki::enroll
