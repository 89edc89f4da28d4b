// Reference (scalar) Q8/Q4 quantization and f16/bf16 conversion: the
// normative formulas of spec/format.md "Quantized types", in code.
#include "format/quant.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

namespace ssmq {

uint64_t ScaleCount(const QuantInfo& q, uint64_t rows, uint64_t cols) {
  switch (q.granularity) {
    case ScaleGranularity::kNone: return 0;
    case ScaleGranularity::kPerTensor: return 1;
    case ScaleGranularity::kPerChannel: return rows;
    case ScaleGranularity::kPerGroup: {
      if (q.group_size == 0) return 0;
      uint64_t groups = cols / q.group_size + (cols % q.group_size != 0 ? 1 : 0);
      uint64_t n = 0;
      if (__builtin_mul_overflow(rows, groups, &n)) return 0;
      return n;
    }
  }
  return 0;
}

namespace {

// The scale index of element (r, c), and the [begin, end) column range of
// the scale's block within its row (per tensor: whole rows, see ForEachBlock).
struct Block {
  uint64_t scale_index;
  uint64_t row_begin, row_end;  // rows covered
  uint64_t col_begin, col_end;  // cols covered
};

// Calls fn(Block) for each scale's block in scale order.
template <class F>
void ForEachBlock(const QuantInfo& q, uint64_t rows, uint64_t cols, F fn) {
  switch (q.granularity) {
    case ScaleGranularity::kNone: return;
    case ScaleGranularity::kPerTensor: fn(Block{0, 0, rows, 0, cols}); return;
    case ScaleGranularity::kPerChannel:
      for (uint64_t r = 0; r < rows; ++r) fn(Block{r, r, r + 1, 0, cols});
      return;
    case ScaleGranularity::kPerGroup: {
      const uint64_t g = q.group_size;
      const uint64_t groups = (cols + g - 1) / g;
      for (uint64_t r = 0; r < rows; ++r)
        for (uint64_t j = 0; j < groups; ++j)
          fn(Block{r * groups + j, r, r + 1, j * g, std::min(cols, (j + 1) * g)});
      return;
    }
  }
}

Status CheckQuantArgs(uint64_t n_values, uint64_t rows, uint64_t cols, const QuantInfo& q,
                      bool is_q4) {
  uint64_t n = 0;
  if (__builtin_mul_overflow(rows, cols, &n))
    return Status(StatusCode::kInvalidArgument, "rows*cols overflows");
  if (n != n_values)
    return Status(StatusCode::kInvalidArgument,
                  "input has " + std::to_string(n_values) + " values, rows*cols = " +
                      std::to_string(n));
  if (q.granularity == ScaleGranularity::kNone ||
      static_cast<uint8_t>(q.granularity) > static_cast<uint8_t>(ScaleGranularity::kPerGroup))
    return Status(StatusCode::kInvalidArgument, "quantization needs a scale granularity");
  if (q.granularity == ScaleGranularity::kPerGroup && q.group_size == 0)
    return Status(StatusCode::kInvalidArgument, "per-group quantization with group_size 0");
  if (q.granularity != ScaleGranularity::kPerGroup && q.group_size != 0)
    return Status(StatusCode::kInvalidArgument, "group_size set without per-group granularity");
  if (is_q4 && cols % 2 != 0)
    return Status(StatusCode::kInvalidArgument,
                  "q4 needs an even number of cols, got " + std::to_string(cols));
  if (!is_q4 && q.has_zero_point)
    return Status(StatusCode::kInvalidArgument, "q8 has no zero point");
  return Status::Ok();
}

Status CheckFinite(std::span<const float> x) {
  for (size_t i = 0; i < x.size(); ++i)
    if (!std::isfinite(x[i]))
      return Status(StatusCode::kBadValue,
                    "non-finite input value at flat index " + std::to_string(i));
  return Status::Ok();
}

// Round half to even (the default floating-point rounding mode).
inline float RoundHalfEven(float v) { return std::nearbyint(v); }

}  // namespace

Result<QuantizedTensor> QuantizeQ8(std::span<const float> x, uint64_t rows, uint64_t cols,
                                   const QuantInfo& q) {
  SSMQ_RETURN_IF_ERROR(CheckQuantArgs(x.size(), rows, cols, q, /*is_q4=*/false));
  SSMQ_RETURN_IF_ERROR(CheckFinite(x));
  QuantizedTensor out;
  out.codes.assign(x.size(), 0);
  out.scales.assign(ScaleCount(q, rows, cols), 0.0f);
  ForEachBlock(q, rows, cols, [&](const Block& b) {
    float absmax = 0.0f;
    for (uint64_t r = b.row_begin; r < b.row_end; ++r)
      for (uint64_t c = b.col_begin; c < b.col_end; ++c)
        absmax = std::max(absmax, std::fabs(x[r * cols + c]));
    // All-zero block: scale 0 and codes 0, which dequantize to exactly 0.
    const float s = absmax / 127.0f;
    out.scales[b.scale_index] = s;
    if (s == 0.0f) return;
    for (uint64_t r = b.row_begin; r < b.row_end; ++r)
      for (uint64_t c = b.col_begin; c < b.col_end; ++c) {
        float v = std::clamp(RoundHalfEven(x[r * cols + c] / s), -127.0f, 127.0f);
        out.codes[r * cols + c] = static_cast<uint8_t>(static_cast<int8_t>(v));
      }
  });
  return out;
}

Result<QuantizedTensor> QuantizeQ4(std::span<const float> x, uint64_t rows, uint64_t cols,
                                   const QuantInfo& q) {
  SSMQ_RETURN_IF_ERROR(CheckQuantArgs(x.size(), rows, cols, q, /*is_q4=*/true));
  SSMQ_RETURN_IF_ERROR(CheckFinite(x));
  QuantizedTensor out;
  std::vector<uint8_t> codes(x.size(), 8);  // one code per element, packed below
  const uint64_t n_scales = ScaleCount(q, rows, cols);
  out.scales.assign(n_scales, 0.0f);
  if (q.has_zero_point) out.zeros.assign(n_scales, 0);
  ForEachBlock(q, rows, cols, [&](const Block& b) {
    if (!q.has_zero_point) {
      float absmax = 0.0f;
      for (uint64_t r = b.row_begin; r < b.row_end; ++r)
        for (uint64_t c = b.col_begin; c < b.col_end; ++c)
          absmax = std::max(absmax, std::fabs(x[r * cols + c]));
      const float s = absmax / 7.0f;
      out.scales[b.scale_index] = s;
      if (s == 0.0f) return;  // codes stay 8 (= zero)
      for (uint64_t r = b.row_begin; r < b.row_end; ++r)
        for (uint64_t c = b.col_begin; c < b.col_end; ++c) {
          float v = std::clamp(RoundHalfEven(x[r * cols + c] / s), -8.0f, 7.0f) + 8.0f;
          codes[r * cols + c] = static_cast<uint8_t>(v);
        }
      return;
    }
    // Asymmetric: the range always contains 0 so that 0 is representable
    // and the zero point lies in [0, 15].
    float lo = 0.0f, hi = 0.0f;
    for (uint64_t r = b.row_begin; r < b.row_end; ++r)
      for (uint64_t c = b.col_begin; c < b.col_end; ++c) {
        lo = std::min(lo, x[r * cols + c]);
        hi = std::max(hi, x[r * cols + c]);
      }
    const float s = (hi - lo) / 15.0f;
    out.scales[b.scale_index] = s;
    if (s == 0.0f) {  // all zero: scale 0, zero point 0, codes 0
      out.zeros[b.scale_index] = 0;
      for (uint64_t r = b.row_begin; r < b.row_end; ++r)
        for (uint64_t c = b.col_begin; c < b.col_end; ++c) codes[r * cols + c] = 0;
      return;
    }
    const float z = std::clamp(RoundHalfEven(-lo / s), 0.0f, 15.0f);
    out.zeros[b.scale_index] = static_cast<uint8_t>(z);
    for (uint64_t r = b.row_begin; r < b.row_end; ++r)
      for (uint64_t c = b.col_begin; c < b.col_end; ++c) {
        float v = std::clamp(RoundHalfEven(x[r * cols + c] / s) + z, 0.0f, 15.0f);
        codes[r * cols + c] = static_cast<uint8_t>(v);
      }
  });
  out.codes.assign(x.size() / 2, 0);
  for (uint64_t i = 0; i < codes.size(); i += 2)
    out.codes[i / 2] = static_cast<uint8_t>(codes[i] | (codes[i + 1] << 4));
  return out;
}

namespace {
Status CheckDequantArgs(uint64_t n_codes_bytes, uint64_t n_scales, uint64_t n_zeros,
                        uint64_t n_out, uint64_t rows, uint64_t cols, const QuantInfo& q,
                        bool is_q4) {
  SSMQ_RETURN_IF_ERROR(CheckQuantArgs(n_out, rows, cols, q, is_q4));
  const uint64_t want_codes = is_q4 ? n_out / 2 : n_out;
  if (n_codes_bytes != want_codes)
    return Status(StatusCode::kInvalidArgument,
                  "codes have " + std::to_string(n_codes_bytes) + " bytes, expected " +
                      std::to_string(want_codes));
  const uint64_t want_scales = ScaleCount(q, rows, cols);
  if (n_scales != want_scales)
    return Status(StatusCode::kInvalidArgument,
                  std::to_string(n_scales) + " scales, expected " + std::to_string(want_scales));
  const uint64_t want_zeros = q.has_zero_point ? want_scales : 0;
  if (n_zeros != want_zeros)
    return Status(StatusCode::kInvalidArgument,
                  std::to_string(n_zeros) + " zero points, expected " + std::to_string(want_zeros));
  return Status::Ok();
}
}  // namespace

Status DequantizeQ8(std::span<const uint8_t> codes, std::span<const float> scales,
                    uint64_t rows, uint64_t cols, const QuantInfo& q, std::span<float> out) {
  SSMQ_RETURN_IF_ERROR(CheckDequantArgs(codes.size(), scales.size(), 0, out.size(), rows, cols,
                                        q, /*is_q4=*/false));
  ForEachBlock(q, rows, cols, [&](const Block& b) {
    const float s = scales[b.scale_index];
    for (uint64_t r = b.row_begin; r < b.row_end; ++r)
      for (uint64_t c = b.col_begin; c < b.col_end; ++c)
        out[r * cols + c] = static_cast<float>(static_cast<int8_t>(codes[r * cols + c])) * s;
  });
  return Status::Ok();
}

Status DequantizeQ4(std::span<const uint8_t> codes, std::span<const float> scales,
                    std::span<const uint8_t> zeros, uint64_t rows, uint64_t cols,
                    const QuantInfo& q, std::span<float> out) {
  SSMQ_RETURN_IF_ERROR(CheckDequantArgs(codes.size(), scales.size(), zeros.size(), out.size(),
                                        rows, cols, q, /*is_q4=*/true));
  ForEachBlock(q, rows, cols, [&](const Block& b) {
    const float s = scales[b.scale_index];
    const int z = q.has_zero_point ? zeros[b.scale_index] : 8;
    for (uint64_t r = b.row_begin; r < b.row_end; ++r)
      for (uint64_t c = b.col_begin; c < b.col_end; ++c) {
        const int code = Q4Get(codes.data(), r * cols + c);
        out[r * cols + c] = static_cast<float>(code - z) * s;
      }
  });
  return Status::Ok();
}

// ---- half conversions ----

uint16_t F32ToF16(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  const uint32_t sign = (u >> 16) & 0x8000u;
  const uint32_t exp = (u >> 23) & 0xFFu;
  uint32_t mant = u & 0x7FFFFFu;
  if (exp == 0xFF) {  // Inf or NaN: keep NaN a (quiet) NaN, keep its top payload bits
    if (mant == 0) return static_cast<uint16_t>(sign | 0x7C00u);
    return static_cast<uint16_t>(sign | 0x7E00u | (mant >> 13));
  }
  // Unbiased exponent; f16 normal range is e in [-14, 15].
  const int e = static_cast<int>(exp) - 127;
  if (e > 15) return static_cast<uint16_t>(sign | 0x7C00u);  // overflow -> Inf
  if (e >= -14) {
    // Normal: keep 10 mantissa bits, round half to even on the 13 dropped bits.
    uint32_t h = (static_cast<uint32_t>(e + 15) << 10) | (mant >> 13);
    const uint32_t rest = mant & 0x1FFFu;
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;  // may carry into exp / Inf: correct
    return static_cast<uint16_t>(sign | h);
  }
  // Subnormal or zero in f16: value = m * 2^-24 with m < 1024.
  if (exp == 0) return static_cast<uint16_t>(sign);  // f32 subnormals are far below 2^-25
  mant |= 0x800000u;  // with the implicit bit: value = mant * 2^(e-23)
  // In units of the f16 subnormal step 2^-24: m = mant * 2^(e+1) = mant >> (-e-1).
  const int shift = -e - 1;  // 14..24 for e in [-25, -15]
  if (shift > 24) return static_cast<uint16_t>(sign);  // < 2^-25 rounds to 0 (ties at 2^-25 handled next)
  const uint32_t m = mant >> shift;
  const uint32_t dropped = mant & ((1u << shift) - 1u);
  const uint32_t half = 1u << (shift - 1);
  uint32_t h = m;
  if (dropped > half || (dropped == half && (h & 1u))) ++h;  // may become the smallest normal: correct
  return static_cast<uint16_t>(sign | h);
}

float F16ToF32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1Fu;
  const uint32_t mant = h & 0x3FFu;
  uint32_t u;
  if (exp == 0x1F) {
    u = sign | 0x7F800000u | (mant << 13);
  } else if (exp != 0) {
    u = sign | ((exp + 112u) << 23) | (mant << 13);
  } else if (mant == 0) {
    u = sign;
  } else {
    // Subnormal: value = mant * 2^-24, exactly representable as an f32 normal.
    float f = static_cast<float>(mant) * 0x1p-24f;
    std::memcpy(&u, &f, 4);
    u |= sign;
  }
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

uint16_t F32ToBF16(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  if ((u & 0x7F800000u) == 0x7F800000u && (u & 0x7FFFFFu) != 0)
    return static_cast<uint16_t>((u >> 16) | 0x40u);  // NaN stays a quiet NaN
  const uint32_t lsb = (u >> 16) & 1u;
  u += 0x7FFFu + lsb;  // round half to even; overflow to Inf is correct
  return static_cast<uint16_t>(u >> 16);
}

Status FloatToF32(TensorType type, std::span<const uint8_t> src, std::span<float> dst) {
  const TensorTypeTraits& t = TraitsOf(type);
  if (!t.is_float)
    return Status(StatusCode::kInvalidArgument,
                  "FloatToF32 on non-float type " + std::string(t.name));
  if (src.size() != dst.size() * t.block_bytes)
    return Status(StatusCode::kInvalidArgument,
                  "FloatToF32: " + std::to_string(src.size()) + " bytes for " +
                      std::to_string(dst.size()) + " " + std::string(t.name) + " values");
  switch (type) {
    case TensorType::kF32:
      if (!dst.empty()) std::memcpy(dst.data(), src.data(), src.size());
      break;
    case TensorType::kF16:
      for (size_t i = 0; i < dst.size(); ++i) {
        uint16_t h;
        std::memcpy(&h, src.data() + 2 * i, 2);
        dst[i] = F16ToF32(h);
      }
      break;
    case TensorType::kBF16:
      for (size_t i = 0; i < dst.size(); ++i) {
        uint16_t h;
        std::memcpy(&h, src.data() + 2 * i, 2);
        dst[i] = BF16ToF32(h);
      }
      break;
    default: break;
  }
  return Status::Ok();
}

}  // namespace ssmq
