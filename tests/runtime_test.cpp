// Reference CPU runtime: kernels against plain formulas, then both fixture
// models against the transformers references (logits, greedy generation,
// validation perplexity).
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "convert/hf_import.h"
#include "convert/safetensors.h"
#include "format/quant.h"
#include "runtime_cpu/activations.h"
#include "runtime_cpu/activations256.h"
#include "runtime_cpu/activations512.h"
#include "runtime_cpu/kernels.h"
#include "runtime_cpu/quant_matmul.h"
#include "runtime_cpu/runtime.h"
#include "runtime_cpu/runtime_impl.h"
#include "runtime_cpu/sampling.h"
#include "runtime_cpu/weight.h"
#include "tests/test_util.h"
#include "tokenizer/tokenizer.h"

namespace ssmq {
namespace {

using testing::FixtureModelDir;
using testing::FixtureReferenceDir;
using testing::FixturesDir;
using testing::ReadFileText;

std::vector<float> RandomVector(size_t n, uint64_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937_64 rng(seed);
  std::vector<float> v(n);
  for (float& x : v) x = lo + (hi - lo) * static_cast<float>(rt::UniformUnit(rng));
  return v;
}

float MaxAbsDiff(const float* a, const float* b, size_t n) {
  float m = 0;
  for (size_t i = 0; i < n; ++i) m = std::max(m, std::fabs(a[i] - b[i]));
  return m;
}

// ---------------------------------------------------------------- kernels

TEST(RuntimeKernels, FastExpMatchesStdExp) {
  double worst = 0;
  for (float x = -87.0f; x <= 88.0f; x += 0.0137f) {
    const double ref = std::exp(static_cast<double>(x));
    worst = std::max(worst, std::fabs(rt::FastExp(x) - ref) / ref);
  }
  EXPECT_LT(worst, 4e-7);
  EXPECT_EQ(rt::FastExp(-200.0f), 0.0f);
  EXPECT_TRUE(std::isfinite(rt::FastExp(1000.0f)));
}

TEST(RuntimeKernels, SoftplusAndSiluMatchFormulas) {
  double worst_sp = 0, worst_silu = 0;
  for (float v = -30.0f; v <= 30.0f; v += 0.01f) {
    const double sp = v > 20 ? v : std::log1p(std::exp(static_cast<double>(v)));
    worst_sp = std::max(worst_sp, std::fabs(rt::Softplus(v) - sp) / sp);
    const double silu = v / (1.0 + std::exp(-static_cast<double>(v)));
    worst_silu = std::max(worst_silu, std::fabs(rt::Silu(v) - silu) / std::max(1e-30, std::fabs(silu)));
  }
  EXPECT_LT(worst_sp, 1e-6);
  EXPECT_LT(worst_silu, 1e-6);
}

TEST(RuntimeKernels, MatMulMatchesNaiveWithStridesAndBias) {
  const int64_t rows = 37, cols = 45, tokens = 70, xs = 50, ys = 41;
  const auto wv = RandomVector(rows * cols, 1);
  const auto bv = RandomVector(rows, 2);
  const auto x = RandomVector(tokens * xs, 3);
  rt::Weight w, b;
  w.rows = rows, w.cols = cols, w.f32 = wv.data();
  b.rows = rows, b.cols = 1, b.f32 = bv.data();
  for (int threads : {1, 2}) {
    std::vector<float> y(tokens * ys, -7.0f);
    rt::MatMul(w, &b, x.data(), xs, tokens, y.data(), ys, threads);
    float worst = 0;
    for (int64_t t = 0; t < tokens; ++t) {
      for (int64_t r = 0; r < rows; ++r) {
        double ref = bv[r];
        for (int64_t c = 0; c < cols; ++c) ref += double(wv[r * cols + c]) * x[t * xs + c];
        worst = std::max(worst, float(std::fabs(y[t * ys + r] - ref)));
      }
      for (int64_t r = rows; r < ys; ++r) ASSERT_EQ(y[t * ys + r], -7.0f);  // padding untouched
    }
    EXPECT_LT(worst, 1e-5) << "threads " << threads;
  }
}

TEST(RuntimeKernels, ConvInPiecesEqualsConvInOneGo) {
  const int64_t C = 37, K = 4, L = 9;  // 37: SIMD blocks of 8 and 16 plus a tail
  const auto src = RandomVector(L * C, 4);
  const auto w = RandomVector(C * K, 5);
  const auto bias = RandomVector(C, 6);
  std::vector<float> state_a = RandomVector(C * (K - 1), 7), state_b = state_a;
  std::vector<float> out_a(L * C), out_b(L * C);
  rt::CausalConvSilu(src.data(), C, L, 0, C, K, w.data(), bias.data(), state_a.data(),
                     out_a.data(), C);
  // Pieces of 2, 1, 1, 5 tokens.
  int64_t t = 0;
  for (int64_t n : {2, 1, 1, 5}) {
    rt::CausalConvSilu(src.data() + t * C, C, n, 0, C, K, w.data(), bias.data(), state_b.data(),
                       out_b.data() + t * C, C);
    t += n;
  }
  EXPECT_LT(MaxAbsDiff(out_a.data(), out_b.data(), out_a.size()), 1e-6);
  EXPECT_EQ(state_a, state_b);
  // Plain formula for the first token (reaches into the initial state).
  const auto init = RandomVector(C * (K - 1), 7);
  for (int64_t c = 0; c < C; ++c) {
    double acc = bias[c];
    for (int64_t k = 0; k < K - 1; ++k) acc += w[c * K + k] * init[c * (K - 1) + k];
    acc += w[c * K + K - 1] * src[c];
    EXPECT_NEAR(out_a[c], acc / (1 + std::exp(-acc)), 1e-6);
  }
}

// Runs the chunked SSD scan over L tokens in two calls ([0, split) with each
// group's heads one slice (head) at a time, then the rest with whole groups,
// so state passes between calls and chunks) and the one-token recurrence from
// the same non-zero state.
struct ScanDiff {
  double y, state;              // largest |difference| of y and of the final state
  double y_scale, state_scale;  // max(1, largest |reference value|) of each
};
ScanDiff Mamba2ChunkScanVsRecurrence(const rt::Mamba2Dims& dims, int64_t L,
                                                      int64_t chunk, int64_t split, float dt_lo,
                                                      float dt_hi, float a_lo, float a_hi) {
  const int64_t di = dims.d_inner(), cd = di + 2 * dims.n_groups * dims.d_state;
  const auto xbc = RandomVector(L * cd, 8);
  const auto dt = RandomVector(L * dims.n_heads, 9, dt_lo, dt_hi);
  const auto A = RandomVector(dims.n_heads, 10, a_lo, a_hi);
  const auto D = RandomVector(dims.n_heads, 11);
  const auto init = RandomVector(dims.n_heads * dims.head_dim * dims.d_state, 12);

  std::vector<float> state_c = init, y_c(L * di);
  std::vector<float> scratch(rt::Mamba2ChunkScratchFloats(dims, chunk));
  const int64_t hpg = dims.heads_per_group();
  for (auto [t0, n] : {std::pair<int64_t, int64_t>{0, split}, {split, L - split}}) {
    for (int64_t g = 0; g < dims.n_groups; ++g) {
      const int64_t step = t0 == 0 ? 1 : hpg;
      for (int64_t h0 = g * hpg; h0 < (g + 1) * hpg; h0 += step) {
        rt::Mamba2ChunkScanGroup(dims, g, h0, h0 + step, n, chunk, xbc.data() + t0 * cd, cd,
                                 dt.data() + t0 * dims.n_heads, dims.n_heads, A.data(), D.data(),
                                 state_c.data(), y_c.data() + t0 * di, di, scratch.data());
      }
    }
  }
  std::vector<float> state_r = init, y_r(L * di);
  const int64_t P = dims.head_dim, N = dims.d_state;
  for (int64_t t = 0; t < L; ++t) {
    const float* row = xbc.data() + t * cd;
    for (int64_t h = 0; h < dims.n_heads; ++h) {
      const int64_t g = h / dims.heads_per_group();
      rt::Mamba2StepHead(P, N, row + h * P, row + di + g * N, row + di + dims.n_groups * N + g * N,
                         dt[t * dims.n_heads + h], A[h], D[h], state_r.data() + h * P * N,
                         y_r.data() + t * di + h * P);
    }
  }
  auto scale = [](const std::vector<float>& ref) {
    float m = 1.0f;
    for (float v : ref) m = std::max(m, std::fabs(v));
    return double(m);
  };
  return {MaxAbsDiff(y_c.data(), y_r.data(), y_c.size()),
          MaxAbsDiff(state_c.data(), state_r.data(), state_c.size()), scale(y_r), scale(state_r)};
}

// The chunked SSD scan equals the one-token recurrence, across chunk
// boundaries and when continued from a non-zero state (small dims: the
// plain loops).
// The int8-state step (AVX-512: in the code domain, state_quant.cpp) against
// its float-copy reference: the same codes except where the two float
// roundings put a value on different sides of a half (then one apart), y
// within float rounding; saturating values and a NaN input clamp the same.
// The f16-state step (Mamba2StepHeadHalf: AVX-512 or AVX2 in registers)
// against its definition: f16 -> f32, Mamba2StepHead, f32 -> f16 (round to
// nearest even). The state values within one f16 ulp (FMA contraction may
// round the f32 value differently), y within float summation error.
TEST(RuntimeKernels, Mamba2StepHeadHalfMatchesConvertStepConvert) {
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (int64_t N : {16, 64, 128}) {
    SCOPED_TRACE(N);
    const int64_t P = 24, head = 1;  // the second of two heads
    std::vector<uint16_t> half(2 * P * N);
    for (uint16_t& h : half) h = F32ToF16(2 * u(rng));
    std::vector<float> x(P), B(N), C(N);
    for (float& v : x) v = 2 * u(rng);
    for (float& v : B) v = u(rng);
    for (float& v : C) v = u(rng);
    std::vector<uint16_t> fast = half;
    std::vector<float> y_fast(P), y_ref(P), rows(P * N);
    rt::Mamba2StepHeadHalf(head * P, P, N, x.data(), B.data(), C.data(), 0.05f, -0.7f, 0.3f,
                           fast.data(), y_fast.data());
    for (int64_t i = 0; i < P * N; ++i) rows[i] = F16ToF32(half[head * P * N + i]);
    rt::Mamba2StepHead(P, N, x.data(), B.data(), C.data(), 0.05f, -0.7f, 0.3f, rows.data(),
                       y_ref.data());
    for (int64_t i = 0; i < P * N; ++i) {
      ASSERT_EQ(fast[i], half[i]) << "head 0 untouched, " << i;
      const int want = F32ToF16(rows[i]), got = fast[head * P * N + i];
      ASSERT_LE(std::abs(want - got), 1) << "state " << i;
    }
    for (int64_t p = 0; p < P; ++p)
      EXPECT_NEAR(y_fast[p], y_ref[p], 1e-5f * (1.0f + std::fabs(y_ref[p]))) << p;
  }
}

TEST(RuntimeKernels, Mamba2StepHeadInt8MatchesReference) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (int64_t N : {16, 64, 128}) {
    SCOPED_TRACE(N);
    const int64_t P = 24, H = 2;  // two heads, two scale rows (rows_per_group = P)
    rt::StateQuant sq;
    sq.rows_per_group = P;
    sq.d_state = N;
    for (int64_t i = 0; i < H * N; ++i) {
      sq.scales.push_back(0.002f + 0.01f * std::fabs(u(rng)));
      sq.inv_scales.push_back(1.0f / sq.scales.back());
    }
    std::vector<int8_t> codes(static_cast<size_t>(H * P * N));
    for (int8_t& c : codes) c = static_cast<int8_t>(std::lround(127 * u(rng)));
    std::vector<float> x(P), B(N), C(N);
    for (float& v : x) v = 2 * u(rng);
    for (float& v : B) v = u(rng);
    for (float& v : C) v = u(rng);
    x[3] = 1e6f;  // saturates its row
    x[5] = std::nanf("");
    std::vector<int8_t> fast = codes, ref = codes;
    std::vector<float> y_fast(P), y_ref(P);
    for (int64_t h = 0; h < H; ++h) {
      rt::Mamba2StepHeadInt8(sq, h * P, P, x.data(), B.data(), C.data(), 0.05f, -0.7f, 0.3f,
                             fast.data(), y_fast.data());
      rt::Mamba2StepHeadInt8Reference(sq, h * P, P, x.data(), B.data(), C.data(), 0.05f, -0.7f,
                                      0.3f, ref.data(), y_ref.data());
      int64_t differ = 0;
      for (int64_t i = h * P * N; i < (h + 1) * P * N; ++i) {
        ASSERT_LE(std::abs(fast[i] - ref[i]), 1) << i;
        ASSERT_GE(fast[i], -127) << i;
        differ += fast[i] != ref[i];
      }
      EXPECT_LE(differ, P * N / 100) << "codes one apart";
      for (int64_t p = 0; p < P; ++p) {
        if (p == 5) {
          EXPECT_TRUE(std::isnan(y_fast[p]) && std::isnan(y_ref[p]));
          continue;
        }
        EXPECT_NEAR(y_fast[p], y_ref[p], 1e-5f * (1.0f + std::fabs(y_ref[p]))) << p;
      }
    }
  }
}

TEST(RuntimeKernels, Mamba2ChunkScanEqualsRecurrence) {
  const ScanDiff d = Mamba2ChunkScanVsRecurrence({6, 8, 2, 16}, 45, 16, 20,  // H, P, G, N
                                                 0.01f, 0.5f, -2.0f, -0.1f);
  EXPECT_LT(d.y, 2e-5);
  EXPECT_LT(d.state, 2e-5);
}

// The same at model-like shapes (the register-tiled AVX-512 path where the
// CPU has it: head_dim and d_state multiples of 16): mamba2-370m's head_dim
// 64 and d_state 128 with 4 heads per group, 2 groups, chunk 64 and 256, L
// not a multiple of the chunk; and an odd one: chunk 40 (not whole 16-float
// vectors), head_dim 32, d_state 48 (3 vectors), 3 heads in one group;
// and the smallest tiled one: head_dim and d_state 16 (one tile of two
// 8-float vectors on AVX2), chunk 20 (not whole 8-float vectors either).
struct Mamba2ScanShape {
  rt::Mamba2Dims dims;
  int64_t L, chunk, split;
};
class Mamba2ChunkScan : public ::testing::TestWithParam<Mamba2ScanShape> {};
INSTANTIATE_TEST_SUITE_P(RuntimeKernels, Mamba2ChunkScan,
                         ::testing::Values(Mamba2ScanShape{{8, 64, 2, 128}, 300, 64, 100},
                                           Mamba2ScanShape{{8, 64, 2, 128}, 300, 256, 270},
                                           Mamba2ScanShape{{3, 32, 1, 48}, 97, 40, 45},
                                           Mamba2ScanShape{{4, 16, 2, 16}, 61, 20, 23}),
                         [](const ::testing::TestParamInfo<Mamba2ScanShape>& info) {
                           char name[64];
                           std::snprintf(name, sizeof name, "P%d_N%d_chunk%d",
                                         int(info.param.dims.head_dim),
                                         int(info.param.dims.d_state), int(info.param.chunk));
                           return std::string(name);
                         });

TEST_P(Mamba2ChunkScan, EqualsRecurrence) {
  const Mamba2ScanShape& s = GetParam();
  // dt and A of trained models' order (decay per token 0.90 - 0.9995, so
  // the state carries across whole chunks).
  // Sums of up to 256 (chunk) and 128 (d_state) products: the error is
  // bounded relative to the largest value (about 5e-7 of it here).
  const ScanDiff d =
      Mamba2ChunkScanVsRecurrence(s.dims, s.L, s.chunk, s.split, 0.005f, 0.1f, -1.0f, -0.05f);
  EXPECT_LT(d.y, 1e-5 * d.y_scale) << "largest |y| " << d.y_scale;
  EXPECT_LT(d.state, 1e-5 * d.state_scale) << "largest |state| " << d.state_scale;
}

// The dispatched scan (register-tiled AVX-512 or AVX2 where the CPU, or
// SSMQ_ISA, picks it) against the plain loops on the same calls: the same
// formula with other summation orders and the decay split in blocks, held
// to the tolerance of the recurrence test above.
TEST_P(Mamba2ChunkScan, MatchesPlainLoops) {
  const Mamba2ScanShape& s = GetParam();
  const rt::Mamba2Dims& dims = s.dims;
  const int64_t L = s.L, di = dims.d_inner(), cd = di + 2 * dims.n_groups * dims.d_state;
  const auto xbc = RandomVector(L * cd, 21);
  const auto dt = RandomVector(L * dims.n_heads, 22, 0.005f, 0.1f);
  const auto A = RandomVector(dims.n_heads, 23, -1.0f, -0.05f);
  const auto D = RandomVector(dims.n_heads, 24);
  const auto init = RandomVector(dims.n_heads * dims.head_dim * dims.d_state, 25);
  std::vector<float> scratch(rt::Mamba2ChunkScratchFloats(dims, s.chunk));
  const int64_t hpg = dims.heads_per_group();
  auto run = [&](bool reference, std::vector<float>& state, std::vector<float>& y) {
    state = init;
    y.assign(L * di, std::nanf(""));
    // scratch left from the other run must not matter
    std::fill(scratch.begin(), scratch.end(), reference ? -7.0f : std::nanf(""));
    for (auto [t0, n] : {std::pair<int64_t, int64_t>{0, s.split}, {s.split, L - s.split}}) {
      for (int64_t g = 0; g < dims.n_groups; ++g) {
        const int64_t step = t0 == 0 ? 1 : hpg;
        for (int64_t h0 = g * hpg; h0 < (g + 1) * hpg; h0 += step) {
          (reference ? rt::Mamba2ChunkScanGroupReference : rt::Mamba2ChunkScanGroup)(
              dims, g, h0, h0 + step, n, s.chunk, xbc.data() + t0 * cd, cd,
              dt.data() + t0 * dims.n_heads, dims.n_heads, A.data(), D.data(), state.data(),
              y.data() + t0 * di, di, scratch.data());
        }
      }
    }
  };
  std::vector<float> state_f, y_f, state_r, y_r;
  run(false, state_f, y_f);
  run(true, state_r, y_r);
  auto scale = [](const std::vector<float>& ref) {
    float m = 1.0f;
    for (float v : ref) m = std::max(m, std::fabs(v));
    return double(m);
  };
  for (float v : y_f) ASSERT_TRUE(std::isfinite(v));
  for (float v : state_f) ASSERT_TRUE(std::isfinite(v));
  EXPECT_LT(MaxAbsDiff(y_f.data(), y_r.data(), y_f.size()), 1e-5 * scale(y_r))
      << rt::KernelIsaName(rt::CpuIsa());
  EXPECT_LT(MaxAbsDiff(state_f.data(), state_r.data(), state_f.size()), 1e-5 * scale(state_r))
      << rt::KernelIsaName(rt::CpuIsa());
}

// The isa_avx2.* ctest variant (tests/CMakeLists.txt) passes
// --ssmq_isa_variant=avx2 and sets SSMQ_ISA=avx2; this fails if the variable
// stops reaching the tests (a list-valued ENVIRONMENT once did), which would
// silently run the AVX-512 kernels twice and the AVX2 ones never.
TEST(SimdDispatch, IsaVariantReachesTheKernels) {
  std::string cmdline;
  if (std::FILE* f = std::fopen("/proc/self/cmdline", "rb")) {
    for (int c; (c = std::fgetc(f)) != EOF;) cmdline.push_back(c == 0 ? ' ' : char(c));
    std::fclose(f);
  }
  if (cmdline.find("--ssmq_isa_variant=avx2") == std::string::npos) {
    GTEST_SKIP() << "not the isa_avx2 variant";
  }
  const char* env = std::getenv("SSMQ_ISA");
  ASSERT_NE(env, nullptr) << "SSMQ_ISA did not reach the test";
  EXPECT_STREQ(env, "avx2");
  EXPECT_LE(static_cast<int>(rt::CpuIsa()), static_cast<int>(rt::KernelIsa::kAvx2));
#if defined(__x86_64__)
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    EXPECT_EQ(rt::CpuIsa(), rt::KernelIsa::kAvx2) << rt::KernelIsaName(rt::CpuIsa());
  }
#endif
}

// Softplus inside, channel blocks with a tail (di 40), and the by-channel
// fallback for a large d_state (N 70); whole sequences and single steps.
class Mamba1Scan : public ::testing::TestWithParam<std::pair<int64_t, int64_t>> {};
INSTANTIATE_TEST_SUITE_P(RuntimeKernels, Mamba1Scan,
                         ::testing::Values(std::pair<int64_t, int64_t>{40, 16}, std::pair<int64_t, int64_t>{3, 70}));

TEST_P(Mamba1Scan, MatchesFormula) {
  const int64_t L = 5, di = GetParam().first, N = GetParam().second;
  const auto x = RandomVector(L * di, 13), dt_raw = RandomVector(L * di, 14, -4.0f, 2.0f);
  const auto bc = RandomVector(L * 2 * N, 15), z = RandomVector(L * di, 16);
  const auto A = RandomVector(di * N, 17, -3.0f, -0.1f), D = RandomVector(di, 18);
  std::vector<float> state(di * N, 0.0f), y(L * di);
  rt::Mamba1ScanChannels(L, 0, di, N, x.data(), di, dt_raw.data(), di, bc.data(), 2 * N, z.data(), di,
                         A.data(), D.data(), state.data(), y.data(), di);
  // The same steps one token at a time (L = 1: the decode kernel, AVX-512
  // when d_state is a multiple of 16) agree with the whole-sequence scan.
  std::vector<float> state1(di * N, 0.0f), y1(L * di);
  for (int64_t t = 0; t < L; ++t) {
    rt::Mamba1ScanChannels(1, 0, di, N, x.data() + t * di, di, dt_raw.data() + t * di, di,
                           bc.data() + t * 2 * N, 2 * N, z.data() + t * di, di, A.data(), D.data(),
                           state1.data(), y1.data() + t * di, di);
  }
  EXPECT_LT(MaxAbsDiff(y1.data(), y.data(), y.size()), 1e-5);
  EXPECT_LT(MaxAbsDiff(state1.data(), state.data(), state.size()), 1e-5);
  std::vector<double> s(di * N, 0.0);
  for (int64_t t = 0; t < L; ++t) {
    for (int64_t d = 0; d < di; ++d) {
      double acc = 0;
      for (int64_t n = 0; n < N; ++n) {
        const double dtv = std::log1p(std::exp(double(dt_raw[t * di + d])));
        s[d * N + n] = std::exp(dtv * A[d * N + n]) * s[d * N + n] +
                       dtv * bc[t * 2 * N + n] * x[t * di + d];
        acc += s[d * N + n] * bc[t * 2 * N + N + n];
      }
      const double zz = z[t * di + d];
      const double ref = (acc + D[d] * x[t * di + d]) * zz / (1 + std::exp(-zz));
      EXPECT_NEAR(y[t * di + d], ref, 1e-5);
    }
  }
}

// The prefill scan Mamba1ScanChannels runs on AVX2 CPUs (Mamba1ScanAvx2Applies)
// against the generic blocked loops, on a slice of channels [d0, d1) with
// strided rows: whole 32-channel blocks and a tail of 5, d_state 16 and 24,
// a state carried in from a previous piece. Both use the same FastExp
// polynomial; they differ by FMA contraction only.
TEST(Mamba1ScanAvx2, MatchesGeneric) {
  if (!rt::Mamba1ScanAvx2Applies(16)) GTEST_SKIP() << "not an AVX2-only CPU";
  for (int64_t N : {int64_t{16}, int64_t{24}}) {
    SCOPED_TRACE("N " + std::to_string(N));
    const int64_t L = 37, di = 112, d0 = 3, d1 = 72, xs = di + 4;  // 69 channels: 2 blocks + 5
    const auto x = RandomVector(L * xs, 23), dt_raw = RandomVector(L * xs, 24, -4.0f, 2.0f);
    const auto bc = RandomVector(L * 2 * N, 25), z = RandomVector(L * xs, 26);
    const auto A = RandomVector(di * N, 27, -3.0f, -0.1f), D = RandomVector(di, 28);
    const auto state0 = RandomVector(di * N, 29);
    std::vector<float> s_want = state0, s_got = state0;
    std::vector<float> want(L * xs, -7.0f), got(L * xs, -7.0f);
    rt::Mamba1ScanChannelsGeneric(L, d0, d1, N, x.data(), xs, dt_raw.data(), xs, bc.data(), 2 * N,
                                  z.data(), xs, A.data(), D.data(), s_want.data(), want.data(), xs);
    rt::Mamba1ScanChannels(L, d0, d1, N, x.data(), xs, dt_raw.data(), xs, bc.data(), 2 * N,
                           z.data(), xs, A.data(), D.data(), s_got.data(), got.data(), xs);
    double y_scale = 0, s_scale = 0;
    for (float v : want) y_scale = std::max(y_scale, double(std::fabs(v)));
    for (float v : s_want) s_scale = std::max(s_scale, double(std::fabs(v)));
    EXPECT_LT(MaxAbsDiff(got.data(), want.data(), got.size()), 1e-5 * y_scale);
    EXPECT_LT(MaxAbsDiff(s_got.data(), s_want.data(), s_got.size()), 1e-5 * s_scale);
    for (int64_t t = 0; t < L; ++t) {  // outside [d0, d1): untouched
      for (int64_t d = 0; d < xs; ++d) {
        if (d < d0 || d >= d1) {
          ASSERT_EQ(got[t * xs + d], -7.0f) << t << " " << d;
        }
      }
    }
    for (int64_t i = 0; i < di * N; ++i) {
      if (i < d0 * N || i >= d1 * N) {
        ASSERT_EQ(s_got[i], state0[i]) << i;
      }
    }
  }
}

#ifdef SSMQ_HAVE_X86_KERNELS
// Softplus512 / Silu512 (16 lanes) and Softplus256 / Silu256 (8 lanes) over
// n values (a multiple of 16), and the scalar functions compiled for the
// same targets (with FMA: what the kernels that called them used).
SSMQ_TARGET_AVX512 void Activations512Rows(const float* v, int64_t n, float* sp, float* si) {
  for (int64_t i = 0; i < n; i += 16) {
    _mm512_storeu_ps(sp + i, rt::Softplus512(_mm512_loadu_ps(v + i)));
    _mm512_storeu_ps(si + i, rt::Silu512(_mm512_loadu_ps(v + i)));
  }
}
SSMQ_TARGET_AVX2 void Activations256Rows(const float* v, int64_t n, float* sp, float* si) {
  for (int64_t i = 0; i < n; i += 8) {
    _mm256_storeu_ps(sp + i, rt::Softplus256(_mm256_loadu_ps(v + i)));
    _mm256_storeu_ps(si + i, rt::Silu256(_mm256_loadu_ps(v + i)));
  }
}
SSMQ_TARGET_AVX512 __attribute__((noinline)) float SoftplusFma(float v) { return rt::Softplus(v); }
SSMQ_TARGET_AVX512 __attribute__((noinline)) float SiluFma(float v) { return rt::Silu(v); }
SSMQ_TARGET_AVX2 __attribute__((noinline)) float SoftplusFma256(float v) { return rt::Softplus(v); }
SSMQ_TARGET_AVX2 __attribute__((noinline)) float SiluFma256(float v) { return rt::Silu(v); }
#endif

// Distance in units in the last place between two finite floats of one sign.
int64_t UlpDistance(float a, float b) {
  return std::abs(int64_t{std::bit_cast<int32_t>(a)} - int64_t{std::bit_cast<int32_t>(b)});
}

// The vector activations against the scalar ones over the whole range:
// below exp's range, tiny softplus (e below half an ulp of 1), the threshold
// 20, large |x|. Against the scalar functions compiled with FMA (GCC 12
// contracts them exactly where the vector code has its FMAs: measured 0 ulp
// apart) within 2 ulp, so other contraction choices pass; against this
// file's baseline (no FMA) build within 4 ulp (measured 3, silu of x near
// -17 where exp(-x) is large).
void CheckVectorActivations(void (*rows)(const float*, int64_t, float*, float*),
                            float (*softplus_fma)(float), float (*silu_fma)(float)) {
  std::vector<float> v;
  for (float a = -120.0f; a <= 120.0f; a += 0.00731f) v.push_back(a);
  for (float a = 1e-30f; a < 10.0f; a *= 1.01f) v.push_back(-a), v.push_back(a);
  v.insert(v.end(), {0.0f, -0.0f, 20.0f, std::nextafter(20.0f, 21.0f), -87.33f, 88.0f, 1e30f,
                     -1e30f});
  while (v.size() % 16) v.push_back(1.0f);
  std::vector<float> sp(v.size()), si(v.size());
  rows(v.data(), int64_t(v.size()), sp.data(), si.data());
  int64_t worst_sp = 0, worst_si = 0, worst_sp_plain = 0, worst_si_plain = 0;
  for (size_t i = 0; i < v.size(); ++i) {
    const float want_sp = softplus_fma(v[i]), want_si = silu_fma(v[i]);
    if (want_sp == 0.0f) {
      EXPECT_EQ(sp[i], 0.0f) << v[i];
    } else {
      worst_sp = std::max(worst_sp, UlpDistance(sp[i], want_sp));
      worst_sp_plain = std::max(worst_sp_plain, UlpDistance(sp[i], rt::Softplus(v[i])));
    }
    if (std::fabs(want_si) < 1e-37f) {  // silu(0), and x / a huge 1 + exp(-x) near the denormals
      EXPECT_LE(std::fabs(si[i] - want_si), 1e-37f) << v[i];
    } else {
      worst_si = std::max(worst_si, UlpDistance(si[i], want_si));
      worst_si_plain = std::max(worst_si_plain, UlpDistance(si[i], rt::Silu(v[i])));
    }
  }
  EXPECT_LE(worst_sp, 2);
  EXPECT_LE(worst_si, 2);
  EXPECT_LE(worst_sp_plain, 4);
  EXPECT_LE(worst_si_plain, 4);
}

TEST(RuntimeKernels, Softplus512AndSilu512MatchScalar) {
  if (rt::BestKernelIsa() < rt::KernelIsa::kAvx512) GTEST_SKIP() << "no AVX-512";
#ifdef SSMQ_HAVE_X86_KERNELS
  CheckVectorActivations(Activations512Rows, SoftplusFma, SiluFma);
#endif
}

TEST(RuntimeKernels, Softplus256AndSilu256MatchScalar) {
  if (rt::BestKernelIsa() < rt::KernelIsa::kAvx2) GTEST_SKIP() << "no AVX2";
#ifdef SSMQ_HAVE_X86_KERNELS
  CheckVectorActivations(Activations256Rows, SoftplusFma256, SiluFma256);
#endif
}

// The decode step on AVX-512 straight on the state storage
// (Mamba1StepChannelsFused with an f32, int8 or f16 SsmStateRef) against the
// generic path: Load (dequantize / convert) -> Mamba1ScanChannelsGeneric
// with L = 1 -> Store. d_inner 50 (three whole 16-channel blocks and a
// tail), two sequences, the channels in two calls ([0, 20) and [20, 50):
// tails of 4 and 2 channels, a call starting inside a scale group), int8
// scale groups of 5 rows (groups straddle the blocks), six steps. Each step
// starts both sides from the same state, so a difference never carries on.
// Both sides compute the same formula in the same order except that
// softplus / silu (scalar vs 16 lanes, FMA contractions as the compiler
// chose) may differ by an ulp and the sum over n is a tree instead of a
// serial chain. Tolerances: y 1e-5 relative (measured <= 1.9e-6, the
// summation order); an f32 state 2e-6 relative; an int8 code within one
// code, an f16 value within one f16 ulp, where an ulp of dt moves the value
// across a rounding boundary (with GCC 12 the states come out identical:
// the step's softplus equals the generic loop's bit for bit).
class Mamba1FusedStep : public ::testing::TestWithParam<int64_t> {};
INSTANTIATE_TEST_SUITE_P(RuntimeKernels, Mamba1FusedStep, ::testing::Values(16, 32),
                         [](const ::testing::TestParamInfo<int64_t>& info) {
                           char name[32];
                           std::snprintf(name, sizeof name, "N%d", int(info.param));
                           return std::string(name);
                         });

TEST_P(Mamba1FusedStep, MatchesLoadScanStore) {
  if (rt::BestKernelIsa() < rt::KernelIsa::kAvx2) GTEST_SKIP() << "no AVX2";
  const int64_t N = GetParam(), di = 50, batch = 2, rows = batch * di, steps = 6;
  const auto A = RandomVector(di * N, 40, -3.0f, -0.1f), D = RandomVector(di, 41);
  rt::StateQuant sq;
  sq.rows_per_group = 5;
  sq.d_state = N;
  sq.scales = RandomVector(di / sq.rows_per_group * N, 42, 0.004f, 0.02f);
  for (float s : sq.scales) sq.inv_scales.push_back(1.0f / s);
  enum class Kind { kF32, kInt8, kF16 };
  for (Kind kind : {Kind::kF32, Kind::kInt8, Kind::kF16}) {
    SCOPED_TRACE(kind == Kind::kF32 ? "f32" : kind == Kind::kInt8 ? "int8" : "f16");
    // The two sides' storage: f32 rows, or codes / halves and f32 scratch.
    std::vector<float> f32_ref(rows * N), f32_new(rows * N);
    std::vector<int8_t> codes_ref(rows * N), codes_new;
    std::vector<uint16_t> half_ref(rows * N), half_new;
    const auto init = RandomVector(rows * N, 43, -1.5f, 1.5f);
    for (int64_t i = 0; i < rows * N; ++i) {
      f32_ref[i] = init[i];
      codes_ref[i] = static_cast<int8_t>(std::lround(std::clamp(init[i] * 60.0f, -127.0f, 127.0f)));
      half_ref[i] = F32ToF16(init[i]);
    }
    auto ref = [&](std::vector<float>& f32) {
      rt::SsmStateRef r{.f32 = f32.data()};
      if (kind == Kind::kInt8) r.codes = codes_ref.data(), r.sq = &sq;
      if (kind == Kind::kF16) r.half = half_ref.data(), r.d_state = N;
      return r;
    };
    for (int64_t t = 0; t < steps; ++t) {
      SCOPED_TRACE("step " + std::to_string(t));
      // Both sides from the reference's state; the new side's f32 scratch poisoned (unused).
      f32_new = kind == Kind::kF32 ? f32_ref : std::vector<float>(rows * N, NAN);
      codes_new = codes_ref;
      half_new = half_ref;
      rt::SsmStateRef fused = ref(f32_new);
      if (kind == Kind::kInt8) fused.codes = codes_new.data();
      if (kind == Kind::kF16) fused.half = half_new.data();
      const rt::SsmStateRef reference = ref(f32_ref);
      const uint64_t seed = 100 + 10 * t;
      const auto x = RandomVector(batch * di, seed);
      const auto z = RandomVector(batch * di, seed + 1, -6.0f, 6.0f);
      const auto dt_raw = RandomVector(batch * di, seed + 2, -6.0f, 3.0f);
      const auto bc = RandomVector(batch * 2 * N, seed + 3);
      std::vector<float> y_ref(batch * di), y_new(batch * di);
      for (int64_t b = 0; b < batch; ++b) {
        for (auto [d0, d1] : {std::pair<int64_t, int64_t>{0, 20}, {20, di}}) {
          const float *xb = x.data() + b * di, *dtb = dt_raw.data() + b * di;
          const float *zb = z.data() + b * di, *bcb = bc.data() + b * 2 * N;
          reference.Load(b * di + d0, d1 - d0);
          rt::Mamba1ScanChannelsGeneric(1, d0, d1, N, xb, di, dtb, di, bcb, 2 * N, zb, di,
                                        A.data(), D.data(), f32_ref.data() + b * di * N,
                                        y_ref.data() + b * di, di);
          reference.Store(b * di + d0, d1 - d0);
          rt::Mamba1StepChannelsFused(fused, b * di, d0, d1, N, xb, dtb, bcb, zb, A.data(),
                                    D.data(), y_new.data() + b * di);
        }
      }
      for (int64_t i = 0; i < batch * di; ++i) {
        EXPECT_NEAR(y_new[i], y_ref[i], 1e-5f * std::max(1.0f, std::fabs(y_ref[i]))) << "y " << i;
      }
      int64_t off_by_one = 0;
      for (int64_t i = 0; i < rows * N; ++i) {
        switch (kind) {
          case Kind::kF32:
            ASSERT_NEAR(f32_new[i], f32_ref[i], 2e-6f * std::max(1.0f, std::fabs(f32_ref[i])))
                << "state " << i;
            break;
          case Kind::kInt8:
            ASSERT_LE(std::abs(codes_new[i] - codes_ref[i]), 1) << "code " << i;
            off_by_one += codes_new[i] != codes_ref[i];
            break;
          case Kind::kF16:
            ASSERT_LE(std::abs(int(half_new[i]) - int(half_ref[i])), 1) << "half " << i;
            off_by_one += half_new[i] != half_ref[i];
            break;
        }
      }
      EXPECT_LE(off_by_one, rows * N / 100) << "codes one apart: an ulp should flip only a few";
      // The next step starts from the reference state on both sides.
    }
  }
}

TEST(RuntimeSampling, GreedyTiesAndTopP) {
  const std::vector<float> logits = {1.0f, 3.0f, 3.0f, -1.0f};
  EXPECT_EQ(rt::ArgMax(logits.data(), 4), 1);
  std::mt19937_64 rng(7);
  std::vector<std::pair<double, int32_t>> scratch;
  // A tiny top_p keeps only the most likely id (lowest id on a tie).
  for (int i = 0; i < 20; ++i) EXPECT_EQ(rt::SampleTopP(logits.data(), 4, 1.0f, 1e-6f, rng, scratch), 1);
  // Deterministic for a seed, and only ids < n come out.
  std::mt19937_64 a(42), b(42);
  std::map<int32_t, int> counts;
  for (int i = 0; i < 2000; ++i) {
    const int32_t ia = rt::SampleTopP(logits.data(), 3, 1.0f, 1.0f, a, scratch);
    EXPECT_EQ(ia, rt::SampleTopP(logits.data(), 3, 1.0f, 1.0f, b, scratch));
    ASSERT_LT(ia, 3);
    counts[ia]++;
  }
  // p = e^1 : e^3 : e^3 over ids 0..2 -> id 0 has probability 0.0634.
  EXPECT_NEAR(counts[0] / 2000.0, 0.0634, 0.02);
}

// ---------------------------------------------------------------- fixtures

struct Fixture {
  Model model;
  std::unique_ptr<Runtime> rt;
  std::vector<int32_t> input_ids;  // [2][64]
  std::vector<float> logits;       // [2][64][vocab]
  nlohmann::json ref;
};

Fixture& LoadFixture(const std::string& name) {
  static std::map<std::string, std::unique_ptr<Fixture>> cache;
  auto& slot = cache[name];
  if (slot) return *slot;
  auto f = std::make_unique<Fixture>();
  auto model = ImportHfDirectory(FixtureModelDir(name));
  EXPECT_TRUE(model.ok()) << model.status().ToString();
  if (!model.ok()) std::abort();
  f->model = std::move(model).value();
  auto rt = Runtime::Create(f->model);
  EXPECT_TRUE(rt.ok()) << rt.status().ToString();
  if (!rt.ok()) std::abort();
  f->rt = std::move(rt).value();
  const std::string dir = FixtureReferenceDir(name);
  f->ref = nlohmann::json::parse(ReadFileText(dir + "/ref.json"));
  auto st = SafetensorsFile::Open(dir + "/ref.safetensors");
  EXPECT_TRUE(st.ok()) << st.status().ToString();
  if (!st.ok()) std::abort();
  const SafetensorsTensor* ids = (*st)->Find("input_ids");
  const SafetensorsTensor* logits = (*st)->Find("logits");
  if (!ids || !logits || ids->dtype != "I64" || logits->dtype != "F32") std::abort();
  for (size_t i = 0; i < ids->data.size() / 8; ++i) {
    int64_t v;
    std::memcpy(&v, ids->data.data() + 8 * i, 8);
    f->input_ids.push_back(static_cast<int32_t>(v));
  }
  f->logits.resize(logits->data.size() / 4);
  std::memcpy(f->logits.data(), logits->data.data(), logits->data.size());
  slot = std::move(f);
  return *slot;
}

const std::vector<int32_t>& ValIds() {
  static std::vector<int32_t> ids = [] {
    const std::string text = ReadFileText(FixturesDir() + "/data/tinyshakespeare.txt");
    // The file is ASCII, so characters == bytes.
    const std::string val = text.substr(static_cast<size_t>(std::floor(0.9 * text.size())));
    auto tok = Tokenizer::FromJson(LoadFixture("mamba1-tiny").model.tokenizer_json);
    EXPECT_TRUE(tok.ok()) << tok.status().ToString();
    return tok.ok() ? (*tok)->Encode(val) : std::vector<int32_t>{};
  }();
  return ids;
}

struct LogitsCompare {
  float max_abs_diff = 0;
  double top1_agreement = 0;
};

LogitsCompare Compare(const std::vector<float>& got, const std::vector<float>& want, int64_t vocab) {
  LogitsCompare c;
  const int64_t rows = static_cast<int64_t>(want.size()) / vocab;
  int64_t agree = 0;
  for (int64_t r = 0; r < rows; ++r) {
    const float* g = got.data() + r * vocab;
    const float* w = want.data() + r * vocab;
    c.max_abs_diff = std::max(c.max_abs_diff, MaxAbsDiff(g, w, vocab));
    agree += rt::ArgMax(g, vocab) == rt::ArgMax(w, vocab);
  }
  c.top1_agreement = double(agree) / double(rows);
  return c;
}

class RuntimeFixture : public ::testing::TestWithParam<std::string> {};

TEST_P(RuntimeFixture, PrefillBatchMatchesReferenceLogits) {
  Fixture& f = LoadFixture(GetParam());
  const int64_t vocab = f.rt->hparams().vocab_size;
  RecurrentState state = f.rt->NewState(2);
  std::vector<float> logits;
  ASSERT_TRUE(f.rt->Prefill(f.input_ids, 2, 64, state, logits).ok());
  ASSERT_EQ(logits.size(), f.logits.size());
  const LogitsCompare c = Compare(logits, f.logits, vocab);
  std::printf("[%s] prefill: max_abs_diff %.3g, top1 agreement %.4f\n", GetParam().c_str(),
              c.max_abs_diff, c.top1_agreement);
  EXPECT_LE(c.max_abs_diff, 1e-3);
  EXPECT_EQ(c.top1_agreement, 1.0);
}

TEST_P(RuntimeFixture, StepByStepMatchesReferenceAndPrefill) {
  Fixture& f = LoadFixture(GetParam());
  const int64_t vocab = f.rt->hparams().vocab_size;
  RecurrentState state = f.rt->NewState(2);
  std::vector<float> stepped(f.logits.size()), one;
  for (int64_t t = 0; t < 64; ++t) {
    const int32_t tokens[2] = {f.input_ids[t], f.input_ids[64 + t]};
    ASSERT_TRUE(f.rt->Step(tokens, state, one).ok());
    for (int64_t b = 0; b < 2; ++b) {
      std::copy_n(one.data() + b * vocab, vocab, stepped.data() + (b * 64 + t) * vocab);
    }
  }
  const LogitsCompare c = Compare(stepped, f.logits, vocab);
  RecurrentState pstate = f.rt->NewState(2);
  std::vector<float> prefilled;
  ASSERT_TRUE(f.rt->Prefill(f.input_ids, 2, 64, pstate, prefilled).ok());
  const float vs_prefill = MaxAbsDiff(stepped.data(), prefilled.data(), stepped.size());
  const float state_diff = MaxAbsDiff(state.ssm.data(), pstate.ssm.data(), state.ssm.size());
  float state_max = 0;
  for (float v : pstate.ssm) state_max = std::max(state_max, std::fabs(v));
  std::printf("[%s] step: max_abs_diff %.3g, top1 %.4f; vs prefill %.3g (ssm state %.3g of max "
              "|s| %.3g)\n",
              GetParam().c_str(), c.max_abs_diff, c.top1_agreement, vs_prefill, state_diff,
              state_max);
  EXPECT_LE(c.max_abs_diff, 1e-3);
  EXPECT_EQ(c.top1_agreement, 1.0);
  EXPECT_LE(vs_prefill, 1e-4);
  // Conv inputs of deeper layers come from the previous layer's output, so
  // the two paths agree to rounding there too.
  EXPECT_LE(MaxAbsDiff(state.conv.data(), pstate.conv.data(), state.conv.size()), 1e-4);
  // The state is compared relative to its largest value (mamba1-tiny's
  // reaches |s| = 121, where one fp32 ulp is 7.6e-6): 4e-6 of it is ~30 ulps
  // there. Measured: 1.2e-4 of 121 (mamba1-tiny), 2.5e-5 of 17.9 (mamba2-tiny).
  EXPECT_LE(state_diff, 4e-6 * state_max);
}

// PrefillLast (pieces of kPrefillPiece tokens, last-position logits only)
// equals the last rows of one Prefill call, and leaves the same state: 2
// sequences of 300 val tokens (pieces of 96, 96, 96 and 12).
TEST_P(RuntimeFixture, PrefillLastMatchesPrefill) {
  Fixture& f = LoadFixture(GetParam());
  const int64_t vocab = f.rt->hparams().vocab_size, n = 300;
  ASSERT_GT(n, Runtime::kPrefillPiece);
  const std::vector<int32_t> ids(ValIds().begin(), ValIds().begin() + 2 * n);
  RecurrentState full_state = f.rt->NewState(2), last_state = f.rt->NewState(2);
  std::vector<float> full, last;
  ASSERT_TRUE(f.rt->Prefill(ids, 2, n, full_state, full).ok());
  ASSERT_TRUE(f.rt->PrefillLast(ids, 2, n, last_state, last).ok());
  ASSERT_EQ(last.size(), static_cast<size_t>(2 * vocab));
  for (int64_t b = 0; b < 2; ++b) {
    const float* want = full.data() + (b * n + n - 1) * vocab;
    EXPECT_LE(MaxAbsDiff(last.data() + b * vocab, want, vocab), 1e-4) << "sequence " << b;
    EXPECT_EQ(rt::ArgMax(last.data() + b * vocab, vocab), rt::ArgMax(want, vocab));
  }
  EXPECT_LE(MaxAbsDiff(full_state.ssm.data(), last_state.ssm.data(), full_state.ssm.size()), 1e-4);
  EXPECT_LE(MaxAbsDiff(full_state.conv.data(), last_state.conv.data(), full_state.conv.size()),
            1e-4);
}

// 100 tokens: prefill of 64 + 36 (two calls, so across the chunk boundary
// and through the state) and in one call (two chunks), then a Step, all
// against the token-by-token path.
TEST_P(RuntimeFixture, SplitPrefillMatchesStepByStep) {
  Fixture& f = LoadFixture(GetParam());
  const int64_t vocab = f.rt->hparams().vocab_size, n = 100;
  const std::vector<int32_t> ids(f.input_ids.begin(), f.input_ids.begin() + n + 1);
  std::vector<float> one, stepped(n * vocab);
  RecurrentState s_step = f.rt->NewState(1);
  for (int64_t t = 0; t < n; ++t) {
    ASSERT_TRUE(f.rt->Step(std::span(ids).subspan(t, 1), s_step, one).ok());
    std::copy_n(one.data(), vocab, stepped.data() + t * vocab);
  }
  std::vector<float> split(n * vocab), part, whole;
  RecurrentState s_split = f.rt->NewState(1);
  ASSERT_TRUE(f.rt->Prefill(std::span(ids).subspan(0, 64), 1, 64, s_split, part).ok());
  std::copy(part.begin(), part.end(), split.begin());
  ASSERT_TRUE(f.rt->Prefill(std::span(ids).subspan(64, 36), 1, 36, s_split, part).ok());
  std::copy(part.begin(), part.end(), split.begin() + 64 * vocab);
  RecurrentState s_whole = f.rt->NewState(1);
  ASSERT_TRUE(f.rt->Prefill(std::span(ids).subspan(0, n), 1, n, s_whole, whole).ok());
  const float d_split = MaxAbsDiff(split.data(), stepped.data(), split.size());
  const float d_whole = MaxAbsDiff(whole.data(), stepped.data(), whole.size());
  std::printf("[%s] 100 tokens: split prefill vs step %.3g, one prefill vs step %.3g\n",
              GetParam().c_str(), d_split, d_whole);
  EXPECT_LE(d_split, 1e-4);
  EXPECT_LE(d_whole, 1e-4);
  // Step continues from a prefilled state exactly like from a stepped one.
  std::vector<float> next_a, next_b;
  ASSERT_TRUE(f.rt->Step(std::span(ids).subspan(n, 1), s_split, next_a).ok());
  ASSERT_TRUE(f.rt->Step(std::span(ids).subspan(n, 1), s_step, next_b).ok());
  EXPECT_LE(MaxAbsDiff(next_a.data(), next_b.data(), vocab), 1e-4);
}

TEST_P(RuntimeFixture, GreedyGenerationMatchesReference) {
  Fixture& f = LoadFixture(GetParam());
  const auto& greedy = f.ref.at("greedy");
  const std::vector<int32_t> prompt = greedy.at("prompt_ids").get<std::vector<int32_t>>();
  const std::vector<int32_t> want = greedy.at("ids").get<std::vector<int32_t>>();
  std::vector<int32_t> streamed;
  auto got = Generate(*f.rt, prompt, greedy.at("max_new_tokens").get<int>(), SamplingOptions{},
                      [&](int32_t id) { streamed.push_back(id); });
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(*got, want);
  EXPECT_EQ(streamed, std::vector<int32_t>(want.begin() + prompt.size(), want.end()));
}

TEST_P(RuntimeFixture, SamplingIsSeededAndBounded) {
  Fixture& f = LoadFixture(GetParam());
  SamplingOptions opts;
  opts.greedy = false;
  opts.temperature = 0.8f;
  opts.top_p = 0.9f;
  opts.seed = 1234;
  opts.max_token_id = 500;
  const std::vector<int32_t> prompt = {814, 26, 199};
  auto a = Generate(*f.rt, prompt, 24, opts);
  auto b = Generate(*f.rt, prompt, 24, opts);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(*a, *b);
  for (size_t i = prompt.size(); i < a->size(); ++i) EXPECT_LT((*a)[i], 500);
}

// Mean next-token NLL of rows [b][t] of logits for the fixture's inputs.
double MeanNll(const std::vector<float>& logits, const std::vector<int32_t>& ids, int64_t vocab) {
  double nll = 0;
  int64_t n = 0;
  for (int64_t b = 0; b < 2; ++b) {
    for (int64_t t = 0; t + 1 < 64; ++t) {
      const float* row = logits.data() + (b * 64 + t) * vocab;
      const float mx = *std::max_element(row, row + vocab);
      double z = 0;
      for (int64_t v = 0; v < vocab; ++v) z += std::exp(double(row[v]) - mx);
      nll += std::log(z) + mx - row[ids[b * 64 + t + 1]];
      ++n;
    }
  }
  return nll / double(n);
}

// RuntimeOptions::f16_state: the state lives in ssm_h; a prefill's final state
// is exactly the f32 one rounded to half (same scan, one rounding at the end);
// stepping rounds after every token, which moves the logits slightly:
// measured max |diff| vs the reference logits 4.9e-3 (mamba1-tiny) and
// 1.6e-3 (mamba2-tiny), top-1 unchanged, mean next-token NLL changed by
// 1.8e-5 and 1.8e-6 relative.
TEST_P(RuntimeFixture, F16StateMatchesF32State) {
  Fixture& f = LoadFixture(GetParam());
  const int64_t vocab = f.rt->hparams().vocab_size;
  RuntimeOptions ro;
  ro.f16_state = true;
  auto rt16 = Runtime::Create(f.model, ro);
  ASSERT_TRUE(rt16.ok()) << rt16.status().ToString();
  Runtime& rt = **rt16;
  RecurrentState s16 = rt.NewState(2), s32 = f.rt->NewState(2);
  EXPECT_TRUE(s16.ssm.empty());
  ASSERT_EQ(s16.ssm_h.size(), s32.ssm.size());
  std::vector<float> l16, l32;
  ASSERT_TRUE(rt.Prefill(f.input_ids, 2, 64, s16, l16).ok());
  ASSERT_TRUE(f.rt->Prefill(f.input_ids, 2, 64, s32, l32).ok());
  EXPECT_EQ(l16, l32);  // the scan runs in f32 either way
  for (size_t i = 0; i < s32.ssm.size(); ++i)
    ASSERT_EQ(s16.ssm_h[i], F32ToF16(s32.ssm[i])) << "state value " << i;
  EXPECT_EQ(s16.conv, s32.conv);
  // A state of the other kind is a typed error, not a crash.
  std::vector<float> one;
  const int32_t two[2] = {1, 2};
  EXPECT_EQ(rt.Step(two, s32, one).code(), StatusCode::kInvalidArgument);

  RecurrentState state = rt.NewState(2);
  std::vector<float> stepped(f.logits.size());
  for (int64_t t = 0; t < 64; ++t) {
    const int32_t tokens[2] = {f.input_ids[t], f.input_ids[64 + t]};
    ASSERT_TRUE(rt.Step(tokens, state, one).ok());
    for (int64_t b = 0; b < 2; ++b)
      std::copy_n(one.data() + b * vocab, vocab, stepped.data() + (b * 64 + t) * vocab);
  }
  const LogitsCompare c = Compare(stepped, f.logits, vocab);
  const double nll16 = MeanNll(stepped, f.input_ids, vocab);
  const double nll_ref = MeanNll(f.logits, f.input_ids, vocab);
  std::printf("[%s] f16 state, step by step: max_abs_diff %.3g, top1 %.4f; NLL %.6f vs "
              "reference %.6f (rel %.2e)\n",
              GetParam().c_str(), c.max_abs_diff, c.top1_agreement, nll16, nll_ref,
              std::fabs(nll16 / nll_ref - 1));
  EXPECT_LE(c.max_abs_diff, 1e-2);
  EXPECT_GE(c.top1_agreement, 0.99);
  EXPECT_NEAR(nll16, nll_ref, 1e-3 * nll_ref);
}

TEST_P(RuntimeFixture, ValidationPerplexityMatchesReference) {
  if (!ssmq::testing::HeavyTestsEnabled()) GTEST_SKIP() << "whole-val perplexity runs in the release build";
  Fixture& f = LoadFixture(GetParam());
  const auto& ids = ValIds();
  ASSERT_FALSE(ids.empty());
  auto r = EvaluatePerplexity(*f.rt, ids, 256, 8);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const double want = f.ref.at("val_perplexity").at("value").get<double>();
  std::printf("[%s] val perplexity %.6f (reference %.6f, rel diff %.2e), %lld tokens scored\n",
              GetParam().c_str(), r->perplexity, want, std::fabs(r->perplexity / want - 1),
              static_cast<long long>(r->tokens_scored));
  EXPECT_EQ(r->tokens_scored, 43350);
  EXPECT_NEAR(r->perplexity, want, 5e-4 * want);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, RuntimeFixture,
                         ::testing::Values("mamba1-tiny", "mamba2-tiny"),
                         [](const auto& info) {
                           std::string s = info.param;
                           std::replace(s.begin(), s.end(), '-', '_');
                           return s;
                         });

// mamba_ssm / llama.cpp normalize y*silu(z) per group of d_inner/n_groups;
// the fixture was trained with the whole-vector norm, so the perplexity is
// different (worse) but must be finite.
TEST(RuntimeMamba2, GroupedGatedNormRunsAndDiffers) {
  auto model = ImportHfDirectory(FixtureModelDir("mamba2-tiny"));
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  model->hp.norm_group_size = model->hp.d_inner / model->hp.n_groups;
  auto rt = Runtime::Create(*model);
  ASSERT_TRUE(rt.ok()) << rt.status().ToString();
  // The first 40 windows of val (the whole val runs in the full-norm test);
  // 4 under the sanitizers.
  const size_t n_windows = ssmq::testing::HeavyTestsEnabled() ? 40 : 4;
  const auto& all = ValIds();
  ASSERT_GE(all.size(), n_windows * 256u);
  const std::span<const int32_t> ids(all.data(), n_windows * 256);
  auto r = EvaluatePerplexity(**rt, ids, 256, 8);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  auto full_norm = EvaluatePerplexity(*LoadFixture("mamba2-tiny").rt, ids, 256, 8);
  ASSERT_TRUE(full_norm.ok());
  std::printf("[mamba2-tiny] first 40 val windows: full-norm ppl %.4f\n", full_norm->perplexity);
  std::printf("[mamba2-tiny grouped norm] val perplexity %.6f over %lld tokens\n", r->perplexity,
              static_cast<long long>(r->tokens_scored));
  EXPECT_TRUE(std::isfinite(r->perplexity));
  const double full = full_norm->perplexity;
  EXPECT_GT(std::fabs(r->perplexity - full), 1e-3 * full);
}

TEST(RuntimeErrors, BadInputsAreErrors) {
  Fixture& f = LoadFixture("mamba1-tiny");
  RecurrentState s = f.rt->NewState(1);
  std::vector<float> logits;
  const std::vector<int32_t> bad = {5, 99999};
  EXPECT_EQ(f.rt->Prefill(bad, 1, 2, s, logits).code(), StatusCode::kInvalidArgument);
  const std::vector<int32_t> two = {1, 2};
  EXPECT_EQ(f.rt->Step(two, s, logits).code(), StatusCode::kInvalidArgument);  // state for batch 1
  EXPECT_EQ(Generate(*f.rt, {}, 3, {}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(EvaluatePerplexity(*f.rt, two, 256).status().code(), StatusCode::kInvalidArgument);
  // A missing tensor is named.
  Model m = f.model;
  ASSERT_TRUE(m.Erase("blk.2.ssm_x.weight"));
  auto rt = Runtime::Create(m);
  ASSERT_FALSE(rt.ok());
  EXPECT_NE(rt.status().message().find("blk.2.ssm_x.weight"), std::string::npos);
}

}  // namespace
}  // namespace ssmq
