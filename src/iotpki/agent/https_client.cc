#include "iotpki/agent/https_client.h"

#include <arpa/inet.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include "iotpki/crypto/ossl.h"

namespace iotpki::agent {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
namespace ssl = net::ssl;
using tcp = net::ip::tcp;
using beast::error_code;

bool IsIpAddress(const std::string& s) {
  unsigned char buf[16];
  return inet_pton(AF_INET, s.c_str(), buf) == 1 || inet_pton(AF_INET6, s.c_str(), buf) == 1;
}

Result<ossl::UniquePtr<X509>> ParseDer(const Bytes& der) {
  const unsigned char* p = der.data();
  auto x = ossl::Own(d2i_X509(nullptr, &p, static_cast<long>(der.size())));
  if (!x || p != der.data() + der.size()) {
    return Fail(ossl::Drain(Code::kInvalidArgument, "not a DER certificate"));
  }
  return x;
}

Result<ossl::UniquePtr<SSL_CTX>> ClientContext(const TlsSettings& tls) {
  if (tls.trust_anchors.empty()) {
    return Fail(Code::kInvalidArgument, "no trust anchor to verify the server with");
  }
  auto ctx = ossl::Own(SSL_CTX_new(TLS_client_method()));
  if (!ctx) return Fail(ossl::Drain(Code::kInternal, "cannot create a TLS context"));
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
  X509_STORE* store = SSL_CTX_get_cert_store(ctx.get());
  for (const Bytes& der : tls.trust_anchors) {
    IOTPKI_TRY(auto anchor, ParseDer(der));
    if (X509_STORE_add_cert(store, anchor.get()) != 1) {
      return Fail(ossl::Drain(Code::kInvalidArgument, "unusable trust anchor"));
    }
  }
  if (!tls.client_chain.empty()) {
    if (tls.client_key == nullptr) {
      return Fail(Code::kInvalidArgument, "a client certificate needs its key");
    }
    // A key in a token or TPM signs the handshake through its TLS face (crypto/signer.h).
    IOTPKI_TRY(auto key, crypto::TlsKeyOf(*tls.client_key));
    IOTPKI_TRY(auto leaf, ParseDer(tls.client_chain[0]));
    if (SSL_CTX_use_certificate(ctx.get(), leaf.get()) != 1) {
      return Fail(ossl::Drain(Code::kInvalidArgument, "unusable client certificate"));
    }
    for (size_t i = 1; i < tls.client_chain.size(); ++i) {
      IOTPKI_TRY(auto ca, ParseDer(tls.client_chain[i]));
      if (SSL_CTX_add1_chain_cert(ctx.get(), ca.get()) != 1) {
        return Fail(ossl::Drain(Code::kInvalidArgument, "unusable client chain certificate"));
      }
    }
    if (SSL_CTX_use_PrivateKey(ctx.get(), key.get()) != 1 ||
        SSL_CTX_check_private_key(ctx.get()) != 1) {
      return Fail(ossl::Drain(Code::kInvalidArgument,
                              "the client key does not match the client certificate"));
    }
  }
  return ctx;
}

// The peer's certificate must name the host asked for (RFC 6125): a DNS name or an IP address.
Result<void> VerifyName(X509_VERIFY_PARAM* param, const std::string& host) {
  bool ok = IsIpAddress(host) ? X509_VERIFY_PARAM_set1_ip_asc(param, host.c_str()) == 1
                              : X509_VERIFY_PARAM_set1_host(param, host.c_str(), 0) == 1;
  if (!ok) return Fail(ossl::Drain(Code::kInvalidArgument, "cannot set the server name to verify"));
  return {};
}

std::string Where(const ServerAddress& s) {
  return (s.host.find(':') != std::string::npos ? "[" + s.host + "]" : s.host) + ":" +
         std::to_string(s.port);
}

}  // namespace

Result<std::shared_ptr<SSL_CTX>> MakeClientTlsContext(const TlsSettings& tls,
                                                      const std::string& host) {
  IOTPKI_TRY(auto ctx, ClientContext(tls));
  // Every SSL made from the context inherits its verification parameters, the name included.
  IOTPKI_CHECK(VerifyName(SSL_CTX_get0_param(ctx.get()), host));
  return std::shared_ptr<SSL_CTX>(ctx.release(), SSL_CTX_free);
}

Result<ServerAddress> ParseServerUrl(std::string_view url) {
  auto bad = [&] {
    return Fail(Code::kInvalidArgument,
                "--server must be https://HOST[:PORT], not '" + std::string(url) + "'");
  };
  constexpr std::string_view kScheme = "https://";
  if (url.substr(0, kScheme.size()) != kScheme) return bad();
  std::string_view rest = url.substr(kScheme.size());
  if (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
  if (rest.empty() || rest.find('/') != std::string_view::npos) return bad();
  ServerAddress out;
  std::string_view port;
  if (rest.front() == '[') {
    size_t close = rest.find(']');
    if (close == std::string_view::npos) return bad();
    out.host = std::string(rest.substr(1, close - 1));
    rest.remove_prefix(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return bad();
      port = rest.substr(1);
    }
  } else {
    size_t colon = rest.find(':');
    out.host = std::string(rest.substr(0, colon));
    if (colon != std::string_view::npos) port = rest.substr(colon + 1);
  }
  if (out.host.empty()) return bad();
  if (!port.empty() || rest.find(':') != std::string_view::npos) {
    if (port.empty() || port.size() > 5 ||
        port.find_first_not_of("0123456789") != std::string_view::npos) {
      return bad();
    }
    int p = std::stoi(std::string(port));
    if (p < 1 || p > 65535) return bad();
    out.port = static_cast<uint16_t>(p);
  }
  return out;
}

Result<HttpResponse> HttpsRequest(const ServerAddress& server, const TlsSettings& tls,
                                  std::string_view method, std::string_view target,
                                  std::string_view content_type, std::string_view body,
                                  std::string_view accept) {
  IOTPKI_TRY(auto native, ClientContext(tls));
  net::io_context ioc;
  ssl::context ctx(native.release());
  beast::ssl_stream<beast::tcp_stream> stream(ioc, ctx);
  SSL* ssl = stream.native_handle();
  // The server's certificate must name the host we asked for (RFC 6125).
  bool ip = IsIpAddress(server.host);
  if (ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), server.host.c_str()) != 1
         : (SSL_set_tlsext_host_name(ssl, server.host.c_str()) != 1 ||
            SSL_set1_host(ssl, server.host.c_str()) != 1)) {
    return Fail(ossl::Drain(Code::kInvalidArgument, "cannot set the server name to verify"));
  }

  http::request<http::string_body> req;
  req.method(http::string_to_verb(beast::string_view(method.data(), method.size())));
  req.target(beast::string_view(target.data(), target.size()));
  req.version(11);
  req.set(http::field::host, Where(server));
  req.set(http::field::user_agent, "iotpki-agent");
  if (!accept.empty())
    req.set(http::field::accept, beast::string_view(accept.data(), accept.size()));
  if (!content_type.empty()) {
    req.set(http::field::content_type,
            beast::string_view(content_type.data(), content_type.size()));
  }
  if (!body.empty() || method == "POST") req.body() = std::string(body);
  req.keep_alive(false);
  req.prepare_payload();

  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(1 << 20);
  Result<HttpResponse> result =
      Fail(Code::kUnavailable, "no answer from " + Where(server) + " (timeout)");
  tcp::resolver resolver(ioc);
  auto& tcp_stream = beast::get_lowest_layer(stream);
  tcp_stream.expires_after(tls.timeout);

  auto on_read = [&](error_code ec, size_t) {
    if (ec == beast::error::timeout) {
      result = Fail(Code::kUnavailable, "no answer from " + Where(server) + " (timeout)");
    } else if (ec == net::ssl::error::stream_truncated || ec == net::error::connection_reset ||
               ec == net::error::eof || ec == net::error::broken_pipe ||
               ec == http::error::end_of_stream || ec == http::error::partial_message) {
      // The request went out and the connection ended without (all of) an answer: a server
      // stopped or killed, perhaps after acting on it. Unavailable (ask again) rather than an
      // authentication failure or a bad answer, on which a rotation would roll back a
      // confirmation the server may have committed.
      result = Fail(Code::kUnavailable, "connection to " + Where(server) +
                                            " lost before its answer (the server may have acted "
                                            "on the request): " +
                                            ec.message());
    } else if (ec && ec.category() == net::error::get_ssl_category()) {
      // TLS 1.3 clients learn that their certificate was refused only here, from an alert.
      result =
          Fail(Code::kUnauthenticated, "TLS failure with " + Where(server) + ": " + ec.message());
    } else if (ec) {
      result =
          Fail(Code::kDataLoss, "incomplete answer from " + Where(server) + ": " + ec.message());
    } else {
      auto& msg = parser.get();
      result = HttpResponse{.status = static_cast<int>(msg.result_int()),
                            .content_type = std::string(msg[http::field::content_type]),
                            .body = std::move(msg.body())};
    }
  };
  auto on_write = [&](error_code ec, size_t) {
    if (ec) {
      result =
          Fail(Code::kUnavailable, "connection to " + Where(server) + " lost: " + ec.message());
      return;
    }
    http::async_read(stream, buffer, parser, on_read);
  };
  auto on_handshake = [&](error_code ec) {
    if (ec == beast::error::timeout) {
      result = Fail(Code::kUnavailable, "no answer from " + Where(server) + " (timeout)");
      return;
    }
    long verify = SSL_get_verify_result(ssl);
    if (ec && verify == X509_V_OK && ec.category() != net::error::get_ssl_category()) {
      // Closed or reset before TLS said anything: an overloaded or stopping server.
      result = Fail(Code::kUnavailable, "connection to " + Where(server) +
                                            " closed during the TLS handshake: " + ec.message());
      return;
    }
    if (ec) {
      std::string why = ec.message();
      if (verify != X509_V_OK) {
        why = std::string("server certificate not accepted: ") +
              X509_verify_cert_error_string(verify);
      }
      result =
          Fail(Code::kUnauthenticated, "TLS handshake with " + Where(server) + " failed: " + why);
      return;
    }
    http::async_write(stream, req, on_write);
  };
  auto on_connect = [&](error_code ec, const tcp::endpoint&) {
    if (ec) {
      result = Fail(Code::kUnavailable, "cannot connect to " + Where(server) + ": " + ec.message());
      return;
    }
    stream.async_handshake(ssl::stream_base::client, on_handshake);
  };
  resolver.async_resolve(server.host, std::to_string(server.port),
                         [&](error_code ec, tcp::resolver::results_type results) {
                           if (ec) {
                             result = Fail(Code::kUnavailable,
                                           "cannot resolve " + server.host + ": " + ec.message());
                             return;
                           }
                           tcp_stream.async_connect(results, on_connect);
                         });
  ioc.run();
  error_code ignored;
  tcp_stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
  tcp_stream.socket().close(ignored);
  ossl::ClearErrors();
  return result;
}

}  // namespace iotpki::agent
