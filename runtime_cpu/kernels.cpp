#include "runtime_cpu/kernels.h"

#include <algorithm>
#include <cmath>

#include "runtime_cpu/activations.h"
#include "runtime_cpu/activations256.h"
#include "runtime_cpu/activations512.h"
#include "runtime_cpu/simd_dispatch.h"
#include "runtime_cpu/weight.h"

namespace ssmq::rt {

namespace {

SSMQ_HOT void RmsNormRow(const float* x, int64_t dim, const float* weight, float eps, float* out) {
  float ss = 0;
#pragma omp simd reduction(+ : ss)
  for (int64_t i = 0; i < dim; ++i) ss += x[i] * x[i];
  const float inv = 1.0f / std::sqrt(ss / static_cast<float>(dim) + eps);
  for (int64_t i = 0; i < dim; ++i) out[i] = x[i] * inv * weight[i];
}

}  // namespace

SSMQ_HOT void GroupRmsNormRow(float* v, int64_t dim, int64_t group, const float* weight,
                              double eps) {
  const float eps_f = static_cast<float>(eps);
  for (int64_t g0 = 0; g0 < dim; g0 += group) {
    float* vg = v + g0;
    const float* wg = weight + g0;
    float ss = 0;
#pragma omp simd reduction(+ : ss)
    for (int64_t i = 0; i < group; ++i) ss += vg[i] * vg[i];
    const float inv = 1.0f / std::sqrt(ss / static_cast<float>(group) + eps_f);
    for (int64_t i = 0; i < group; ++i) vg[i] = vg[i] * inv * wg[i];
  }
}

void RmsNormRows(const float* x, int64_t n_rows, int64_t dim, const float* weight, double eps,
                 float* out, int n_threads) {
  const int nt = ThreadCount(n_threads);
  ForEachIndex(n_rows, nt, WorthThreads(4 * n_rows * dim, nt), [&](int64_t r) {
    RmsNormRow(x + r * dim, dim, weight, static_cast<float>(eps), out + r * dim);
  });
}

void GatedRmsNormRows(const float* y, int64_t y_stride, const float* z, int64_t z_stride,
                      int64_t n_rows, int64_t dim, int64_t group, const float* weight,
                      double eps, float* out, int64_t out_stride, int n_threads) {
  const int nt = ThreadCount(n_threads);
  ForEachIndex(n_rows, nt, WorthThreads(8 * n_rows * dim, nt), [&](int64_t r) {
    GateChannels(y + r * y_stride, z + r * z_stride, dim, out + r * out_stride);
    GroupRmsNormRow(out + r * out_stride, dim, group, weight, eps);
  });
}

#ifdef SSMQ_HAVE_X86_KERNELS
namespace {
int64_t ConvStep4Avx512(const float* x, int64_t c0, int64_t c1, const float* w,
                        const float* bias, float* state, float* out);
int64_t ConvStep4Avx2(const float* x, int64_t c0, int64_t c1, const float* w,
                      const float* bias, float* state, float* out);
int64_t SiluSpanAvx512(float* x, int64_t n);
int64_t SiluSpanAvx2(float* x, int64_t n);
int64_t GateSpanAvx512(const float* y, const float* z, int64_t n, float* out);
int64_t GateSpanAvx2(const float* y, const float* z, int64_t n, float* out);
}  // namespace
#endif

// x[i] = silu(x[i]) for i < n, in SIMD where the CPU has it.
void SiluInPlace(float* x, int64_t n) {
  int64_t done = 0;
#ifdef SSMQ_HAVE_X86_KERNELS
  if (CpuIsa() == KernelIsa::kAvx512) done = SiluSpanAvx512(x, n);
  else if (CpuIsa() == KernelIsa::kAvx2) done = SiluSpanAvx2(x, n);
#endif
  for (int64_t i = done; i < n; ++i) x[i] = Silu(x[i]);
}

void GateChannels(const float* y, const float* z, int64_t n, float* out) {
  int64_t done = 0;
#ifdef SSMQ_HAVE_X86_KERNELS
  if (CpuIsa() == KernelIsa::kAvx512) done = GateSpanAvx512(y, z, n, out);
  else if (CpuIsa() == KernelIsa::kAvx2) done = GateSpanAvx2(y, z, n, out);
#endif
  for (int64_t i = done; i < n; ++i) out[i] = y[i] * Silu(z[i]);
}

SSMQ_HOT void CausalConvSilu(const float* src, int64_t src_stride, int64_t L, int64_t c0,
                             int64_t c1, int64_t K, const float* w, const float* bias,
                             float* state, float* out, int64_t out_stride) {
  const int64_t hist = K - 1;
  if (L == 1) {  // decode: one token, every tap but the last from the state
    int64_t c_done = c0;
#ifdef SSMQ_HAVE_X86_KERNELS
    if (K == 4 && CpuIsa() == KernelIsa::kAvx512)
      c_done = ConvStep4Avx512(src, c0, c1, w, bias, state, out);
    else if (K == 4 && CpuIsa() == KernelIsa::kAvx2)
      c_done = ConvStep4Avx2(src, c0, c1, w, bias, state, out);
#endif
    for (int64_t c = c_done; c < c1; ++c) {
      const float* wc = w + c * K;
      float* sc = state + c * hist;
      const float x = src[c];
      float acc = bias ? bias[c] : 0.0f;
      for (int64_t k = 0; k < hist; ++k) acc += wc[k] * sc[k];
      out[c] = acc + wc[hist] * x;
      for (int64_t j = 0; j + 1 < hist; ++j) sc[j] = sc[j + 1];
      if (hist > 0) sc[hist - 1] = x;
    }
    SiluInPlace(out + c_done, c1 - c_done);  // a separate pass: vectorizes
    return;
  }
  // Input at time tau (may be negative: then from the state).
  auto in = [&](int64_t tau, int64_t c) {
    return tau >= 0 ? src[tau * src_stride + c] : state[c * hist + hist + tau];
  };
  const int64_t warm = std::min(L, hist);  // tokens that reach into the state
  for (int64_t t = 0; t < warm; ++t) {
    for (int64_t c = c0; c < c1; ++c) {
      float acc = bias ? bias[c] : 0.0f;
      for (int64_t k = 0; k < K; ++k) acc += w[c * K + k] * in(t - hist + k, c);
      out[t * out_stride + c] = Silu(acc);
    }
  }
  // The rest: taps transposed to [k][channel] for a block of channels so the
  // inner loops run over contiguous channels; SiLU in its own pass.
  constexpr int64_t kBlock = 64;
  constexpr int64_t kMaxTaps = 8;
  if (K <= kMaxTaps) {
    alignas(64) float wt[kMaxTaps][kBlock];
    alignas(64) float b0[kBlock];
    for (int64_t cb = c0; cb < c1; cb += kBlock) {
      const int64_t n = std::min(kBlock, c1 - cb);
      for (int64_t j = 0; j < n; ++j) {
        for (int64_t k = 0; k < K; ++k) wt[k][j] = w[(cb + j) * K + k];
        b0[j] = bias ? bias[cb + j] : 0.0f;
      }
      for (int64_t t = warm; t < L; ++t) {
        const float* base = src + (t - hist) * src_stride + cb;
        float* o = out + t * out_stride + cb;
#pragma omp simd
        for (int64_t j = 0; j < n; ++j) o[j] = b0[j];
        for (int64_t k = 0; k < K; ++k) {
          const float* xk = base + k * src_stride;
          const float* wk = wt[k];
#pragma omp simd
          for (int64_t j = 0; j < n; ++j) o[j] += wk[j] * xk[j];
        }
        SiluInPlace(o, n);
      }
    }
  } else {
    for (int64_t t = warm; t < L; ++t) {
      const float* base = src + (t - hist) * src_stride;
      float* o = out + t * out_stride;
      for (int64_t c = c0; c < c1; ++c) {
        float acc = bias ? bias[c] : 0.0f;
        for (int64_t k = 0; k < K; ++k) acc += w[c * K + k] * base[k * src_stride + c];
        o[c] = Silu(acc);
      }
    }
  }
  // New state: the last K-1 inputs. Ascending j reads state[L + j] (> j) before it is overwritten.
  for (int64_t c = c0; c < c1; ++c) {
    for (int64_t j = 0; j < hist; ++j) state[c * hist + j] = in(L - hist + j, c);
  }
}

namespace {

// One channel at a time, vectorized over the state (any d_state).
void Mamba1ScanByChannel(int64_t L, int64_t d0, int64_t d1, int64_t N, const float* x,
                         int64_t x_stride, const float* dt_raw, int64_t dt_stride,
                         const float* bc, int64_t bc_stride, const float* z, int64_t z_stride,
                         const float* A, const float* D, float* state, float* y,
                         int64_t y_stride) {
  for (int64_t t = 0; t < L; ++t) {
    const float* B = bc + t * bc_stride;
    const float* C = B + N;
    for (int64_t d = d0; d < d1; ++d) {
      const float dtv = Softplus(dt_raw[t * dt_stride + d]);
      const float xv = x[t * x_stride + d];
      const float* a = A + d * N;
      float* s = state + d * N;
      float acc = 0;
#pragma omp simd reduction(+ : acc)
      for (int64_t n = 0; n < N; ++n) {
        const float sn = FastExp(dtv * a[n]) * s[n] + (dtv * B[n]) * xv;
        s[n] = sn;
        acc += sn * C[n];
      }
      y[t * y_stride + d] = (acc + D[d] * xv) * Silu(z[t * z_stride + d]);
    }
  }
}

#ifdef SSMQ_HAVE_X86_KERNELS
// The decode conv for d_conv = 4 (every Mamba checkpoint), 16 channels at a
// time: the taps [c][4] and the state [c][3] are de-interleaved in registers
// (two vpermt2ps each) so the four taps are four FMAs over 16 channels, and the
// shifted state is interleaved back the same way. Same order of operations as
// the scalar loop (bias, three state taps, then the new input). Returns the
// first channel left for the scalar loop.
SSMQ_TARGET_AVX512 int64_t ConvStep4Avx512(const float* x, int64_t c0, int64_t c1,
                                           const float* w, const float* bias, float* state,
                                           float* out) {
  // The vpermt2ps index vectors, built once.
  struct Indices {
    alignas(64) int32_t wlo[4][16], slo[3][16], shi[3][16], ilo[3][16], ihi[3][16];
    Indices() {
      for (int k = 0; k < 4; ++k)
        for (int j = 0; j < 16; ++j) wlo[k][j] = (4 * j + k) & 31;  // lanes 0-7 valid per half
      for (int k = 0; k < 3; ++k) {
        for (int j = 0; j < 16; ++j) {
          const int m = 3 * j + k;  // tap k of channel j inside 48 state floats
          slo[k][j] = m < 32 ? m : 0;
          shi[k][j] = m < 32 ? j : 16 + (m - 32);
        }
      }
      for (int v = 0; v < 3; ++v) {  // output vector v of the new state: element 16v + i
        for (int i = 0; i < 16; ++i) {
          const int m = 16 * v + i, j = m / 3, k = m % 3;  // new tap k: 0 <- old 1, 1 <- old 2, 2 <- x
          ilo[v][i] = k < 2 ? k * 16 + j : 0;
          ihi[v][i] = k < 2 ? i : 16 + j;
        }
      }
    }
  };
  static const Indices ix;
  const auto& wlo = ix.wlo;
  const auto& slo = ix.slo;
  const auto& shi = ix.shi;
  const auto& ilo = ix.ilo;
  const auto& ihi = ix.ihi;
  int64_t c = c0;
  for (; c + 16 <= c1; c += 16) {
    const float* wc = w + c * 4;
    __m512 tap[4];
    for (int k = 0; k < 4; ++k) {
      const __m512i idx = _mm512_load_si512(wlo[k]);
      const __m512 lo = _mm512_permutex2var_ps(_mm512_loadu_ps(wc), idx, _mm512_loadu_ps(wc + 16));
      const __m512 hi =
          _mm512_permutex2var_ps(_mm512_loadu_ps(wc + 32), idx, _mm512_loadu_ps(wc + 48));
      tap[k] = _mm512_shuffle_f32x4(lo, hi, 0x44);
    }
    float* sc = state + c * 3;
    const __m512 s0 = _mm512_loadu_ps(sc), s1 = _mm512_loadu_ps(sc + 16),
                 s2 = _mm512_loadu_ps(sc + 32);
    __m512 st[3];
    for (int k = 0; k < 3; ++k) {
      const __m512 t = _mm512_permutex2var_ps(s0, _mm512_load_si512(slo[k]), s1);
      st[k] = _mm512_permutex2var_ps(t, _mm512_load_si512(shi[k]), s2);
    }
    const __m512 xv = _mm512_loadu_ps(x + c);
    __m512 acc = bias ? _mm512_loadu_ps(bias + c) : _mm512_setzero_ps();
    for (int k = 0; k < 3; ++k) acc = _mm512_fmadd_ps(tap[k], st[k], acc);
    acc = _mm512_fmadd_ps(tap[3], xv, acc);
    const __m512 one = _mm512_set1_ps(1.0f);
    _mm512_storeu_ps(out + c, _mm512_div_ps(acc, _mm512_add_ps(one, FastExp512(
                                                               _mm512_sub_ps(_mm512_setzero_ps(), acc)))));
    for (int v = 0; v < 3; ++v) {
      const __m512 t = _mm512_permutex2var_ps(st[1], _mm512_load_si512(ilo[v]), st[2]);
      _mm512_storeu_ps(sc + 16 * v, _mm512_permutex2var_ps(t, _mm512_load_si512(ihi[v]), xv));
    }
  }
  return c;
}

// Lane i from a0, a1 or a2 by key[i] = 0, 1, 2 (blendv reads each lane's sign bit).
SSMQ_TARGET_AVX2 inline __m256 Pick3(__m256 a0, __m256 a1, __m256 a2, const int32_t* key) {
  const __m256i k = _mm256_load_si256(reinterpret_cast<const __m256i*>(key));
  const __m256 is1 = _mm256_castsi256_ps(_mm256_cmpeq_epi32(k, _mm256_set1_epi32(1)));
  const __m256 is2 = _mm256_castsi256_ps(_mm256_cmpeq_epi32(k, _mm256_set1_epi32(2)));
  return _mm256_blendv_ps(_mm256_blendv_ps(a0, a1, is1), a2, is2);
}

// ConvStep4Avx512 for AVX2, 8 channels at a time: the taps [c][4] by a 4x4
// transpose in each 128-bit half, the state [c][3] de-interleaved (and the
// new one interleaved back) by lane permutes and blends. Same order of
// operations as the scalar loop; SiLU by Silu256 (within 2 ulp of Silu).
SSMQ_TARGET_AVX2 int64_t ConvStep4Avx2(const float* x, int64_t c0, int64_t c1, const float* w,
                                       const float* bias, float* state, float* out) {
  // Element m of 24 interleaved floats (channel m / 3, tap m % 3) is lane m % 8
  // of vector m / 8. De-interleave: tap k, lane j <- element 3j + k.
  // Interleave: vector v, lane i <- tap (8v + i) % 3 of channel (8v + i) / 3.
  struct Indices {
    alignas(32) int32_t get[3][8];       // lane of the source vector
    alignas(32) int32_t get_from[3][8];  // which source vector (0-2), as a blend key
    alignas(32) int32_t put[3][8];       // lane (channel) of the source tap vector
    alignas(32) int32_t put_from[3][8];  // which tap (0-2)
    Indices() {
      for (int k = 0; k < 3; ++k)
        for (int j = 0; j < 8; ++j) get[k][j] = (3 * j + k) % 8, get_from[k][j] = (3 * j + k) / 8;
      for (int v = 0; v < 3; ++v)
        for (int i = 0; i < 8; ++i) put[v][i] = (8 * v + i) / 3, put_from[v][i] = (8 * v + i) % 3;
    }
  };
  static const Indices ix;
  int64_t c = c0;
  for (; c + 8 <= c1; c += 8) {
    const float* wc = w + c * 4;
    const __m256 r0 = _mm256_loadu_ps(wc), r1 = _mm256_loadu_ps(wc + 8),
                 r2 = _mm256_loadu_ps(wc + 16), r3 = _mm256_loadu_ps(wc + 24);
    const __m256 a0 = _mm256_permute2f128_ps(r0, r2, 0x20);  // channels 0 | 4
    const __m256 a1 = _mm256_permute2f128_ps(r0, r2, 0x31);  // 1 | 5
    const __m256 a2 = _mm256_permute2f128_ps(r1, r3, 0x20);  // 2 | 6
    const __m256 a3 = _mm256_permute2f128_ps(r1, r3, 0x31);  // 3 | 7
    const __m256 t0 = _mm256_unpacklo_ps(a0, a1), t1 = _mm256_unpackhi_ps(a0, a1);
    const __m256 t2 = _mm256_unpacklo_ps(a2, a3), t3 = _mm256_unpackhi_ps(a2, a3);
    const __m256 tap[4] = {_mm256_shuffle_ps(t0, t2, 0x44), _mm256_shuffle_ps(t0, t2, 0xEE),
                           _mm256_shuffle_ps(t1, t3, 0x44), _mm256_shuffle_ps(t1, t3, 0xEE)};
    float* sc = state + c * 3;
    const __m256 s0 = _mm256_loadu_ps(sc), s1 = _mm256_loadu_ps(sc + 8),
                 s2 = _mm256_loadu_ps(sc + 16);
    __m256 st[3];
    for (int k = 0; k < 3; ++k) {
      const __m256i g = _mm256_load_si256(reinterpret_cast<const __m256i*>(ix.get[k]));
      st[k] = Pick3(_mm256_permutevar8x32_ps(s0, g), _mm256_permutevar8x32_ps(s1, g),
                    _mm256_permutevar8x32_ps(s2, g), ix.get_from[k]);
    }
    const __m256 xv = _mm256_loadu_ps(x + c);
    __m256 acc = bias ? _mm256_loadu_ps(bias + c) : _mm256_setzero_ps();
    for (int k = 0; k < 3; ++k) acc = _mm256_fmadd_ps(tap[k], st[k], acc);
    acc = _mm256_fmadd_ps(tap[3], xv, acc);
    _mm256_storeu_ps(out + c, Silu256(acc));
    for (int v = 0; v < 3; ++v) {  // new taps: 0 <- old 1, 1 <- old 2, 2 <- x
      const __m256i p = _mm256_load_si256(reinterpret_cast<const __m256i*>(ix.put[v]));
      _mm256_storeu_ps(sc + 8 * v, Pick3(_mm256_permutevar8x32_ps(st[1], p),
                                         _mm256_permutevar8x32_ps(st[2], p),
                                         _mm256_permutevar8x32_ps(xv, p), ix.put_from[v]));
    }
  }
  return c;
}

// SiLU and y · silu(z) over whole vectors; the caller does the tail.
SSMQ_TARGET_AVX512 int64_t SiluSpanAvx512(float* x, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(x + i, Silu512(_mm512_loadu_ps(x + i)));
  return i;
}

SSMQ_TARGET_AVX512 int64_t GateSpanAvx512(const float* y, const float* z, int64_t n, float* out) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(out + i, _mm512_mul_ps(_mm512_loadu_ps(y + i), Silu512(_mm512_loadu_ps(z + i))));
  return i;
}

SSMQ_TARGET_AVX2 int64_t SiluSpanAvx2(float* x, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, Silu256(_mm256_loadu_ps(x + i)));
  return i;
}

SSMQ_TARGET_AVX2 int64_t GateSpanAvx2(const float* y, const float* z, int64_t n, float* out) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_loadu_ps(y + i), Silu256(_mm256_loadu_ps(z + i))));
  return i;
}

// Mamba1ScanChannelsGeneric's blocked loops written out for AVX2 (prefill on
// AVX2 hosts: GCC leaves the generic loop's x86-64-v3 clone scalar, and the
// scan was then as long as every matmul of the prefill together). The same
// [n][channel] layout of the state and A per block of kBlock channels; per
// token softplus, the N state updates (one FastExp256 each) and silu run on
// 8 channels a lane each, the n loop over all the block's vectors at once
// so their exponentials overlap. Column tails load and store masked; the
// unused lanes of the local blocks hold zeros. d_state a multiple of 8, at
// most kMaxState.
constexpr int64_t kScanAvx2MaxState = 64;

SSMQ_TARGET_AVX2 void Mamba1ScanChannelsAvx2(int64_t L, int64_t d0, int64_t d1, int64_t N,
                                             const float* x, int64_t x_stride,
                                             const float* dt_raw, int64_t dt_stride,
                                             const float* bc, int64_t bc_stride, const float* z,
                                             int64_t z_stride, const float* A, const float* D,
                                             float* state, float* y, int64_t y_stride) {
  constexpr int64_t kBlock = 32, kVecs = kBlock / 8;
  alignas(32) float s[kScanAvx2MaxState][kBlock];
  alignas(32) float at[kScanAvx2MaxState][kBlock];
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  for (int64_t b0 = d0; b0 < d1; b0 += kBlock) {
    const int64_t nb = std::min(kBlock, d1 - b0);
    const int64_t nv = (nb + 7) / 8;
    for (int64_t n = 0; n < N; ++n) {
      for (int64_t j = 0; j < kBlock; ++j) {
        s[n][j] = j < nb ? state[(b0 + j) * N + n] : 0.0f;
        at[n][j] = j < nb ? A[(b0 + j) * N + n] : 0.0f;
      }
    }
    __m256i m[kVecs];
    __m256 dv[kVecs];
    for (int64_t v = 0; v < kVecs; ++v) {
      m[v] = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(nb - 8 * v)), lane);
      dv[v] = _mm256_maskload_ps(D + b0 + 8 * v, m[v]);
    }
    for (int64_t t = 0; t < L; ++t) {
      const float* B = bc + t * bc_stride;
      const float* C = B + N;
      const float* xt = x + t * x_stride + b0;
      const float* dtt = dt_raw + t * dt_stride + b0;
      __m256 dt[kVecs], dx[kVecs], xv[kVecs], acc[kVecs];
      for (int64_t v = 0; v < nv; ++v) {
        xv[v] = _mm256_maskload_ps(xt + 8 * v, m[v]);
        dt[v] = Softplus256(_mm256_maskload_ps(dtt + 8 * v, m[v]));
        dx[v] = _mm256_mul_ps(dt[v], xv[v]);
        acc[v] = _mm256_setzero_ps();
      }
      if (nv == kVecs) {  // whole blocks: the vector loop unrolled
        for (int64_t n = 0; n < N; ++n) {
          const __m256 bn = _mm256_broadcast_ss(B + n), cn = _mm256_broadcast_ss(C + n);
#pragma GCC unroll 4
          for (int64_t v = 0; v < kVecs; ++v) {
            const __m256 decay = FastExp256(_mm256_mul_ps(dt[v], _mm256_load_ps(&at[n][8 * v])));
            const __m256 sv =
                _mm256_fmadd_ps(decay, _mm256_load_ps(&s[n][8 * v]), _mm256_mul_ps(dx[v], bn));
            _mm256_store_ps(&s[n][8 * v], sv);
            acc[v] = _mm256_fmadd_ps(sv, cn, acc[v]);
          }
        }
      } else {
        for (int64_t n = 0; n < N; ++n) {
          const __m256 bn = _mm256_broadcast_ss(B + n), cn = _mm256_broadcast_ss(C + n);
          for (int64_t v = 0; v < nv; ++v) {
            const __m256 decay = FastExp256(_mm256_mul_ps(dt[v], _mm256_load_ps(&at[n][8 * v])));
            const __m256 sv =
                _mm256_fmadd_ps(decay, _mm256_load_ps(&s[n][8 * v]), _mm256_mul_ps(dx[v], bn));
            _mm256_store_ps(&s[n][8 * v], sv);
            acc[v] = _mm256_fmadd_ps(sv, cn, acc[v]);
          }
        }
      }
      const float* zt = z + t * z_stride + b0;
      float* yt = y + t * y_stride + b0;
      for (int64_t v = 0; v < nv; ++v) {
        const __m256 out = _mm256_fmadd_ps(dv[v], xv[v], acc[v]);
        _mm256_maskstore_ps(yt + 8 * v, m[v],
                            _mm256_mul_ps(out, Silu256(_mm256_maskload_ps(zt + 8 * v, m[v]))));
      }
    }
    for (int64_t n = 0; n < N; ++n) {
      for (int64_t j = 0; j < nb; ++j) state[(b0 + j) * N + n] = s[n][j];
    }
  }
}

#endif

}  // namespace

bool Mamba1ScanAvx2Applies(int64_t N) {
#ifdef SSMQ_HAVE_X86_KERNELS
  return N % 8 == 0 && N <= kScanAvx2MaxState && CpuIsa() == KernelIsa::kAvx2;
#else
  (void)N;
  return false;
#endif
}

void Mamba1ScanChannels(int64_t L, int64_t d0, int64_t d1, int64_t N, const float* x,
                        int64_t x_stride, const float* dt_raw, int64_t dt_stride, const float* bc,
                        int64_t bc_stride, const float* z, int64_t z_stride, const float* A,
                        const float* D, float* state, float* y, int64_t y_stride) {
  // Decode (one token): no time loop to amortize the generic loops'
  // transpose; the AVX-512 step runs over whole state vectors.
  if (L == 1 && Mamba1FusedStepApplies(N)) {
    return Mamba1StepChannelsFused(d0, d1, N, x, dt_raw, bc, z, A, D, state, y);
  }
#ifdef SSMQ_HAVE_X86_KERNELS
  if (Mamba1ScanAvx2Applies(N)) {
    return Mamba1ScanChannelsAvx2(L, d0, d1, N, x, x_stride, dt_raw, dt_stride, bc, bc_stride, z,
                                  z_stride, A, D, state, y, y_stride);
  }
#endif
  Mamba1ScanChannelsGeneric(L, d0, d1, N, x, x_stride, dt_raw, dt_stride, bc, bc_stride, z,
                            z_stride, A, D, state, y, y_stride);
}

SSMQ_HOT void Mamba1ScanChannelsGeneric(int64_t L, int64_t d0, int64_t d1, int64_t N,
                                        const float* x, int64_t x_stride, const float* dt_raw,
                                        int64_t dt_stride, const float* bc, int64_t bc_stride,
                                        const float* z, int64_t z_stride, const float* A,
                                        const float* D, float* state, float* y,
                                        int64_t y_stride) {
  // Channels go through in blocks of kBlock with the state and A transposed
  // to [n][d] locally, so every inner loop runs over contiguous channels
  // (vectorized across d, no horizontal reductions).
  constexpr int64_t kBlock = 32;
  constexpr int64_t kMaxState = 64;
  if (N > kMaxState) {
    Mamba1ScanByChannel(L, d0, d1, N, x, x_stride, dt_raw, dt_stride, bc, bc_stride, z, z_stride,
                        A, D, state, y, y_stride);
    return;
  }
  alignas(64) float s[kMaxState][kBlock];
  alignas(64) float at[kMaxState][kBlock];
  alignas(64) float dt[kBlock], dx[kBlock], acc[kBlock];
  for (int64_t b0 = d0; b0 < d1; b0 += kBlock) {
    const int64_t nb = std::min(kBlock, d1 - b0);
    for (int64_t n = 0; n < N; ++n) {
      for (int64_t j = 0; j < nb; ++j) {
        s[n][j] = state[(b0 + j) * N + n];
        at[n][j] = A[(b0 + j) * N + n];
      }
    }
    for (int64_t t = 0; t < L; ++t) {
      const float* B = bc + t * bc_stride;
      const float* C = B + N;
      const float* xt = x + t * x_stride + b0;
      const float* dtt = dt_raw + t * dt_stride + b0;
      for (int64_t j = 0; j < nb; ++j) {
        dt[j] = Softplus(dtt[j]);
        dx[j] = dt[j] * xt[j];
        acc[j] = 0.0f;
      }
      for (int64_t n = 0; n < N; ++n) {
        const float bn = B[n], cn = C[n];
        float* sn = s[n];
        const float* an = at[n];
        for (int64_t j = 0; j < nb; ++j) {
          const float v = FastExp(dt[j] * an[j]) * sn[j] + dx[j] * bn;
          sn[j] = v;
          acc[j] += v * cn;
        }
      }
      const float* zt = z + t * z_stride + b0;
      float* yt = y + t * y_stride + b0;
      for (int64_t j = 0; j < nb; ++j) yt[j] = (acc[j] + D[b0 + j] * xt[j]) * Silu(zt[j]);
    }
    for (int64_t n = 0; n < N; ++n) {
      for (int64_t j = 0; j < nb; ++j) state[(b0 + j) * N + n] = s[n][j];
    }
  }
}

// Scratch of Mamba2ChunkScanGroup, in floats. Qp = Q rounded up to 16 (the
// AVX-512 path works on whole 16-column vectors of the chunk):
//   cb, m        [Q][Qp] each   C.B products of the group / decay-masked weights of a head
//   Cc, Bc       [Q][N] each    the chunk's C and B rows, packed
//   BT           [N][Qp]        B transposed (columns of cb as vectors)
//   ST           [N][P]         a head's state transposed (columns of y as vectors)
//   Xc, Xw       [Q][P] each    a head's x rows, packed, and times the state-update weights
//   cs, ecs, dtv, wj, u [Qp] each
// The scalar path uses the first 2 Q^2 + 3 Q floats (its own layout).
int64_t Mamba2ChunkScratchFloats(const Mamba2Dims& dims, int64_t chunk) {
  const int64_t Q = chunk, Qp = (chunk + 15) / 16 * 16, P = dims.head_dim, N = dims.d_state;
  return 2 * Q * Qp + 2 * Q * N + N * Qp + N * P + 2 * Q * P + 5 * Qp;
}

namespace {

#ifdef SSMQ_HAVE_X86_KERNELS
// The chunk scan as register-tiled matrix products. Per chunk of q tokens
// (mamba2-370m: q = 256, P = 64, N = 128, 8 heads a slice on 2 threads):
//   cb = C B^T                 q x q, K = N   (lower triangle, once per group slice)
//   y  = diag(e^cs) C S^T      q x P, K = N   \ one tile pass per head,
//      + M X                   q x P, K <= q  /  M lower triangular
//   S  = e^cs[q-1] S + Xw^T B  P x N, K = q   (per head)
// about 2.1 M multiply-adds each per head and chunk for the last three.
// Every product is written as
//   acc[r][v] (+)= sum_k a(r, k) * b[k][16v .. 16v+15]
// (outer-product form: a(r, k) broadcast, b a row of 16-float vectors), in
// tiles of at most 6 rows x 4 vectors: 24 accumulators, and per k 4 vector
// loads + 6 broadcasts feed 24 FMAs. Outputs come out as whole rows, no
// horizontal sums (the dot products of the scalar path need one per output).
// The b operands are packed contiguous (B^T, S^T, x) so their rows stream
// from L1/L2 instead of 9 KiB-strided conv-output rows. Measured on the
// 2-core dev VM (one layer of mamba2-370m at 512 tokens, one thread): the
// plain loops ~62 ms, this ~9-12 ms; by perf shares the tile loops run at
// roughly 85% of a plain FMA loop's throughput.
constexpr int kTileRows = 6;
constexpr int kTileVecs = 4;

template <int MR, int NV>
SSMQ_TARGET_AVX512 inline void AccTile(int64_t K, const float* a, int64_t a_row, int64_t a_k,
                                       const float* b, int64_t ldb, __m512 (&acc)[MR][NV]) {
  for (int64_t k = 0; k < K; ++k) {
    __m512 bv[NV];
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) bv[v] = _mm512_loadu_ps(b + k * ldb + 16 * v);
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) {
      const __m512 av = _mm512_set1_ps(a[r * a_row + k * a_k]);
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_fmadd_ps(av, bv[v], acc[r][v]);
    }
  }
}

template <int MR, int NV>
SSMQ_TARGET_AVX512 inline void ZeroTile(__m512 (&acc)[MR][NV]) {
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_setzero_ps();
}

template <int MR, int NV>
SSMQ_TARGET_AVX512 inline void StoreTile(float* out, int64_t ld, const __m512 (&acc)[MR][NV]) {
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) _mm512_storeu_ps(out + r * ld + 16 * v, acc[r][v]);
}

// Runs T<MR, NV>::Run(args, i0, c0) over rows [0, rows) in blocks of MR
// (the tail in pieces of 4, 2, 1) and, per row block, over the first
// args.Vecs(block end) 16-column vectors in groups of NV (tail 2, 1).
template <template <int, int> class T, int MR, int NV, class Args>
SSMQ_TARGET_AVX512 inline void RunRowBlock(const Args& args, int64_t i0) {
  const int64_t nv = args.Vecs(i0 + MR);
  int64_t v = 0;
  for (; v + NV <= nv; v += NV) T<MR, NV>::Run(args, i0, 16 * v);
  if constexpr (NV > 2) {
    if (v + 2 <= nv) {
      T<MR, 2>::Run(args, i0, 16 * v);
      v += 2;
    }
  }
  if constexpr (NV > 1) {
    if (v < nv) T<MR, 1>::Run(args, i0, 16 * v);
  }
}

template <template <int, int> class T, int MR, int NV, class Args>
SSMQ_TARGET_AVX512 void RunTiles(const Args& args, int64_t rows) {
  static_assert(MR <= 8);
  int64_t i0 = 0;
  for (; i0 + MR <= rows; i0 += MR) RunRowBlock<T, MR, NV>(args, i0);
  if constexpr (MR > 4) {
    if (i0 + 4 <= rows) {
      RunRowBlock<T, 4, NV>(args, i0);
      i0 += 4;
    }
  }
  if constexpr (MR > 2) {
    if (i0 + 2 <= rows) {
      RunRowBlock<T, 2, NV>(args, i0);
      i0 += 2;
    }
  }
  if constexpr (MR > 1) {
    if (i0 < rows) RunRowBlock<T, 1, NV>(args, i0);
  }
}

// cb[i][j] = C_i . B_j: rows i (q of them) x columns j, K = N. Only the
// 16-column vectors that reach the lower triangle of the row block are
// computed (about half of the q x q square); entries above the diagonal in
// them are never read unmasked.
struct CbArgs {
  const float* cc;  // [q][N]
  const float* bt;  // [N][Qp]
  float* cb;        // [q][Qp]
  int64_t N, Qp;
  int64_t Vecs(int64_t row_end) const { return (row_end + 15) / 16; }
};
template <int MR, int NV>
struct CbTile {
  SSMQ_TARGET_AVX512 static void Run(const CbArgs& a, int64_t i0, int64_t c0) {
    __m512 acc[MR][NV];
    ZeroTile(acc);
    AccTile<MR, NV>(a.N, a.cc + i0 * a.N, a.N, 1, a.bt + c0, a.Qp, acc);
    StoreTile(a.cb + i0 * a.Qp + c0, a.Qp, acc);
  }
};

// y[i][p] = ecs[i] * sum_n C[i][n] ST[n][p]  +  sum_{j < i0+MR} m[i][j] X[j][p]
// (m is zero above the diagonal and holds D on it): rows i x columns p.
struct YArgs {
  const float *cc, *st, *ecs, *m, *xc;
  float* y;
  int64_t N, P, Qp, y_stride;
  int64_t Vecs(int64_t) const { return P / 16; }
};
template <int MR, int NV>
struct YTile {
  SSMQ_TARGET_AVX512 static void Run(const YArgs& a, int64_t i0, int64_t c0) {
    __m512 acc[MR][NV];
    ZeroTile(acc);
    AccTile<MR, NV>(a.N, a.cc + i0 * a.N, a.N, 1, a.st + c0, a.P, acc);
    for (int r = 0; r < MR; ++r) {
      const __m512 e = _mm512_set1_ps(a.ecs[i0 + r]);
      for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_mul_ps(acc[r][v], e);
    }
    AccTile<MR, NV>(i0 + MR, a.m + i0 * a.Qp, a.Qp, 1, a.xc + c0, a.P, acc);
    StoreTile(a.y + i0 * a.y_stride + c0, a.y_stride, acc);
  }
};

// S[p][n] = decay * S[p][n] + sum_j Xw[j][p] B[j][n]: rows p x columns n, K = q.
struct StateArgs {
  const float *xw, *bc;
  float* s;
  float decay;
  int64_t q, N, P;
  int64_t Vecs(int64_t) const { return N / 16; }
};
template <int MR, int NV>
struct StateTile {
  SSMQ_TARGET_AVX512 static void Run(const StateArgs& a, int64_t p0, int64_t c0) {
    __m512 acc[MR][NV];
    const __m512 decay = _mm512_set1_ps(a.decay);
    float* s = a.s + p0 * a.N + c0;
    for (int r = 0; r < MR; ++r)
      for (int v = 0; v < NV; ++v)
        acc[r][v] = _mm512_mul_ps(decay, _mm512_loadu_ps(s + r * a.N + 16 * v));
    AccTile<MR, NV>(a.q, a.xw + p0, 1, a.P, a.bc + c0, a.N, acc);
    StoreTile(s, a.N, acc);
  }
};

// dst[c][r] = src[r][c] for a 16 x 16 block; source rows from `rows` on read
// as zeros.
SSMQ_TARGET_AVX512 inline void Transpose16(const float* src, int64_t lds, int64_t rows,
                                           float* dst, int64_t ldd) {
  __m512 r[16], a[16];
  for (int k = 0; k < 16; ++k) {
    r[k] = k < rows ? _mm512_loadu_ps(src + k * lds) : _mm512_setzero_ps();
  }
  // Within 128-bit lanes: a[2k] = (r2k[0], r2k+1[0], r2k[1], r2k+1[1]), a[2k+1] the upper pairs.
  for (int k = 0; k < 8; ++k) {
    a[2 * k] = _mm512_unpacklo_ps(r[2 * k], r[2 * k + 1]);
    a[2 * k + 1] = _mm512_unpackhi_ps(r[2 * k], r[2 * k + 1]);
  }
  // r[4k + c], lane L: rows 4k .. 4k+3 of column 4L + c.
  for (int k = 0; k < 4; ++k) {
    const __m512d a0 = _mm512_castps_pd(a[4 * k]), a1 = _mm512_castps_pd(a[4 * k + 1]);
    const __m512d a2 = _mm512_castps_pd(a[4 * k + 2]), a3 = _mm512_castps_pd(a[4 * k + 3]);
    r[4 * k] = _mm512_castpd_ps(_mm512_unpacklo_pd(a0, a2));
    r[4 * k + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a0, a2));
    r[4 * k + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(a1, a3));
    r[4 * k + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(a1, a3));
  }
  // Column 4L + c = lane L of r[c], r[4 + c], r[8 + c], r[12 + c] (a 4 x 4 lane transpose).
  for (int c = 0; c < 4; ++c) {
    const __m512 e0 = _mm512_shuffle_f32x4(r[c], r[4 + c], 0x44);
    const __m512 e1 = _mm512_shuffle_f32x4(r[c], r[4 + c], 0xEE);
    const __m512 e2 = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0x44);
    const __m512 e3 = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0xEE);
    _mm512_storeu_ps(dst + c * ldd, _mm512_shuffle_f32x4(e0, e2, 0x88));
    _mm512_storeu_ps(dst + (4 + c) * ldd, _mm512_shuffle_f32x4(e0, e2, 0xDD));
    _mm512_storeu_ps(dst + (8 + c) * ldd, _mm512_shuffle_f32x4(e1, e3, 0x88));
    _mm512_storeu_ps(dst + (12 + c) * ldd, _mm512_shuffle_f32x4(e1, e3, 0xDD));
  }
}

// Rows of conv output are xbc_stride floats (9 KiB at mamba2-370m) apart,
// each on its own page, which the hardware prefetchers do not follow, and
// a layer's conv output (4.7 MB at 512 tokens) is out of L2: the rows are
// asked for well before they are copied. A head's x rows are asked for
// while the previous head's (or, for the first head, B and C) are copied,
// one head's work (~0.2 M cycles) ahead; B and C this many rows ahead.
constexpr int64_t kRowPrefetch = 8;

// The chunk scan's scratch as Mamba2ChunkScratchFloats lays it out, for
// both vector forms. Q = chunk, Qp = Q rounded up to 16.
struct ChunkScratch {
  float *cb, *m, *cc, *bc, *bt, *st, *xc, *xw, *cs, *ecs, *dtv, *wj, *u;
  ChunkScratch(float* scratch, int64_t Q, int64_t Qp, int64_t N, int64_t P) {
    cb = scratch;
    m = cb + Q * Qp;
    cc = m + Q * Qp;
    bc = cc + Q * N;
    bt = bc + Q * N;
    st = bt + N * Qp;
    xc = st + N * P;
    xw = xc + Q * P;
    cs = xw + Q * P;
    ecs = cs + Qp;
    dtv = ecs + Qp;
    wj = dtv + Qp;
    u = wj + Qp;
  }
};

// Copies the group's C and B of q rows into cc and bc, asking for each row's
// C and B kRowPrefetch rows ahead and for the first head's x (at x_off) now.
inline void GatherChunkRows(const float* rows, int64_t xbc_stride, int64_t q, int64_t b_off,
                            int64_t c_off, int64_t N, int64_t x_off, int64_t P, float* cc,
                            float* bc) {
  for (int64_t i = 0; i < q; ++i) {
    const float* row = rows + i * xbc_stride;
    if (i + kRowPrefetch < q) {
      PrefetchSpan(row + kRowPrefetch * xbc_stride + b_off, N * 4);
      PrefetchSpan(row + kRowPrefetch * xbc_stride + c_off, N * 4);
    }
    PrefetchSpan(row + x_off, P * 4);
    std::copy_n(row + c_off, N, cc + i * N);
    std::copy_n(row + b_off, N, bc + i * N);
  }
}

// A head's dt over the chunk (dtv) and its running sum times A (cs), both
// zero from q up to qv (padding: finite, weight 0). Returns cs[q - 1].
inline float CumulativeDecay(const float* dth, int64_t dt_stride, float Ah, int64_t q, int64_t qv,
                             float* dtv, float* cs) {
  float run = 0;
  for (int64_t i = 0; i < q; ++i) {
    dtv[i] = dth[i * dt_stride];
    run += dtv[i] * Ah;
    cs[i] = run;
  }
  for (int64_t i = q; i < qv; ++i) dtv[i] = cs[i] = 0.0f;
  return cs[q - 1];
}

// Mamba2ChunkScanGroup for head_dim and d_state multiples of 16.
SSMQ_TARGET_AVX512 void Mamba2ChunkScan512(const Mamba2Dims& dims, int64_t g, int64_t h0,
                                           int64_t h1, int64_t L, int64_t chunk,
                                           const float* xbc, int64_t xbc_stride, const float* dt,
                                           int64_t dt_stride, const float* A, const float* D,
                                           float* state, float* y, int64_t y_stride,
                                           float* scratch) {
  const int64_t P = dims.head_dim, N = dims.d_state, Q = chunk, Qp = (Q + 15) / 16 * 16;
  const int64_t b_off = dims.d_inner() + g * N;
  const int64_t c_off = dims.d_inner() + dims.n_groups * N + g * N;
  const auto [cb, m, cc, bc, bt, st, xc, xw, cs, ecs, dtv, wj, u] =
      ChunkScratch(scratch, Q, Qp, N, P);
  for (int64_t t0 = 0; t0 < L; t0 += Q) {
    const int64_t q = std::min(Q, L - t0), qv = (q + 15) / 16 * 16;
    const float* rows = xbc + t0 * xbc_stride;
    // The group's C and B rows, packed; B also transposed, with zero
    // columns up to a whole vector.
    GatherChunkRows(rows, xbc_stride, q, b_off, c_off, N, h0 * P, P, cc, bc);
    for (int64_t j = 0; j < q; j += 16) {
      for (int64_t n = 0; n < N; n += 16) {
        Transpose16(bc + j * N + n, N, q - j, bt + n * Qp + j, Qp);
      }
    }
    RunTiles<CbTile, kTileRows, kTileVecs>(CbArgs{cc, bt, cb, N, Qp}, q);
    for (int64_t h = h0; h < h1; ++h) {
      const float Ah = A[h];
      const float* dth = dt + t0 * dt_stride + h;
      float* S = state + h * P * N;
      const float total = CumulativeDecay(dth, dt_stride, Ah, q, qv, dtv, cs);
      const __m512 total_v = _mm512_set1_ps(total);
      for (int64_t j = 0; j < qv; j += 16) {
        const __m512 c = _mm512_loadu_ps(cs + j);
        _mm512_storeu_ps(ecs + j, FastExp512(c));
        _mm512_storeu_ps(wj + j, _mm512_mul_ps(FastExp512(_mm512_sub_ps(total_v, c)),
                                               _mm512_loadu_ps(dtv + j)));
      }
      // The head's x rows, plain and times the state-update weights.
      for (int64_t j = 0; j < q; ++j) {
        const float* xj = rows + j * xbc_stride + h * P;
        if (h + 1 < h1) PrefetchSpan(xj + P, P * 4);
        const __m512 w = _mm512_set1_ps(wj[j]);
        for (int64_t p = 0; p < P; p += 16) {
          const __m512 x = _mm512_loadu_ps(xj + p);
          _mm512_storeu_ps(xc + j * P + p, x);
          _mm512_storeu_ps(xw + j * P + p, _mm512_mul_ps(w, x));
        }
      }
      // m[i][j] = cb[i][j] * exp(cs[i] - cs[j]) * dt[j] for j <= i, 0 for j > i
      // up to the end of i's y row block (YTile reads that far), D on the
      // diagonal. Below the 16 x 16 diagonal blocks the decay factors as
      // exp(cs[i] - cs[i0]) * exp(cs[i0] - cs[j]) (i0: i rounded down to
      // 16; both factors <= 1, as cs falls), the second shared by 16 rows:
      // q + q^2/32 exponentials a head instead of q^2/2.
      for (int64_t i0 = 0; i0 < q; i0 += 16) {
        const __m512 cs0 = _mm512_set1_ps(cs[i0]);
        for (int64_t j = 0; j < i0; j += 16) {
          const __m512 e = FastExp512(_mm512_sub_ps(cs0, _mm512_loadu_ps(cs + j)));
          _mm512_storeu_ps(u + j, _mm512_mul_ps(e, _mm512_loadu_ps(dtv + j)));
        }
        const int64_t i1 = std::min(q, i0 + 16);
        for (int64_t i = i0; i < i1; ++i) {
          const int64_t block_end = std::min(q, (i / kTileRows + 1) * kTileRows);
          const __m512 csi = _mm512_set1_ps(cs[i]);
          const __m512 ri = FastExp512(_mm512_sub_ps(csi, cs0));
          const float* cbi = cb + i * Qp;
          float* mi = m + i * Qp;
          for (int64_t j = 0; j < i0; j += 16) {
            _mm512_storeu_ps(mi + j, _mm512_mul_ps(_mm512_mul_ps(_mm512_loadu_ps(cbi + j), ri),
                                                   _mm512_loadu_ps(u + j)));
          }
          const __mmask16 mask = static_cast<__mmask16>((2u << (i - i0)) - 1);  // j <= i
          const __m512 e = FastExp512(_mm512_sub_ps(csi, _mm512_loadu_ps(cs + i0)));
          const __m512 w = _mm512_mul_ps(_mm512_loadu_ps(cbi + i0), e);
          _mm512_storeu_ps(mi + i0, _mm512_maskz_mul_ps(mask, w, _mm512_loadu_ps(dtv + i0)));
          for (int64_t j = i0 + 16; j < block_end; j += 16) {
            _mm512_storeu_ps(mi + j, _mm512_setzero_ps());
          }
          mi[i] += D[h];
        }
      }
      // The state from before the chunk, transposed to [n][p].
      for (int64_t p = 0; p < P; p += 16) {
        for (int64_t n = 0; n < N; n += 16) Transpose16(S + p * N + n, N, 16, st + n * P + p, P);
      }
      RunTiles<YTile, kTileRows, kTileVecs>(
          YArgs{cc, st, ecs, m, xc, y + t0 * y_stride + h * P, N, P, Qp, y_stride}, q);
      RunTiles<StateTile, kTileRows, kTileVecs>(StateArgs{xw, bc, S, ecs[q - 1], q, N, P}, P);
    }
  }
}

// The AVX2 + FMA form (Zen 3, Haswell .. Alder Lake): the same products
// with the same summation order (every output a chain of FMAs over k in
// order), in 8-float vectors. A tile is 6 rows x 2 vectors: 12
// accumulators + 2 b vectors + 1 broadcast of the 16 ymm registers; per k
// 2 vector loads + 6 broadcasts feed 12 FMAs. The scratch layout, the
// 16-column padding and the decay factoring over 16 x 16 blocks are those
// of the AVX-512 path (its Args structs are reused; their Vecs() count
// 16-column vectors, two 8-float vectors each).
constexpr int kTileVecs256 = 2;

template <int MR, int NV>
SSMQ_TARGET_AVX2 inline void AccTile256(int64_t K, const float* a, int64_t a_row, int64_t a_k,
                                        const float* b, int64_t ldb, __m256 (&acc)[MR][NV]) {
  for (int64_t k = 0; k < K; ++k) {
    __m256 bv[NV];
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) bv[v] = _mm256_loadu_ps(b + k * ldb + 8 * v);
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) {
      const __m256 av = _mm256_broadcast_ss(a + r * a_row + k * a_k);
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) acc[r][v] = _mm256_fmadd_ps(av, bv[v], acc[r][v]);
    }
  }
}

template <int MR, int NV>
SSMQ_TARGET_AVX2 inline void ZeroTile256(__m256 (&acc)[MR][NV]) {
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) acc[r][v] = _mm256_setzero_ps();
}

template <int MR, int NV>
SSMQ_TARGET_AVX2 inline void StoreTile256(float* out, int64_t ld, const __m256 (&acc)[MR][NV]) {
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) _mm256_storeu_ps(out + r * ld + 8 * v, acc[r][v]);
}

// RunRowBlock / RunTiles over 8-float vectors (2 per 16-column vector of Vecs()).
template <template <int, int> class T, int MR, int NV, class Args>
SSMQ_TARGET_AVX2 inline void RunRowBlock256(const Args& args, int64_t i0) {
  const int64_t nv = 2 * args.Vecs(i0 + MR);
  int64_t v = 0;
  for (; v + NV <= nv; v += NV) T<MR, NV>::Run(args, i0, 8 * v);
  if constexpr (NV > 1) {
    if (v < nv) T<MR, 1>::Run(args, i0, 8 * v);
  }
}

template <template <int, int> class T, int MR, int NV, class Args>
SSMQ_TARGET_AVX2 void RunTiles256(const Args& args, int64_t rows) {
  static_assert(MR <= 8 && NV <= 2);
  int64_t i0 = 0;
  for (; i0 + MR <= rows; i0 += MR) RunRowBlock256<T, MR, NV>(args, i0);
  if constexpr (MR > 4) {
    if (i0 + 4 <= rows) {
      RunRowBlock256<T, 4, NV>(args, i0);
      i0 += 4;
    }
  }
  if constexpr (MR > 2) {
    if (i0 + 2 <= rows) {
      RunRowBlock256<T, 2, NV>(args, i0);
      i0 += 2;
    }
  }
  if constexpr (MR > 1) {
    if (i0 < rows) RunRowBlock256<T, 1, NV>(args, i0);
  }
}

template <int MR, int NV>
struct CbTile256 {
  SSMQ_TARGET_AVX2 static void Run(const CbArgs& a, int64_t i0, int64_t c0) {
    __m256 acc[MR][NV];
    ZeroTile256(acc);
    AccTile256<MR, NV>(a.N, a.cc + i0 * a.N, a.N, 1, a.bt + c0, a.Qp, acc);
    StoreTile256(a.cb + i0 * a.Qp + c0, a.Qp, acc);
  }
};

template <int MR, int NV>
struct YTile256 {
  SSMQ_TARGET_AVX2 static void Run(const YArgs& a, int64_t i0, int64_t c0) {
    __m256 acc[MR][NV];
    ZeroTile256(acc);
    AccTile256<MR, NV>(a.N, a.cc + i0 * a.N, a.N, 1, a.st + c0, a.P, acc);
    for (int r = 0; r < MR; ++r) {
      const __m256 e = _mm256_set1_ps(a.ecs[i0 + r]);
      for (int v = 0; v < NV; ++v) acc[r][v] = _mm256_mul_ps(acc[r][v], e);
    }
    AccTile256<MR, NV>(i0 + MR, a.m + i0 * a.Qp, a.Qp, 1, a.xc + c0, a.P, acc);
    StoreTile256(a.y + i0 * a.y_stride + c0, a.y_stride, acc);
  }
};

template <int MR, int NV>
struct StateTile256 {
  SSMQ_TARGET_AVX2 static void Run(const StateArgs& a, int64_t p0, int64_t c0) {
    __m256 acc[MR][NV];
    const __m256 decay = _mm256_set1_ps(a.decay);
    float* s = a.s + p0 * a.N + c0;
    for (int r = 0; r < MR; ++r)
      for (int v = 0; v < NV; ++v)
        acc[r][v] = _mm256_mul_ps(decay, _mm256_loadu_ps(s + r * a.N + 8 * v));
    AccTile256<MR, NV>(a.q, a.xw + p0, 1, a.P, a.bc + c0, a.N, acc);
    StoreTile256(s, a.N, acc);
  }
};

// dst[c][r] = src[r][c] for an 8 x 8 block; source rows from `rows` on read
// as zeros.
SSMQ_TARGET_AVX2 inline void Transpose8(const float* src, int64_t lds, int64_t rows, float* dst,
                                        int64_t ldd) {
  __m256 r[8], t[8];
  for (int k = 0; k < 8; ++k) {
    r[k] = k < rows ? _mm256_loadu_ps(src + k * lds) : _mm256_setzero_ps();
  }
  // t[2k] = (r2k[0], r2k+1[0], r2k[1], r2k+1[1] | the same of columns 4, 5),
  // t[2k+1] the same of columns 2, 3 | 6, 7.
  for (int k = 0; k < 4; ++k) {
    t[2 * k] = _mm256_unpacklo_ps(r[2 * k], r[2 * k + 1]);
    t[2 * k + 1] = _mm256_unpackhi_ps(r[2 * k], r[2 * k + 1]);
  }
  // r[4k + c]: rows 4k .. 4k+3 of column c | of column c + 4.
  for (int k = 0; k < 2; ++k) {
    r[4 * k] = _mm256_shuffle_ps(t[4 * k], t[4 * k + 2], 0x44);
    r[4 * k + 1] = _mm256_shuffle_ps(t[4 * k], t[4 * k + 2], 0xEE);
    r[4 * k + 2] = _mm256_shuffle_ps(t[4 * k + 1], t[4 * k + 3], 0x44);
    r[4 * k + 3] = _mm256_shuffle_ps(t[4 * k + 1], t[4 * k + 3], 0xEE);
  }
  for (int c = 0; c < 4; ++c) {
    _mm256_storeu_ps(dst + c * ldd, _mm256_permute2f128_ps(r[c], r[4 + c], 0x20));
    _mm256_storeu_ps(dst + (c + 4) * ldd, _mm256_permute2f128_ps(r[c], r[4 + c], 0x31));
  }
}

// Mamba2ChunkScan512 step by step in 8-float vectors (head_dim and d_state
// multiples of 16).
SSMQ_TARGET_AVX2 void Mamba2ChunkScan256(const Mamba2Dims& dims, int64_t g, int64_t h0,
                                         int64_t h1, int64_t L, int64_t chunk, const float* xbc,
                                         int64_t xbc_stride, const float* dt, int64_t dt_stride,
                                         const float* A, const float* D, float* state, float* y,
                                         int64_t y_stride, float* scratch) {
  const int64_t P = dims.head_dim, N = dims.d_state, Q = chunk, Qp = (Q + 15) / 16 * 16;
  const int64_t b_off = dims.d_inner() + g * N;
  const int64_t c_off = dims.d_inner() + dims.n_groups * N + g * N;
  const auto [cb, m, cc, bc, bt, st, xc, xw, cs, ecs, dtv, wj, u] =
      ChunkScratch(scratch, Q, Qp, N, P);
  const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  for (int64_t t0 = 0; t0 < L; t0 += Q) {
    const int64_t q = std::min(Q, L - t0), qv = (q + 15) / 16 * 16;
    const float* rows = xbc + t0 * xbc_stride;
    GatherChunkRows(rows, xbc_stride, q, b_off, c_off, N, h0 * P, P, cc, bc);
    // B transposed, zero columns from q up to a whole 16-column vector.
    for (int64_t j = 0; j < qv; j += 8) {
      const int64_t valid = std::clamp<int64_t>(q - j, 0, 8);
      for (int64_t n = 0; n < N; n += 8) {
        Transpose8(bc + std::min(j, q - 1) * N + n, N, valid, bt + n * Qp + j, Qp);
      }
    }
    RunTiles256<CbTile256, kTileRows, kTileVecs256>(CbArgs{cc, bt, cb, N, Qp}, q);
    for (int64_t h = h0; h < h1; ++h) {
      const float Ah = A[h];
      const float* dth = dt + t0 * dt_stride + h;
      float* S = state + h * P * N;
      const float total = CumulativeDecay(dth, dt_stride, Ah, q, qv, dtv, cs);
      const __m256 total_v = _mm256_set1_ps(total);
      for (int64_t j = 0; j < qv; j += 8) {
        const __m256 c = _mm256_loadu_ps(cs + j);
        _mm256_storeu_ps(ecs + j, FastExp256(c));
        _mm256_storeu_ps(wj + j, _mm256_mul_ps(FastExp256(_mm256_sub_ps(total_v, c)),
                                               _mm256_loadu_ps(dtv + j)));
      }
      for (int64_t j = 0; j < q; ++j) {
        const float* xj = rows + j * xbc_stride + h * P;
        if (h + 1 < h1) PrefetchSpan(xj + P, P * 4);
        const __m256 w = _mm256_set1_ps(wj[j]);
        for (int64_t p = 0; p < P; p += 8) {
          const __m256 x = _mm256_loadu_ps(xj + p);
          _mm256_storeu_ps(xc + j * P + p, x);
          _mm256_storeu_ps(xw + j * P + p, _mm256_mul_ps(w, x));
        }
      }
      // m as in Mamba2ChunkScan512 (the same 16 x 16 block factoring of the
      // decay); the diagonal block's mask j <= i as an integer compare.
      for (int64_t i0 = 0; i0 < q; i0 += 16) {
        const __m256 cs0 = _mm256_set1_ps(cs[i0]);
        for (int64_t j = 0; j < i0; j += 8) {
          const __m256 e = FastExp256(_mm256_sub_ps(cs0, _mm256_loadu_ps(cs + j)));
          _mm256_storeu_ps(u + j, _mm256_mul_ps(e, _mm256_loadu_ps(dtv + j)));
        }
        const int64_t i1 = std::min(q, i0 + 16);
        for (int64_t i = i0; i < i1; ++i) {
          const int64_t block_end = std::min(q, (i / kTileRows + 1) * kTileRows);
          const __m256 csi = _mm256_set1_ps(cs[i]);
          const __m256 ri = FastExp256(_mm256_sub_ps(csi, cs0));
          const float* cbi = cb + i * Qp;
          float* mi = m + i * Qp;
          for (int64_t j = 0; j < i0; j += 8) {
            _mm256_storeu_ps(mi + j, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(cbi + j), ri),
                                                   _mm256_loadu_ps(u + j)));
          }
          for (int64_t j = i0; j < i0 + 16; j += 8) {
            // Lanes l with j + l <= i.
            const __m256 mask = _mm256_castsi256_ps(
                _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(i - j + 1)), iota));
            const __m256 e = FastExp256(_mm256_sub_ps(csi, _mm256_loadu_ps(cs + j)));
            const __m256 w = _mm256_mul_ps(_mm256_loadu_ps(cbi + j), e);
            _mm256_storeu_ps(mi + j, _mm256_and_ps(mask, _mm256_mul_ps(w, _mm256_loadu_ps(dtv + j))));
          }
          for (int64_t j = i0 + 16; j < block_end; j += 8) {
            _mm256_storeu_ps(mi + j, _mm256_setzero_ps());
          }
          mi[i] += D[h];
        }
      }
      for (int64_t p = 0; p < P; p += 8) {
        for (int64_t n = 0; n < N; n += 8) Transpose8(S + p * N + n, N, 8, st + n * P + p, P);
      }
      RunTiles256<YTile256, kTileRows, kTileVecs256>(
          YArgs{cc, st, ecs, m, xc, y + t0 * y_stride + h * P, N, P, Qp, y_stride}, q);
      RunTiles256<StateTile256, kTileRows, kTileVecs256>(
          StateArgs{xw, bc, S, ecs[q - 1], q, N, P}, P);
    }
  }
}
#endif  // SSMQ_HAVE_X86_KERNELS

SSMQ_HOT void Mamba2ChunkScanReference(const Mamba2Dims& dims, int64_t g, int64_t h0, int64_t h1,
                                       int64_t L, int64_t chunk, const float* xbc,
                                       int64_t xbc_stride, const float* dt, int64_t dt_stride,
                                       const float* A, const float* D, float* state, float* y,
                                       int64_t y_stride, float* scratch) {
  const int64_t P = dims.head_dim, N = dims.d_state, Q = chunk;
  const int64_t b_off = dims.d_inner() + g * N;
  const int64_t c_off = dims.d_inner() + dims.n_groups * N + g * N;
  float* cb = scratch;          // [Q][Q]  C_i . B_j (lower triangle)
  float* m = cb + Q * Q;        // [Q][Q]  decay-masked weights of the head
  float* cs = m + Q * Q;        // [Q]     cumulative log-decay
  float* wj = cs + Q;           // [Q]     state-update weights
  float* ecs = wj + Q;          // [Q]     exp(cs)
  for (int64_t t0 = 0; t0 < L; t0 += Q) {
    const int64_t q = std::min(Q, L - t0);
    const float* rows = xbc + t0 * xbc_stride;
    for (int64_t i = 0; i < q; ++i) {
      const float* Ci = rows + i * xbc_stride + c_off;
      for (int64_t j = 0; j <= i; ++j) {
        const float* Bj = rows + j * xbc_stride + b_off;
        float acc = 0;
#pragma omp simd reduction(+ : acc)
        for (int64_t n = 0; n < N; ++n) acc += Ci[n] * Bj[n];
        cb[i * Q + j] = acc;
      }
    }
    for (int64_t h = h0; h < h1; ++h) {
      const float Ah = A[h], Dh = D[h];
      const float* dth = dt + t0 * dt_stride + h;
      float* S = state + h * P * N;
      float run = 0;
      for (int64_t i = 0; i < q; ++i) {
        run += dth[i * dt_stride] * Ah;
        cs[i] = run;
      }
      for (int64_t i = 0; i < q; ++i) ecs[i] = FastExp(cs[i]);
      // Intra-chunk weights m[i][j] = cb[i][j] * exp(cs[i] - cs[j]) * dt[j], j <= i.
      for (int64_t i = 0; i < q; ++i) {
        const float csi = cs[i];
        float* mi = m + i * Q;
        const float* cbi = cb + i * Q;
        for (int64_t j = 0; j <= i; ++j) mi[j] = cbi[j] * FastExp(csi - cs[j]) * dth[j * dt_stride];
      }
      for (int64_t i = 0; i < q; ++i) {
        const float* Ci = rows + i * xbc_stride + c_off;
        float* yi = y + (t0 + i) * y_stride + h * P;
        // From the state before the chunk.
        for (int64_t p = 0; p < P; ++p) {
          const float* Sp = S + p * N;
          float acc = 0;
#pragma omp simd reduction(+ : acc)
          for (int64_t n = 0; n < N; ++n) acc += Ci[n] * Sp[n];
          yi[p] = acc * ecs[i];
        }
        // Inside the chunk.
        const float* mi = m + i * Q;
        for (int64_t j = 0; j <= i; ++j) {
          const float mij = mi[j];
          const float* xj = rows + j * xbc_stride + h * P;
          for (int64_t p = 0; p < P; ++p) yi[p] += mij * xj[p];
        }
        const float* xi = rows + i * xbc_stride + h * P;
        for (int64_t p = 0; p < P; ++p) yi[p] += Dh * xi[p];
      }
      // Pass the state on to the next chunk.
      const float total = cs[q - 1];
      const float decay_all = ecs[q - 1];
      for (int64_t j = 0; j < q; ++j) wj[j] = FastExp(total - cs[j]) * dth[j * dt_stride];
      for (int64_t p = 0; p < P; ++p) {
        float* Sp = S + p * N;
        for (int64_t n = 0; n < N; ++n) Sp[n] *= decay_all;
        for (int64_t j = 0; j < q; ++j) {
          const float coef = wj[j] * rows[j * xbc_stride + h * P + p];
          const float* Bj = rows + j * xbc_stride + b_off;
          for (int64_t n = 0; n < N; ++n) Sp[n] += coef * Bj[n];
        }
      }
    }
  }
}

}  // namespace

void Mamba2ChunkScanGroup(const Mamba2Dims& dims, int64_t g, int64_t h0, int64_t h1, int64_t L,
                          int64_t chunk, const float* xbc, int64_t xbc_stride, const float* dt,
                          int64_t dt_stride, const float* A, const float* D, float* state,
                          float* y, int64_t y_stride, float* scratch) {
#ifdef SSMQ_HAVE_X86_KERNELS
  if (dims.head_dim % 16 == 0 && dims.d_state % 16 == 0 && CpuIsa() == KernelIsa::kAvx512) {
    return Mamba2ChunkScan512(dims, g, h0, h1, L, chunk, xbc, xbc_stride, dt, dt_stride, A, D,
                              state, y, y_stride, scratch);
  }
  if (dims.head_dim % 16 == 0 && dims.d_state % 16 == 0 && CpuIsa() == KernelIsa::kAvx2) {
    return Mamba2ChunkScan256(dims, g, h0, h1, L, chunk, xbc, xbc_stride, dt, dt_stride, A, D,
                              state, y, y_stride, scratch);
  }
#endif
  Mamba2ChunkScanReference(dims, g, h0, h1, L, chunk, xbc, xbc_stride, dt, dt_stride, A, D, state,
                           y, y_stride, scratch);
}

void Mamba2ChunkScanGroupReference(const Mamba2Dims& dims, int64_t g, int64_t h0, int64_t h1,
                                   int64_t L, int64_t chunk, const float* xbc, int64_t xbc_stride,
                                   const float* dt, int64_t dt_stride, const float* A,
                                   const float* D, float* state, float* y, int64_t y_stride,
                                   float* scratch) {
  Mamba2ChunkScanReference(dims, g, h0, h1, L, chunk, xbc, xbc_stride, dt, dt_stride, A, D, state,
                           y, y_stride, scratch);
}

SSMQ_HOT void Mamba2StepHead(int64_t P, int64_t N, const float* x, const float* B, const float* C,
                             float dt, float A, float D, float* S, float* y) {
  const float decay = FastExp(dt * A);
  for (int64_t p = 0; p < P; ++p) {
    float* Sp = S + p * N;
    for (int64_t n = 0; n < N; n += 16) PrefetchRead(Sp + kStatePrefetchBytes / 4 + n);
    const float coef = dt * x[p];
    float acc = 0;
#pragma omp simd reduction(+ : acc)
    for (int64_t n = 0; n < N; ++n) {
      const float s = Sp[n] * decay + coef * B[n];
      Sp[n] = s;
      acc += s * C[n];
    }
    y[p] = acc + D * x[p];
  }
}

}  // namespace ssmq::rt
