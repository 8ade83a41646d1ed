// Issue 16: P-256 signatures per second through our TPM signer (the tpm2-openssl provider in a
// library context of its own) and through its TLS face (the EC_KEY_METHOD that OpenSSL's TLS
// signs a handshake with), on one key of the TPM that TPM2OPENSSL_TCTI names. bench/tpm2_bench.sh
// starts swtpm, makes the key with tpm2-tools, and times `tpm2_sign` in a loop on the same key
// after this program has exited (swtpm serves one connection at a time).
// Usage: tpm2_bench KEY_URI [SECONDS]   (e.g. tpm2:handle=0x81000010)
#include <openssl/evp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "iotpki/crypto/key_store.h"
#include "iotpki/crypto/primitives.h"
#include "iotpki/crypto/signer.h"

namespace {

using Clock = std::chrono::steady_clock;

// Signatures per second of `fn` for `seconds` (one thread: a TPM executes one command at a
// time, and our store serialises them).
template <class F>
double Rate(double seconds, F fn) {
  long n = 0;
  auto start = Clock::now();
  auto end =
      start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  while (Clock::now() < end) {
    if (!fn()) {
      std::fprintf(stderr, "signature failed\n");
      std::exit(1);
    }
    ++n;
  }
  return static_cast<double>(n) / std::chrono::duration<double>(Clock::now() - start).count();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: tpm2_bench KEY_URI [SECONDS]\n");
    return 2;
  }
  std::string uri = argv[1];
  double seconds = argc > 2 ? std::atof(argv[2]) : 2.0;
  auto store = iotpki::crypto::KeyStoreFor(uri, {});
  if (!store) {
    std::fprintf(stderr, "%s\n", store.error().ToString().c_str());
    return 1;
  }
  auto key = (*store)->Open(uri);
  if (!key) {
    std::fprintf(stderr, "%s\n", key.error().ToString().c_str());
    return 1;
  }
  const iotpki::crypto::Signer& ours = **key;
  auto face = iotpki::crypto::TlsKeyOf(ours);
  if (!face) {
    std::fprintf(stderr, "%s\n", face.error().ToString().c_str());
    return 1;
  }
  iotpki::Bytes tbs(400, 0x5a);  // about a device certificate's TBS
  iotpki::Bytes digest = iotpki::crypto::Sha256(tbs);
  auto face_sign = [&] {
    // What TLS does: EVP_DigestSign through the face, in the default library context.
    EVP_MD_CTX* md = EVP_MD_CTX_new();
    unsigned char sig[80];
    size_t len = sizeof sig;
    bool ok =
        md != nullptr &&
        EVP_DigestSignInit_ex(md, nullptr, "SHA256", nullptr, nullptr, face->get(), nullptr) == 1 &&
        EVP_DigestSign(md, sig, &len, tbs.data(), tbs.size()) == 1;
    EVP_MD_CTX_free(md);
    return ok;
  };
  std::printf("P-256 ECDSA signatures/s, %.1f s per row, TPM %s, key %s\n", seconds,
              std::getenv("TPM2OPENSSL_TCTI") ? std::getenv("TPM2OPENSSL_TCTI") : "(default)",
              uri.c_str());
  // Rounds alternate, each row keeps its best (a shared machine takes the core at random).
  constexpr int kRounds = 3;
  double sign = 0, sign_digest = 0, tls = 0;
  for (int round = 0; round < kRounds; ++round) {
    sign = std::max(sign, Rate(seconds, [&] { return ours.Sign(tbs).has_value(); }));
    sign_digest =
        std::max(sign_digest, Rate(seconds, [&] { return ours.SignDigest(digest).has_value(); }));
    tls = std::max(tls, Rate(seconds, face_sign));
  }
  std::printf("best of %d rounds\n", kRounds);
  std::printf("%-52s %10.0f\n", "our Tpm2Signer::Sign (SHA-256 here, TPM2_Sign)", sign);
  std::printf("%-52s %10.0f\n", "our Tpm2Signer::SignDigest (TPM2_Sign only)", sign_digest);
  std::printf("%-52s %10.0f\n", "through the TLS face (EVP_DigestSign, EC_KEY_METHOD)", tls);
  // One line for the script to read.
  std::printf("RATE sign=%.1f digest=%.1f tls=%.1f\n", sign, sign_digest, tls);
  return 0;
}
