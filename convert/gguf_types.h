// ggml tensor types as they appear in GGUF files: the id table (block size
// and bytes per block, for validating tensor infos), and the reference
// block codecs we need: dequantize F32/F16/BF16/Q8_0/Q4_0/Q4_1/Q4_K to f32,
// quantize f32 to Q8_0/Q4_0 exactly as ggml's reference quantizers do.
//
// Block layouts (ggml-common.h; all little-endian, blocks back to back along ne[0]):
//   Q8_0: 34 bytes per 32 values  { f16 d; int8 qs[32]; }            value = qs[j] * d
//   Q4_0: 18 bytes per 32 values  { f16 d; u8 qs[16]; }              value = (q - 8) * d
//   Q4_1: 20 bytes per 32 values  { f16 d; f16 m; u8 qs[16]; }       value = q * d + m
//         Q4_0/Q4_1: element j in the low nibble of qs[j], element j+16 in the high nibble.
//   Q4_K: 144 bytes per 256 values { f16 d; f16 dmin; u8 scales[12]; u8 qs[128]; }
//         8 sub-blocks of 32 with 6-bit scale/min each; value = d*sc*q - dmin*m.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "format/status.h"

namespace ssmq::gguf {

// ggml_type ids (ggml.h). Never renumber: they are stored in files.
enum class GgmlType : uint32_t {
  kF32 = 0, kF16 = 1, kQ4_0 = 2, kQ4_1 = 3, kQ5_0 = 6, kQ5_1 = 7, kQ8_0 = 8, kQ8_1 = 9,
  kQ2_K = 10, kQ3_K = 11, kQ4_K = 12, kQ5_K = 13, kQ6_K = 14, kQ8_K = 15,
  kI8 = 24, kI16 = 25, kI32 = 26, kI64 = 27, kF64 = 28, kBF16 = 30,
};

struct GgmlTypeInfo {
  GgmlType type;
  std::string_view name;   // "q8_0", as ggml names it
  uint32_t block_elems;    // values per block (1 for plain types)
  uint32_t block_bytes;    // bytes per block
  bool can_dequantize;     // we have a codec for it
};

// nullptr when the id is not one we know the layout of.
const GgmlTypeInfo* FindGgmlType(uint32_t id);
const GgmlTypeInfo& GgmlTraits(GgmlType type);

// Bytes of a row of n values (n must be a multiple of block_elems); nullopt-like 0 on overflow.
bool GgmlRowBytes(GgmlType type, uint64_t n_values, uint64_t* bytes);

// Converts n values stored as `type` to f32. kInvalidArgument when the byte
// count does not match, kUnsupported for a type without a codec.
Status GgmlDequantize(GgmlType type, std::span<const uint8_t> src, std::span<float> dst);

// ggml's reference quantizers (quantize_row_q8_0_ref / quantize_row_q4_0_ref);
// x.size() must be a multiple of 32.
std::vector<uint8_t> QuantizeQ8_0(std::span<const float> x);
std::vector<uint8_t> QuantizeQ4_0(std::span<const float> x);

inline constexpr uint32_t kQK = 32;           // values per Q8_0/Q4_0/Q4_1 block
inline constexpr uint32_t kQ8_0Bytes = 34;
inline constexpr uint32_t kQ4_0Bytes = 18;

}  // namespace ssmq::gguf
