#include "iotpki/crypto/ossl.h"

#include <openssl/err.h>
#include <openssl/pem.h>

#include <string>

namespace iotpki::ossl {

Error Drain(Code code, std::string_view message) {
  std::string detail;
  const char* file = nullptr;
  int line = 0;
  const char* data = nullptr;
  int flags = 0;
  unsigned long err;
  while ((err = ERR_get_error_all(&file, &line, nullptr, &data, &flags)) != 0) {
    char buf[256];
    ERR_error_string_n(err, buf, sizeof buf);
    if (!detail.empty()) detail += "; ";
    detail += buf;
    if ((flags & ERR_TXT_STRING) && data != nullptr && *data != '\0') {
      detail += " (";
      detail += data;
      detail += ")";
    }
  }
  return Error(code, std::string(message), detail);
}

void ClearErrors() { ERR_clear_error(); }

namespace {

// Never freed: the process holds it to the end, as OpenSSL holds EVP_sha256().
const EVP_MD* Fetch(const char* name, const EVP_MD* legacy) {
  const EVP_MD* md = EVP_MD_fetch(nullptr, name, nullptr);
  if (md == nullptr) ClearErrors();
  return md != nullptr ? md : legacy;
}

}  // namespace

const EVP_MD* Sha256Md() {
  static const EVP_MD* md = Fetch("SHA2-256", EVP_sha256());
  return md;
}

const EVP_MD* Sha384Md() {
  static const EVP_MD* md = Fetch("SHA2-384", EVP_sha384());
  return md;
}

const EVP_MD* Sha1Md() {
  static const EVP_MD* md = Fetch("SHA1", EVP_sha1());
  return md;
}

std::string PemEncode(std::string_view label, ByteView der) {
  std::string b64 = Base64Encode(der);
  std::string out = "-----BEGIN " + std::string(label) + "-----\n";
  for (size_t i = 0; i < b64.size(); i += 64) {
    out.append(b64, i, 64);
    out += '\n';
  }
  out += "-----END " + std::string(label) + "-----\n";
  return out;
}

Result<Bytes> PemDecode(std::string_view pem, std::string_view label) {
  std::string begin = "-----BEGIN " + std::string(label) + "-----";
  std::string end = "-----END " + std::string(label) + "-----";
  size_t b = pem.find(begin);
  if (b == std::string_view::npos) {
    return Fail(Code::kInvalidArgument, "no PEM block labelled " + std::string(label));
  }
  b += begin.size();
  size_t e = pem.find(end, b);
  if (e == std::string_view::npos) {
    return Fail(Code::kInvalidArgument, "unterminated PEM block " + std::string(label));
  }
  auto der = Base64Decode(pem.substr(b, e - b));
  if (!der)
    return Fail(Code::kInvalidArgument, "PEM block " + std::string(label) + " is not valid base64");
  return der;
}

}  // namespace iotpki::ossl
