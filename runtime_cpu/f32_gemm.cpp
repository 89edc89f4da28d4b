#include "runtime_cpu/f32_gemm.h"

#include <algorithm>

namespace ssmq::rt {

namespace {

// The reference: 2x4 register tiles (two weight rows against four tokens) so
// each loaded weight value feeds four FMAs and each token value two.
SSMQ_HOT void F32RowsReference(const float* w, int64_t cols, int64_t rows, const float* bias,
                               const float* x, int64_t x_stride, int64_t n_tokens, float* y,
                               int64_t y_stride) {
  int64_t r = 0;
  for (; r + 2 <= rows; r += 2) {
    const float* w0 = w + r * cols;
    const float* w1 = w0 + cols;
    const float b0 = bias ? bias[r] : 0.0f;
    const float b1 = bias ? bias[r + 1] : 0.0f;
    int64_t t = 0;
    for (; t + 4 <= n_tokens; t += 4) {
      const float* x0 = x + t * x_stride;
      const float* x1 = x0 + x_stride;
      const float* x2 = x1 + x_stride;
      const float* x3 = x2 + x_stride;
      float a00 = 0, a01 = 0, a02 = 0, a03 = 0, a10 = 0, a11 = 0, a12 = 0, a13 = 0;
#pragma omp simd reduction(+ : a00, a01, a02, a03, a10, a11, a12, a13)
      for (int64_t c = 0; c < cols; ++c) {
        const float u = w0[c], v = w1[c];
        a00 += u * x0[c]; a01 += u * x1[c]; a02 += u * x2[c]; a03 += u * x3[c];
        a10 += v * x0[c]; a11 += v * x1[c]; a12 += v * x2[c]; a13 += v * x3[c];
      }
      float* yt = y + t * y_stride + r;
      yt[0] = a00 + b0; yt[1] = a10 + b1; yt += y_stride;
      yt[0] = a01 + b0; yt[1] = a11 + b1; yt += y_stride;
      yt[0] = a02 + b0; yt[1] = a12 + b1; yt += y_stride;
      yt[0] = a03 + b0; yt[1] = a13 + b1;
    }
    for (; t < n_tokens; ++t) {
      const float* x0 = x + t * x_stride;
      float a0 = 0, a1 = 0;
#pragma omp simd reduction(+ : a0, a1)
      for (int64_t c = 0; c < cols; ++c) {
        a0 += w0[c] * x0[c];
        a1 += w1[c] * x0[c];
      }
      y[t * y_stride + r] = a0 + b0;
      y[t * y_stride + r + 1] = a1 + b1;
    }
  }
  for (; r < rows; ++r) {
    const float* w0 = w + r * cols;
    const float b0 = bias ? bias[r] : 0.0f;
    for (int64_t t = 0; t < n_tokens; ++t) {
      const float* x0 = x + t * x_stride;
      float a0 = 0;
#pragma omp simd reduction(+ : a0)
      for (int64_t c = 0; c < cols; ++c) a0 += w0[c] * x0[c];
      y[t * y_stride + r] = a0 + b0;
    }
  }
}

#ifdef SSMQ_HAVE_X86_KERNELS

// MR weight rows x NT tokens: MR*NT accumulators of 16 floats; per 16
// columns MR + NT loads feed MR*NT FMAs (4x4: 8 loads, 16 FMAs).
template <int MR, int NT>
SSMQ_TARGET_AVX512 inline void TileAvx512(const float* w, int64_t cols, const float* bias,
                                          const float* const* xs, float* y, int64_t y_stride) {
  __m512 acc[MR][NT];
  for (int i = 0; i < MR; ++i)
    for (int k = 0; k < NT; ++k) acc[i][k] = _mm512_setzero_ps();
  int64_t c = 0;
  for (; c + 16 <= cols; c += 16) {
    __m512 xv[NT];
    for (int k = 0; k < NT; ++k) xv[k] = _mm512_loadu_ps(xs[k] + c);
    for (int i = 0; i < MR; ++i) {
      const __m512 wv = _mm512_loadu_ps(w + i * cols + c);
      for (int k = 0; k < NT; ++k) acc[i][k] = _mm512_fmadd_ps(wv, xv[k], acc[i][k]);
    }
  }
  if (c < cols) {
    const __mmask16 m = static_cast<__mmask16>((1u << (cols - c)) - 1);
    __m512 xv[NT];
    for (int k = 0; k < NT; ++k) xv[k] = _mm512_maskz_loadu_ps(m, xs[k] + c);
    for (int i = 0; i < MR; ++i) {
      const __m512 wv = _mm512_maskz_loadu_ps(m, w + i * cols + c);
      for (int k = 0; k < NT; ++k) acc[i][k] = _mm512_fmadd_ps(wv, xv[k], acc[i][k]);
    }
  }
  for (int i = 0; i < MR; ++i) {
    const float b = bias ? bias[i] : 0.0f;
    for (int k = 0; k < NT; ++k) y[k * y_stride + i] = ReduceAdd512(acc[i][k]) + b;
  }
}

template <int MR>
SSMQ_TARGET_AVX512 void RowBlockAvx512(const float* w, int64_t cols, const float* bias,
                                       const float* x, int64_t x_stride, int64_t n_tokens,
                                       float* y, int64_t y_stride) {
  int64_t t = 0;
  for (; t + 4 <= n_tokens; t += 4) {
    const float* xs[4] = {x + t * x_stride, x + (t + 1) * x_stride, x + (t + 2) * x_stride,
                          x + (t + 3) * x_stride};
    TileAvx512<MR, 4>(w, cols, bias, xs, y + t * y_stride, y_stride);
  }
  for (; t < n_tokens; ++t) {
    const float* xs[1] = {x + t * x_stride};
    TileAvx512<MR, 1>(w, cols, bias, xs, y + t * y_stride, y_stride);
  }
}

SSMQ_TARGET_AVX512 void F32RowsAvx512(const float* w, int64_t cols, int64_t rows,
                                      const float* bias, const float* x, int64_t x_stride,
                                      int64_t n_tokens, float* y, int64_t y_stride) {
  int64_t r = 0;
  for (; r + 4 <= rows; r += 4) {
    RowBlockAvx512<4>(w + r * cols, cols, bias ? bias + r : nullptr, x, x_stride, n_tokens, y + r,
                      y_stride);
  }
  for (; r < rows; ++r) {
    RowBlockAvx512<1>(w + r * cols, cols, bias ? bias + r : nullptr, x, x_stride, n_tokens, y + r,
                      y_stride);
  }
}

// One tile of kF32TileTokens packed tokens against columns [c0, c1) of a
// panel: acc[k][h] = rows 16h..16h+15 of token k. The first span stores
// acc + bias, later ones add acc to y (first n_valid tokens, `rows` rows).
template <bool kFirst>
SSMQ_TARGET_AVX512 void PanelSpan(const float* panel, int64_t c0, int64_t c1, int64_t rows,
                                  const float* bias, const float* xt, int64_t n_valid, float* y,
                                  int64_t y_stride) {
  constexpr int NT = kF32TileTokens;
  constexpr int RV = kF32PanelRows / 16;  // 16-row vectors of the panel
  __m512 acc[NT][RV];
  for (int k = 0; k < NT; ++k)
    for (int h = 0; h < RV; ++h) acc[k][h] = _mm512_setzero_ps();
  for (int64_t c = c0; c < c1; ++c) {
    __m512 wv[RV];
    for (int h = 0; h < RV; ++h) wv[h] = _mm512_loadu_ps(panel + c * kF32PanelRows + 16 * h);
    const float* xc = xt + c * NT;
    for (int k = 0; k < NT; ++k) {
      const __m512 xv = _mm512_set1_ps(xc[k]);
      for (int h = 0; h < RV; ++h) acc[k][h] = _mm512_fmadd_ps(wv[h], xv, acc[k][h]);
    }
  }
  __mmask16 m[RV];
  for (int h = 0; h < RV; ++h) {
    const int64_t left = rows - 16 * h;
    m[h] = static_cast<__mmask16>(left >= 16 ? 0xFFFF : left <= 0 ? 0 : (1u << left) - 1);
  }
  for (int k = 0; k < NT && k < n_valid; ++k) {
    float* yk = y + k * y_stride;
    for (int h = 0; h < RV; ++h) {
      if (!m[h]) continue;
      __m512 base;
      if constexpr (kFirst) base = bias ? _mm512_maskz_loadu_ps(m[h], bias + 16 * h) : _mm512_setzero_ps();
      else base = _mm512_maskz_loadu_ps(m[h], yk + 16 * h);
      _mm512_mask_storeu_ps(yk + 16 * h, m[h], _mm512_add_ps(acc[k][h], base));
    }
  }
}

// AVX2 + FMA: the same spans, in sub-tiles that fit 16 ymm registers. One
// sub-tile is 16 rows (2 vectors of 8) x 6 tokens: 12 accumulators, 2 panel
// loads and 6 broadcasts per column for 12 FMAs. A span runs the panel's two
// row halves against the tile's two token halves (4 sub-tiles; halves with
// no valid rows or tokens are skipped); the span of the panel (16 KiB) and
// of the token tile (6 KiB) stay in L1 across them.
template <bool kFirst>
SSMQ_TARGET_AVX2 inline void PanelSubTileAvx2(const float* panel, int64_t c0, int64_t c1,
                                              int64_t rows_left, const float* bias,
                                              const float* xt, int64_t n_valid, float* y,
                                              int64_t y_stride) {
  constexpr int NT = 6;
  __m256 a00 = _mm256_setzero_ps(), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00,
         a30 = a00, a31 = a00, a40 = a00, a41 = a00, a50 = a00, a51 = a00;
  const float* pc = panel + c0 * kF32PanelRows;
  const float* xc = xt + c0 * kF32TileTokens;
  for (int64_t c = c0; c < c1; ++c, pc += kF32PanelRows, xc += kF32TileTokens) {
    const __m256 w0 = _mm256_loadu_ps(pc), w1 = _mm256_loadu_ps(pc + 8);
    __m256 xv = _mm256_broadcast_ss(xc + 0);
    a00 = _mm256_fmadd_ps(w0, xv, a00), a01 = _mm256_fmadd_ps(w1, xv, a01);
    xv = _mm256_broadcast_ss(xc + 1);
    a10 = _mm256_fmadd_ps(w0, xv, a10), a11 = _mm256_fmadd_ps(w1, xv, a11);
    xv = _mm256_broadcast_ss(xc + 2);
    a20 = _mm256_fmadd_ps(w0, xv, a20), a21 = _mm256_fmadd_ps(w1, xv, a21);
    xv = _mm256_broadcast_ss(xc + 3);
    a30 = _mm256_fmadd_ps(w0, xv, a30), a31 = _mm256_fmadd_ps(w1, xv, a31);
    xv = _mm256_broadcast_ss(xc + 4);
    a40 = _mm256_fmadd_ps(w0, xv, a40), a41 = _mm256_fmadd_ps(w1, xv, a41);
    xv = _mm256_broadcast_ss(xc + 5);
    a50 = _mm256_fmadd_ps(w0, xv, a50), a51 = _mm256_fmadd_ps(w1, xv, a51);
  }
  const __m256 acc[NT][2] = {{a00, a01}, {a10, a11}, {a20, a21},
                             {a30, a31}, {a40, a41}, {a50, a51}};
  if (rows_left >= 16) {
    __m256 b0 = _mm256_setzero_ps(), b1 = b0;
    if (kFirst && bias) b0 = _mm256_loadu_ps(bias), b1 = _mm256_loadu_ps(bias + 8);
    for (int k = 0; k < NT && k < n_valid; ++k) {
      float* yk = y + k * y_stride;
      if constexpr (!kFirst) b0 = _mm256_loadu_ps(yk), b1 = _mm256_loadu_ps(yk + 8);
      _mm256_storeu_ps(yk, _mm256_add_ps(acc[k][0], b0));
      _mm256_storeu_ps(yk + 8, _mm256_add_ps(acc[k][1], b1));
    }
    return;
  }
  // Fewer than 16 rows: lanes masked (a lane is on when its sign bit is set).
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i m0 = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(rows_left)), lane);
  const __m256i m1 =
      _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(rows_left - 8)), lane);
  for (int k = 0; k < NT && k < n_valid; ++k) {
    float* yk = y + k * y_stride;
    __m256 b0 = _mm256_setzero_ps(), b1 = b0;
    if constexpr (kFirst) {
      if (bias) b0 = _mm256_maskload_ps(bias, m0), b1 = _mm256_maskload_ps(bias + 8, m1);
    } else {
      b0 = _mm256_maskload_ps(yk, m0), b1 = _mm256_maskload_ps(yk + 8, m1);
    }
    _mm256_maskstore_ps(yk, m0, _mm256_add_ps(acc[k][0], b0));
    _mm256_maskstore_ps(yk + 8, m1, _mm256_add_ps(acc[k][1], b1));
  }
}

template <bool kFirst>
SSMQ_TARGET_AVX2 void PanelSpanAvx2(const float* panel, int64_t c0, int64_t c1, int64_t rows,
                                    const float* bias, const float* xt, int64_t n_valid,
                                    float* y, int64_t y_stride) {
  static_assert(kF32PanelRows == 32 && kF32TileTokens == 12, "sub-tiles are 16 x 6");
  for (int64_t h = 0; h < kF32PanelRows && h < rows; h += 16) {
    for (int64_t k = 0; k < kF32TileTokens && k < n_valid; k += 6) {
      PanelSubTileAvx2<kFirst>(panel + h, c0, c1, rows - h, bias ? bias + h : nullptr, xt + k,
                               n_valid - k, y + k * y_stride + h, y_stride);
    }
  }
}

#endif  // SSMQ_HAVE_X86_KERNELS

// The portable panel product (no x86 kernels, or a CPU without AVX2): the
// same spans and sums as the vector kernels, one (row, token) at a time.
void PanelTokensReference(const float* panel, int64_t cols, int64_t rows, const float* bias,
                          const float* xp, int64_t n_tokens, float* y, int64_t y_stride,
                          int64_t span) {
  for (int64_t c0 = 0; c0 < cols; c0 += span) {
    const int64_t c1 = std::min(cols, c0 + span);
    for (int64_t t = 0; t < n_tokens; ++t) {
      const float* xt = xp + (t / kF32TileTokens) * kF32TileTokens * cols + t % kF32TileTokens;
      float* yt = y + t * y_stride;
      for (int64_t r = 0; r < rows; ++r) {
        float a = 0.0f;
        for (int64_t c = c0; c < c1; ++c) a += panel[c * kF32PanelRows + r] * xt[c * kF32TileTokens];
        yt[r] = a + (c0 == 0 ? (bias ? bias[r] : 0.0f) : yt[r]);
      }
    }
  }
}

}  // namespace

namespace {

void PackPanelColumns(const float* w, int64_t cols, int64_t rows, int64_t c0, int64_t c1,
                      float* panel) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* src = w + r * cols;
    for (int64_t c = c0; c < c1; ++c) panel[c * kF32PanelRows + r] = src[c];
  }
  for (int64_t c = c0; c < c1; ++c)
    for (int64_t r = rows; r < kF32PanelRows; ++r) panel[c * kF32PanelRows + r] = 0.0f;
}

#ifdef SSMQ_HAVE_X86_KERNELS
// in[i] = row i (16 floats) -> out[j] = column j, in three shuffle stages:
// pairs within 128-bit lanes, quads within lanes, then lanes across vectors.
SSMQ_TARGET_AVX512 inline void Transpose16x16(const __m512 (&in)[16], __m512 (&out)[16]) {
  __m512 t[16], u[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(in[2 * i], in[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(in[2 * i], in[2 * i + 1]);
  }
  for (int q = 0; q < 4; ++q) {  // rows 4q..4q+3 at column 4L + k of lane L
    const __m512 lo0 = t[4 * q], hi0 = t[4 * q + 1], lo1 = t[4 * q + 2], hi1 = t[4 * q + 3];
    u[4 * q + 0] = _mm512_shuffle_ps(lo0, lo1, 0x44);
    u[4 * q + 1] = _mm512_shuffle_ps(lo0, lo1, 0xEE);
    u[4 * q + 2] = _mm512_shuffle_ps(hi0, hi1, 0x44);
    u[4 * q + 3] = _mm512_shuffle_ps(hi0, hi1, 0xEE);
  }
  for (int k = 0; k < 4; ++k) {
    const __m512 v02 = _mm512_shuffle_f32x4(u[k], u[4 + k], 0x88);   // lanes 0, 2
    const __m512 v13 = _mm512_shuffle_f32x4(u[k], u[4 + k], 0xDD);   // lanes 1, 3
    const __m512 w02 = _mm512_shuffle_f32x4(u[8 + k], u[12 + k], 0x88);
    const __m512 w13 = _mm512_shuffle_f32x4(u[8 + k], u[12 + k], 0xDD);
    out[0 + k] = _mm512_shuffle_f32x4(v02, w02, 0x88);
    out[8 + k] = _mm512_shuffle_f32x4(v02, w02, 0xDD);
    out[4 + k] = _mm512_shuffle_f32x4(v13, w13, 0x88);
    out[12 + k] = _mm512_shuffle_f32x4(v13, w13, 0xDD);
  }
}

SSMQ_TARGET_AVX512 void PackPanelAvx512(const float* w, int64_t cols, int64_t rows,
                                        float* panel) {
  int64_t c0 = 0;
  for (; c0 + 16 <= cols; c0 += 16) {
    for (int64_t h = 0; h < kF32PanelRows; h += 16) {
      __m512 in[16], out[16];
      for (int i = 0; i < 16; ++i)
        in[i] = h + i < rows ? _mm512_loadu_ps(w + (h + i) * cols + c0) : _mm512_setzero_ps();
      Transpose16x16(in, out);
      for (int j = 0; j < 16; ++j) _mm512_storeu_ps(panel + (c0 + j) * kF32PanelRows + h, out[j]);
    }
  }
  if (c0 < cols) PackPanelColumns(w, cols, rows, c0, cols, panel);
}

// The same from 16-bit rows: each 16-column piece converted in registers
// (f16: vcvtph2ps; bf16: the bits shifted up) on its way into the transpose.
template <bool kBf16>
SSMQ_TARGET_AVX512 void PackPanelHalfAvx512(const uint16_t* w, int64_t cols, int64_t rows,
                                            float* panel) {
  for (int64_t c0 = 0; c0 < cols; c0 += 16) {
    for (int64_t h = 0; h < kF32PanelRows; h += 16) {
      __m512 in[16], out[16];
      for (int i = 0; i < 16; ++i) {
        if (h + i >= rows) {
          in[i] = _mm512_setzero_ps();
          continue;
        }
        const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + (h + i) * cols + c0));
        in[i] = kBf16 ? _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(v), 16))
                      : _mm512_cvtph_ps(v);
      }
      Transpose16x16(in, out);
      for (int j = 0; j < 16; ++j) _mm512_storeu_ps(panel + (c0 + j) * kF32PanelRows + h, out[j]);
    }
  }
}
// AVX2: 8x8 blocks. in[i] = row i (8 floats) -> out[j] = column j.
SSMQ_TARGET_AVX2 inline void Transpose8x8(const __m256 (&in)[8], __m256 (&out)[8]) {
  __m256 t[8], u[8];
  for (int i = 0; i < 4; ++i) {
    t[2 * i] = _mm256_unpacklo_ps(in[2 * i], in[2 * i + 1]);
    t[2 * i + 1] = _mm256_unpackhi_ps(in[2 * i], in[2 * i + 1]);
  }
  for (int q = 0; q < 2; ++q) {  // rows 4q..4q+3 at column 4L + k of lane L
    const __m256 lo0 = t[4 * q], hi0 = t[4 * q + 1], lo1 = t[4 * q + 2], hi1 = t[4 * q + 3];
    u[4 * q + 0] = _mm256_shuffle_ps(lo0, lo1, 0x44);
    u[4 * q + 1] = _mm256_shuffle_ps(lo0, lo1, 0xEE);
    u[4 * q + 2] = _mm256_shuffle_ps(hi0, hi1, 0x44);
    u[4 * q + 3] = _mm256_shuffle_ps(hi0, hi1, 0xEE);
  }
  for (int k = 0; k < 4; ++k) {
    out[k] = _mm256_permute2f128_ps(u[k], u[4 + k], 0x20);
    out[4 + k] = _mm256_permute2f128_ps(u[k], u[4 + k], 0x31);
  }
}

// Rows [h, h+8) x columns [c0, c0+8) of the panel from 8 rows in registers.
SSMQ_TARGET_AVX2 inline void StoreBlockAvx2(const __m256 (&in)[8], int64_t c0, int64_t h,
                                            float* panel) {
  __m256 out[8];
  Transpose8x8(in, out);
  for (int j = 0; j < 8; ++j) _mm256_storeu_ps(panel + (c0 + j) * kF32PanelRows + h, out[j]);
}

SSMQ_TARGET_AVX2 void PackPanelAvx2(const float* w, int64_t cols, int64_t rows, float* panel) {
  int64_t c0 = 0;
  for (; c0 + 8 <= cols; c0 += 8) {
    for (int64_t h = 0; h < kF32PanelRows; h += 8) {
      __m256 in[8];
      for (int i = 0; i < 8; ++i)
        in[i] = h + i < rows ? _mm256_loadu_ps(w + (h + i) * cols + c0) : _mm256_setzero_ps();
      StoreBlockAvx2(in, c0, h, panel);
    }
  }
  if (c0 < cols) PackPanelColumns(w, cols, rows, c0, cols, panel);
}

template <bool kBf16>
SSMQ_TARGET_AVX2 void PackPanelHalfAvx2(const uint16_t* w, int64_t cols, int64_t rows,
                                        float* panel) {
  for (int64_t c0 = 0; c0 < cols; c0 += 8) {
    for (int64_t h = 0; h < kF32PanelRows; h += 8) {
      __m256 in[8];
      for (int i = 0; i < 8; ++i) {
        if (h + i >= rows) {
          in[i] = _mm256_setzero_ps();
          continue;
        }
        const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w + (h + i) * cols + c0));
        in[i] = kBf16 ? _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(v), 16))
                      : _mm256_cvtph_ps(v);
      }
      StoreBlockAvx2(in, c0, h, panel);
    }
  }
}
#endif

}  // namespace

bool F32PackPanelHalf(const uint16_t* w, bool bf16, int64_t cols, int64_t rows, float* panel) {
#ifdef SSMQ_HAVE_X86_KERNELS
  if (cols % 16 != 0) return false;
  switch (CpuIsa()) {
    case KernelIsa::kAvx512:
      if (bf16) PackPanelHalfAvx512<true>(w, cols, rows, panel);
      else PackPanelHalfAvx512<false>(w, cols, rows, panel);
      return true;
    case KernelIsa::kAvx2:
      if (bf16) PackPanelHalfAvx2<true>(w, cols, rows, panel);
      else PackPanelHalfAvx2<false>(w, cols, rows, panel);
      return true;
    case KernelIsa::kScalar: break;
  }
  return false;
#else
  (void)w, (void)bf16, (void)cols, (void)rows, (void)panel;
  return false;
#endif
}

void F32PackPanel(const float* w, int64_t cols, int64_t rows, float* panel) {
#ifdef SSMQ_HAVE_X86_KERNELS
  if (CpuIsa() == KernelIsa::kAvx512) return PackPanelAvx512(w, cols, rows, panel);
  if (CpuIsa() == KernelIsa::kAvx2) return PackPanelAvx2(w, cols, rows, panel);
#endif
  // 16 columns at a time, each row's 16 floats (one cache line) read in one
  // go: going down a column instead reads 32 rows that are often a multiple
  // of 4 KiB apart, which share one L1 set and evict each other.
  for (int64_t c0 = 0; c0 < cols; c0 += 16)
    PackPanelColumns(w, cols, rows, c0, std::min(cols, c0 + 16), panel);
}

void F32PackTokens(const float* x, int64_t x_stride, int64_t n_tokens, int64_t cols, float* xp) {
  constexpr int64_t NT = kF32TileTokens;
  for (int64_t t0 = 0; t0 < n_tokens; t0 += NT) {
    float* tile = xp + t0 * cols;  // (t0 / NT) tiles of cols * NT floats before it
    for (int64_t k = 0; k < NT; ++k) {
      if (t0 + k < n_tokens) {
        const float* src = x + (t0 + k) * x_stride;
        for (int64_t c = 0; c < cols; ++c) tile[c * NT + k] = src[c];
      } else {
        for (int64_t c = 0; c < cols; ++c) tile[c * NT + k] = 0.0f;
      }
    }
  }
}

void F32PanelTokens(const float* panel, int64_t cols, int64_t rows, const float* bias,
                    const float* xp, int64_t n_tokens, float* y, int64_t y_stride) {
  constexpr int64_t kSpan = 128;
#ifdef SSMQ_HAVE_X86_KERNELS
  const KernelIsa isa = CpuIsa();
  if (isa == KernelIsa::kAvx2) {
    for (int64_t c0 = 0; c0 < cols; c0 += kSpan) {
      const int64_t c1 = std::min(cols, c0 + kSpan);
      for (int64_t t0 = 0; t0 < n_tokens; t0 += kF32TileTokens) {
        const float* xt = xp + t0 * cols;
        float* yt = y + t0 * y_stride;
        if (c0 == 0) PanelSpanAvx2<true>(panel, c0, c1, rows, bias, xt, n_tokens - t0, yt, y_stride);
        else PanelSpanAvx2<false>(panel, c0, c1, rows, bias, xt, n_tokens - t0, yt, y_stride);
      }
    }
    return;
  }
  if (isa != KernelIsa::kAvx512)
    return PanelTokensReference(panel, cols, rows, bias, xp, n_tokens, y, y_stride, kSpan);
  // Spans of kSpan columns, outside the token tiles: a span of the panel
  // (16 KiB) stays in L1 for every tile. Each span is summed from zero and
  // then added to y, which also keeps the rounding close to the row-tile
  // kernel's (16 lanes of cols / 16 terms; one chain of 2048 additions
  // rounds several times worse, and prefill and decode are checked against
  // each other).
  for (int64_t c0 = 0; c0 < cols; c0 += kSpan) {
    const int64_t c1 = std::min(cols, c0 + kSpan);
    for (int64_t t0 = 0; t0 < n_tokens; t0 += kF32TileTokens) {
      const float* xt = xp + t0 * cols;
      float* yt = y + t0 * y_stride;
      if (c0 == 0) PanelSpan<true>(panel, c0, c1, rows, bias, xt, n_tokens - t0, yt, y_stride);
      else PanelSpan<false>(panel, c0, c1, rows, bias, xt, n_tokens - t0, yt, y_stride);
    }
  }
#else
  PanelTokensReference(panel, cols, rows, bias, xp, n_tokens, y, y_stride, kSpan);
#endif
}

F32RowsKernel F32Kernel(KernelIsa isa) {
#ifdef SSMQ_HAVE_X86_KERNELS
  if (isa == KernelIsa::kAvx512) return F32RowsAvx512;
#endif
  (void)isa;
  return F32RowsReference;
}

}  // namespace ssmq::rt
