// AVX-512 forms of the element functions of activations.h, 16 lanes at a
// time: the same constants, the same order of operations. Where GCC
// contracts a multiply and an add of the scalar code into one FMA (C++
// defaults to -ffp-contract=fast, and every AVX-512 target has FMA) these
// use the same FMA, so a lane equals the scalar function as compiled into
// AVX-512 code (the callers of Softplus/Silu that these replace), and is
// within an ulp or two of it as compiled without FMA.
#pragma once

#include "runtime_cpu/simd_dispatch.h"

#ifdef SSMQ_HAVE_X86_KERNELS

namespace ssmq::rt {

// FastExp's p (the polynomial of the reduced argument) and 2^n, and the
// lanes below exp's range (x < -87.33, where FastExp is 0): exp(x) = p * scale.
struct Exp512Parts {
  __m512 p, scale;
  __mmask16 under;
};

SSMQ_TARGET_AVX512 inline Exp512Parts FastExp512Parts(__m512 x) {
  const __m512 k_min = _mm512_set1_ps(-87.33f), shift = _mm512_set1_ps(12582912.0f);
  const __m512 xc = _mm512_min_ps(_mm512_max_ps(x, k_min), _mm512_set1_ps(88.0f));
  const __m512 t = _mm512_fmadd_ps(xc, _mm512_set1_ps(1.44269504088896341f), shift);
  const __m512 n = _mm512_sub_ps(t, shift);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), xc);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.0f / 5040.0f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  const __m512i ni = _mm512_sub_epi32(_mm512_castps_si512(t), _mm512_castps_si512(shift));
  const __m512 scale =
      _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(ni, _mm512_set1_epi32(127)), 23));
  return {p, scale, _mm512_cmp_ps_mask(x, k_min, _CMP_LT_OQ)};
}

// FastExp: the same clamp, reduction and polynomial.
SSMQ_TARGET_AVX512 inline __m512 FastExp512(__m512 x) {
  const Exp512Parts e = FastExp512Parts(x);
  return _mm512_maskz_mul_ps(static_cast<__mmask16>(~e.under), e.p, e.scale);
}

// Silu: x / (1 + FastExp(-x)), the last multiply of the exponential fused
// with the add of 1 (as GCC compiles the scalar function: FastExp's result
// has no other use there).
SSMQ_TARGET_AVX512 inline __m512 Silu512(__m512 x) {
  const __m512 one = _mm512_set1_ps(1.0f);
  const Exp512Parts e = FastExp512Parts(_mm512_sub_ps(_mm512_setzero_ps(), x));
  // Lanes below the range: 1 + 0.
  const __m512 den = _mm512_mask3_fmadd_ps(e.p, e.scale, one, static_cast<__mmask16>(~e.under));
  return _mm512_div_ps(x, den);
}

// FastLog for w >= 1 (all Softplus needs): the exponent and the mantissa
// folded into [sqrt(.5), sqrt(2)), then 2 atanh(s) by the same series.
SSMQ_TARGET_AVX512 inline __m512 FastLog512(__m512 w) {
  const __m512i bits = _mm512_castps_si512(w);
  const __m512i biased = _mm512_and_si512(_mm512_srli_epi32(bits, 23), _mm512_set1_epi32(0xFF));
  __m512i e = _mm512_sub_epi32(biased, _mm512_set1_epi32(127));
  const __m512i mant = _mm512_and_si512(bits, _mm512_set1_epi32(0x007FFFFF));
  __m512 m = _mm512_castsi512_ps(_mm512_or_si512(mant, _mm512_set1_epi32(0x3F800000)));  // [1, 2)
  const __m512 one = _mm512_set1_ps(1.0f);
  const __mmask16 big = _mm512_cmp_ps_mask(m, _mm512_set1_ps(1.41421356f), _CMP_GT_OQ);
  m = _mm512_mask_mul_ps(m, big, m, _mm512_set1_ps(0.5f));
  e = _mm512_mask_add_epi32(e, big, e, _mm512_set1_epi32(1));
  const __m512 s = _mm512_div_ps(_mm512_sub_ps(m, one), _mm512_add_ps(m, one));
  const __m512 s2 = _mm512_mul_ps(s, s);
  __m512 p = _mm512_set1_ps(1.0f / 11.0f);
  p = _mm512_fmadd_ps(p, s2, _mm512_set1_ps(1.0f / 9.0f));
  p = _mm512_fmadd_ps(p, s2, _mm512_set1_ps(1.0f / 7.0f));
  p = _mm512_fmadd_ps(p, s2, _mm512_set1_ps(1.0f / 5.0f));
  p = _mm512_fmadd_ps(p, s2, _mm512_set1_ps(1.0f / 3.0f));
  p = _mm512_fmadd_ps(p, s2, one);
  const __m512 e_ln2 = _mm512_mul_ps(_mm512_cvtepi32_ps(e), _mm512_set1_ps(0.693147180559945309f));
  return _mm512_fmadd_ps(_mm512_add_ps(s, s), p, e_ln2);  // 2 s p + e ln2 (s + s is 2 s exactly)
}

// Softplus: v above 20, else log1p(e) = log(w) * e / (w - 1), w = 1 + e,
// e = FastExp(v); e itself where w - 1 is 0 (e below half an ulp of 1).
SSMQ_TARGET_AVX512 inline __m512 Softplus512(__m512 v) {
  const __m512 one = _mm512_set1_ps(1.0f);
  const __m512 e = FastExp512(v);
  const __m512 w = _mm512_add_ps(one, e);
  const __m512 d = _mm512_sub_ps(w, one);
  const __mmask16 d_zero = _mm512_cmp_ps_mask(d, _mm512_setzero_ps(), _CMP_EQ_OQ);
  const __m512 ratio = _mm512_div_ps(e, _mm512_mask_blend_ps(d_zero, d, one));
  const __m512 l = _mm512_mask_blend_ps(d_zero, _mm512_mul_ps(FastLog512(w), ratio), e);
  return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(v, _mm512_set1_ps(20.0f), _CMP_GT_OQ), l, v);
}

}  // namespace ssmq::rt

#endif  // SSMQ_HAVE_X86_KERNELS
