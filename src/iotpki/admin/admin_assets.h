// The dashboard's static files (src/iotpki/admin/pages/), embedded in the binary at build time by
// embed_assets.cmake: no file is read and nothing is fetched at run time.
#pragma once

#include <span>
#include <string_view>

namespace iotpki::admin {

struct Asset {
  std::string_view name;  // "index.html", "app.js", ...
  std::string_view content_type;
  std::string_view body;
};

std::span<const Asset> Assets();
// Null for a name that is not embedded.
const Asset* FindAsset(std::string_view name);

}  // namespace iotpki::admin
