// Q8 / Q4 / F16 / BF16 weight matmul kernels: the scalar reference, AVX2
// (+FMA, F16C) and AVX-512 versions. The quantized ones visit a weight row
// group by group: the group's codes are turned into f32 (q - z) values,
// dotted with each token's x, and the group sum is scaled once by s[r][g].
// The SIMD code keeps one vector accumulator per token (up to four tokens
// share each converted weight vector) and scales the group vector by a
// broadcast s, so no horizontal sum happens before the end of the row.
#include "runtime_cpu/quant_matmul.h"
#include "runtime_cpu/weight_tiles.h"

#include <algorithm>
#include <cstring>

#include "format/quant.h"

#ifdef SSMQ_HAVE_X86_KERNELS
#define SSMQ_HAVE_AVX2_KERNELS 1
#define SSMQ_AVX2 SSMQ_TARGET_AVX2
#endif

namespace ssmq::rt {

namespace {

// ---------------------------------------------------------------- scalar

void Q8RowsScalar(const Weight& w, int64_t r0, int64_t r1, const float* bias, const float* x,
                  int64_t x_stride, int64_t n_tokens, float* y, int64_t y_stride) {
  const int64_t cols = w.cols, G = w.group_size, ng = w.groups_per_row();
  for (int64_t r = r0; r < r1; ++r) {
    const int8_t* q = reinterpret_cast<const int8_t*>(w.codes) + r * cols;
    const float* s = w.scales + r * ng;
    for (int64_t t = 0; t < n_tokens; ++t) {
      const float* xt = x + t * x_stride;
      float acc = 0;
      for (int64_t g = 0; g < ng; ++g) {
        const int64_t c1 = std::min(cols, (g + 1) * G);
        float group_sum = 0;
        for (int64_t c = g * G; c < c1; ++c) group_sum += static_cast<float>(q[c]) * xt[c];
        acc += group_sum * s[g];
      }
      y[t * y_stride + r] = acc + (bias ? bias[r] : 0.0f);
    }
  }
}

void Q4RowsScalar(const Weight& w, int64_t r0, int64_t r1, const float* bias, const float* x,
                  int64_t x_stride, int64_t n_tokens, float* y, int64_t y_stride) {
  const int64_t cols = w.cols, G = w.group_size, ng = w.groups_per_row();
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* q = w.codes + r * (cols / 2);
    const float* s = w.scales + r * ng;
    for (int64_t t = 0; t < n_tokens; ++t) {
      const float* xt = x + t * x_stride;
      float acc = 0;
      for (int64_t g = 0; g < ng; ++g) {
        const int64_t c1 = std::min(cols, (g + 1) * G);
        const int z = Q4Zero(w, r * ng + g);
        float group_sum = 0;
        for (int64_t c = g * G; c < c1; ++c)
          group_sum += static_cast<float>(static_cast<int>(Q4Get(q, c)) - z) * xt[c];
        acc += group_sum * s[g];
      }
      y[t * y_stride + r] = acc + (bias ? bias[r] : 0.0f);
    }
  }
}

template <bool kBf16>
inline float HalfValue(uint16_t h) {
  return kBf16 ? BF16ToF32(h) : F16ToF32(h);
}

template <bool kBf16>
void HalfRowsScalar(const Weight& w, int64_t r0, int64_t r1, const float* bias, const float* x,
                    int64_t x_stride, int64_t n_tokens, float* y, int64_t y_stride) {
  const int64_t cols = w.cols;
  for (int64_t r = r0; r < r1; ++r) {
    const uint16_t* h = w.half + r * cols;
    for (int64_t t = 0; t < n_tokens; ++t) {
      const float* xt = x + t * x_stride;
      float acc = 0;
      for (int64_t c = 0; c < cols; ++c) acc += HalfValue<kBf16>(h[c]) * xt[c];
      y[t * y_stride + r] = acc + (bias ? bias[r] : 0.0f);
    }
  }
}

// ---------------------------------------------------------------- AVX2

#ifdef SSMQ_HAVE_AVX2_KERNELS

SSMQ_AVX2 inline float HorizontalSum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// 8 int8 codes -> 8 floats.
SSMQ_AVX2 inline __m256 LoadQ8x8(const int8_t* q) {
  const __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(q));
  return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b));
}

// 8 packed nibbles (4 bytes, element 2k in the low nibble of byte k, i.e.
// element i in bits 4i..4i+3 of the little-endian 32-bit word) minus z ->
// 8 floats. Each lane shifts the broadcast word by 4i and masks its nibble;
// OR-ing 0x4B000000 makes the float 2^23 + code exactly, and subtracting
// 2^23 + z leaves code - z exactly. Avoids the shuffle port (no unpack or
// sign extension), which the straightforward unpack saturates in decode.
struct Q4Unpacker {
  __m256i shifts, mask, magic;
  __m256 offset;
};

SSMQ_AVX2 inline Q4Unpacker MakeQ4Unpacker(int z) {
  return {_mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28), _mm256_set1_epi32(0xF),
          _mm256_set1_epi32(0x4B000000), _mm256_set1_ps(8388608.0f + static_cast<float>(z))};
}

SSMQ_AVX2 inline __m256 LoadQ4x8(const uint8_t* packed, const Q4Unpacker& u) {
  int32_t word;
  std::memcpy(&word, packed, 4);
  const __m256i v = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(word), u.shifts), u.mask);
  return _mm256_sub_ps(_mm256_castsi256_ps(_mm256_or_si256(v, u.magic)), u.offset);
}

// One weight row against NT (1..4) tokens.
template <int NT, bool kQ4>
SSMQ_AVX2 void RowTile(const Weight& w, int64_t r, const float* const* xs, float* out) {
  const int64_t cols = w.cols, G = w.group_size, ng = w.groups_per_row();
  const float* s = w.scales + r * ng;
  __m256 acc[NT];
  float tail[NT];
  for (int k = 0; k < NT; ++k) acc[k] = _mm256_setzero_ps(), tail[k] = 0.0f;
  for (int64_t g = 0; g < ng; ++g) {
    const int64_t c0 = g * G, c1 = std::min(cols, c0 + G);
    // Two accumulator chains per token so that a single token (decode) is
    // not bound by the FMA latency of one dependency chain.
    __m256 gacc[NT], gacc2[NT];
    for (int k = 0; k < NT; ++k) gacc[k] = _mm256_setzero_ps(), gacc2[k] = _mm256_setzero_ps();
    int64_t c = c0;
    int z = 0;
    if constexpr (kQ4) {
      z = Q4Zero(w, r * ng + g);
      const uint8_t* q = w.codes + r * (cols / 2);
      const Q4Unpacker unpack = MakeQ4Unpacker(z);
      for (; c + 16 <= c1; c += 16) {  // c0 is even (G and cols are), so c/2 is exact
        const __m256 lo = LoadQ4x8(q + c / 2, unpack);
        const __m256 hi = LoadQ4x8(q + c / 2 + 4, unpack);
        for (int k = 0; k < NT; ++k) {
          gacc[k] = _mm256_fmadd_ps(lo, _mm256_loadu_ps(xs[k] + c), gacc[k]);
          gacc2[k] = _mm256_fmadd_ps(hi, _mm256_loadu_ps(xs[k] + c + 8), gacc2[k]);
        }
      }
    } else {
      const int8_t* q = reinterpret_cast<const int8_t*>(w.codes) + r * cols;
      for (; c + 16 <= c1; c += 16) {
        const __m256 w0 = LoadQ8x8(q + c), w1 = LoadQ8x8(q + c + 8);
        for (int k = 0; k < NT; ++k) {
          gacc[k] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(xs[k] + c), gacc[k]);
          gacc2[k] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(xs[k] + c + 8), gacc2[k]);
        }
      }
      for (; c + 8 <= c1; c += 8) {
        const __m256 wv = LoadQ8x8(q + c);
        for (int k = 0; k < NT; ++k)
          gacc[k] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(xs[k] + c), gacc[k]);
      }
    }
    const __m256 sv = _mm256_set1_ps(s[g]);
    for (int k = 0; k < NT; ++k)
      acc[k] = _mm256_fmadd_ps(_mm256_add_ps(gacc[k], gacc2[k]), sv, acc[k]);
    if (c < c1) {  // group tail shorter than one vector step
      for (int k = 0; k < NT; ++k) {
        float part = 0;
        for (int64_t cc = c; cc < c1; ++cc) {
          const float wq =
              kQ4 ? static_cast<float>(static_cast<int>(Q4Get(w.codes + r * (cols / 2), cc)) - z)
                  : static_cast<float>(reinterpret_cast<const int8_t*>(w.codes)[r * cols + cc]);
          part += wq * xs[k][cc];
        }
        tail[k] += part * s[g];
      }
    }
  }
  for (int k = 0; k < NT; ++k) out[k] = HorizontalSum(acc[k]) + tail[k];
}

template <bool kQ4>
SSMQ_AVX2 void RowsAvx2(const Weight& w, int64_t r0, int64_t r1, const float* bias,
                        const float* x, int64_t x_stride, int64_t n_tokens, float* y,
                        int64_t y_stride) {
  for (int64_t r = r0; r < r1; ++r) {
    const float b = bias ? bias[r] : 0.0f;
    int64_t t = 0;
    float out[4];
    for (; t + 4 <= n_tokens; t += 4) {
      const float* xs[4] = {x + t * x_stride, x + (t + 1) * x_stride, x + (t + 2) * x_stride,
                            x + (t + 3) * x_stride};
      RowTile<4, kQ4>(w, r, xs, out);
      for (int k = 0; k < 4; ++k) y[(t + k) * y_stride + r] = out[k] + b;
    }
    for (; t < n_tokens; ++t) {
      const float* xs[1] = {x + t * x_stride};
      RowTile<1, kQ4>(w, r, xs, out);
      y[t * y_stride + r] = out[0] + b;
    }
  }
}

void Q8RowsAvx2(const Weight& w, int64_t r0, int64_t r1, const float* bias, const float* x,
                int64_t x_stride, int64_t n_tokens, float* y, int64_t y_stride) {
  RowsAvx2<false>(w, r0, r1, bias, x, x_stride, n_tokens, y, y_stride);
}
void Q4RowsAvx2(const Weight& w, int64_t r0, int64_t r1, const float* bias, const float* x,
                int64_t x_stride, int64_t n_tokens, float* y, int64_t y_stride) {
  RowsAvx2<true>(w, r0, r1, bias, x, x_stride, n_tokens, y, y_stride);
}


// F16 / BF16 rows: 8 values per vector, converted by vcvtph2ps (F16C) or a
// 16-bit shift (BF16); one tile of NT tokens, two chains per token.
template <bool kBf16>
SSMQ_AVX2 inline __m256 LoadHalfx8(const uint16_t* h) {
  const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(h));
  if constexpr (kBf16) return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(v), 16));
  return _mm256_cvtph_ps(v);
}

template <int NT, bool kBf16>
SSMQ_AVX2 void HalfTileAvx2(const Weight& w, int64_t r, const float* const* xs, float* out) {
  const int64_t cols = w.cols;
  const uint16_t* h = w.half + r * cols;
  __m256 a0[NT], a1[NT];
  for (int k = 0; k < NT; ++k) a0[k] = _mm256_setzero_ps(), a1[k] = _mm256_setzero_ps();
  int64_t c = 0;
  const int64_t ahead = kPrefetchRows * cols;  // as RowTile512: rows are one stream
  for (; c + 16 <= cols; c += 16) {
    if (c % 32 == 0) PrefetchRead(h + c + ahead);  // one 64-byte line per 32 values
    const __m256 w0 = LoadHalfx8<kBf16>(h + c), w1 = LoadHalfx8<kBf16>(h + c + 8);
    for (int k = 0; k < NT; ++k) {
      a0[k] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(xs[k] + c), a0[k]);
      a1[k] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(xs[k] + c + 8), a1[k]);
    }
  }
  for (int k = 0; k < NT; ++k) {
    float tail = 0;
    for (int64_t cc = c; cc < cols; ++cc) tail += HalfValue<kBf16>(h[cc]) * xs[k][cc];
    out[k] = HorizontalSum(_mm256_add_ps(a0[k], a1[k])) + tail;
  }
}

template <bool kBf16>
SSMQ_AVX2 void HalfRowsAvx2(const Weight& w, int64_t r0, int64_t r1, const float* bias,
                            const float* x, int64_t x_stride, int64_t n_tokens, float* y,
                            int64_t y_stride) {
  for (int64_t r = r0; r < r1; ++r) {
    const float b = bias ? bias[r] : 0.0f;
    int64_t t = 0;
    float out[4];
    for (; t + 4 <= n_tokens; t += 4) {
      const float* xs[4] = {x + t * x_stride, x + (t + 1) * x_stride, x + (t + 2) * x_stride,
                            x + (t + 3) * x_stride};
      HalfTileAvx2<4, kBf16>(w, r, xs, out);
      for (int k = 0; k < 4; ++k) y[(t + k) * y_stride + r] = out[k] + b;
    }
    for (; t < n_tokens; ++t) {
      const float* xs[1] = {x + t * x_stride};
      HalfTileAvx2<1, kBf16>(w, r, xs, out);
      y[t * y_stride + r] = out[0] + b;
    }
  }
}

// One row's values -> f32 (the expanded path), 8 at a time.
SSMQ_AVX2 void DequantizeRowAvx2(const Weight& w, int64_t r, float* out) {
  const int64_t cols = w.cols;
  if (w.is_half()) {
    const uint16_t* h = w.half + r * cols;
    int64_t c = 0;
    if (w.format == WeightFormat::kF16) {
      for (; c + 8 <= cols; c += 8) _mm256_storeu_ps(out + c, LoadHalfx8<false>(h + c));
      for (; c < cols; ++c) out[c] = F16ToF32(h[c]);
    } else {
      for (; c + 8 <= cols; c += 8) _mm256_storeu_ps(out + c, LoadHalfx8<true>(h + c));
      for (; c < cols; ++c) out[c] = BF16ToF32(h[c]);
    }
    return;
  }
  const int64_t G = w.group_size, ng = w.groups_per_row();
  for (int64_t g = 0; g < ng; ++g) {
    const float s = w.scales[r * ng + g];
    const __m256 sv = _mm256_set1_ps(s);
    const int64_t c0 = g * G, c1 = std::min(cols, c0 + G);
    int64_t c = c0;
    if (w.format == WeightFormat::kQ8) {
      const int8_t* q = reinterpret_cast<const int8_t*>(w.codes) + r * cols;
      for (; c + 8 <= c1; c += 8) _mm256_storeu_ps(out + c, _mm256_mul_ps(LoadQ8x8(q + c), sv));
      for (; c < c1; ++c) out[c] = static_cast<float>(q[c]) * s;
    } else {
      const uint8_t* q = w.codes + r * (cols / 2);
      const int z = Q4Zero(w, r * ng + g);
      const Q4Unpacker unpack = MakeQ4Unpacker(z);
      for (; c + 8 <= c1; c += 8)
        _mm256_storeu_ps(out + c, _mm256_mul_ps(LoadQ4x8(q + c / 2, unpack), sv));
      for (; c < c1; ++c) out[c] = static_cast<float>(static_cast<int>(Q4Get(q, c)) - z) * s;
    }
  }
}

// ---------------------------------------------------------------- AVX-512
// The same tiles with 16-float vectors. Q4: the 8 bytes of 16 codes are
// spread so that lane i holds the 32-bit word containing code i (a vpermd),
// then shifted by 4*(i mod 8) and masked, as in the AVX2 unpacker.

SSMQ_TARGET_AVX512 inline __m512 LoadQ8x16(const int8_t* q) {
  return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q))));
}

struct Q4Unpacker512 {
  __m512i spread, shifts, mask, magic;
  __m512 offset;
};

SSMQ_TARGET_AVX512 inline Q4Unpacker512 MakeQ4Unpacker512(int z) {
  return {_mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1),
          _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 0, 4, 8, 12, 16, 20, 24, 28),
          _mm512_set1_epi32(0xF), _mm512_set1_epi32(0x4B000000),
          _mm512_set1_ps(8388608.0f + static_cast<float>(z))};
}

SSMQ_TARGET_AVX512 inline __m512 LoadQ4x16(const uint8_t* packed, const Q4Unpacker512& u) {
  const __m512i words = _mm512_permutexvar_epi32(
      u.spread, _mm512_zextsi128_si512(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(packed))));
  const __m512i v = _mm512_and_si512(_mm512_srlv_epi32(words, u.shifts), u.mask);
  return _mm512_sub_ps(_mm512_castsi512_ps(_mm512_or_si512(v, u.magic)), u.offset);
}

template <bool kBf16>
SSMQ_TARGET_AVX512 inline __m512 LoadHalfx16(const uint16_t* h) {
  const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(h));
  if constexpr (kBf16) return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(v), 16));
  return _mm512_cvtph_ps(v);
}

// One weight row against NT (1..4) tokens; kFormat any non-f32 format.
template <int NT, WeightFormat kFormat>
SSMQ_TARGET_AVX512 void RowTile512(const Weight& w, int64_t r, const float* const* xs, float* out) {
  constexpr bool kHalf = kFormat == WeightFormat::kF16 || kFormat == WeightFormat::kBF16;
  const int64_t cols = w.cols;
  const int64_t G = kHalf ? cols : w.group_size, ng = kHalf ? 1 : w.groups_per_row();
  const float* s = kHalf ? nullptr : w.scales + r * ng;
  __m512 acc[NT];
  float tail[NT];
  for (int k = 0; k < NT; ++k) acc[k] = _mm512_setzero_ps(), tail[k] = 0.0f;
  for (int64_t g = 0; g < ng; ++g) {
    const int64_t c0 = g * G, c1 = std::min(cols, c0 + G);
    __m512 gacc[NT], gacc2[NT];
    for (int k = 0; k < NT; ++k) gacc[k] = _mm512_setzero_ps(), gacc2[k] = _mm512_setzero_ps();
    int64_t c = c0;
    int z = 0;
    auto fma2 = [&](__m512 w0, __m512 w1, int64_t cc) SSMQ_TARGET_AVX512 {
      for (int k = 0; k < NT; ++k) {
        gacc[k] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(xs[k] + cc), gacc[k]);
        gacc2[k] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(xs[k] + cc + 16), gacc2[k]);
      }
    };
    // Prefetch kPrefetchRows rows ahead (simd_dispatch.h): rows are
    // contiguous, so that is a fixed byte distance along the stream.
    if constexpr (kFormat == WeightFormat::kQ4) {
      z = Q4Zero(w, r * ng + g);
      const uint8_t* q = w.codes + r * (cols / 2);
      const int64_t ahead = kPrefetchRows * (cols / 2);
      const Q4Unpacker512 unpack = MakeQ4Unpacker512(z);
      for (; c + 32 <= c1; c += 32) {
        PrefetchRead(q + c / 2 + ahead);
        fma2(LoadQ4x16(q + c / 2, unpack), LoadQ4x16(q + c / 2 + 8, unpack), c);
      }
    } else if constexpr (kFormat == WeightFormat::kQ8) {
      const int8_t* q = reinterpret_cast<const int8_t*>(w.codes) + r * cols;
      const int64_t ahead = kPrefetchRows * cols;
      for (; c + 32 <= c1; c += 32) {
        PrefetchRead(q + c + ahead);
        fma2(LoadQ8x16(q + c), LoadQ8x16(q + c + 16), c);
      }
    } else {
      const uint16_t* h = w.half + r * cols;
      const int64_t ahead = kPrefetchRows * cols;
      constexpr bool kBf16 = kFormat == WeightFormat::kBF16;
      for (; c + 32 <= c1; c += 32) {
        PrefetchRead(h + c + ahead);
        fma2(LoadHalfx16<kBf16>(h + c), LoadHalfx16<kBf16>(h + c + 16), c);
      }
    }
    for (int k = 0; k < NT; ++k) {
      const __m512 sum = _mm512_add_ps(gacc[k], gacc2[k]);
      acc[k] = kHalf ? _mm512_add_ps(sum, acc[k]) : _mm512_fmadd_ps(sum, _mm512_set1_ps(s[g]), acc[k]);
    }
    if (c < c1) {  // group tail shorter than one 32-column step
      for (int k = 0; k < NT; ++k) {
        float part = 0;
        for (int64_t cc = c; cc < c1; ++cc) {
          float wq;
          if constexpr (kFormat == WeightFormat::kQ4)
            wq = static_cast<float>(static_cast<int>(Q4Get(w.codes + r * (cols / 2), cc)) - z);
          else if constexpr (kFormat == WeightFormat::kQ8)
            wq = static_cast<float>(reinterpret_cast<const int8_t*>(w.codes)[r * cols + cc]);
          else
            wq = HalfValue<kFormat == WeightFormat::kBF16>(w.half[r * cols + cc]);
          part += wq * xs[k][cc];
        }
        tail[k] += kHalf ? part : part * s[g];
      }
    }
  }
  for (int k = 0; k < NT; ++k) out[k] = ReduceAdd512(acc[k]) + tail[k];
}

template <WeightFormat kFormat>
SSMQ_TARGET_AVX512 void Rows512(const Weight& w, int64_t r0, int64_t r1, const float* bias,
                                const float* x, int64_t x_stride, int64_t n_tokens, float* y,
                                int64_t y_stride) {
  for (int64_t r = r0; r < r1; ++r) {
    const float b = bias ? bias[r] : 0.0f;
    int64_t t = 0;
    float out[4];
    for (; t + 4 <= n_tokens; t += 4) {
      const float* xs[4] = {x + t * x_stride, x + (t + 1) * x_stride, x + (t + 2) * x_stride,
                            x + (t + 3) * x_stride};
      RowTile512<4, kFormat>(w, r, xs, out);
      for (int k = 0; k < 4; ++k) y[(t + k) * y_stride + r] = out[k] + b;
    }
    for (; t < n_tokens; ++t) {
      const float* xs[1] = {x + t * x_stride};
      RowTile512<1, kFormat>(w, r, xs, out);
      y[t * y_stride + r] = out[0] + b;
    }
  }
}

SSMQ_TARGET_AVX512 void DequantizeRowAvx512(const Weight& w, int64_t r, float* out) {
  const int64_t cols = w.cols;
  if (w.is_half()) {
    const uint16_t* h = w.half + r * cols;
    int64_t c = 0;
    if (w.format == WeightFormat::kF16) {
      for (; c + 16 <= cols; c += 16) _mm512_storeu_ps(out + c, LoadHalfx16<false>(h + c));
      for (; c < cols; ++c) out[c] = F16ToF32(h[c]);
    } else {
      for (; c + 16 <= cols; c += 16) _mm512_storeu_ps(out + c, LoadHalfx16<true>(h + c));
      for (; c < cols; ++c) out[c] = BF16ToF32(h[c]);
    }
    return;
  }
  const int64_t G = w.group_size, ng = w.groups_per_row();
  for (int64_t g = 0; g < ng; ++g) {
    const float s = w.scales[r * ng + g];
    const __m512 sv = _mm512_set1_ps(s);
    const int64_t c0 = g * G, c1 = std::min(cols, c0 + G);
    int64_t c = c0;
    if (w.format == WeightFormat::kQ8) {
      const int8_t* q = reinterpret_cast<const int8_t*>(w.codes) + r * cols;
      for (; c + 16 <= c1; c += 16) _mm512_storeu_ps(out + c, _mm512_mul_ps(LoadQ8x16(q + c), sv));
      for (; c < c1; ++c) out[c] = static_cast<float>(q[c]) * s;
    } else {
      const uint8_t* q = w.codes + r * (cols / 2);
      const int z = Q4Zero(w, r * ng + g);
      const Q4Unpacker512 unpack = MakeQ4Unpacker512(z);
      for (; c + 16 <= c1; c += 16)
        _mm512_storeu_ps(out + c, _mm512_mul_ps(LoadQ4x16(q + c / 2, unpack), sv));
      for (; c < c1; ++c) out[c] = static_cast<float>(static_cast<int>(Q4Get(q, c)) - z) * s;
    }
  }
}


// Q4 at decode (a few tokens, f32 activations), AVX-512: the activations are
// reordered once per call so that each 32-column block holds its 16 even
// columns then its 16 odd ones (Q4Activations). A weight row's 16 bytes of
// the block widen to lanes (byte k -> lane k) whose low nibble is column 2k
// and high nibble column 2k+1; each indexes a 16-entry table of the group's
// dequantized values (k - z) · s (vpermps), so scale and zero point cost
// nothing per column. Four rows share every activation load.
template <int MR>
SSMQ_TARGET_AVX512 void Q4DecodeTile(const Weight& w, int64_t r, const Q4Activations& xa,
                                     int64_t t, float* out) {
  const int64_t cols = w.cols, G = w.group_size, ng = w.groups_per_row();
  const float* xp = xa.reordered + t * cols;
  const uint8_t* q[MR];
  for (int i = 0; i < MR; ++i) q[i] = w.codes + (r + i) * (cols / 2);
  const __m512 iota = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const int64_t ahead = kPrefetchRows * (cols / 2);  // rows on (simd_dispatch.h)
  __m512 acc[MR], acc2[MR];
  for (int i = 0; i < MR; ++i) acc[i] = _mm512_setzero_ps(), acc2[i] = _mm512_setzero_ps();
  for (int64_t g = 0; g < ng; ++g) {
    // The group's 16 dequantized values (k - z) · s as a lookup table: vpermps
    // reads only the low 4 bits of each index, so a byte's low nibble indexes
    // it directly and the high nibble after one shift.
    __m512 table[MR];
    for (int i = 0; i < MR; ++i) {
      const int64_t si = (r + i) * ng + g;
      table[i] = _mm512_mul_ps(_mm512_sub_ps(iota, _mm512_set1_ps(static_cast<float>(Q4Zero(w, si)))),
                               _mm512_set1_ps(w.scales[si]));
    }
    for (int64_t c = g * G; c < (g + 1) * G; c += 32) {
      const __m512 xe = _mm512_loadu_ps(xp + c), xo = _mm512_loadu_ps(xp + c + 16);
      for (int i = 0; i < MR; ++i) PrefetchRead(q[i] + c / 2 + ahead);
      for (int i = 0; i < MR; ++i) {
        const __m512i v =
            _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q[i] + c / 2)));
        acc[i] = _mm512_fmadd_ps(_mm512_permutexvar_ps(v, table[i]), xe, acc[i]);
        acc2[i] = _mm512_fmadd_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(v, 4), table[i]), xo,
                                  acc2[i]);
      }
    }
  }
  for (int i = 0; i < MR; ++i) out[i] = ReduceAdd512(_mm512_add_ps(acc[i], acc2[i]));
}

SSMQ_TARGET_AVX512 void Q4DecodeRowsAvx512(const Weight& w, int64_t r0, int64_t r1,
                                           const float* bias, const Q4Activations& xa,
                                           int64_t n_tokens, float* y, int64_t y_stride) {
  for (int64_t t = 0; t < n_tokens; ++t) {
    float* yt = y + t * y_stride;
    int64_t r = r0;
    float out[4];
    for (; r + 4 <= r1; r += 4) {
      Q4DecodeTile<4>(w, r, xa, t, out);
      for (int i = 0; i < 4; ++i) yt[r + i] = out[i] + (bias ? bias[r + i] : 0.0f);
    }
    for (; r < r1; ++r) {
      Q4DecodeTile<1>(w, r, xa, t, out);
      yt[r] = out[0] + (bias ? bias[r] : 0.0f);
    }
  }
}

#endif  // SSMQ_HAVE_AVX2_KERNELS

}  // namespace

QuantRowsKernel QuantKernel(WeightFormat format, KernelIsa isa) {
  switch (isa) {
    case KernelIsa::kScalar:
      switch (format) {
        case WeightFormat::kF32: return nullptr;
        case WeightFormat::kF16: return HalfRowsScalar<false>;
        case WeightFormat::kBF16: return HalfRowsScalar<true>;
        case WeightFormat::kQ8: return Q8RowsScalar;
        case WeightFormat::kQ4: return Q4RowsScalar;
      }
      return nullptr;
#ifdef SSMQ_HAVE_AVX2_KERNELS
    case KernelIsa::kAvx2:
      switch (format) {
        case WeightFormat::kF32: return nullptr;
        case WeightFormat::kF16: return HalfRowsAvx2<false>;
        case WeightFormat::kBF16: return HalfRowsAvx2<true>;
        case WeightFormat::kQ8: return Q8RowsAvx2;
        case WeightFormat::kQ4: return Q4RowsAvx2;
      }
      return nullptr;
    case KernelIsa::kAvx512:
      switch (format) {
        case WeightFormat::kF32: return nullptr;
        case WeightFormat::kF16: return Rows512<WeightFormat::kF16>;
        case WeightFormat::kBF16: return Rows512<WeightFormat::kBF16>;
        case WeightFormat::kQ8: return Rows512<WeightFormat::kQ8>;
        case WeightFormat::kQ4: return Rows512<WeightFormat::kQ4>;
      }
      return nullptr;
#endif
    default: return nullptr;
  }
}

KernelIsa BestKernelIsa() { return CpuIsa(); }

bool Q4DecodeApplies(const Weight& w, KernelIsa isa) {
  return isa == KernelIsa::kAvx512 && w.format == WeightFormat::kQ4 && w.group_size > 0 &&
         w.group_size % 32 == 0 && w.cols % w.group_size == 0;
}

Q4Activations PrepareQ4Activations(const Weight& w, const float* x, int64_t x_stride,
                                   int64_t n_tokens) {
  thread_local std::vector<float> reordered;  // grown once, then reused
  const int64_t cols = w.cols;
  Grow(reordered, static_cast<size_t>(n_tokens * cols));
  for (int64_t t = 0; t < n_tokens; ++t) {
    const float* xt = x + t * x_stride;
    float* o = reordered.data() + t * cols;
    for (int64_t c = 0; c < cols; c += 32)
      for (int k = 0; k < 16; ++k) o[c + k] = xt[c + 2 * k], o[c + 16 + k] = xt[c + 2 * k + 1];
  }
  return {reordered.data()};
}

void Q4DecodeRows(const Weight& w, int64_t r0, int64_t r1, const float* bias,
                  const Q4Activations& xa, int64_t n_tokens, float* y, int64_t y_stride) {
#ifdef SSMQ_HAVE_AVX2_KERNELS
  Q4DecodeRowsAvx512(w, r0, r1, bias, xa, n_tokens, y, y_stride);
#else
  (void)w, (void)r0, (void)r1, (void)bias, (void)xa, (void)n_tokens, (void)y, (void)y_stride;
#endif
}

namespace {

// A one-row Weight over row r of a tiled Q4 / Q8 weight (weight_tiles.h), its
// codes (and, from w.tiled_scales, its scales) copied back to row-major form
// into `row` (`row_scales`), so that the row-major pages, handed back after
// tiling, are not faulted in again (a tied embedding's lookups: one row per
// token, spread over every page).
const Weight& TiledRowView(const Weight& w, int64_t r, std::vector<uint8_t>& row,
                           std::vector<float>& row_scales, Weight& view, int64_t& view_row) {
  view_row = r;
  if (!w.row_tiled(r)) return w;
  Grow(row, static_cast<size_t>(RowCodeBytes(w)));
  UntileRow(w, r, row.data());
  view.rows = 1;
  view.cols = w.cols;
  view.format = w.format;
  view.source_type = w.source_type;
  view.group_size = w.group_size;
  view.codes = row.data();
  const int64_t ng = w.groups_per_row();
  view.scales = w.scales + r * ng;
  if (w.tiled_scales) {
    Grow(row_scales, static_cast<size_t>(ng));
    const TileScaleWalk sw = TileScalesOf(w, r / kWeightTileRows);
    for (int64_t g = 0; g < ng; ++g)
      row_scales[g] = sw.at[g * sw.group_step + (r % kWeightTileRows) * sw.lane_step];
    view.scales = row_scales.data();
  }
  view_row = 0;
  return view;
}

}  // namespace

static void DequantizeRowsRowMajor(const Weight& w, int64_t r0, int64_t r1, float* out, KernelIsa isa);

void DequantizeRows(const Weight& w, int64_t r0, int64_t r1, float* out, KernelIsa isa) {
  if (!w.has_tiles()) return DequantizeRowsRowMajor(w, r0, r1, out, isa);
  thread_local std::vector<uint8_t> row;
  thread_local std::vector<float> row_scales;
  Weight view;
  for (int64_t r = r0; r < r1; ++r) {
    int64_t vr = 0;
    const Weight& v = TiledRowView(w, r, row, row_scales, view, vr);
    DequantizeRowsRowMajor(v, vr, vr + 1, out + (r - r0) * w.cols, isa);
  }
}

static void DequantizeRowsRowMajor(const Weight& w, int64_t r0, int64_t r1, float* out, KernelIsa isa) {
  const int64_t cols = w.cols;
  for (int64_t r = r0; r < r1; ++r) {
    float* o = out + (r - r0) * cols;
#ifdef SSMQ_HAVE_AVX2_KERNELS
    if (w.format != WeightFormat::kF32 && isa == KernelIsa::kAvx512) {
      DequantizeRowAvx512(w, r, o);
      continue;
    }
    if (w.format != WeightFormat::kF32 && isa == KernelIsa::kAvx2) {
      DequantizeRowAvx2(w, r, o);
      continue;
    }
#endif
    (void)isa;
    DequantizeRow(w, r, o);
  }
}

void DequantizeRow(const Weight& w, int64_t r, float* out) {
  if (w.has_tiles()) {
    thread_local std::vector<uint8_t> row;
    thread_local std::vector<float> row_scales;
    Weight view;
    int64_t vr = 0;
    const Weight& v = TiledRowView(w, r, row, row_scales, view, vr);
    if (&v != &w) return DequantizeRow(v, vr, out);
  }
  const int64_t cols = w.cols;
  if (w.format == WeightFormat::kF32) {
    std::copy_n(w.f32 + r * cols, cols, out);
    return;
  }
  if (w.is_half()) {
    const uint16_t* h = w.half + r * cols;
    if (w.format == WeightFormat::kF16) {
      for (int64_t c = 0; c < cols; ++c) out[c] = F16ToF32(h[c]);
    } else {
      for (int64_t c = 0; c < cols; ++c) out[c] = BF16ToF32(h[c]);
    }
    return;
  }
  const int64_t G = w.group_size, ng = w.groups_per_row();
  for (int64_t g = 0; g < ng; ++g) {
    const float s = w.scales[r * ng + g];
    const int64_t c1 = std::min(cols, (g + 1) * G);
    if (w.format == WeightFormat::kQ8) {
      const int8_t* q = reinterpret_cast<const int8_t*>(w.codes) + r * cols;
      for (int64_t c = g * G; c < c1; ++c) out[c] = static_cast<float>(q[c]) * s;
    } else {
      const uint8_t* q = w.codes + r * (cols / 2);
      const int z = Q4Zero(w, r * ng + g);
      for (int64_t c = g * G; c < c1; ++c)
        out[c] = static_cast<float>(static_cast<int>(Q4Get(q, c)) - z) * s;
    }
  }
}

}  // namespace ssmq::rt
