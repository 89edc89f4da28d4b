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

#endif  // SSMQ_HAVE_X86_KERNELS

}  // namespace

F32RowsKernel F32Kernel(KernelIsa isa) {
#ifdef SSMQ_HAVE_X86_KERNELS
  if (isa == KernelIsa::kAvx512) return F32RowsAvx512;
#endif
  (void)isa;
  return F32RowsReference;
}

}  // namespace ssmq::rt
