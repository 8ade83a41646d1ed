#include "iotpki/common/bytes.h"

#include <algorithm>
#include <array>
#include <cstring>

namespace iotpki {
namespace {

constexpr char kHexDigits[] = "0123456789abcdef";
constexpr char kBase64Alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

// A table rather than three comparisons a digit: the store decodes and checks a few hundred hex
// digits for each device a factory batch commits, on the one thread that writes.
constexpr std::array<int8_t, 256> MakeHexTable() {
  std::array<int8_t, 256> table{};
  for (auto& v : table) v = -1;
  for (int i = 0; i < 10; ++i) table['0' + i] = static_cast<int8_t>(i);
  for (int i = 0; i < 6; ++i) {
    table['a' + i] = static_cast<int8_t>(10 + i);
    table['A' + i] = static_cast<int8_t>(10 + i);
  }
  return table;
}
constexpr auto kHexTable = MakeHexTable();

constexpr std::array<int8_t, 256> MakeBase64Table() {
  std::array<int8_t, 256> table{};
  for (auto& v : table) v = -1;
  for (int i = 0; i < 64; ++i)
    table[static_cast<uint8_t>(kBase64Alphabet[i])] = static_cast<int8_t>(i);
  return table;
}
constexpr auto kBase64Table = MakeBase64Table();

}  // namespace

std::string ToHex(ByteView data) {
  std::string out;
  out.resize(data.size() * 2);
  for (size_t i = 0; i < data.size(); ++i) {
    out[2 * i] = kHexDigits[data[i] >> 4];
    out[2 * i + 1] = kHexDigits[data[i] & 0x0f];
  }
  return out;
}

int HexDigitValue(char c) { return kHexTable[static_cast<uint8_t>(c)]; }

bool FromHexInto(std::string_view hex, std::span<uint8_t> out) {
  if (hex.size() != 2 * out.size()) return false;
  int bad = 0;
  for (size_t i = 0; i < out.size(); ++i) {
    int hi = kHexTable[static_cast<uint8_t>(hex[2 * i])];
    int lo = kHexTable[static_cast<uint8_t>(hex[2 * i + 1])];
    bad |= hi | lo;  // negative once any digit is not one
    out[i] = static_cast<uint8_t>((hi & 0x0f) << 4 | (lo & 0x0f));
  }
  return bad >= 0;
}

Result<Bytes> FromHex(std::string_view hex) {
  if (hex.size() % 2 != 0) {
    return Fail(Code::kInvalidArgument, "hex string has an odd number of digits");
  }
  Bytes out(hex.size() / 2);
  if (!FromHexInto(hex, out)) {
    return Fail(Code::kInvalidArgument, "not a hex string (only 0-9 and a-f are allowed)");
  }
  return out;
}

std::string Base64Encode(ByteView data) {
  std::string out;
  out.reserve((data.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= data.size(); i += 3) {
    uint32_t v = data[i] << 16 | data[i + 1] << 8 | data[i + 2];
    out += kBase64Alphabet[v >> 18];
    out += kBase64Alphabet[(v >> 12) & 63];
    out += kBase64Alphabet[(v >> 6) & 63];
    out += kBase64Alphabet[v & 63];
  }
  size_t rest = data.size() - i;
  if (rest == 1) {
    uint32_t v = data[i] << 16;
    out += kBase64Alphabet[v >> 18];
    out += kBase64Alphabet[(v >> 12) & 63];
    out += "==";
  } else if (rest == 2) {
    uint32_t v = data[i] << 16 | data[i + 1] << 8;
    out += kBase64Alphabet[v >> 18];
    out += kBase64Alphabet[(v >> 12) & 63];
    out += kBase64Alphabet[(v >> 6) & 63];
    out += '=';
  }
  return out;
}

Result<Bytes> Base64Decode(std::string_view text) {
  Bytes out;
  out.reserve(text.size() / 4 * 3);
  uint32_t acc = 0;
  int have = 0;
  int padding = 0;
  for (char c : text) {
    if (c == ' ' || c == '\t' || c == '\r' || c == '\n') continue;
    if (c == '=') {
      ++padding;
      if (padding > 2) return Fail(Code::kInvalidArgument, "malformed base64: too much padding");
      continue;
    }
    if (padding > 0) {
      return Fail(Code::kInvalidArgument, "malformed base64: data after padding");
    }
    int v = kBase64Table[static_cast<uint8_t>(c)];
    if (v < 0) return Fail(Code::kInvalidArgument, "malformed base64: invalid character");
    acc = acc << 6 | static_cast<uint32_t>(v);
    if (++have == 4) {
      out.push_back(static_cast<uint8_t>(acc >> 16));
      out.push_back(static_cast<uint8_t>(acc >> 8));
      out.push_back(static_cast<uint8_t>(acc));
      acc = 0;
      have = 0;
    }
  }
  if (have == 1 || (have == 0 && padding != 0) || (have != 0 && have + padding != 4)) {
    return Fail(Code::kInvalidArgument, "malformed base64: truncated input");
  }
  if (have == 2) {
    if (acc & 0x0f) return Fail(Code::kInvalidArgument, "malformed base64: non-canonical ending");
    out.push_back(static_cast<uint8_t>(acc >> 4));
  } else if (have == 3) {
    if (acc & 0x03) return Fail(Code::kInvalidArgument, "malformed base64: non-canonical ending");
    out.push_back(static_cast<uint8_t>(acc >> 10));
    out.push_back(static_cast<uint8_t>(acc >> 2));
  }
  return out;
}

bool ConstantTimeEqual(ByteView a, ByteView b) {
  if (a.size() != b.size()) return false;
  volatile uint8_t diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff = diff | (a[i] ^ b[i]);
  return diff == 0;
}

bool BytesLess::operator()(ByteView a, ByteView b) const {
  size_t n = std::min(a.size(), b.size());
  int c = n == 0 ? 0 : std::memcmp(a.data(), b.data(), n);
  return c != 0 ? c < 0 : a.size() < b.size();
}

}  // namespace iotpki
