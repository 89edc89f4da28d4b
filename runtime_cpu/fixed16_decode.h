// Q4 / Q8 weights × float activations at decode on AVX-512 VNNI, with the
// activations as 16-bit fixed point (the "16-bit activations" of w4a16 and
// w8a16, and of the float-activation lm_head of every scheme).
//
// Why: the float form of these products turns every weight into an f32 lane
// first (Q4: a 16-entry table per group and vpermps per 16 weights; Q8:
// vpmovsxbd + vcvtdq2ps per 16), ~3 vector uops per 16 weight bytes before
// the FMA, so one core cannot convert weights as fast as it can read them.
// Here each token's x is rounded once per call to a 16-bit integer per
// column, scaled per 128-column block, and split into two signed bytes; the
// weights stay bytes and vpdpbusd multiplies 64 of them at once, exactly:
//
//   scale_b = max_{c in b} |x[c]| / kFixed16Max             (block b: 128 columns)
//   v[c]    = RNE(x[c] / scale_b) clamped to ±kFixed16Max   (|v| <= 32639)
//   hi[c]   = floor((v[c] + 128) / 256),  lo[c] = v[c] - 256 · hi[c]   (both in [-128, 127])
//   T[r][b] = Σ_{c in b} (q[r][c] - z[r][g(b)]) · v[c]      (int32, exact)
//   y[r]    = bias[r] + Σ_b s[r][g(b)] · scale_b · T[r][b]  (fp32)
//
// with q the stored code and z the zero point (Q4: 8 when symmetric, else
// the stored one; Q8: 0). vpdpbusd takes unsigned × signed bytes: Q4 codes are
// unsigned already (z enters as -z · Σv), Q8 codes are biased to q + 128 (and
// -128 · Σv comes off). T = 256 · Σ q·hi + Σ q·lo - z · Σ v.
//
// The rounding error of v is at most scale_b / 2, i.e. 2^-16 of the block's
// largest |x|: at least as fine as fp16 for every value above 1/32 of its
// block's maximum (measured: 1.7-1.9e-5 relative L2 error of the product).
// Prefill keeps float activations (f32_gemm.h).
//
// Applies when the group size is a multiple of 128 and divides cols (every
// Q4/Q8 matmul of the published shapes except dt_proj, whose groups are
// dt_rank wide); other shapes keep the float kernels (quant_matmul.h).
// On AVX2 (no VNNI) only the 16-row tile kernels exist (weight_tiles.cpp),
// so it also needs what tiles need: Q4 without zero points or Q8, >= 16
// rows; rows outside whole tiles run the scalar reference.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "runtime_cpu/simd_dispatch.h"
#include "runtime_cpu/weight.h"

namespace ssmq::rt {

inline constexpr int64_t kFixed16Block = 128;           // columns per activation scale
inline constexpr int32_t kFixed16Max = 127 * 256 + 127;  // hi and lo bytes both fit int8

// The scalar rounding rule of every fixed16 quantizer (this header's blocks
// and fixed16_narrow.h's rows): inv from the largest |x| of the span, then
// v = clamp(RNE(x · inv), ±kFixed16Max) and its hi and lo bytes.
inline float Fixed16Inverse(float max_abs) {
  return max_abs > 0.0f ? static_cast<float>(kFixed16Max) / max_abs : 0.0f;
}
struct Fixed16Code {
  int32_t v;
  int8_t hi, lo;  // v = 256 · hi + lo
};
inline Fixed16Code Fixed16Round(float x, float inv) {
  const float f = std::clamp(std::nearbyint(x * inv), -static_cast<float>(kFixed16Max),
                             static_cast<float>(kFixed16Max));
  const int32_t v = static_cast<int32_t>(f);
  const int32_t hi = (v + 128) >> 8;  // floor: arithmetic shift
  return {v, static_cast<int8_t>(hi), static_cast<int8_t>(v - 256 * hi)};
}

// How a block's 128 columns sit in its 64-byte parts, matching how one
// 64-byte weight load unpacks:
//   kNibbleSplit (Q4: 64 packed bytes = 128 codes, low nibbles the even
//     columns): parts hi-even, hi-odd, lo-even, lo-odd; column 2p + j at
//     byte p of part j (hi) or 2 + j (lo).
//   kNatural (Q8: two 64-byte loads): parts hi[0, 64), hi[64, 128),
//     lo[0, 64), lo[64, 128); column 64h + p at byte p of part h (hi) or 2 + h (lo).
enum class Fixed16Layout { kNibbleSplit, kNatural };

// One call's activations, n_tokens rows of cols columns.
struct Fixed16Activations {
  const int8_t* bytes = nullptr;  // [n_tokens][cols / 128][4][64]
  const float* scales = nullptr;  // [n_tokens][cols / 128]: scale_b (NaN when the block has NaN/Inf)
  // [n_tokens][cols / 128][16]: lane j holds Σ v over the 8 columns that
  // vpdpbusd adds into lane j (bytes 4j..4j+3 of parts 0 and 1); the zero
  // point and the Q8 bias come off as multiples of these, so every lane of
  // T stays exact in int32.
  const int32_t* lane_sums = nullptr;
  const int32_t* block_sums = nullptr;  // [n_tokens][cols / 128]: Σ v over the block
  // kNatural only: [n_tokens][cols] v as int16 in column order, which the AVX2
  // Q8 tile kernel multiplies with vpmaddwd (weight_tiles.cpp).
  const int16_t* values = nullptr;
};

Fixed16Layout Fixed16LayoutFor(const Weight& w);
bool Fixed16Applies(const Weight& w, KernelIsa isa);

// Quantizes x into per-thread buffers reused by later calls (no allocation
// once grown). cols must be a multiple of 128. The AVX-512 and scalar forms
// give the same bytes.
Fixed16Activations PrepareFixed16(const float* x, int64_t x_stride, int64_t n_tokens,
                                  int64_t cols, Fixed16Layout layout, KernelIsa isa);

// v[c] of token t, decoded from the prepared bytes (tests).
int32_t Fixed16Value(const Fixed16Activations& xa, int64_t cols, Fixed16Layout layout, int64_t t,
                     int64_t c);

// Rows [r0, r1) of y for tokens [0, n_tokens), xa prepared with
// Fixed16LayoutFor(w): the AVX-512 VNNI kernel.
void Fixed16Rows(const Weight& w, int64_t r0, int64_t r1, const float* bias,
                 const Fixed16Activations& xa, int64_t n_tokens, float* y, int64_t y_stride);

// The scalar reference of the same formula (T exact in int64, block terms
// summed in order in fp32).
void Fixed16RowsScalar(const Weight& w, int64_t r0, int64_t r1, const float* bias,
                       const Fixed16Activations& xa, int64_t n_tokens, float* y,
                       int64_t y_stride);

}  // namespace ssmq::rt
