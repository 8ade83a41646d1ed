#include "iotpki/c509/c509.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "iotpki/c509/internal.h"
#include "iotpki/common/der.h"
#include "iotpki/common/file.h"
#include "iotpki/crypto/primitives.h"
#include "iotpki/crypto/signer.h"

namespace iotpki::c509 {
namespace {

using crypto::KeyType;
using crypto::PrivateKey;
using crypto::PublicKey;

Bytes Vector(const std::string& name) {
  auto text = ReadTextFile(std::string(IOTPKI_SHARED_DIR "/vectors/c509/") + name);
  EXPECT_TRUE(text) << name;
  if (!text) return {};
  std::string hex;
  for (char c : *text) {
    if (!std::isspace(static_cast<unsigned char>(c))) hex += c;
  }
  auto bytes = FromHex(hex);
  EXPECT_TRUE(bytes) << name;
  return bytes ? *bytes : Bytes{};
}

Bytes TestData(const std::string& name) {
  auto text = ReadTextFile(std::string(IOTPKI_SOURCE_DIR "/src/iotpki/c509/testdata/") + name);
  EXPECT_TRUE(text) << name;
  if (!text) return {};
  std::string hex;
  for (char c : *text) {
    if (!std::isspace(static_cast<unsigned char>(c))) hex += c;
  }
  auto bytes = FromHex(hex);
  return bytes ? *bytes : Bytes{};
}

Bytes Concat(ByteView a, ByteView b) {
  Bytes out(a.begin(), a.end());
  out.insert(out.end(), b.begin(), b.end());
  return out;
}

PublicKey ExampleIssuerKey() {
  auto key =
      PublicKey::FromSec1(KeyType::kP256, Vector("c509_example_issuer_public_key_compressed.hex"));
  EXPECT_TRUE(key) << key.error().ToString();
  return *key;
}

PrivateKey ExampleIssuerPrivateKey() {
  auto key = PrivateKey::FromScalar(KeyType::kP256, Vector("c509_example_issuer_private_key.hex"));
  EXPECT_TRUE(key) << key.error().ToString();
  return *key;
}

// --- Appendix A.1: the RFC 7925 certificate -----------------------------------------------------

TEST(C509Vectors, ExampleX509EncodesToTheDraftBytes) {
  Bytes der = Vector("c509_example_x509.hex");
  ASSERT_EQ(der.size(), 316u);
  auto c509 = EncodeX509(der);
  ASSERT_TRUE(c509) << c509.error().ToString();
  EXPECT_EQ(ToHex(*c509), ToHex(Vector("c509_example_reencoded.hex")));
  EXPECT_EQ(c509->size(), 141u);
}

TEST(C509Vectors, ExampleC509DecodesToTheExactDer) {
  auto der = DecodeToX509(Vector("c509_example_reencoded.hex"));
  ASSERT_TRUE(der) << der.error().ToString();
  EXPECT_EQ(ToHex(*der), ToHex(Vector("c509_example_x509.hex")));
}

TEST(C509Vectors, ExampleFieldsAreParsed) {
  auto cert = Parse(Vector("c509_example_reencoded.hex"));
  ASSERT_TRUE(cert) << cert.error().ToString();
  EXPECT_EQ(cert->type, kTypeReencoded);
  EXPECT_EQ(ToHex(cert->serial), "01f50d");
  EXPECT_EQ(cert->signature_algorithm.code, 0);
  ASSERT_TRUE(cert->issuer);
  EXPECT_EQ(NameToString(*cert->issuer), "CN=RFC test CA");
  EXPECT_EQ(cert->not_before, 1672531200);
  EXPECT_EQ(cert->not_after, 1767225600);
  EXPECT_EQ(NameToString(cert->subject), "CN=01-23-45-FF-FE-67-89-AB");
  EXPECT_EQ(cert->public_key_algorithm.code, 1);
  ASSERT_EQ(cert->extensions.size(), 1u);
  EXPECT_EQ(cert->extensions[0].id, 2);
  EXPECT_FALSE(cert->extensions[0].critical);
  EXPECT_EQ(cert->extensions[0].value, cbor::Item::Uint(1));
  EXPECT_EQ(cert->signature.size(), 64u);
}

TEST(C509Vectors, ReencodedSignatureVerifiesAfterRebuildingDer) {
  Bytes c509 = Vector("c509_example_reencoded.hex");
  auto signed_bytes = SignedBytes(c509);
  ASSERT_TRUE(signed_bytes) << signed_bytes.error().ToString();
  EXPECT_EQ(ToHex(*signed_bytes), ToHex(Vector("c509_example_x509_tbs_signed_input.DERIVED.hex")));
  auto ok = Verify(c509, ExampleIssuerKey());
  ASSERT_TRUE(ok) << ok.error().ToString();
  EXPECT_TRUE(*ok);
}

TEST(C509Vectors, NativeSignatureVerifies) {
  Bytes native = Vector("c509_example_native.hex");
  ASSERT_EQ(native.size(), 141u);
  auto ok = VerifyNative(native, ExampleIssuerKey());
  ASSERT_TRUE(ok) << ok.error().ToString();
  EXPECT_TRUE(*ok);
  auto ok2 = Verify(native, ExampleIssuerKey());
  ASSERT_TRUE(ok2);
  EXPECT_TRUE(*ok2);
}

TEST(C509Vectors, NativeSignatureCoversTheSequenceWithoutArrayHeader) {
  Bytes native = Vector("c509_example_native.hex");
  Bytes tbs = Vector("c509_example_native_tbs_signed_input.DERIVED.hex");
  ASSERT_EQ(tbs.size(), 74u);
  auto signed_bytes = SignedBytes(native);
  ASSERT_TRUE(signed_bytes);
  EXPECT_EQ(ToHex(*signed_bytes), ToHex(tbs));

  auto cert = Parse(native);
  ASSERT_TRUE(cert);
  auto der_sig = internal::EcdsaRawToDer(cert->signature);
  ASSERT_TRUE(der_sig);
  const PublicKey key = ExampleIssuerKey();
  EXPECT_TRUE(key.Verify(tbs, *der_sig, crypto::DigestAlgorithm::kSha256));
  // With the 0x8B header included the signature must fail.
  EXPECT_FALSE(key.Verify(Concat(Bytes{0x8b}, tbs), *der_sig, crypto::DigestAlgorithm::kSha256));
}

TEST(C509Vectors, NativeDiffersFromReencodedOnlyWhereTheDraftSays) {
  auto native = Parse(Vector("c509_example_native.hex"));
  auto reencoded = Parse(Vector("c509_example_reencoded.hex"));
  ASSERT_TRUE(native && reencoded);
  EXPECT_EQ(native->type, kTypeNative);
  EXPECT_EQ(native->public_key.bytes()[0], 0x02);
  EXPECT_EQ(reencoded->public_key.bytes()[0], 0xfe);
  C509Certificate a = *native;
  C509Certificate b = *reencoded;
  a.type = b.type = 0;
  a.signature = b.signature = {};
  a.public_key = b.public_key = {};
  EXPECT_EQ(a, b);
}

TEST(C509Vectors, ToNativeReproducesTheDraftTbsAndVerifies) {
  const PrivateKey issuer = ExampleIssuerPrivateKey();
  EXPECT_EQ(ToHex(issuer.public_key().Sec1Point(true)),
            ToHex(Vector("c509_example_issuer_public_key_compressed.hex")));
  auto native = ToNative(Vector("c509_example_x509.hex"), issuer);
  ASSERT_TRUE(native) << native.error().ToString();
  EXPECT_EQ(native->size(), 141u);
  auto tbs = SignedBytes(*native);
  ASSERT_TRUE(tbs);
  // ECDSA is randomized: the TBS is identical, the signature bytes are not compared.
  EXPECT_EQ(ToHex(*tbs), ToHex(Vector("c509_example_native_tbs_signed_input.DERIVED.hex")));
  auto ok = VerifyNative(*native, ExampleIssuerKey());
  ASSERT_TRUE(ok);
  EXPECT_TRUE(*ok);
}

TEST(C509Vectors, ResigningTheNativeFieldsVerifies) {
  auto cert = Parse(Vector("c509_example_native.hex"));
  ASSERT_TRUE(cert);
  auto resigned = SignNative(*cert, ExampleIssuerPrivateKey());
  ASSERT_TRUE(resigned) << resigned.error().ToString();
  auto ok = VerifyNative(*resigned, ExampleIssuerKey());
  ASSERT_TRUE(ok);
  EXPECT_TRUE(*ok);
  // A different key does not verify it.
  auto other = PrivateKey::Generate(KeyType::kP256);
  ASSERT_TRUE(other);
  auto bad = VerifyNative(*resigned, other->public_key());
  ASSERT_TRUE(bad);
  EXPECT_FALSE(*bad);
}

TEST(C509Vectors, SubjectPrivateKeyMatchesTheCertificate) {
  auto subject =
      PrivateKey::FromScalar(KeyType::kP256, Vector("c509_example_subject_private_key.hex"));
  ASSERT_TRUE(subject);
  auto cert = Parse(Vector("c509_example_reencoded.hex"));
  ASSERT_TRUE(cert);
  auto key = SubjectPublicKey(*cert);
  ASSERT_TRUE(key) << key.error().ToString();
  EXPECT_EQ(*key, subject->public_key());
  auto native = Parse(Vector("c509_example_native.hex"));
  ASSERT_TRUE(native);
  auto native_key = SubjectPublicKey(*native);
  ASSERT_TRUE(native_key) << native_key.error().ToString();
  EXPECT_EQ(native_key->Sec1Point(false), subject->public_key().Sec1Point(false));
}

TEST(C509Vectors, C509CertDataIsTheArrayInAByteString) {
  Bytes data = Vector("c509_example_native_C509CertData.hex");
  auto item = cbor::Decode(data);
  ASSERT_TRUE(item);
  ASSERT_TRUE(item->is_bytes());
  EXPECT_EQ(ToHex(item->bytes()), ToHex(Vector("c509_example_native.hex")));
}

TEST(C509Vectors, LegacySequenceFormIsAccepted) {
  Bytes c509 = Vector("c509_example_reencoded.hex");
  Bytes sequence(c509.begin() + 1, c509.end());
  auto der = DecodeToX509(sequence);
  ASSERT_TRUE(der) << der.error().ToString();
  EXPECT_EQ(ToHex(*der), ToHex(Vector("c509_example_x509.hex")));
  Bytes native = Vector("c509_example_native.hex");
  auto ok = VerifyNative(Bytes(native.begin() + 1, native.end()), ExampleIssuerKey());
  ASSERT_TRUE(ok);
  EXPECT_TRUE(*ok);
}

TEST(C509Vectors, DescribeShowsTheFields) {
  auto cert = Parse(Vector("c509_example_reencoded.hex"));
  ASSERT_TRUE(cert);
  std::string text = Describe(*cert);
  EXPECT_NE(text.find("type 3"), std::string::npos) << text;
  EXPECT_NE(text.find("ecdsa-with-SHA256 (0)"), std::string::npos) << text;
  EXPECT_NE(text.find("CN=RFC test CA"), std::string::npos) << text;
  EXPECT_NE(text.find("2026-01-01T00:00:00Z"), std::string::npos) << text;
  EXPECT_NE(text.find("keyUsage: digitalSignature"), std::string::npos) << text;
}

// --- Appendix A.2: IEEE 802.1AR, transcribed from the draft ----------------------------------

TEST(C509Vectors, Ieee8021arRoundTrips) {
  Bytes der = TestData("ieee8021ar_x509.hex");
  Bytes expected = TestData("ieee8021ar_reencoded.hex");
  ASSERT_EQ(der.size(), 577u);
  ASSERT_EQ(expected.size(), 276u);
  auto c509 = EncodeX509(der);
  ASSERT_TRUE(c509) << c509.error().ToString();
  EXPECT_EQ(ToHex(*c509), ToHex(expected));
  auto back = DecodeToX509(expected);
  ASSERT_TRUE(back) << back.error().ToString();
  EXPECT_EQ(ToHex(*back), ToHex(der));
  auto cert = Parse(expected);
  ASSERT_TRUE(cert);
  EXPECT_FALSE(cert->not_after.has_value());  // 99991231235959Z
  std::string text = Describe(*cert);
  EXPECT_NE(text.find("hardwareModuleName:1.3.6.1.4.1.6715.10.1;h'01020304'"), std::string::npos)
      << text;
  EXPECT_NE(text.find("no expiry"), std::string::npos);
}

// --- Appendix A.3 and A.4: the CA/Browser Forum certificates
// --------------------------------------
//
// The DERIVED files were encoded from the draft's diagnostic notation; their sizes match the
// sizes the draft states (836 and 1296 bytes). Both agree with the draft rules as implemented
// here, so they are asserted byte for byte in both directions.

TEST(C509Vectors, CabEcdsa) {
  Bytes der = Vector("c509_cab_ecdsa_x509.hex");
  Bytes expected = Vector("c509_cab_ecdsa_reencoded.DERIVED.hex");
  ASSERT_EQ(der.size(), 1209u);
  ASSERT_EQ(expected.size(), 836u);
  auto c509 = EncodeX509(der);
  ASSERT_TRUE(c509) << c509.error().ToString();
  EXPECT_EQ(ToHex(*c509), ToHex(expected));
  auto back = DecodeToX509(expected);
  ASSERT_TRUE(back) << back.error().ToString();
  EXPECT_EQ(ToHex(*back), ToHex(der));
}

TEST(C509Vectors, CabRsa) {
  Bytes der = Vector("c509_cab_rsa_x509.hex");
  Bytes expected = Vector("c509_cab_rsa_reencoded.DERIVED.hex");
  ASSERT_EQ(der.size(), 1647u);
  ASSERT_EQ(expected.size(), 1296u);
  auto c509 = EncodeX509(der);
  ASSERT_TRUE(c509) << c509.error().ToString();
  EXPECT_EQ(ToHex(*c509), ToHex(expected));
  auto back = DecodeToX509(expected);
  ASSERT_TRUE(back) << back.error().ToString();
  EXPECT_EQ(ToHex(*back), ToHex(der));
  auto cert = Parse(expected);
  ASSERT_TRUE(cert);
  EXPECT_EQ(cert->signature_algorithm.code, 23);
  EXPECT_TRUE(cert->public_key.is_bytes());  // e = 65537: modulus only
}

// --- Malformed input ---------------------------------------------------------------------------

std::vector<Bytes> AllVectors() {
  return {Vector("c509_example_reencoded.hex"), Vector("c509_example_native.hex"),
          Vector("c509_cab_ecdsa_reencoded.DERIVED.hex"),
          Vector("c509_cab_rsa_reencoded.DERIVED.hex"), TestData("ieee8021ar_reencoded.hex")};
}

TEST(C509Malformed, EveryTruncationIsRefused) {
  for (const Bytes& c509 : AllVectors()) {
    for (size_t n = 0; n < c509.size(); ++n) {
      ByteView prefix(c509.data(), n);
      auto parsed = Parse(prefix);
      // The legacy sequence form of a prefix can never have 11 complete items either.
      EXPECT_FALSE(parsed) << "prefix of " << n << " bytes";
      EXPECT_FALSE(DecodeToX509(prefix));
      if (parsed) continue;
      EXPECT_EQ(parsed.error().code(), Code::kInvalidArgument);
    }
  }
}

TEST(C509Malformed, TrailingBytesAreRefused) {
  for (const Bytes& c509 : AllVectors()) {
    auto r = Parse(Concat(c509, Bytes{0x00}));
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().message().find("trailing"), std::string::npos) << r.error().message();
  }
}

// Replaces item `index` (0..10) of the A.1 certificate and expects a refusal.
void ExpectRefusedWithItem(size_t index, const cbor::Item& replacement) {
  auto items = cbor::DecodeSequence(ByteView(Vector("c509_example_reencoded.hex")).subspan(1));
  ASSERT_TRUE(items);
  (*items)[index] = replacement;
  Bytes out = {0x8b};
  for (const auto& item : *items) item.AppendTo(out);
  auto der = DecodeToX509(out);
  EXPECT_FALSE(der) << "item " << index << " = " << cbor::Diagnostic(replacement);
}

TEST(C509Malformed, WrongTypesAreRefused) {
  using cbor::Item;
  ExpectRefusedWithItem(0, Item::Uint(1));  // type
  ExpectRefusedWithItem(0, Item::TextString("3"));
  ExpectRefusedWithItem(1, Item::Uint(128269));  // serial must be bytes
  ExpectRefusedWithItem(2, Item::Int(9999));     // unknown algorithm
  ExpectRefusedWithItem(2, Item::TextString("ecdsa"));
  ExpectRefusedWithItem(2, Item::ByteString(Bytes{0x80}));  // malformed OID
  ExpectRefusedWithItem(3, Item::Uint(7));                  // issuer
  ExpectRefusedWithItem(3, Item::Array({Item::Int(1)}));    // odd name array
  ExpectRefusedWithItem(3, Item::Array({Item::Int(99), Item::TextString("x")}));
  ExpectRefusedWithItem(3, Item::Array({Item::Int(-22), Item::TextString("x")}));   // IA5
  ExpectRefusedWithItem(3, Item::Array({Item::Int(-1), Item::TextString("a@b")}));  // printable
  ExpectRefusedWithItem(3, Item::Tagged(48, Item::ByteString(Bytes{1, 2, 3})));
  ExpectRefusedWithItem(4, Item::Int(-1));             // time
  ExpectRefusedWithItem(4, Item::Uint(253402300800));  // year 10000
  ExpectRefusedWithItem(5, Item::TextString("never"));
  ExpectRefusedWithItem(6, Item::Null());   // subject cannot be null
  ExpectRefusedWithItem(7, Item::Int(77));  // unknown key algorithm
  ExpectRefusedWithItem(8, Item::Undefined());
  ExpectRefusedWithItem(8, Item::ByteString(Bytes(20, 0xfe)));  // wrong length
  // x = 1 is not the x-coordinate of any P-256 point.
  Bytes off_curve(33, 0);
  off_curve[0] = 0xfe;
  off_curve[32] = 1;
  ExpectRefusedWithItem(8, Item::ByteString(off_curve));
  ExpectRefusedWithItem(9, Item::TextString("ku"));
  ExpectRefusedWithItem(9, Item::Array({Item::Int(2)}));
  ExpectRefusedWithItem(9, Item::Array({Item::Int(0), Item::Uint(1)}));
  ExpectRefusedWithItem(9, Item::Array({Item::Int(200), Item::Uint(1)}));
  ExpectRefusedWithItem(9, Item::Array({Item::Int(4), Item::TextString("yes")}));
  ExpectRefusedWithItem(9, Item::Array({Item::Int(8), Item::Int(9999)}));
  ExpectRefusedWithItem(9, Item::Array({Item::Int(3), Item::Array({Item::Int(2)})}));
  ExpectRefusedWithItem(10, Item::TextString("sig"));
  ExpectRefusedWithItem(10, Item::ByteString(Bytes(3, 1)));  // odd r || s
}

TEST(C509Malformed, NonDeterministicCborIsRefused) {
  Bytes c509 = Vector("c509_example_reencoded.hex");
  Bytes long_type = {0x8b, 0x18, 0x03};  // type 3 with a non-shortest head
  long_type.insert(long_type.end(), c509.begin() + 2, c509.end());
  EXPECT_FALSE(Parse(long_type));
  Bytes indefinite = c509;
  indefinite[0] = 0x9f;
  indefinite.push_back(0xff);
  EXPECT_FALSE(Parse(indefinite));
  Bytes twelve = c509;
  twelve[0] = 0x8c;
  EXPECT_FALSE(Parse(twelve));
}

TEST(C509Malformed, TypeTwoHasNoDerForm) {
  auto r = DecodeToX509(Vector("c509_example_native.hex"));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Code::kInvalidArgument);
  auto native_only = VerifyNative(Vector("c509_example_reencoded.hex"), ExampleIssuerKey());
  EXPECT_FALSE(native_only);
}

TEST(C509Malformed, TamperedSignaturesDoNotVerify) {
  for (const char* name : {"c509_example_native.hex", "c509_example_reencoded.hex"}) {
    Bytes c509 = Vector(name);
    c509[c509.size() - 5] ^= 0x01;
    auto ok = Verify(c509, ExampleIssuerKey());
    ASSERT_TRUE(ok) << name;
    EXPECT_FALSE(*ok) << name;
    Bytes serial = Vector(name);
    serial[3] ^= 0x01;  // in the serial number
    auto ok2 = Verify(serial, ExampleIssuerKey());
    ASSERT_TRUE(ok2);
    EXPECT_FALSE(*ok2) << name;
  }
}

// --- Certificates built here ---------------------------------------------------------------------

// Builds DER certificates with common/der.h so that every encoder path sees varied input.
class CertFactory {
 public:
  explicit CertFactory(uint64_t seed) : rng_(seed) {}

  uint64_t Rand(uint64_t n) { return std::uniform_int_distribution<uint64_t>(0, n - 1)(rng_); }
  bool Coin() { return Rand(2) == 0; }
  Bytes RandomBytes(size_t n) {
    Bytes out(n);
    for (auto& b : out) b = static_cast<uint8_t>(Rand(256));
    return out;
  }
  std::string Alnum(size_t n) {
    static constexpr char kChars[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 -.";
    std::string s;
    for (size_t i = 0; i < n; ++i) s += kChars[Rand(sizeof kChars - 1)];
    return s;
  }

  std::string RandomText() {
    switch (Rand(7)) {
      case 0:
        return ToHex(RandomBytes(1 + Rand(16)));  // lower-case hex: the bstr optimisation
      case 1: {
        Bytes eui = RandomBytes(8);
        if (Coin()) eui[3] = 0xff, eui[4] = 0xfe;  // MAC-48 in EUI-64
        std::string s;
        for (size_t i = 0; i < 8; ++i) {
          if (i) s += '-';
          static constexpr char kHex[] = "0123456789ABCDEF";
          s += kHex[eui[i] >> 4];
          s += kHex[eui[i] & 0xf];
        }
        return s;
      }
      case 2:
        return "Ünïcødé " + Alnum(Rand(5));
      case 3:
        return "";
      case 4:
        return ToHex(RandomBytes(3)) + "G";  // almost hex
      default:
        return Alnum(1 + Rand(40));
    }
  }

  Bytes Atv(std::string_view oid, uint8_t tag, std::string_view value) {
    return der::Sequence({der::Oid(oid), der::Tlv(tag, AsBytes(value))});
  }

  Bytes RandomName() {
    Bytes rdns;
    const size_t count = Rand(6);
    for (size_t i = 0; i < count; ++i) {
      Bytes atv;
      switch (Rand(12)) {
        case 0:
          atv = Atv("2.5.4.6", der::kPrintableString, Coin() ? "US" : "SE");
          break;
        case 1:
          atv = Atv("2.5.4.5", der::kPrintableString, Alnum(1 + Rand(12)));
          break;
        case 2:
          atv = Atv("1.2.840.113549.1.9.1", der::kIa5String, "dev" + Alnum(3) + "@example.com");
          break;
        case 3:
          atv = Atv("0.9.2342.19200300.100.1.25", der::kIa5String, "example");
          break;
        case 4:  // unregistered attribute
          atv = Atv("2.5.4.100", der::kUtf8String, RandomText());
          break;
        case 5: {  // BMPString: only the OID form can carry it
          Bytes bmp = {0x00, 'h', 0x00, 'i'};
          atv = der::Sequence({der::Oid("2.5.4.3"), der::Tlv(0x1e, bmp)});
          break;
        }
        case 6:  // PrintableString with a character outside its set: OID form
          atv = Atv("2.5.4.10", der::kPrintableString, "a*b");
          break;
        case 7:
          atv = Atv("2.5.4.10", der::kPrintableString, Alnum(1 + Rand(20)));
          break;
        case 8:
          atv = Atv("1.3.6.1.4.1.311.60.2.1.3", der::kUtf8String, RandomText());
          break;
        default:
          atv = Atv(Coin() ? "2.5.4.3" : "2.5.4.11",
                    Coin() ? der::kUtf8String : der::kPrintableString, RandomText());
          // RandomText may produce characters PrintableString forbids; the encoder then uses
          // the OID form, which is fine and also exercised.
          break;
      }
      der::AppendTlv(rdns, der::kSet, atv);
    }
    return der::Tlv(der::kSequence, rdns);
  }

  Bytes Ext(std::string_view oid, bool critical, ByteView value) {
    return der::Sequence(
        {der::Oid(oid), critical ? der::Boolean(true) : Bytes{}, der::OctetString(value)});
  }

  Bytes RandomGeneralName() {
    switch (Rand(8)) {
      case 0:
        return der::Tlv(0x82, AsBytes(Alnum(1 + Rand(10)) + ".example"));
      case 1:
        return der::Tlv(0x86, AsBytes("urn:dev:ops:" + Alnum(8)));
      case 2:
        return der::Tlv(0x81, AsBytes("a@example.org"));
      case 3:
        return der::Tlv(0x87, RandomBytes(Coin() ? 4 : 16));
      case 4: {
        Bytes hw =
            der::Sequence({der::Oid("1.3.6.1.4.1.6715.10.1"), der::OctetString(RandomBytes(4))});
        return der::Constructed(0xa0, {der::Oid("1.3.6.1.5.5.7.8.4"), der::Tlv(0xa0, hw)});
      }
      case 5:
        return der::Tlv(0xa4, RandomName());
      case 6:
        return der::Tlv(0x88, der::OidContent("1.3.6.1.4.1.99999.1"));
      default:
        return der::Constructed(
            0xa0, {der::Oid("1.3.6.1.4.1.99999.7"), der::Tlv(0xa0, der::Utf8String(Alnum(5)))});
    }
  }

  Bytes RandomExtensions(const PublicKey& subject, const PublicKey& issuer) {
    std::vector<Bytes> exts;
    if (Coin()) {
      uint32_t bits = 1 + static_cast<uint32_t>(Rand(511));
      exts.push_back(
          Ext("2.5.29.15", Coin(), der::Tlv(der::kBitString, internal::FlagsToBitString(bits))));
    }
    if (Coin()) {
      Bytes bc;
      switch (Rand(3)) {
        case 0:
          bc = der::Sequence({});
          break;
        case 1:
          bc = der::Sequence({der::Boolean(true)});
          break;
        default:
          bc =
              der::Sequence({der::Boolean(true), der::SmallInteger(static_cast<int64_t>(Rand(5)))});
      }
      exts.push_back(Ext("2.5.29.19", Coin(), bc));
    }
    if (Coin()) exts.push_back(Ext("2.5.29.14", false, der::OctetString(subject.KeyIdentifier())));
    if (Coin()) {
      exts.push_back(
          Ext("2.5.29.35", false, der::Sequence({der::Tlv(0x80, issuer.KeyIdentifier())})));
    }
    if (Coin()) {
      Bytes names;
      for (size_t i = 0, n = 1 + Rand(3); i < n; ++i) {
        Bytes gn = RandomGeneralName();
        names.insert(names.end(), gn.begin(), gn.end());
      }
      exts.push_back(Ext("2.5.29.17", Coin(), der::Tlv(der::kSequence, names)));
    }
    if (Coin()) {
      static const char* kPurposes[] = {"1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2",
                                        "1.3.6.1.5.5.7.3.3", "1.3.6.1.4.1.99999.3"};
      Bytes oids;
      for (size_t i = 0, n = 1 + Rand(3); i < n; ++i) {
        Bytes oid = der::Oid(kPurposes[Rand(4)]);
        oids.insert(oids.end(), oid.begin(), oid.end());
      }
      exts.push_back(Ext("2.5.29.37", false, der::Tlv(der::kSequence, oids)));
    }
    if (Rand(4) == 0) {
      Bytes dps;
      for (size_t i = 0, n = 1 + Rand(2); i < n; ++i) {
        Bytes uris;
        for (size_t k = 0, m = 1 + Rand(2); k < m; ++k) {
          der::AppendTlv(uris, 0x86, AsBytes("http://crl.example/" + Alnum(4)));
        }
        Bytes dp = der::Tlv(0xa0, der::Tlv(0xa0, uris));
        if (Rand(3) == 0) der::AppendTlv(dp, 0x81, internal::FlagsToBitString(2 + Rand(200)));
        if (Rand(3) == 0) der::AppendTlv(dp, 0xa2, der::Tlv(0xa4, RandomName()));
        der::AppendTlv(dps, der::kSequence, dp);
      }
      exts.push_back(Ext("2.5.29.31", false, der::Tlv(der::kSequence, dps)));
    }
    if (Rand(4) == 0) {
      Bytes ocsp = der::Sequence(
          {der::Oid("1.3.6.1.5.5.7.48.1"), der::Tlv(0x86, AsBytes("http://ocsp.example"))});
      Bytes ca = der::Sequence(
          {der::Oid("1.3.6.1.5.5.7.48.2"), der::Tlv(0x86, AsBytes("http://ca.example/ca.crt"))});
      exts.push_back(Ext("1.3.6.1.5.5.7.1.1", false, der::Sequence({ocsp, ca})));
    }
    if (Rand(4) == 0) {
      Bytes cps =
          der::Sequence({der::Oid("1.3.6.1.5.5.7.2.1"), der::Ia5String("https://example.com/cps")});
      Bytes notice =
          der::Sequence({der::Oid("1.3.6.1.5.5.7.2.2"), der::Sequence({der::Utf8String("Hello")})});
      Bytes p1 = der::Sequence({der::Oid("2.23.140.1.2.1")});
      Bytes p2 = der::Sequence({der::Oid("1.3.6.1.4.1.99999.5"), der::Sequence({cps, notice})});
      exts.push_back(Ext("2.5.29.32", false, der::Sequence({p1, p2})));
    }
    if (Rand(6) == 0) exts.push_back(Ext("1.3.6.1.5.5.7.48.1.5", false, der::Tlv(der::kNull, {})));
    if (Rand(6) == 0) exts.push_back(Ext("2.5.29.54", true, der::SmallInteger(0)));
    if (Rand(6) == 0) {
      exts.push_back(
          Ext("2.5.29.36", true, der::Sequence({internal::Retag(der::SmallInteger(2), 0x81)})));
    }
    if (Rand(6) == 0) {
      exts.push_back(Ext("1.3.6.1.5.5.7.1.24", false, der::Sequence({der::SmallInteger(5)})));
    }
    if (Rand(5) == 0) {  // unregistered: generic form
      exts.push_back(Ext("1.3.6.1.4.1.99999.9", Coin(), der::OctetString(RandomBytes(Rand(40)))));
    }
    if (Rand(8) == 0) {  // registered but unsupported specific form: generic form
      exts.push_back(Ext(
          "2.5.29.30", true,
          der::Sequence({der::Tlv(0xa0, der::Sequence({der::Tlv(0x82, AsBytes(".example"))}))})));
    }
    if (exts.empty()) return {};
    for (size_t i = exts.size(); i > 1; --i) std::swap(exts[i - 1], exts[Rand(i)]);
    Bytes list;
    for (const Bytes& e : exts) list.insert(list.end(), e.begin(), e.end());
    return der::Tlv(0xa3, der::Tlv(der::kSequence, list));
  }

  int64_t RandomTime() {
    switch (Rand(6)) {
      case 0:
        return 2524607999;  // 2049-12-31T23:59:59Z, last UTCTime
      case 1:
        return 2524608000;  // 2050-01-01T00:00:00Z, first GeneralizedTime
      case 2:
        return static_cast<int64_t>(Rand(253402300799));
      default:
        return static_cast<int64_t>(Rand(4102444800));  // up to 2100
    }
  }

  // A certificate issued by `issuer` (self-issued when `issuer_name` is empty).
  Bytes Make(const PrivateKey& issuer, const Bytes& issuer_name, const PublicKey& subject_key) {
    Bytes subject = RandomName();
    const Bytes& iname = issuer_name.empty() ? subject : issuer_name;
    Bytes sig_alg = issuer.public_key().type() == KeyType::kP384
                        ? der::Sequence({der::Oid("1.2.840.10045.4.3.3")})
                        : der::Sequence({der::Oid("1.2.840.10045.4.3.2")});
    int64_t nb = RandomTime();
    Bytes not_after = der::Tlv(der::kGeneralizedTime, AsBytes("99991231235959Z"));
    if (Rand(5) != 0) {
      not_after =
          der::Time(std::min<int64_t>(nb + static_cast<int64_t>(Rand(400000000)), 253402300799));
    }
    Bytes tbs = der::Sequence(
        {der::Tlv(0xa0, der::SmallInteger(2)), der::UnsignedInteger(RandomBytes(1 + Rand(20))),
         sig_alg, iname, der::Sequence({der::Time(nb), not_after}), subject, subject_key.ToDer(),
         RandomExtensions(subject_key, issuer.public_key())});
    auto sig = issuer.Sign(tbs);
    EXPECT_TRUE(sig);
    return der::Sequence({tbs, sig_alg, der::BitString(*sig)});
  }

 private:
  std::mt19937_64 rng_;
};

TEST(C509RoundTrip, ThousandRandomCertificates) {
  CertFactory factory(20260801);
  auto ca256 = PrivateKey::Generate(KeyType::kP256);
  auto ca384 = PrivateKey::Generate(KeyType::kP384);
  ASSERT_TRUE(ca256 && ca384);
  std::vector<PrivateKey> subjects;
  for (int i = 0; i < 6; ++i) {
    auto k = PrivateKey::Generate(i % 2 ? KeyType::kP384 : KeyType::kP256);
    ASSERT_TRUE(k);
    subjects.push_back(*k);
  }
  Bytes ca_name = der::Sequence(
      {der::Tlv(der::kSet, factory.Atv("2.5.4.3", der::kUtf8String, "Operational CA"))});
  size_t der_total = 0;
  size_t c509_total = 0;
  for (int i = 0; i < 1000; ++i) {
    const bool self_issued = i % 10 == 0;
    const PrivateKey& issuer = i % 3 == 0 ? *ca384 : *ca256;
    const PrivateKey& subject = self_issued ? issuer : subjects[i % subjects.size()];
    Bytes der = factory.Make(issuer, self_issued ? Bytes{} : ca_name, subject.public_key());
    auto c509 = EncodeX509(der);
    ASSERT_TRUE(c509) << i << ": " << c509.error().ToString() << "\n" << ToHex(der);
    auto back = DecodeToX509(*c509);
    ASSERT_TRUE(back) << i << ": " << back.error().ToString();
    ASSERT_EQ(ToHex(*back), ToHex(der)) << i;
    auto ok = Verify(*c509, issuer.public_key());
    ASSERT_TRUE(ok) << ok.error().ToString();
    EXPECT_TRUE(*ok) << i;
    der_total += der.size();
    c509_total += c509->size();

    auto cert = Parse(*c509);
    ASSERT_TRUE(cert);
    auto reserialized = Serialize(*cert);
    ASSERT_TRUE(reserialized);
    EXPECT_EQ(*reserialized, *c509);
    auto key = SubjectPublicKey(*cert);
    ASSERT_TRUE(key) << key.error().ToString();
    EXPECT_EQ(*key, subject.public_key());

    if (i % 5 == 0) {
      auto native = ToNative(der, issuer);
      if (!native) {
        // Only certificates with registered content the specific encodings cannot carry are
        // refused (here: a registered attribute as BMPString or with a PrintableString that
        // breaks its alphabet, or nameConstraints).
        EXPECT_NE(native.error().message().find("natively signed"), std::string::npos)
            << native.error().message();
        continue;
      }
      auto native_ok = VerifyNative(*native, issuer.public_key());
      ASSERT_TRUE(native_ok) << native_ok.error().ToString();
      EXPECT_TRUE(*native_ok) << i;
      auto parsed = Parse(*native);
      ASSERT_TRUE(parsed);
      EXPECT_EQ(parsed->type, kTypeNative);
      for (const Attribute& a : parsed->subject) EXPECT_GE(a.type, 0);
    }
  }
  std::cout << "1000 certificates: DER " << der_total << " bytes, C509 " << c509_total << " bytes ("
            << (100 * c509_total / der_total) << "%)\n";
}

// The DESIGN.md IDevID profile, built byte by byte: what a factory-issued birth certificate
// costs in each format.
TEST(C509Sizes, IdevidProfile) {
  CertFactory f(1);
  auto ca = PrivateKey::Generate(KeyType::kP256);
  auto device = PrivateKey::Generate(KeyType::kP256);
  ASSERT_TRUE(ca && device);
  const std::string device_id = ToHex(crypto::Sha256(AsBytes("SN000123")));
  Bytes issuer = der::Sequence(
      {der::Tlv(der::kSet, f.Atv("2.5.4.10", der::kUtf8String, "Acme")),
       der::Tlv(der::kSet, f.Atv("2.5.4.3", der::kUtf8String, "Acme Manufacturing CA"))});
  Bytes subject =
      der::Sequence({der::Tlv(der::kSet, f.Atv("2.5.4.10", der::kUtf8String, "Acme")),
                     der::Tlv(der::kSet, f.Atv("2.5.4.3", der::kUtf8String, device_id)),
                     der::Tlv(der::kSet, f.Atv("2.5.4.5", der::kPrintableString, "SN000123"))});
  Bytes hw =
      der::Sequence({der::Oid("1.3.6.1.4.1.99999.1"), der::OctetString(AsBytes("SN000123"))});
  Bytes san =
      der::Sequence({der::Tlv(0x86, AsBytes("urn:dev:sn:SN000123")),
                     der::Constructed(0xa0, {der::Oid("1.3.6.1.5.5.7.8.4"), der::Tlv(0xa0, hw)})});
  Bytes exts = der::Tlv(
      0xa3, der::Sequence({f.Ext("2.5.29.15", true, der::Tlv(der::kBitString, Bytes{0x07, 0x80})),
                           f.Ext("2.5.29.35", false,
                                 der::Sequence({der::Tlv(0x80, ca->public_key().KeyIdentifier())})),
                           f.Ext("2.5.29.17", false, san)}));
  Bytes alg = der::Sequence({der::Oid("1.2.840.10045.4.3.2")});
  Bytes serial = f.RandomBytes(16);
  serial[0] &= 0x7f;
  Bytes tbs = der::Sequence(
      {der::Tlv(0xa0, der::SmallInteger(2)), der::UnsignedInteger(serial), alg, issuer,
       der::Sequence(
           {der::Time(1767225600), der::Tlv(der::kGeneralizedTime, AsBytes("99991231235959Z"))}),
       subject, device->public_key().ToDer(), exts});
  auto sig = ca->Sign(tbs);
  ASSERT_TRUE(sig);
  Bytes der = der::Sequence({tbs, alg, der::BitString(*sig)});
  auto c509 = EncodeX509(der);
  ASSERT_TRUE(c509) << c509.error().ToString();
  auto native = ToNative(der, *ca);
  ASSERT_TRUE(native) << native.error().ToString();
  std::cout << "IDevID profile: X.509 " << der.size() << " bytes, C509 " << c509->size()
            << " bytes (type 3), " << native->size() << " bytes (type 2)\n";
  EXPECT_LT(c509->size() * 2, der.size() + 40);
  auto cert = Parse(*c509);
  ASSERT_TRUE(cert);
  // The 64-character hex device id travels as 32 bytes.
  EXPECT_NE(Describe(*cert).find("CN=" + device_id), std::string::npos);
}

TEST(C509RoundTrip, NativeFromFields) {
  auto ca = PrivateKey::Generate(KeyType::kP384);
  auto device = PrivateKey::Generate(KeyType::kP256);
  ASSERT_TRUE(ca && device);
  C509Certificate tbs;
  tbs.serial = {0x01, 0x02};
  tbs.issuer = Name{Attribute{1, "Manufacturing CA", {}, {}}};
  tbs.not_before = 1700000000;
  tbs.subject = Name{Attribute{1, "0123456789abcdef", {}, {}}, Attribute{8, "Acme", {}, {}}};
  auto alg = PublicKeyAlgorithmFor(device->public_key());
  auto key = PublicKeyItemFor(device->public_key());
  ASSERT_TRUE(alg && key);
  tbs.public_key_algorithm = *alg;
  tbs.public_key = *key;
  tbs.extensions = {KeyUsageExtension(1, true), SubjectKeyIdExtension(Bytes(20, 7)),
                    AuthorityKeyIdExtension(ca->public_key().KeyIdentifier()),
                    BasicConstraintsExtension(false, std::nullopt, false),
                    ExtKeyUsageExtension({2})};
  auto c509 = SignNative(tbs, *ca);
  ASSERT_TRUE(c509) << c509.error().ToString();
  auto ok = VerifyNative(*c509, ca->public_key());
  ASSERT_TRUE(ok);
  EXPECT_TRUE(*ok);
  auto parsed = Parse(*c509);
  ASSERT_TRUE(parsed);
  EXPECT_EQ(parsed->signature_algorithm.code, 1);  // P-384 issuer: ecdsa-with-SHA384
  EXPECT_EQ(parsed->signature.size(), 96u);
  EXPECT_EQ(parsed->subject, tbs.subject);
  auto subject_key = SubjectPublicKey(*parsed);
  ASSERT_TRUE(subject_key);
  EXPECT_EQ(*subject_key, device->public_key());
  // The only keyUsage shortcut: a lone keyUsage becomes one int.
  C509Certificate lone = tbs;
  lone.extensions = {KeyUsageExtension(5, true)};
  auto lone_c509 = SignNative(lone, *ca);
  ASSERT_TRUE(lone_c509);
  auto items = cbor::DecodeSequence(ByteView(*lone_c509).subspan(1));
  ASSERT_TRUE(items);
  EXPECT_EQ((*items)[9], cbor::Item::Int(-5));
}

TEST(C509RoundTrip, NativeRefusesTypeThreeOnlyForms) {
  C509Certificate tbs;
  tbs.serial = {0x01};
  tbs.subject = Name{Attribute{-4, "US", {}, {}}};
  tbs.public_key_algorithm = AlgorithmId{1, {}, std::nullopt};
  tbs.public_key = cbor::Item::ByteString(Bytes(33, 0x02));
  tbs.extensions = {KeyUsageExtension(1, false)};
  auto ca = PrivateKey::Generate(KeyType::kP256);
  ASSERT_TRUE(ca);
  auto r = SignNative(tbs, *ca);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("non-negative"), std::string::npos);
  tbs.subject[0].type = 4;
  tbs.serial = {0x00, 0x01};
  EXPECT_FALSE(SignNative(tbs, *ca));
}

// --- X.509 the encoder must refuse
// ----------------------------------------------------------------

struct Parts {
  Bytes version = der::Tlv(0xa0, der::SmallInteger(2));
  Bytes serial = der::SmallInteger(5);
  Bytes alg = der::Sequence({der::Oid("1.2.840.10045.4.3.2")});
  Bytes issuer = der::Sequence(
      {der::Tlv(der::kSet, der::Sequence({der::Oid("2.5.4.3"), der::Utf8String("CA")}))});
  Bytes validity = der::Sequence({der::Time(1700000000), der::Time(1800000000)});
  Bytes subject = der::Sequence(
      {der::Tlv(der::kSet, der::Sequence({der::Oid("2.5.4.3"), der::Utf8String("dev")}))});
  Bytes spki;
  Bytes extra;
  Bytes outer_alg;
  Bytes signature = der::BitString(der::Sequence({der::SmallInteger(1), der::SmallInteger(2)}));

  Bytes Build() const {
    Bytes tbs = der::Sequence({version, serial, alg, issuer, validity, subject, spki, extra});
    return der::Sequence({tbs, outer_alg.empty() ? alg : outer_alg, signature});
  }
};

Parts ValidParts() {
  Parts p;
  auto key = PrivateKey::Generate(KeyType::kP256);
  EXPECT_TRUE(key);
  p.spki = key->public_key().ToDer();
  return p;
}

void ExpectRefused(const Parts& p, std::string_view message_part) {
  auto r = EncodeX509(p.Build());
  ASSERT_FALSE(r) << "expected a refusal mentioning '" << message_part << "'";
  EXPECT_EQ(r.error().code(), Code::kInvalidArgument);
  EXPECT_NE(r.error().message().find(message_part), std::string::npos) << r.error().message();
}

TEST(C509Refusals, ValidPartsEncode) {
  auto r = EncodeX509(ValidParts().Build());
  EXPECT_TRUE(r) << r.error().ToString();
}

TEST(C509Refusals, NotRepresentableCertificatesAreRefused) {
  Parts p = ValidParts();
  p.version = {};
  ExpectRefused(p, "v1");

  p = ValidParts();
  p.version = der::Tlv(0xa0, der::SmallInteger(1));
  ExpectRefused(p, "v3");

  p = ValidParts();
  p.serial = der::SmallInteger(-5);
  ExpectRefused(p, "negative serial");

  p = ValidParts();
  p.serial = der::Tlv(der::kInteger, Bytes{0x00, 0x05});  // non-minimal INTEGER
  ExpectRefused(p, "exactly");

  p = ValidParts();
  p.outer_alg = der::Sequence({der::Oid("1.2.840.10045.4.3.3")});
  ExpectRefused(p, "signatureAlgorithm");

  p = ValidParts();
  Bytes two = der::Sequence({der::Oid("2.5.4.3"), der::Utf8String("a")});
  Bytes two2 = der::Sequence({der::Oid("2.5.4.10"), der::Utf8String("b")});
  p.subject = der::Sequence({der::Constructed(der::kSet, {two, two2})});
  ExpectRefused(p, "multi-valued RDN");

  p = ValidParts();
  p.validity = der::Sequence(
      {der::Tlv(der::kGeneralizedTime, AsBytes("20300101000000Z")), der::Time(1800000000)});
  ExpectRefused(p, "RFC 5280 form");

  p = ValidParts();
  p.validity =
      der::Sequence({der::Tlv(der::kUtcTime, AsBytes("691231235959Z")), der::Time(1800000000)});
  ExpectRefused(p, "before 1970");

  p = ValidParts();
  p.extra = der::Tlv(0x81, Bytes{0x00, 0x01});
  ExpectRefused(p, "UniqueID");

  p = ValidParts();
  p.extra = der::Tlv(0xa3, der::Sequence({}));
  ExpectRefused(p, "empty extensions");

  p = ValidParts();
  p.extra = der::Tlv(
      0xa3, der::Sequence({der::Sequence({der::Oid("2.5.29.15"), der::Boolean(false),
                                          der::OctetString(der::BitString(Bytes{0x80}, 7))})}));
  ExpectRefused(p, "critical = FALSE");

  p = ValidParts();
  p.signature = der::BitString(Bytes{0x01, 0x02});  // not an ECDSA-Sig-Value
  ExpectRefused(p, "ECDSA signature");

  p = ValidParts();
  p.signature = der::BitString(
      der::Sequence({der::Tlv(der::kInteger, Bytes{0x00, 0x01}), der::SmallInteger(2)}));
  ExpectRefused(p, "exactly");

  p = ValidParts();
  p.signature = der::BitString(der::Sequence({der::SmallInteger(1), der::SmallInteger(2)}), 1);
  ExpectRefused(p, "unused bits");

  Bytes trailing = ValidParts().Build();
  trailing.push_back(0);
  EXPECT_FALSE(EncodeX509(trailing));
}

TEST(C509Refusals, UnusualButRepresentableContentUsesGenericForms) {
  Parts p = ValidParts();
  // keyUsage with a non-minimal BIT STRING (trailing zero bit) cannot use the int form.
  Bytes ku = der::Tlv(der::kBitString, Bytes{0x00, 0x80});
  // AKI with issuer and serial only, and an unregistered extension.
  Bytes aki = der::Sequence(
      {der::Tlv(0xa1, der::Tlv(0x82, AsBytes("x.example"))), der::Tlv(0x82, Bytes{0x01})});
  p.extra =
      der::Tlv(0xa3, der::Sequence({der::Sequence({der::Oid("2.5.29.15"), der::OctetString(ku)}),
                                    der::Sequence({der::Oid("2.5.29.35"), der::OctetString(aki)}),
                                    der::Sequence({der::Oid("1.2.3.4"), der::Boolean(true),
                                                   der::OctetString(Bytes{0xde, 0xad})})}));
  // A subject with a teletexString and an unregistered attribute.
  p.subject = der::Sequence(
      {der::Tlv(der::kSet, der::Sequence({der::Oid("2.5.4.3"), der::Tlv(0x14, AsBytes("t61"))})),
       der::Tlv(der::kSet, der::Sequence({der::Oid("1.2.3.5"), der::Utf8String("x")}))});
  Bytes der = p.Build();
  auto c509 = EncodeX509(der);
  ASSERT_TRUE(c509) << c509.error().ToString();
  auto back = DecodeToX509(*c509);
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, der);
  auto cert = Parse(*c509);
  ASSERT_TRUE(cert);
  ASSERT_EQ(cert->extensions.size(), 3u);
  for (const Extension& e : cert->extensions) EXPECT_FALSE(e.oid.empty());
  EXPECT_TRUE(cert->extensions[2].critical);
  for (const Attribute& a : cert->subject) EXPECT_FALSE(a.oid.empty());
}

}  // namespace
}  // namespace iotpki::c509
