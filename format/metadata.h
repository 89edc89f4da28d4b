// Typed metadata values: key -> u8..u64, i8..i64, f32, f64, bool, string, or an
// array of one of those scalar types. Keys are ASCII "lower_snake.dotted.paths".
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "format/status.h"

namespace ssmq {

// Stored as u32 in the file. Never renumber.
enum class MetaType : uint32_t {
  kU8 = 0, kI8 = 1, kU16 = 2, kI16 = 3, kU32 = 4, kI32 = 5, kU64 = 6, kI64 = 7,
  kF32 = 8, kF64 = 9, kBool = 10, kString = 11, kArray = 12,
  kCount
};
std::string_view MetaTypeName(MetaType t);

struct MetaValue {
  MetaType type = MetaType::kU8;
  MetaType elem_type = MetaType::kU8;  // for kArray only (never kArray: no nesting)
  // Scalars are held widened; arrays in the matching vector.
  std::variant<uint64_t, int64_t, double, bool, std::string,
               std::vector<uint64_t>, std::vector<int64_t>, std::vector<double>,
               std::vector<bool>, std::vector<std::string>>
      v;

  static MetaValue U8(uint8_t x);    // (added by format owner)
  static MetaValue I8(int8_t x);
  static MetaValue U16(uint16_t x);
  static MetaValue I16(int16_t x);
  static MetaValue U32(uint32_t x);
  static MetaValue U64(uint64_t x);
  static MetaValue I32(int32_t x);
  static MetaValue I64(int64_t x);
  static MetaValue F32(float x);
  static MetaValue F64(double x);
  static MetaValue Bool(bool x);
  static MetaValue String(std::string x);
  static MetaValue ArrayI64(std::vector<int64_t> x);
  static MetaValue ArrayU64(std::vector<uint64_t> x);
  static MetaValue ArrayF32(std::vector<double> x);
  static MetaValue ArrayString(std::vector<std::string> x);
  // Any array: `values` must hold the vector matching elem_type's family
  // (u* -> vector<uint64_t>, i* -> vector<int64_t>, f* -> vector<double>, ...).
  static MetaValue ArrayOf(MetaType elem, decltype(v) values);

  // Typed access with conversion checks: an integer read as int succeeds if
  // the value fits; asking a string for a number is kTypeMismatch.
  Result<int64_t> AsInt() const;
  Result<uint64_t> AsUInt() const;
  Result<double> AsDouble() const;   // ints and floats
  Result<bool> AsBool() const;
  Result<std::string> AsString() const;
  std::string ToDisplayString(size_t max_len = 80) const;  // for inspect
};

// Ordered (insertion/file order), unique keys.
class Metadata {
 public:
  struct Entry {
    std::string key;
    MetaValue value;
  };
  // Replaces an existing key's value in place.
  void Set(std::string key, MetaValue value);
  // Appends without looking for an existing key: the caller guarantees the
  // key is new (the reader, which checks uniqueness with a hash set).
  void AppendUnique(std::string key, MetaValue value);
  const MetaValue* Find(std::string_view key) const;
  bool Erase(std::string_view key);
  const std::vector<Entry>& entries() const { return entries_; }
  size_t size() const { return entries_.size(); }

  // Convenience typed getters: kNotFound when missing, kTypeMismatch when wrong.
  Result<int64_t> GetInt(std::string_view key) const;
  Result<double> GetDouble(std::string_view key) const;
  Result<bool> GetBool(std::string_view key) const;
  Result<std::string> GetString(std::string_view key) const;

 private:
  std::vector<Entry> entries_;
};

// Key naming rule from the spec: 1..255 bytes of [a-z0-9_] segments joined by '.'.
bool IsValidMetadataKey(std::string_view key);

}  // namespace ssmq
