// A minimal strict DER reader and writer (X.690). Used to build certificates byte by byte, so
// that sizes are exact and encodings deterministic, and to rebuild DER from C509.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string_view>

#include "iotpki/common/bytes.h"
#include "iotpki/common/error.h"

namespace iotpki::der {

// Universal tags and the context-specific forms used by X.509.
inline constexpr uint8_t kBoolean = 0x01;
inline constexpr uint8_t kInteger = 0x02;
inline constexpr uint8_t kBitString = 0x03;
inline constexpr uint8_t kOctetString = 0x04;
inline constexpr uint8_t kNull = 0x05;
inline constexpr uint8_t kOid = 0x06;
inline constexpr uint8_t kEnumerated = 0x0a;
inline constexpr uint8_t kUtf8String = 0x0c;
inline constexpr uint8_t kPrintableString = 0x13;
inline constexpr uint8_t kIa5String = 0x16;
inline constexpr uint8_t kUtcTime = 0x17;
inline constexpr uint8_t kGeneralizedTime = 0x18;
inline constexpr uint8_t kSequence = 0x30;
inline constexpr uint8_t kSet = 0x31;
inline constexpr uint8_t ContextPrimitive(int n) { return static_cast<uint8_t>(0x80 | n); }
inline constexpr uint8_t ContextConstructed(int n) { return static_cast<uint8_t>(0xa0 | n); }

// --- Writing ---------------------------------------------------------------------------------

// Appends tag, minimal length and contents.
void AppendTlv(Bytes& out, uint8_t tag, ByteView contents);
Bytes Tlv(uint8_t tag, ByteView contents);
// A constructed value from already-encoded children, concatenated in order.
Bytes Constructed(uint8_t tag, std::initializer_list<ByteView> children);
inline Bytes Sequence(std::initializer_list<ByteView> children) {
  return Constructed(kSequence, children);
}
// INTEGER from unsigned big-endian magnitude bytes (leading zeros stripped, 0x00 added when the
// top bit is set, so the value is positive).
Bytes UnsignedInteger(ByteView magnitude);
Bytes SmallInteger(int64_t value);
Bytes Boolean(bool value);
// OBJECT IDENTIFIER from dotted text, e.g. "2.5.4.3". The text must be a valid OID.
Bytes Oid(std::string_view dotted);
// OID content bytes (without tag and length) from dotted text; empty on malformed text.
Bytes OidContent(std::string_view dotted);
// Dotted text from OID content bytes; empty string on malformed content.
std::string OidToText(ByteView content);
Bytes BitString(ByteView bytes, int unused_bits = 0);
Bytes OctetString(ByteView bytes);
Bytes Utf8String(std::string_view s);
Bytes PrintableString(std::string_view s);
Bytes Ia5String(std::string_view s);
// UTCTime up to 2049, GeneralizedTime from 2050 (RFC 5280 4.1.2.5).
Bytes Time(int64_t unix_seconds);

// For writers that size a structure first and then append it into one buffer (the OCSP answer
// template): the size of a TLV with `content` value octets, a tag and length header, and a
// GeneralizedTime YYYYMMDDHHMMSSZ (kGeneralizedTimeSize octets, whatever the year; false, with
// nothing appended, outside years 0 to 9999).
size_t TlvSize(size_t content);
void AppendHeader(Bytes& out, uint8_t tag, size_t content);
inline constexpr size_t kGeneralizedTimeSize = 17;
bool AppendGeneralizedTime(Bytes& out, int64_t unix_seconds);

// --- Reading ---------------------------------------------------------------------------------

struct Element {
  uint8_t tag = 0;
  ByteView contents;  // the value bytes
  ByteView whole;     // tag + length + value
};

// Reads DER elements one after another from a buffer. Only single-byte tags and definite,
// minimally encoded lengths are accepted; the reader never reads past its buffer.
class Reader {
 public:
  explicit Reader(ByteView data) : data_(data) {}
  bool empty() const { return pos_ >= data_.size(); }
  // The next element, whatever its tag.
  Result<Element> Next();
  // The next element, which must have this tag.
  Result<Element> Expect(uint8_t tag);
  // The next element if it has this tag; nullopt-like empty Element (tag 0) if not.
  Result<Element> Optional(uint8_t tag);
  uint8_t PeekTag() const { return empty() ? 0 : data_[pos_]; }
  ByteView rest() const { return data_.subspan(pos_); }

 private:
  ByteView data_;
  size_t pos_ = 0;
};

// Parses an INTEGER's contents as a non-negative int64; fails on negative or too-large values.
Result<int64_t> ParseSmallInteger(ByteView contents);
// Parses UTCTime or GeneralizedTime (only the Z forms RFC 5280 allows) into Unix seconds.
Result<int64_t> ParseTime(const Element& e);

}  // namespace iotpki::der
