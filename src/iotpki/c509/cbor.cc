#include "iotpki/c509/cbor.h"

#include <limits>
#include <string>
#include <utility>

#include "iotpki/common/strings.h"

namespace iotpki::cbor {
namespace {

constexpr uint8_t kMajorUnsigned = 0;
constexpr uint8_t kMajorNegative = 1;
constexpr uint8_t kMajorBytes = 2;
constexpr uint8_t kMajorText = 3;
constexpr uint8_t kMajorArray = 4;
constexpr uint8_t kMajorMap = 5;
constexpr uint8_t kMajorTag = 6;
constexpr uint8_t kMajorSimple = 7;

void AppendDiagnostic(std::string& out, const Item& item) {
  switch (item.type()) {
    case Type::kUnsigned:
      out += std::to_string(item.raw());
      return;
    case Type::kNegative:
      if (item.raw() == std::numeric_limits<uint64_t>::max()) {
        out += "-18446744073709551616";
      } else {
        out += '-';
        out += std::to_string(item.raw() + 1);
      }
      return;
    case Type::kBytes:
      out += "h'" + ToHex(item.bytes()) + "'";
      return;
    case Type::kText:
      out += '"';
      for (char c : item.text()) {
        if (c == '"' || c == '\\') out += '\\';
        out += c;
      }
      out += '"';
      return;
    case Type::kArray: {
      out += '[';
      bool first = true;
      for (const Item& e : item.items()) {
        if (!first) out += ", ";
        first = false;
        AppendDiagnostic(out, e);
      }
      out += ']';
      return;
    }
    case Type::kTag:
      out += std::to_string(item.tag()) + "(";
      AppendDiagnostic(out, item.tagged());
      out += ')';
      return;
    case Type::kSimple:
      switch (static_cast<Simple>(item.raw())) {
        case Simple::kFalse:
          out += "false";
          return;
        case Simple::kTrue:
          out += "true";
          return;
        case Simple::kNull:
          out += "null";
          return;
        case Simple::kUndefined:
          out += "undefined";
          return;
      }
      out += "simple(" + std::to_string(item.raw()) + ")";
      return;
  }
}

}  // namespace

Item Item::Uint(uint64_t value) {
  Item item;
  item.type_ = Type::kUnsigned;
  item.value_ = value;
  return item;
}

Item Item::Int(int64_t value) {
  if (value >= 0) return Uint(static_cast<uint64_t>(value));
  // -1 - value, computed without overflow for INT64_MIN.
  return NegativeRaw(static_cast<uint64_t>(-(value + 1)));
}

Item Item::NegativeRaw(uint64_t n) {
  Item item;
  item.type_ = Type::kNegative;
  item.value_ = n;
  return item;
}

Item Item::ByteString(ByteView bytes) {
  Item item;
  item.type_ = Type::kBytes;
  item.value_ = bytes.size();
  item.data_.assign(bytes.begin(), bytes.end());
  return item;
}

Item Item::TextString(std::string_view text) {
  Item item;
  item.type_ = Type::kText;
  item.value_ = text.size();
  item.data_.assign(text.begin(), text.end());
  return item;
}

Item Item::Array(std::vector<Item> items) {
  Item item;
  item.type_ = Type::kArray;
  item.value_ = items.size();
  item.items_ = std::move(items);
  return item;
}

Item Item::Tagged(uint64_t tag, Item content) {
  Item item;
  item.type_ = Type::kTag;
  item.value_ = tag;
  item.items_.push_back(std::move(content));
  return item;
}

std::optional<int64_t> Item::AsInt() const {
  constexpr uint64_t kMax = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  if (type_ == Type::kUnsigned && value_ <= kMax) return static_cast<int64_t>(value_);
  if (type_ == Type::kNegative && value_ <= kMax) return -1 - static_cast<int64_t>(value_);
  return std::nullopt;
}

bool Item::operator==(const Item& other) const {
  return type_ == other.type_ && value_ == other.value_ && data_ == other.data_ &&
         items_ == other.items_;
}

void AppendHead(Bytes& out, uint8_t major, uint64_t argument) {
  const uint8_t mt = static_cast<uint8_t>(major << 5);
  if (argument < 24) {
    out.push_back(static_cast<uint8_t>(mt | argument));
    return;
  }
  int bytes;
  if (argument <= 0xff) {
    out.push_back(mt | 24);
    bytes = 1;
  } else if (argument <= 0xffff) {
    out.push_back(mt | 25);
    bytes = 2;
  } else if (argument <= 0xffffffffULL) {
    out.push_back(mt | 26);
    bytes = 4;
  } else {
    out.push_back(mt | 27);
    bytes = 8;
  }
  for (int i = bytes - 1; i >= 0; --i) out.push_back(static_cast<uint8_t>(argument >> (8 * i)));
}

void Item::AppendTo(Bytes& out) const {
  switch (type_) {
    case Type::kUnsigned:
      AppendHead(out, kMajorUnsigned, value_);
      return;
    case Type::kNegative:
      AppendHead(out, kMajorNegative, value_);
      return;
    case Type::kBytes:
    case Type::kText:
      AppendHead(out, type_ == Type::kBytes ? kMajorBytes : kMajorText, data_.size());
      out.insert(out.end(), data_.begin(), data_.end());
      return;
    case Type::kArray:
      AppendHead(out, kMajorArray, items_.size());
      for (const Item& e : items_) e.AppendTo(out);
      return;
    case Type::kTag:
      AppendHead(out, kMajorTag, value_);
      items_.front().AppendTo(out);
      return;
    case Type::kSimple:
      AppendHead(out, kMajorSimple, value_);
      return;
  }
}

Bytes Item::Encode() const {
  Bytes out;
  AppendTo(out);
  return out;
}

Error Reader::Refuse(std::string_view what, size_t at) const {
  return Error(Code::kInvalidArgument,
               "malformed CBOR: " + std::string(what) + " at offset " + std::to_string(at));
}

Result<Reader::Head> Reader::ReadHead() {
  const size_t start = pos_;
  if (pos_ >= data_.size()) return Fail(Refuse("truncated input (item expected)", start));
  const uint8_t initial = data_[pos_++];
  Head head{static_cast<uint8_t>(initial >> 5), 0};
  const uint8_t info = initial & 0x1f;
  if (info < 24) {
    head.argument = info;
  } else if (info <= 27) {
    const size_t n = size_t{1} << (info - 24);
    if (data_.size() - pos_ < n) return Fail(Refuse("truncated head", start));
    uint64_t v = 0;
    for (size_t i = 0; i < n; ++i) v = v << 8 | data_[pos_++];
    if (head.major == kMajorSimple) {
      // Floats (25..27) and one-byte simple values (24) have no place in C509.
      if (info == 24) return Fail(Refuse("unsupported simple value", start));
      return Fail(Refuse("floating-point values are not supported", start));
    }
    const uint64_t min = info == 24 ? 24 : info == 25 ? 0x100 : info == 26 ? 0x10000 : 0x100000000;
    if (v < min) return Fail(Refuse("non-shortest head (not deterministic encoding)", start));
    head.argument = v;
  } else if (info == 31) {
    return Fail(Refuse("indefinite length or break code", start));
  } else {
    return Fail(Refuse("reserved additional information value", start));
  }
  return head;
}

Result<Item> Reader::ReadItem(int depth) {
  const size_t start = pos_;
  if (depth > max_depth_) return Fail(Refuse("nesting deeper than the limit", start));
  IOTPKI_TRY(Head head, ReadHead());
  switch (head.major) {
    case kMajorUnsigned:
      return Item::Uint(head.argument);
    case kMajorNegative:
      return Item::NegativeRaw(head.argument);
    case kMajorBytes:
    case kMajorText: {
      if (head.argument > data_.size() - pos_) {
        return Fail(Refuse("string length exceeds the input (truncated)", start));
      }
      ByteView content = data_.subspan(pos_, static_cast<size_t>(head.argument));
      pos_ += content.size();
      if (head.major == kMajorBytes) return Item::ByteString(content);
      if (!IsValidUtf8(content)) return Fail(Refuse("text string is not valid UTF-8", start));
      return Item::TextString(AsString(content));
    }
    case kMajorArray: {
      // Every element takes at least one byte, so a count above the bytes left is truncated or
      // hostile input; refusing it here bounds the reservation below by the input size.
      if (head.argument > data_.size() - pos_) {
        return Fail(Refuse("array length exceeds the input (truncated)", start));
      }
      std::vector<Item> items;
      items.reserve(static_cast<size_t>(head.argument));
      for (uint64_t i = 0; i < head.argument; ++i) {
        IOTPKI_TRY(Item e, ReadItem(depth + 1));
        items.push_back(std::move(e));
      }
      return Item::Array(std::move(items));
    }
    case kMajorMap:
      return Fail(Refuse("maps are not supported", start));
    case kMajorTag: {
      IOTPKI_TRY(Item content, ReadItem(depth + 1));
      return Item::Tagged(head.argument, std::move(content));
    }
    default:  // kMajorSimple with a direct value 0..23
      switch (head.argument) {
        case 20:
          return Item::Bool(false);
        case 21:
          return Item::Bool(true);
        case 22:
          return Item::Null();
        case 23:
          return Item::Undefined();
        default:
          return Fail(Refuse("unsupported simple value", start));
      }
  }
}

Result<Item> Reader::Next() { return ReadItem(1); }

Result<uint64_t> Reader::ArrayHeader() {
  const size_t start = pos_;
  IOTPKI_TRY(Head head, ReadHead());
  if (head.major != kMajorArray) {
    pos_ = start;
    return Fail(Refuse("array expected", start));
  }
  if (head.argument > data_.size() - pos_) {
    return Fail(Refuse("array length exceeds the input (truncated)", start));
  }
  return head.argument;
}

Result<Item> Decode(ByteView data) {
  Reader reader(data);
  IOTPKI_TRY(Item item, reader.Next());
  if (!reader.empty()) {
    return Fail(Code::kInvalidArgument, "malformed CBOR: trailing bytes after the item at offset " +
                                            std::to_string(reader.offset()));
  }
  return item;
}

Result<std::vector<Item>> DecodeSequence(ByteView data) {
  Reader reader(data);
  std::vector<Item> items;
  while (!reader.empty()) {
    IOTPKI_TRY(Item item, reader.Next());
    items.push_back(std::move(item));
  }
  return items;
}

std::string Diagnostic(const Item& item) {
  std::string out;
  AppendDiagnostic(out, item);
  return out;
}

}  // namespace iotpki::cbor
