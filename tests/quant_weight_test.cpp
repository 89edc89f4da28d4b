// Weight-only quantization (w8a16 / w4a16): the Q8/Q4 matmul kernels against
// a dequantize-then-multiply reference (scalar and AVX2), the convert
// recipe, and both fixture models end to end through a written .ssmq file
// with their validation perplexity pinned.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <ostream>
#include <random>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "convert/hf_import.h"
#include "convert/quantize_validate.h"
#include "convert/quantize_weights.h"
#include "convert/recipe.h"
#include "format/quant.h"
#include "model/model_io.h"
#include "runtime_cpu/f32_gemm.h"
#include "runtime_cpu/fixed16_decode.h"
#include "runtime_cpu/weight_tiles.h"
#include "runtime_cpu/fixed16_narrow.h"
#include "runtime_cpu/quant_matmul.h"
#include "runtime_cpu/runtime.h"
#include "runtime_cpu/weight.h"
#include "tests/test_util.h"
#include "tokenizer/tokenizer.h"

namespace ssmq {
namespace {

using testing::FixtureModelDir;
using testing::FixturesDir;
using testing::MakeTempDir;
using testing::ReadFileText;

std::vector<float> RandomVector(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

// A quantized matrix and its rt::Weight view.
struct QuantMatrix {
  QuantizedTensor q;
  std::vector<float> dequantized;
  rt::Weight w;
};

QuantMatrix MakeQuant(int64_t rows, int64_t cols, bool q4, uint32_t group, bool zero_point,
                      uint64_t seed) {
  QuantMatrix m;
  const auto values = RandomVector(rows * cols, seed);
  QuantInfo info;
  info.granularity = group ? ScaleGranularity::kPerGroup : ScaleGranularity::kPerChannel;
  info.group_size = group;
  info.has_zero_point = zero_point;
  auto q = q4 ? QuantizeQ4(values, rows, cols, info) : QuantizeQ8(values, rows, cols, info);
  EXPECT_TRUE(q.ok()) << q.status().ToString();
  m.q = std::move(q).value();
  m.dequantized.resize(rows * cols);
  Status st = q4 ? DequantizeQ4(m.q.codes, m.q.scales, m.q.zeros, rows, cols, info, m.dequantized)
                 : DequantizeQ8(m.q.codes, m.q.scales, rows, cols, info, m.dequantized);
  EXPECT_TRUE(st.ok()) << st.ToString();
  m.w.rows = rows;
  m.w.cols = cols;
  m.w.format = q4 ? rt::WeightFormat::kQ4 : rt::WeightFormat::kQ8;
  m.w.codes = m.q.codes.data();
  m.w.scales = m.q.scales.data();
  m.w.zeros = zero_point ? m.q.zeros.data() : nullptr;
  m.w.group_size = group ? group : cols;
  return m;
}

// y[t][r] = sum_c deq[r][c] * x[t][c] + bias[r], in double.
std::vector<double> Reference(const std::vector<float>& deq, int64_t rows, int64_t cols,
                              const std::vector<float>& x, int64_t tokens,
                              const std::vector<float>& bias) {
  std::vector<double> y(tokens * rows);
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t r = 0; r < rows; ++r) {
      double acc = bias[r];
      for (int64_t c = 0; c < cols; ++c) acc += double(deq[r * cols + c]) * x[t * cols + c];
      y[t * rows + r] = acc;
    }
  return y;
}

struct KernelCase {
  int64_t rows, cols;
  bool q4;
  uint32_t group;  // 0 = per channel
  bool zero_point;
};

class QuantKernels : public ::testing::TestWithParam<KernelCase> {};

// Every ISA the CPU runs (scalar, AVX2, AVX-512).
std::vector<rt::KernelIsa> CpuIsas() {
  std::vector<rt::KernelIsa> isas = {rt::KernelIsa::kScalar};
  if (rt::BestKernelIsa() >= rt::KernelIsa::kAvx2) isas.push_back(rt::KernelIsa::kAvx2);
  if (rt::BestKernelIsa() >= rt::KernelIsa::kAvx512) isas.push_back(rt::KernelIsa::kAvx512);
  return isas;
}

double MaxAbsDiff(const std::vector<float>& y, const std::vector<double>& want) {
  double worst = 0;
  for (size_t i = 0; i < y.size(); ++i) worst = std::max(worst, std::fabs(y[i] - want[i]));
  return worst;
}

// Every direct kernel (each ISA, decode-sized and prefill-sized token counts),
// MatMul's dispatch (direct below 8 tokens, expand-then-f32 kernel above) with
// 1 and 2 threads, equals dequantize-then-multiply to f32 summation error;
// DequantizeRows of every ISA equals the reference DequantizeRow exactly.
void CheckWeightKernels(const rt::Weight& w, const std::vector<float>& dequantized) {
  const int64_t rows = w.rows, cols = w.cols;
  const auto bias = RandomVector(rows, 9);
  for (int64_t tokens : {int64_t{1}, int64_t{3}, int64_t{70}}) {  // 70: > one 64-token block
    SCOPED_TRACE("tokens " + std::to_string(tokens));
    const auto x = RandomVector(tokens * cols, 8 + tokens);
    const auto want = Reference(dequantized, rows, cols, x, tokens, bias);
    double scale = 0;
    for (double v : want) scale = std::max(scale, std::fabs(v));
    const double tol = 2e-6 * scale * std::sqrt(double(cols));
    for (rt::KernelIsa isa : CpuIsas()) {
      auto kernel = rt::QuantKernel(w.format, isa);
      ASSERT_NE(kernel, nullptr);
      std::vector<float> y(tokens * rows, -1.0f);
      kernel(w, 0, rows, bias.data(), x.data(), cols, tokens, y.data(), rows);
      EXPECT_LE(MaxAbsDiff(y, want), tol) << "isa " << rt::KernelIsaName(isa);
    }
    rt::Weight b;
    b.rows = rows, b.cols = 1, b.f32 = bias.data();
    for (int threads : {1, 2}) {
      const int64_t ys = rows + 3;  // strided output
      std::vector<float> y(tokens * ys, -1.0f);
      rt::MatMul(w, &b, x.data(), cols, tokens, y.data(), ys, threads);
      double worst = 0;
      for (int64_t t = 0; t < tokens; ++t)
        for (int64_t r = 0; r < rows; ++r)
          worst = std::max(worst, std::fabs(y[t * ys + r] - want[t * rows + r]));
      EXPECT_LE(worst, tol) << threads << " threads";
      EXPECT_EQ(y[ys - 1], -1.0f);  // padding untouched
    }
  }
  std::vector<float> row(cols);
  for (int64_t r : {int64_t{0}, rows - 1}) {
    rt::DequantizeRow(w, r, row.data());
    for (int64_t i = 0; i < cols; ++i) ASSERT_EQ(row[i], dequantized[r * cols + i]);
  }
  for (rt::KernelIsa isa : CpuIsas()) {
    std::vector<float> all(rows * cols);
    rt::DequantizeRows(w, 0, rows, all.data(), isa);
    for (int64_t i = 0; i < rows * cols; ++i)
      ASSERT_EQ(all[i], dequantized[i]) << rt::KernelIsaName(isa) << " element " << i;
  }
}

TEST_P(QuantKernels, MatchDequantizedReference) {
  const KernelCase c = GetParam();
  QuantMatrix m = MakeQuant(c.rows, c.cols, c.q4, c.group, c.zero_point, 7);
  CheckWeightKernels(m.w, m.dequantized);
}

// F16 / BF16 matmul weights stay 16-bit views; the same checks.
TEST(HalfKernels, MatchConvertedReference) {
  for (bool bf16 : {false, true}) {
    for (auto [rows, cols] : {std::pair<int64_t, int64_t>{37, 768}, {19, 45}, {5, 100}}) {
      SCOPED_TRACE(std::string(bf16 ? "bf16 " : "f16 ") + std::to_string(rows) + "x" +
                   std::to_string(cols));
      const auto values = RandomVector(rows * cols, 21);
      std::vector<uint16_t> half(values.size());
      std::vector<float> exact(values.size());
      for (size_t i = 0; i < values.size(); ++i) {
        half[i] = bf16 ? F32ToBF16(values[i]) : F32ToF16(values[i]);
        exact[i] = bf16 ? BF16ToF32(half[i]) : F16ToF32(half[i]);
      }
      rt::Weight w;
      w.rows = rows, w.cols = cols;
      w.format = bf16 ? rt::WeightFormat::kBF16 : rt::WeightFormat::kF16;
      w.half = half.data();
      CheckWeightKernels(w, exact);
    }
  }
}

// The AVX-512 f32 kernel against the reference (4x4 tiles, row and token
// remainders, masked column tails).
TEST(F32Kernels, Avx512MatchesReference) {
  if (rt::BestKernelIsa() < rt::KernelIsa::kAvx512) GTEST_SKIP() << "no AVX-512";
  for (auto [rows, cols, tokens] : {std::tuple<int64_t, int64_t, int64_t>{37, 768, 70},
                                    {6, 45, 5}, {16, 100, 1}, {3, 7, 9}}) {
    const auto w = RandomVector(rows * cols, 31);
    const auto x = RandomVector(tokens * cols, 32);
    const auto bias = RandomVector(rows, 33);
    std::vector<float> want(tokens * rows), got(tokens * rows);
    rt::F32Kernel(rt::KernelIsa::kScalar)(w.data(), cols, rows, bias.data(), x.data(), cols,
                                          tokens, want.data(), rows);
    rt::F32Kernel(rt::KernelIsa::kAvx512)(w.data(), cols, rows, bias.data(), x.data(), cols,
                                          tokens, got.data(), rows);
    double scale = 0, worst = 0;
    for (size_t i = 0; i < want.size(); ++i) {
      scale = std::max(scale, double(std::fabs(want[i])));
      worst = std::max(worst, double(std::fabs(got[i] - want[i])));
    }
    EXPECT_LE(worst, 2e-6 * scale * std::sqrt(double(cols))) << rows << "x" << cols;
  }
}

// The prefill panel kernel of this CPU (AVX-512, AVX2, or the portable
// reference): packing is an exact transpose (zero rows past the panel's end),
// and the product matches the reference kernel (rows not a multiple of 8, 16
// or 32, column tails, token counts not a multiple of the tile or its halves).
TEST(F32Kernels, PanelMatchesReference) {
  SCOPED_TRACE(rt::KernelIsaName(rt::BestKernelIsa()));
  for (auto [rows, cols, tokens] : {std::tuple<int64_t, int64_t, int64_t>{32, 768, 70},
                                    {21, 45, 17}, {7, 100, 5}, {32, 16, 12}, {17, 1024, 29},
                                    {16, 200, 13}, {9, 8, 16}, {30, 2048, 24}}) {
    const auto w = RandomVector(rows * cols, 41);
    const auto x = RandomVector(tokens * cols, 42);
    const auto bias = RandomVector(rows, 43);
    std::vector<float> panel(rt::kF32PanelRows * cols, -1.0f);
    rt::F32PackPanel(w.data(), cols, rows, panel.data());
    for (int64_t c = 0; c < cols; ++c)
      for (int64_t r = 0; r < rt::kF32PanelRows; ++r)
        ASSERT_EQ(panel[c * rt::kF32PanelRows + r], r < rows ? w[r * cols + c] : 0.0f)
            << "c " << c << " r " << r;
    const int64_t ys = rows + 3;  // strided output: the padding must stay untouched
    std::vector<float> want(tokens * ys, -1.0f), got(tokens * ys, -1.0f);
    rt::F32Kernel(rt::KernelIsa::kScalar)(w.data(), cols, rows, bias.data(), x.data(), cols,
                                          tokens, want.data(), ys);
    const int64_t tiles = (tokens + rt::kF32TileTokens - 1) / rt::kF32TileTokens;
    std::vector<float> xp(tiles * rt::kF32TileTokens * cols, -1.0f);
    rt::F32PackTokens(x.data(), cols, tokens, cols, xp.data());
    rt::F32PanelTokens(panel.data(), cols, rows, bias.data(), xp.data(), tokens, got.data(), ys);
    double scale = 0, worst = 0;
    for (size_t i = 0; i < want.size(); ++i) {
      scale = std::max(scale, double(std::fabs(want[i])));
      worst = std::max(worst, double(std::fabs(got[i] - want[i])));
    }
    EXPECT_LE(worst, 2e-6 * scale * std::sqrt(double(cols))) << rows << "x" << cols;
    for (int64_t t = 0; t < tokens; ++t)
      for (int64_t r = rows; r < ys; ++r) ASSERT_EQ(got[t * ys + r], -1.0f);
  }
}

// Packing 16-bit rows converts as it packs: the same panel as converting the
// rows to f32 first (F16ToF32 / BF16ToF32) and packing those, bit for bit,
// zero rows past the end; column counts not a multiple of 16 are refused.
// (AVX-512 and AVX2.)
TEST(F32Kernels, HalfPanelEqualsConvertThenPack) {
  if (rt::BestKernelIsa() < rt::KernelIsa::kAvx2) GTEST_SKIP() << "no AVX2";
  for (bool bf16 : {false, true}) {
    for (auto [rows, cols] :
         {std::pair<int64_t, int64_t>{32, 768}, {21, 48}, {16, 1024}, {5, 16}, {28, 2048}}) {
      SCOPED_TRACE(std::string(bf16 ? "bf16 " : "f16 ") + std::to_string(rows) + "x" +
                   std::to_string(cols));
      const auto v = RandomVector(rows * cols, 44);
      std::vector<uint16_t> h(rows * cols);
      std::vector<float> f(rows * cols);
      for (int64_t i = 0; i < rows * cols; ++i) {
        h[i] = bf16 ? F32ToBF16(v[i]) : F32ToF16(v[i]);
        f[i] = bf16 ? BF16ToF32(h[i]) : F16ToF32(h[i]);
      }
      std::vector<float> want(rt::kF32PanelRows * cols), got(rt::kF32PanelRows * cols, -1.0f);
      rt::F32PackPanel(f.data(), cols, rows, want.data());
      ASSERT_TRUE(rt::F32PackPanelHalf(h.data(), bf16, cols, rows, got.data()));
      EXPECT_EQ(0, std::memcmp(want.data(), got.data(), want.size() * sizeof(float)));
    }
  }
  std::vector<uint16_t> h(32 * 40);
  std::vector<float> panel(rt::kF32PanelRows * 40);
  EXPECT_FALSE(rt::F32PackPanelHalf(h.data(), false, 40, 32, panel.data()));
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, QuantKernels,
    ::testing::Values(KernelCase{37, 768, false, 0, false},   // q8 per channel
                      KernelCase{19, 45, false, 0, false},    // q8, cols not a multiple of 8
                      KernelCase{16, 100, false, 16, false},  // q8 per group with a tail
                      KernelCase{33, 768, true, 128, false},  // q4 groups of 128
                      KernelCase{21, 24, true, 24, false},    // q4 dt_proj-like: 16 + 8 tail
                      KernelCase{18, 100, true, 32, false},   // q4 tail group of 4
                      KernelCase{9, 64, true, 16, true},      // q4 with zero points
                      KernelCase{12, 192, true, 64, false},   // q4 decode: table kernel
                      KernelCase{13, 512, true, 256, true},   // q4 decode: fixed point, zero points
                      KernelCase{6, 384, true, 0, false}));   // q4 per channel (one group of 384)

// The 16-bit fixed-point activations of the decode kernels (fixed16_decode.h),
// both layouts, scalar and SIMD: within half a step of x, the block maximum
// on ±kFixed16Max, an all-zero block at scale 0, a block with a NaN at scale
// NaN, lane sums over the columns each vpdpbusd lane adds; identical bytes
// from every ISA.
TEST(Fixed16, PrepareRoundsToHalfAStep) {
  constexpr int64_t cols = 512, tokens = 2;
  auto x = RandomVector(tokens * cols, 41);
  for (int64_t c = 128; c < 256; ++c) x[c] = 0.0f;  // token 0, block 1
  x[cols + 300] = NAN;                              // token 1, block 2
  x[cols + 10] = 1e-30f;                            // tiny but finite
  constexpr int64_t nb = cols / rt::kFixed16Block;
  for (rt::Fixed16Layout layout : {rt::Fixed16Layout::kNibbleSplit, rt::Fixed16Layout::kNatural}) {
    const bool split = layout == rt::Fixed16Layout::kNibbleSplit;
    SCOPED_TRACE(split ? "nibble split" : "natural");
    std::vector<std::vector<int8_t>> bytes_by_isa;
    for (rt::KernelIsa isa : CpuIsas()) {
      SCOPED_TRACE(rt::KernelIsaName(isa));
      const rt::Fixed16Activations xa = rt::PrepareFixed16(x.data(), cols, tokens, cols, layout, isa);
      bytes_by_isa.emplace_back(xa.bytes, xa.bytes + tokens * nb * 256);
      for (int64_t t = 0; t < tokens; ++t) {
        for (int64_t b = 0; b < nb; ++b) {
          const float scale = xa.scales[t * nb + b];
          if (t == 1 && b == 2) {
            EXPECT_TRUE(std::isnan(scale));
            continue;
          }
          int32_t max_v = 0, lanes[16] = {};
          for (int64_t c = b * 128; c < (b + 1) * 128; ++c) {
            const int32_t v = rt::Fixed16Value(xa, cols, layout, t, c);
            ASSERT_LE(std::abs(v), rt::kFixed16Max);
            max_v = std::max(max_v, std::abs(v));
            // Half a step, plus the rounding of x · (1 / scale): <= 32639 · 2^-24 steps.
            EXPECT_LE(std::fabs(double(v) * scale - x[t * cols + c]), 0.5021 * scale + 1e-30)
                << "token " << t << " column " << c;
            const int64_t in = c % 128;
            lanes[split ? in / 8 : (in % 64) / 4] += v;
          }
          for (int j = 0; j < 16; ++j) EXPECT_EQ(xa.lane_sums[(t * nb + b) * 16 + j], lanes[j]);
          if (t == 0 && b == 1) {
            EXPECT_EQ(scale, 0.0f);
            EXPECT_EQ(max_v, 0);
          } else {
            EXPECT_EQ(max_v, rt::kFixed16Max);
          }
        }
      }
    }
    for (size_t i = 1; i < bytes_by_isa.size(); ++i)
      EXPECT_EQ(bytes_by_isa[i], bytes_by_isa[0]) << "SIMD bytes differ from the scalar ones";
  }
}

// The AVX-512 VNNI kernel and the scalar reference both equal the formula
// y = bias + Σ_b s·scale_b·T_b (T exact) to fp32 summation error, for Q8
// and symmetric / zero-point Q4, groups of one and several blocks, 1 and 3 tokens.
TEST(Fixed16, KernelsMatchFormula) {
  struct Case {
    int64_t rows, cols;
    bool q4;
    uint32_t group;
    bool zero_point;
  };
  for (const Case& k : {Case{33, 768, true, 128, false}, Case{13, 512, true, 256, true},
                        Case{6, 384, true, 384, false}, Case{5, 1024, true, 128, true},
                        Case{11, 768, false, 0, false}, Case{7, 512, false, 128, false}}) {
    SCOPED_TRACE(std::string(k.q4 ? "q4 " : "q8 ") + std::to_string(k.rows) + "x" +
                 std::to_string(k.cols) + " group " + std::to_string(k.group) +
                 (k.zero_point ? " zero points" : ""));
    QuantMatrix m = MakeQuant(k.rows, k.cols, k.q4, k.group, k.zero_point, 43);
    ASSERT_TRUE(rt::Fixed16Applies(m.w, rt::KernelIsa::kAvx512));
    const auto bias = RandomVector(k.rows, 44);
    const int64_t rows = k.rows, cols = k.cols;
    const int64_t ng = m.w.groups_per_row(), nb = cols / rt::kFixed16Block;
    const rt::Fixed16Layout layout = rt::Fixed16LayoutFor(m.w);
    for (int64_t tokens : {int64_t{1}, int64_t{3}}) {
      const auto x = RandomVector(tokens * cols, 45 + tokens);
      const rt::Fixed16Activations xa =
          rt::PrepareFixed16(x.data(), cols, tokens, cols, layout, rt::BestKernelIsa());
      std::vector<float> ref(tokens * rows), simd(tokens * rows);
      rt::Fixed16RowsScalar(m.w, 0, rows, bias.data(), xa, tokens, ref.data(), rows);
      if (rt::BestKernelIsa() == rt::KernelIsa::kAvx512)
        rt::Fixed16Rows(m.w, 0, rows, bias.data(), xa, tokens, simd.data(), rows);
      else
        simd = ref;
      for (int64_t t = 0; t < tokens; ++t) {
        for (int64_t r = 0; r < rows; ++r) {
          double exact = bias[r], magnitude = std::fabs(bias[r]);
          for (int64_t b = 0; b < nb; ++b) {
            const int64_t g = b * rt::kFixed16Block / m.w.group_size;
            const int z = !k.q4 ? 0 : k.zero_point ? m.q.zeros[r * ng + g] : 8;
            int64_t dot = 0;
            for (int64_t c = b * 128; c < (b + 1) * 128; ++c) {
              const int64_t code = k.q4 ? int64_t{Q4Get(m.q.codes.data() + r * cols / 2, c)}
                                        : int64_t{int8_t(m.q.codes[r * cols + c])};
              dot += (code - z) * rt::Fixed16Value(xa, cols, layout, t, c);
            }
            const double term = double(m.q.scales[r * ng + g]) * xa.scales[t * nb + b] * dot;
            exact += term;
            magnitude += std::fabs(term);
          }
          EXPECT_NEAR(ref[t * rows + r], exact, 1e-6 * magnitude) << "scalar, row " << r;
          EXPECT_NEAR(simd[t * rows + r], exact, 1e-6 * magnitude) << "avx512, row " << r;
        }
      }
    }
  }
}

// 16-row tiles (weight_tiles.h), Q4 and Q8: the copy untiles to the stored
// rows, DequantizeRows reads the same values from it, and Fixed16Rows from
// the tiles equals the row-major kernel's formula to fp32 summation error,
// for ranges that start and end inside a tile and rows past the last whole
// tile; a NaN block makes every row NaN. Zero points keep row-major.
TEST(Q4Tiles, Fixed16MatchesRowMajor) {
  const rt::KernelIsa isa = rt::BestKernelIsa();  // AVX-512 VNNI or AVX2 tile kernels
  if (isa < rt::KernelIsa::kAvx2) GTEST_SKIP() << "no tile kernels on this CPU";
  struct Case {
    int64_t rows, cols;
    uint32_t group;
    bool q4;
  };
  for (const Case& k : {Case{40, 768, 128, true}, Case{37, 512, 256, true},
                        Case{16, 1024, 128, true}, Case{40, 768, 128, false},
                        Case{37, 512, 512, false}, Case{16, 1024, 256, false},
                        Case{40, 768, 0, false}}) {
    SCOPED_TRACE(std::string(k.q4 ? "Q4 " : "Q8 ") + std::to_string(k.rows) + "x" +
                 std::to_string(k.cols) + " group " + std::to_string(k.group));
    QuantMatrix m = MakeQuant(k.rows, k.cols, k.q4, k.group, false, 51);
    // Both scale layouts the tile kernels read: tiled (16-bit activations)
    // and row-major (int8_input: weights only the int8 kernels meet at decode).
    for (const bool int8_input : {false, true}) {
      SCOPED_TRACE(int8_input ? "row-major scales" : "tiled scales");
      rt::Weight tiled = m.w;
      ASSERT_TRUE(rt::TilesApply(tiled, isa, int8_input));
      rt::BuildTiles(tiled, nullptr, int8_input);
      ASSERT_EQ(tiled.tiled_rows, k.rows / 16 * 16);
      // Unless int8_input, the tiled rows' scales again as [tile][group][16].
      ASSERT_EQ(tiled.tiled_scales == nullptr, int8_input);
      ASSERT_EQ(rt::TileBytes(m.w, int8_input),
                static_cast<size_t>(tiled.tiled_rows * (rt::RowCodeBytes(m.w) +
                                                       (int8_input ? 0 : 4 * m.w.groups_per_row()))));
      for (int64_t r = 0; !int8_input && r < tiled.tiled_rows; ++r)
        for (int64_t g = 0; g < m.w.groups_per_row(); ++g)
          ASSERT_EQ(tiled.tiled_scales[((r / 16) * m.w.groups_per_row() + g) * 16 + r % 16],
                    m.w.scales[r * m.w.groups_per_row() + g]);
      const int64_t rows = k.rows, cols = k.cols, row_bytes = rt::RowCodeBytes(m.w);
      ASSERT_EQ(row_bytes, k.q4 ? cols / 2 : cols);
      std::vector<uint8_t> row(row_bytes);
      for (int64_t r = 0; r < tiled.tiled_rows; ++r) {
        rt::UntileRow(tiled, r, row.data());
        ASSERT_EQ(std::memcmp(row.data(), m.q.codes.data() + r * row_bytes, row_bytes), 0) << r;
      }
      std::vector<float> deq_ref(rows * cols), deq_tiled(rows * cols);
      rt::DequantizeRows(m.w, 0, rows, deq_ref.data(), isa);
      rt::DequantizeRows(tiled, 0, rows, deq_tiled.data(), isa);
      EXPECT_EQ(deq_ref, deq_tiled);
      std::vector<float> one_row(cols);
      rt::DequantizeRow(tiled, rows - 1, one_row.data());
      EXPECT_TRUE(std::equal(one_row.begin(), one_row.end(), deq_ref.begin() + (rows - 1) * cols));
      // Prefill panels straight from the tiles: bit for bit the panel of the
      // dequantized rows; refused for ranges that do not cover whole tiles.
      for (int64_t r0 = 0; r0 + 16 <= tiled.tiled_rows; r0 += 16) {
        const int64_t r1 = std::min(tiled.tiled_rows, r0 + rt::kF32PanelRows);
        std::vector<float> want(rt::kF32PanelRows * cols), got(rt::kF32PanelRows * cols, -1.0f);
        rt::F32PackPanel(deq_ref.data() + r0 * cols, cols, r1 - r0, want.data());
        ASSERT_TRUE(rt::PackTiledPanel(tiled, r0, r1, got.data())) << r0;
        EXPECT_EQ(0, std::memcmp(want.data(), got.data(), want.size() * sizeof(float))) << r0;
      }
      std::vector<float> panel(rt::kF32PanelRows * cols);
      EXPECT_FALSE(rt::PackTiledPanel(tiled, 0, 5, panel.data()));
      EXPECT_FALSE(rt::PackTiledPanel(tiled, 0, tiled.tiled_rows + 16, panel.data()));
      EXPECT_FALSE(rt::PackTiledPanel(m.w, 0, 16, panel.data()));  // no tiles

      const auto bias = RandomVector(rows, 52);
      const rt::Fixed16Layout layout = rt::Fixed16LayoutFor(m.w);
      for (int64_t tokens : {int64_t{1}, int64_t{2}}) {
        const auto x = RandomVector(tokens * cols, 53 + tokens);
        const rt::Fixed16Activations xa =
            rt::PrepareFixed16(x.data(), cols, tokens, cols, layout, isa);
        std::vector<float> ref(tokens * rows), got(tokens * rows, -1.0f);
        rt::Fixed16RowsScalar(m.w, 0, rows, bias.data(), xa, tokens, ref.data(), rows);
        rt::Fixed16Rows(tiled, 0, 5, bias.data(), xa, tokens, got.data(), rows);  // inside tile 0
        rt::Fixed16Rows(tiled, 5, rows, bias.data(), xa, tokens, got.data(), rows);
        for (int64_t i = 0; i < tokens * rows; ++i)
          EXPECT_NEAR(got[i], ref[i], 2e-5f * (std::fabs(ref[i]) + 1.0f)) << "row " << i % rows;
      }
      auto x = RandomVector(cols, 60);
      x[cols - 1] = NAN;
      const rt::Fixed16Activations xn =
          rt::PrepareFixed16(x.data(), cols, 1, cols, layout, isa);
      std::vector<float> y(rows);
      rt::Fixed16Rows(tiled, 0, rows, nullptr, xn, 1, y.data(), rows);
      for (int64_t r = 0; r < rows; ++r) EXPECT_TRUE(std::isnan(y[r])) << r;
    }
  }
  QuantMatrix zp = MakeQuant(32, 256, true, 128, true, 61);
  EXPECT_FALSE(rt::TilesApply(zp.w, rt::KernelIsa::kAvx512));
  QuantMatrix q8 = MakeQuant(32, 192, false, 64, false, 62);  // groups of 64: not fixed16
  EXPECT_FALSE(rt::TilesApply(q8.w, rt::KernelIsa::kAvx512));
}

// The 64-column kernel (Mamba1 dt_proj at mamba-370m) and its scalar form
// both equal y = bias + s · scale · T with T exact, to one fp32 rounding;
// every v within half a step of x / scale; a tail of rows below a 16-row
// tile; NaN in x gives NaN rows; MatMul picks it and agrees with the float
// kernel on the dequantized weights to the fixed-point rounding.
TEST(Fixed16Narrow, KernelsMatchFormula) {
  struct Case {
    int64_t rows;
    bool q4, zero_point;
  };
  for (const Case& k : {Case{2048, true, false}, Case{37, true, true}, Case{40, false, false}}) {
    SCOPED_TRACE(std::string(k.q4 ? "q4 " : "q8 ") + std::to_string(k.rows) + " rows" +
                 (k.zero_point ? " zero points" : ""));
    constexpr int64_t cols = rt::kNarrowCols;
    QuantMatrix m = MakeQuant(k.rows, cols, k.q4, k.q4 ? 64 : 0, k.zero_point, 61);
    ASSERT_TRUE(rt::Fixed16NarrowApplies(m.w, rt::KernelIsa::kAvx512));
    ASSERT_FALSE(rt::Fixed16Applies(m.w, rt::KernelIsa::kAvx512));
    const auto bias = RandomVector(k.rows, 62);
    for (int64_t tokens : {int64_t{1}, int64_t{3}}) {
      auto x = RandomVector(tokens * cols, 63 + tokens);
      x[5] *= 40.0f;  // an outlier sets the scale
      const rt::Fixed16NarrowActivations xa = rt::PrepareFixed16Narrow(m.w, x.data(), cols, tokens);
      std::vector<float> ref(tokens * k.rows), simd(tokens * k.rows), via_matmul(tokens * k.rows);
      rt::Fixed16NarrowRowsScalar(m.w, 0, k.rows, bias.data(), xa, tokens, ref.data(), k.rows);
      if (rt::Fixed16NarrowApplies(m.w, rt::BestKernelIsa()))  // AVX-512, or Q4 on AVX2
        rt::Fixed16NarrowRows(m.w, 0, k.rows, bias.data(), xa, tokens, simd.data(), k.rows);
      else
        simd = ref;
      for (int64_t t = 0; t < tokens; ++t) {
        for (int64_t c = 0; c < cols; ++c) {
          const double v = rt::Fixed16NarrowValue(m.w, xa, t, c);
          ASSERT_LE(std::fabs(v - x[t * cols + c] / xa.scales[t]), 0.5 + 1e-3) << "column " << c;
        }
        for (int64_t r = 0; r < k.rows; ++r) {
          int64_t dot = 0;
          for (int64_t c = 0; c < cols; ++c) {
            const int64_t code = k.q4 ? int64_t{Q4Get(m.q.codes.data() + r * cols / 2, c)} -
                                            (k.zero_point ? m.q.zeros[r] : 8)
                                      : int64_t{int8_t(m.q.codes[r * cols + c])};
            dot += code * rt::Fixed16NarrowValue(m.w, xa, t, c);
          }
          const double exact = bias[r] + double(m.q.scales[r]) * xa.scales[t] * dot;
          const double tol = 1e-6 * (std::fabs(bias[r]) + std::fabs(exact - bias[r])) + 1e-30;
          EXPECT_NEAR(ref[t * k.rows + r], exact, tol) << "scalar, row " << r;
          EXPECT_NEAR(simd[t * k.rows + r], exact, tol) << "avx512, row " << r;
        }
      }
      // Through MatMul, against the float reference of the dequantized weights.
      rt::Weight bias_w;
      bias_w.rows = k.rows;
      bias_w.cols = 1;
      bias_w.f32 = bias.data();
      rt::MatMul(m.w, &bias_w, x.data(), cols, tokens, via_matmul.data(), k.rows, 2);
      const auto want = Reference(m.dequantized, k.rows, cols, x, tokens, bias);
      double err = 0, norm = 0;
      for (size_t i = 0; i < want.size(); ++i) {
        err += (via_matmul[i] - want[i]) * (via_matmul[i] - want[i]);
        norm += want[i] * want[i];
      }
      EXPECT_LT(std::sqrt(err / norm), 1e-4);
    }
  }
  // A NaN in x: every row of that token NaN.
  QuantMatrix m = MakeQuant(16, rt::kNarrowCols, true, 64, false, 64);
  auto x = RandomVector(rt::kNarrowCols, 65);
  x[7] = NAN;
  const rt::Fixed16NarrowActivations xa = rt::PrepareFixed16Narrow(m.w, x.data(), 64, 1);
  std::vector<float> y(16);
  rt::Fixed16NarrowRows(m.w, 0, 16, nullptr, xa, 1, y.data(), 16);
  for (float v : y) EXPECT_TRUE(std::isnan(v));
}

TEST(QuantRecipe, EffectiveGroupSizeFallsBackToEvenDivisor) {
  EXPECT_EQ(EffectiveGroupSize(768, 128), 128u);
  EXPECT_EQ(EffectiveGroupSize(24, 128), 24u);
  EXPECT_EQ(EffectiveGroupSize(384, 128), 128u);
  EXPECT_EQ(EffectiveGroupSize(1296, 128), 108u);
  EXPECT_EQ(EffectiveGroupSize(250, 128), 50u);
  EXPECT_EQ(EffectiveGroupSize(14, 128), 14u);
}

// The least-squares int4 scale search never does worse than plain RTN,
// stores valid symmetric codes, and dequantizes by the spec formula.
TEST(QuantRecipe, MinMseInt4BeatsRtnAndDequantizesBySpec) {
  const int64_t rows = 24, cols = 200;
  const auto x = RandomVector(rows * cols, 11);
  QuantInfo info;
  info.granularity = ScaleGranularity::kPerGroup;
  info.group_size = 64;  // 3 full groups and a tail of 8
  auto rtn = QuantizeQ4(x, rows, cols, info);
  auto mse = QuantizeQ4MinMse(x, rows, cols, 64);
  ASSERT_TRUE(rtn.ok() && mse.ok());
  std::vector<float> a(rows * cols), b(rows * cols);
  ASSERT_TRUE(DequantizeQ4(rtn->codes, rtn->scales, {}, rows, cols, info, a).ok());
  ASSERT_TRUE(DequantizeQ4(mse->codes, mse->scales, {}, rows, cols, info, b).ok());
  double err_rtn = 0, err_mse = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    err_rtn += (x[i] - a[i]) * double(x[i] - a[i]);
    err_mse += (x[i] - b[i]) * double(x[i] - b[i]);
  }
  std::printf("int4 g64 squared error: rtn %.4f, least-squares scales %.4f\n", err_rtn, err_mse);
  EXPECT_LT(err_mse, 0.95 * err_rtn);
  for (size_t j = 0; j < mse->scales.size(); ++j) EXPECT_LE(mse->scales[j], rtn->scales[j]);
  // Unclipped elements are within s/2; clipped ones (alpha >= 0.7, so
  // absmax <= 10 s) within absmax - 7 s <= 3 s.
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      const float s = mse->scales[r * 4 + c / 64];
      EXPECT_LE(std::fabs(x[r * cols + c] - b[r * cols + c]), 3.0f * s + 1e-6f);
    }
}

TEST(QuantRecipe, ParsesLayerSchemes) {
  auto s = ParseLayerSchemes("0-2:w4a16,4:w8a16", 6, "w8a16");
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(*s, (std::vector<std::string>{"w4a16", "w4a16", "w4a16", "w8a16", "w8a16", "w8a16"}));
  EXPECT_EQ(ParseLayerSchemes("0-9:w4a16", 6, "w8a16").status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseLayerSchemes("0:w3a16", 6, "w8a16").status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseLayerSchemes("3-1:w4a16", 6, "w8a16").status().code(),
            StatusCode::kInvalidArgument);
}

// ------------------------------------------------------------ end to end

const std::string& ValText() {
  static const std::string val = [] {
    const std::string text = ReadFileText(FixturesDir() + "/data/tinyshakespeare.txt");
    return text.substr(static_cast<size_t>(std::floor(0.9 * text.size())));  // ASCII file
  }();
  return val;
}

// Perplexity of `model` on the first `n_windows` val windows of 256 tokens.
double ValPerplexity(const Model& model, int64_t n_windows) {
  auto tok = Tokenizer::FromJson(model.tokenizer_json);
  EXPECT_TRUE(tok.ok());
  std::vector<int32_t> ids = (*tok)->Encode(ValText());
  if (n_windows > 0 && static_cast<int64_t>(ids.size()) > n_windows * 256)
    ids.resize(static_cast<size_t>(n_windows * 256));
  auto rt = Runtime::Create(model, 2);
  EXPECT_TRUE(rt.ok()) << rt.status().ToString();
  auto r = EvaluatePerplexity(**rt, ids, 256, 8);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? r->perplexity : NAN;
}

struct SchemeCase {
  std::string fixture;
  std::string scheme;
  double f32_ppl;    // measured on the same windows (pins the float path too)
  double quant_ppl;  // measured
  double max_rel_increase;  // the target of the issue
  // Sanitizer builds: the same, measured on the first 4 windows.
  double quick_f32_ppl, quick_quant_ppl;
};

void PrintTo(const SchemeCase& c, std::ostream* os) { *os << c.fixture << " " << c.scheme; }
void PrintTo(const KernelCase& c, std::ostream* os) {
  *os << (c.q4 ? "q4 " : "q8 ") << c.rows << "x" << c.cols << " group " << c.group
      << (c.zero_point ? " zero point" : "");
}

class QuantEndToEnd : public ::testing::TestWithParam<SchemeCase> {};

// Converts the fixture with the recipe, writes and reloads the .ssmq (the
// runtime then executes the q8/q4 tensors in place) and compares perplexity
// with the f32 model on the first 24 val windows (24 x 255 = 6,120 scored
// tokens, ~14% of val, to keep the test fast; the full-val numbers below are
// pinned by nothing here).
TEST_P(QuantEndToEnd, PerplexityWithinTarget) {
  const SchemeCase c = GetParam();
  // Under the sanitizers (5-20x slower: 24 windows cost ~70 s per case) the
  // first 4 windows (1,020 scored tokens) against values pinned for those;
  // the targets are stated for the 24 windows (on 4, mamba2 w4a16 measures
  // +3.74% against its 3% target; +2.58% on 24).
  const bool heavy = testing::HeavyTestsEnabled();
  const int64_t kWindows = heavy ? 24 : 4;
  auto model = ImportHfDirectory(FixtureModelDir(c.fixture));
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  ASSERT_TRUE(CastFloatTensors(*model, TensorType::kF32).ok());
  const double f32 = ValPerplexity(*model, kWindows);

  QuantRecipeOptions opts;
  opts.scheme = c.scheme;
  ASSERT_TRUE(ApplyQuantRecipe(*model, opts).ok());
  const std::string path = MakeTempDir("quant_weight") + "/" + c.fixture + "-" + c.scheme + ".ssmq";
  ASSERT_TRUE(SaveModel(*model, path).ok());
  auto loaded = LoadModel(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  const ModelTensor* in_proj = loaded->Find("blk.0.ssm_in.weight");
  ASSERT_NE(in_proj, nullptr);
  EXPECT_EQ(in_proj->type, c.scheme == "w4a16" ? TensorType::kQ4 : TensorType::kQ8);
  EXPECT_TRUE(TraitsOf(loaded->Find("token_embd.weight")->type).is_quantized);
  EXPECT_EQ(*loaded->extra.GetString("quant.scheme"), c.scheme);
  EXPECT_EQ(*loaded->extra.GetString("quant.rounding"), "nearest_even");
  const double quant = ValPerplexity(*loaded, kWindows);
  const double rel = quant / f32 - 1;
  std::printf("[%s %s] f32 %.4f  quant %.4f  (%+.3f%%)  file %.2f MiB\n", c.fixture.c_str(),
              c.scheme.c_str(), f32, quant, 100 * rel,
              std::filesystem::file_size(path) / 1048576.0);
  const double want_f32 = heavy ? c.f32_ppl : c.quick_f32_ppl;
  const double want_quant = heavy ? c.quant_ppl : c.quick_quant_ppl;
  EXPECT_NEAR(f32, want_f32, 1e-3 * want_f32);
  EXPECT_NEAR(quant, want_quant, 2e-3 * want_quant);
  if (heavy) {
    EXPECT_LE(rel, c.max_rel_increase);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Fixtures, QuantEndToEnd,
    // Measured (first 24 val windows; x86-64 AVX2, 2 threads; the first 4
    // in the ASan build). Full val, same recipe: mamba1 f32 72.2794, w8a16
    // 72.3163 (+0.05%), w4a16 73.3218 (+1.44%); mamba2 f32 73.9904, w8a16
    // 73.9720 (-0.02%), w4a16 76.0032 (+2.72%).
    ::testing::Values(SchemeCase{"mamba1-tiny", "w8a16", 51.1571, 51.1874, 0.005, 41.3260, 41.3719},
                      SchemeCase{"mamba1-tiny", "w4a16", 51.1571, 51.9601, 0.03, 41.3260, 42.5609},
                      SchemeCase{"mamba2-tiny", "w8a16", 52.6749, 52.6575, 0.005, 40.4393, 40.4339},
                      SchemeCase{"mamba2-tiny", "w4a16", 52.6749, 54.0345, 0.03, 40.4393, 41.9511}),
    [](const auto& info) {
      std::string n = info.param.fixture + "_" + info.param.scheme;
      for (char& ch : n)
        if (ch == '-') ch = '_';
      return n;
    });

TEST(QuantValidate, SqnrMatchesDefinition) {
  const std::vector<float> x = {1, -2, 3, 4}, y = {1, -2, 3, 3.5};
  EXPECT_NEAR(Sqnr(x, y), 10 * std::log10(30.0 / 0.25), 1e-9);
  EXPECT_TRUE(std::isinf(Sqnr(x, x)));
}

// The report of `ssmq validate` for mamba2-tiny w8a16 on 2 val windows.
TEST(QuantValidate, ReportsWeightActivationAndLogitAccuracy) {
  auto ref = ImportHfDirectory(FixtureModelDir("mamba2-tiny"));
  ASSERT_TRUE(ref.ok());
  ASSERT_TRUE(CastFloatTensors(*ref, TensorType::kF32).ok());
  Model quant = *ref;
  QuantRecipeOptions opts;
  opts.scheme = "w8a16";
  ASSERT_TRUE(ApplyQuantRecipe(quant, opts).ok());
  auto tok = Tokenizer::FromJson(ref->tokenizer_json);
  ASSERT_TRUE(tok.ok());
  const std::vector<int32_t> ids = (*tok)->Encode(ValText());
  ValidationOptions v;
  v.activation_windows = 2;
  v.ppl_windows = 2;
  v.n_threads = 2;
  auto r = ValidateQuantized(quant, *ref, ids, v);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->layers.size(), 6u);
  for (const LayerSqnr& l : r->layers) {
    EXPECT_GT(l.mixer_output_sqnr_db, 30.0) << "layer " << l.layer;  // measured 35-39 dB
  }
  bool saw_in_proj = false;
  for (const TensorSqnr& t : r->weights) {
    if (t.name == "blk.0.ssm_in.weight") {
      saw_in_proj = true;
      EXPECT_EQ(t.quant_type, "q8");
      EXPECT_GT(t.sqnr_db, 35.0);  // int8 per channel on Gaussian-like rows: ~38-40 dB
      EXPECT_LT(t.sqnr_db, 45.0);
    }
  }
  EXPECT_TRUE(saw_in_proj);
  EXPECT_LT(r->logits_kl, 0.002);     // measured 0.0003 on 4 windows
  EXPECT_GT(r->top1_agreement, 0.95);  // measured 0.98
  EXPECT_EQ(r->tokens_scored, 2 * 255);
  EXPECT_LT(std::fabs(r->ppl_rel_delta()), 0.005);
}

}  // namespace
}  // namespace ssmq
