// Q4 / Q8 × 16-bit fixed-point activations at decode (fixed16_decode.h).
#include "runtime_cpu/fixed16_decode.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "format/quant.h"
#include "runtime_cpu/weight_tiles.h"

namespace ssmq::rt {

namespace {

constexpr int64_t kBlockBytes = 4 * 64;  // two hi parts, two lo parts (Fixed16Layout)

// z of the formula: Q4 8 (symmetric) or the stored zero point; Q8 0.
inline int ZeroAt(const Weight& w, int64_t scale_index) {
  return w.format == WeightFormat::kQ8 ? 0 : Q4Zero(w, scale_index);
}

inline int32_t CodeAt(const Weight& w, int64_t r, int64_t c) {
  if (w.format == WeightFormat::kQ8)
    return reinterpret_cast<const int8_t*>(w.codes)[r * w.cols + c];
  return Q4Get(w.codes + r * (w.cols / 2), c);
}

// Bytes of part `part` (0, 1: hi; 2, 3: lo) of block b.
inline const int8_t* BlockPart(const int8_t* token_bytes, int64_t b, int part) {
  return token_bytes + b * kBlockBytes + part * 64;
}

// Where column c (0..127) of a block lives: part (0/1: its hi byte; +2: lo)
// and byte, and the vpdpbusd lane that adds it.
struct ColumnPlace {
  int part;
  int64_t byte;
  int lane;
};
inline ColumnPlace PlaceOf(int64_t c, Fixed16Layout layout) {
  if (layout == Fixed16Layout::kNibbleSplit)
    return {static_cast<int>(c % 2), c / 2, static_cast<int>(c / 8)};
  return {static_cast<int>(c / 64), c % 64, static_cast<int>((c % 64) / 4)};
}

#ifdef SSMQ_HAVE_X86_KERNELS
// MR rows of one token. Per 128-column block and row:
//   Q4: one 64-byte load of codes, three ops to split nibbles into bytes;
//   Q8: two 64-byte loads, each biased by +128 (xor 0x80) to unsigned;
// then four vpdpbusd (hi/lo × two parts) and an epilogue that forms T (the
// zero point or the Q8 bias enters as the lo accumulator's start, a multiple
// of the lane sums), converts it and adds it scaled by s · scale_b.
template <int MR, bool kQ8>
SSMQ_TARGET_AVX512 void Fixed16Tile(const Weight& w, int64_t r, const int8_t* xb,
                                    const float* xscale, const int32_t* lane_sums, float* out) {
  const int64_t cols = w.cols, ng = w.groups_per_row();
  const int64_t blocks_per_group = w.group_size / kFixed16Block;
  const int64_t row_bytes = kQ8 ? cols : cols / 2, block_bytes = kQ8 ? 128 : 64;
  const uint8_t* q[MR];
  for (int i = 0; i < MR; ++i) q[i] = w.codes + (r + i) * row_bytes;
  const int64_t ahead = kPrefetchRows * row_bytes;  // rows on (simd_dispatch.h)
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  const __m512i bias128 = _mm512_set1_epi8(static_cast<char>(0x80));
  __m512 acc[MR];
  for (int i = 0; i < MR; ++i) acc[i] = _mm512_setzero_ps();
  for (int64_t g = 0, b = 0; g < ng; ++g) {
    float s[MR];  // the rows' scales of group g
    for (int i = 0; i < MR; ++i) s[i] = w.scales[(r + i) * ng + g];
    for (const int64_t b_end = b + blocks_per_group; b < b_end; ++b) {
      const __m512i xh0 = _mm512_loadu_si512(BlockPart(xb, b, 0));
      const __m512i xh1 = _mm512_loadu_si512(BlockPart(xb, b, 1));
      const __m512i xl0 = _mm512_loadu_si512(BlockPart(xb, b, 2));
      const __m512i xl1 = _mm512_loadu_si512(BlockPart(xb, b, 3));
      const __m512i xl = _mm512_loadu_si512(lane_sums + b * 16);
      // -8 · Σv (symmetric Q4) or -128 · Σv (Q8's +128 bias), shared by the rows.
      const __m512i lo_shared =
          _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(xl, kQ8 ? 7 : 3));
      for (int i = 0; i < MR; ++i) {
        PrefetchRead(q[i] + b * block_bytes + ahead);
        if constexpr (kQ8) PrefetchRead(q[i] + b * block_bytes + 64 + ahead);
      }
      for (int i = 0; i < MR; ++i) {
        __m512i w0, w1, lo0 = lo_shared;
        if constexpr (kQ8) {
          w0 = _mm512_xor_si512(_mm512_loadu_si512(q[i] + b * 128), bias128);
          w1 = _mm512_xor_si512(_mm512_loadu_si512(q[i] + b * 128 + 64), bias128);
        } else {
          const __m512i v = _mm512_loadu_si512(q[i] + b * 64);
          w0 = _mm512_and_si512(v, low4);                          // even columns
          w1 = _mm512_and_si512(_mm512_srli_epi16(v, 4), low4);   // odd columns
          if (w.zeros)
            lo0 = _mm512_mullo_epi32(_mm512_set1_epi32(-int{w.zeros[(r + i) * ng + g]}), xl);
        }
        __m512i hi = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w0, xh0);
        hi = _mm512_dpbusd_epi32(hi, w1, xh1);
        __m512i lo = _mm512_dpbusd_epi32(lo0, w0, xl0);
        lo = _mm512_dpbusd_epi32(lo, w1, xl1);
        const __m512i t = _mm512_add_epi32(_mm512_slli_epi32(hi, 8), lo);
        acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(t), _mm512_set1_ps(s[i] * xscale[b]), acc[i]);
      }
    }
  }
  for (int i = 0; i < MR; ++i) out[i] = ReduceAdd512(acc[i]);
}

template <bool kQ8>
SSMQ_TARGET_AVX512 void Fixed16RowsAvx512(const Weight& w, int64_t r0, int64_t r1,
                                          const float* bias, const Fixed16Activations& xa,
                                          int64_t n_tokens, float* y, int64_t y_stride) {
  const int64_t nb = w.cols / kFixed16Block;
  for (int64_t t = 0; t < n_tokens; ++t) {
    const int8_t* xb = xa.bytes + t * nb * kBlockBytes;
    const float* xs = xa.scales + t * nb;
    const int32_t* sums = xa.lane_sums + t * nb * 16;
    float* yt = y + t * y_stride;
    int64_t r = r0;
    float out[4];
    for (; r + 4 <= r1; r += 4) {
      Fixed16Tile<4, kQ8>(w, r, xb, xs, sums, out);
      for (int i = 0; i < 4; ++i) yt[r + i] = out[i] + (bias ? bias[r + i] : 0.0f);
    }
    for (; r < r1; ++r) {
      Fixed16Tile<1, kQ8>(w, r, xb, xs, sums, out);
      yt[r] = out[0] + (bias ? bias[r] : 0.0f);
    }
  }
}
#endif

// One 128-column block of x -> its four 64-byte parts and 16 lane sums;
// returns scale_b. A NaN or Inf makes the scale NaN (every output the block
// feeds is then NaN, as the float kernel would give NaN or Inf), never a
// silent 0; its bytes are 0.
float QuantizeBlockScalar(const float* xc, Fixed16Layout layout, int8_t* out, int32_t* sums) {
  float m = 0.0f;
  bool finite = true;
  for (int64_t c = 0; c < kFixed16Block; ++c) {
    m = std::max(m, std::fabs(xc[c]));
    finite = finite && std::isfinite(xc[c]);
  }
  std::fill_n(sums, 16, 0);
  if (!finite) {
    std::fill_n(out, kBlockBytes, int8_t{0});
    return NAN;
  }
  const float inv = Fixed16Inverse(m);
  for (int64_t c = 0; c < kFixed16Block; ++c) {
    const Fixed16Code code = Fixed16Round(xc[c], inv);
    const ColumnPlace at = PlaceOf(c, layout);
    out[at.part * 64 + at.byte] = code.hi;
    out[(2 + at.part) * 64 + at.byte] = code.lo;
    sums[at.lane] += code.v;
  }
  return m / static_cast<float>(kFixed16Max);
}

#ifdef SSMQ_HAVE_X86_KERNELS
SSMQ_TARGET_AVX512 inline float ReduceMax512(__m512 v) {
  v = _mm512_max_ps(v, _mm512_shuffle_f32x4(v, v, 0x4E));
  v = _mm512_max_ps(v, _mm512_shuffle_f32x4(v, v, 0xB1));
  __m128 s = _mm512_castps512_ps128(v);
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// QuantizeBlockScalar on AVX-512, bit for bit: the same inv, vcvtps2dq rounds
// half to even like nearbyint (default MXCSR), the clamp moves after the
// conversion (|x · inv| <= 32639 + an ulp, far from overflow). The nibble
// layout splits columns into even/odd with vpermt2d; the lane sums come from
// the stored bytes (vpdpbusd with ones: 256 · Σhi + Σlo over the lane).
SSMQ_TARGET_AVX512 float QuantizeBlockAvx512(const float* xc, Fixed16Layout layout, int8_t* out,
                                             int32_t* sums) {
  __m512 xv[8];
  __m512 m = _mm512_setzero_ps();
  __mmask16 bad = 0;
  for (int k = 0; k < 8; ++k) {
    xv[k] = _mm512_loadu_ps(xc + 16 * k);
    m = _mm512_max_ps(m, _mm512_abs_ps(xv[k]));
    bad |= _mm512_fpclass_ps_mask(xv[k], 0x99);  // QNaN, SNaN, +Inf, -Inf
  }
  if (bad) {
    std::fill_n(out, kBlockBytes, int8_t{0});
    std::fill_n(sums, 16, 0);
    return NAN;
  }
  const float mx = ReduceMax512(m);
  const __m512 inv = _mm512_set1_ps(Fixed16Inverse(mx));
  const __m512i lim = _mm512_set1_epi32(kFixed16Max), nlim = _mm512_set1_epi32(-kFixed16Max);
  const __m512i c128 = _mm512_set1_epi32(128);
  const __m512i pick[2] = {
      _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30),
      _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31)};
  auto store = [&](__m512i v, int part, int64_t byte) SSMQ_TARGET_AVX512 {
    const __m512i hi = _mm512_srai_epi32(_mm512_add_epi32(v, c128), 8);
    const __m512i lo = _mm512_sub_epi32(v, _mm512_slli_epi32(hi, 8));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + part * 64 + byte), _mm512_cvtepi32_epi8(hi));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + (2 + part) * 64 + byte),
                     _mm512_cvtepi32_epi8(lo));
  };
  for (int k = 0; k < 4; ++k) {  // 32 columns
    const __m512i a = _mm512_min_epi32(
        _mm512_max_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(xv[2 * k], inv)), nlim), lim);
    const __m512i b = _mm512_min_epi32(
        _mm512_max_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(xv[2 * k + 1], inv)), nlim), lim);
    if (layout == Fixed16Layout::kNibbleSplit) {  // 16 even, 16 odd columns
      for (int j = 0; j < 2; ++j) store(_mm512_permutex2var_epi32(a, pick[j], b), j, 16 * k);
    } else {  // columns 32k.. in order
      store(a, k / 2, 32 * (k % 2));
      store(b, k / 2, 32 * (k % 2) + 16);
    }
  }
  const __m512i ones = _mm512_set1_epi8(1);
  __m512i hs = _mm512_dpbusd_epi32(_mm512_setzero_si512(), ones, _mm512_loadu_si512(out));
  hs = _mm512_dpbusd_epi32(hs, ones, _mm512_loadu_si512(out + 64));
  __m512i ls = _mm512_dpbusd_epi32(_mm512_setzero_si512(), ones, _mm512_loadu_si512(out + 128));
  ls = _mm512_dpbusd_epi32(ls, ones, _mm512_loadu_si512(out + 192));
  _mm512_storeu_si512(sums, _mm512_add_epi32(_mm512_slli_epi32(hs, 8), ls));
  return mx / static_cast<float>(kFixed16Max);
}

// QuantizeBlockScalar on AVX2, bit for bit (the reasons of the AVX-512 form).
// Columns go to storage order first (kNibbleSplit: the even columns, then the
// odd ones, by vshufps + vpermq), so that each part is 8 vectors packed to
// bytes in order. Lane j's sum is the 4-column group j mod 2 of vector j / 2
// of each part.
SSMQ_TARGET_AVX2 inline __m256i PackBytes4(__m256i a, __m256i b, __m256i c, __m256i d) {
  const __m256i bytes = _mm256_packs_epi16(_mm256_packs_epi32(a, b), _mm256_packs_epi32(c, d));
  return _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

SSMQ_TARGET_AVX2 float QuantizeBlockAvx2(const float* xc, Fixed16Layout layout, int8_t* out,
                                         int32_t* sums) {
  __m256 xv[16];
  __m256 m = _mm256_setzero_ps(), bad = _mm256_setzero_ps();
  const __m256 sign = _mm256_set1_ps(-0.0f), zero = _mm256_setzero_ps();
  for (int k = 0; k < 16; ++k) {
    xv[k] = _mm256_loadu_ps(xc + 8 * k);
    m = _mm256_max_ps(m, _mm256_andnot_ps(sign, xv[k]));
    bad = _mm256_or_ps(bad, _mm256_cmp_ps(_mm256_mul_ps(xv[k], zero), zero, _CMP_NEQ_UQ));  // NaN, Inf
  }
  if (_mm256_movemask_ps(bad) != 0) {
    std::fill_n(out, kBlockBytes, int8_t{0});
    std::fill_n(sums, 16, 0);
    return NAN;
  }
  __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
  h = _mm_max_ps(h, _mm_movehl_ps(h, h));
  h = _mm_max_ss(h, _mm_movehdup_ps(h));
  const float mx = _mm_cvtss_f32(h);
  const __m256 inv = _mm256_set1_ps(Fixed16Inverse(mx));
  const __m256i lim = _mm256_set1_epi32(kFixed16Max), nlim = _mm256_set1_epi32(-kFixed16Max);
  auto quantize = [&](__m256 x) SSMQ_TARGET_AVX2 {
    return _mm256_min_epi32(_mm256_max_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(x, inv)), nlim), lim);
  };
  __m256i v[16];  // storage order: part 0 (or 1) byte 8i + e is element e of v[i] (v[8 + i])
  if (layout == Fixed16Layout::kNibbleSplit) {
    for (int i = 0; i < 8; ++i) {  // columns 16i .. 16i + 15
      const __m256 a = xv[2 * i], b = xv[2 * i + 1];
      const __m256 even = _mm256_castpd_ps(
          _mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0x88)), 0xD8));
      const __m256 odd = _mm256_castpd_ps(
          _mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0xDD)), 0xD8));
      v[i] = quantize(even);
      v[8 + i] = quantize(odd);
    }
  } else {
    for (int i = 0; i < 16; ++i) v[i] = quantize(xv[i]);
  }
  const __m256i c128 = _mm256_set1_epi32(128);
  __m256i hi[16], lo[16];
  for (int i = 0; i < 16; ++i) {
    hi[i] = _mm256_srai_epi32(_mm256_add_epi32(v[i], c128), 8);
    lo[i] = _mm256_sub_epi32(v[i], _mm256_slli_epi32(hi[i], 8));
  }
  for (int part = 0; part < 2; ++part) {
    for (int q = 0; q < 2; ++q) {  // 32 bytes of the part
      const int i = 8 * part + 4 * q;
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + part * 64 + 32 * q),
                          PackBytes4(hi[i], hi[i + 1], hi[i + 2], hi[i + 3]));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + (2 + part) * 64 + 32 * q),
                          PackBytes4(lo[i], lo[i + 1], lo[i + 2], lo[i + 3]));
    }
  }
  for (int half = 0; half < 2; ++half) {  // lanes 8 · half .. + 7
    __m256i w[4];
    for (int i = 0; i < 4; ++i) w[i] = _mm256_add_epi32(v[4 * half + i], v[8 + 4 * half + i]);
    // [w0 g0, w1 g0, w2 g0, w3 g0 | w0 g1, ...] -> lanes in order (w0 g0, w0 g1, w1 g0, ...)
    const __m256i s = _mm256_hadd_epi32(_mm256_hadd_epi32(w[0], w[1]), _mm256_hadd_epi32(w[2], w[3]));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(sums + 8 * half),
                        _mm256_permutevar8x32_epi32(s, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
  }
  return mx / static_cast<float>(kFixed16Max);
}
#endif

// One block on the widest quantizer `isa` runs (the same bytes either way).
float QuantizeBlock(const float* xc, Fixed16Layout layout, int8_t* out, int32_t* sums,
                    KernelIsa isa) {
#ifdef SSMQ_HAVE_X86_KERNELS
  if (isa == KernelIsa::kAvx512) return QuantizeBlockAvx512(xc, layout, out, sums);
  if (isa == KernelIsa::kAvx2) return QuantizeBlockAvx2(xc, layout, out, sums);
#endif
  (void)isa;
  return QuantizeBlockScalar(xc, layout, out, sums);
}

}  // namespace

Fixed16Layout Fixed16LayoutFor(const Weight& w) {
  return w.format == WeightFormat::kQ8 ? Fixed16Layout::kNatural : Fixed16Layout::kNibbleSplit;
}

bool Fixed16Applies(const Weight& w, KernelIsa isa) {
  const bool shape = (w.format == WeightFormat::kQ4 || w.format == WeightFormat::kQ8) &&
                     w.group_size > 0 && w.group_size % kFixed16Block == 0 &&
                     w.cols % w.group_size == 0;
  if (isa == KernelIsa::kAvx512) return shape;
  return isa == KernelIsa::kAvx2 && shape && w.rows >= kWeightTileRows &&
         (w.format == WeightFormat::kQ8 || w.zeros == nullptr);
}

Fixed16Activations PrepareFixed16(const float* x, int64_t x_stride, int64_t n_tokens,
                                  int64_t cols, Fixed16Layout layout, KernelIsa isa) {
  thread_local std::vector<int8_t> bytes;  // grown once, then reused
  thread_local std::vector<float> scales;
  thread_local std::vector<int32_t> lane_sums, block_sums;
  thread_local std::vector<int16_t> values;
  const int64_t nb = cols / kFixed16Block;
  const bool natural = layout == Fixed16Layout::kNatural;
  if (natural) Grow(values, static_cast<size_t>(n_tokens * cols));
  Grow(block_sums, static_cast<size_t>(n_tokens * nb));
  Grow(bytes, static_cast<size_t>(n_tokens * nb * kBlockBytes));
  Grow(scales, static_cast<size_t>(n_tokens * nb));
  Grow(lane_sums, static_cast<size_t>(n_tokens * nb * 16));
  for (int64_t t = 0; t < n_tokens; ++t) {
    for (int64_t b = 0; b < nb; ++b) {
      const float* xc = x + t * x_stride + b * kFixed16Block;
      int8_t* out = bytes.data() + (t * nb + b) * kBlockBytes;
      int32_t* sums = lane_sums.data() + (t * nb + b) * 16;
      scales[t * nb + b] = QuantizeBlock(xc, layout, out, sums, isa);
      if (natural) {  // v = 256 · hi + lo, column 64h + p at byte p of parts h and 2 + h
        int16_t* v = values.data() + t * cols + b * kFixed16Block;
        for (int64_t c = 0; c < kFixed16Block; ++c)
          v[c] = static_cast<int16_t>(256 * out[(c / 64) * 64 + c % 64] + out[(2 + c / 64) * 64 + c % 64]);
      }
      int32_t total = 0;
      for (int j = 0; j < 16; ++j) total += sums[j];
      block_sums[t * nb + b] = total;
    }
  }
  return {bytes.data(), scales.data(), lane_sums.data(), block_sums.data(),
          natural ? values.data() : nullptr};
}

int32_t Fixed16Value(const Fixed16Activations& xa, int64_t cols, Fixed16Layout layout, int64_t t,
                     int64_t c) {
  const int64_t nb = cols / kFixed16Block, b = c / kFixed16Block;
  const int8_t* tb = xa.bytes + t * nb * kBlockBytes;
  const ColumnPlace at = PlaceOf(c % kFixed16Block, layout);
  return 256 * BlockPart(tb, b, at.part)[at.byte] + BlockPart(tb, b, 2 + at.part)[at.byte];
}

void Fixed16RowsScalar(const Weight& w, int64_t r0, int64_t r1, const float* bias,
                       const Fixed16Activations& xa, int64_t n_tokens, float* y,
                       int64_t y_stride) {
  const int64_t cols = w.cols, nb = cols / kFixed16Block, ng = w.groups_per_row();
  const int64_t blocks_per_group = w.group_size / kFixed16Block;
  const Fixed16Layout layout = Fixed16LayoutFor(w);
  for (int64_t t = 0; t < n_tokens; ++t) {
    for (int64_t r = r0; r < r1; ++r) {
      float acc = 0.0f;
      for (int64_t b = 0; b < nb; ++b) {
        const int64_t si = r * ng + b / blocks_per_group;
        const int z = ZeroAt(w, si);
        int64_t dot = 0;
        for (int64_t c = b * kFixed16Block; c < (b + 1) * kFixed16Block; ++c)
          dot += (CodeAt(w, r, c) - z) * int64_t{Fixed16Value(xa, cols, layout, t, c)};
        acc += static_cast<float>(dot) * (w.scales[si] * xa.scales[t * nb + b]);
      }
      y[t * y_stride + r] = acc + (bias ? bias[r] : 0.0f);
    }
  }
}

void Fixed16Rows(const Weight& w, int64_t r0, int64_t r1, const float* bias,
                 const Fixed16Activations& xa, int64_t n_tokens, float* y, int64_t y_stride) {
#ifdef SSMQ_HAVE_X86_KERNELS
  // AVX2: tile kernels only; the rows around the whole tiles (and every row
  // of a weight without tiles) take the scalar reference.
  const auto row_major = CpuIsa() != KernelIsa::kAvx512 ? Fixed16RowsScalar
                         : w.format == WeightFormat::kQ8 ? Fixed16RowsAvx512<true>
                                                         : Fixed16RowsAvx512<false>;
  // Whole 16-row tiles inside [r0, r1) from the tiles, the rest row-major.
  int64_t t0 = 0, t1 = 0;
  TilesWithin(w, r0, r1, &t0, &t1);
  if (t1 > t0) {
    row_major(w, r0, t0 * kWeightTileRows, bias, xa, n_tokens, y, y_stride);
    Fixed16TileRows(w, t0, t1, bias, xa, n_tokens, y, y_stride);
    r0 = t1 * kWeightTileRows;
  }
  row_major(w, r0, r1, bias, xa, n_tokens, y, y_stride);
#else
  Fixed16RowsScalar(w, r0, r1, bias, xa, n_tokens, y, y_stride);
#endif
}

}  // namespace ssmq::rt
