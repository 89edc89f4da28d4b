#include "format/metadata_codec.h"

#include <limits>
#include <string>
#include <unordered_set>

#include "format/byte_io.h"
#include "format/ssmq_layout.h"

namespace ssmq::detail {
namespace {

bool IsUnsigned(MetaType t) {
  return t == MetaType::kU8 || t == MetaType::kU16 || t == MetaType::kU32 || t == MetaType::kU64;
}
bool IsSigned(MetaType t) {
  return t == MetaType::kI8 || t == MetaType::kI16 || t == MetaType::kI32 || t == MetaType::kI64;
}
bool IsFloat(MetaType t) { return t == MetaType::kF32 || t == MetaType::kF64; }

// Fixed byte width of a scalar type (0 for string/array).
uint64_t ScalarWidth(MetaType t) {
  switch (t) {
    case MetaType::kU8: case MetaType::kI8: case MetaType::kBool: return 1;
    case MetaType::kU16: case MetaType::kI16: return 2;
    case MetaType::kU32: case MetaType::kI32: case MetaType::kF32: return 4;
    case MetaType::kU64: case MetaType::kI64: case MetaType::kF64: return 8;
    default: return 0;
  }
}

bool UnsignedFits(MetaType t, uint64_t v) {
  return ScalarWidth(t) == 8 || v < (uint64_t{1} << (8 * ScalarWidth(t)));
}
bool SignedFits(MetaType t, int64_t v) {
  if (ScalarWidth(t) == 8) return true;
  const int64_t lim = int64_t{1} << (8 * ScalarWidth(t) - 1);
  return v >= -lim && v < lim;
}

Status Bad(const std::string& key, const std::string& why) {
  return Status(StatusCode::kInvalidArgument, "metadata key '" + key + "': " + why);
}

Status CheckString(const std::string& key, const std::string& s) {
  if (s.size() > layout::kMaxStringLength) return Bad(key, "string longer than 256 MiB");
  if (!IsValidUtf8(reinterpret_cast<const uint8_t*>(s.data()), s.size()))
    return Bad(key, "string is not valid UTF-8");
  return Status::Ok();
}

Status CheckValue(const std::string& key, const MetaValue& m) {
  const MetaType t = m.type;
  if (IsUnsigned(t)) {
    const auto* u = std::get_if<uint64_t>(&m.v);
    if (!u) return Bad(key, "unsigned type without a uint64_t value");
    if (!UnsignedFits(t, *u)) return Bad(key, "value does not fit " + std::string(MetaTypeName(t)));
    return Status::Ok();
  }
  if (IsSigned(t)) {
    const auto* i = std::get_if<int64_t>(&m.v);
    if (!i) return Bad(key, "signed type without an int64_t value");
    if (!SignedFits(t, *i)) return Bad(key, "value does not fit " + std::string(MetaTypeName(t)));
    return Status::Ok();
  }
  if (IsFloat(t)) return std::holds_alternative<double>(m.v) ? Status::Ok() : Bad(key, "float type without a double value");
  if (t == MetaType::kBool) return std::holds_alternative<bool>(m.v) ? Status::Ok() : Bad(key, "bool type without a bool value");
  if (t == MetaType::kString) {
    const auto* s = std::get_if<std::string>(&m.v);
    if (!s) return Bad(key, "string type without a string value");
    return CheckString(key, *s);
  }
  if (t != MetaType::kArray) return Bad(key, "unknown metadata type");
  const MetaType e = m.elem_type;
  if (IsUnsigned(e)) {
    const auto* xs = std::get_if<std::vector<uint64_t>>(&m.v);
    if (!xs) return Bad(key, "unsigned array without vector<uint64_t>");
    for (uint64_t x : *xs)
      if (!UnsignedFits(e, x)) return Bad(key, "array element does not fit " + std::string(MetaTypeName(e)));
    return Status::Ok();
  }
  if (IsSigned(e)) {
    const auto* xs = std::get_if<std::vector<int64_t>>(&m.v);
    if (!xs) return Bad(key, "signed array without vector<int64_t>");
    for (int64_t x : *xs)
      if (!SignedFits(e, x)) return Bad(key, "array element does not fit " + std::string(MetaTypeName(e)));
    return Status::Ok();
  }
  if (IsFloat(e)) return std::holds_alternative<std::vector<double>>(m.v) ? Status::Ok() : Bad(key, "float array without vector<double>");
  if (e == MetaType::kBool) return std::holds_alternative<std::vector<bool>>(m.v) ? Status::Ok() : Bad(key, "bool array without vector<bool>");
  if (e == MetaType::kString) {
    const auto* xs = std::get_if<std::vector<std::string>>(&m.v);
    if (!xs) return Bad(key, "string array without vector<string>");
    for (const auto& s : *xs) SSMQ_RETURN_IF_ERROR(CheckString(key, s));
    return Status::Ok();
  }
  return Bad(key, "array element type must be a scalar or string (no nested arrays)");
}

void PutScalarBits(ByteWriter& w, MetaType t, uint64_t bits) {
  switch (ScalarWidth(t)) {
    case 1: w.Put<uint8_t>(static_cast<uint8_t>(bits)); break;
    case 2: w.Put<uint16_t>(static_cast<uint16_t>(bits)); break;
    case 4: w.Put<uint32_t>(static_cast<uint32_t>(bits)); break;
    default: w.Put<uint64_t>(bits); break;
  }
}
void PutDouble(ByteWriter& w, MetaType t, double d) {
  if (t == MetaType::kF32) w.Put<float>(static_cast<float>(d));
  else w.Put<double>(d);
}
void PutString(ByteWriter& w, const std::string& s) {
  w.Put<uint64_t>(s.size());
  w.PutBytes(s.data(), s.size());
}

}  // namespace

Status CheckMetadataForWrite(const Metadata& md) {
  if (md.size() > layout::kMaxMetadataCount)
    return Status(StatusCode::kLimitExceeded, "more than 2^20 metadata entries");
  std::unordered_set<std::string> seen;
  for (const auto& e : md.entries()) {
    if (!IsValidMetadataKey(e.key))
      return Status(StatusCode::kInvalidArgument,
                    "metadata key '" + e.key + "' breaks the key naming rule");
    if (!seen.insert(e.key).second)
      return Status(StatusCode::kDuplicateKey, "metadata key '" + e.key + "' appears twice");
    SSMQ_RETURN_IF_ERROR(CheckValue(e.key, e.value));
  }
  return Status::Ok();
}

void EncodeMetadata(const Metadata& md, std::vector<uint8_t>& out) {
  ByteWriter w(out);
  w.Put<uint64_t>(md.size());
  for (const auto& e : md.entries()) {
    w.Put<uint32_t>(static_cast<uint32_t>(e.key.size()));
    w.PutBytes(e.key.data(), e.key.size());
    const MetaValue& m = e.value;
    w.Put<uint32_t>(static_cast<uint32_t>(m.type));
    if (m.type != MetaType::kArray) {
      std::visit(
          [&](const auto& x) {
            using X = std::decay_t<decltype(x)>;
            if constexpr (std::is_same_v<X, uint64_t>) PutScalarBits(w, m.type, x);
            else if constexpr (std::is_same_v<X, int64_t>) PutScalarBits(w, m.type, static_cast<uint64_t>(x));
            else if constexpr (std::is_same_v<X, double>) PutDouble(w, m.type, x);
            else if constexpr (std::is_same_v<X, bool>) w.Put<uint8_t>(x ? 1 : 0);
            else if constexpr (std::is_same_v<X, std::string>) PutString(w, x);
          },
          m.v);
      continue;
    }
    w.Put<uint32_t>(static_cast<uint32_t>(m.elem_type));
    std::visit(
        [&](const auto& xs) {
          using X = std::decay_t<decltype(xs)>;
          if constexpr (std::is_same_v<X, std::vector<uint64_t>>) {
            w.Put<uint64_t>(xs.size());
            for (uint64_t x : xs) PutScalarBits(w, m.elem_type, x);
          } else if constexpr (std::is_same_v<X, std::vector<int64_t>>) {
            w.Put<uint64_t>(xs.size());
            for (int64_t x : xs) PutScalarBits(w, m.elem_type, static_cast<uint64_t>(x));
          } else if constexpr (std::is_same_v<X, std::vector<double>>) {
            w.Put<uint64_t>(xs.size());
            for (double x : xs) PutDouble(w, m.elem_type, x);
          } else if constexpr (std::is_same_v<X, std::vector<bool>>) {
            w.Put<uint64_t>(xs.size());
            for (bool x : xs) w.Put<uint8_t>(x ? 1 : 0);
          } else if constexpr (std::is_same_v<X, std::vector<std::string>>) {
            w.Put<uint64_t>(xs.size());
            for (const auto& x : xs) PutString(w, x);
          }
        },
        m.v);
  }
}

namespace {

struct Decoder {
  ByteReader& r;
  const std::string& key;

  Status Fail(StatusCode code, const std::string& why, uint64_t at) const {
    return Status(code, "metadata key '" + key + "': " + why, at);
  }

  // Reads one scalar of type t into `out` (variant of widened values).
  Status Scalar(MetaType t, uint64_t* u, int64_t* i, double* d, bool* b) {
    const uint64_t at = r.pos();
    switch (t) {
      case MetaType::kU8: { uint8_t v; SSMQ_RETURN_IF_ERROR(r.Get(&v, key)); *u = v; return Status::Ok(); }
      case MetaType::kU16: { uint16_t v; SSMQ_RETURN_IF_ERROR(r.Get(&v, key)); *u = v; return Status::Ok(); }
      case MetaType::kU32: { uint32_t v; SSMQ_RETURN_IF_ERROR(r.Get(&v, key)); *u = v; return Status::Ok(); }
      case MetaType::kU64: { uint64_t v; SSMQ_RETURN_IF_ERROR(r.Get(&v, key)); *u = v; return Status::Ok(); }
      case MetaType::kI8: { int8_t v; SSMQ_RETURN_IF_ERROR(r.Get(&v, key)); *i = v; return Status::Ok(); }
      case MetaType::kI16: { int16_t v; SSMQ_RETURN_IF_ERROR(r.Get(&v, key)); *i = v; return Status::Ok(); }
      case MetaType::kI32: { int32_t v; SSMQ_RETURN_IF_ERROR(r.Get(&v, key)); *i = v; return Status::Ok(); }
      case MetaType::kI64: { int64_t v; SSMQ_RETURN_IF_ERROR(r.Get(&v, key)); *i = v; return Status::Ok(); }
      case MetaType::kF32: { float v; SSMQ_RETURN_IF_ERROR(r.Get(&v, key)); *d = v; return Status::Ok(); }
      case MetaType::kF64: { double v; SSMQ_RETURN_IF_ERROR(r.Get(&v, key)); *d = v; return Status::Ok(); }
      case MetaType::kBool: {
        uint8_t v;
        SSMQ_RETURN_IF_ERROR(r.Get(&v, key));
        if (v > 1) return Fail(StatusCode::kBadMetadata, "bool byte is " + std::to_string(v) + ", not 0 or 1", at);
        *b = v != 0;
        return Status::Ok();
      }
      default: return Fail(StatusCode::kUnknownType, "not a scalar type", at);
    }
  }

  Status String(std::string* s) {
    const uint64_t at = r.pos();
    uint64_t len;
    SSMQ_RETURN_IF_ERROR(r.Get(&len, "string length of '" + key + "'"));
    if (len > layout::kMaxStringLength)
      return Fail(StatusCode::kLimitExceeded, "string length " + std::to_string(len) + " exceeds 256 MiB", at);
    const uint8_t* p;
    SSMQ_RETURN_IF_ERROR(r.GetBytes(len, &p, "string of '" + key + "'"));
    if (!IsValidUtf8(p, len)) return Fail(StatusCode::kBadMetadata, "string is not valid UTF-8", at + 8);
    s->assign(reinterpret_cast<const char*>(p), len);
    return Status::Ok();
  }
};

bool KnownScalarOrString(uint32_t t) {
  return t < static_cast<uint32_t>(MetaType::kArray);
}

}  // namespace

Result<Metadata> DecodeMetadata(const uint8_t* file, uint64_t begin, uint64_t size) {
  ByteReader r(file, begin, begin + size, "metadata section");
  uint64_t count;
  SSMQ_RETURN_IF_ERROR(r.Get(&count, "metadata count"));
  if (count > layout::kMaxMetadataCount)
    return Status(StatusCode::kLimitExceeded,
                  "metadata count " + std::to_string(count) + " exceeds 2^20", begin);
  if (count > r.remaining() / layout::kMinMetaEntryBytes)
    return Status(StatusCode::kTruncated,
                  "metadata count " + std::to_string(count) + " cannot fit in the section", begin);
  Metadata md;
  std::unordered_set<std::string> seen;
  seen.reserve(count);
  for (uint64_t n = 0; n < count; ++n) {
    const uint64_t entry_at = r.pos();
    uint32_t key_len;
    SSMQ_RETURN_IF_ERROR(r.Get(&key_len, "metadata key length"));
    if (key_len > layout::kMaxKeyLength)
      return Status(StatusCode::kLimitExceeded,
                    "metadata key length " + std::to_string(key_len) + " exceeds 255", entry_at);
    const uint8_t* kp;
    SSMQ_RETURN_IF_ERROR(r.GetBytes(key_len, &kp, "metadata key"));
    std::string key(reinterpret_cast<const char*>(kp), key_len);
    if (!IsValidMetadataKey(key))
      return Status(StatusCode::kBadMetadata, "metadata key breaks the naming rule", entry_at + 4);
    if (!seen.insert(key).second)
      return Status(StatusCode::kDuplicateKey, "metadata key '" + key + "' appears twice", entry_at);
    Decoder d{r, key};
    const uint64_t type_at = r.pos();
    uint32_t type_id;
    SSMQ_RETURN_IF_ERROR(r.Get(&type_id, "metadata value type"));
    if (type_id >= static_cast<uint32_t>(MetaType::kCount))
      return d.Fail(StatusCode::kUnknownType, "unknown value type id " + std::to_string(type_id), type_at);
    MetaValue m;
    m.type = static_cast<MetaType>(type_id);
    if (m.type == MetaType::kString) {
      std::string s;
      SSMQ_RETURN_IF_ERROR(d.String(&s));
      m.v = std::move(s);
    } else if (m.type != MetaType::kArray) {
      uint64_t u = 0; int64_t i = 0; double f = 0; bool b = false;
      SSMQ_RETURN_IF_ERROR(d.Scalar(m.type, &u, &i, &f, &b));
      if (IsUnsigned(m.type)) m.v = u;
      else if (IsSigned(m.type)) m.v = i;
      else if (IsFloat(m.type)) m.v = f;
      else m.v = b;
    } else {
      const uint64_t elem_at = r.pos();
      uint32_t elem_id;
      SSMQ_RETURN_IF_ERROR(r.Get(&elem_id, "array element type"));
      if (elem_id == static_cast<uint32_t>(MetaType::kArray))
        return d.Fail(StatusCode::kBadMetadata, "nested arrays are not allowed", elem_at);
      if (!KnownScalarOrString(elem_id))
        return d.Fail(StatusCode::kUnknownType, "unknown array element type id " + std::to_string(elem_id), elem_at);
      m.elem_type = static_cast<MetaType>(elem_id);
      const uint64_t len_at = r.pos();
      uint64_t len;
      SSMQ_RETURN_IF_ERROR(r.Get(&len, "array length"));
      if (len > layout::kMaxArrayLength)
        return d.Fail(StatusCode::kLimitExceeded, "array length " + std::to_string(len) + " exceeds 2^32", len_at);
      // Every element takes at least its width (8 for a string's length).
      const uint64_t min_elem = m.elem_type == MetaType::kString ? 8 : ScalarWidth(m.elem_type);
      if (len > r.remaining() / min_elem)
        return d.Fail(StatusCode::kTruncated, "array of " + std::to_string(len) + " elements cannot fit in the section", len_at);
      if (m.elem_type == MetaType::kString) {
        std::vector<std::string> xs(len);
        for (auto& x : xs) SSMQ_RETURN_IF_ERROR(d.String(&x));
        m.v = std::move(xs);
      } else if (IsUnsigned(m.elem_type)) {
        std::vector<uint64_t> xs(len);
        int64_t i; double f; bool b;
        for (auto& x : xs) SSMQ_RETURN_IF_ERROR(d.Scalar(m.elem_type, &x, &i, &f, &b));
        m.v = std::move(xs);
      } else if (IsSigned(m.elem_type)) {
        std::vector<int64_t> xs(len);
        uint64_t u; double f; bool b;
        for (auto& x : xs) SSMQ_RETURN_IF_ERROR(d.Scalar(m.elem_type, &u, &x, &f, &b));
        m.v = std::move(xs);
      } else if (IsFloat(m.elem_type)) {
        std::vector<double> xs(len);
        uint64_t u; int64_t i; bool b;
        for (auto& x : xs) SSMQ_RETURN_IF_ERROR(d.Scalar(m.elem_type, &u, &i, &x, &b));
        m.v = std::move(xs);
      } else {
        std::vector<bool> xs(len);
        uint64_t u; int64_t i; double f;
        for (uint64_t k = 0; k < len; ++k) {
          bool b = false;
          SSMQ_RETURN_IF_ERROR(d.Scalar(m.elem_type, &u, &i, &f, &b));
          xs[k] = b;
        }
        m.v = std::move(xs);
      }
    }
    md.AppendUnique(std::move(key), std::move(m));
  }
  if (r.remaining() != 0)
    return Status(StatusCode::kBadMetadata,
                  std::to_string(r.remaining()) + " unparsed bytes after the last metadata entry",
                  r.pos());
  return md;
}

}  // namespace ssmq::detail
