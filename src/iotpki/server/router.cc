#include "iotpki/server/router.h"

#include <algorithm>

namespace iotpki::server {
namespace {

// "/a/b/" -> {"a", "b", ""}: a trailing slash is a distinct (empty) segment, so "/x/" does not
// match "/x".
std::vector<std::string_view> Split(std::string_view path) {
  std::vector<std::string_view> out;
  if (path.empty() || path[0] != '/') return out;
  path.remove_prefix(1);
  for (;;) {
    size_t slash = path.find('/');
    out.push_back(path.substr(0, slash));
    if (slash == std::string_view::npos) break;
    path.remove_prefix(slash + 1);
  }
  return out;
}

bool IsPlaceholder(std::string_view s) {
  return s.size() >= 2 && s.front() == '{' && s.back() == '}';
}

}  // namespace

void Router::Add(std::string method, std::string_view pattern, std::string name, Handler handler,
                 RouteOptions options) {
  Route r{std::move(method), {}, std::move(name), std::move(handler), options};
  for (auto s : Split(pattern)) r.segments.emplace_back(s);
  routes_.push_back(std::move(r));
}

Router::Match Router::Find(std::string_view method, std::string_view path) const {
  Match m;
  m.name = "unknown";
  auto segments = Split(path);
  for (const Route& r : routes_) {
    if (r.segments.size() != segments.size()) continue;
    std::vector<std::string> params;
    bool ok = true;
    for (size_t i = 0; i < segments.size() && ok; ++i) {
      if (IsPlaceholder(r.segments[i])) {
        if (segments[i].empty()) ok = false;
        params.emplace_back(segments[i]);
      } else {
        ok = r.segments[i] == segments[i];
      }
    }
    if (!ok) continue;
    if (r.method != method) {
      if (std::find(m.allowed_methods.begin(), m.allowed_methods.end(), r.method) ==
          m.allowed_methods.end()) {
        m.allowed_methods.push_back(r.method);
      }
      m.name = r.name;
      continue;
    }
    m.handler = &r.handler;
    m.on_io_thread = r.options.on_io_thread;
    m.name = r.name;
    m.params = std::move(params);
    m.allowed_methods.clear();
    return m;
  }
  return m;
}

}  // namespace iotpki::server
