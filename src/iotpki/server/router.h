// Routing by method and path. Patterns are literal segments and "{name}" placeholders, each
// matching exactly one non-empty segment: "/.well-known/est/{label}/simpleenroll".
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "iotpki/server/http.h"

namespace iotpki::server {

struct RouteOptions {
  // The handler runs on the connection's I/O thread instead of the handler pool, saving the two
  // thread hand-offs per request. Only for handlers that never wait: no write transaction, no
  // fsync, no network; at most a local index read and some CPU (the OCSP responder).
  bool on_io_thread = false;
};

class Router {
 public:
  // `name` labels the route in metrics ("est_simpleenroll"). Routes are tried in the order they
  // were added; the first whose pattern and method match wins.
  void Add(std::string method, std::string_view pattern, std::string name, Handler handler,
           RouteOptions options = {});

  struct Match {
    const Handler* handler = nullptr;  // null: no route for this path (or method)
    std::string name;                  // the route's name, or "unknown"
    std::vector<std::string> params;
    // The path exists but not for this method: the methods it accepts, for 405's Allow header.
    std::vector<std::string> allowed_methods;
    bool on_io_thread = false;  // the route's RouteOptions
  };
  // Routes must not be added while Find runs; Find itself is thread-safe.
  Match Find(std::string_view method, std::string_view path) const;

 private:
  struct Route {
    std::string method;
    std::vector<std::string> segments;  // "{...}" for placeholders
    std::string name;
    Handler handler;
    RouteOptions options;
  };
  std::vector<Route> routes_;
};

}  // namespace iotpki::server
