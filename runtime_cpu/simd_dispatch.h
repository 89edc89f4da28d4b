// How the runtime picks SIMD code.
//
// SSMQ_HOT marks the few plain-C++ hot loops (norms, scans) that GCC compiles
// three times: for x86-64-v4 (AVX-512), x86-64-v3 (AVX2 + FMA) and the
// baseline, picked at load time by the CPU (ifunc). The code stays plain
// scalar C++ that -O3 vectorizes (the AVX-512 clone made the Mamba1 scan,
// a third of mamba-370m's prefill, ~1.45x faster).
//
// Hand-written kernels use the SSMQ_TARGET_* attributes instead and are
// chosen once, at first use, by CpuIsa() below; each keeps a scalar
// reference beside it that the tests compare it with.
#pragma once

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && \
    !defined(__SANITIZE_ADDRESS__)
#define SSMQ_HOT __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define SSMQ_HOT
#endif

#if defined(__x86_64__) || defined(__i386__)
// GCC 12 reports the "undefined" pass-through vectors inside its own AVX-512
// intrinsics as uninitialized once they are inlined (GCC bug 105593, fixed
// in 13); the warning points into the header, so it is silenced there only.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#define SSMQ_HAVE_X86_KERNELS 1
// AVX2 + FMA + F16C (x86-64-v3 machines: Haswell and later, Zen).
#define SSMQ_TARGET_AVX2 __attribute__((target("avx2,fma,f16c")))
// AVX-512 F/BW/DQ/VL with VNNI (Ice Lake, Sapphire Rapids, Zen 4 and later).
#define SSMQ_TARGET_AVX512 \
  __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma,f16c")))
#endif

namespace ssmq::rt {

#ifdef SSMQ_HAVE_X86_KERNELS
// Sum of the 16 lanes (GCC 12's _mm512_reduce_add_ps trips -Wuninitialized).
SSMQ_TARGET_AVX512 inline float ReduceAdd512(__m512 v) {
  const __m512 s1 = _mm512_add_ps(v, _mm512_shuffle_f32x4(v, v, 0x4E));    // + other 256-bit half
  const __m512 s2 = _mm512_add_ps(s1, _mm512_shuffle_f32x4(s1, s1, 0xB1));  // + neighbour 128-bit lane
  __m128 s = _mm512_castps512_ps128(s2);
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// Lane j of the result = ReduceAdd512(v[j]), bit for bit: the same pairwise
// tree (lane i + lane i+8, then +4, +2, +1), each level one round of
// shuffles and adds over all 16 vectors (15 adds instead of 16 x 4); `add`
// is the lane-wise add (float, or int32 through bit casts).
template <class Add>
SSMQ_TARGET_AVX512 inline __m512 TransposeReduce16(const __m512 (&v)[16], Add add) {
  // u[j]: lanes 0-7 the sums i + i+8 of v[j], lanes 8-15 those of v[j+8].
  __m512 u[8];
  for (int j = 0; j < 8; ++j) {
    u[j] = add(_mm512_shuffle_f32x4(v[j], v[j + 8], 0x44),
               _mm512_shuffle_f32x4(v[j], v[j + 8], 0xEE));
  }
  // w[j], 128-bit blocks: the sums i + i+4 of v[j], v[j+8], v[j+4], v[j+12].
  __m512 w[4];
  for (int j = 0; j < 4; ++j) {
    w[j] = add(_mm512_shuffle_f32x4(u[j], u[j + 4], 0x88),
               _mm512_shuffle_f32x4(u[j], u[j + 4], 0xDD));
  }
  // x[k], block b: the sums i + i+2 (i < 2) of the vector of w[k] there, then of w[k+2].
  __m512 x[2];
  for (int k = 0; k < 2; ++k) {
    x[k] = add(_mm512_shuffle_ps(w[k], w[k + 2], 0x44),
               _mm512_shuffle_ps(w[k], w[k + 2], 0xEE));
  }
  // Whole sums of v[0, 2, 1, 3 | 8, 10, 9, 11 | 4, 6, 5, 7 | 12, 14, 13, 15]:
  // a permutation that is its own inverse, undone by one vpermps.
  const __m512 r =
      add(_mm512_shuffle_ps(x[0], x[1], 0x88), _mm512_shuffle_ps(x[0], x[1], 0xDD));
  const __m512i order =
      _mm512_setr_epi32(0, 2, 1, 3, 8, 10, 9, 11, 4, 6, 5, 7, 12, 14, 13, 15);
  return _mm512_permutexvar_ps(order, r);
}

struct AddPs {
  SSMQ_TARGET_AVX512 __m512 operator()(__m512 a, __m512 b) const { return _mm512_add_ps(a, b); }
};
struct AddEpi32AsPs {  // int32 lanes carried in __m512
  SSMQ_TARGET_AVX512 __m512 operator()(__m512 a, __m512 b) const {
    return _mm512_castsi512_ps(_mm512_add_epi32(_mm512_castps_si512(a), _mm512_castps_si512(b)));
  }
};

SSMQ_TARGET_AVX512 inline __m512 ReduceAdd512x16(const __m512 (&v)[16]) {
  return TransposeReduce16(v, AddPs{});
}

// The same for int32 lanes (exact): lane j = the sum of v[j]'s lanes.
SSMQ_TARGET_AVX512 inline __m512i ReduceAddEpi32x16(const __m512i (&v)[16]) {
  __m512 f[16];
  for (int j = 0; j < 16; ++j) f[j] = _mm512_castsi512_ps(v[j]);
  return _mm512_castps_si512(TransposeReduce16(f, AddEpi32AsPs{}));
}
#endif

// Software prefetch for weight streams. A decode matvec reads every weight
// byte once, several rows at a time (row tiles), so the hardware prefetcher
// sees short interleaved streams and one core stalls at about half the
// bandwidth a plain linear read reaches. Asking for the same columns
// kPrefetchRows rows ahead (four 4-row tiles) keeps enough lines in flight:
// measured on the 2-core dev VM (bench/matvec_bench), a Q8 VNNI matvec went
// from 7 to 12-14 GB/s on one core.
// The hint is non-temporal (prefetchnta): the line comes into L1 and is
// not kept in the outer caches when it leaves, and a weight or state line is
// used once per token (the matrices are far larger than L2, so nothing is
// lost). On the Zen 5 host of 2026-12-02 it beat the "into L2" hint
// (prefetcht1, chosen on an earlier VM, where it beat T0) on every decode:
// `ssmq bench` alternating the two builds, medians of 8 runs each, 2 threads,
// mamba-370m w8a8 +23%, w4a16 +2%, mamba2-370m w8a8 +10%, w4a16 +7-11%;
// with the AVX2 kernels (SSMQ_ISA=avx2) mamba2 w8a8 +12%, mamba w4a16 +24%.
// Lines wanted a while later (a waiting thread's, idle_prefetch.h) go to L2
// instead: PrefetchToL2.
// A prefetch never faults, so running past the end of a matrix is harmless
// (a few KiB of wasted reads per matrix).
inline constexpr int64_t kPrefetchRows = 16;
// The decode steps' recurrent state streams (Mamba2: 50 MB of f32 or 12.5 MB
// of int8 per mamba2-370m token, in and out) are asked for this many bytes
// ahead: an exp, FMAs and (int8) conversions sit between the loads and the
// hardware prefetcher alone leaves the stream short of the bandwidth
// (bench/decode_ab_bench with and without, mamba2-370m: f32 state +10%,
// int8 +2%; 1 KiB ahead gave the int8 state nothing).
inline constexpr int64_t kStatePrefetchBytes = 4096;
inline void PrefetchRead(const void* p) { __builtin_prefetch(p, 0, 0); }
inline void PrefetchToL2(const void* p) { __builtin_prefetch(p, 0, 2); }
// PrefetchRead of every 64-byte line of [p, p + bytes).
inline void PrefetchSpan(const void* p, int64_t bytes) {
  const char* c = static_cast<const char*>(p);
  for (int64_t i = 0; i < bytes; i += 64) PrefetchRead(c + i);
}

// Pins a vector accumulator in a register at this point of a loop. GCC's
// reassociation otherwise turns a chain of integer adds over an unrolled
// loop into a tree: every product is computed first and kept on the stack
// (seen in the AVX2 tile kernels: 64 ymm spills per tile, with 16 registers).
#define SSMQ_PIN_VECTOR(v) __asm__("" : "+x"(v))

// The widest kernel family this CPU runs; decided once.
enum class KernelIsa { kScalar, kAvx2, kAvx512 };
KernelIsa CpuIsa();
const char* KernelIsaName(KernelIsa isa);

}  // namespace ssmq::rt
