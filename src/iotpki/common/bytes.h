// Byte buffers and their text forms (hex, base64).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "iotpki/common/error.h"

namespace iotpki {

using Bytes = std::vector<uint8_t>;
using ByteView = std::span<const uint8_t>;

inline ByteView AsBytes(std::string_view s) {
  return ByteView(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}
inline std::string_view AsString(ByteView b) {
  return std::string_view(reinterpret_cast<const char*>(b.data()), b.size());
}
inline Bytes ToBytes(std::string_view s) { return Bytes(s.begin(), s.end()); }

// Lowercase hex.
std::string ToHex(ByteView data);
// Accepts upper- and lowercase; refuses odd lengths and non-hex characters.
Result<Bytes> FromHex(std::string_view hex);
// Decodes exactly 2 * out.size() hex digits (either case) into `out`, without allocating; false,
// with `out` unspecified, for another length or a character that is not a hex digit.
bool FromHexInto(std::string_view hex, std::span<uint8_t> out);
// The value of a hex digit of either case, or -1.
int HexDigitValue(char c);

// RFC 4648 section 4, with padding.
std::string Base64Encode(ByteView data);
// Strict alphabet and padding; ASCII whitespace (spaces, tabs, CR, LF) is skipped, as RFC 8951
// asks of EST receivers.
Result<Bytes> Base64Decode(std::string_view text);

// Constant-time equality for MACs and tokens: the time depends only on the lengths.
bool ConstantTimeEqual(ByteView a, ByteView b);

// Lexicographic order of byte strings, for std::sort and ordered containers of Bytes. Use it
// instead of Bytes' own operator<: inlined into a sort or a tree, that operator makes GCC 12 at -O3
// warn of a memcmp bound above the largest object (-Wstringop-overread, a false positive), and
// Release builds are warning-free.
struct BytesLess {
  bool operator()(ByteView a, ByteView b) const;
};

}  // namespace iotpki
