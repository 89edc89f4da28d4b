// Q4 × 16-bit fixed-point activations at decode (q4_fixed16.h).
#include "runtime_cpu/q4_fixed16.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "format/quant.h"

namespace ssmq::rt {

namespace {

constexpr int64_t kBlockBytes = 4 * 64;  // hi even, hi odd, lo even, lo odd

inline int Q4ZeroAt(const Weight& w, int64_t scale_index) {
  return w.zeros ? static_cast<int>(w.zeros[scale_index]) : 8;
}

// Bytes of part `part` (0 hi even, 1 hi odd, 2 lo even, 3 lo odd) of block b.
inline const int8_t* BlockPart(const int8_t* token_bytes, int64_t b, int part) {
  return token_bytes + b * kBlockBytes + part * 64;
}

#ifdef SSMQ_HAVE_X86_KERNELS
// MR rows of one token. Per 128-column block and row: one 64-byte load of
// codes, three ops to split nibbles into bytes, four vpdpbusd (hi/lo × even/odd
// columns), and an epilogue that forms T (the zero point enters as the lo
// accumulator's start, -z times the lane sums), converts it and adds it scaled.
template <int MR>
SSMQ_TARGET_AVX512 void Q4FixedTile(const Weight& w, int64_t r, const int8_t* xb,
                                    const float* xscale, const int32_t* lane_sums, float* out) {
  const int64_t cols = w.cols, ng = w.groups_per_row();
  const int64_t blocks_per_group = w.group_size / kQ4FixedBlock;
  const uint8_t* q[MR];
  for (int i = 0; i < MR; ++i) q[i] = w.codes + (r + i) * (cols / 2);
  const int64_t ahead = kPrefetchRows * (cols / 2);  // rows on (simd_dispatch.h)
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  __m512 acc[MR];
  for (int i = 0; i < MR; ++i) acc[i] = _mm512_setzero_ps();
  for (int64_t g = 0, b = 0; g < ng; ++g) {
    float s[MR];  // the rows' scales of group g
    for (int i = 0; i < MR; ++i) s[i] = w.scales[(r + i) * ng + g];
    for (const int64_t b_end = b + blocks_per_group; b < b_end; ++b) {
      const __m512i xhe = _mm512_loadu_si512(BlockPart(xb, b, 0));
      const __m512i xho = _mm512_loadu_si512(BlockPart(xb, b, 1));
      const __m512i xle = _mm512_loadu_si512(BlockPart(xb, b, 2));
      const __m512i xlo = _mm512_loadu_si512(BlockPart(xb, b, 3));
      const __m512i xl = _mm512_loadu_si512(lane_sums + b * 16);
      const __m512i lo_sym = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(xl, 3));
      for (int i = 0; i < MR; ++i) PrefetchRead(q[i] + b * 64 + ahead);
      for (int i = 0; i < MR; ++i) {
        const __m512i v = _mm512_loadu_si512(q[i] + b * 64);
        const __m512i even = _mm512_and_si512(v, low4);
        const __m512i odd = _mm512_and_si512(_mm512_srli_epi16(v, 4), low4);
        const __m512i lo0 =
            w.zeros ? _mm512_mullo_epi32(_mm512_set1_epi32(-int{w.zeros[(r + i) * ng + g]}), xl)
                    : lo_sym;
        __m512i hi = _mm512_dpbusd_epi32(_mm512_setzero_si512(), even, xhe);
        hi = _mm512_dpbusd_epi32(hi, odd, xho);
        __m512i lo = _mm512_dpbusd_epi32(lo0, even, xle);
        lo = _mm512_dpbusd_epi32(lo, odd, xlo);
        const __m512i t = _mm512_add_epi32(_mm512_slli_epi32(hi, 8), lo);
        acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(t), _mm512_set1_ps(s[i] * xscale[b]), acc[i]);
      }
    }
  }
  for (int i = 0; i < MR; ++i) out[i] = ReduceAdd512(acc[i]);
}

SSMQ_TARGET_AVX512 void Q4FixedRowsAvx512(const Weight& w, int64_t r0, int64_t r1,
                                          const float* bias, const Q4FixedActivations& xa,
                                          int64_t n_tokens, float* y, int64_t y_stride) {
  const int64_t nb = w.cols / kQ4FixedBlock;
  for (int64_t t = 0; t < n_tokens; ++t) {
    const int8_t* xb = xa.bytes + t * nb * kBlockBytes;
    const float* xs = xa.scales + t * nb;
    const int32_t* xsum = xa.lane_sums + t * nb * 16;
    float* yt = y + t * y_stride;
    int64_t r = r0;
    float out[4];
    for (; r + 4 <= r1; r += 4) {
      Q4FixedTile<4>(w, r, xb, xs, xsum, out);
      for (int i = 0; i < 4; ++i) yt[r + i] = out[i] + (bias ? bias[r + i] : 0.0f);
    }
    for (; r < r1; ++r) {
      Q4FixedTile<1>(w, r, xb, xs, xsum, out);
      yt[r] = out[0] + (bias ? bias[r] : 0.0f);
    }
  }
}
#endif

// One 128-column block of x -> its four 64-byte parts and 16 lane sums;
// returns scale_b. A NaN or Inf makes the scale NaN (every output the block
// feeds is then NaN, as the float kernel would give NaN or Inf), never a
// silent 0; its bytes are 0.
float QuantizeBlockScalar(const float* xc, int8_t* out, int32_t* sums) {
  float m = 0.0f;
  bool finite = true;
  for (int64_t c = 0; c < kQ4FixedBlock; ++c) {
    m = std::max(m, std::fabs(xc[c]));
    finite = finite && std::isfinite(xc[c]);
  }
  std::fill_n(sums, 16, 0);
  if (!finite) {
    std::fill_n(out, kBlockBytes, int8_t{0});
    return NAN;
  }
  const float inv = m > 0.0f ? static_cast<float>(kQ4FixedMax) / m : 0.0f;
  for (int64_t c = 0; c < kQ4FixedBlock; ++c) {
    const float f = std::clamp(std::nearbyint(xc[c] * inv), -static_cast<float>(kQ4FixedMax),
                               static_cast<float>(kQ4FixedMax));
    const int32_t v = static_cast<int32_t>(f);
    const int32_t hi = (v + 128) >> 8;  // floor: arithmetic shift
    const int64_t p = c / 2, j = c % 2;
    out[j * 64 + p] = static_cast<int8_t>(hi);
    out[(2 + j) * 64 + p] = static_cast<int8_t>(v - 256 * hi);
    sums[c / 8] += v;
  }
  return m / static_cast<float>(kQ4FixedMax);
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
// conversion (|x · inv| <= 32639 + an ulp, far from overflow). Columns are
// split into even/odd by vpermt2d; the lane sums come from the stored bytes
// (vpdpbusd with ones: 256 · Σhi + Σlo over the lane's 8 columns).
SSMQ_TARGET_AVX512 float QuantizeBlockAvx512(const float* xc, int8_t* out, int32_t* sums) {
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
  const __m512 inv = _mm512_set1_ps(mx > 0.0f ? static_cast<float>(kQ4FixedMax) / mx : 0.0f);
  const __m512i lim = _mm512_set1_epi32(kQ4FixedMax), nlim = _mm512_set1_epi32(-kQ4FixedMax);
  const __m512i c128 = _mm512_set1_epi32(128);
  const __m512i pick[2] = {
      _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30),
      _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31)};
  for (int k = 0; k < 4; ++k) {  // 32 columns: 16 even and 16 odd
    const __m512i a = _mm512_min_epi32(
        _mm512_max_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(xv[2 * k], inv)), nlim), lim);
    const __m512i b = _mm512_min_epi32(
        _mm512_max_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(xv[2 * k + 1], inv)), nlim), lim);
    for (int j = 0; j < 2; ++j) {
      const __m512i v = _mm512_permutex2var_epi32(a, pick[j], b);
      const __m512i hi = _mm512_srai_epi32(_mm512_add_epi32(v, c128), 8);
      const __m512i lo = _mm512_sub_epi32(v, _mm512_slli_epi32(hi, 8));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(out + j * 64 + 16 * k), _mm512_cvtepi32_epi8(hi));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(out + (2 + j) * 64 + 16 * k),
                       _mm512_cvtepi32_epi8(lo));
    }
  }
  const __m512i ones = _mm512_set1_epi8(1);
  __m512i hs = _mm512_dpbusd_epi32(_mm512_setzero_si512(), ones, _mm512_loadu_si512(out));
  hs = _mm512_dpbusd_epi32(hs, ones, _mm512_loadu_si512(out + 64));
  __m512i ls = _mm512_dpbusd_epi32(_mm512_setzero_si512(), ones, _mm512_loadu_si512(out + 128));
  ls = _mm512_dpbusd_epi32(ls, ones, _mm512_loadu_si512(out + 192));
  _mm512_storeu_si512(sums, _mm512_add_epi32(_mm512_slli_epi32(hs, 8), ls));
  return mx / static_cast<float>(kQ4FixedMax);
}
#endif

}  // namespace

bool Q4FixedApplies(const Weight& w, KernelIsa isa) {
  return isa == KernelIsa::kAvx512 && w.format == WeightFormat::kQ4 && w.group_size > 0 &&
         w.group_size % kQ4FixedBlock == 0 && w.cols % w.group_size == 0;
}

Q4FixedActivations PrepareQ4Fixed(const float* x, int64_t x_stride, int64_t n_tokens,
                                  int64_t cols, KernelIsa isa) {
  thread_local std::vector<int8_t> bytes;  // grown once, then reused
  thread_local std::vector<float> scales;
  thread_local std::vector<int32_t> lane_sums;
  const int64_t nb = cols / kQ4FixedBlock;
  Grow(bytes, static_cast<size_t>(n_tokens * nb * kBlockBytes));
  Grow(scales, static_cast<size_t>(n_tokens * nb));
  Grow(lane_sums, static_cast<size_t>(n_tokens * nb * 16));
  for (int64_t t = 0; t < n_tokens; ++t) {
    for (int64_t b = 0; b < nb; ++b) {
      const float* xc = x + t * x_stride + b * kQ4FixedBlock;
      int8_t* out = bytes.data() + (t * nb + b) * kBlockBytes;
      int32_t* sums = lane_sums.data() + (t * nb + b) * 16;
#ifdef SSMQ_HAVE_X86_KERNELS
      if (isa == KernelIsa::kAvx512) {
        scales[t * nb + b] = QuantizeBlockAvx512(xc, out, sums);
        continue;
      }
#endif
      scales[t * nb + b] = QuantizeBlockScalar(xc, out, sums);
    }
  }
  return {bytes.data(), scales.data(), lane_sums.data()};
}

int32_t Q4FixedValue(const Q4FixedActivations& xa, int64_t cols, int64_t t, int64_t c) {
  const int64_t nb = cols / kQ4FixedBlock, b = c / kQ4FixedBlock, in = c % kQ4FixedBlock;
  const int8_t* tb = xa.bytes + t * nb * kBlockBytes;
  const int64_t p = in / 2, j = in % 2;
  return 256 * BlockPart(tb, b, static_cast<int>(j))[p] + BlockPart(tb, b, static_cast<int>(2 + j))[p];
}

void Q4FixedRowsScalar(const Weight& w, int64_t r0, int64_t r1, const float* bias,
                       const Q4FixedActivations& xa, int64_t n_tokens, float* y,
                       int64_t y_stride) {
  const int64_t cols = w.cols, nb = cols / kQ4FixedBlock, ng = w.groups_per_row();
  const int64_t blocks_per_group = w.group_size / kQ4FixedBlock;
  for (int64_t t = 0; t < n_tokens; ++t) {
    for (int64_t r = r0; r < r1; ++r) {
      const uint8_t* q = w.codes + r * (cols / 2);
      float acc = 0.0f;
      for (int64_t b = 0; b < nb; ++b) {
        const int64_t si = r * ng + b / blocks_per_group;
        const int z = Q4ZeroAt(w, si);
        int64_t dot = 0;
        for (int64_t c = b * kQ4FixedBlock; c < (b + 1) * kQ4FixedBlock; ++c)
          dot += (static_cast<int>(Q4Get(q, c)) - z) * int64_t{Q4FixedValue(xa, cols, t, c)};
        acc += static_cast<float>(dot) * (w.scales[si] * xa.scales[t * nb + b]);
      }
      y[t * y_stride + r] = acc + (bias ? bias[r] : 0.0f);
    }
  }
}

void Q4FixedRows(const Weight& w, int64_t r0, int64_t r1, const float* bias,
                 const Q4FixedActivations& xa, int64_t n_tokens, float* y, int64_t y_stride) {
#ifdef SSMQ_HAVE_X86_KERNELS
  Q4FixedRowsAvx512(w, r0, r1, bias, xa, n_tokens, y, y_stride);
#else
  Q4FixedRowsScalar(w, r0, r1, bias, xa, n_tokens, y, y_stride);
#endif
}

}  // namespace ssmq::rt
