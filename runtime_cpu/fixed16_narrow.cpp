// Q4 / Q8 × 16-bit fixed point for 64-column matrices (fixed16_narrow.h).
#include "runtime_cpu/fixed16_narrow.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "format/quant.h"
#include "runtime_cpu/fixed16_decode.h"

namespace ssmq::rt {

namespace {

constexpr int64_t kTokenBytes = 256;
constexpr int64_t kTile = 16;  // rows per tile: one ReduceAddEpi32x16

// Where column c's hi byte sits in a token's bytes (its lo byte: + 128);
// Q4 keeps a second copy 32 bytes on.
inline int64_t HiByteOf(const Weight& w, int64_t c) {
  return w.format == WeightFormat::kQ4 ? (c % 2) * 64 + c / 2 : c;
}

inline int32_t CodeMinusZero(const Weight& w, int64_t r, int64_t c) {
  if (w.format == WeightFormat::kQ8)
    return reinterpret_cast<const int8_t*>(w.codes)[r * kNarrowCols + c];
  return Q4Get(w.codes + r * (kNarrowCols / 2), c) - Q4Zero(w, r);
}

#ifdef SSMQ_HAVE_X86_KERNELS
// T of 16 rows from r, lane i for row r + i.
template <bool kQ8>
SSMQ_TARGET_AVX512 __m512i TileDots(const uint8_t* codes, int64_t r, const int8_t* xb) {
  __m512i t[16];
  if constexpr (kQ8) {
    const __m512i xh = _mm512_loadu_si512(xb), xl = _mm512_loadu_si512(xb + 128);
    const __m512i bias128 = _mm512_set1_epi8(static_cast<char>(0x80));
    for (int i = 0; i < 16; ++i) {
      const uint8_t* row = codes + (r + i) * 64;
      PrefetchRead(row + kPrefetchRows * 64);
      const __m512i v = _mm512_xor_si512(_mm512_loadu_si512(row), bias128);  // q + 128
      const __m512i hi = _mm512_dpbusd_epi32(_mm512_setzero_si512(), v, xh);
      const __m512i lo = _mm512_dpbusd_epi32(_mm512_setzero_si512(), v, xl);
      t[i] = _mm512_add_epi32(_mm512_slli_epi32(hi, 8), lo);
    }
  } else {
    const __m512i xhe = _mm512_loadu_si512(xb), xho = _mm512_loadu_si512(xb + 64);
    const __m512i xle = _mm512_loadu_si512(xb + 128), xlo = _mm512_loadu_si512(xb + 192);
    const __m512i low4 = _mm512_set1_epi8(0x0F);
    for (int k = 0; k < 8; ++k) {  // rows r + 2k (lanes 0-7) and r + 2k + 1 (lanes 8-15)
      const uint8_t* rows = codes + (r + 2 * k) * 32;
      PrefetchRead(rows + kPrefetchRows * 32);
      const __m512i v = _mm512_loadu_si512(rows);
      const __m512i w0 = _mm512_and_si512(v, low4);                         // even columns
      const __m512i w1 = _mm512_and_si512(_mm512_srli_epi16(v, 4), low4);  // odd columns
      __m512i hi = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w0, xhe);
      hi = _mm512_dpbusd_epi32(hi, w1, xho);
      __m512i lo = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w0, xle);
      lo = _mm512_dpbusd_epi32(lo, w1, xlo);
      const __m512i both = _mm512_add_epi32(_mm512_slli_epi32(hi, 8), lo);
      t[2 * k] = _mm512_maskz_mov_epi32(0x00FF, both);
      t[2 * k + 1] = _mm512_maskz_mov_epi32(0xFF00, both);
    }
  }
  return ReduceAddEpi32x16(t);
}

template <bool kQ8>
SSMQ_TARGET_AVX512 void NarrowRowsAvx512(const Weight& w, int64_t r0, int64_t r1,
                                         const float* bias, const Fixed16NarrowActivations& xa,
                                         int64_t n_tokens, float* y, int64_t y_stride) {
  const int64_t tiled_end = r0 + (r1 - r0) / kTile * kTile;
  for (int64_t t = 0; t < n_tokens; ++t) {
    const int8_t* xb = xa.bytes + t * kTokenBytes;
    const __m512 xs = _mm512_set1_ps(xa.scales[t]);
    // Σ (q - z) v = Σ q' v - z' Σ v with q' the vpdpbusd operand: Q8 q + 128
    // (z' = 128), Q4 the code (z' = the zero point).
    const __m512i sum_v = _mm512_set1_epi32(xa.sums[t]);
    float* yt = y + t * y_stride;
    for (int64_t r = r0; r < tiled_end; r += kTile) {
      __m512i dots = TileDots<kQ8>(w.codes, r, xb);
      __m512i z = _mm512_set1_epi32(kQ8 ? 128 : 8);
      if (!kQ8 && w.zeros)
        z = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w.zeros + r)));
      dots = _mm512_sub_epi32(dots, _mm512_mullo_epi32(z, sum_v));
      __m512 out = _mm512_mul_ps(_mm512_cvtepi32_ps(dots), _mm512_mul_ps(_mm512_loadu_ps(w.scales + r), xs));
      if (bias) out = _mm512_add_ps(out, _mm512_loadu_ps(bias + r));
      _mm512_storeu_ps(yt + r, out);
    }
  }
  if (tiled_end < r1)
    Fixed16NarrowRowsScalar(w, tiled_end, r1, bias, xa, n_tokens, y, y_stride);
}

// Q4 on AVX2 (no VNNI): per row one 32-byte load of 64 codes, the nibbles
// split as above, maddubs with the hi / lo activation bytes (pairs at most
// 2 · 15 · 128, the even + odd sum < 2^15) and madd with ones into 8 int32
// lanes; 8 rows' lanes are summed by one hadd tree. T and y as NarrowRowsAvx512.
SSMQ_TARGET_AVX2 inline __m256i ReduceAddEpi32x8(const __m256i (&v)[8]) {
  const __m256i a = _mm256_hadd_epi32(_mm256_hadd_epi32(v[0], v[1]), _mm256_hadd_epi32(v[2], v[3]));
  const __m256i b = _mm256_hadd_epi32(_mm256_hadd_epi32(v[4], v[5]), _mm256_hadd_epi32(v[6], v[7]));
  return _mm256_add_epi32(_mm256_permute2x128_si256(a, b, 0x20), _mm256_permute2x128_si256(a, b, 0x31));
}

SSMQ_TARGET_AVX2 void NarrowRowsQ4Avx2(const Weight& w, int64_t r0, int64_t r1, const float* bias,
                                       const Fixed16NarrowActivations& xa, int64_t n_tokens,
                                       float* y, int64_t y_stride) {
  constexpr int64_t kRows = 8;
  const int64_t tiled_end = r0 + (r1 - r0) / kRows * kRows;
  const __m256i low4 = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);
  for (int64_t t = 0; t < n_tokens; ++t) {
    const int8_t* xb = xa.bytes + t * kTokenBytes;
    const __m256i xhe = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb));
    const __m256i xho = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb + 64));
    const __m256i xle = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb + 128));
    const __m256i xlo = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb + 192));
    const __m256 xs = _mm256_set1_ps(xa.scales[t]);
    const __m256i sum_v = _mm256_set1_epi32(xa.sums[t]);
    float* yt = y + t * y_stride;
    for (int64_t r = r0; r < tiled_end; r += kRows) {
      __m256i dots[kRows];
      for (int i = 0; i < kRows; ++i) {
        const uint8_t* row = w.codes + (r + i) * 32;
        PrefetchRead(row + kPrefetchRows * 32);
        const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row));
        const __m256i even = _mm256_and_si256(v, low4);
        const __m256i odd = _mm256_and_si256(_mm256_srli_epi16(v, 4), low4);
        const __m256i hi = _mm256_madd_epi16(
            _mm256_add_epi16(_mm256_maddubs_epi16(even, xhe), _mm256_maddubs_epi16(odd, xho)), ones);
        const __m256i lo = _mm256_madd_epi16(
            _mm256_add_epi16(_mm256_maddubs_epi16(even, xle), _mm256_maddubs_epi16(odd, xlo)), ones);
        dots[i] = _mm256_add_epi32(_mm256_slli_epi32(hi, 8), lo);
      }
      __m256i z = _mm256_set1_epi32(8);
      if (w.zeros)
        z = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(w.zeros + r)));
      const __m256i t_rows = _mm256_sub_epi32(ReduceAddEpi32x8(dots), _mm256_mullo_epi32(z, sum_v));
      __m256 out = _mm256_mul_ps(_mm256_cvtepi32_ps(t_rows), _mm256_mul_ps(_mm256_loadu_ps(w.scales + r), xs));
      if (bias) out = _mm256_add_ps(out, _mm256_loadu_ps(bias + r));
      _mm256_storeu_ps(yt + r, out);
    }
  }
  if (tiled_end < r1)
    Fixed16NarrowRowsScalar(w, tiled_end, r1, bias, xa, n_tokens, y, y_stride);
}
#endif

}  // namespace

bool Fixed16NarrowApplies(const Weight& w, KernelIsa isa) {
  return (isa == KernelIsa::kAvx512 || (isa == KernelIsa::kAvx2 && w.format == WeightFormat::kQ4)) &&
         (w.format == WeightFormat::kQ4 || w.format == WeightFormat::kQ8) &&
         w.cols == kNarrowCols && w.group_size >= kNarrowCols;
}

Fixed16NarrowActivations PrepareFixed16Narrow(const Weight& w, const float* x, int64_t x_stride,
                                              int64_t n_tokens) {
  thread_local std::vector<int8_t> bytes;  // grown once, then reused
  thread_local std::vector<float> scales;
  thread_local std::vector<int32_t> sums;
  Grow(bytes, static_cast<size_t>(n_tokens * kTokenBytes));
  Grow(scales, static_cast<size_t>(n_tokens));
  Grow(sums, static_cast<size_t>(n_tokens));
  const bool q4 = w.format == WeightFormat::kQ4;
  for (int64_t t = 0; t < n_tokens; ++t) {
    const float* xt = x + t * x_stride;
    int8_t* out = bytes.data() + t * kTokenBytes;
    std::fill_n(out, kTokenBytes, int8_t{0});
    float m = 0.0f;
    bool finite = true;
    for (int64_t c = 0; c < kNarrowCols; ++c) {
      m = std::max(m, std::fabs(xt[c]));
      finite = finite && std::isfinite(xt[c]);
    }
    sums[t] = 0;
    if (!finite) {  // every output NaN, as the float kernel would give NaN or Inf
      scales[t] = NAN;
      continue;
    }
    const float inv = Fixed16Inverse(m);
    for (int64_t c = 0; c < kNarrowCols; ++c) {
      const Fixed16Code code = Fixed16Round(xt[c], inv);
      const int64_t at = HiByteOf(w, c);
      out[at] = code.hi;
      out[at + 128] = code.lo;
      if (q4) {
        out[at + 32] = code.hi;
        out[at + 160] = code.lo;
      }
      sums[t] += code.v;
    }
    scales[t] = m / static_cast<float>(kFixed16Max);
  }
  return {bytes.data(), scales.data(), sums.data()};
}

int32_t Fixed16NarrowValue(const Weight& w, const Fixed16NarrowActivations& xa, int64_t t,
                           int64_t c) {
  const int8_t* tb = xa.bytes + t * kTokenBytes;
  const int64_t at = HiByteOf(w, c);
  return 256 * tb[at] + tb[at + 128];
}

void Fixed16NarrowRowsScalar(const Weight& w, int64_t r0, int64_t r1, const float* bias,
                             const Fixed16NarrowActivations& xa, int64_t n_tokens, float* y,
                             int64_t y_stride) {
  for (int64_t t = 0; t < n_tokens; ++t) {
    for (int64_t r = r0; r < r1; ++r) {
      int32_t dot = 0;
      for (int64_t c = 0; c < kNarrowCols; ++c)
        dot += CodeMinusZero(w, r, c) * Fixed16NarrowValue(w, xa, t, c);
      const float out = static_cast<float>(dot) * (w.scales[r] * xa.scales[t]);
      y[t * y_stride + r] = bias ? out + bias[r] : out;
    }
  }
}

void Fixed16NarrowRows(const Weight& w, int64_t r0, int64_t r1, const float* bias,
                       const Fixed16NarrowActivations& xa, int64_t n_tokens, float* y,
                       int64_t y_stride) {
#ifdef SSMQ_HAVE_X86_KERNELS
  if (CpuIsa() == KernelIsa::kAvx2 && w.format == WeightFormat::kQ4)
    return NarrowRowsQ4Avx2(w, r0, r1, bias, xa, n_tokens, y, y_stride);
  if (CpuIsa() != KernelIsa::kAvx512)  // the VNNI kernels; elsewhere the reference
    return Fixed16NarrowRowsScalar(w, r0, r1, bias, xa, n_tokens, y, y_stride);
  if (w.format == WeightFormat::kQ8)
    return NarrowRowsAvx512<true>(w, r0, r1, bias, xa, n_tokens, y, y_stride);
  NarrowRowsAvx512<false>(w, r0, r1, bias, xa, n_tokens, y, y_stride);
#else
  Fixed16NarrowRowsScalar(w, r0, r1, bias, xa, n_tokens, y, y_stride);
#endif
}

}  // namespace ssmq::rt
