// HTTP requests and responses as plain values, and the handler signature. The transport (server.h)
// fills a Request from the wire and the client's TLS certificate; handlers return a Response.
// Nothing here names Beast or OpenSSL, so handler code stays free of transport details; the
// client's certificate is an x509::Certificate value.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "iotpki/common/bytes.h"
#include "iotpki/x509/certificate.h"

namespace iotpki::server {

// The certificate a client presented in the TLS handshake. The handshake accepts any certificate
// whose CertificateVerify signature checks (so the client holds its key); whether the chain is
// trusted is recorded here for the handler to judge, so that a refusal can be an HTTP answer with
// a reason rather than a failed handshake.
struct ClientCertificate {
  // The leaf, made from the handshake's own parse (x509::Certificate::FromParsed), so that no
  // handler parses it again. Absent if the x509 layer cannot read it (a key type it does not
  // support, say); the handshake does not depend on that.
  std::optional<x509::Certificate> certificate;
  // True if the leaf verified, at handshake time, as issued by one of
  // ServerOptions::client_issuers (signature, validity periods, extensions).
  bool chain_valid = false;
  // OpenSSL's reason when !chain_valid, e.g. "certificate has expired".
  std::string verify_error;
  // Index into ServerOptions::client_issuers of the CA that signed the leaf; -1 if !chain_valid.
  int issuer_index = -1;
};

struct Request {
  std::string method;  // "GET", "POST", ...
  std::string path;    // the target without the query
  std::string query;   // after '?', without it
  std::string content_type;
  std::string accept;
  std::string if_none_match;  // the If-None-Match header, as sent
  // Host, Origin, Sec-Fetch-Site and X-CSRF-Token as sent (empty when absent): the admin listener's
  // CSRF defence compares them (admin/admin_api.h).
  std::string host;
  std::string origin;
  std::string sec_fetch_site;
  std::string csrf_token;  // X-CSRF-Token
  std::string body;
  std::optional<ClientCertificate> client_cert;
  std::string peer;  // "127.0.0.1:51234"
  // Segments matched by "{param}" route patterns, in order.
  std::vector<std::string> params;
  // 16 random hex digits naming this request in the server's log and in the X-Request-Id
  // response header; error bodies quote it so that a client's report leads to the log line.
  std::string id;
};

// What the transport's log line about a request says beyond what the transport sees itself,
// filled by the handler. Never a secret (no token, key or passphrase): the line is written as is.
struct ResponseLog {
  // The device the request is about, when the handler knows it better than the client
  // certificate's CN (the JSON API without one).
  std::string device_id;
  // Why the request was refused or failed: a canonical code name ("permission_denied"), the
  // message the client was shown, and what only the operator may see (OpenSSL's queue, SQL,
  // file names).
  std::string error;
  std::string reason;
  std::string detail;
};

struct Response {
  int status = 200;
  std::string content_type;
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  ResponseLog log;
};

using Handler = std::function<Response(const Request&)>;

// "Not Found", "Payload Too Large", ...
std::string_view ReasonPhrase(int status);

}  // namespace iotpki::server
