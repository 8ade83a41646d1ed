// Small text helpers shared by every layer. ASCII only and locale-independent: they serve
// protocol tokens, header values, CSV fields and identifiers, never prose.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "iotpki/common/bytes.h"

namespace iotpki {

// A-Z to a-z; every other byte (UTF-8 included) unchanged.
std::string ToLowerAscii(std::string_view s);

// `s` without leading and trailing ASCII white space (space, \t, \n, \v, \f, \r).
std::string_view Trim(std::string_view s);

// The number of code points in `s` if it is well-formed UTF-8 (RFC 3629: no overlong forms, no
// surrogates, nothing above U+10FFFF); none otherwise. NUL and control characters are valid
// UTF-8: callers that refuse them check separately.
std::optional<size_t> Utf8Length(std::string_view s);
// The length (1 to 4) of the well-formed UTF-8 sequence starting at s[i], or 0 if there is none
// there (malformed, cut short, or i past the end): for code that replaces bad bytes and goes on.
size_t Utf8SequenceLength(std::string_view s, size_t i);
inline bool IsValidUtf8(std::string_view s) { return Utf8Length(s).has_value(); }
inline bool IsValidUtf8(ByteView s) { return IsValidUtf8(AsString(s)); }

}  // namespace iotpki
