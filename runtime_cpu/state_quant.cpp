// The int8 SSM-state cache (site ssm_state). Every Step dequantizes and
// requantizes a layer's whole state, so both loops are plain element-wise
// code the compiler vectorizes (SSMQ_HOT: AVX2 clone where available):
//   code = clamp(RNE(h · (1/s)), ±127)   (the reciprocal is precomputed; the
//   state is a runtime cache, not file data, so multiplication instead of
//   division is our choice) and h = code · s.
// Rounding: after the clamp |v| <= 127, where (v + 1.5·2^23) − 1.5·2^23 is
// exactly round-half-even in fp32. NaN becomes −127 via the clamp order.
#include <algorithm>
#include <cstdint>

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

void DequantizeState(const StateQuant& sq, const int8_t* codes, int64_t n, float* out) {
  const int64_t N = sq.d_state, rows = n / N, R = static_cast<int64_t>(sq.scales.size()) / N;
  const int64_t rows_per_seq = R * sq.rows_per_group;
  for (int64_t r0 = 0; r0 < rows; r0 += sq.rows_per_group) {  // groups never straddle sequences
    const float* s = sq.scales.data() + ((r0 % rows_per_seq) / sq.rows_per_group) * N;
    DequantizeRows(codes + r0 * N, s, std::min(sq.rows_per_group, rows - r0), N, out + r0 * N);
  }
}

void QuantizeState(const StateQuant& sq, const float* h, int64_t n, int8_t* codes) {
  const int64_t N = sq.d_state, rows = n / N, R = static_cast<int64_t>(sq.scales.size()) / N;
  const int64_t rows_per_seq = R * sq.rows_per_group;
  for (int64_t r0 = 0; r0 < rows; r0 += sq.rows_per_group) {
    const float* inv = sq.inv_scales.data() + ((r0 % rows_per_seq) / sq.rows_per_group) * N;
    QuantizeRows(h + r0 * N, inv, std::min(sq.rows_per_group, rows - r0), N, codes + r0 * N);
  }
}

}  // namespace ssmq::rt
