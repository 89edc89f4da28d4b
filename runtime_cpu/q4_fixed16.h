// Q4 weights × float activations at decode on AVX-512 VNNI, with the
// activations as 16-bit fixed point (w4a16's "16-bit activations").
//
// Why: the float form of this product (a 16-entry table per group, vpermps
// per 16 weights, then an FMA) costs ~6 vector uops per 16 weight bytes, so
// one core cannot unpack int4 as fast as it can read it. Here each token's x
// is rounded once per call to a 16-bit integer per column, scaled per
// 128-column block, and split into two signed bytes; the weight nibbles stay
// unsigned bytes, and vpdpbusd multiplies 64 of them at once, exactly:
//
//   scale_b = max_{c in b} |x[c]| / kQ4FixedMax            (block b: 128 columns)
//   v[c]    = RNE(x[c] / scale_b) clamped to ±kQ4FixedMax  (|v| <= 32639)
//   hi[c]   = floor((v[c] + 128) / 256),  lo[c] = v[c] - 256 · hi[c]   (both in [-128, 127])
//   T[r][b] = Σ_{c in b} (k[r][c] - z[r][g(b)]) · v[c]     (int32, exact: 256·Σk·hi + Σk·lo - z·Σv)
//           where k is the stored nibble and z the group's zero point (8 when symmetric)
//   y[r]    = bias[r] + Σ_b s[r][g(b)] · scale_b · T[r][b]  (fp32)
//
// The rounding error of v is at most scale_b / 2, i.e. 2^-16 of the block's
// largest |x|: at least as fine as fp16 for every value above 1/32 of its
// block's maximum. Prefill keeps float activations (f32_gemm.h).
//
// Applies when cols and the group size are multiples of 128 (every matmul of
// the published shapes except dt_proj, whose groups are dt_rank wide); other
// shapes keep the float kernel.
#pragma once

#include <cstdint>

#include "runtime_cpu/simd_dispatch.h"
#include "runtime_cpu/weight.h"

namespace ssmq::rt {

inline constexpr int64_t kQ4FixedBlock = 128;     // columns per activation scale
inline constexpr int32_t kQ4FixedMax = 127 * 256 + 127;  // hi and lo bytes both fit int8

// One call's activations, n_tokens rows of cols columns.
struct Q4FixedActivations {
  // [n_tokens][cols / 128][4][64] bytes: per block hi of the even columns,
  // hi of the odd columns, lo even, lo odd (column 2p + j at byte p of part j),
  // the order in which a 64-byte load of packed codes unpacks.
  const int8_t* bytes = nullptr;
  const float* scales = nullptr;  // [n_tokens][cols / 128]: scale_b (NaN when the block has NaN/Inf)
  // [n_tokens][cols / 128][16]: lane j holds Σ v[c] over columns 8j..8j+7 of
  // the block, the columns vpdpbusd adds into lane j; the zero point enters
  // as -z times these, so every lane of T stays below 2^24 (exact in fp32).
  const int32_t* lane_sums = nullptr;
};

bool Q4FixedApplies(const Weight& w, KernelIsa isa);

// Quantizes x into per-thread buffers reused by later calls (no allocation
// once grown). cols must be a multiple of 128. The AVX-512 and scalar forms
// give the same bytes.
Q4FixedActivations PrepareQ4Fixed(const float* x, int64_t x_stride, int64_t n_tokens,
                                  int64_t cols, KernelIsa isa);

// v[c] of token t, decoded from the prepared bytes (tests).
int32_t Q4FixedValue(const Q4FixedActivations& xa, int64_t cols, int64_t t, int64_t c);

// Rows [r0, r1) of y for tokens [0, n_tokens): the AVX-512 VNNI kernel.
void Q4FixedRows(const Weight& w, int64_t r0, int64_t r1, const float* bias,
                 const Q4FixedActivations& xa, int64_t n_tokens, float* y, int64_t y_stride);

// The scalar reference of the same formula (T exact in int64, block terms
// summed in order in fp32).
void Q4FixedRowsScalar(const Weight& w, int64_t r0, int64_t r1, const float* bias,
                       const Q4FixedActivations& xa, int64_t n_tokens, float* y,
                       int64_t y_stride);

}  // namespace ssmq::rt
