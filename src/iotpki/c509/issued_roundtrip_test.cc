// Round trips of device certificates issued by our own x509 builder and profiles: every
// certificate the CA issues must survive X.509 -> C509 -> X.509 byte for byte, verify in both C509
// types, and be measurably smaller. The c509 library does not depend on x509; only this test does.
#include <gtest/gtest.h>

#include <algorithm>
#include <iomanip>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include "iotpki/c509/c509.h"
#include "iotpki/crypto/primitives.h"
#include "iotpki/x509/builder.h"
#include "iotpki/x509/test_util.h"

namespace iotpki::c509 {
namespace {

using x509::ProfileKind;
using x509::testing::Must;

// 10,000 certificates take about 10 s in the normal build (mostly OpenSSL: each certificate is
// signed twice and verified three times). Under AddressSanitizer the c509 code runs several times
// slower, so the sanitizer build (IOTPKI_SANITIZE) defines a smaller count.
#ifndef IOTPKI_C509_ISSUED_COUNT
#define IOTPKI_C509_ISSUED_COUNT 10000
#endif
constexpr int kCount = IOTPKI_C509_ISSUED_COUNT;

// Fixed so that a failure names a reproducible identity; the keys and CA serials are random.
constexpr uint64_t kSeed = 20261127;
// Device keys are drawn from a pool: generating 10,000 keys would double the run time and test
// nothing the pool does not (both parities of the compressed point occur many times over).
constexpr int kKeyPool = 256;
// The costlier secondary checks (decompressing the subject key, a wrong issuer) run on every
// tenth certificate.
constexpr int kSecondaryEvery = 10;

class Identities {
 public:
  explicit Identities(uint64_t seed) : rng_(seed) {}

  // 1 to 64 characters of A-Z a-z 0-9 . -, sometimes shaped to hit C509's special text forms:
  // lower-case hex (a byte string), an EUI-64 "01-23-45-FF-FE-67-89-AB" (tag 48), upper-case hex.
  std::string Serial() {
    switch (Uniform(0, 9)) {
      case 0:
        return Draw("0123456789abcdef", 2 * Uniform(1, 32));
      case 1:
        return Draw("0123456789ABCDEF", 2 * Uniform(1, 32));
      case 2: {
        std::string eui;
        for (int i = 0; i < 8; ++i) {
          if (i > 0) eui += '-';
          eui += i == 3 ? "FF" : i == 4 ? "FE" : Draw("0123456789ABCDEF", 2);
        }
        return eui;
      }
      default:
        return Draw("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.-", Length(64));
    }
  }

  // 1 to 64 characters of UTF-8, one in four with non-ASCII characters of 2 to 4 bytes.
  std::string Organization() {
    static const std::vector<std::string> kWide = {"é", "Ü", "ß", "Ø", "東", "京", "—", "€", "😀"};
    const int n = Length(64);
    const bool wide = Uniform(0, 3) == 0;
    std::string out;
    for (int i = 0; i < n; ++i) {
      if (wide && Uniform(0, 2) == 0) {
        out += kWide[Uniform(0, static_cast<int>(kWide.size()) - 1)];
      } else {
        out += Draw("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 &.,'-", 1);
      }
    }
    return out;
  }

  Bytes Fingerprint() {
    Bytes fp(Uniform(1, 64));
    for (auto& b : fp) b = static_cast<uint8_t>(Uniform(0, 255));
    return fp;
  }

  // RFC 5612's documentation number, or any other PEN (the URN's length varies with it).
  uint32_t EnterpriseNumber() {
    return Uniform(0, 1) == 0 ? 32473 : static_cast<uint32_t>(Uniform(1, 0x7fffffff));
  }

  int Uniform(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }

 private:
  // Short values are the interesting edge, long ones the size budget's: both ends weighted.
  int Length(int max) {
    int r = Uniform(0, 9);
    return r == 0 ? 1 : r == 1 ? max : Uniform(1, max);
  }
  std::string Draw(std::string_view alphabet, int n) {
    std::string out;
    for (int i = 0; i < n; ++i) out += alphabet[Uniform(0, static_cast<int>(alphabet.size()) - 1)];
    return out;
  }

  std::mt19937_64 rng_;
};

struct Totals {
  size_t count = 0;
  size_t der = 0, type3 = 0, type2 = 0;
  size_t der_min = SIZE_MAX, der_max = 0, type3_min = SIZE_MAX, type3_max = 0;
  double worst_ratio = 0;         // largest type 3 / DER of one certificate
  size_t least_saved = SIZE_MAX;  // smallest DER - type 3 of one certificate

  void Add(size_t d, size_t t3, size_t t2) {
    ++count;
    der += d;
    type3 += t3;
    type2 += t2;
    der_min = std::min(der_min, d);
    der_max = std::max(der_max, d);
    type3_min = std::min(type3_min, t3);
    type3_max = std::max(type3_max, t3);
    worst_ratio = std::max(worst_ratio, static_cast<double>(t3) / static_cast<double>(d));
    least_saved = std::min(least_saved, d - t3);
  }
  void Print(const char* name) const {
    std::cout << std::fixed << std::setprecision(1) << name << ": " << count
              << " certificates, DER " << der_min << ".." << der_max << " bytes (mean "
              << double(der) / double(count) << "), C509 type 3 " << type3_min << ".." << type3_max
              << " (mean " << double(type3) / double(count) << "), type 2 mean "
              << double(type2) / double(count) << "; type 3 / DER "
              << 100.0 * double(type3) / double(der) << "% overall, " << 100.0 * worst_ratio
              << "% worst; type 2 / DER " << 100.0 * double(type2) / double(der) << "%; at least "
              << least_saved << " bytes saved\n";
  }
};

TEST(C509Issued, DeviceCertificatesRoundTripAndVerify) {
  x509::testing::Pki pki;
  // The longest identities with multi-byte organizations exceed the default 850-byte budget,
  // which is sized for the CA's own organization in the issuer name; the lint is not under test.
  pki.policy.idevid.max_der_size = 1024;
  pki.policy.ldevid.max_der_size = 1024;
  Identities ids(kSeed);
  Totals idevid, ldevid;
  std::vector<crypto::PrivateKey> keys;
  for (int k = 0; k < kKeyPool; ++k) keys.push_back(x509::testing::NewKey());

  for (int i = 0; i < kCount; ++i) {
    const ProfileKind kind = ids.Uniform(0, 1) == 0 ? ProfileKind::kIDevID : ProfileKind::kLDevID;
    x509::DeviceIdentity id;
    id.serial = ids.Serial();
    id.organization = ids.Organization();
    id.device_id = x509::ComputeDeviceId(id.serial, ids.Fingerprint());
    x509::Policy policy = pki.policy;
    policy.enterprise_number = ids.EnterpriseNumber();
    const crypto::PrivateKey& device = keys[ids.Uniform(0, kKeyPool - 1)];
    const bool secondary = i % kSecondaryEvery == 0;
    x509::CertificateTemplate t =
        x509::NewTemplate(kind, device.public_key(), x509::testing::kNow, policy);
    t.device = id;
    const crypto::PrivateKey& issuer_key = pki.IssuerKeyFor(kind);
    auto cert = x509::Issue(t, &pki.IssuerFor(kind), issuer_key, policy);
    ASSERT_TRUE(cert) << i << " " << id.serial << " / " << id.organization << ": "
                      << cert.error().ToString();
    const Bytes& der = cert->ToDer();
    const std::string where = std::to_string(i) + " (" + std::string(x509::ProfileName(kind)) +
                              ", serial '" + id.serial + "', O '" + id.organization +
                              "'): " + ToHex(der);

    // Type 3: lossless, and the X.509 signature still verifies over the rebuilt DER.
    auto c509 = EncodeX509(der);
    ASSERT_TRUE(c509) << c509.error().ToString() << "\n" << where;
    auto back = DecodeToX509(*c509);
    ASSERT_TRUE(back) << back.error().ToString() << "\n" << where;
    ASSERT_EQ(*back, der) << where;
    auto ok = Verify(*c509, issuer_key.public_key());
    ASSERT_TRUE(ok) << ok.error().ToString() << "\n" << where;
    ASSERT_TRUE(*ok) << where;
    auto fields = Parse(*c509);
    ASSERT_TRUE(fields) << fields.error().ToString() << "\n" << where;
    if (secondary) {
      auto key = SubjectPublicKey(*fields);
      ASSERT_TRUE(key) << key.error().ToString();
      ASSERT_EQ(*key, device.public_key()) << where;
    }

    // Type 2: the same content, signed by the same issuer over the CBOR.
    auto native = ToNative(der, issuer_key);
    ASSERT_TRUE(native) << native.error().ToString() << "\n" << where;
    auto native_ok = VerifyNative(*native, issuer_key.public_key());
    ASSERT_TRUE(native_ok) << native_ok.error().ToString() << "\n" << where;
    ASSERT_TRUE(*native_ok) << where;
    auto native_fields = Parse(*native);
    ASSERT_TRUE(native_fields) << native_fields.error().ToString();
    EXPECT_EQ(native_fields->type, kTypeNative);
    EXPECT_EQ(native_fields->serial, fields->serial);
    EXPECT_EQ(native_fields->not_before, fields->not_before);
    EXPECT_EQ(native_fields->not_after, fields->not_after);
    EXPECT_EQ(native_fields->extensions, fields->extensions);
    EXPECT_EQ(NameToString(native_fields->subject), NameToString(fields->subject)) << where;
    if (secondary) {
      auto native_key = SubjectPublicKey(*native_fields);
      ASSERT_TRUE(native_key);
      EXPECT_EQ(*native_key, device.public_key());
      const ProfileKind other =
          kind == ProfileKind::kIDevID ? ProfileKind::kLDevID : ProfileKind::kIDevID;
      auto wrong = VerifyNative(*native, pki.IssuerKeyFor(other).public_key());
      ASSERT_TRUE(wrong);
      ASSERT_FALSE(*wrong) << where;
    }

    (kind == ProfileKind::kIDevID ? idevid : ldevid).Add(der.size(), c509->size(), native->size());
  }

  idevid.Print("IDevID");
  ldevid.Print("LDevID");
  // Regression guards at what was measured when this test was written (docs/performance.md). The
  // saving is structural (DER headers, OIDs, the uncompressed point, the DER signature); text
  // such as a 64-character serial, which appears three times, is carried as it is, so long
  // identities have the worst ratios.
  EXPECT_GE(idevid.least_saved, 250u);
  EXPECT_GE(ldevid.least_saved, 250u);
  EXPECT_LE(idevid.worst_ratio, 0.70);
  EXPECT_LE(ldevid.worst_ratio, 0.70);
}

// The CA and server profiles too, under a P-256 and a P-384 root (which signs with SHA-384).
TEST(C509Issued, EveryProfileRoundTrips) {
  for (crypto::KeyType root_curve : {crypto::KeyType::kP256, crypto::KeyType::kP384}) {
    x509::testing::Pki pki(root_curve);
    const crypto::PrivateKey device = x509::testing::NewKey();
    auto server =
        x509::Issue(pki.ServerTemplate(device.public_key()), &pki.ops, pki.ops_key, pki.policy);
    ASSERT_TRUE(server) << server.error().ToString();
    struct Case {
      const char* name;
      x509::Certificate cert;
      const crypto::PrivateKey& issuer;
    };
    const Case cases[] = {
        {"root", pki.root, pki.root_key},
        {"manufacturing CA", pki.mfg, pki.root_key},
        {"operational CA", pki.ops, pki.root_key},
        {"tls-server", *server, pki.ops_key},
        {"idevid",
         Must(pki.IssueFor(pki.DeviceTemplate(ProfileKind::kIDevID, device.public_key()))),
         pki.mfg_key},
        {"ldevid",
         Must(pki.IssueFor(pki.DeviceTemplate(ProfileKind::kLDevID, device.public_key()))),
         pki.ops_key},
    };
    for (const Case& c : cases) {
      SCOPED_TRACE(std::string(c.name) + (root_curve == crypto::KeyType::kP384 ? " (P-384)" : ""));
      const Bytes& der = c.cert.ToDer();
      auto c509 = EncodeX509(der);
      ASSERT_TRUE(c509) << c509.error().ToString();
      auto back = DecodeToX509(*c509);
      ASSERT_TRUE(back) << back.error().ToString();
      EXPECT_EQ(*back, der);
      auto ok = Verify(*c509, c.issuer.public_key());
      ASSERT_TRUE(ok) << ok.error().ToString();
      EXPECT_TRUE(*ok);
      auto native = ToNative(der, c.issuer);
      ASSERT_TRUE(native) << native.error().ToString();
      auto native_ok = VerifyNative(*native, c.issuer.public_key());
      ASSERT_TRUE(native_ok) << native_ok.error().ToString();
      EXPECT_TRUE(*native_ok);
    }
  }
}

// The sizes of a typical identity: serial "SN-000123", O "Acme Devices", under CAs named "CN=Acme
// Manufacturing CA, O=Acme Devices" and "CN=Acme Operational CA, O=Acme Devices".
TEST(C509Issued, TypicalIdentitySizes) {
  x509::testing::Pki pki;
  const crypto::PrivateKey device = x509::testing::NewKey();
  for (ProfileKind kind : {ProfileKind::kIDevID, ProfileKind::kLDevID}) {
    auto cert = pki.IssueFor(pki.DeviceTemplate(kind, device.public_key()));
    ASSERT_TRUE(cert) << cert.error().ToString();
    auto c509 = EncodeX509(cert->ToDer());
    auto native = ToNative(cert->ToDer(), pki.IssuerKeyFor(kind));
    ASSERT_TRUE(c509 && native);
    const size_t der = cert->ToDer().size();
    std::cout << x509::ProfileName(kind) << ": X.509 " << der << " bytes, C509 type 3 "
              << c509->size() << " (" << 100 * c509->size() / der << "%), type 2 " << native->size()
              << " (" << 100 * native->size() / der << "%)\n";
    // Measured: 54% and 53%. The issue's goal of 45% is below what the fields alone take
    // (docs/c509.md, "Sizes").
    EXPECT_LE(c509->size() * 100, der * 56);
    EXPECT_LE(native->size() * 100, der * 56);
  }
}

}  // namespace
}  // namespace iotpki::c509
