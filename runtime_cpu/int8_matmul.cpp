// Int8MatMul (act_quant.h): int8 activations x Q8 / Q4 weights, the scalar
// reference and an AVX2 kernel.
//
// Both visit weight row r in blocks of Int8BlockWidth columns. A block's dot
// product with token t is exact in int32; the weight codes never leave their
// packed form in memory (Q4 nibbles are unpacked to int8 (code - z) in
// registers, one 32-column vector at a time).
//
// THE FLOAT COMBINATION ORDER, the same in both kernels, per (t, r):
//   acc = 0.0f
//   for each block b, in column order:
//     p   = sa(b) * sw(r, b)                        (fp32 multiply)
//     acc = fma(float(isum_b), p, acc)              (fused: one rounding)
//   y = fma(acc, row_scale[t], bias[r] or 0.0f)     (fused: one rounding)
// The two fused steps are written as explicit fma (std::fma in the scalar
// code, vfmadd in the AVX2 code) so that compiler contraction
// (-ffp-contract) cannot make the kernels round differently; float(isum_b)
// is the round-to-nearest int32 -> float conversion in both. With that the
// scalar and AVX2 outputs are bit-identical, for any thread count.
//
// AVX2 dot product: the sign trick. maddubs multiplies unsigned by signed
// bytes, so for int8 w and a it gets |w| and sign(a, w) (a negated where w < 0,
// zeroed where w == 0): |w| · sign(a, w) = w · a. Adjacent pairs are summed
// into int16 (|pair| <= 2 · 128 · 127 < 2^15: no saturation; activation codes
// never reach -128, and a Q8 weight code of -128, outside the format's range,
// would still multiply exactly since |w| is read as unsigned) and then madd
// with ones widens pairs into int32. For Q4, |code - z| <= 15, so the roles
// may swap (|a| and sign(code - z, a), |a| shared by four rows), a pair is at
// most 2 · 15 · 127 = 3810 and up to 8 maddubs results are summed in int16
// (30480 < 2^15) before one widening madd.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "format/quant.h"
#include "runtime_cpu/act_quant.h"
#include "runtime_cpu/weight_tiles.h"

#include "runtime_cpu/simd_dispatch.h"

#ifdef SSMQ_HAVE_X86_KERNELS
#define SSMQ_HAVE_AVX2_KERNELS 1
#define SSMQ_AVX2 SSMQ_TARGET_AVX2
#endif

namespace ssmq::rt {

namespace {

// One token block of an Int8MatMul call: q, row_scales and y already point
// at the block's first token.
struct Int8Args {
  const Weight* w;
  const ActQuant* aq;
  int64_t block;  // Int8BlockWidth
  int64_t groups_per_row;  // w->groups_per_row()
  const int8_t* q;
  const float* row_scales;
  const float* bias;  // nullptr: no bias
  int64_t n_tokens;
  float* y;
  int64_t y_stride;
};

// Walks the blocks of a row in column order and tracks the weight group and
// the activation group holding the current block without a division per block
// (a block never straddles a group: see Int8BlockWidth). The group structure
// is the same for every row, so one walk serves a tile of rows.
struct BlockWalk {
  const float* w_scales;   // [rows][groups_per_row]
  const uint8_t* w_zeros;  // Q4 zero points, like w_scales; nullptr: z = 8
  const float* a_scales;   // kStatic's scales; nullptr: dynamic (sa = 1)
  int64_t ng, w_group, a_group;
  int64_t gw = 0, ga = 0, w_next, a_next;

  explicit BlockWalk(const Int8Args& a) {
    const Weight& w = *a.w;
    ng = a.groups_per_row;
    w_scales = w.scales;
    w_zeros = w.zeros;
    const bool stat = a.aq->mode == ActQuant::Mode::kStatic;
    a_scales = stat ? a.aq->scales.data() : nullptr;
    w_group = w.group_size;
    a_group = stat ? a.aq->group : w.cols;
    w_next = w_group;
    a_next = a_group;
  }
  // Moves to the block starting at column c0 (blocks are visited in order).
  void Seek(int64_t c0) {
    while (c0 >= w_next) ++gw, w_next += w_group;
    while (c0 >= a_next) ++ga, a_next += a_group;
  }
  // p = sa(b) · sw(r, b).
  float Scale(int64_t r) const {
    return (a_scales ? a_scales[ga] : 1.0f) * w_scales[r * ng + gw];
  }
  int Zero(int64_t r) const { return w_zeros ? static_cast<int>(w_zeros[r * ng + gw]) : 8; }
};

using Int8RowsKernel = void (*)(const Int8Args& a, int64_t r0, int64_t r1);

// ---------------------------------------------------------------- scalar

template <bool kQ4>
void RowsScalar(const Int8Args& a, int64_t r0, int64_t r1) {
  const Weight& w = *a.w;
  const int64_t cols = w.cols, B = a.block;
  for (int64_t r = r0; r < r1; ++r) {
    const int8_t* w8 = reinterpret_cast<const int8_t*>(w.codes) + r * cols;
    const uint8_t* w4 = w.codes + r * (cols / 2);
    for (int64_t t = 0; t < a.n_tokens; ++t) {
      const int8_t* qt = a.q + t * cols;
      BlockWalk walk(a);
      float acc = 0.0f;
      for (int64_t c0 = 0; c0 < cols; c0 += B) {
        const int64_t c1 = std::min(cols, c0 + B);
        walk.Seek(c0);
        int32_t isum = 0;
        if constexpr (kQ4) {
          const int z = walk.Zero(r);
          for (int64_t c = c0; c < c1; ++c)
            isum += (static_cast<int32_t>(Q4Get(w4, c)) - z) * static_cast<int32_t>(qt[c]);
        } else {
          for (int64_t c = c0; c < c1; ++c)
            isum += static_cast<int32_t>(w8[c]) * static_cast<int32_t>(qt[c]);
        }
        acc = std::fma(static_cast<float>(isum), walk.Scale(r), acc);
      }
      a.y[t * a.y_stride + r] = std::fma(acc, a.row_scales[t], a.bias ? a.bias[r] : 0.0f);
    }
  }
}

// ---------------------------------------------------------------- AVX2

#ifdef SSMQ_HAVE_AVX2_KERNELS

SSMQ_AVX2 inline int32_t HorizontalSum(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
  return _mm_cvtsi128_si32(s);
}

// The horizontal sums of four vectors, as lanes 0..3.
SSMQ_AVX2 inline __m128i HorizontalSum4(__m256i v0, __m256i v1, __m256i v2, __m256i v3) {
  const __m256i h = _mm256_hadd_epi32(_mm256_hadd_epi32(v0, v1), _mm256_hadd_epi32(v2, v3));
  return _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
}

// 32 packed nibbles (16 bytes; element 2k in the low nibble of byte k) ->
// 32 int8 values code - z, in element order. Each byte is widened to a
// 16-bit lane 0x00HL; (x | x << 4) & 0x0F0F = 0x0H0L puts L in the low byte
// (the even element) and H in the high byte (the odd one).
SSMQ_AVX2 inline __m256i UnpackQ4x32(const uint8_t* p, __m256i z) {
  const __m256i x = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  const __m256i v = _mm256_and_si256(_mm256_or_si256(x, _mm256_slli_epi16(x, 4)),
                                     _mm256_set1_epi16(0x0F0F));
  return _mm256_sub_epi8(v, z);
}

// The same for 16 elements (8 bytes).
SSMQ_AVX2 inline __m128i UnpackQ4x16(const uint8_t* p, __m128i z) {
  const __m128i x = _mm_cvtepu8_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
  const __m128i v =
      _mm_and_si128(_mm_or_si128(x, _mm_slli_epi16(x, 4)), _mm_set1_epi16(0x0F0F));
  return _mm_sub_epi8(v, z);
}

// sum over pairs of w · a as 16 int16 (wa = |w|, w the signed weights).
SSMQ_AVX2 inline __m256i DotPairs(__m256i wa, __m256i w, const int8_t* a) {
  return _mm256_maddubs_epi16(
      wa, _mm256_sign_epi8(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(a)), w));
}

SSMQ_AVX2 inline __m128i DotPairs16(__m128i wa, __m128i w, const int8_t* a) {
  return _mm_maddubs_epi16(wa,
                           _mm_sign_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a)), w));
}

// A tile of MR rows x NT tokens, MR or NT being 1 (4 x 1, 1 x 4 or 1 x 1):
// rows r .. r+MR-1 against tokens t0 .. t0+NT-1; writes their y. Lane k of
// the tile is (row r + k, token t0) when MR == 4, (row r, token t0 + k) when
// NT == 4. Each 32-column step loads the shared operand once (the weight
// vector of a 1 x 4 tile, unpacked once for Q4; the activation vector of a
// 4 x 1 tile) and feeds it to the four lanes. A 1 x 1 tile (a lone row at
// decode) runs two accumulator chains over alternating 32-column steps.
//
// Sign trick: maddubs(|u|, sign(v, u)) sums u · v over byte pairs. u is the
// weight (|w| computed once per step in a 1 x 4 tile), except in a Q4 4 x 1
// tile, where u is the activation (|a| computed once per step for four rows).
template <int MR, int NT, bool kQ4>
SSMQ_AVX2 void Tile(const Int8Args& a, int64_t r, int64_t t0) {
  static_assert((MR == 1 && (NT == 1 || NT == 4)) || (MR == 4 && NT == 1));
  constexpr int K = MR * NT;                // lanes
  constexpr int kChains = K == 1 ? 2 : 1;   // accumulator chains per lane
  constexpr bool kShareW = MR == 1;         // the weight vector is the shared operand
  const Weight& w = *a.w;
  const int64_t cols = w.cols, B = a.block;
  const int8_t* qs[NT];
  for (int k = 0; k < NT; ++k) qs[k] = a.q + (t0 + k) * cols;
  const int8_t* w8[MR];
  const uint8_t* w4[MR];
  for (int i = 0; i < MR; ++i) {
    w8[i] = reinterpret_cast<const int8_t*>(w.codes) + (r + i) * cols;
    w4[i] = w.codes + (r + i) * (cols / 2);
  }
  const __m256i ones = _mm256_set1_epi16(1);
  const __m128i ones128 = _mm_set1_epi16(1);
  __m128 facc = _mm_setzero_ps();  // lane k's acc
  BlockWalk walk(a);
  for (int64_t c0 = 0; c0 < cols; c0 += B) {
    const int64_t c1 = std::min(cols, c0 + B);
    walk.Seek(c0);
    int z[MR];
    __m256i zv[MR];
    __m128i zv128[MR];
    if constexpr (kQ4) {
      for (int i = 0; i < MR; ++i) {
        z[i] = walk.Zero(r + i);
        zv[i] = _mm256_set1_epi8(static_cast<char>(z[i]));
        zv128[i] = _mm_set1_epi8(static_cast<char>(z[i]));
      }
    }
    // 32 values of weight row i at column c, as signed int8 (Q4: code - z).
    auto wvec = [&](int i, int64_t c) SSMQ_AVX2 {
      if constexpr (kQ4) {
        return UnpackQ4x32(w4[i] + (c >> 1), zv[i]);  // c0 and B are even: c / 2 is exact
      } else {
        return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w8[i] + c));
      }
    };
    // One 32-column step at c: lane k's pair sums (int16 x 16) into out[k].
    auto step = [&](int64_t c, __m256i* out16) SSMQ_AVX2 {
      if constexpr (kShareW) {
        const __m256i wv = wvec(0, c);
        const __m256i wa = _mm256_abs_epi8(wv);
        for (int k = 0; k < NT; ++k) out16[k] = DotPairs(wa, wv, qs[k] + c);
      } else if constexpr (kQ4) {  // |code - z| <= 15: u = a is safe
        const __m256i av = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs[0] + c));
        const __m256i aa = _mm256_abs_epi8(av);
        for (int i = 0; i < MR; ++i)
          out16[i] = _mm256_maddubs_epi16(aa, _mm256_sign_epi8(wvec(i, c), av));
      } else {  // u = w, so that a (malformed) Q8 code -128 still multiplies exactly
        const __m256i av = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs[0] + c));
        for (int i = 0; i < MR; ++i) {
          const __m256i wv = wvec(i, c);
          out16[i] = _mm256_maddubs_epi16(_mm256_abs_epi8(wv), _mm256_sign_epi8(av, wv));
        }
      }
    };
    __m256i acc[kChains][K];
    int32_t tail[K];
    for (int k = 0; k < K; ++k) {
      tail[k] = 0;
      for (int ch = 0; ch < kChains; ++ch) acc[ch][k] = _mm256_setzero_si256();
    }
    int64_t c = c0;
    __m256i p16[K];
    if constexpr (kQ4) {
      while (c + 32 <= c1) {
        // A run of at most 8 steps per chain, summed in int16, then widened.
        __m256i acc16[kChains][K];
        for (int ch = 0; ch < kChains; ++ch)
          for (int k = 0; k < K; ++k) acc16[ch][k] = _mm256_setzero_si256();
        const int64_t run_end = std::min(c1, c + kChains * 8 * 32);
        for (; c + 32 * kChains <= run_end; c += 32 * kChains) {
          for (int ch = 0; ch < kChains; ++ch) {
            step(c + 32 * ch, p16);
            for (int k = 0; k < K; ++k) acc16[ch][k] = _mm256_add_epi16(acc16[ch][k], p16[k]);
          }
        }
        if (kChains == 2 && c + 32 <= run_end) {  // an odd step left: chain 0 (<= 8 steps)
          step(c, p16);
          for (int k = 0; k < K; ++k) acc16[0][k] = _mm256_add_epi16(acc16[0][k], p16[k]);
          c += 32;
        }
        for (int ch = 0; ch < kChains; ++ch)
          for (int k = 0; k < K; ++k)
            acc[ch][k] = _mm256_add_epi32(acc[ch][k], _mm256_madd_epi16(acc16[ch][k], ones));
      }
    } else {
      for (; c + 32 * kChains <= c1; c += 32 * kChains) {
        for (int ch = 0; ch < kChains; ++ch) {
          step(c + 32 * ch, p16);
          for (int k = 0; k < K; ++k)
            acc[ch][k] = _mm256_add_epi32(acc[ch][k], _mm256_madd_epi16(p16[k], ones));
        }
      }
      if (kChains == 2 && c + 32 <= c1) {
        step(c, p16);
        for (int k = 0; k < K; ++k)
          acc[0][k] = _mm256_add_epi32(acc[0][k], _mm256_madd_epi16(p16[k], ones));
        c += 32;
      }
    }
    if (c + 16 <= c1) {  // one 16-column step in 128-bit registers
      __m128i p[K];
      auto wvec16 = [&](int i) SSMQ_AVX2 {
        if constexpr (kQ4) {
          return UnpackQ4x16(w4[i] + (c >> 1), zv128[i]);
        } else {
          return _mm_loadu_si128(reinterpret_cast<const __m128i*>(w8[i] + c));
        }
      };
      if constexpr (kShareW) {
        const __m128i wv = wvec16(0);
        const __m128i wa = _mm_abs_epi8(wv);
        for (int k = 0; k < NT; ++k) p[k] = DotPairs16(wa, wv, qs[k] + c);
      } else if constexpr (kQ4) {
        const __m128i av = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs[0] + c));
        const __m128i aa = _mm_abs_epi8(av);
        for (int i = 0; i < MR; ++i) p[i] = _mm_maddubs_epi16(aa, _mm_sign_epi8(wvec16(i), av));
      } else {
        const __m128i av = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs[0] + c));
        for (int i = 0; i < MR; ++i) {
          const __m128i wv = wvec16(i);
          p[i] = _mm_maddubs_epi16(_mm_abs_epi8(wv), _mm_sign_epi8(av, wv));
        }
      }
      for (int k = 0; k < K; ++k)
        acc[0][k] = _mm256_add_epi32(
            acc[0][k], _mm256_set_m128i(_mm_setzero_si128(), _mm_madd_epi16(p[k], ones128)));
      c += 16;
    }
    const bool has_tail = c < c1;
    for (; c < c1; ++c) {  // fewer than 16 columns left in the block
      for (int i = 0; i < MR; ++i) {
        const int32_t wq = kQ4 ? static_cast<int32_t>(Q4Get(w4[i], c)) - z[i]
                               : static_cast<int32_t>(w8[i][c]);
        for (int k = 0; k < NT; ++k) tail[i + k] += wq * static_cast<int32_t>(qs[k][c]);
      }
    }
    // acc = fma(float(isum_b), p, acc) for every lane of the tile at once.
    if constexpr (K == 4) {
      __m128i isum = HorizontalSum4(acc[0][0], acc[0][1], acc[0][2], acc[0][3]);
      if (has_tail) isum = _mm_add_epi32(isum, _mm_setr_epi32(tail[0], tail[1], tail[2], tail[3]));
      const __m128 p = kShareW ? _mm_set1_ps(walk.Scale(r))
                               : _mm_setr_ps(walk.Scale(r), walk.Scale(r + 1),
                                             walk.Scale(r + 2), walk.Scale(r + 3));
      facc = _mm_fmadd_ps(_mm_cvtepi32_ps(isum), p, facc);
    } else {
      __m256i v = acc[0][0];
      if constexpr (kChains == 2) v = _mm256_add_epi32(v, acc[1][0]);
      const int32_t isum = HorizontalSum(v) + tail[0];
      facc = _mm_fmadd_ss(_mm_cvtsi32_ss(_mm_setzero_ps(), isum), _mm_set_ss(walk.Scale(r)),
                          facc);
    }
  }
  // y = fma(acc, row_scale, bias).
  if constexpr (K == 4 && kShareW) {  // one row, four tokens
    float out[4];
    const __m128 b = _mm_set1_ps(a.bias ? a.bias[r] : 0.0f);
    _mm_storeu_ps(out, _mm_fmadd_ps(facc, _mm_loadu_ps(a.row_scales + t0), b));
    for (int k = 0; k < NT; ++k) a.y[(t0 + k) * a.y_stride + r] = out[k];
  } else if constexpr (K == 4) {  // four rows, one token: contiguous in y
    const __m128 b = a.bias ? _mm_loadu_ps(a.bias + r) : _mm_setzero_ps();
    _mm_storeu_ps(a.y + t0 * a.y_stride + r,
                  _mm_fmadd_ps(facc, _mm_set1_ps(a.row_scales[t0]), b));
  } else {
    const __m128 b = _mm_set_ss(a.bias ? a.bias[r] : 0.0f);
    a.y[t0 * a.y_stride + r] =
        _mm_cvtss_f32(_mm_fmadd_ss(facc, _mm_set_ss(a.row_scales[t0]), b));
  }
}

template <bool kQ4>
SSMQ_AVX2 void RowsAvx2(const Int8Args& a, int64_t r0, int64_t r1) {
  int64_t t = 0;
  for (; t + 4 <= a.n_tokens; t += 4)  // four tokens share each weight vector
    for (int64_t r = r0; r < r1; ++r) Tile<1, 4, kQ4>(a, r, t);
  for (; t < a.n_tokens; ++t) {  // the rest (decode): four rows share each activation vector
    int64_t r = r0;
    for (; r + 4 <= r1; r += 4) Tile<4, 1, kQ4>(a, r, t);
    for (; r < r1; ++r) Tile<1, 1, kQ4>(a, r, t);
  }
}


// ---------------------------------------------------------------- AVX-512 VNNI
//
// vpdpbusd multiplies unsigned by signed bytes and adds groups of four into
// int32 lanes, exactly (no int16 stage). The two weight formats meet it
// differently:
//   Q4: the codes are unsigned (0..15): u = code, s = a, and the zero point
//       comes off once per block: isum = sum code·a - z · sum a, with sum a
//       of each (token, block) computed once per call (Int8Prep::asum).
//   Q8: the weights are signed, so the activations are biased once per call
//       to u = a + 128 (Int8Prep::biased): sum (a+128)·w - sum 128·w, the
//       second sum taken by one more vpdpbusd with a constant 128 vector.
//       Bounds: |(a+128)·w| <= 255·128 per product, B <= 2^16 columns:
//       < 2^31, and the subtraction is done lane-wise before the reduction.
// Both give the exact int32 block sum, so the float combination (and the
// output bits) are those of the scalar reference.

struct Int8Prep {
  const uint8_t* biased = nullptr;  // Q8: [n_tokens][cols] a + 128
  const int32_t* asum = nullptr;    // Q4: [n_tokens][n_blocks] sum of a over the block
  int64_t n_blocks = 0;
  // Q4 when blocks and cols are multiples of 128: [n_tokens][cols] with each
  // 128-column stretch holding its 64 even columns, then its 64 odd ones.
  // 64 packed bytes (128 codes) then unpack with one AND (low nibbles: the
  // even columns) and one shift + AND (high: the odd ones), no widening.
  const int8_t* q4_split = nullptr;
};

// 64 packed nibbles (32 bytes) -> 64 unsigned codes in element order (each
// byte widened to 0x00HL, then (x | x << 4) & 0x0F0F puts L then H).
SSMQ_TARGET_AVX512 inline __m512i UnpackQ4x64(const uint8_t* p) {
  const __m512i x = _mm512_cvtepu8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  return _mm512_and_si512(_mm512_or_si512(x, _mm512_slli_epi16(x, 4)), _mm512_set1_epi16(0x0F0F));
}
SSMQ_TARGET_AVX512 inline __m256i UnpackQ4x32u(const uint8_t* p) {
  const __m256i x = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return _mm256_and_si256(_mm256_or_si256(x, _mm256_slli_epi16(x, 4)), _mm256_set1_epi16(0x0F0F));
}

SSMQ_TARGET_AVX512 inline __m256i Fold512(__m512i v) {  // 16 lanes -> 8 lane sums
  return _mm256_add_epi32(_mm512_castsi512_si256(v),
                          _mm512_castsi512_si256(_mm512_shuffle_i64x2(v, v, 0x4E)));
}

// kSums (Q8 only): the +128 correction comes from w.q8_block_sums (one
// subtraction per block) instead of corr's vpdpbusd per 64 columns, and the
// short tail multiplies the biased activations so that it matches.
template <int MR, int NT, bool kQ4, bool kSums = false>
SSMQ_TARGET_AVX512 void Tile512(const Int8Args& a, const Int8Prep& prep, int64_t r, int64_t t0) {
  static_assert((MR == 1 && (NT == 1 || NT == 4)) || (MR == 4 && NT == 1));
  static_assert(!(kSums && kQ4));
  constexpr int K = MR * NT;
  constexpr bool kShareW = MR == 1;
  const Weight& w = *a.w;
  const int64_t cols = w.cols, B = a.block;
  const int8_t* qs[NT];
  const uint8_t* us[NT];
  for (int k = 0; k < NT; ++k) {
    qs[k] = a.q + (t0 + k) * cols;
    us[k] = kQ4 ? nullptr : prep.biased + (t0 + k) * cols;
  }
  const int8_t* w8[MR];
  const uint8_t* w4[MR];
  for (int i = 0; i < MR; ++i) {
    w8[i] = reinterpret_cast<const int8_t*>(w.codes) + (r + i) * cols;
    w4[i] = w.codes + (r + i) * (cols / 2);
  }
  const __m512i c128 = _mm512_set1_epi8(static_cast<char>(0x80));
  const __m256i c128y = _mm256_set1_epi8(static_cast<char>(0x80));
  const int64_t pf_ahead = kPrefetchRows * (kQ4 ? cols / 2 : cols);
  const int32_t* wsum = kSums ? w.q8_block_sums.data() : nullptr;
  const int64_t n_blocks = kSums ? (cols + B - 1) / B : 0;
  __m128 facc = _mm_setzero_ps();
  BlockWalk walk(a);
  int64_t block_index = 0;
  for (int64_t c0 = 0; c0 < cols; c0 += B, ++block_index) {
    const int64_t c1 = std::min(cols, c0 + B);
    walk.Seek(c0);
    __m512i acc[K], corr[MR];
    for (int k = 0; k < K; ++k) acc[k] = _mm512_setzero_si512();
    for (int i = 0; i < MR; ++i) corr[i] = _mm512_setzero_si512();
    int64_t c = c0;
    if constexpr (kQ4) {
      if (prep.q4_split) {  // 128 columns per step from the even/odd split activations
        const __m512i low4 = _mm512_set1_epi8(0x0F);
        for (; c + 128 <= c1; c += 128) {
          for (int i = 0; i < MR; ++i) PrefetchRead(w4[i] + (c >> 1) + pf_ahead);
          if constexpr (kShareW) {
            const __m512i v = _mm512_loadu_si512(w4[0] + (c >> 1));
            const __m512i even = _mm512_and_si512(v, low4);
            const __m512i odd = _mm512_and_si512(_mm512_srli_epi16(v, 4), low4);
            for (int k = 0; k < NT; ++k) {
              const int8_t* qk = prep.q4_split + (t0 + k) * cols + c;
              acc[k] = _mm512_dpbusd_epi32(acc[k], even, _mm512_loadu_si512(qk));
              acc[k] = _mm512_dpbusd_epi32(acc[k], odd, _mm512_loadu_si512(qk + 64));
            }
          } else {
            const int8_t* qk = prep.q4_split + t0 * cols + c;
            const __m512i ae = _mm512_loadu_si512(qk), ao = _mm512_loadu_si512(qk + 64);
            for (int i = 0; i < MR; ++i) {
              const __m512i v = _mm512_loadu_si512(w4[i] + (c >> 1));
              acc[i] = _mm512_dpbusd_epi32(acc[i], _mm512_and_si512(v, low4), ae);
              acc[i] = _mm512_dpbusd_epi32(
                  acc[i], _mm512_and_si512(_mm512_srli_epi16(v, 4), low4), ao);
            }
          }
        }
      }
    }
    for (; c + 64 <= c1; c += 64) {
      for (int i = 0; i < MR; ++i) {  // the same columns kPrefetchRows rows on
        if constexpr (kQ4) PrefetchRead(w4[i] + (c >> 1) + pf_ahead);
        else PrefetchRead(w8[i] + c + pf_ahead);
      }
      if constexpr (kQ4) {
        if constexpr (kShareW) {
          const __m512i wv = UnpackQ4x64(w4[0] + (c >> 1));
          for (int k = 0; k < NT; ++k)
            acc[k] = _mm512_dpbusd_epi32(acc[k], wv, _mm512_loadu_si512(qs[k] + c));
        } else {
          const __m512i av = _mm512_loadu_si512(qs[0] + c);
          for (int i = 0; i < MR; ++i)
            acc[i] = _mm512_dpbusd_epi32(acc[i], UnpackQ4x64(w4[i] + (c >> 1)), av);
        }
      } else {
        if constexpr (kShareW) {
          const __m512i wv = _mm512_loadu_si512(w8[0] + c);
          if constexpr (!kSums) corr[0] = _mm512_dpbusd_epi32(corr[0], c128, wv);
          for (int k = 0; k < NT; ++k)
            acc[k] = _mm512_dpbusd_epi32(acc[k], _mm512_loadu_si512(us[k] + c), wv);
        } else {
          const __m512i uv = _mm512_loadu_si512(us[0] + c);
          for (int i = 0; i < MR; ++i) {
            const __m512i wv = _mm512_loadu_si512(w8[i] + c);
            acc[i] = _mm512_dpbusd_epi32(acc[i], uv, wv);
            if constexpr (!kSums) corr[i] = _mm512_dpbusd_epi32(corr[i], c128, wv);
          }
        }
      }
    }
    __m256i acc8[K];  // folded to 8 lanes; a 32-column step adds in ymm
    for (int k = 0; k < K; ++k) {
      const int i = kShareW ? 0 : k;
      acc8[k] = Fold512(kQ4 ? acc[k] : _mm512_sub_epi32(acc[k], corr[i]));
    }
    if (c + 32 <= c1) {
      __m256i a32[K], corr32[MR];
      for (int k = 0; k < K; ++k) a32[k] = _mm256_setzero_si256();
      for (int i = 0; i < MR; ++i) corr32[i] = _mm256_setzero_si256();
      for (int i = 0; i < MR; ++i) {
        const __m256i wv = kQ4 ? UnpackQ4x32u(w4[i] + (c >> 1))
                               : _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w8[i] + c));
        if (!kQ4 && !kSums) corr32[i] = _mm256_dpbusd_epi32(corr32[i], c128y, wv);
        for (int k = 0; k < NT; ++k) {
          const int lane = kShareW ? k : i;
          if constexpr (kQ4) {
            a32[lane] = _mm256_dpbusd_epi32(
                a32[lane], wv, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs[k] + c)));
          } else {
            a32[lane] = _mm256_dpbusd_epi32(
                a32[lane], _mm256_loadu_si256(reinterpret_cast<const __m256i*>(us[k] + c)), wv);
          }
        }
      }
      for (int k = 0; k < K; ++k) {
        const int i = kShareW ? 0 : k;
        acc8[k] = _mm256_add_epi32(acc8[k], kQ4 ? a32[k] : _mm256_sub_epi32(a32[k], corr32[i]));
      }
      c += 32;
    }
    int32_t tail[K] = {};
    for (; c < c1; ++c) {  // fewer than 32 columns left: exact products (Q4: code · a, z below)
      for (int i = 0; i < MR; ++i) {
        const int32_t wq = kQ4 ? static_cast<int32_t>(Q4Get(w4[i], c)) : static_cast<int32_t>(w8[i][c]);
        for (int k = 0; k < NT; ++k)
          tail[i + k] += wq * (kSums ? static_cast<int32_t>(us[k][c]) : static_cast<int32_t>(qs[k][c]));
      }
    }
    if constexpr (kSums) {  // - 128 · sum w over the block, from the load-time sums
      for (int i = 0; i < MR; ++i)
        for (int k = 0; k < NT; ++k) tail[i + k] -= 128 * wsum[(r + i) * n_blocks + block_index];
    }
    if constexpr (kQ4) {  // - z · sum a over the block
      for (int i = 0; i < MR; ++i)
        for (int k = 0; k < NT; ++k)
          tail[i + k] -= walk.Zero(r + i) * prep.asum[(t0 + k) * prep.n_blocks + block_index];
    }
    if constexpr (K == 4) {
      __m128i isum = HorizontalSum4(acc8[0], acc8[1], acc8[2], acc8[3]);
      isum = _mm_add_epi32(isum, _mm_setr_epi32(tail[0], tail[1], tail[2], tail[3]));
      const __m128 p = kShareW ? _mm_set1_ps(walk.Scale(r))
                               : _mm_setr_ps(walk.Scale(r), walk.Scale(r + 1),
                                             walk.Scale(r + 2), walk.Scale(r + 3));
      facc = _mm_fmadd_ps(_mm_cvtepi32_ps(isum), p, facc);
    } else {
      const int32_t isum = HorizontalSum(acc8[0]) + tail[0];
      facc = _mm_fmadd_ss(_mm_cvtsi32_ss(_mm_setzero_ps(), isum), _mm_set_ss(walk.Scale(r)),
                          facc);
    }
  }
  if constexpr (K == 4 && kShareW) {
    float out[4];
    const __m128 b = _mm_set1_ps(a.bias ? a.bias[r] : 0.0f);
    _mm_storeu_ps(out, _mm_fmadd_ps(facc, _mm_loadu_ps(a.row_scales + t0), b));
    for (int k = 0; k < NT; ++k) a.y[(t0 + k) * a.y_stride + r] = out[k];
  } else if constexpr (K == 4) {
    const __m128 b = a.bias ? _mm_loadu_ps(a.bias + r) : _mm_setzero_ps();
    _mm_storeu_ps(a.y + t0 * a.y_stride + r,
                  _mm_fmadd_ps(facc, _mm_set1_ps(a.row_scales[t0]), b));
  } else {
    const __m128 b = _mm_set_ss(a.bias ? a.bias[r] : 0.0f);
    a.y[t0 * a.y_stride + r] =
        _mm_cvtss_f32(_mm_fmadd_ss(facc, _mm_set_ss(a.row_scales[t0]), b));
  }
}

template <bool kQ4>
SSMQ_TARGET_AVX512 void RowsAvx512(const Int8Args& a, const Int8Prep& prep, int64_t r0, int64_t r1) {
  int64_t t = 0;
  for (; t + 4 <= a.n_tokens; t += 4)
    for (int64_t r = r0; r < r1; ++r) Tile512<1, 4, kQ4>(a, prep, r, t);
  if (t == a.n_tokens) return;
  if constexpr (!kQ4) {
    if (a.w->q8_sum_block == a.block && !a.w->q8_block_sums.empty()) {
      for (; t < a.n_tokens; ++t) {
        int64_t r = r0;
        for (; r + 4 <= r1; r += 4) Tile512<4, 1, false, true>(a, prep, r, t);
        for (; r < r1; ++r) Tile512<1, 1, false, true>(a, prep, r, t);
      }
      return;
    }
  }
  for (; t < a.n_tokens; ++t) {
    int64_t r = r0;
    for (; r + 4 <= r1; r += 4) Tile512<4, 1, kQ4>(a, prep, r, t);
    for (; r < r1; ++r) Tile512<1, 1, kQ4>(a, prep, r, t);
  }
}

// Q4 in 16-row tiles (weight_tiles.h), one token: the 16 lanes are 16 rows. Per
// 8 columns of the split activations: one 64-byte load, two masks, two
// vpdpbusd with the even / odd activation dwords broadcast (the odd nibbles
// stay in place, so those sums carry 16 · code and come back exactly by an
// arithmetic shift). Per block every lane holds its row's isum exactly and
// the float steps are THE FLOAT COMBINATION ORDER lane by lane, so the
// output is bit-identical to the scalar kernel's.
constexpr int64_t kTiledMaxBlock = 8192;  // 16 · 15 · 128 · (8192 / 2) < 2^31

constexpr int64_t kTiledQ8MaxBlock = 65536;  // 65536 · 255 · 128 < 2^31

bool TiledInt8Applies(const Weight& w, const Int8Args& a, const Int8Prep& prep) {
  // Whole blocks only: the kernels step through a block without a column bound.
  if (!w.has_tiles() || prep.asum == nullptr || a.block <= 0 || w.cols % a.block != 0) return false;
  if (w.format == WeightFormat::kQ8) return a.block % 64 == 0 && a.block <= kTiledQ8MaxBlock;
  return w.format == WeightFormat::kQ4 && prep.q4_split != nullptr && a.block % 128 == 0 &&
         a.block <= kTiledMaxBlock;
}

// The float steps of one block of a tile, lane by lane in the scalar
// kernel's order: facc += float(isum) · (sa · sw) with the 16 rows' weight
// scales of the block's group (one load when a row has one group).
SSMQ_TARGET_AVX512 inline __m512 AddTileBlock(__m512 facc, __m512i isum, const BlockWalk& walk,
                                              const float* tile_scales, int64_t ng,
                                              __m512i scale_index) {
  const float sa = walk.a_scales ? walk.a_scales[walk.ga] : 1.0f;
  const __m512 sw = ng == 1 ? _mm512_loadu_ps(tile_scales)
                            : _mm512_i32gather_ps(scale_index, tile_scales + walk.gw, 4);
  return _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_mul_ps(_mm512_set1_ps(sa), sw), facc);
}

// y = facc · row_scale + bias for the tile's 16 rows of token t.
SSMQ_TARGET_AVX512 inline void StoreTileRows(const Int8Args& a, int64_t tile, int64_t t,
                                             __m512 facc) {
  const int64_t r = tile * kWeightTileRows;
  const __m512 b = a.bias ? _mm512_loadu_ps(a.bias + r) : _mm512_setzero_ps();
  _mm512_storeu_ps(a.y + t * a.y_stride + r,
                   _mm512_fmadd_ps(facc, _mm512_set1_ps(a.row_scales[t]), b));
}

SSMQ_TARGET_AVX512 void TiledInt8Q4(const Int8Args& a, const Int8Prep& prep, int64_t tile,
                                    int64_t t) {
  const Weight& w = *a.w;
  const int64_t cols = w.cols, B = a.block, ng = a.groups_per_row;
  const uint8_t* p = w.tiled_codes + tile * kWeightTileRows * (cols / 2);
  const float* tile_scales = w.scales + tile * kWeightTileRows * ng;
  const int8_t* qs = prep.q4_split + t * cols;
  const int64_t ahead = kPrefetchRows * (cols / 2);  // one tile on
  PrefetchNextTileScales(w, tile);
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  const __m512i high4 = _mm512_set1_epi8(static_cast<char>(0xF0));
  const __m512i scale_index = TileScaleIndex(ng);
  BlockWalk walk(a);
  __m512 facc = _mm512_setzero_ps();
  int64_t block_index = 0;
  for (int64_t c0 = 0; c0 < cols; c0 += B, ++block_index) {
    walk.Seek(c0);
    __m512i even_sum[2], odd_sum[2];
    for (int j = 0; j < 2; ++j) even_sum[j] = odd_sum[j] = _mm512_setzero_si512();
    for (int64_t c = c0; c < c0 + B; c += 128) {
      const uint8_t* pb = p + (c / 128) * 1024;
      // dword k: columns 8k, 8k+2, 8k+4, 8k+6 (even part, 64 bytes), 8k+1, ... (odd part)
      const int8_t* x = qs + c;
#pragma GCC unroll 16
      for (int k = 0; k < 16; ++k) {
        PrefetchRead(pb + k * 64 + ahead);
        __m512i v = _mm512_loadu_si512(pb + k * 64);
        SSMQ_PIN_VECTOR(v);  // one load (GCC folds it into both masks: two loads)
        even_sum[k & 1] = _mm512_dpbusd_epi32(even_sum[k & 1], _mm512_and_si512(v, low4),
                                              BroadcastDword(x + 4 * k));
        odd_sum[k & 1] = _mm512_dpbusd_epi32(odd_sum[k & 1], _mm512_and_si512(v, high4),
                                             BroadcastDword(x + 64 + 4 * k));
      }
    }
    const __m512i isum = _mm512_sub_epi32(
        _mm512_add_epi32(_mm512_add_epi32(even_sum[0], even_sum[1]),
                         _mm512_srai_epi32(_mm512_add_epi32(odd_sum[0], odd_sum[1]), 4)),
        _mm512_set1_epi32(8 * prep.asum[t * prep.n_blocks + block_index]));
    facc = AddTileBlock(facc, isum, walk, tile_scales, ng, scale_index);
  }
  StoreTileRows(a, tile, t, facc);
}

// Q8 in 16-row tiles, one token: per 4 columns one 64-byte load of the
// biased codes (q + 128, unsigned) and one vpdpbusd with the activations'
// dword broadcast (signed), so each lane adds Σ (q + 128)·a = Σ q·a + 128 · Σa
// and the block's 128 · Σa (Int8Prep::asum, one scalar per token and block)
// comes off once. Exact in int32 (blocks up to kTiledQ8MaxBlock), the float
// steps as TiledInt8Q4: bit-identical to the scalar kernel.
SSMQ_TARGET_AVX512 void TiledInt8Q8(const Int8Args& a, const Int8Prep& prep, int64_t tile,
                                    int64_t t) {
  const Weight& w = *a.w;
  const int64_t cols = w.cols, B = a.block, ng = a.groups_per_row;
  const uint8_t* p = w.tiled_codes + tile * kWeightTileRows * cols;
  const float* tile_scales = w.scales + tile * kWeightTileRows * ng;
  const int8_t* qt = a.q + t * cols;
  const int64_t ahead = kPrefetchRows * cols;  // one tile on
  PrefetchNextTileScales(w, tile);
  const __m512i scale_index = TileScaleIndex(ng);
  BlockWalk walk(a);
  __m512 facc = _mm512_setzero_ps();
  int64_t block_index = 0;
  for (int64_t c0 = 0; c0 < cols; c0 += B, ++block_index) {
    walk.Seek(c0);
    __m512i sum[4];
    for (int j = 0; j < 4; ++j) sum[j] = _mm512_setzero_si512();
    for (int64_t c = c0; c < c0 + B; c += 64) {
      const uint8_t* pb = p + c * kWeightTileRows;  // dword c / 4, 16 lanes of 4 bytes
      const int8_t* x = qt + c;
#pragma GCC unroll 16
      for (int k = 0; k < 16; ++k) {
        PrefetchRead(pb + k * 64 + ahead);
        sum[k & 3] = _mm512_dpbusd_epi32(sum[k & 3], _mm512_loadu_si512(pb + k * 64),
                                         BroadcastDword(x + 4 * k));
      }
    }
    const __m512i isum = _mm512_sub_epi32(
        _mm512_add_epi32(_mm512_add_epi32(sum[0], sum[1]), _mm512_add_epi32(sum[2], sum[3])),
        _mm512_set1_epi32(128 * prep.asum[t * prep.n_blocks + block_index]));
    facc = AddTileBlock(facc, isum, walk, tile_scales, ng, scale_index);
  }
  StoreTileRows(a, tile, t, facc);
}

// ---------------------------------------------------------------- AVX2 tiles
//
// The same 16-row tiles without VNNI: a tile chunk (64 bytes, 16 rows x 4
// bytes) is two 8-row halves, one ymm each; maddubs (unsigned x signed bytes,
// adjacent pairs summed into int16) and madd with ones (int16 pairs into
// int32) take the place of vpdpbusd, so each int32 lane again holds one row.
//   Q4: the codes are the unsigned operand as they are (0..15), the even /
//       odd activation dwords (Int8Prep::q4_split) the signed one. A pair is
//       at most 2 · 15 · 128 = 3840, so the even + odd sums of four chunks
//       (8 pairs, 30720) stay exact in int16 before one widening madd; the
//       zero point comes off as 8 · Σa per block, as in TiledInt8Q4.
//   Q8: the tiles hold q + 128; xor 0x80 gives q back and the sign trick
//       (maddubs(|q|, sign(a, q))) multiplies it exactly (a pair is at most
//       2 · 127 · 128 < 2^15), widened by madd every chunk.
// The block sums are exact in int32, and the float steps are THE FLOAT
// COMBINATION ORDER lane by lane: bit-identical to the scalar kernel.

// 32 tile bytes (8 rows x 8 Q4 codes) times the even / odd activation
// dwords: per row lane, two int16 pair sums of code · a (each <= 3840).
SSMQ_AVX2 inline __m256i Q4PairSums(const uint8_t* p, __m256i xe, __m256i xo, __m256i low4) {
  const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  const __m256i even = _mm256_and_si256(v, low4);
  const __m256i odd = _mm256_and_si256(_mm256_srli_epi16(v, 4), low4);
  return _mm256_add_epi16(_mm256_maddubs_epi16(even, xe), _mm256_maddubs_epi16(odd, xo));
}

// 32 tile bytes (8 rows x 4 biased Q8 codes) times an activation dword:
// per row lane, the int32 sum of q · a over the 4 columns (sign trick).
SSMQ_AVX2 inline __m256i Q8Dot(const uint8_t* p, __m256i xa, __m256i bias128, __m256i ones) {
  const __m256i q =
      _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)), bias128);
  return _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_abs_epi8(q), _mm256_sign_epi8(xa, q)), ones);
}

// facc[h] += float(isum[h]) · (sa · sw) for both halves of a tile (rows 8h..8h+7).
SSMQ_AVX2 inline void AddTileBlockAvx2(__m256 facc[2], const __m256i isum[2], const BlockWalk& walk,
                                       const float* tile_scales, int64_t ng, __m256i scale_index) {
  const __m256 sa = _mm256_set1_ps(walk.a_scales ? walk.a_scales[walk.ga] : 1.0f);
  for (int h = 0; h < 2; ++h) {
    const float* s = tile_scales + h * 8 * ng;
    const __m256 sw = ng == 1 ? _mm256_loadu_ps(s) : _mm256_i32gather_ps(s + walk.gw, scale_index, 4);
    facc[h] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[h]), _mm256_mul_ps(sa, sw), facc[h]);
  }
}

SSMQ_AVX2 inline void StoreTileRowsAvx2(const Int8Args& a, int64_t tile, int64_t t,
                                        const __m256 facc[2]) {
  const int64_t r = tile * kWeightTileRows;
  const __m256 rs = _mm256_set1_ps(a.row_scales[t]);
  for (int h = 0; h < 2; ++h) {
    const __m256 b = a.bias ? _mm256_loadu_ps(a.bias + r + 8 * h) : _mm256_setzero_ps();
    _mm256_storeu_ps(a.y + t * a.y_stride + r + 8 * h, _mm256_fmadd_ps(facc[h], rs, b));
  }
}

SSMQ_AVX2 void TiledInt8Q4Avx2(const Int8Args& a, const Int8Prep& prep, int64_t tile, int64_t t) {
  const Weight& w = *a.w;
  const int64_t cols = w.cols, B = a.block, ng = a.groups_per_row;
  const uint8_t* p = w.tiled_codes + tile * kWeightTileRows * (cols / 2);
  const float* tile_scales = w.scales + tile * kWeightTileRows * ng;
  const int8_t* qs = prep.q4_split + t * cols;
  const int64_t ahead = kPrefetchRows * (cols / 2);  // one tile on
  PrefetchNextTileScales(w, tile);
  const __m256i low4 = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);
  const __m256i scale_index = HalfTileScaleIndex(ng);
  BlockWalk walk(a);
  __m256 facc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
  int64_t block_index = 0;
  for (int64_t c0 = 0; c0 < cols; c0 += B, ++block_index) {
    walk.Seek(c0);
    __m256i sum[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};
    for (int64_t c = c0; c < c0 + B; c += 128) {
      const uint8_t* pb = p + (c / 128) * 1024;
      const int8_t* x = qs + c;  // dword k: even columns 8k.. (bytes 4k), odd (64 + 4k)
      for (int k4 = 0; k4 < 16; k4 += 4) {
        __m256i s16_0 = _mm256_setzero_si256(), s16_1 = _mm256_setzero_si256();
        for (int k = k4; k < k4 + 4; ++k) {
          PrefetchRead(pb + k * 64 + ahead);
          const __m256i xe = BroadcastDword256(x + 4 * k), xo = BroadcastDword256(x + 64 + 4 * k);
          s16_0 = _mm256_add_epi16(s16_0, Q4PairSums(pb + k * 64, xe, xo, low4));
          s16_1 = _mm256_add_epi16(s16_1, Q4PairSums(pb + k * 64 + 32, xe, xo, low4));
          SSMQ_PIN_VECTOR(s16_0);
          SSMQ_PIN_VECTOR(s16_1);
        }
        sum[0] = _mm256_add_epi32(sum[0], _mm256_madd_epi16(s16_0, ones));
        sum[1] = _mm256_add_epi32(sum[1], _mm256_madd_epi16(s16_1, ones));
      }
    }
    const __m256i zsum = _mm256_set1_epi32(8 * prep.asum[t * prep.n_blocks + block_index]);
    const __m256i isum[2] = {_mm256_sub_epi32(sum[0], zsum), _mm256_sub_epi32(sum[1], zsum)};
    AddTileBlockAvx2(facc, isum, walk, tile_scales, ng, scale_index);
  }
  StoreTileRowsAvx2(a, tile, t, facc);
}

SSMQ_AVX2 void TiledInt8Q8Avx2(const Int8Args& a, const Int8Prep& prep, int64_t tile, int64_t t) {
  (void)prep;
  const Weight& w = *a.w;
  const int64_t cols = w.cols, B = a.block, ng = a.groups_per_row;
  const uint8_t* p = w.tiled_codes + tile * kWeightTileRows * cols;
  const float* tile_scales = w.scales + tile * kWeightTileRows * ng;
  const int8_t* qt = a.q + t * cols;
  const int64_t ahead = kPrefetchRows * cols;  // one tile on
  PrefetchNextTileScales(w, tile);
  const __m256i bias128 = _mm256_set1_epi8(static_cast<char>(0x80)), ones = _mm256_set1_epi16(1);
  const __m256i scale_index = HalfTileScaleIndex(ng);
  BlockWalk walk(a);
  __m256 facc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
  for (int64_t c0 = 0; c0 < cols; c0 += B) {
    walk.Seek(c0);
    // [half][chain]: two chains per half over alternating chunks
    __m256i s00 = _mm256_setzero_si256(), s01 = s00, s10 = s00, s11 = s00;
    for (int64_t c = c0; c < c0 + B; c += 64) {
      const uint8_t* pb = p + c * kWeightTileRows;  // dword c / 4, 16 lanes of 4 bytes
      const int8_t* x = qt + c;
      for (int k = 0; k < 16; k += 2) {
        PrefetchRead(pb + k * 64 + ahead);
        PrefetchRead(pb + k * 64 + 64 + ahead);
        const __m256i xa0 = BroadcastDword256(x + 4 * k), xa1 = BroadcastDword256(x + 4 * k + 4);
        s00 = _mm256_add_epi32(s00, Q8Dot(pb + k * 64, xa0, bias128, ones));
        s10 = _mm256_add_epi32(s10, Q8Dot(pb + k * 64 + 32, xa0, bias128, ones));
        s01 = _mm256_add_epi32(s01, Q8Dot(pb + k * 64 + 64, xa1, bias128, ones));
        s11 = _mm256_add_epi32(s11, Q8Dot(pb + k * 64 + 96, xa1, bias128, ones));
        SSMQ_PIN_VECTOR(s00);
        SSMQ_PIN_VECTOR(s01);
        SSMQ_PIN_VECTOR(s10);
        SSMQ_PIN_VECTOR(s11);
      }
    }
    const __m256i isum[2] = {_mm256_add_epi32(s00, s01), _mm256_add_epi32(s10, s11)};
    AddTileBlockAvx2(facc, isum, walk, tile_scales, ng, scale_index);
  }
  StoreTileRowsAvx2(a, tile, t, facc);
}

// sums[b * stride] = sum of row[c] over block b (columns [b·block, min(cols, (b+1)·block))),
// exact in int32 (|row[c]| <= 128, blocks of at most 2^17 columns: Int8BlockWidth):
// the Q4 activation sums that take off the zero point, and the Q8 weight sums
// of the +128 bias correction.
void BlockSums(const int8_t* row, int64_t cols, int64_t block, int32_t* sums, int64_t stride) {
  for (int64_t b = 0, c0 = 0; c0 < cols; ++b, c0 += block) {
    const int64_t c1 = std::min(cols, c0 + block);
    int32_t sum = 0;
    for (int64_t c = c0; c < c1; ++c) sum += row[c];
    sums[b * stride] = sum;
  }
}

// ---------------------------------------------------------------- AVX-512 VNNI, prefill
//
// With many tokens the row tiles above spend most of their time on horizontal
// sums (one per block per (row, token)). Here tokens sit in the lanes
// instead: the call's activations are repacked once into
//   packed[v][c / 4][16 tokens][4 columns]   (token vector v = tokens 16v..16v+15)
// so one vpdpbusd of a token vector with a broadcast dword of a weight row (its
// columns c..c+3) adds those four columns to 16 tokens' block sums. Nothing is
// reduced across lanes, and the per-row terms are scalars per block:
//   Q8: u = a + 128 (packed, biased), s = w (broadcast): isum = acc - 128 sum_block w
//   Q4: u = code (the row unpacked once to bytes, then broadcast), s = a:
//       isum = acc - z sum_block a   (LanePrep::asum, per token lane)
// The block sums are exact, and each (token, row) then takes the float steps
// of the reference in block order, so the outputs are bit-identical to it.
// Needs cols and the block width to be multiples of 4 (else the row tiles run).
struct LanePrep {
  const uint8_t* packed = nullptr;      // [n_vec][cols / 4][16][4]
  const int32_t* asum = nullptr;        // Q4: [n_vec][n_blocks][16]
  const float* row_scales = nullptr;    // [n_vec * 16], zero past n_tokens
  int64_t n_vec = 0, n_blocks = 0;
};

inline constexpr int64_t kLaneMinTokens = 16;  // below: the row tiles (decode, small batches)
inline constexpr int64_t kLaneTokenBlock = 256;  // 256 x cols bytes of packed activations stay in L2
inline constexpr int kLaneRows = 8;            // weight rows per tile (MR)

inline bool LanePathApplies(const Weight& w, int64_t block, int64_t n_tokens) {
  return n_tokens >= kLaneMinTokens && w.cols % 4 == 0 && block % 4 == 0;
}

LanePrep PrepareLanes(const Weight& w, int64_t block, const int8_t* q, const float* row_scales,
                      int64_t n_tokens) {
  thread_local std::vector<uint8_t> packed;
  thread_local std::vector<int32_t> asum;
  thread_local std::vector<float> scales;
  const bool q4 = w.format == WeightFormat::kQ4;
  const int64_t cols = w.cols, c4 = cols / 4;
  LanePrep lp;
  lp.n_vec = (n_tokens + 15) / 16;
  lp.n_blocks = (cols + block - 1) / block;
  Grow(packed, static_cast<size_t>(lp.n_vec * cols * 16));
  Grow(scales, static_cast<size_t>(lp.n_vec * 16));
  const uint8_t bias = q4 ? 0x00 : 0x80;  // Q8: a + 128 as an unsigned byte
  for (int64_t v = 0; v < lp.n_vec; ++v) {
    uint8_t* dst = packed.data() + v * cols * 16;
    for (int64_t lane = 0; lane < 16; ++lane) {
      const int64_t t = v * 16 + lane;
      scales[v * 16 + lane] = t < n_tokens ? row_scales[t] : 0.0f;
      const uint8_t* src = reinterpret_cast<const uint8_t*>(q + t * cols);
      for (int64_t j = 0; j < c4; ++j) {
        uint8_t* d = dst + j * 64 + lane * 4;
        for (int k = 0; k < 4; ++k) d[k] = t < n_tokens ? static_cast<uint8_t>(src[4 * j + k] ^ bias) : 0;
      }
    }
  }
  if (q4) {  // asum[v][b][lane]: zero for the padding lanes
    asum.assign(static_cast<size_t>(lp.n_vec * lp.n_blocks * 16), 0);
    for (int64_t t = 0; t < n_tokens; ++t)
      BlockSums(q + t * cols, cols, block, asum.data() + (t / 16) * lp.n_blocks * 16 + t % 16, 16);
    lp.asum = asum.data();
  }
  lp.packed = packed.data();
  lp.row_scales = scales.data();
  return lp;
}

// MR rows x NV token vectors. rows[i]: row r + i as bytes (Q8: the int8
// codes in place; Q4: unpacked codes); corr[i * n_blocks + b]: Q8's
// 128 sum_block w.
template <int MR, int NV, bool kQ4>
SSMQ_TARGET_AVX512 void LaneTile(const Int8Args& a, const LanePrep& lp,
                                 const uint8_t* const* rows, const int32_t* corr, int64_t r,
                                 int64_t v0) {
  const int64_t cols = a.w->cols, B = a.block;
  __m512 facc[MR][NV];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NV; ++j) facc[i][j] = _mm512_setzero_ps();
  const uint8_t* act = lp.packed + v0 * cols * 16;
  BlockWalk walk(a);
  int64_t b = 0;
  for (int64_t c0 = 0; c0 < cols; c0 += B, ++b) {
    const int64_t c1 = std::min(cols, c0 + B);
    walk.Seek(c0);
    __m512i acc[MR][NV];
    for (int i = 0; i < MR; ++i)
      for (int j = 0; j < NV; ++j) acc[i][j] = _mm512_setzero_si512();
    for (int64_t c = c0; c < c1; c += 4) {
      __m512i av[NV];
      for (int j = 0; j < NV; ++j) av[j] = _mm512_loadu_si512(act + j * cols * 16 + c * 16);
      for (int i = 0; i < MR; ++i) {
        int32_t dword;
        std::memcpy(&dword, rows[i] + c, 4);
        const __m512i wv = _mm512_set1_epi32(dword);
        for (int j = 0; j < NV; ++j) {
          acc[i][j] = kQ4 ? _mm512_dpbusd_epi32(acc[i][j], wv, av[j])
                          : _mm512_dpbusd_epi32(acc[i][j], av[j], wv);
        }
      }
    }
    for (int i = 0; i < MR; ++i) {
      const __m512 p = _mm512_set1_ps(walk.Scale(r + i));
      for (int j = 0; j < NV; ++j) {
        __m512i isum;
        if constexpr (kQ4) {
          const __m512i as = _mm512_loadu_si512(lp.asum + ((v0 + j) * lp.n_blocks + b) * 16);
          isum = _mm512_sub_epi32(acc[i][j], _mm512_mullo_epi32(_mm512_set1_epi32(walk.Zero(r + i)), as));
        } else {
          isum = _mm512_sub_epi32(acc[i][j], _mm512_set1_epi32(corr[i * lp.n_blocks + b]));
        }
        facc[i][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), p, facc[i][j]);
      }
    }
  }
  for (int j = 0; j < NV; ++j) {
    const __m512 rs = _mm512_loadu_ps(lp.row_scales + (v0 + j) * 16);
    const int64_t t0 = (v0 + j) * 16, n = std::min<int64_t>(16, a.n_tokens - t0);
    for (int i = 0; i < MR; ++i) {
      alignas(64) float out[16];
      _mm512_store_ps(out, _mm512_fmadd_ps(facc[i][j], rs,
                                           _mm512_set1_ps(a.bias ? a.bias[r + i] : 0.0f)));
      for (int64_t k = 0; k < n; ++k) a.y[(t0 + k) * a.y_stride + r + i] = out[k];
    }
  }
}

// Rows [r0, r1) against every token of the call.
template <bool kQ4>
SSMQ_TARGET_AVX512 void LaneRows(const Int8Args& a, const LanePrep& lp, int64_t r0, int64_t r1) {
  thread_local std::vector<uint8_t> unpacked;  // [kLaneRows][cols]: Q4 codes; Q8 tiled rows
  thread_local std::vector<int32_t> corr;      // Q8: [kLaneRows][n_blocks]
  thread_local std::vector<uint8_t> packed;    // Q4: a row copied out of its tile
  const Weight& w = *a.w;
  const int64_t cols = w.cols, B = a.block, nb = lp.n_blocks;
  if (kQ4 && w.has_tiles()) Grow(packed, static_cast<size_t>(cols / 2));
  Grow(unpacked, static_cast<size_t>(kLaneRows * cols));
  Grow(corr, static_cast<size_t>(kLaneRows * nb));
  for (int64_t r = r0; r < r1; r += kLaneRows) {
    const int mr = static_cast<int>(std::min<int64_t>(kLaneRows, r1 - r));
    const uint8_t* rows[kLaneRows];
    for (int i = 0; i < mr; ++i) {
      if constexpr (kQ4) {
        const uint8_t* src = RowCodes(w, r + i, packed.data());
        uint8_t* dst = unpacked.data() + i * cols;
        int64_t c = 0;
        for (; c + 64 <= cols; c += 64) _mm512_storeu_si512(dst + c, UnpackQ4x64(src + c / 2));
        for (; c < cols; ++c) dst[c] = Q4Get(src, c);
        rows[i] = dst;
      } else {
        // Tiled rows are copied out of their tile into this row's scratch.
        const int8_t* src =
            reinterpret_cast<const int8_t*>(RowCodes(w, r + i, unpacked.data() + i * cols));
        int32_t* ci = corr.data() + i * nb;
        BlockSums(src, cols, B, ci, 1);
        for (int64_t b = 0; b < nb; ++b) ci[b] *= 128;
        rows[i] = reinterpret_cast<const uint8_t*>(src);
      }
    }
    if (mr == kLaneRows) {
      int64_t v = 0;
      for (; v + 2 <= lp.n_vec; v += 2) LaneTile<kLaneRows, 2, kQ4>(a, lp, rows, corr.data(), r, v);
      for (; v < lp.n_vec; ++v) LaneTile<kLaneRows, 1, kQ4>(a, lp, rows, corr.data(), r, v);
    } else {
      for (int i = 0; i < mr; ++i)
        for (int64_t v = 0; v < lp.n_vec; ++v)
          LaneTile<1, 1, kQ4>(a, lp, rows + i, corr.data() + i * nb, r + i, v);
    }
  }
}

// The per-call preparation of the activations (see Int8Prep), into buffers
// that grow once per thread and are then reused (no allocation per step).
// isa kAvx2 (its tile kernels only): the split Q4 activations and the block
// sums, no biased copy.
Int8Prep PrepareInt8(Int8Isa isa, const Weight& w, int64_t block, const int8_t* q,
                     int64_t n_tokens) {
  thread_local std::vector<uint8_t> biased;
  thread_local std::vector<int32_t> asum;
  thread_local std::vector<int8_t> split;
  Int8Prep prep;
  const int64_t cols = w.cols;
  if (w.format == WeightFormat::kQ4 && block % 128 == 0 && cols % 128 == 0) {
    Grow(split, static_cast<size_t>(n_tokens * cols));
    for (int64_t t = 0; t < n_tokens; ++t) {
      for (int64_t c0 = 0; c0 < cols; c0 += 128) {
        const int8_t* src = q + t * cols + c0;
        int8_t* dst = split.data() + t * cols + c0;
        for (int j = 0; j < 64; ++j) dst[j] = src[2 * j], dst[64 + j] = src[2 * j + 1];
      }
    }
    prep.q4_split = split.data();
  }
  // Q4, and Q8 from tiles (TiledInt8Q8), take Σa per (token, block) off.
  if (w.format == WeightFormat::kQ4 || w.has_tiles()) {
    prep.n_blocks = (cols + block - 1) / block;
    Grow(asum, static_cast<size_t>(n_tokens * prep.n_blocks));
    for (int64_t t = 0; t < n_tokens; ++t)
      BlockSums(q + t * cols, cols, block, asum.data() + t * prep.n_blocks, 1);
    prep.asum = asum.data();
  }
  if (w.format == WeightFormat::kQ8 && isa == Int8Isa::kAvx512Vnni) {  // the row-major rows' u = a + 128
    const size_t n = static_cast<size_t>(n_tokens * cols);
    Grow(biased, n);
    for (size_t i = 0; i < n; ++i) biased[i] = static_cast<uint8_t>(q[i]) ^ 0x80u;
    prep.biased = biased.data();
  }
  return prep;
}
#endif  // SSMQ_HAVE_AVX2_KERNELS

Int8RowsKernel Int8Kernel(Int8Isa isa, WeightFormat format) {
  // (kAvx512Vnni runs through RowsAvx512 with its Int8Prep; see Int8MatMulWithIsa.)
  const bool q4 = format == WeightFormat::kQ4;
#ifdef SSMQ_HAVE_AVX2_KERNELS
  if (isa == Int8Isa::kAvx2) return q4 ? RowsAvx2<true> : RowsAvx2<false>;
#endif
  (void)isa;
  return q4 ? RowsScalar<true> : RowsScalar<false>;
}

}  // namespace

void BuildQ8BlockSums(Weight& w, const ActQuant& aq) {
  if (w.format != WeightFormat::kQ8 || w.codes == nullptr || !aq.enabled()) return;
  const int64_t block = Int8BlockWidth(w, aq);
  if (block < kQ8SumMinBlock) return;
  const int64_t nb = (w.cols + block - 1) / block;
  w.q8_block_sums.assign(static_cast<size_t>(w.rows * nb), 0);
  const int8_t* codes = reinterpret_cast<const int8_t*>(w.codes);
  for (int64_t r = 0; r < w.rows; ++r)
    BlockSums(codes + r * w.cols, w.cols, block, w.q8_block_sums.data() + r * nb, 1);
  w.q8_sum_block = block;
}

Int8Isa BestInt8Isa() {
  switch (CpuIsa()) {
    case KernelIsa::kAvx512: return Int8Isa::kAvx512Vnni;
    case KernelIsa::kAvx2: return Int8Isa::kAvx2;
    default: return Int8Isa::kScalar;
  }
}

namespace {

constexpr int64_t kInt8RowChunk = 16;

// Rows [r0, r1) of y NaN for every token: what a call with incompatible
// weight and activation groups gets (a caller bug, see act_quant.h), loud
// rather than silent garbage.
void FillNaNRows(float* y, int64_t y_stride, int64_t n_tokens, int64_t r0, int64_t r1) {
  for (int64_t t = 0; t < n_tokens; ++t)
    std::fill(y + t * y_stride + r0, y + t * y_stride + r1,
              std::numeric_limits<float>::quiet_NaN());
}

// A decode-sized token block of Int8MatMul, prepared (RowsPlan).
struct Int8PlanState {
  Int8Args args;
  Int8Isa isa;
  Int8RowsKernel kernel;  // scalar / AVX2
#ifdef SSMQ_HAVE_AVX2_KERNELS
  Int8Prep prep;  // AVX-512 VNNI
#endif
};

void RunInt8Plan(const Int8PlanState& p, int64_t row0, int64_t row1) {
  const Weight& w = *p.args.w;
  if (p.args.block <= 0)
    return FillNaNRows(p.args.y, p.args.y_stride, p.args.n_tokens, row0, row1);
#ifdef SSMQ_HAVE_AVX2_KERNELS
  const bool q4 = w.format == WeightFormat::kQ4;
  const auto rows_avx512 = q4 ? RowsAvx512<true> : RowsAvx512<false>;
  const bool vnni = p.isa == Int8Isa::kAvx512Vnni;
  if ((vnni || p.isa == Int8Isa::kAvx2) && TiledInt8Applies(w, p.args, p.prep)) {
    // Whole tiles inside [row0, row1) from the tiles (each tile's bytes stay in
    // L1 across the tokens), the rows around them row-major.
    int64_t t0 = 0, t1 = 0;
    TilesWithin(w, row0, row1, &t0, &t1);
    if (t1 > t0) {
      if (row0 < t0 * kWeightTileRows) {
        if (vnni) rows_avx512(p.args, p.prep, row0, t0 * kWeightTileRows);
        else p.kernel(p.args, row0, t0 * kWeightTileRows);
      }
      const auto tiled = vnni ? (q4 ? TiledInt8Q4 : TiledInt8Q8)
                              : (q4 ? TiledInt8Q4Avx2 : TiledInt8Q8Avx2);
      for (int64_t tile = t0; tile < t1; ++tile)
        for (int64_t t = 0; t < p.args.n_tokens; ++t) tiled(p.args, p.prep, tile, t);
      row0 = t1 * kWeightTileRows;
    }
  }
#endif
  for (int64_t r0 = row0; r0 < row1; r0 += kInt8RowChunk) {
    const int64_t r1 = std::min(row1, r0 + kInt8RowChunk);
#ifdef SSMQ_HAVE_AVX2_KERNELS
    if (p.isa == Int8Isa::kAvx512Vnni) {
      rows_avx512(p.args, p.prep, r0, r1);
      continue;
    }
#endif
    p.kernel(p.args, r0, r1);
  }
}

RowsPlan PlanInt8(Int8Isa isa, const Weight& w, const Weight* bias, const ActQuant& aq,
                  const int8_t* q, const float* row_scales, int64_t n_tokens, float* y,
                  int64_t y_stride) {
  if (static_cast<int>(isa) > static_cast<int>(BestInt8Isa())) isa = BestInt8Isa();
  Int8PlanState p{};
  const int64_t block = Int8BlockWidth(w, aq);
  p.args = Int8Args{&w, &aq, block, w.groups_per_row(), q, row_scales,
                    bias && bias->present() ? bias->f32 : nullptr, n_tokens, y, y_stride};
  p.isa = isa;
  p.kernel = Int8Kernel(isa, w.format);
#ifdef SSMQ_HAVE_AVX2_KERNELS
  if (block > 0 && (isa == Int8Isa::kAvx512Vnni || (isa == Int8Isa::kAvx2 && w.has_tiles())))
    p.prep = PrepareInt8(isa, w, block, q, n_tokens);
#endif
  return RowsPlan::Make<Int8PlanState, RunInt8Plan>(p);
}

// Rows [row0, row1) over n_threads (1: the calling thread only).
void Int8MatMulRange(Int8Isa isa, const Weight& w, const Weight* bias, const ActQuant& aq,
                     const int8_t* q, const float* row_scales, int64_t n_tokens, float* y,
                     int64_t y_stride, int64_t row0, int64_t row1, int n_threads) {
  // Token blocks and row chunks exactly as MatMul (weight.cpp): a block's
  // activations (<= 64 x cols bytes; the prefill lane path: 256) stay in
  // cache while each weight row streams past them once.
  constexpr int64_t kTokenBlock = 64;
  constexpr int64_t kRowChunk = kInt8RowChunk;
  const int64_t block = Int8BlockWidth(w, aq);
  if (block <= 0) return FillNaNRows(y, y_stride, n_tokens, row0, row1);
  if (static_cast<int>(isa) > static_cast<int>(BestInt8Isa())) isa = BestInt8Isa();
  const float* b = bias && bias->present() ? bias->f32 : nullptr;
  const int64_t n_rows = row1 - row0;
  const int64_t n_chunks = (n_rows + kRowChunk - 1) / kRowChunk;
  const int nt = ThreadCount(n_threads);
  for (int64_t t0 = 0; t0 < n_tokens;) {
#ifdef SSMQ_HAVE_AVX2_KERNELS
    const bool lanes = isa == Int8Isa::kAvx512Vnni && LanePathApplies(w, block, n_tokens - t0);
#else
    const bool lanes = false;
#endif
    const int64_t tn = std::min(lanes ? kLaneTokenBlock : kTokenBlock, n_tokens - t0);
    const Int8Args args{&w, &aq, block, w.groups_per_row(), q + t0 * w.cols, row_scales + t0, b, tn,
                        y + t0 * y_stride, y_stride};
    t0 += tn;
#ifdef SSMQ_HAVE_AVX2_KERNELS
    const bool q4 = w.format == WeightFormat::kQ4;
    if (lanes) {  // tokens in lanes; row chunks of four 8-row tiles
      const LanePrep lp = PrepareLanes(w, block, args.q, args.row_scales, tn);
      constexpr int64_t kLaneChunk = 4 * kLaneRows;
      const int64_t lane_chunks = (n_rows + kLaneChunk - 1) / kLaneChunk;
      ForEachIndex(lane_chunks, nt, WorthThreads(tn * n_rows * w.cols, nt), [&](int64_t ch) {
        const int64_t r0 = row0 + ch * kLaneChunk, r1 = std::min(row1, r0 + kLaneChunk);
        if (q4) LaneRows<true>(args, lp, r0, r1);
        else LaneRows<false>(args, lp, r0, r1);
      });
      continue;
    }
#endif
    const RowsPlan plan = PlanInt8(isa, w, bias, aq, args.q, args.row_scales, tn, args.y, y_stride);
    ForEachIndex(n_chunks, nt, WorthThreads(tn * n_rows * w.cols, nt), [&](int64_t ch) {
      const int64_t r0 = row0 + ch * kRowChunk;
      plan.Run(r0, std::min(row1, r0 + kRowChunk));
    });
  }
}

}  // namespace

void Int8MatMulWithIsa(Int8Isa isa, const Weight& w, const Weight* bias, const ActQuant& aq,
                       const int8_t* q, const float* row_scales, int64_t n_tokens, float* y,
                       int64_t y_stride, int n_threads) {
  Int8MatMulRange(isa, w, bias, aq, q, row_scales, n_tokens, y, y_stride, 0, w.rows, n_threads);
}

bool Int8PlanApplies(int64_t n_tokens) {
  return n_tokens >= 1 && n_tokens <= 64;  // one token block of Int8MatMulRange
}

RowsPlan PlanInt8MatMul(const Weight& w, const Weight* bias, const ActQuant& aq, const int8_t* q,
                        const float* row_scales, int64_t n_tokens, float* y, int64_t y_stride) {
  return PlanInt8(BestInt8Isa(), w, bias, aq, q, row_scales, n_tokens, y, y_stride);
}

void Int8MatMul(const Weight& w, const Weight* bias, const ActQuant& aq, const int8_t* q,
                const float* row_scales, int64_t n_tokens, float* y, int64_t y_stride,
                int n_threads) {
  Int8MatMulWithIsa(BestInt8Isa(), w, bias, aq, q, row_scales, n_tokens, y, y_stride,
                    n_threads);
}

}  // namespace ssmq::rt
