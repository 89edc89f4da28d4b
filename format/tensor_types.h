// The one table of tensor types. Writer, reader, converter, runtime and
// inspector all ask this table; spec/format.md's type table is checked
// against it by a test. Ids are stored in files: never reuse or renumber.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace ssmq {

enum class TensorType : uint32_t {
  kF32 = 0,   // IEEE-754 binary32, little-endian
  kF16 = 1,   // IEEE-754 binary16
  kBF16 = 2,  // bfloat16 (upper 16 bits of binary32)
  kI8 = 3,    // plain int8 (no scale)
  kI32 = 4,   // plain int32 (permutations, indices)
  kQ8 = 5,    // int8 codes q in [-127, 127]; value = q * scale (scales in "<name>.scale")
  kQ4 = 6,    // 4-bit codes, two per byte, element 2i in the low nibble, 2i+1 in the high
              // nibble; value = (q - zero) * scale, zero = 8 when symmetric
  kU8 = 7,    // plain uint8 (zero points, byte blobs)
  kI64 = 8,   // plain int64
  kCount
};

struct TensorTypeTraits {
  TensorType type;
  std::string_view name;      // "f32", "q4", ... (lower case, as in the spec)
  uint32_t block_elems;       // elements per block (2 for q4: one byte holds two codes)
  uint32_t block_bytes;       // bytes per block
  bool is_float;              // f32/f16/bf16
  bool is_quantized;          // q8/q4: codes that need a scale tensor
};

// nullopt for an unknown id (hostile input).
std::optional<TensorTypeTraits> GetTensorTypeTraits(uint32_t type_id);
const TensorTypeTraits& TraitsOf(TensorType type);
std::optional<TensorType> TensorTypeFromName(std::string_view name);
std::string_view TensorTypeName(TensorType type);

// Bytes for n elements of `type` (rounded up to whole blocks); nullopt on overflow.
std::optional<uint64_t> TensorBytes(TensorType type, uint64_t n_elements);

}  // namespace ssmq
