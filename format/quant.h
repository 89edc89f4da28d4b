// Reference (scalar) quantize / dequantize / pack / unpack for Q8 and Q4, and
// f16/bf16 conversions. These are the normative formulas of spec/format.md
// in code; SIMD kernels elsewhere are tested against them.
//
// Conventions (a weight tensor is viewed as rows x cols, row-major; cols is
// the input dimension, the last PyTorch dim; rows = product of the others):
//   per_tensor:  one scale
//   per_channel: one scale per row                      (scale shape [rows])
//   per_group:   one scale per (row, group of G cols)   (scale shape [rows, ceil(cols/G)])
//                the last group of a row may be shorter ("tail")
// Q8 symmetric: s = absmax / 127 (s = 1 when absmax == 0 ... see spec), q = clamp(round_half_even(x / s), -127, 127)
// Q4 symmetric: s = absmax / 7,  q = clamp(round_half_even(x / s), -8, 7) + 8, stored 0..15
// Q4 asymmetric: s = (max - min) / 15, z = clamp(round_half_even(-min / s), 0, 15), q = clamp(round(x/s) + z, 0, 15)
// value = (q - z) * s  (z = 8 for symmetric Q4; Q8 has no zero point)
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "format/status.h"
#include "format/tensor_types.h"

namespace ssmq {

enum class ScaleGranularity : uint8_t {
  kNone = 0,        // not quantized
  kPerTensor = 1,
  kPerChannel = 2,  // per output row
  kPerGroup = 3,    // per group of group_size along the input (last) dim
};

struct QuantInfo {
  ScaleGranularity granularity = ScaleGranularity::kNone;
  uint32_t group_size = 0;     // only for kPerGroup
  bool has_zero_point = false; // Q4 asymmetric: "<name>.zero" (u8) beside "<name>.scale" (f32)
};

// Number of scales for a rows x cols tensor at this granularity (0 for kNone).
uint64_t ScaleCount(const QuantInfo& q, uint64_t rows, uint64_t cols);

struct QuantizedTensor {
  std::vector<uint8_t> codes;   // Q8: rows*cols int8 bytes; Q4: rows*cols/2 packed bytes
  std::vector<float> scales;    // ScaleCount(...) entries
  std::vector<uint8_t> zeros;   // same count as scales when has_zero_point, else empty
};

// Errors: kBadValue on NaN/Inf input (names the flat index), kInvalidArgument
// on bad granularity / group size / odd cols for Q4.
Result<QuantizedTensor> QuantizeQ8(std::span<const float> x, uint64_t rows, uint64_t cols,
                                   const QuantInfo& q);
Result<QuantizedTensor> QuantizeQ4(std::span<const float> x, uint64_t rows, uint64_t cols,
                                   const QuantInfo& q);
Status DequantizeQ8(std::span<const uint8_t> codes, std::span<const float> scales,
                    uint64_t rows, uint64_t cols, const QuantInfo& q, std::span<float> out);
Status DequantizeQ4(std::span<const uint8_t> codes, std::span<const float> scales,
                    std::span<const uint8_t> zeros, uint64_t rows, uint64_t cols,
                    const QuantInfo& q, std::span<float> out);

// Q4 nibble access: element i lives in byte i/2, low nibble when i is even.
inline uint8_t Q4Get(const uint8_t* packed, uint64_t i) {
  return (i & 1) ? (packed[i >> 1] >> 4) : (packed[i >> 1] & 0x0F);
}

// Half conversions (round-to-nearest-even; NaN preserved).
uint16_t F32ToF16(float x);
float F16ToF32(uint16_t h);
uint16_t F32ToBF16(float x);
inline float BF16ToF32(uint16_t h) {
  uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  __builtin_memcpy(&f, &u, 4);
  return f;
}

// Converts n elements of a float type (F32/F16/BF16) to f32.
Status FloatToF32(TensorType type, std::span<const uint8_t> src, std::span<float> dst);

}  // namespace ssmq
