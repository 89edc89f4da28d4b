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

#endif  // SSMQ_HAVE_X86_KERNELS

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
#endif

}  // namespace

bool F32PackPanelHalf(const uint16_t* w, bool bf16, int64_t cols, int64_t rows, float* panel) {
#ifdef SSMQ_HAVE_X86_KERNELS
  if (CpuIsa() != KernelIsa::kAvx512 || cols % 16 != 0) return false;
  if (bf16) PackPanelHalfAvx512<true>(w, cols, rows, panel);
  else PackPanelHalfAvx512<false>(w, cols, rows, panel);
  return true;
#else
  (void)w, (void)bf16, (void)cols, (void)rows, (void)panel;
  return false;
#endif
}

void F32PackPanel(const float* w, int64_t cols, int64_t rows, float* panel) {
#ifdef SSMQ_HAVE_X86_KERNELS
  if (CpuIsa() == KernelIsa::kAvx512) return PackPanelAvx512(w, cols, rows, panel);
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
#ifdef SSMQ_HAVE_X86_KERNELS
  // Spans of kSpan columns, outside the token tiles: a span of the panel
  // (16 KiB) stays in L1 for every tile. Each span is summed from zero and
  // then added to y, which also keeps the rounding close to the row-tile
  // kernel's (16 lanes of cols / 16 terms; one chain of 2048 additions
  // rounds several times worse, and prefill and decode are checked against
  // each other).
  constexpr int64_t kSpan = 128;
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
  (void)panel, (void)cols, (void)rows, (void)bias, (void)xp, (void)n_tokens, (void)y;
  (void)y_stride;
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
