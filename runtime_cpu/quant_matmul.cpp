// Q8 / Q4 weight matmul kernels: the scalar reference and AVX2+FMA versions.
// Both visit a weight row group by group: the group's codes are turned into
// f32 (q - z) values, dotted with each token's x, and the group sum is scaled
// once by s[r][g]. The AVX2 code keeps one vector accumulator per token (four
// tokens share each converted weight vector) and scales the group vector by
// a broadcast s, so no horizontal sum happens before the end of the row.
#include "runtime_cpu/quant_matmul.h"

#include <algorithm>
#include <cstring>

#include "format/quant.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define SSMQ_HAVE_AVX2_KERNELS 1
#define SSMQ_AVX2 __attribute__((target("avx2,fma")))
#endif

namespace ssmq::rt {

namespace {

inline int Q4Zero(const Weight& w, int64_t scale_index) {
  return w.zeros ? static_cast<int>(w.zeros[scale_index]) : 8;
}

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

#endif  // SSMQ_HAVE_AVX2_KERNELS

}  // namespace

QuantRowsKernel QuantKernel(WeightFormat format, KernelIsa isa) {
  if (format == WeightFormat::kF32) return nullptr;
  const bool q4 = format == WeightFormat::kQ4;
  if (isa == KernelIsa::kScalar) return q4 ? Q4RowsScalar : Q8RowsScalar;
#ifdef SSMQ_HAVE_AVX2_KERNELS
  return q4 ? Q4RowsAvx2 : Q8RowsAvx2;
#else
  return nullptr;
#endif
}

KernelIsa BestKernelIsa() {
  static const KernelIsa isa = [] {
#ifdef SSMQ_HAVE_AVX2_KERNELS
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return KernelIsa::kAvx2;
#endif
    return KernelIsa::kScalar;
  }();
  return isa;
}

void DequantizeRow(const Weight& w, int64_t r, float* out) {
  const int64_t cols = w.cols;
  if (w.format == WeightFormat::kF32) {
    std::copy_n(w.f32 + r * cols, cols, out);
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
