// AVX2 + FMA forms of the element functions of activations.h, 8 lanes at a
// time: the operations of activations512.h (the same constants, order and
// FMA contractions) with blends where that file uses mask registers, for
// CPUs without AVX-512 (Zen 3, Haswell .. Alder Lake).
#pragma once

#include "runtime_cpu/simd_dispatch.h"

#ifdef SSMQ_HAVE_X86_KERNELS

namespace ssmq::rt {

// FastExp's p and 2^n, and the lanes below exp's range (all ones where
// x < -87.33, where FastExp is 0): exp(x) = p * scale.
struct Exp256Parts {
  __m256 p, scale, under;
};

SSMQ_TARGET_AVX2 inline Exp256Parts FastExp256Parts(__m256 x) {
  const __m256 k_min = _mm256_set1_ps(-87.33f), shift = _mm256_set1_ps(12582912.0f);
  const __m256 xc = _mm256_min_ps(_mm256_max_ps(x, k_min), _mm256_set1_ps(88.0f));
  const __m256 t = _mm256_fmadd_ps(xc, _mm256_set1_ps(1.44269504088896341f), shift);
  const __m256 n = _mm256_sub_ps(t, shift);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), xc);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.0f / 5040.0f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  const __m256i ni = _mm256_sub_epi32(_mm256_castps_si256(t), _mm256_castps_si256(shift));
  const __m256 scale =
      _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(ni, _mm256_set1_epi32(127)), 23));
  return {p, scale, _mm256_cmp_ps(x, k_min, _CMP_LT_OQ)};
}

SSMQ_TARGET_AVX2 inline __m256 FastExp256(__m256 x) {
  const Exp256Parts e = FastExp256Parts(x);
  return _mm256_andnot_ps(e.under, _mm256_mul_ps(e.p, e.scale));
}

// Silu: x / (1 + FastExp(-x)), the exponential's last multiply fused with the add.
SSMQ_TARGET_AVX2 inline __m256 Silu256(__m256 x) {
  const __m256 one = _mm256_set1_ps(1.0f);
  const Exp256Parts e = FastExp256Parts(_mm256_sub_ps(_mm256_setzero_ps(), x));
  const __m256 den = _mm256_blendv_ps(_mm256_fmadd_ps(e.p, e.scale, one), one, e.under);
  return _mm256_div_ps(x, den);
}

// FastLog for w >= 1 (all Softplus needs).
SSMQ_TARGET_AVX2 inline __m256 FastLog256(__m256 w) {
  const __m256i bits = _mm256_castps_si256(w);
  const __m256i biased = _mm256_and_si256(_mm256_srli_epi32(bits, 23), _mm256_set1_epi32(0xFF));
  __m256i e = _mm256_sub_epi32(biased, _mm256_set1_epi32(127));
  const __m256i mant = _mm256_and_si256(bits, _mm256_set1_epi32(0x007FFFFF));
  __m256 m = _mm256_castsi256_ps(_mm256_or_si256(mant, _mm256_set1_epi32(0x3F800000)));  // [1, 2)
  const __m256 one = _mm256_set1_ps(1.0f);
  const __m256 big = _mm256_cmp_ps(m, _mm256_set1_ps(1.41421356f), _CMP_GT_OQ);
  m = _mm256_blendv_ps(m, _mm256_mul_ps(m, _mm256_set1_ps(0.5f)), big);
  e = _mm256_sub_epi32(e, _mm256_castps_si256(big));  // big lanes are -1: e + 1
  const __m256 s = _mm256_div_ps(_mm256_sub_ps(m, one), _mm256_add_ps(m, one));
  const __m256 s2 = _mm256_mul_ps(s, s);
  __m256 p = _mm256_set1_ps(1.0f / 11.0f);
  p = _mm256_fmadd_ps(p, s2, _mm256_set1_ps(1.0f / 9.0f));
  p = _mm256_fmadd_ps(p, s2, _mm256_set1_ps(1.0f / 7.0f));
  p = _mm256_fmadd_ps(p, s2, _mm256_set1_ps(1.0f / 5.0f));
  p = _mm256_fmadd_ps(p, s2, _mm256_set1_ps(1.0f / 3.0f));
  p = _mm256_fmadd_ps(p, s2, one);
  const __m256 e_ln2 = _mm256_mul_ps(_mm256_cvtepi32_ps(e), _mm256_set1_ps(0.693147180559945309f));
  return _mm256_fmadd_ps(_mm256_add_ps(s, s), p, e_ln2);
}

// Softplus: v above 20, else log(w) * e / (w - 1), w = 1 + e; e where w - 1 is 0.
SSMQ_TARGET_AVX2 inline __m256 Softplus256(__m256 v) {
  const __m256 one = _mm256_set1_ps(1.0f);
  const __m256 e = FastExp256(v);
  const __m256 w = _mm256_add_ps(one, e);
  const __m256 d = _mm256_sub_ps(w, one);
  const __m256 d_zero = _mm256_cmp_ps(d, _mm256_setzero_ps(), _CMP_EQ_OQ);
  const __m256 ratio = _mm256_div_ps(e, _mm256_blendv_ps(d, one, d_zero));
  const __m256 l = _mm256_blendv_ps(_mm256_mul_ps(FastLog256(w), ratio), e, d_zero);
  return _mm256_blendv_ps(l, v, _mm256_cmp_ps(v, _mm256_set1_ps(20.0f), _CMP_GT_OQ));
}

// Lane j = the sum of v[j]'s 8 lanes (a pairwise tree).
SSMQ_TARGET_AVX2 inline __m256 ReduceAdd256x8(const __m256 (&v)[8]) {
  const __m256 a = _mm256_hadd_ps(_mm256_hadd_ps(v[0], v[1]), _mm256_hadd_ps(v[2], v[3]));
  const __m256 b = _mm256_hadd_ps(_mm256_hadd_ps(v[4], v[5]), _mm256_hadd_ps(v[6], v[7]));
  return _mm256_add_ps(_mm256_permute2f128_ps(a, b, 0x20), _mm256_permute2f128_ps(a, b, 0x31));
}

}  // namespace ssmq::rt

#endif  // SSMQ_HAVE_X86_KERNELS
