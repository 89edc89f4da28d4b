// The int8 SSM-state cache (site ssm_state). Prefill (and a Step without
// the AVX-512 step kernels: Mamba2StepHeadInt8 below, Mamba1StepChannelsFused
// in mamba1_step.cpp, which convert in registers) dequantizes and
// requantizes a layer's whole state, so both loops are plain element-wise
// code the compiler vectorizes (SSMQ_HOT: AVX2 clone where available):
//   code = clamp(RNE(h · (1/s)), ±127)   (the reciprocal is precomputed; the
//   state is a runtime cache, not file data, so multiplication instead of
//   division is our choice) and h = code · s.
// Rounding: after the clamp |v| <= 127, where (v + 1.5·2^23) − 1.5·2^23 is
// exactly round-half-even in fp32. NaN becomes −127 via the clamp order.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "format/quant.h"
#include "runtime_cpu/activations.h"
#include "runtime_cpu/kernels.h"
#include "runtime_cpu/runtime_impl.h"
#include "runtime_cpu/simd_dispatch.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define SSMQ_STATE_AVX2 1
#endif

namespace ssmq::rt {

namespace {

SSMQ_HOT void DequantizeRows(const int8_t* codes, const float* scales, int64_t rows, int64_t N,
                             float* out) {
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t k = 0; k < N; ++k) out[r * N + k] = static_cast<float>(codes[r * N + k]) * scales[k];
  }
}

// The scalar reference (GCC does not if-convert the float clamps, so it stays scalar).
void QuantizeRowsScalar(const float* h, const float* inv, int64_t rows, int64_t N,
                        int8_t* codes) {
  constexpr float kMagic = 12582912.0f;  // 1.5 * 2^23
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t k = 0; k < N; ++k) {
      float v = h[r * N + k] * inv[k];
      v = v >= -127.0f ? v : -127.0f;  // also NaN -> -127
      v = v <= 127.0f ? v : 127.0f;
      v = (v + kMagic) - kMagic;
      codes[r * N + k] = static_cast<int8_t>(static_cast<int32_t>(v));
    }
  }
}

#ifdef SSMQ_STATE_AVX2
// Same result as the scalar code: maxps returns its second operand for a NaN
// first operand (-> -127), cvtps2dq rounds half to even (default MXCSR).
__attribute__((target("avx2"))) void QuantizeRowsAvx2(const float* h, const float* inv,
                                                      int64_t rows, int64_t N, int8_t* codes) {
  const __m256 lo = _mm256_set1_ps(-127.0f), hi = _mm256_set1_ps(127.0f);
  for (int64_t r = 0; r < rows; ++r) {
    const float* hr = h + r * N;
    int8_t* cr = codes + r * N;
    int64_t k = 0;
    for (; k + 8 <= N; k += 8) {
      __m256 v = _mm256_mul_ps(_mm256_loadu_ps(hr + k), _mm256_loadu_ps(inv + k));
      v = _mm256_min_ps(_mm256_max_ps(v, lo), hi);
      const __m256i i32 = _mm256_cvtps_epi32(v);
      const __m256i i16 = _mm256_permute4x64_epi64(_mm256_packs_epi32(i32, i32), 0x08);
      const __m128i i8 = _mm_packs_epi16(_mm256_castsi256_si128(i16), _mm256_castsi256_si128(i16));
      _mm_storel_epi64(reinterpret_cast<__m128i*>(cr + k), i8);
    }
    if (k < N) QuantizeRowsScalar(hr + k, inv + k, 1, N - k, cr + k);
  }
}
#endif

void QuantizeRows(const float* h, const float* inv, int64_t rows, int64_t N, int8_t* codes) {
#ifdef SSMQ_STATE_AVX2
  static const bool avx2 = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") != 0;
  }();
  if (avx2) return QuantizeRowsAvx2(h, inv, rows, N, codes);
#endif
  QuantizeRowsScalar(h, inv, rows, N, codes);
}

}  // namespace

// Rows [row0, row0 + n_rows) in runs that share one scale row.
template <typename Fn>
void ForEachScaleRun(const StateQuant& sq, int64_t row0, int64_t n_rows, Fn fn) {
  const int64_t N = sq.d_state, R = static_cast<int64_t>(sq.scales.size()) / N;
  const int64_t rows_per_seq = R * sq.rows_per_group;
  for (int64_t r = row0; r < row0 + n_rows;) {
    const int64_t in_seq = r % rows_per_seq;
    const int64_t run = std::min(row0 + n_rows - r, sq.rows_per_group - in_seq % sq.rows_per_group);
    fn(r, run, (in_seq / sq.rows_per_group) * N);
    r += run;
  }
}

void DequantizeStateRows(const StateQuant& sq, const int8_t* codes, int64_t row0, int64_t n_rows,
                         float* h) {
  const int64_t N = sq.d_state;
  ForEachScaleRun(sq, row0, n_rows, [&](int64_t r, int64_t run, int64_t s) {
    DequantizeRows(codes + r * N, sq.scales.data() + s, run, N, h + r * N);
  });
}

void QuantizeStateRows(const StateQuant& sq, const float* h, int64_t row0, int64_t n_rows,
                       int8_t* codes) {
  const int64_t N = sq.d_state;
  ForEachScaleRun(sq, row0, n_rows, [&](int64_t r, int64_t run, int64_t s) {
    QuantizeRows(h + r * N, sq.inv_scales.data() + s, run, N, codes + r * N);
  });
}

#ifdef SSMQ_STATE_AVX2
// AVX-512 (and below, AVX2) form of Mamba2StepHeadInt8 for d_state a multiple of 16 (at most
// kMaxFoldedState), in the code domain: with s = code·scale·decay + dt·x·B
// (the reference's new state) and v = s / scale (its new code before
// rounding),
//   v = code·decay + x · (dt·B/scale)      y = Σ_n v · (scale·C) + D·x
// where dt·B/scale and scale·C are folded once per head and scale run. Per
// 16 states that is 6 float operations where dequantize, step and
// requantize took 9 (the step was compute-bound: ~0.85 cycles per state
// from L1 and from DRAM alike, 10% of a mamba2-370m w8a8 decode). The
// clamp: min(127, v) in float (NaN stays NaN), cvtps2dq (NaN and -inf give
// INT_MIN), saturating pack to int8, then max(-127) on the bytes: the same
// codes as the reference's clamp order (NaN -> -127). The values differ
// from the reference only by float rounding (codes by at most one near a
// half; tested against Mamba2StepHeadInt8Reference).
constexpr int64_t kMaxFoldedState = 256;

// Rows [0, n_rows) at `codes` (row stride N) with the folded vectors. A
// function of plain values rather than the body of a capturing lambda: the
// int8 stores may alias anything, so through a closure every captured value
// (and an indexed accumulator array) was reloaded from memory each
// iteration, and the accumulators went through the stack (~14 cycles per 16
// states, against ~4 here).
SSMQ_TARGET_AVX512 void StepRowsCodeDomain(int8_t* codes, int64_t n_rows, int64_t N,
                                           const float* x, const float* b_code,
                                           const float* c_scale, float decay, float D,
                                           float* y) {
  const __m512 hi = _mm512_set1_ps(127.0f), decay_v = _mm512_set1_ps(decay);
  const __m128i lo8 = _mm_set1_epi8(-127);
  for (int64_t p = 0; p < n_rows; ++p) {
    int8_t* cp = codes + p * N;
    for (int64_t n = 0; n < N; n += 64) PrefetchRead(cp + kStatePrefetchBytes + n);
    const __m512 xp = _mm512_set1_ps(x[p]);
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    for (int64_t n = 0; n < N; n += 32) {
      for (int half = 0; half < 2 && n + 16 * half < N; ++half) {
        const int64_t k = n + 16 * half;
        const __m512 c = _mm512_cvtepi32_ps(
            _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(cp + k))));
        const __m512 v =
            _mm512_fmadd_ps(c, decay_v, _mm512_mul_ps(xp, _mm512_load_ps(b_code + k)));
        if (half == 0) {
          acc0 = _mm512_fmadd_ps(v, _mm512_load_ps(c_scale + k), acc0);
        } else {
          acc1 = _mm512_fmadd_ps(v, _mm512_load_ps(c_scale + k), acc1);
        }
        const __m128i q = _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(_mm512_min_ps(hi, v)));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(cp + k), _mm_max_epi8(q, lo8));
      }
    }
    y[p] = ReduceAdd512(_mm512_add_ps(acc0, acc1)) + D * x[p];
  }
}

SSMQ_TARGET_AVX512 void StepHeadInt8Avx512(const StateQuant& sq, int64_t row0, int64_t P,
                                           const float* x, const float* B, const float* C,
                                           float dt, float decay, float D, int8_t* codes,
                                           float* y) {
  const int64_t N = sq.d_state;
  alignas(64) float b_code[kMaxFoldedState], c_scale[kMaxFoldedState];
  ForEachScaleRun(sq, row0, P, [&](int64_t r, int64_t run, int64_t srow) SSMQ_TARGET_AVX512 {
    const float* scale = sq.scales.data() + srow;
    const float* inv = sq.inv_scales.data() + srow;
    const __m512 dt_v = _mm512_set1_ps(dt);
    for (int64_t n = 0; n < N; n += 16) {
      _mm512_store_ps(b_code + n, _mm512_mul_ps(_mm512_mul_ps(dt_v, _mm512_loadu_ps(B + n)),
                                                _mm512_loadu_ps(inv + n)));
      _mm512_store_ps(c_scale + n, _mm512_mul_ps(_mm512_loadu_ps(scale + n), _mm512_loadu_ps(C + n)));
    }
    StepRowsCodeDomain(codes + r * N, run, N, x + (r - row0), b_code, c_scale, decay, D,
                       y + (r - row0));
  });
}

// StepRowsCodeDomain on AVX2: 8 states per vector, two accumulators; the
// clamp as there (min(127, v) in float, cvtps2dq, saturating packs to int8,
// then max(-127) on the bytes).
SSMQ_TARGET_AVX2 void StepRowsCodeDomainAvx2(int8_t* codes, int64_t n_rows, int64_t N,
                                             const float* x, const float* b_code,
                                             const float* c_scale, float decay, float D,
                                             float* y) {
  const __m256 hi = _mm256_set1_ps(127.0f), decay_v = _mm256_set1_ps(decay);
  const __m128i lo8 = _mm_set1_epi8(-127);
  for (int64_t p = 0; p < n_rows; ++p) {
    int8_t* cp = codes + p * N;
    for (int64_t n = 0; n < N; n += 64) PrefetchRead(cp + kStatePrefetchBytes + n);
    const __m256 xp = _mm256_set1_ps(x[p]);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    for (int64_t k = 0; k < N; k += 16) {  // N % 16 == 0
      const __m128i c16 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(cp + k));
      const __m256 c0 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(c16));
      const __m256 c1 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(c16, 8)));
      const __m256 v0 = _mm256_fmadd_ps(c0, decay_v, _mm256_mul_ps(xp, _mm256_load_ps(b_code + k)));
      const __m256 v1 =
          _mm256_fmadd_ps(c1, decay_v, _mm256_mul_ps(xp, _mm256_load_ps(b_code + k + 8)));
      acc0 = _mm256_fmadd_ps(v0, _mm256_load_ps(c_scale + k), acc0);
      acc1 = _mm256_fmadd_ps(v1, _mm256_load_ps(c_scale + k + 8), acc1);
      const __m256i q0 = _mm256_cvtps_epi32(_mm256_min_ps(hi, v0));
      const __m256i q1 = _mm256_cvtps_epi32(_mm256_min_ps(hi, v1));
      const __m128i w0 = _mm_packs_epi32(_mm256_castsi256_si128(q0), _mm256_extracti128_si256(q0, 1));
      const __m128i w1 = _mm_packs_epi32(_mm256_castsi256_si128(q1), _mm256_extracti128_si256(q1, 1));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(cp + k), _mm_max_epi8(_mm_packs_epi16(w0, w1), lo8));
    }
    const __m256 acc = _mm256_add_ps(acc0, acc1);
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    y[p] = _mm_cvtss_f32(h) + D * x[p];
  }
}

SSMQ_TARGET_AVX2 void StepHeadInt8Avx2(const StateQuant& sq, int64_t row0, int64_t P,
                                       const float* x, const float* B, const float* C, float dt,
                                       float decay, float D, int8_t* codes, float* y) {
  const int64_t N = sq.d_state;
  alignas(64) float b_code[kMaxFoldedState], c_scale[kMaxFoldedState];
  ForEachScaleRun(sq, row0, P, [&](int64_t r, int64_t run, int64_t srow) SSMQ_TARGET_AVX2 {
    const float* scale = sq.scales.data() + srow;
    const float* inv = sq.inv_scales.data() + srow;
    const __m256 dt_v = _mm256_set1_ps(dt);
    for (int64_t n = 0; n < N; n += 8) {
      _mm256_store_ps(b_code + n, _mm256_mul_ps(_mm256_mul_ps(dt_v, _mm256_loadu_ps(B + n)),
                                                _mm256_loadu_ps(inv + n)));
      _mm256_store_ps(c_scale + n, _mm256_mul_ps(_mm256_loadu_ps(scale + n), _mm256_loadu_ps(C + n)));
    }
    StepRowsCodeDomainAvx2(codes + r * N, run, N, x + (r - row0), b_code, c_scale, decay, D,
                           y + (r - row0));
  });
}
#endif

void Mamba2StepHeadInt8Reference(const StateQuant& sq, int64_t row0, int64_t P, const float* x,
                                 const float* B, const float* C, float dt, float A, float D,
                                 int8_t* codes, float* y) {
  const int64_t N = sq.d_state;
  // Through a float copy of the head's rows (a thread's scratch, row r of
  // the layer at h + (r - row0) * N).
  thread_local std::vector<float> rows;
  Grow(rows, static_cast<size_t>(P * N));
  float* h = rows.data();
  ForEachScaleRun(sq, row0, P, [&](int64_t r, int64_t run, int64_t s) {
    DequantizeRows(codes + r * N, sq.scales.data() + s, run, N, h + (r - row0) * N);
  });
  Mamba2StepHead(P, N, x, B, C, dt, A, D, h, y);
  ForEachScaleRun(sq, row0, P, [&](int64_t r, int64_t run, int64_t s) {
    QuantizeRows(h + (r - row0) * N, sq.inv_scales.data() + s, run, N, codes + r * N);
  });
}

void Mamba2StepHeadInt8(const StateQuant& sq, int64_t row0, int64_t P, const float* x,
                        const float* B, const float* C, float dt, float A, float D,
                        int8_t* codes, float* y) {
  const int64_t N = sq.d_state;
#ifdef SSMQ_STATE_AVX2
  if (N % 16 == 0 && N <= kMaxFoldedState && CpuIsa() == KernelIsa::kAvx512) {
    return StepHeadInt8Avx512(sq, row0, P, x, B, C, dt, FastExp(dt * A), D, codes, y);
  }
  if (N % 16 == 0 && N <= kMaxFoldedState && CpuIsa() == KernelIsa::kAvx2) {
    return StepHeadInt8Avx2(sq, row0, P, x, B, C, dt, FastExp(dt * A), D, codes, y);
  }
#endif
  Mamba2StepHeadInt8Reference(sq, row0, P, x, B, C, dt, A, D, codes, y);
}

// ---------------------------------------------------------------- f16 state

#ifdef SSMQ_STATE_AVX2
SSMQ_TARGET_AVX512 void HalfToF32Avx512(const uint16_t* src, int64_t n, float* dst) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(_mm256_loadu_si256(
                                  reinterpret_cast<const __m256i*>(src + i))));
  for (; i < n; ++i) dst[i] = F16ToF32(src[i]);
}

SSMQ_TARGET_AVX512 void F32ToHalfAvx512(const float* src, int64_t n, uint16_t* dst) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i),
                        _mm512_cvtps_ph(_mm512_loadu_ps(src + i),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  for (; i < n; ++i) dst[i] = F32ToF16(src[i]);
}

// Mamba2StepHeadHalf for d_state a multiple of 16 (vcvtph2ps / vcvtps2ph
// with round to nearest even, as F16ToF32 / F32ToF16).
SSMQ_TARGET_AVX512 void StepHeadHalfAvx512(int64_t row0, int64_t P, int64_t N, const float* x,
                                           const float* B, const float* C, float dt,
                                           float decay, float D, uint16_t* half, float* y) {
  const __m512 decay_v = _mm512_set1_ps(decay);
  for (int64_t p = 0; p < P; ++p) {
    uint16_t* hp = half + (row0 + p) * N;
    for (int64_t n = 0; n < N; n += 32) PrefetchRead(hp + kStatePrefetchBytes / 2 + n);
    const __m512 coef = _mm512_set1_ps(dt * x[p]);
    __m512 acc = _mm512_setzero_ps();
    for (int64_t n = 0; n < N; n += 16) {
      const __m512 h =
          _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(hp + n)));
      const __m512 s = _mm512_fmadd_ps(h, decay_v, _mm512_mul_ps(coef, _mm512_loadu_ps(B + n)));
      acc = _mm512_fmadd_ps(s, _mm512_loadu_ps(C + n), acc);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(hp + n),
                          _mm512_cvtps_ph(s, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    }
    y[p] = ReduceAdd512(acc) + D * x[p];
  }
}

// The same three on AVX2 + F16C, 8 values per vector (f16 state on CPUs
// without AVX-512: through the scalar conversions a mamba2-370m decode with
// --f16-state ran at 9-13 tok/s, a quarter of its f32-state speed).
SSMQ_TARGET_AVX2 void HalfToF32Avx2(const uint16_t* src, int64_t n, float* dst) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(dst + i,
                     _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i))));
  for (; i < n; ++i) dst[i] = F16ToF32(src[i]);
}

SSMQ_TARGET_AVX2 void F32ToHalfAvx2(const float* src, int64_t n, uint16_t* dst) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i),
                     _mm256_cvtps_ph(_mm256_loadu_ps(src + i),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  for (; i < n; ++i) dst[i] = F32ToF16(src[i]);
}

SSMQ_TARGET_AVX2 void StepHeadHalfAvx2(int64_t row0, int64_t P, int64_t N, const float* x,
                                       const float* B, const float* C, float dt, float decay,
                                       float D, uint16_t* half, float* y) {
  const __m256 decay_v = _mm256_set1_ps(decay);
  for (int64_t p = 0; p < P; ++p) {
    uint16_t* hp = half + (row0 + p) * N;
    for (int64_t n = 0; n < N; n += 32) PrefetchRead(hp + kStatePrefetchBytes / 2 + n);
    const __m256 coef = _mm256_set1_ps(dt * x[p]);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    for (int64_t n = 0; n < N; n += 16) {  // N % 16 == 0
      const __m256 h0 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(hp + n)));
      const __m256 h1 =
          _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(hp + n + 8)));
      const __m256 s0 = _mm256_fmadd_ps(h0, decay_v, _mm256_mul_ps(coef, _mm256_loadu_ps(B + n)));
      const __m256 s1 =
          _mm256_fmadd_ps(h1, decay_v, _mm256_mul_ps(coef, _mm256_loadu_ps(B + n + 8)));
      acc0 = _mm256_fmadd_ps(s0, _mm256_loadu_ps(C + n), acc0);
      acc1 = _mm256_fmadd_ps(s1, _mm256_loadu_ps(C + n + 8), acc1);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(hp + n),
                       _mm256_cvtps_ph(s0, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(hp + n + 8),
                       _mm256_cvtps_ph(s1, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    }
    const __m256 acc = _mm256_add_ps(acc0, acc1);
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    y[p] = _mm_cvtss_f32(h) + D * x[p];
  }
}
#endif

void HalfStateRowsToF32(const uint16_t* half, int64_t row0, int64_t n_rows, int64_t d_state,
                        float* h) {
  const uint16_t* src = half + row0 * d_state;
  float* dst = h + row0 * d_state;
  const int64_t n = n_rows * d_state;
#ifdef SSMQ_STATE_AVX2
  if (CpuIsa() == KernelIsa::kAvx512) return HalfToF32Avx512(src, n, dst);
  if (CpuIsa() == KernelIsa::kAvx2) return HalfToF32Avx2(src, n, dst);
#endif
  for (int64_t i = 0; i < n; ++i) dst[i] = F16ToF32(src[i]);
}

void F32StateRowsToHalf(const float* h, int64_t row0, int64_t n_rows, int64_t d_state,
                        uint16_t* half) {
  const float* src = h + row0 * d_state;
  uint16_t* dst = half + row0 * d_state;
  const int64_t n = n_rows * d_state;
#ifdef SSMQ_STATE_AVX2
  if (CpuIsa() == KernelIsa::kAvx512) return F32ToHalfAvx512(src, n, dst);
  if (CpuIsa() == KernelIsa::kAvx2) return F32ToHalfAvx2(src, n, dst);
#endif
  for (int64_t i = 0; i < n; ++i) dst[i] = F32ToF16(src[i]);
}

void Mamba2StepHeadHalf(int64_t row0, int64_t P, int64_t N, const float* x, const float* B,
                        const float* C, float dt, float A, float D, uint16_t* half, float* y) {
#ifdef SSMQ_STATE_AVX2
  if (N % 16 == 0 && CpuIsa() == KernelIsa::kAvx512) {
    return StepHeadHalfAvx512(row0, P, N, x, B, C, dt, FastExp(dt * A), D, half, y);
  }
  if (N % 16 == 0 && CpuIsa() == KernelIsa::kAvx2) {
    return StepHeadHalfAvx2(row0, P, N, x, B, C, dt, FastExp(dt * A), D, half, y);
  }
#endif
  // Reference: through a float copy of the head's rows (a thread's scratch).
  thread_local std::vector<float> rows;
  Grow(rows, static_cast<size_t>(P * N));
  HalfStateRowsToF32(half + row0 * N, 0, P, N, rows.data());
  Mamba2StepHead(P, N, x, B, C, dt, A, D, rows.data(), y);
  F32StateRowsToHalf(rows.data(), 0, P, N, half + row0 * N);
}

}  // namespace ssmq::rt
