// Activation quantization (act_quant.h): QuantizeValue, QuantizeActivations,
// FakeQuantize and Int8BlockWidth. The integer matmul lives in int8_matmul.cpp.
//
// Every quantizer here applies the one rule of act_quant.h,
//   q = QuantizeValue(x / s) = clamp(RNE(x / s), -127, 127),   NaN -> 0,
// with a true IEEE division (never a multiplication by 1/s, which rounds
// differently). The AVX2 versions compute exactly the same thing as the
// scalar reference (vdivps, vroundps to nearest, the same clamp and the same
// NaN rule), so results do not depend on the CPU.
//
// Non-finite inputs: a NaN quantizes to 0 (and is ignored by the dynamic
// absmax); ±inf clamps to ±127 under a static scale. Under kDynamicPerToken a
// row holding ±inf gets s_t = inf, which sends every finite value to 0 and the
// infinities to 0 as well (inf / inf is NaN): garbage in, zeros out, no UB.
#include "runtime_cpu/act_quant.h"

#include <algorithm>
#include <cmath>

#include "runtime_cpu/simd_dispatch.h"
#include "runtime_cpu/team_blocks.h"

#ifdef SSMQ_HAVE_X86_KERNELS
#define SSMQ_HAVE_AVX2_KERNELS 1
#define SSMQ_AVX2 SSMQ_TARGET_AVX2
#endif

namespace ssmq::rt {

int8_t QuantizeValue(float v) {
  if (std::isnan(v)) return 0;
  float r = std::nearbyint(v);  // FE_TONEAREST: round half to even
  r = std::min(127.0f, std::max(-127.0f, r));
  return static_cast<int8_t>(r);
}

namespace {

// ---------------------------------------------------------------- scalar

// max_c |x[c]|, NaN ignored (std::max keeps its first argument when the
// comparison with a NaN is false).
float AbsMaxScalar(const float* x, int64_t n) {
  float m = 0.0f;
  for (int64_t c = 0; c < n; ++c) m = std::max(m, std::fabs(x[c]));
  return m;
}

void QuantizeSpanScalar(const float* x, int64_t n, float s, int8_t* q) {
  for (int64_t c = 0; c < n; ++c) q[c] = QuantizeValue(x[c] / s);
}

void FakeQuantizeSpanScalar(float* x, int64_t n, float s) {
  for (int64_t c = 0; c < n; ++c) x[c] = static_cast<float>(QuantizeValue(x[c] / s)) * s;
}

// ---------------------------------------------------------------- AVX2

#ifdef SSMQ_HAVE_AVX2_KERNELS

// clamp(RNE(x / s), -127, 127) as 8 floats, NaN -> 0: the vector QuantizeValue.
SSMQ_AVX2 inline __m256 RoundedCodes(__m256 x, __m256 s) {
  __m256 v = _mm256_div_ps(x, s);
  v = _mm256_and_ps(v, _mm256_cmp_ps(v, v, _CMP_ORD_Q));  // NaN -> +0
  v = _mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  v = _mm256_max_ps(v, _mm256_set1_ps(-127.0f));
  return _mm256_min_ps(v, _mm256_set1_ps(127.0f));
}

SSMQ_AVX2 float AbsMaxAvx2(const float* x, int64_t n) {
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
  __m256 m0 = _mm256_setzero_ps(), m1 = _mm256_setzero_ps();
  int64_t c = 0;
  // max_ps returns its second operand when either is NaN: keep the running
  // max second so a NaN input is ignored, as in the scalar reference.
  for (; c + 16 <= n; c += 16) {
    m0 = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(x + c), abs_mask), m0);
    m1 = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(x + c + 8), abs_mask), m1);
  }
  for (; c + 8 <= n; c += 8)
    m0 = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(x + c), abs_mask), m0);
  m0 = _mm256_max_ps(m0, m1);
  __m128 h = _mm_max_ps(_mm256_castps256_ps128(m0), _mm256_extractf128_ps(m0, 1));
  h = _mm_max_ps(h, _mm_movehl_ps(h, h));
  h = _mm_max_ss(h, _mm_movehdup_ps(h));
  float m = _mm_cvtss_f32(h);
  for (; c < n; ++c) m = std::max(m, std::fabs(x[c]));
  return m;
}

SSMQ_AVX2 void QuantizeSpanAvx2(const float* x, int64_t n, float s, int8_t* q) {
  const __m256 sv = _mm256_set1_ps(s);
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  int64_t c = 0;
  for (; c + 32 <= n; c += 32) {
    const __m256i i0 = _mm256_cvtps_epi32(RoundedCodes(_mm256_loadu_ps(x + c), sv));
    const __m256i i1 = _mm256_cvtps_epi32(RoundedCodes(_mm256_loadu_ps(x + c + 8), sv));
    const __m256i i2 = _mm256_cvtps_epi32(RoundedCodes(_mm256_loadu_ps(x + c + 16), sv));
    const __m256i i3 = _mm256_cvtps_epi32(RoundedCodes(_mm256_loadu_ps(x + c + 24), sv));
    // packs work per 128-bit lane: the dwords come out as
    // i0[0:4] i1[0:4] i2[0:4] i3[0:4] | i0[4:8] i1[4:8] i2[4:8] i3[4:8].
    const __m256i b = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + c), _mm256_permutevar8x32_epi32(b, order));
  }
  QuantizeSpanScalar(x + c, n - c, s, q + c);
}

SSMQ_AVX2 void FakeQuantizeSpanAvx2(float* x, int64_t n, float s) {
  const __m256 sv = _mm256_set1_ps(s);
  int64_t c = 0;
  for (; c + 8 <= n; c += 8)
    _mm256_storeu_ps(x + c, _mm256_mul_ps(RoundedCodes(_mm256_loadu_ps(x + c), sv), sv));
  FakeQuantizeSpanScalar(x + c, n - c, s);
}

// Per-column scales (static groups narrower than a vector: per channel, or
// a few channels per scale), same arithmetic lane by lane.
SSMQ_AVX2 void FakeQuantizeColsAvx2(float* x, int64_t n, const float* s) {
  int64_t c = 0;
  for (; c + 8 <= n; c += 8) {
    const __m256 sv = _mm256_loadu_ps(s + c);
    _mm256_storeu_ps(x + c, _mm256_mul_ps(RoundedCodes(_mm256_loadu_ps(x + c), sv), sv));
  }
  for (; c < n; ++c) FakeQuantizeSpanScalar(x + c, 1, s[c]);
}

#endif  // SSMQ_HAVE_AVX2_KERNELS

// The AVX2 quantizers serve AVX-512 machines too (they are exact, see the
// top of this file; the work is a few thousand values per call).
bool UseAvx2() {
#ifdef SSMQ_HAVE_AVX2_KERNELS
  static const bool avx2 = BestInt8Isa() != Int8Isa::kScalar;
  return avx2;
#else
  return false;
#endif
}

float AbsMax(bool avx2, const float* x, int64_t n) {
#ifdef SSMQ_HAVE_AVX2_KERNELS
  if (avx2) return AbsMaxAvx2(x, n);
#endif
  (void)avx2;
  return AbsMaxScalar(x, n);
}

void QuantizeSpan(bool avx2, const float* x, int64_t n, float s, int8_t* q) {
#ifdef SSMQ_HAVE_AVX2_KERNELS
  if (avx2) return QuantizeSpanAvx2(x, n, s, q);
#endif
  (void)avx2;
  QuantizeSpanScalar(x, n, s, q);
}

void FakeQuantizeSpan(bool avx2, float* x, int64_t n, float s) {
#ifdef SSMQ_HAVE_AVX2_KERNELS
  if (avx2) return FakeQuantizeSpanAvx2(x, n, s);
#endif
  (void)avx2;
  FakeQuantizeSpanScalar(x, n, s);
}

// s_t of a row under kDynamicPerToken: max|x| / 127; an all-zero row (or one
// whose scale would underflow to 0) gets 1, so its codes are 0.
float DynamicScale(bool avx2, const float* x, int64_t n) {
  const float s = AbsMax(avx2, x, n) / 127.0f;
  return s > 0.0f ? s : 1.0f;
}

}  // namespace

void QuantizeActivations(const ActQuant& aq, const float* x, int64_t x_stride, int64_t rows,
                         int64_t cols, int8_t* q, float* row_scales, int n_threads) {
  const bool avx2 = UseAvx2();
  const int nt = ThreadCount(n_threads);
  ForEachIndex(rows, nt, WorthThreads(4 * rows * cols, nt), [&](int64_t t) {
    const float* xt = x + t * x_stride;
    int8_t* qt = q + t * cols;
    if (aq.mode == ActQuant::Mode::kDynamicPerToken) {
      const float s = DynamicScale(avx2, xt, cols);
      row_scales[t] = s;
      QuantizeSpan(avx2, xt, cols, s, qt);
    } else {  // kStatic: one span per scale group (the last may be shorter)
      row_scales[t] = 1.0f;
      for (int64_t c0 = 0; c0 < cols; c0 += aq.group) {
        const int64_t n = std::min(aq.group, cols - c0);
        QuantizeSpan(avx2, xt + c0, n, aq.StaticScale(c0), qt + c0);
      }
    }
  });
}

namespace {

// out[c] = aq.StaticScale(c) for c < cols.
void ExpandColumnScales(const ActQuant& aq, int64_t cols, float* out) {
  for (int64_t c = 0; c < cols; ++c) out[c] = aq.StaticScale(c);
}

}  // namespace

void FakeQuantize(const ActQuant& aq, float* x, int64_t stride, int64_t rows, int64_t cols,
                  int n_threads) {
  if (!aq.enabled()) return;
  const bool avx2 = UseAvx2();
  const int nt = ThreadCount(n_threads);
#ifdef SSMQ_HAVE_AVX2_KERNELS
  if (avx2 && aq.mode == ActQuant::Mode::kStatic && aq.group < 16) {
    // Narrow groups (e.g. one scale per channel) would be spans of a few
    // values each: expand the scales to one per column once, then whole rows.
    thread_local std::vector<float> col_scales;
    const float* sc = aq.column_scales.data();
    if (static_cast<int64_t>(aq.column_scales.size()) < cols) {  // not expanded at load
      Grow(col_scales, static_cast<size_t>(cols));
      ExpandColumnScales(aq, cols, col_scales.data());
      sc = col_scales.data();
    }
    ForEachIndex(rows, nt, WorthThreads(4 * rows * cols, nt),
                 [&](int64_t t) { FakeQuantizeColsAvx2(x + t * stride, cols, sc); });
    return;
  }
#endif
  ForEachIndex(rows, nt, WorthThreads(4 * rows * cols, nt), [&](int64_t t) {
    float* xt = x + t * stride;
    if (aq.mode == ActQuant::Mode::kDynamicPerToken) {
      FakeQuantizeSpan(avx2, xt, cols, DynamicScale(avx2, xt, cols));
    } else {
      for (int64_t c0 = 0; c0 < cols; c0 += aq.group) {
        const int64_t n = std::min(aq.group, cols - c0);
        FakeQuantizeSpan(avx2, xt + c0, n, aq.StaticScale(c0));
      }
    }
  });
}

void SetColumnScales(ActQuant& aq, int64_t cols) {
  aq.column_scales.clear();
  if (aq.mode != ActQuant::Mode::kStatic || aq.group >= 16) return;
  aq.column_scales.resize(static_cast<size_t>(cols));
  ExpandColumnScales(aq, cols, aq.column_scales.data());
}

void FakeQuantizeColumns(const ActQuant& aq, float* x, int64_t stride, int64_t rows, int64_t c0,
                         int64_t c1) {
  if (aq.mode != ActQuant::Mode::kStatic) return;  // kNone; dynamic is the caller's error
  const bool avx2 = UseAvx2();
#ifdef SSMQ_HAVE_AVX2_KERNELS
  if (avx2 && static_cast<int64_t>(aq.column_scales.size()) >= c1) {  // narrow groups, expanded
    for (int64_t t = 0; t < rows; ++t)
      FakeQuantizeColsAvx2(x + t * stride + c0, c1 - c0, aq.column_scales.data() + c0);
    return;
  }
#endif
  for (int64_t t = 0; t < rows; ++t) {
    float* xt = x + t * stride;
    for (int64_t c = c0; c < c1;) {  // group by group
      const int64_t end = std::min(c1, (c / aq.group + 1) * aq.group);
      FakeQuantizeSpan(avx2, xt + c, end - c, aq.StaticScale(c));
      c = end;
    }
  }
}

// Block width of the integer kernel. A group >= cols spans the whole row and
// so puts no constraint on the blocks; otherwise every block must lie inside
// one weight group and one activation group, which holds when the block is the
// smaller group and the larger group is a multiple of it (group boundaries are
// then block boundaries; a short tail group just ends with a short block).
// Q4 blocks must start on a byte (even width). When both groups span the row
// the block is the row, capped at kMaxWholeRowBlock columns so that an int32
// block sum stays exact for Q8 too (127 · 127 · 2^16 < 2^31); any width tiles
// a whole-row group, so the cap changes nothing but the block count.
int64_t Int8BlockWidth(const Weight& w, const ActQuant& aq) {
  constexpr int64_t kMaxWholeRowBlock = int64_t{1} << 16;
  constexpr int64_t kMaxGroupBlock = int64_t{1} << 17;  // 127 · 127 · 2^17 < 2^31
  const bool q4 = w.format == WeightFormat::kQ4;
  if (!w.quantized() || w.cols <= 0 || w.group_size <= 0 || !aq.enabled()) return 0;
  if (q4 && w.cols % 2 != 0) return 0;
  int64_t ga = w.cols;  // dynamic: one scale per row
  if (aq.mode == ActQuant::Mode::kStatic) {
    if (aq.group <= 0) return 0;
    ga = aq.group;
  }
  const int64_t gw = w.group_size;
  const bool wa_row = gw >= w.cols, act_row = ga >= w.cols;
  int64_t block;
  if (wa_row && act_row) {
    return std::min(w.cols, kMaxWholeRowBlock);
  } else if (wa_row) {
    block = ga;
  } else if (act_row) {
    block = gw;
  } else {
    block = std::min(gw, ga);
    if (std::max(gw, ga) % block != 0) return 0;
  }
  if (q4 && block % 2 != 0) return 0;
  if (block > kMaxGroupBlock) return 0;
  return block;
}

}  // namespace ssmq::rt
