#include "bench_util.h"

#include <stdio.h>
#include <stdlib.h>

#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <stdexcept>
#include <vector>

namespace iotpki::bench {

OpensslSpeed MeasureOpensslSpeed(int seconds, int multi, bool ecdh) {
  std::string cmd = "openssl speed -seconds " + std::to_string(seconds);
  if (multi > 1) cmd += " -multi " + std::to_string(multi);
  cmd += " ecdsap256";
  if (ecdh) cmd += " ecdhp256";
  cmd += " 2>/dev/null";
  OpensslSpeed out;
  FILE* pipe = ::popen(cmd.c_str(), "r");
  if (pipe == nullptr) return out;
  char line[512];
  while (::fgets(line, sizeof line, pipe) != nullptr) {
    std::string l(line);
    // " 256 bits ecdsa (nistp256)   0.0000s   0.0001s  48216.7  16479.7"
    // " 256 bits ecdh (nistp256)   0.0000s  21309.1"
    // With -multi the rows read "ecdsa (nistp256) ... sign/s verify/s" as well.
    std::istringstream in(l);
    std::vector<std::string> words;
    for (std::string w; in >> w;) words.push_back(w);
    if (words.size() < 4 || l.find("nistp256") == std::string::npos) continue;
    try {
      if (l.find("ecdsa") != std::string::npos && words.size() >= 2) {
        out.ecdsa_sign = std::stod(words[words.size() - 2]);
        out.ecdsa_verify = std::stod(words[words.size() - 1]);
      } else if (l.find("ecdh") != std::string::npos) {
        out.ecdh = std::stod(words.back());
      }
    } catch (const std::exception&) {
    }
  }
  ::pclose(pipe);
  return out;
}

std::string MakeTempDir(const std::string& prefix) {
  const char* base = std::getenv("TMPDIR");
  std::string templ = std::string(base != nullptr ? base : "/var/tmp") + "/" + prefix + ".XXXXXX";
  if (::mkdtemp(templ.data()) == nullptr) throw std::runtime_error("mkdtemp " + templ);
  return templ;
}

}  // namespace iotpki::bench
