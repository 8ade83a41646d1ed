// A minimal HTTPS client for the device agent: one request per connection, TLS 1.2+, the server
// verified against explicit trust anchors and its name, an optional client certificate. Beast
// stays in https_client.cc.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "iotpki/common/bytes.h"
#include "iotpki/common/error.h"
#include "iotpki/crypto/signer.h"

typedef struct ssl_ctx_st SSL_CTX;

namespace iotpki::agent {

struct ServerAddress {
  std::string host;  // a DNS name or an IP address (without brackets)
  uint16_t port = 443;
};

// "https://HOST[:PORT][/]" (IPv6 as "[::1]"). InvalidArgument for anything else.
Result<ServerAddress> ParseServerUrl(std::string_view url);

struct TlsSettings {
  // DER trust anchors for the server's chain (the fleet's root CA); required.
  std::vector<Bytes> trust_anchors;
  // Client authentication: the chain to present (leaf first, DER) and its key; empty/null for
  // none. The key must outlive the request.
  std::vector<Bytes> client_chain;
  const crypto::Signer* client_key = nullptr;
  // Connect, handshake, request and response together.
  std::chrono::seconds timeout{30};
};

struct HttpResponse {
  int status = 0;
  std::string content_type;
  std::string body;
};

// The TLS client context of HttpsRequest for a connection made by another library (the MQTT
// client): TLS 1.2+, the peer verified against the trust anchors and named `host` (a DNS name
// or an IP address), the client certificate and key when given (a key in a token or TPM signs
// through its TLS face: tls.client_key must outlive the context and every connection made from
// it). InvalidArgument for unusable settings.
Result<std::shared_ptr<SSL_CTX>> MakeClientTlsContext(const TlsSettings& tls,
                                                      const std::string& host);

// Sends one request on a new connection and reads the whole response (bodies up to 1 MiB).
// Errors, which the agent turns into its exit codes:
//   Unavailable      the server cannot be reached (resolution, connection refused, timeout);
//   Unauthenticated  the TLS handshake failed (server certificate not trusted or not for this
//                    name, client certificate refused, no common protocol);
//   DataLoss         the answer is not HTTP, or is cut short;
//   InvalidArgument  unusable settings (no trust anchor, a bad certificate or key).
// Any HTTP status is a response, not an error.
// `accept`, when not empty, is sent as the Accept header.
Result<HttpResponse> HttpsRequest(const ServerAddress& server, const TlsSettings& tls,
                                  std::string_view method, std::string_view target,
                                  std::string_view content_type, std::string_view body,
                                  std::string_view accept = {});

}  // namespace iotpki::agent
