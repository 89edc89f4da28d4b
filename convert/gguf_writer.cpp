// GGUF v3 writer (see gguf_writer.h).
#include "convert/gguf_writer.h"

#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

namespace ssmq::gguf {
namespace {

GgufValueType ToGgufType(MetaType t) {
  switch (t) {
    case MetaType::kU8: return GgufValueType::kU8;
    case MetaType::kI8: return GgufValueType::kI8;
    case MetaType::kU16: return GgufValueType::kU16;
    case MetaType::kI16: return GgufValueType::kI16;
    case MetaType::kU32: return GgufValueType::kU32;
    case MetaType::kI32: return GgufValueType::kI32;
    case MetaType::kU64: return GgufValueType::kU64;
    case MetaType::kI64: return GgufValueType::kI64;
    case MetaType::kF32: return GgufValueType::kF32;
    case MetaType::kF64: return GgufValueType::kF64;
    case MetaType::kBool: return GgufValueType::kBool;
    case MetaType::kString: return GgufValueType::kString;
    default: return GgufValueType::kArray;
  }
}

class Out {
 public:
  std::vector<uint8_t> b;
  template <class T>
  void Put(T v) {  // byte pushes: resize + memcpy or insert trip GCC 12's -Wstringop-overflow
    uint8_t bytes[sizeof(T)];
    std::memcpy(bytes, &v, sizeof(T));
    for (uint8_t byte : bytes) b.push_back(byte);
  }
  void PutString(const std::string& s) {
    Put<uint64_t>(s.size());
    b.insert(b.end(), s.begin(), s.end());
  }
  void Pad(uint32_t alignment) {
    while (b.size() % alignment) b.push_back(0);
  }
};

// One element of `type` taken from the widened value.
void PutScalar(Out& o, MetaType type, uint64_t u, int64_t i, double f, bool bl, const std::string* s) {
  switch (type) {
    case MetaType::kU8: o.Put<uint8_t>(static_cast<uint8_t>(u)); break;
    case MetaType::kI8: o.Put<int8_t>(static_cast<int8_t>(i)); break;
    case MetaType::kU16: o.Put<uint16_t>(static_cast<uint16_t>(u)); break;
    case MetaType::kI16: o.Put<int16_t>(static_cast<int16_t>(i)); break;
    case MetaType::kU32: o.Put<uint32_t>(static_cast<uint32_t>(u)); break;
    case MetaType::kI32: o.Put<int32_t>(static_cast<int32_t>(i)); break;
    case MetaType::kU64: o.Put<uint64_t>(u); break;
    case MetaType::kI64: o.Put<int64_t>(i); break;
    case MetaType::kF32: o.Put<float>(static_cast<float>(f)); break;
    case MetaType::kF64: o.Put<double>(f); break;
    case MetaType::kBool: o.Put<uint8_t>(bl ? 1 : 0); break;
    case MetaType::kString: o.PutString(*s); break;
    default: break;
  }
}

void PutValue(Out& o, const MetaValue& m) {
  if (m.type != MetaType::kArray) {
    o.Put<uint32_t>(static_cast<uint32_t>(ToGgufType(m.type)));
    uint64_t u = 0;
    int64_t i = 0;
    double f = 0;
    bool bl = false;
    const std::string* s = nullptr;
    if (auto* p = std::get_if<uint64_t>(&m.v)) u = *p;
    if (auto* p = std::get_if<int64_t>(&m.v)) i = *p;
    if (auto* p = std::get_if<double>(&m.v)) f = *p;
    if (auto* p = std::get_if<bool>(&m.v)) bl = *p;
    if (auto* p = std::get_if<std::string>(&m.v)) s = p;
    PutScalar(o, m.type, u, i, f, bl, s);
    return;
  }
  o.Put<uint32_t>(static_cast<uint32_t>(GgufValueType::kArray));
  o.Put<uint32_t>(static_cast<uint32_t>(ToGgufType(m.elem_type)));
  std::visit(
      [&](const auto& vec) {
        using V = std::decay_t<decltype(vec)>;
        if constexpr (std::is_same_v<V, std::vector<uint64_t>>) {
          o.Put<uint64_t>(vec.size());
          for (uint64_t x : vec) PutScalar(o, m.elem_type, x, 0, 0, false, nullptr);
        } else if constexpr (std::is_same_v<V, std::vector<int64_t>>) {
          o.Put<uint64_t>(vec.size());
          for (int64_t x : vec) PutScalar(o, m.elem_type, 0, x, 0, false, nullptr);
        } else if constexpr (std::is_same_v<V, std::vector<double>>) {
          o.Put<uint64_t>(vec.size());
          for (double x : vec) PutScalar(o, m.elem_type, 0, 0, x, false, nullptr);
        } else if constexpr (std::is_same_v<V, std::vector<bool>>) {
          o.Put<uint64_t>(vec.size());
          for (bool x : vec) PutScalar(o, m.elem_type, 0, 0, 0, x, nullptr);
        } else if constexpr (std::is_same_v<V, std::vector<std::string>>) {
          o.Put<uint64_t>(vec.size());
          for (const std::string& x : vec) PutScalar(o, m.elem_type, 0, 0, 0, false, &x);
        } else {
          o.Put<uint64_t>(0);
        }
      },
      m.v);
}

}  // namespace

void GgufWriter::SetValue(std::string key, MetaValue value) {
  if (key == "general.alignment") {
    if (auto* p = std::get_if<uint64_t>(&value.v)) alignment_ = static_cast<uint32_t>(*p);
  }
  metadata_.Set(std::move(key), std::move(value));
}

Status GgufWriter::AddTensor(std::string name, std::vector<uint64_t> ne, GgmlType type,
                             std::vector<uint8_t> data) {
  if (name.empty() || name.size() > kGgufMaxNameBytes)
    return Status(StatusCode::kInvalidArgument, "GGUF tensor name '" + name + "' is empty or longer than 63 bytes");
  for (const Tensor& t : tensors_)
    if (t.name == name) return Status(StatusCode::kDuplicateTensor, "tensor '" + name + "' added twice");
  if (ne.empty() || ne.size() > kGgufMaxDims)
    return Status(StatusCode::kInvalidArgument, "tensor '" + name + "' needs 1..4 dims");
  uint64_t numel = 1;
  for (uint64_t d : ne) numel *= d;
  uint64_t bytes = 0;
  if (ne[0] % GgmlTraits(type).block_elems != 0 || !GgmlRowBytes(type, numel, &bytes) || bytes != data.size())
    return Status(StatusCode::kInvalidArgument,
                  "tensor '" + name + "': " + std::to_string(data.size()) + " bytes do not match its " +
                      std::string(GgmlTraits(type).name) + " shape");
  tensors_.push_back({std::move(name), std::move(ne), type, std::move(data)});
  return Status::Ok();
}

Result<std::vector<uint8_t>> GgufWriter::WriteBuffer() const {
  Out o;
  o.Put<uint32_t>(kGgufMagic);
  o.Put<uint32_t>(3);
  o.Put<uint64_t>(tensors_.size());
  o.Put<uint64_t>(metadata_.size());
  for (const Metadata::Entry& e : metadata_.entries()) {
    o.PutString(e.key);
    PutValue(o, e.value);
  }
  uint64_t offset = 0;
  for (const Tensor& t : tensors_) {
    o.PutString(t.name);
    o.Put<uint32_t>(static_cast<uint32_t>(t.ne.size()));
    for (uint64_t d : t.ne) o.Put<uint64_t>(d);
    o.Put<uint32_t>(static_cast<uint32_t>(t.type));
    o.Put<uint64_t>(offset);
    offset += (t.data.size() + alignment_ - 1) / alignment_ * alignment_;
  }
  o.Pad(alignment_);
  for (const Tensor& t : tensors_) {
    o.b.insert(o.b.end(), t.data.begin(), t.data.end());
    o.Pad(alignment_);
  }
  return std::move(o.b);
}

Status GgufWriter::WriteFile(const std::string& path) const {
  SSMQ_ASSIGN_OR_RETURN(std::vector<uint8_t> bytes, WriteBuffer());
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) return Status(StatusCode::kIoError, "cannot create " + tmp);
    f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    f.flush();
    if (!f) {
      std::error_code ec;
      std::filesystem::remove(tmp, ec);
      return Status(StatusCode::kIoError, "cannot write " + tmp);
    }
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::filesystem::remove(tmp, ec);
    return Status(StatusCode::kIoError, "cannot rename " + tmp + " to " + path);
  }
  return Status::Ok();
}

}  // namespace ssmq::gguf
