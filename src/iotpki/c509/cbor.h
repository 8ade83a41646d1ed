// A small deterministic CBOR (RFC 8949) writer and a strict reader, sized for C509.
//
// Supported: unsigned and negative integers, byte strings, text strings, arrays, tags and the
// simple values false/true/null/undefined. Maps and floats are not part of C509 and are refused.
//
// The reader accepts only the deterministic encoding of RFC 8949 section 4.2.1 (shortest heads,
// definite lengths). Because of that, re-encoding a decoded Item reproduces the input bytes
// exactly, which the natively signed C509 format relies on.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "iotpki/common/bytes.h"
#include "iotpki/common/error.h"

namespace iotpki::cbor {

// Nesting limit of the reader: C509 needs at most 6 levels; deeper input is refused rather than
// recursed into.
inline constexpr int kMaxDepth = 16;

enum class Type : uint8_t { kUnsigned, kNegative, kBytes, kText, kArray, kTag, kSimple };
enum class Simple : uint8_t { kFalse = 20, kTrue = 21, kNull = 22, kUndefined = 23 };

// One CBOR data item. An immutable value; copies are deep.
class Item {
 public:
  // The default item is `undefined`, which C509 uses for "no value".
  Item() = default;

  static Item Uint(uint64_t value);
  static Item Int(int64_t value);
  // The negative integer -1 - n, covering the full CBOR range down to -2^64.
  static Item NegativeRaw(uint64_t n);
  static Item ByteString(ByteView bytes);
  // `text` must be valid UTF-8 (the writer does not check; the reader does).
  static Item TextString(std::string_view text);
  static Item Array(std::vector<Item> items);
  static Item Tagged(uint64_t tag, Item content);
  static Item Null() { return Item(Simple::kNull); }
  static Item Undefined() { return Item(Simple::kUndefined); }
  static Item Bool(bool value) { return Item(value ? Simple::kTrue : Simple::kFalse); }

  Type type() const { return type_; }
  bool is_unsigned() const { return type_ == Type::kUnsigned; }
  bool is_int() const { return type_ == Type::kUnsigned || type_ == Type::kNegative; }
  bool is_bytes() const { return type_ == Type::kBytes; }
  bool is_text() const { return type_ == Type::kText; }
  bool is_array() const { return type_ == Type::kArray; }
  bool is_tag() const { return type_ == Type::kTag; }
  bool is_null() const { return type_ == Type::kSimple && value_ == uint64_t(Simple::kNull); }
  bool is_undefined() const {
    return type_ == Type::kSimple && value_ == uint64_t(Simple::kUndefined);
  }

  // The integer if it fits in int64_t; nullopt for other types and out-of-range values.
  std::optional<int64_t> AsInt() const;
  // The head argument: the unsigned value, n for a negative integer (-1 - n), the tag number,
  // the simple value, or the length of a string or array.
  uint64_t raw() const { return value_; }
  // Contents of a byte or text string; empty for other types.
  ByteView bytes() const { return data_; }
  std::string_view text() const { return AsString(data_); }
  // Elements of an array; the single content item of a tag. Empty for other types.
  const std::vector<Item>& items() const { return items_; }
  uint64_t tag() const { return value_; }
  // Precondition: is_tag().
  const Item& tagged() const { return items_.front(); }

  // Appends the deterministic encoding.
  void AppendTo(Bytes& out) const;
  Bytes Encode() const;

  bool operator==(const Item& other) const;

 private:
  explicit Item(Simple s) : type_(Type::kSimple), value_(static_cast<uint64_t>(s)) {}

  Type type_ = Type::kSimple;
  uint64_t value_ = static_cast<uint64_t>(Simple::kUndefined);
  Bytes data_;
  std::vector<Item> items_;
};

// Appends a head (major type 0..7 and argument) in its shortest form.
void AppendHead(Bytes& out, uint8_t major, uint64_t argument);

// Reads items one after another. Every refusal is Code::kInvalidArgument with a message naming
// the problem and the byte offset. The reader never allocates more than the input's size for a
// declared length: lengths and element counts are checked against the bytes left first.
// The reader borrows `data`, which must outlive it.
class Reader {
 public:
  explicit Reader(ByteView data, int max_depth = kMaxDepth) : data_(data), max_depth_(max_depth) {}

  bool empty() const { return pos_ >= data_.size(); }
  size_t offset() const { return pos_; }
  ByteView rest() const { return data_.subspan(pos_); }

  // The next complete item.
  Result<Item> Next();
  // Only the head of an array, which must come next; returns its element count. The elements
  // are then read with Next().
  Result<uint64_t> ArrayHeader();

 private:
  struct Head {
    uint8_t major;
    uint64_t argument;
  };
  Result<Head> ReadHead();
  Result<Item> ReadItem(int depth);
  Error Refuse(std::string_view what, size_t at) const;

  ByteView data_;
  int max_depth_;
  size_t pos_ = 0;
};

// Exactly one item, with no trailing bytes.
Result<Item> Decode(ByteView data);
// A CBOR sequence (RFC 8742): zero or more items back to back.
Result<std::vector<Item>> DecodeSequence(ByteView data);

// RFC 8949 section 8 diagnostic notation, e.g. [1, h'01ff', "text", 48(h'00')].
std::string Diagnostic(const Item& item);

}  // namespace iotpki::cbor
