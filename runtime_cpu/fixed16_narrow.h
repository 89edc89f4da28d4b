// Q4 / Q8 weights 64 columns wide × 16-bit fixed-point activations at
// decode on AVX-512 VNNI: Mamba1's dt_proj (dt_rank = 64 at mamba-370m).
//
// Why: fixed16_decode.h needs 128-column blocks, and the float kernels pay a
// row's setup and horizontal sum for every 32 (Q4) or 64 (Q8) weight bytes:
// at 64 columns dt_proj took 4.5% of mamba-370m w4a16 decode while holding
// 1.5% of its weight bytes. Here 16 rows go at once: each row's int32 lanes
// are summed by one transpose-and-add tree over the 16 rows
// (ReduceAddEpi32x16), and the scales, zero points and bias are 16-lane vectors.
//
// The formula is fixed16_decode.h's with one 64-column block:
//   scale = max_c |x[c]| / kFixed16Max,  v[c] = RNE(x[c] / scale) clamped to ±kFixed16Max
//   T[r]  = Σ_c (q[r][c] - z[r]) · v[c]            (int32, exact: |T| < 64 · 255 · 32639)
//   y[r]  = bias[r] + s[r] · scale · T[r]           (fp32)
// with z as there (Q4: 8 or the stored zero point; Q8: 0). Q4 packs two
// rows' 32 bytes in one vector, Q8 one row's 64; each splits v into its hi
// and lo bytes for vpdpbusd as fixed16_decode.h does.
#pragma once

#include <cstdint>

#include "runtime_cpu/simd_dispatch.h"
#include "runtime_cpu/weight.h"

namespace ssmq::rt {

inline constexpr int64_t kNarrowCols = 64;

// Q4 or Q8, exactly 64 columns, one scale group per row, AVX-512; Q4 on AVX2
// too (8 rows per hadd tree, maddubs for vpdpbusd).
bool Fixed16NarrowApplies(const Weight& w, KernelIsa isa);

// One call's activations: per token 256 bytes (Q4: hi-even, hi-odd, lo-even,
// lo-odd, each 32 bytes twice so one vector serves two rows; Q8: the hi
// bytes of the 64 columns at 0, their lo bytes at 128), the scale and Σ v.
struct Fixed16NarrowActivations {
  const int8_t* bytes = nullptr;  // [n_tokens][256]
  const float* scales = nullptr;  // [n_tokens] (NaN when x has a NaN or Inf)
  const int32_t* sums = nullptr;  // [n_tokens]
};

// Into per-thread buffers reused by later calls (no allocation once grown).
Fixed16NarrowActivations PrepareFixed16Narrow(const Weight& w, const float* x, int64_t x_stride,
                                              int64_t n_tokens);

// v[c] of token t, decoded from the prepared bytes (tests).
int32_t Fixed16NarrowValue(const Weight& w, const Fixed16NarrowActivations& xa, int64_t t,
                           int64_t c);

// Rows [r0, r1) of y for tokens [0, n_tokens): the AVX-512 kernel (16-row
// tiles; the last rows of a range one at a time by the scalar form).
void Fixed16NarrowRows(const Weight& w, int64_t r0, int64_t r1, const float* bias,
                       const Fixed16NarrowActivations& xa, int64_t n_tokens, float* y,
                       int64_t y_stride);

// The scalar reference (T exact, then the same fp32 products).
void Fixed16NarrowRowsScalar(const Weight& w, int64_t r0, int64_t r1, const float* bias,
                             const Fixed16NarrowActivations& xa, int64_t n_tokens, float* y,
                             int64_t y_stride);

}  // namespace ssmq::rt
