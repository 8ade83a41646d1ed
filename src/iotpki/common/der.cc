#include "iotpki/common/der.h"

#include <charconv>
#include <cstdio>
#include <ctime>
#include <string>
#include <vector>

namespace iotpki::der {
namespace {

void AppendLength(Bytes& out, size_t len) {
  if (len < 0x80) {
    out.push_back(static_cast<uint8_t>(len));
    return;
  }
  uint8_t buf[8];
  int n = 0;
  while (len > 0) {
    buf[n++] = static_cast<uint8_t>(len & 0xff);
    len >>= 8;
  }
  out.push_back(static_cast<uint8_t>(0x80 | n));
  while (n > 0) out.push_back(buf[--n]);
}

void AppendBase128(Bytes& out, uint64_t v) {
  uint8_t buf[10];
  int n = 0;
  do {
    buf[n++] = static_cast<uint8_t>(v & 0x7f);
    v >>= 7;
  } while (v > 0);
  while (n > 1) out.push_back(static_cast<uint8_t>(buf[--n] | 0x80));
  out.push_back(buf[0]);
}

Error Malformed(std::string_view what) {
  return Error(Code::kInvalidArgument, "malformed DER: " + std::string(what));
}

// Days from civil date (proleptic Gregorian), Howard Hinnant's algorithm.
int64_t DaysFromCivil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

}  // namespace

void AppendTlv(Bytes& out, uint8_t tag, ByteView contents) {
  AppendHeader(out, tag, contents.size());
  out.insert(out.end(), contents.begin(), contents.end());
}

size_t TlvSize(size_t content) {
  size_t length_octets = 1;
  if (content >= 0x80) {
    for (size_t n = content; n > 0; n >>= 8) ++length_octets;
  }
  return 1 + length_octets + content;
}

void AppendHeader(Bytes& out, uint8_t tag, size_t content) {
  out.push_back(tag);
  AppendLength(out, content);
}

// Civil date from Unix days (Howard Hinnant's algorithm, the inverse of DaysFromCivil): no
// gmtime_r, which takes glibc's time zone lock on every call.
bool AppendGeneralizedTime(Bytes& out, int64_t unix_seconds) {
  int64_t days = unix_seconds / 86400;
  int64_t secs = unix_seconds % 86400;
  if (secs < 0) {
    secs += 86400;
    --days;
  }
  days += 719468;
  int64_t era = (days >= 0 ? days : days - 146096) / 146097;
  int64_t doe = days - era * 146097;
  int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  int64_t mp = (5 * doy + 2) / 153;
  int64_t day = doy - (153 * mp + 2) / 5 + 1;
  int64_t month = mp < 10 ? mp + 3 : mp - 9;
  int64_t year = yoe + era * 400 + (month <= 2 ? 1 : 0);
  if (year < 0 || year > 9999) return false;
  out.push_back(kGeneralizedTime);
  out.push_back(static_cast<uint8_t>(kGeneralizedTimeSize - 2));
  auto digits = [&out](int64_t value, int n) {
    for (int i = n - 1; i >= 0; --i) {
      int64_t p = 1;
      for (int j = 0; j < i; ++j) p *= 10;
      out.push_back(static_cast<uint8_t>('0' + (value / p) % 10));
    }
  };
  digits(year, 4);
  digits(month, 2);
  digits(day, 2);
  digits(secs / 3600, 2);
  digits(secs / 60 % 60, 2);
  digits(secs % 60, 2);
  out.push_back('Z');
  return true;
}

Bytes Tlv(uint8_t tag, ByteView contents) {
  Bytes out;
  out.reserve(contents.size() + 6);
  AppendTlv(out, tag, contents);
  return out;
}

Bytes Constructed(uint8_t tag, std::initializer_list<ByteView> children) {
  size_t len = 0;
  for (auto c : children) len += c.size();
  Bytes out;
  out.reserve(len + 6);
  out.push_back(tag);
  AppendLength(out, len);
  for (auto c : children) out.insert(out.end(), c.begin(), c.end());
  return out;
}

Bytes UnsignedInteger(ByteView magnitude) {
  size_t i = 0;
  while (i + 1 < magnitude.size() && magnitude[i] == 0) ++i;
  Bytes v;
  if (magnitude.empty()) {
    v.push_back(0);
  } else {
    if (magnitude[i] & 0x80) v.push_back(0);
    v.insert(v.end(), magnitude.begin() + static_cast<ptrdiff_t>(i), magnitude.end());
  }
  return Tlv(kInteger, v);
}

Bytes SmallInteger(int64_t value) {
  Bytes v;
  uint64_t u = static_cast<uint64_t>(value);
  for (int shift = 56; shift >= 0; shift -= 8) v.push_back(static_cast<uint8_t>(u >> shift));
  // Strip redundant leading bytes (two's complement, minimal).
  size_t i = 0;
  while (i + 1 < v.size() &&
         ((v[i] == 0 && !(v[i + 1] & 0x80)) || (v[i] == 0xff && (v[i + 1] & 0x80)))) {
    ++i;
  }
  return Tlv(kInteger, ByteView(v).subspan(i));
}

Bytes Boolean(bool value) {
  uint8_t b = value ? 0xff : 0x00;
  return Tlv(kBoolean, ByteView(&b, 1));
}

namespace {

// Appends the content octets of `dotted` to `out`; false (out unchanged) if it is not an OID.
// Called for every OID of every certificate built, so it neither collects the arcs nor grows
// `out` byte by byte: an arc of d decimal digits takes at most d octets, so the content is never
// longer than the text.
bool AppendOidContent(Bytes& out, std::string_view dotted) {
  size_t start = out.size();
  out.reserve(start + dotted.size());
  const char* p = dotted.data();
  const char* end = p + dotted.size();
  uint64_t first = 0;
  for (size_t arc = 0;; ++arc) {
    uint64_t v = 0;
    auto [next, ec] = std::from_chars(p, end, v);
    if (next == p || ec != std::errc() || (next != end && *next != '.') || (arc == 0 && v > 2) ||
        (arc == 1 && first < 2 && v > 39) || (arc == 1 && v > UINT64_MAX - 80)) {
      out.resize(start);
      return false;
    }
    bool last = next == end;
    if (arc == 0) {
      if (last) break;  // one arc is not an OID
      first = v;
    } else {
      AppendBase128(out, arc == 1 ? first * 40 + v : v);  // the first two arcs share one
      if (last) return true;
    }
    p = next + 1;
  }
  out.resize(start);
  return false;
}

}  // namespace

Bytes OidContent(std::string_view dotted) {
  Bytes out;
  AppendOidContent(out, dotted);
  return out;
}

Bytes Oid(std::string_view dotted) {
  Bytes out;
  out.reserve(dotted.size() + 2);
  out.push_back(kOid);
  out.push_back(0);  // the length, below
  if (!AppendOidContent(out, dotted)) return Tlv(kOid, {});
  size_t len = out.size() - 2;
  if (len < 0x80) {
    out[1] = static_cast<uint8_t>(len);
    return out;
  }
  return Tlv(kOid, ByteView(out).subspan(2));  // an OID of 128 octets or more: never in practice
}

std::string OidToText(ByteView content) {
  std::string out;
  out.reserve(content.size() * 3);
  uint64_t v = 0;
  bool first = true;
  if (content.empty() || (content.back() & 0x80)) return {};
  char buf[24];
  auto append = [&](uint64_t n) {
    auto r = std::to_chars(buf, buf + sizeof buf, n);
    out.append(buf, r.ptr);
  };
  for (size_t i = 0; i < content.size(); ++i) {
    if (v == 0 && content[i] == 0x80) return {};  // non-minimal
    if (v > (UINT64_MAX >> 7)) return {};
    v = v << 7 | (content[i] & 0x7f);
    if (content[i] & 0x80) continue;
    if (first) {
      uint64_t a = v < 80 ? v / 40 : 2;
      append(a);
      out += '.';
      append(v - a * 40);
      first = false;
    } else {
      out += '.';
      append(v);
    }
    v = 0;
  }
  return out;
}

Bytes BitString(ByteView bytes, int unused_bits) {
  Bytes v;
  v.reserve(bytes.size() + 1);
  v.push_back(static_cast<uint8_t>(unused_bits));
  v.insert(v.end(), bytes.begin(), bytes.end());
  return Tlv(kBitString, v);
}

Bytes OctetString(ByteView bytes) { return Tlv(kOctetString, bytes); }
Bytes Utf8String(std::string_view s) { return Tlv(kUtf8String, AsBytes(s)); }
Bytes PrintableString(std::string_view s) { return Tlv(kPrintableString, AsBytes(s)); }
Bytes Ia5String(std::string_view s) { return Tlv(kIa5String, AsBytes(s)); }

Bytes Time(int64_t unix_seconds) {
  std::time_t t = static_cast<std::time_t>(unix_seconds);
  std::tm tm{};
  gmtime_r(&t, &tm);
  int year = tm.tm_year + 1900;
  char buf[32];
  if (year >= 1950 && year <= 2049) {
    std::snprintf(buf, sizeof buf, "%02d%02d%02d%02d%02d%02dZ", year % 100, tm.tm_mon + 1,
                  tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
    return Tlv(kUtcTime, AsBytes(buf));
  }
  std::snprintf(buf, sizeof buf, "%04d%02d%02d%02d%02d%02dZ", year, tm.tm_mon + 1, tm.tm_mday,
                tm.tm_hour, tm.tm_min, tm.tm_sec);
  return Tlv(kGeneralizedTime, AsBytes(buf));
}

Result<Element> Reader::Next() {
  if (pos_ >= data_.size()) return Fail(Malformed("unexpected end of data"));
  size_t start = pos_;
  uint8_t tag = data_[pos_++];
  if ((tag & 0x1f) == 0x1f) return Fail(Malformed("multi-byte tags are not supported"));
  if (pos_ >= data_.size()) return Fail(Malformed("missing length"));
  size_t len = data_[pos_++];
  if (len & 0x80) {
    size_t n = len & 0x7f;
    if (n == 0) return Fail(Malformed("indefinite length"));
    if (n > 4) return Fail(Malformed("length too large"));
    if (data_.size() - pos_ < n) return Fail(Malformed("truncated length"));
    len = 0;
    for (size_t i = 0; i < n; ++i) len = len << 8 | data_[pos_++];
    if (len < 0x80 || (n > 1 && (len >> (8 * (n - 1))) == 0)) {
      return Fail(Malformed("non-minimal length"));
    }
  }
  if (data_.size() - pos_ < len) return Fail(Malformed("truncated value"));
  Element e;
  e.tag = tag;
  e.contents = data_.subspan(pos_, len);
  e.whole = data_.subspan(start, pos_ + len - start);
  pos_ += len;
  return e;
}

Result<Element> Reader::Expect(uint8_t tag) {
  if (empty()) return Fail(Malformed("unexpected end of data"));
  if (PeekTag() != tag) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "expected tag 0x%02x, found 0x%02x", tag, PeekTag());
    return Fail(Malformed(buf));
  }
  return Next();
}

Result<Element> Reader::Optional(uint8_t tag) {
  if (empty() || PeekTag() != tag) return Element{};
  return Next();
}

Result<int64_t> ParseSmallInteger(ByteView contents) {
  if (contents.empty()) return Fail(Malformed("empty INTEGER"));
  if (contents[0] & 0x80) return Fail(Malformed("negative INTEGER"));
  if (contents.size() > 1 && contents[0] == 0 && !(contents[1] & 0x80)) {
    return Fail(Malformed("non-minimal INTEGER"));
  }
  if (contents.size() > 8) return Fail(Malformed("INTEGER too large"));
  int64_t v = 0;
  for (uint8_t b : contents) v = v << 8 | b;
  return v;
}

Result<int64_t> ParseTime(const Element& e) {
  auto s = AsString(e.contents);
  size_t year_digits = e.tag == kUtcTime ? 2 : e.tag == kGeneralizedTime ? 4 : 0;
  if (year_digits == 0) return Fail(Malformed("expected UTCTime or GeneralizedTime"));
  if (s.size() != year_digits + 11 || s.back() != 'Z') return Fail(Malformed("bad time format"));
  for (size_t i = 0; i + 1 < s.size(); ++i) {
    if (s[i] < '0' || s[i] > '9') return Fail(Malformed("bad time format"));
  }
  auto num = [&](size_t off, size_t n) {
    int v = 0;
    for (size_t i = 0; i < n; ++i) v = v * 10 + (s[off + i] - '0');
    return v;
  };
  int year = num(0, year_digits);
  if (year_digits == 2) year += year >= 50 ? 1900 : 2000;
  size_t o = year_digits;
  int mon = num(o, 2), day = num(o + 2, 2), hour = num(o + 4, 2), min = num(o + 6, 2),
      sec = num(o + 8, 2);
  if (mon < 1 || mon > 12 || day < 1 || day > 31 || hour > 23 || min > 59 || sec > 59) {
    return Fail(Malformed("time out of range"));
  }
  return DaysFromCivil(year, static_cast<unsigned>(mon), static_cast<unsigned>(day)) * 86400 +
         hour * 3600 + min * 60 + sec;
}

}  // namespace iotpki::der
