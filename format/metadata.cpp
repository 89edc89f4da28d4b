#include "format/metadata.h"

#include <cmath>
#include <cstdio>
#include <limits>

namespace ssmq {

std::string_view MetaTypeName(MetaType t) {
  switch (t) {
    case MetaType::kU8: return "u8";
    case MetaType::kI8: return "i8";
    case MetaType::kU16: return "u16";
    case MetaType::kI16: return "i16";
    case MetaType::kU32: return "u32";
    case MetaType::kI32: return "i32";
    case MetaType::kU64: return "u64";
    case MetaType::kI64: return "i64";
    case MetaType::kF32: return "f32";
    case MetaType::kF64: return "f64";
    case MetaType::kBool: return "bool";
    case MetaType::kString: return "string";
    case MetaType::kArray: return "array";
    case MetaType::kCount: break;
  }
  return "unknown";
}

namespace {
MetaValue Scalar(MetaType t, decltype(MetaValue::v) v) {
  MetaValue m;
  m.type = t;
  m.v = std::move(v);
  return m;
}
MetaValue Array(MetaType elem, decltype(MetaValue::v) v) {
  MetaValue m;
  m.type = MetaType::kArray;
  m.elem_type = elem;
  m.v = std::move(v);
  return m;
}
Status Mismatch(const MetaValue& m, const char* wanted) {
  std::string msg = "metadata value of type ";
  msg += MetaTypeName(m.type);
  if (m.type == MetaType::kArray) {
    msg += '[';
    msg += MetaTypeName(m.elem_type);
    msg += ']';
  }
  msg += " read as ";
  msg += wanted;
  return Status(StatusCode::kTypeMismatch, std::move(msg));
}
}  // namespace

MetaValue MetaValue::U8(uint8_t x) { return Scalar(MetaType::kU8, uint64_t{x}); }
MetaValue MetaValue::I8(int8_t x) { return Scalar(MetaType::kI8, int64_t{x}); }
MetaValue MetaValue::U16(uint16_t x) { return Scalar(MetaType::kU16, uint64_t{x}); }
MetaValue MetaValue::I16(int16_t x) { return Scalar(MetaType::kI16, int64_t{x}); }
MetaValue MetaValue::U32(uint32_t x) { return Scalar(MetaType::kU32, uint64_t{x}); }
MetaValue MetaValue::U64(uint64_t x) { return Scalar(MetaType::kU64, x); }
MetaValue MetaValue::I32(int32_t x) { return Scalar(MetaType::kI32, int64_t{x}); }
MetaValue MetaValue::I64(int64_t x) { return Scalar(MetaType::kI64, x); }
MetaValue MetaValue::F32(float x) { return Scalar(MetaType::kF32, static_cast<double>(x)); }
MetaValue MetaValue::F64(double x) { return Scalar(MetaType::kF64, x); }
MetaValue MetaValue::Bool(bool x) { return Scalar(MetaType::kBool, x); }
MetaValue MetaValue::String(std::string x) {
  MetaValue m;
  m.type = MetaType::kString;
  m.v.emplace<std::string>(std::move(x));
  return m;
}
MetaValue MetaValue::ArrayI64(std::vector<int64_t> x) { return Array(MetaType::kI64, std::move(x)); }
MetaValue MetaValue::ArrayU64(std::vector<uint64_t> x) { return Array(MetaType::kU64, std::move(x)); }
// f32 values are rounded to f32 here, so the value held is the one read back.
MetaValue MetaValue::ArrayF32(std::vector<double> x) {
  for (double& d : x) d = static_cast<double>(static_cast<float>(d));
  return Array(MetaType::kF32, std::move(x));
}
MetaValue MetaValue::ArrayString(std::vector<std::string> x) {
  return Array(MetaType::kString, std::move(x));
}
MetaValue MetaValue::ArrayOf(MetaType elem, decltype(MetaValue::v) values) {
  if (auto* ds = std::get_if<std::vector<double>>(&values); ds && elem == MetaType::kF32)
    for (double& d : *ds) d = static_cast<double>(static_cast<float>(d));
  return Array(elem, std::move(values));
}

Result<int64_t> MetaValue::AsInt() const {
  if (const auto* u = std::get_if<uint64_t>(&v); u && type != MetaType::kArray) {
    if (*u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      return Status(StatusCode::kTypeMismatch, "unsigned value " + std::to_string(*u) +
                                                   " does not fit in int64");
    return static_cast<int64_t>(*u);
  }
  if (const auto* i = std::get_if<int64_t>(&v); i && type != MetaType::kArray) return *i;
  return Mismatch(*this, "integer");
}

Result<uint64_t> MetaValue::AsUInt() const {
  if (const auto* u = std::get_if<uint64_t>(&v); u && type != MetaType::kArray) return *u;
  if (const auto* i = std::get_if<int64_t>(&v); i && type != MetaType::kArray) {
    if (*i < 0)
      return Status(StatusCode::kTypeMismatch,
                    "negative value " + std::to_string(*i) + " read as unsigned");
    return static_cast<uint64_t>(*i);
  }
  return Mismatch(*this, "unsigned integer");
}

Result<double> MetaValue::AsDouble() const {
  if (type == MetaType::kArray) return Mismatch(*this, "number");
  if (const auto* d = std::get_if<double>(&v)) return *d;
  if (const auto* u = std::get_if<uint64_t>(&v)) return static_cast<double>(*u);
  if (const auto* i = std::get_if<int64_t>(&v)) return static_cast<double>(*i);
  return Mismatch(*this, "number");
}

Result<bool> MetaValue::AsBool() const {
  if (const auto* b = std::get_if<bool>(&v); b && type == MetaType::kBool) return *b;
  return Mismatch(*this, "bool");
}

Result<std::string> MetaValue::AsString() const {
  if (const auto* s = std::get_if<std::string>(&v); s && type == MetaType::kString) return *s;
  return Mismatch(*this, "string");
}

namespace {
std::string FormatDouble(double d) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.9g", d);
  return buf;
}
std::string Clip(std::string s, size_t max_len) {
  if (s.size() <= max_len) return s;
  s.resize(max_len > 3 ? max_len - 3 : 0);
  return s + "...";
}
template <class T, class F>
std::string JoinArray(const std::vector<T>& xs, F fmt, size_t max_len) {
  std::string s = "[";
  for (size_t i = 0; i < xs.size(); ++i) {
    if (i) s += ", ";
    s += fmt(xs[i]);
    if (s.size() > max_len) break;
  }
  s += "]";
  return Clip(s + " (" + std::to_string(xs.size()) + " items)", max_len + 16);
}
}  // namespace

std::string MetaValue::ToDisplayString(size_t max_len) const {
  return std::visit(
      [&](const auto& x) -> std::string {
        using X = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<X, uint64_t> || std::is_same_v<X, int64_t>) {
          return std::to_string(x);
        } else if constexpr (std::is_same_v<X, double>) {
          return FormatDouble(x);
        } else if constexpr (std::is_same_v<X, bool>) {
          return x ? "true" : "false";
        } else if constexpr (std::is_same_v<X, std::string>) {
          return Clip("\"" + x + "\"", max_len);
        } else if constexpr (std::is_same_v<X, std::vector<std::string>>) {
          return JoinArray(x, [](const std::string& s) { return "\"" + s + "\""; }, max_len);
        } else if constexpr (std::is_same_v<X, std::vector<double>>) {
          return JoinArray(x, FormatDouble, max_len);
        } else if constexpr (std::is_same_v<X, std::vector<bool>>) {
          std::vector<int> ints(x.begin(), x.end());
          return JoinArray(ints, [](int b) { return std::string(b ? "true" : "false"); }, max_len);
        } else {
          return JoinArray(x, [](auto n) { return std::to_string(n); }, max_len);
        }
      },
      v);
}

void Metadata::Set(std::string key, MetaValue value) {
  for (auto& e : entries_) {
    if (e.key == key) {
      e.value = std::move(value);
      return;
    }
  }
  entries_.push_back(Entry{std::move(key), std::move(value)});
}

void Metadata::AppendUnique(std::string key, MetaValue value) {
  entries_.push_back(Entry{std::move(key), std::move(value)});
}

const MetaValue* Metadata::Find(std::string_view key) const {
  for (const auto& e : entries_)
    if (e.key == key) return &e.value;
  return nullptr;
}

bool Metadata::Erase(std::string_view key) {
  for (auto it = entries_.begin(); it != entries_.end(); ++it) {
    if (it->key == key) {
      entries_.erase(it);
      return true;
    }
  }
  return false;
}

namespace {
Status Missing(std::string_view key) {
  return Status(StatusCode::kNotFound, "metadata key '" + std::string(key) + "' not found");
}
template <class T>
Result<T> WithKey(Result<T> r, std::string_view key) {
  if (r.ok()) return r;
  return r.status().WithContext("metadata key '" + std::string(key) + "'");
}
}  // namespace

Result<int64_t> Metadata::GetInt(std::string_view key) const {
  const MetaValue* m = Find(key);
  if (!m) return Missing(key);
  return WithKey(m->AsInt(), key);
}
Result<double> Metadata::GetDouble(std::string_view key) const {
  const MetaValue* m = Find(key);
  if (!m) return Missing(key);
  return WithKey(m->AsDouble(), key);
}
Result<bool> Metadata::GetBool(std::string_view key) const {
  const MetaValue* m = Find(key);
  if (!m) return Missing(key);
  return WithKey(m->AsBool(), key);
}
Result<std::string> Metadata::GetString(std::string_view key) const {
  const MetaValue* m = Find(key);
  if (!m) return Missing(key);
  return WithKey(m->AsString(), key);
}

bool IsValidMetadataKey(std::string_view key) {
  if (key.empty() || key.size() > 255) return false;
  bool segment_empty = true;
  for (char c : key) {
    if (c == '.') {
      if (segment_empty) return false;
      segment_empty = true;
      continue;
    }
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
    if (!ok) return false;
    segment_empty = false;
  }
  return !segment_empty;
}

}  // namespace ssmq
