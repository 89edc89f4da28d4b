// GGUF reader: parse + validate (see gguf_file.h for what is checked).
#include "convert/gguf_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <unordered_set>

namespace ssmq::gguf {
namespace {

// Reads little-endian fields from the file bytes, checking every length
// against the bytes left before using it.
class Cursor {
 public:
  explicit Cursor(std::span<const uint8_t> b) : b_(b) {}
  uint64_t pos() const { return pos_; }
  uint64_t left() const { return b_.size() - pos_; }

  template <class T>
  Status Read(T* out, const char* what) {
    if (left() < sizeof(T))
      return Status(StatusCode::kTruncated, std::string(what) + " runs past the end of the file", pos_);
    std::memcpy(out, b_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return Status::Ok();
  }

  Status ReadString(std::string* out, const std::string& what) {
    const uint64_t at = pos_;
    uint64_t len = 0;
    SSMQ_RETURN_IF_ERROR(Read(&len, (what + " length").c_str()));
    if (len > left())
      return Status(StatusCode::kTruncated,
                    what + " of " + std::to_string(len) + " bytes runs past the end of the file", at);
    out->assign(reinterpret_cast<const char*>(b_.data() + pos_), len);
    pos_ += len;
    return Status::Ok();
  }

 private:
  std::span<const uint8_t> b_;
  uint64_t pos_ = 0;
};

// Minimum bytes one value of a type takes in the file (strings: the length).
uint64_t MinValueBytes(GgufValueType t) {
  switch (t) {
    case GgufValueType::kU8: case GgufValueType::kI8: case GgufValueType::kBool: return 1;
    case GgufValueType::kU16: case GgufValueType::kI16: return 2;
    case GgufValueType::kU32: case GgufValueType::kI32: case GgufValueType::kF32: return 4;
    default: return 8;
  }
}

bool KnownScalarType(uint32_t t) { return t <= 12 && t != 9; }

MetaType ToMetaType(GgufValueType t) {
  switch (t) {
    case GgufValueType::kU8: return MetaType::kU8;
    case GgufValueType::kI8: return MetaType::kI8;
    case GgufValueType::kU16: return MetaType::kU16;
    case GgufValueType::kI16: return MetaType::kI16;
    case GgufValueType::kU32: return MetaType::kU32;
    case GgufValueType::kI32: return MetaType::kI32;
    case GgufValueType::kF32: return MetaType::kF32;
    case GgufValueType::kBool: return MetaType::kBool;
    case GgufValueType::kString: return MetaType::kString;
    case GgufValueType::kU64: return MetaType::kU64;
    case GgufValueType::kI64: return MetaType::kI64;
    case GgufValueType::kF64: return MetaType::kF64;
    default: return MetaType::kArray;
  }
}

// One scalar of type t, widened the way MetaValue holds it.
struct Scalar {
  uint64_t u = 0;
  int64_t i = 0;
  double f = 0;
  bool b = false;
  std::string s;
};

Status ReadScalar(Cursor& c, GgufValueType t, Scalar* out, const std::string& what) {
  switch (t) {
    case GgufValueType::kU8: { uint8_t v{}; SSMQ_RETURN_IF_ERROR(c.Read(&v, what.c_str())); out->u = v; return Status::Ok(); }
    case GgufValueType::kI8: { int8_t v{}; SSMQ_RETURN_IF_ERROR(c.Read(&v, what.c_str())); out->i = v; return Status::Ok(); }
    case GgufValueType::kU16: { uint16_t v{}; SSMQ_RETURN_IF_ERROR(c.Read(&v, what.c_str())); out->u = v; return Status::Ok(); }
    case GgufValueType::kI16: { int16_t v{}; SSMQ_RETURN_IF_ERROR(c.Read(&v, what.c_str())); out->i = v; return Status::Ok(); }
    case GgufValueType::kU32: { uint32_t v{}; SSMQ_RETURN_IF_ERROR(c.Read(&v, what.c_str())); out->u = v; return Status::Ok(); }
    case GgufValueType::kI32: { int32_t v{}; SSMQ_RETURN_IF_ERROR(c.Read(&v, what.c_str())); out->i = v; return Status::Ok(); }
    case GgufValueType::kU64: { uint64_t v{}; SSMQ_RETURN_IF_ERROR(c.Read(&v, what.c_str())); out->u = v; return Status::Ok(); }
    case GgufValueType::kI64: { int64_t v{}; SSMQ_RETURN_IF_ERROR(c.Read(&v, what.c_str())); out->i = v; return Status::Ok(); }
    case GgufValueType::kF32: { float v{}; SSMQ_RETURN_IF_ERROR(c.Read(&v, what.c_str())); out->f = v; return Status::Ok(); }
    case GgufValueType::kF64: { double v{}; SSMQ_RETURN_IF_ERROR(c.Read(&v, what.c_str())); out->f = v; return Status::Ok(); }
    case GgufValueType::kBool: {
      const uint64_t at = c.pos();
      uint8_t v;
      SSMQ_RETURN_IF_ERROR(c.Read(&v, what.c_str()));
      if (v > 1) return Status(StatusCode::kBadMetadata, what + ": bool value " + std::to_string(v) + " is not 0 or 1", at);
      out->b = v != 0;
      return Status::Ok();
    }
    case GgufValueType::kString: return c.ReadString(&out->s, what);
    default: return Status(StatusCode::kUnknownType, what + ": unknown value type", c.pos());
  }
}

enum class Family { kUnsigned, kSigned, kFloat, kBool, kString };
Family FamilyOf(GgufValueType t) {
  switch (t) {
    case GgufValueType::kU8: case GgufValueType::kU16: case GgufValueType::kU32: case GgufValueType::kU64:
      return Family::kUnsigned;
    case GgufValueType::kI8: case GgufValueType::kI16: case GgufValueType::kI32: case GgufValueType::kI64:
      return Family::kSigned;
    case GgufValueType::kF32: case GgufValueType::kF64: return Family::kFloat;
    case GgufValueType::kBool: return Family::kBool;
    default: return Family::kString;
  }
}

MetaValue ScalarValue(GgufValueType t, Scalar&& s) {
  MetaValue m;
  m.type = ToMetaType(t);
  switch (FamilyOf(t)) {
    case Family::kUnsigned: m.v = s.u; break;
    case Family::kSigned: m.v = s.i; break;
    case Family::kFloat: m.v = s.f; break;
    case Family::kBool: m.v = s.b; break;
    case Family::kString: m.v = std::move(s.s); break;
  }
  return m;
}

Status ReadArray(Cursor& c, GgufValueType elem, uint64_t n, MetaValue* out, const std::string& key) {
  const std::string what = "metadata '" + key + "' element";
  std::vector<uint64_t> us;
  std::vector<int64_t> is;
  std::vector<double> fs;
  std::vector<bool> bs;
  std::vector<std::string> ss;
  const Family fam = FamilyOf(elem);
  // n was checked against the bytes left, so these reservations are bounded by the file size.
  switch (fam) {
    case Family::kUnsigned: us.reserve(n); break;
    case Family::kSigned: is.reserve(n); break;
    case Family::kFloat: fs.reserve(n); break;
    case Family::kBool: bs.reserve(n); break;
    case Family::kString: ss.reserve(n); break;
  }
  for (uint64_t k = 0; k < n; ++k) {
    Scalar s;
    SSMQ_RETURN_IF_ERROR(ReadScalar(c, elem, &s, what));
    switch (fam) {
      case Family::kUnsigned: us.push_back(s.u); break;
      case Family::kSigned: is.push_back(s.i); break;
      case Family::kFloat: fs.push_back(s.f); break;
      case Family::kBool: bs.push_back(s.b); break;
      case Family::kString: ss.push_back(std::move(s.s)); break;
    }
  }
  switch (fam) {
    case Family::kUnsigned: *out = MetaValue::ArrayOf(ToMetaType(elem), std::move(us)); break;
    case Family::kSigned: *out = MetaValue::ArrayOf(ToMetaType(elem), std::move(is)); break;
    case Family::kFloat: *out = MetaValue::ArrayOf(ToMetaType(elem), std::move(fs)); break;
    case Family::kBool: *out = MetaValue::ArrayOf(ToMetaType(elem), std::move(bs)); break;
    case Family::kString: *out = MetaValue::ArrayOf(ToMetaType(elem), std::move(ss)); break;
  }
  return Status::Ok();
}

std::string NeString(const std::vector<uint64_t>& ne) {
  std::string s = "{";
  for (size_t i = 0; i < ne.size(); ++i) s += (i ? ", " : "") + std::to_string(ne[i]);
  return s + "}";
}

}  // namespace

uint64_t GgufTensorInfo::numel() const {
  uint64_t n = 1;
  for (uint64_t d : ne) n *= d;
  return n;
}

std::vector<int64_t> GgufTensorInfo::TorchShape() const {
  return std::vector<int64_t>(ne.rbegin(), ne.rend());
}

GgufFile::~GgufFile() {
  if (map_) munmap(map_, map_size_);
}

Result<std::unique_ptr<GgufFile>> GgufFile::Open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status(StatusCode::kIoError, "cannot open " + path + ": " + std::strerror(errno));
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    const int e = errno;
    ::close(fd);
    return Status(StatusCode::kIoError, "cannot stat " + path + ": " + std::strerror(e));
  }
  std::unique_ptr<GgufFile> f(new GgufFile());
  const size_t size = static_cast<size_t>(st.st_size);
  if (size > 0) {
    void* p = mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      const int e = errno;
      ::close(fd);
      return Status(StatusCode::kIoError, "cannot map " + path + ": " + std::strerror(e));
    }
    f->map_ = p;
    f->map_size_ = size;
    f->bytes_ = std::span<const uint8_t>(static_cast<const uint8_t*>(p), size);
  }
  ::close(fd);
  Status s = f->ParseAll();
  if (!s.ok()) return s.WithContext(path);
  return f;
}

Result<std::unique_ptr<GgufFile>> GgufFile::Parse(std::span<const uint8_t> bytes) {
  std::unique_ptr<GgufFile> f(new GgufFile());
  f->bytes_ = bytes;
  SSMQ_RETURN_IF_ERROR(f->ParseAll());
  return f;
}

Status GgufFile::ParseAll() {
  Cursor c(bytes_);
  uint32_t magic = 0;
  SSMQ_RETURN_IF_ERROR(c.Read(&magic, "magic"));
  if (magic != kGgufMagic) return Status(StatusCode::kBadMagic, "not a GGUF file (magic is not \"GGUF\")", 0);
  SSMQ_RETURN_IF_ERROR(c.Read(&version_, "version"));
  if ((version_ & 0x0000FFFF) == 0 && version_ != 0)
    return Status(StatusCode::kBadByteOrder,
                  "version " + std::to_string(version_) + " looks byte-swapped (big-endian GGUF is not supported)", 4);
  if (version_ < 2 || version_ > 3)
    return Status(StatusCode::kUnsupportedVersion,
                  "GGUF version " + std::to_string(version_) + " is not supported (2 and 3 are)", 4);
  uint64_t n_tensors = 0, n_kv = 0;
  SSMQ_RETURN_IF_ERROR(c.Read(&n_tensors, "tensor_count"));
  SSMQ_RETURN_IF_ERROR(c.Read(&n_kv, "metadata_kv_count"));
  if (n_tensors > kGgufMaxTensors)
    return Status(StatusCode::kLimitExceeded, "tensor_count " + std::to_string(n_tensors) + " exceeds the limit", 8);
  if (n_kv > kGgufMaxKeys)
    return Status(StatusCode::kLimitExceeded, "metadata_kv_count " + std::to_string(n_kv) + " exceeds the limit", 16);
  // Each kv takes at least 8 (key len) + 4 (type) + 1 bytes; each tensor info 8 + 4 + 4 + 8.
  if (n_kv * 13 > c.left() || n_tensors * 24 > c.left() - n_kv * 13)
    return Status(StatusCode::kTruncated,
                  std::to_string(n_kv) + " metadata entries and " + std::to_string(n_tensors) +
                      " tensor infos cannot fit in the " + std::to_string(c.left()) + " bytes left", 8);

  for (uint64_t k = 0; k < n_kv; ++k) {
    const uint64_t at = c.pos();
    std::string key;
    SSMQ_RETURN_IF_ERROR(c.ReadString(&key, "metadata key #" + std::to_string(k)));
    if (key.empty()) return Status(StatusCode::kBadMetadata, "metadata key #" + std::to_string(k) + " is empty", at);
    if (metadata_.Find(key)) return Status(StatusCode::kDuplicateKey, "metadata key '" + key + "' appears twice", at);
    uint32_t type_id = 0;
    const uint64_t type_at = c.pos();
    SSMQ_RETURN_IF_ERROR(c.Read(&type_id, "metadata value type"));
    MetaValue value;
    GgufValueType type = static_cast<GgufValueType>(type_id), elem = type;
    if (type_id == static_cast<uint32_t>(GgufValueType::kArray)) {
      uint32_t elem_id = 0;
      uint64_t n = 0;
      SSMQ_RETURN_IF_ERROR(c.Read(&elem_id, "array element type"));
      if (elem_id == static_cast<uint32_t>(GgufValueType::kArray))
        return Status(StatusCode::kUnsupported, "metadata '" + key + "': nested arrays are not supported", type_at);
      if (!KnownScalarType(elem_id))
        return Status(StatusCode::kUnknownType,
                      "metadata '" + key + "': unknown array element type " + std::to_string(elem_id), type_at);
      SSMQ_RETURN_IF_ERROR(c.Read(&n, "array length"));
      elem = static_cast<GgufValueType>(elem_id);
      if (n > c.left() / MinValueBytes(elem))
        return Status(StatusCode::kTruncated,
                      "metadata '" + key + "': array of " + std::to_string(n) + " elements runs past the end of the file",
                      type_at);
      SSMQ_RETURN_IF_ERROR(ReadArray(c, elem, n, &value, key));
    } else {
      if (!KnownScalarType(type_id))
        return Status(StatusCode::kUnknownType,
                      "metadata '" + key + "': unknown value type " + std::to_string(type_id), type_at);
      Scalar s;
      SSMQ_RETURN_IF_ERROR(ReadScalar(c, type, &s, "metadata '" + key + "'"));
      value = ScalarValue(type, std::move(s));
    }
    if (key == "general.alignment") {
      if (type != GgufValueType::kU32)
        return Status(StatusCode::kBadMetadata, "general.alignment must be a uint32", at);
      const uint64_t a = std::get<uint64_t>(value.v);
      if (a == 0 || (a & (a - 1)) != 0)
        return Status(StatusCode::kBadMetadata, "general.alignment " + std::to_string(a) + " is not a power of two", at);
      alignment_ = static_cast<uint32_t>(a);
    }
    key_types_.push_back({key, type, elem});
    metadata_.Set(std::move(key), std::move(value));
  }

  std::unordered_set<std::string> names;
  tensors_.reserve(n_tensors);
  for (uint64_t k = 0; k < n_tensors; ++k) {
    GgufTensorInfo t;
    t.info_offset = c.pos();
    SSMQ_RETURN_IF_ERROR(c.ReadString(&t.name, "tensor name #" + std::to_string(k)));
    const std::string tn = "tensor '" + t.name + "'";
    if (t.name.empty() || t.name.size() > kGgufMaxNameBytes)
      return Status(StatusCode::kBadTensorInfo,
                    "tensor #" + std::to_string(k) + " name is empty or longer than 63 bytes", t.info_offset);
    if (!names.insert(t.name).second)
      return Status(StatusCode::kDuplicateTensor, tn + " appears twice", t.info_offset);
    uint32_t n_dims = 0;
    SSMQ_RETURN_IF_ERROR(c.Read(&n_dims, (tn + " n_dims").c_str()));
    if (n_dims == 0 || n_dims > kGgufMaxDims)
      return Status(StatusCode::kBadTensorInfo, tn + " has " + std::to_string(n_dims) + " dims (1..4 allowed)",
                    t.info_offset);
    t.ne.resize(n_dims);
    uint64_t numel = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      SSMQ_RETURN_IF_ERROR(c.Read(&t.ne[d], (tn + " ne").c_str()));
      if (t.ne[d] > (uint64_t{1} << 62) || __builtin_mul_overflow(numel, t.ne[d], &numel) ||
          numel > (uint64_t{1} << 62))
        return Status(StatusCode::kBadTensorInfo, tn + " element count overflows", t.info_offset);
    }
    uint32_t type_id = 0;
    const uint64_t type_at = c.pos();
    SSMQ_RETURN_IF_ERROR(c.Read(&type_id, (tn + " type").c_str()));
    const GgmlTypeInfo* ti = FindGgmlType(type_id);
    if (!ti) return Status(StatusCode::kUnknownType, tn + " has unknown ggml type " + std::to_string(type_id), type_at);
    t.type = ti->type;
    if (t.ne[0] % ti->block_elems != 0)
      return Status(StatusCode::kBadTensorInfo,
                    tn + " ne[0] = " + std::to_string(t.ne[0]) + " is not a multiple of the " +
                        std::string(ti->name) + " block size " + std::to_string(ti->block_elems),
                    t.info_offset);
    if (!GgmlRowBytes(t.type, numel, &t.size))
      return Status(StatusCode::kBadTensorInfo, tn + " byte size overflows", t.info_offset);
    SSMQ_RETURN_IF_ERROR(c.Read(&t.offset, (tn + " offset").c_str()));
    if (t.offset % alignment_ != 0)
      return Status(StatusCode::kMisaligned,
                    tn + " offset " + std::to_string(t.offset) + " is not a multiple of the alignment " +
                        std::to_string(alignment_),
                    t.info_offset);
    tensors_.push_back(std::move(t));
  }

  // Data section: the end of the infos padded to the alignment.
  const uint64_t end_infos = c.pos();
  data_offset_ = (end_infos + alignment_ - 1) / alignment_ * alignment_;
  if (n_tensors > 0 && data_offset_ > bytes_.size())
    return Status(StatusCode::kTruncated, "the data section starts past the end of the file", end_infos);
  const uint64_t data_size = n_tensors > 0 ? bytes_.size() - data_offset_ : 0;
  std::vector<const GgufTensorInfo*> by_offset;
  for (const GgufTensorInfo& t : tensors_) {
    if (t.offset > data_size || t.size > data_size - t.offset)
      return Status(StatusCode::kOutOfBounds,
                    "tensor '" + t.name + "' " + NeString(t.ne) + " data [" + std::to_string(t.offset) + ", +" +
                        std::to_string(t.size) + ") lies outside the data section of " + std::to_string(data_size) +
                        " bytes",
                    t.info_offset);
    by_offset.push_back(&t);
  }
  std::sort(by_offset.begin(), by_offset.end(),
            [](const GgufTensorInfo* a, const GgufTensorInfo* b) { return a->offset < b->offset; });
  for (size_t k = 1; k < by_offset.size(); ++k) {
    const GgufTensorInfo* prev = by_offset[k - 1];
    if (prev->offset + prev->size > by_offset[k]->offset && by_offset[k]->size > 0 && prev->size > 0)
      return Status(StatusCode::kOverlap,
                    "tensors '" + prev->name + "' and '" + by_offset[k]->name + "' overlap", by_offset[k]->info_offset);
  }
  return Status::Ok();
}

GgufValueType GgufFile::ValueType(std::string_view key, GgufValueType* elem) const {
  for (const KeyType& k : key_types_) {
    if (k.key == key) {
      if (elem) *elem = k.elem;
      return k.type;
    }
  }
  if (elem) *elem = GgufValueType::kU8;
  return GgufValueType::kU8;
}

const GgufTensorInfo* GgufFile::FindTensor(std::string_view name) const {
  for (const GgufTensorInfo& t : tensors_)
    if (t.name == name) return &t;
  return nullptr;
}

std::span<const uint8_t> GgufFile::TensorData(const GgufTensorInfo& t) const {
  return bytes_.subspan(data_offset_ + t.offset, t.size);
}

Result<std::vector<float>> GgufFile::ReadAsF32(const GgufTensorInfo& t) const {
  std::vector<float> out(t.numel());
  Status s = GgmlDequantize(t.type, TensorData(t), out);
  if (!s.ok()) return s.WithContext("tensor '" + t.name + "'");
  return out;
}

}  // namespace ssmq::gguf
