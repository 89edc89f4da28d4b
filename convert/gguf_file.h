// A validated GGUF file (llama.cpp's model format, versions 2 and 3).
// Everything is checked while opening, before anything is used: magic,
// version, counts and lengths against the bytes left (no allocation driven
// by an unchecked length), value types, duplicate keys and tensor names,
// general.alignment, tensor ranks/dims/types, ne[0] a multiple of the block
// size, every tensor's bytes aligned, inside the file and not overlapping.
//
// Metadata values are kept as ssmq MetaValues (u8..f64, bool, string and
// arrays of those) with the GGUF value type recorded beside each key, so a
// writer can reproduce them. Tensor dims are kept in GGUF order (ne[0] is
// the contiguous dimension = the LAST PyTorch dim).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "convert/gguf_types.h"
#include "format/metadata.h"
#include "format/status.h"

namespace ssmq::gguf {

// GGUF metadata value types (gguf.h enum gguf_type). Stored in files.
enum class GgufValueType : uint32_t {
  kU8 = 0, kI8 = 1, kU16 = 2, kI16 = 3, kU32 = 4, kI32 = 5, kF32 = 6, kBool = 7,
  kString = 8, kArray = 9, kU64 = 10, kI64 = 11, kF64 = 12,
};

inline constexpr uint32_t kGgufMagic = 0x46554747;  // "GGUF" read little-endian
inline constexpr uint32_t kGgufDefaultAlignment = 32;
inline constexpr size_t kGgufMaxNameBytes = 63;      // GGML_MAX_NAME - 1
inline constexpr uint32_t kGgufMaxDims = 4;
inline constexpr uint64_t kGgufMaxTensors = uint64_t{1} << 20;
inline constexpr uint64_t kGgufMaxKeys = uint64_t{1} << 20;

struct GgufTensorInfo {
  std::string name;
  std::vector<uint64_t> ne;      // GGUF order: ne[0] is contiguous
  GgmlType type = GgmlType::kF32;
  uint64_t offset = 0;           // relative to the data section
  uint64_t size = 0;             // bytes
  uint64_t info_offset = 0;      // where the tensor info sits in the file (errors)

  uint64_t numel() const;
  std::vector<int64_t> TorchShape() const;  // reversed ne
};

class GgufFile {
 public:
  // Maps the file (read-only) and validates it.
  static Result<std::unique_ptr<GgufFile>> Open(const std::string& path);
  // Views `bytes` (they must outlive the GgufFile) and validates them.
  static Result<std::unique_ptr<GgufFile>> Parse(std::span<const uint8_t> bytes);
  ~GgufFile();
  GgufFile(const GgufFile&) = delete;
  GgufFile& operator=(const GgufFile&) = delete;

  uint32_t version() const { return version_; }
  uint32_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }
  const Metadata& metadata() const { return metadata_; }
  // The GGUF value type of a key (and of its elements for arrays).
  GgufValueType ValueType(std::string_view key, GgufValueType* elem = nullptr) const;
  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  const GgufTensorInfo* FindTensor(std::string_view name) const;
  std::span<const uint8_t> TensorData(const GgufTensorInfo& t) const;
  // Any type with a codec -> f32 values (numel of them).
  Result<std::vector<float>> ReadAsF32(const GgufTensorInfo& t) const;

 private:
  GgufFile() = default;
  Status ParseAll();

  std::span<const uint8_t> bytes_;
  void* map_ = nullptr;   // mmap base when opened from a path
  size_t map_size_ = 0;
  uint32_t version_ = 0;
  uint32_t alignment_ = kGgufDefaultAlignment;
  uint64_t data_offset_ = 0;
  Metadata metadata_;
  struct KeyType {
    std::string key;
    GgufValueType type, elem;
  };
  std::vector<KeyType> key_types_;
  std::vector<GgufTensorInfo> tensors_;
};

}  // namespace ssmq::gguf
