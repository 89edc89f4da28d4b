#include "runtime_cpu/kernels.h"

#include <algorithm>
#include <cmath>

#include "runtime_cpu/activations.h"
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

SSMQ_HOT void GatedRmsNormRow(const float* y, const float* z, int64_t dim, int64_t group,
                              const float* weight, float eps, float* out) {
  for (int64_t i = 0; i < dim; ++i) out[i] = y[i] * Silu(z[i]);
  for (int64_t g0 = 0; g0 < dim; g0 += group) {
    float* v = out + g0;
    const float* wg = weight + g0;
    float ss = 0;
#pragma omp simd reduction(+ : ss)
    for (int64_t i = 0; i < group; ++i) ss += v[i] * v[i];
    const float inv = 1.0f / std::sqrt(ss / static_cast<float>(group) + eps);
    for (int64_t i = 0; i < group; ++i) v[i] = v[i] * inv * wg[i];
  }
}

}  // namespace

void RmsNormRows(const float* x, int64_t n_rows, int64_t dim, const float* weight, double eps,
                 float* out, int n_threads) {
  const int nt = ThreadCount(n_threads);
#pragma omp parallel for num_threads(nt) schedule(static) if (n_rows > 1 && WorthThreads(4 * n_rows * dim, nt))
  for (int64_t r = 0; r < n_rows; ++r) {
    RmsNormRow(x + r * dim, dim, weight, static_cast<float>(eps), out + r * dim);
  }
}

void GatedRmsNormRows(const float* y, int64_t y_stride, const float* z, int64_t z_stride,
                      int64_t n_rows, int64_t dim, int64_t group, const float* weight,
                      double eps, float* out, int64_t out_stride, int n_threads) {
  const int nt = ThreadCount(n_threads);
#pragma omp parallel for num_threads(nt) schedule(static) if (n_rows > 1 && WorthThreads(8 * n_rows * dim, nt))
  for (int64_t r = 0; r < n_rows; ++r) {
    GatedRmsNormRow(y + r * y_stride, z + r * z_stride, dim, group, weight,
                    static_cast<float>(eps), out + r * out_stride);
  }
}

#ifdef SSMQ_HAVE_X86_KERNELS
namespace {
int64_t ConvStep4Avx512(const float* x, int64_t c0, int64_t c1, const float* w,
                        const float* bias, float* state, float* out);
}  // namespace
#endif

SSMQ_HOT void CausalConvSilu(const float* src, int64_t src_stride, int64_t L, int64_t c0,
                             int64_t c1, int64_t K, const float* w, const float* bias,
                             float* state, float* out, int64_t out_stride) {
  const int64_t hist = K - 1;
  if (L == 1) {  // decode: one token, every tap but the last from the state
    int64_t c_done = c0;
#ifdef SSMQ_HAVE_X86_KERNELS
    if (K == 4 && CpuIsa() == KernelIsa::kAvx512)
      c_done = ConvStep4Avx512(src, c0, c1, w, bias, state, out);
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
    float* o = out + c_done;
#pragma omp simd
    for (int64_t c = 0; c < c1 - c_done; ++c) o[c] = Silu(o[c]);  // a separate pass: vectorizes
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
#pragma omp simd
        for (int64_t j = 0; j < n; ++j) o[j] = Silu(o[j]);
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
// FastExp (activations.h) on 16 lanes: the same clamp, reduction and polynomial.
SSMQ_TARGET_AVX512 inline __m512 FastExp512(__m512 x) {
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
  const __mmask16 under = _mm512_cmp_ps_mask(x, k_min, _CMP_LT_OQ);
  return _mm512_maskz_mul_ps(static_cast<__mmask16>(~under), p, scale);
}

// The decode conv for d_conv = 4 (every Mamba checkpoint), 16 channels at a
// time: the taps [c][4] and the state [c][3] are de-interleaved in registers
// (two vpermt2ps each) so the four taps are four FMAs over 16 channels, and the
// shifted state is interleaved back the same way. Same order of operations as
// the scalar loop (bias, three state taps, then the new input). Returns the
// first channel left for the scalar loop.
SSMQ_TARGET_AVX512 int64_t ConvStep4Avx512(const float* x, int64_t c0, int64_t c1,
                                           const float* w, const float* bias, float* state,
                                           float* out) {
  alignas(64) int32_t wlo[4][16], slo[3][16], shi[3][16], ilo[3][16], ihi[3][16];
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

// One Mamba1 time step (L = 1) for channels [d0, d1), d_state a multiple of
// 16: the state row of a channel is whole vectors, one horizontal sum per
// channel (the generic loop's reduction compiles to a serial chain).
SSMQ_TARGET_AVX512 void Mamba1StepChannels512(int64_t d0, int64_t d1, int64_t N, const float* x,
                                              const float* dt_raw, const float* B,
                                              const float* z, const float* A, const float* D,
                                              float* state, float* y) {
  const float* C = B + N;
  for (int64_t d = d0; d < d1; ++d) {
    const float dtv = Softplus(dt_raw[d]);
    const float xv = x[d];
    const __m512 dt_v = _mm512_set1_ps(dtv), dx = _mm512_set1_ps(dtv * xv);
    const float* a = A + d * N;
    float* sd = state + d * N;
    __m512 acc = _mm512_setzero_ps();
    for (int64_t n = 0; n < N; n += 16) {
      const __m512 decay = FastExp512(_mm512_mul_ps(dt_v, _mm512_loadu_ps(a + n)));
      const __m512 v = _mm512_fmadd_ps(decay, _mm512_loadu_ps(sd + n),
                                       _mm512_mul_ps(dx, _mm512_loadu_ps(B + n)));
      _mm512_storeu_ps(sd + n, v);
      acc = _mm512_fmadd_ps(v, _mm512_loadu_ps(C + n), acc);
    }
    y[d] = (ReduceAdd512(acc) + D[d] * xv) * Silu(z[d]);
  }
}
#endif

}  // namespace

SSMQ_HOT void Mamba1ScanChannels(int64_t L, int64_t d0, int64_t d1, int64_t N, const float* x,
                                 int64_t x_stride, const float* dt_raw, int64_t dt_stride,
                                 const float* bc, int64_t bc_stride, const float* z,
                                 int64_t z_stride, const float* A, const float* D, float* state,
                                 float* y, int64_t y_stride) {
  // Channels go through in blocks of kBlock with the state and A transposed
  // to [n][d] locally, so every inner loop runs over contiguous channels
  // (vectorized across d, no horizontal reductions).
  constexpr int64_t kBlock = 32;
  constexpr int64_t kMaxState = 64;
#ifdef SSMQ_HAVE_X86_KERNELS
  // Decode (one token): no time loop to amortize the transpose below; the
  // AVX-512 step runs over whole state vectors. Elsewhere the loops below.
  if (L == 1 && N % 16 == 0 && CpuIsa() == KernelIsa::kAvx512) {
    return Mamba1StepChannels512(d0, d1, N, x, dt_raw, bc, z, A, D, state, y);
  }
#endif
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

int64_t Mamba2ChunkScratchFloats(int64_t chunk) { return 2 * chunk * chunk + 3 * chunk; }

SSMQ_HOT void Mamba2ChunkScanGroup(const Mamba2Dims& dims, int64_t g, int64_t h0, int64_t h1,
                                   int64_t L, int64_t chunk, const float* xbc, int64_t xbc_stride,
                                   const float* dt, int64_t dt_stride, const float* A,
                                   const float* D, float* state, float* y, int64_t y_stride,
                                   float* scratch) {
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

SSMQ_HOT void Mamba2StepHead(int64_t P, int64_t N, const float* x, const float* B, const float* C,
                             float dt, float A, float D, float* S, float* y) {
  const float decay = FastExp(dt * A);
  for (int64_t p = 0; p < P; ++p) {
    float* Sp = S + p * N;
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
