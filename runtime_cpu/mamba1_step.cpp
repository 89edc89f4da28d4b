// The Mamba1 decode step (one token) on AVX-512 or AVX2 for d_state a
// multiple of 16, straight on the layer's state storage (f32, int8 codes or
// f16). The AVX2 form (StepBlocksAvx2) takes 8 channels per block.
//
// Per channel d with N state values the step is
//   s[n] = exp(dt*A[d][n]) * s[n] + (dt*x) * B[n];  y = (C . s + D*x) * silu(z),
// dt = softplus(dt_raw). At mamba-370m (N = 16) the state row of a channel
// is a single vector, so a channel at a time the scalar softplus and silu
// and the horizontal sum of C . s cost more than the row's update. Here
// channels go 16 at a time: softplus and silu as 16-lane vectors, each
// channel's row updated as before (whole vectors over n), and the 16
// channels' C . s sums reduced together by one transpose-and-add.
//
// Results: the same floats as the former per-channel form (scalar Softplus
// and Silu as GCC compiles them into AVX-512 code, one ReduceAdd512 per
// channel): activations512.h has the same operations and contractions, the
// reduction is the same pairwise tree (GCC 12: bit-identical y and state on
// 4 M random channels, dt_raw over [-90, 110]). An int8 or f16 state gets
// the same codes as Load + that step + Store: the same conversions, in
// registers instead of through the f32 scratch.
#include <algorithm>

#include "runtime_cpu/activations256.h"
#include "runtime_cpu/activations512.h"
#include "runtime_cpu/kernels.h"
#include "runtime_cpu/runtime_impl.h"
#include "runtime_cpu/simd_dispatch.h"

namespace ssmq::rt {

namespace {

// State and A rows are asked for this many channels ahead (PrefetchRead): the
// step streams ~19 MB per mamba-370m token (f32 state in and out, A) with
// an exp per value between loads, and on the dev VM the hardware
// prefetcher alone leaves it short of the bandwidth (bench/decode_ab_bench
// with and without: +2-3% decode, w4a16 and w8a8; 16 or 64 channels ahead
// measured the same within noise).
constexpr int64_t kStepPrefetchRows = 32;

#ifdef SSMQ_HAVE_X86_KERNELS

// State row storage, one row (channel) at a time in increasing order:
// Seek(r) goes to row r of the layer, Load(n) / Store(n, v) read and write
// values [n, n + 16) of the current row as f32, Next() goes to row r + 1.
struct F32Rows {
  float* base;
  int64_t N;
  float* row = nullptr;
  void Seek(int64_t r) { row = base + r * N; }
  void Next() { row += N; }
  void Prefetch(int64_t rows_ahead) const {
    for (int64_t n = 0; n < N; n += 16) PrefetchRead(row + rows_ahead * N + n);
  }
  SSMQ_TARGET_AVX512 __m512 Load(int64_t n) const { return _mm512_loadu_ps(row + n); }
  SSMQ_TARGET_AVX512 void Store(int64_t n, __m512 v) const { _mm512_storeu_ps(row + n, v); }
  SSMQ_TARGET_AVX2 __m256 Load8(int64_t n) const { return _mm256_loadu_ps(row + n); }
  SSMQ_TARGET_AVX2 void Store8(int64_t n, __m256 v) const { _mm256_storeu_ps(row + n, v); }
};

// f16 rows: vcvtph2ps / vcvtps2ph with round to nearest even (as
// HalfStateRowsToF32 / F32StateRowsToHalf).
struct HalfRows {
  uint16_t* base;
  int64_t N;
  uint16_t* row = nullptr;
  void Seek(int64_t r) { row = base + r * N; }
  void Next() { row += N; }
  void Prefetch(int64_t rows_ahead) const {
    for (int64_t n = 0; n < N; n += 32) PrefetchRead(row + rows_ahead * N + n);
  }
  SSMQ_TARGET_AVX512 __m512 Load(int64_t n) const {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + n)));
  }
  SSMQ_TARGET_AVX512 void Store(int64_t n, __m512 v) const {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(row + n),
                        _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  }
  SSMQ_TARGET_AVX2 __m256 Load8(int64_t n) const {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + n)));
  }
  SSMQ_TARGET_AVX2 void Store8(int64_t n, __m256 v) const {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(row + n),
                     _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  }
};

// int8 codes (StateQuant): h = code * scale, code = clamp(RNE(h * inv), ±127)
// with the scale row of the row's group, as DequantizeStateRows /
// QuantizeStateRows (QuantizeRowsAvx2: max_ps(v, lo) gives lo for a NaN v,
// cvtps2dq rounds half to even). The group is stepped along with the row
// (no division per row); a sequence's rows are whole groups, so past the
// last group the next sequence starts at group 0.
struct Int8Rows {
  int8_t* codes;
  const StateQuant* sq;
  int8_t* row = nullptr;
  const float* scale = nullptr;  // the current group's scale row [N]
  const float* inv = nullptr;    // its reciprocals
  int64_t group = 0, left = 0;   // current group, rows left in it
  void Seek(int64_t r) {
    const int64_t N = sq->d_state, rpg = sq->rows_per_group;
    const int64_t groups = static_cast<int64_t>(sq->scales.size()) / N;
    const int64_t in_seq = r % (groups * rpg);
    row = codes + r * N;
    group = in_seq / rpg;
    left = rpg - in_seq % rpg;
    SetScales();
  }
  void Prefetch(int64_t rows_ahead) const {
    for (int64_t n = 0; n < sq->d_state; n += 64) PrefetchRead(row + rows_ahead * sq->d_state + n);
  }
  void Next() {
    row += sq->d_state;
    if (--left > 0) return;
    left = sq->rows_per_group;
    if (++group * sq->d_state == static_cast<int64_t>(sq->scales.size())) group = 0;
    SetScales();
  }
  void SetScales() {
    scale = sq->scales.data() + group * sq->d_state;
    inv = sq->inv_scales.data() + group * sq->d_state;
  }
  SSMQ_TARGET_AVX512 __m512 Load(int64_t n) const {
    const __m512i c32 =
        _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + n)));
    return _mm512_mul_ps(_mm512_cvtepi32_ps(c32), _mm512_loadu_ps(scale + n));
  }
  SSMQ_TARGET_AVX512 void Store(int64_t n, __m512 v) const {
    const __m512 lo = _mm512_set1_ps(-127.0f), hi = _mm512_set1_ps(127.0f);
    __m512 q = _mm512_mul_ps(v, _mm512_loadu_ps(inv + n));
    q = _mm512_min_ps(_mm512_max_ps(q, lo), hi);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(row + n),
                     _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(q)));
  }
  SSMQ_TARGET_AVX2 __m256 Load8(int64_t n) const {
    const __m256i c32 =
        _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(row + n)));
    return _mm256_mul_ps(_mm256_cvtepi32_ps(c32), _mm256_loadu_ps(scale + n));
  }
  SSMQ_TARGET_AVX2 void Store8(int64_t n, __m256 v) const {
    const __m256 lo = _mm256_set1_ps(-127.0f), hi = _mm256_set1_ps(127.0f);
    __m256 q = _mm256_mul_ps(v, _mm256_loadu_ps(inv + n));
    q = _mm256_min_ps(_mm256_max_ps(q, lo), hi);  // max_ps(NaN, lo) = lo, as the AVX-512 Store
    const __m256i c32 = _mm256_cvtps_epi32(q);
    const __m128i c16 = _mm_packs_epi32(_mm256_castsi256_si128(c32), _mm256_extracti128_si256(c32, 1));
    _mm_storel_epi64(reinterpret_cast<__m128i*>(row + n), _mm_packs_epi16(c16, c16));
  }
};

// Channels [d0, d1) of one sequence, state row of channel d: row0 + d. A
// block of fewer than 16 channels (the tail) runs masked: every channel gets
// the same arithmetic wherever it falls.
template <class Rows>
SSMQ_TARGET_AVX512 void StepBlocks(Rows rows, int64_t row0, int64_t d0, int64_t d1, int64_t N,
                                   const float* x, const float* dt_raw, const float* bc,
                                   const float* z, const float* A, const float* D, float* y) {
  const float* B = bc;
  const float* C = bc + N;
  rows.Seek(row0 + d0);
  alignas(64) float dt[16], dx[16];
  __m512 acc[16];
  for (int64_t c = d0; c < d1; c += 16) {
    const int nb = static_cast<int>(std::min<int64_t>(16, d1 - c));
    const __mmask16 m = static_cast<__mmask16>((1u << nb) - 1);
    const __m512 xv = _mm512_maskz_loadu_ps(m, x + c);
    const __m512 dtv = Softplus512(_mm512_maskz_loadu_ps(m, dt_raw + c));
    _mm512_store_ps(dt, dtv);
    _mm512_store_ps(dx, _mm512_mul_ps(dtv, xv));
    for (int j = 0; j < nb; ++j) {
      const __m512 dt_j = _mm512_set1_ps(dt[j]), dx_j = _mm512_set1_ps(dx[j]);
      const float* a = A + (c + j) * N;
      rows.Prefetch(kStepPrefetchRows);  // past the layer's end: harmless (never faults)
      for (int64_t n = 0; n < N; n += 16) PrefetchRead(a + kStepPrefetchRows * N + n);
      __m512 sum = _mm512_setzero_ps();
      for (int64_t n = 0; n < N; n += 16) {
        const __m512 decay = FastExp512(_mm512_mul_ps(dt_j, _mm512_loadu_ps(a + n)));
        const __m512 s = _mm512_fmadd_ps(decay, rows.Load(n),
                                         _mm512_mul_ps(dx_j, _mm512_loadu_ps(B + n)));
        rows.Store(n, s);
        sum = _mm512_fmadd_ps(s, _mm512_loadu_ps(C + n), sum);
      }
      acc[j] = sum;
      rows.Next();
    }
    for (int j = nb; j < 16; ++j) acc[j] = _mm512_setzero_ps();
    const __m512 out = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, D + c), xv, ReduceAdd512x16(acc));
    _mm512_mask_storeu_ps(y + c, m,
                          _mm512_mul_ps(out, Silu512(_mm512_maskz_loadu_ps(m, z + c))));
  }
}

// StepBlocks on AVX2: 8 channels per block (softplus and silu as 8-lane
// vectors, the 8 channels' C . s sums reduced together), each channel's
// state row as 8-float vectors; the tail block loads and stores masked.
template <class Rows>
SSMQ_TARGET_AVX2 void StepBlocksAvx2(Rows rows, int64_t row0, int64_t d0, int64_t d1, int64_t N,
                                     const float* x, const float* dt_raw, const float* bc,
                                     const float* z, const float* A, const float* D, float* y) {
  const float* B = bc;
  const float* C = bc + N;
  rows.Seek(row0 + d0);
  alignas(32) float dt[8], dx[8];
  __m256 acc[8];
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  for (int64_t c = d0; c < d1; c += 8) {
    const int nb = static_cast<int>(std::min<int64_t>(8, d1 - c));
    const __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32(nb), lane);
    const __m256 xv = _mm256_maskload_ps(x + c, m);
    const __m256 dtv = Softplus256(_mm256_maskload_ps(dt_raw + c, m));
    _mm256_store_ps(dt, dtv);
    _mm256_store_ps(dx, _mm256_mul_ps(dtv, xv));
    for (int j = 0; j < nb; ++j) {
      const __m256 dt_j = _mm256_set1_ps(dt[j]), dx_j = _mm256_set1_ps(dx[j]);
      const float* a = A + (c + j) * N;
      rows.Prefetch(kStepPrefetchRows);  // past the layer's end: harmless (never faults)
      for (int64_t n = 0; n < N; n += 16) PrefetchRead(a + kStepPrefetchRows * N + n);
      __m256 sum = _mm256_setzero_ps();
      for (int64_t n = 0; n < N; n += 8) {
        const __m256 decay = FastExp256(_mm256_mul_ps(dt_j, _mm256_loadu_ps(a + n)));
        const __m256 s = _mm256_fmadd_ps(decay, rows.Load8(n),
                                         _mm256_mul_ps(dx_j, _mm256_loadu_ps(B + n)));
        rows.Store8(n, s);
        sum = _mm256_fmadd_ps(s, _mm256_loadu_ps(C + n), sum);
      }
      acc[j] = sum;
      rows.Next();
    }
    for (int j = nb; j < 8; ++j) acc[j] = _mm256_setzero_ps();
    const __m256 out = _mm256_fmadd_ps(_mm256_maskload_ps(D + c, m), xv, ReduceAdd256x8(acc));
    _mm256_maskstore_ps(y + c, m, _mm256_mul_ps(out, Silu256(_mm256_maskload_ps(z + c, m))));
  }
}

#endif  // SSMQ_HAVE_X86_KERNELS

}  // namespace

bool Mamba1FusedStepApplies(int64_t N) {
#ifdef SSMQ_HAVE_X86_KERNELS
  return N % 16 == 0 && CpuIsa() >= KernelIsa::kAvx2;
#else
  (void)N;
  return false;
#endif
}

void Mamba1StepChannelsFused(int64_t d0, int64_t d1, int64_t N, const float* x, const float* dt_raw,
                           const float* bc, const float* z, const float* A, const float* D,
                           float* state, float* y) {
  Mamba1StepChannelsFused(SsmStateRef{.f32 = state}, 0, d0, d1, N, x, dt_raw, bc, z, A, D, y);
}

void Mamba1StepChannelsFused(const SsmStateRef& ssm, int64_t row0, int64_t d0, int64_t d1,
                           int64_t N, const float* x, const float* dt_raw, const float* bc,
                           const float* z, const float* A, const float* D, float* y) {
#ifdef SSMQ_HAVE_X86_KERNELS
  if (Mamba1FusedStepApplies(N) && CpuIsa() == KernelIsa::kAvx2) {
    if (ssm.codes) {
      return StepBlocksAvx2(Int8Rows{ssm.codes, ssm.sq}, row0, d0, d1, N, x, dt_raw, bc, z, A, D,
                            y);
    }
    if (ssm.half) {
      return StepBlocksAvx2(HalfRows{ssm.half, N}, row0, d0, d1, N, x, dt_raw, bc, z, A, D, y);
    }
    return StepBlocksAvx2(F32Rows{ssm.f32, N}, row0, d0, d1, N, x, dt_raw, bc, z, A, D, y);
  }
  if (Mamba1FusedStepApplies(N)) {
    if (ssm.codes) {
      return StepBlocks(Int8Rows{ssm.codes, ssm.sq}, row0, d0, d1, N, x, dt_raw, bc, z, A, D, y);
    }
    if (ssm.half) {
      return StepBlocks(HalfRows{ssm.half, N}, row0, d0, d1, N, x, dt_raw, bc, z, A, D, y);
    }
    return StepBlocks(F32Rows{ssm.f32, N}, row0, d0, d1, N, x, dt_raw, bc, z, A, D, y);
  }
#endif
  // Elsewhere: through the f32 rows, as the mixer's prefill path.
  ssm.Load(row0 + d0, d1 - d0);
  Mamba1ScanChannelsGeneric(1, d0, d1, N, x, 0, dt_raw, 0, bc, 0, z, 0, A, D, ssm.f32 + row0 * N,
                            y, 0);
  ssm.Store(row0 + d0, d1 - d0);
}

}  // namespace ssmq::rt
