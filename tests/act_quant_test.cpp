// Activation quantization (runtime_cpu/act_quant.h): the rounding rule, the
// static / dynamic quantizers, FakeQuantize, the block width rule, and the
// integer matmul — scalar against AVX2 (bit-identical) and against the
// simulated path (FakeQuantize + the float-activation MatMul).
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "format/quant.h"
#include "runtime_cpu/act_quant.h"
#include "runtime_cpu/weight_tiles.h"
#include "runtime_cpu/quant_matmul.h"
#include "runtime_cpu/weight.h"

namespace ssmq {
namespace {

using rt::ActQuant;
using Mode = rt::ActQuant::Mode;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

std::vector<float> RandomVector(size_t n, uint64_t seed, float stddev = 1.0f) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> d(0.0f, stddev);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

ActQuant StaticAq(std::vector<float> scales, int64_t group) {
  ActQuant aq;
  aq.mode = Mode::kStatic;
  aq.scales = std::move(scales);
  aq.group = group;
  return aq;
}

ActQuant DynamicAq() {
  ActQuant aq;
  aq.mode = Mode::kDynamicPerToken;
  return aq;
}

// ------------------------------------------------------------ QuantizeValue

TEST(QuantizeValue, RoundsHalfToEven) {
  EXPECT_EQ(rt::QuantizeValue(0.5f), 0);
  EXPECT_EQ(rt::QuantizeValue(1.5f), 2);
  EXPECT_EQ(rt::QuantizeValue(2.5f), 2);
  EXPECT_EQ(rt::QuantizeValue(-0.5f), 0);
  EXPECT_EQ(rt::QuantizeValue(-1.5f), -2);
  EXPECT_EQ(rt::QuantizeValue(-2.5f), -2);
  EXPECT_EQ(rt::QuantizeValue(126.5f), 126);
  EXPECT_EQ(rt::QuantizeValue(0.49999997f), 0);
  EXPECT_EQ(rt::QuantizeValue(0.50000006f), 1);
  EXPECT_EQ(rt::QuantizeValue(-3.7f), -4);
  EXPECT_EQ(rt::QuantizeValue(0.0f), 0);
  EXPECT_EQ(rt::QuantizeValue(-0.0f), 0);
}

TEST(QuantizeValue, ClampsToPlusMinus127) {
  EXPECT_EQ(rt::QuantizeValue(127.0f), 127);
  EXPECT_EQ(rt::QuantizeValue(127.5f), 127);
  EXPECT_EQ(rt::QuantizeValue(200.0f), 127);
  EXPECT_EQ(rt::QuantizeValue(-127.5f), -127);
  EXPECT_EQ(rt::QuantizeValue(-128.0f), -127);  // never -128
  EXPECT_EQ(rt::QuantizeValue(-200.0f), -127);
  EXPECT_EQ(rt::QuantizeValue(3e38f), 127);
  EXPECT_EQ(rt::QuantizeValue(kInf), 127);
  EXPECT_EQ(rt::QuantizeValue(-kInf), -127);
}

// Documented choice: NaN quantizes to 0 (of either sign).
TEST(QuantizeValue, NanIsZero) {
  EXPECT_EQ(rt::QuantizeValue(kNaN), 0);
  EXPECT_EQ(rt::QuantizeValue(-kNaN), 0);
}

// ------------------------------------------------------ QuantizeActivations

TEST(QuantizeActivations, StaticPerTensor) {
  const int64_t cols = 6, stride = 9;
  // x / 0.5 = 0.5, 1.5, -2.5, 200, -200, 0 | 1, -1, 2.5, NaN, inf, -7
  std::vector<float> x = {0.25f, 0.75f, -1.25f, 100.0f, -100.0f, 0.0f, 9, 9, 9,
                          0.5f,  -0.5f, 1.25f,  kNaN,   kInf,    -3.5f, 9, 9, 9};
  const ActQuant aq = StaticAq({0.5f}, cols);
  std::vector<int8_t> q(2 * cols, 99);
  std::vector<float> rs(2, -1.0f);
  rt::QuantizeActivations(aq, x.data(), stride, 2, cols, q.data(), rs.data());
  EXPECT_EQ(q, (std::vector<int8_t>{0, 2, -2, 127, -127, 0, 1, -1, 2, 0, 127, -7}));
  EXPECT_EQ(rs, (std::vector<float>{1.0f, 1.0f}));
}

TEST(QuantizeActivations, StaticPerGroup) {
  // cols 5, group 2: scales for columns {0,1}, {2,3}, {4} (a short tail group).
  const int64_t cols = 5;
  std::vector<float> x = {0.75f, -0.25f, 5.0f, -3.0f, 0.3f};
  const ActQuant aq = StaticAq({0.5f, 2.0f, 0.1f}, 2);
  std::vector<int8_t> q(cols);
  float rs = -1.0f;
  rt::QuantizeActivations(aq, x.data(), cols, 1, cols, q.data(), &rs);
  // 1.5 -> 2, -0.5 -> 0, 2.5 -> 2, -1.5 -> -2, 0.3f / 0.1f = 3.0000002 -> 3
  EXPECT_EQ(q, (std::vector<int8_t>{2, 0, 2, -2, 3}));
  EXPECT_EQ(rs, 1.0f);
}

TEST(QuantizeActivations, DynamicPerToken) {
  const int64_t cols = 6;
  std::vector<float> x = {
      127.0f, -2.5f, 0.5f, 1.5f, 3.49f, -64.5f,  // absmax 127: s = 1
      -254.0f, 5.0f, 3.0f, 1.0f, 0.0f, -7.0f,    // absmax 254: s = 2
      0.0f,   -0.0f, 0.0f, 0.0f, 0.0f, 0.0f,     // all zero: s = 1, codes 0
      kNaN,   127.0f, 1.0f, -1.5f, kNaN, 2.5f,   // NaN ignored by the max, coded 0
  };
  std::vector<int8_t> q(4 * cols, 99);
  std::vector<float> rs(4, -1.0f);
  rt::QuantizeActivations(DynamicAq(), x.data(), cols, 4, cols, q.data(), rs.data());
  EXPECT_EQ(rs, (std::vector<float>{1.0f, 2.0f, 1.0f, 1.0f}));
  EXPECT_EQ(q, (std::vector<int8_t>{127, -2, 0, 2, 3, -64,     //
                                    -127, 2, 2, 0, 0, -4,      // 2.5, 1.5, 0.5, -3.5
                                    0, 0, 0, 0, 0, 0,          //
                                    0, 127, 1, -2, 0, 2}));
}

// Long rows (vector body + scalar tail, many ties) against the definition
// q = QuantizeValue(x / s), in every mode.
TEST(QuantizeActivations, LongRowsMatchTheDefinition) {
  for (int64_t cols : {1, 7, 31, 32, 33, 77, 768}) {
    const int64_t rows = 5, stride = cols + 3;
    std::vector<float> x = RandomVector(rows * stride, 100 + cols, 30.0f);
    for (size_t i = 0; i < x.size(); i += 3) x[i] = std::round(x[i] * 2) / 2;  // halves: ties
    if (cols > 4) x[2] = kNaN;
    for (const ActQuant& aq : {DynamicAq(), StaticAq({0.5f}, cols),
                               StaticAq(std::vector<float>((cols + 15) / 16, 0.25f), 16)}) {
      std::vector<int8_t> q(rows * cols);
      std::vector<float> rs(rows);
      rt::QuantizeActivations(aq, x.data(), stride, rows, cols, q.data(), rs.data());
      for (int64_t t = 0; t < rows; ++t) {
        float s = rs[t];
        if (aq.mode == Mode::kDynamicPerToken) {
          float amax = 0;
          for (int64_t c = 0; c < cols; ++c) amax = std::max(amax, std::fabs(x[t * stride + c]));
          ASSERT_EQ(s, amax / 127.0f);
        } else {
          ASSERT_EQ(s, 1.0f);
        }
        for (int64_t c = 0; c < cols; ++c) {
          const float sc = aq.mode == Mode::kStatic ? aq.StaticScale(c) : s;
          ASSERT_EQ(q[t * cols + c], rt::QuantizeValue(x[t * stride + c] / sc))
              << "cols " << cols << " t " << t << " c " << c;
        }
      }
    }
  }
}

// FakeQuantize(x) == dequantize(QuantizeActivations(x)), bit for bit.
TEST(FakeQuantize, EqualsDequantizedCodes) {
  const int64_t rows = 4, cols = 77, stride = 80;
  std::vector<float> x = RandomVector(rows * stride, 7, 3.0f);
  for (size_t i = 0; i < x.size(); i += 5) x[i] = std::round(x[i] * 2) / 2;
  for (int64_t c = 0; c < cols; ++c) x[2 * stride + c] = 0.0f;  // a zero row
  std::vector<float> gscales(3);
  for (size_t g = 0; g < gscales.size(); ++g) gscales[g] = 0.02f + 0.01f * g;
  // Narrow groups (one scale per channel, or 3 channels) take the per-column path.
  std::vector<float> per_channel(cols), per3((cols + 2) / 3);
  for (int64_t c = 0; c < cols; ++c) per_channel[c] = 0.01f + 0.001f * float(c % 13);
  for (size_t g = 0; g < per3.size(); ++g) per3[g] = 0.015f + 0.002f * float(g % 7);
  for (const ActQuant& aq : {DynamicAq(), StaticAq({0.05f}, cols), StaticAq(gscales, 32),
                             StaticAq(per_channel, 1), StaticAq(per3, 3)}) {
    std::vector<int8_t> q(rows * cols);
    std::vector<float> rs(rows);
    rt::QuantizeActivations(aq, x.data(), stride, rows, cols, q.data(), rs.data());
    std::vector<float> fq = x;
    rt::FakeQuantize(aq, fq.data(), stride, rows, cols);
    for (int64_t t = 0; t < rows; ++t) {
      for (int64_t c = 0; c < cols; ++c) {
        const float s = aq.mode == Mode::kStatic ? aq.StaticScale(c) : rs[t];
        ASSERT_EQ(std::bit_cast<uint32_t>(fq[t * stride + c]),
                  std::bit_cast<uint32_t>(static_cast<float>(q[t * cols + c]) * s))
            << "t " << t << " c " << c;
      }
      for (int64_t c = cols; c < stride && t * stride + c < int64_t(x.size()); ++c)
        ASSERT_EQ(fq[t * stride + c], x[t * stride + c]);  // padding untouched
    }
  }
  std::vector<float> fq = x;
  rt::FakeQuantize(ActQuant{}, fq.data(), stride, rows, cols);  // kNone: unchanged
  for (size_t i = 0; i < x.size(); ++i)
    ASSERT_EQ(std::bit_cast<uint32_t>(fq[i]), std::bit_cast<uint32_t>(x[i]));
}

// ------------------------------------------------------------ Int8BlockWidth

rt::Weight ShapeOnlyWeight(rt::WeightFormat format, int64_t cols, int64_t group) {
  rt::Weight w;
  w.rows = 4;
  w.cols = cols;
  w.format = format;
  w.group_size = group;
  return w;
}

// FakeQuantizeColumns over a column range gives exactly FakeQuantize's
// values there and leaves the rest alone, with per-column scales expanded at
// load (SetColumnScales) or not, for narrow and wide groups.
TEST(FakeQuantize, ColumnsEqualWholeRows) {
  constexpr int64_t rows = 3, cols = 96, c0 = 32, c1 = 80;
  for (int64_t group : {int64_t{1}, int64_t{4}, int64_t{16}, cols}) {
    for (bool expanded : {false, true}) {
      SCOPED_TRACE("group " + std::to_string(group) + (expanded ? ", expanded" : ""));
      ActQuant aq = StaticAq(RandomVector(static_cast<size_t>(cols / group), 71, 0.01f), group);
      for (float& sc : aq.scales) sc = std::fabs(sc) + 0.005f;
      if (expanded) rt::SetColumnScales(aq, cols);
      EXPECT_EQ(aq.column_scales.size(), expanded && group < 16 ? size_t{cols} : size_t{0});
      const auto x = RandomVector(rows * cols, 72);
      std::vector<float> whole = x, part = x;
      rt::FakeQuantize(aq, whole.data(), cols, rows, cols);
      rt::FakeQuantizeColumns(aq, part.data(), cols, rows, c0, c1);
      for (int64_t t = 0; t < rows; ++t) {
        for (int64_t c = 0; c < cols; ++c) {
          const size_t i = static_cast<size_t>(t * cols + c);
          EXPECT_EQ(part[i], c >= c0 && c < c1 ? whole[i] : x[i]) << "row " << t << " col " << c;
        }
      }
    }
  }
}

TEST(Int8BlockWidth, SmallerGroupWhenCompatible) {
  using F = rt::WeightFormat;
  const ActQuant dyn = DynamicAq();
  // Both per row: the whole row.
  EXPECT_EQ(rt::Int8BlockWidth(ShapeOnlyWeight(F::kQ8, 768, 768), dyn), 768);
  EXPECT_EQ(rt::Int8BlockWidth(ShapeOnlyWeight(F::kQ8, 100, 100), StaticAq({1}, 100)), 100);
  // Weight groups with dynamic or per-tensor activations: the weight group.
  EXPECT_EQ(rt::Int8BlockWidth(ShapeOnlyWeight(F::kQ4, 768, 128), dyn), 128);
  EXPECT_EQ(rt::Int8BlockWidth(ShapeOnlyWeight(F::kQ8, 48, 32), dyn), 32);  // tail group of 16
  EXPECT_EQ(rt::Int8BlockWidth(ShapeOnlyWeight(F::kQ8, 768, 64), StaticAq({1}, 768)), 64);
  // Activation groups with per-channel weights: the activation group (any cols).
  EXPECT_EQ(rt::Int8BlockWidth(ShapeOnlyWeight(F::kQ8, 100, 100),
                               StaticAq(std::vector<float>(4, 1), 32)),
            32);
  // Both grouped: the smaller, when it divides the larger.
  EXPECT_EQ(rt::Int8BlockWidth(ShapeOnlyWeight(F::kQ8, 768, 128),
                               StaticAq(std::vector<float>(24, 1), 32)),
            32);
  EXPECT_EQ(rt::Int8BlockWidth(ShapeOnlyWeight(F::kQ4, 768, 32),
                               StaticAq(std::vector<float>(6, 1), 128)),
            32);
  EXPECT_EQ(rt::Int8BlockWidth(ShapeOnlyWeight(F::kQ8, 66, 66),
                               StaticAq(std::vector<float>(2, 1), 33)),
            33);
}

TEST(Int8BlockWidth, IncompatibleIsZero) {
  using F = rt::WeightFormat;
  // Neither group divides the other.
  EXPECT_EQ(rt::Int8BlockWidth(ShapeOnlyWeight(F::kQ8, 768, 48),
                               StaticAq(std::vector<float>(24, 1), 32)),
            0);
  EXPECT_EQ(rt::Int8BlockWidth(ShapeOnlyWeight(F::kQ4, 768, 96),
                               StaticAq(std::vector<float>(6, 1), 128)),
            0);
  // An odd block for Q4 (codes would not start on a byte).
  EXPECT_EQ(rt::Int8BlockWidth(ShapeOnlyWeight(F::kQ4, 66, 66),
                               StaticAq(std::vector<float>(2, 1), 33)),
            0);
  // Not quantized, or no activation quantization.
  EXPECT_EQ(rt::Int8BlockWidth(ShapeOnlyWeight(F::kF32, 768, 0), DynamicAq()), 0);
  EXPECT_EQ(rt::Int8BlockWidth(ShapeOnlyWeight(F::kQ8, 768, 768), ActQuant{}), 0);
  EXPECT_EQ(rt::Int8BlockWidth(ShapeOnlyWeight(F::kQ8, 768, 768), StaticAq({1}, 0)), 0);
}

// ------------------------------------------------------------ Int8MatMul

struct QuantMatrix {
  QuantizedTensor q;
  rt::Weight w;
};

QuantMatrix MakeQuant(int64_t rows, int64_t cols, bool q4, uint32_t group, bool zero_point,
                      uint64_t seed) {
  QuantMatrix m;
  auto values = RandomVector(rows * cols, seed);
  if (zero_point)  // asymmetric rows, so the zero points vary
    for (int64_t i = 0; i < rows * cols; ++i) values[i] += 0.3f * float(i % 7) / 7.0f;
  QuantInfo info;
  info.granularity = group ? ScaleGranularity::kPerGroup : ScaleGranularity::kPerChannel;
  info.group_size = group;
  info.has_zero_point = zero_point;
  auto q = q4 ? QuantizeQ4(values, rows, cols, info) : QuantizeQ8(values, rows, cols, info);
  EXPECT_TRUE(q.ok()) << q.status().ToString();
  m.q = std::move(q).value();
  m.w.name = "w";
  m.w.rows = rows;
  m.w.cols = cols;
  m.w.format = q4 ? rt::WeightFormat::kQ4 : rt::WeightFormat::kQ8;
  m.w.codes = m.q.codes.data();
  m.w.scales = m.q.scales.data();
  m.w.zeros = zero_point ? m.q.zeros.data() : nullptr;
  m.w.group_size = group ? group : cols;
  return m;
}

struct Int8Case {
  std::string name;
  int64_t rows, cols;
  bool q4;
  uint32_t wgroup;  // 0: per channel
  bool zero_point;
  Mode mode;
  int64_t agroup;   // kStatic: channels per activation scale (0: per tensor)
  int64_t block;    // the Int8BlockWidth expected
};

void PrintTo(const Int8Case& c, std::ostream* os) { *os << c.name; }

// Static scales calibrated on x (absmax over all tokens of each group / 127,
// times 0.8 so that some values clip).
ActQuant MakeActQuant(const Int8Case& c, const std::vector<float>& x, int64_t stride,
                      int64_t tokens) {
  if (c.mode == Mode::kDynamicPerToken) return DynamicAq();
  const int64_t g = c.agroup ? c.agroup : c.cols;
  std::vector<float> scales((c.cols + g - 1) / g, 0.0f);
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t col = 0; col < c.cols; ++col)
      scales[col / g] = std::max(scales[col / g], std::fabs(x[t * stride + col]));
  for (float& s : scales) s = s > 0 ? 0.8f * s / 127.0f : 1.0f;
  return StaticAq(std::move(scales), g);
}

class Int8Kernels : public ::testing::TestWithParam<Int8Case> {};

// For every token count, with and without bias, on 1 and 2 threads:
//  * the scalar reference and the AVX2 kernel are bit-identical, whatever
//    the thread count, and Int8MatMul dispatches to them;
//  * the oracle — FakeQuantize(x) then the float-activation rt::MatMul with
//    the same Q8/Q4 weight — agrees to fp32 summation error. Tolerance:
//    ||y_int8 - y_oracle||_2 <= 1e-5 · ||y_oracle||_2 (both compute
//    sum_c ŵ[r][c] · x̂[t][c]; only the fp32 summation order differs).
TEST_P(Int8Kernels, ScalarAvx2IdenticalAndMatchOracle) {
  const Int8Case c = GetParam();
  QuantMatrix m = MakeQuant(c.rows, c.cols, c.q4, c.wgroup, c.zero_point, 7 + c.cols);
  std::vector<rt::Int8Isa> simd_isas;  // every SIMD kernel this CPU runs
  if (rt::BestInt8Isa() >= rt::Int8Isa::kAvx2) simd_isas.push_back(rt::Int8Isa::kAvx2);
  if (rt::BestInt8Isa() >= rt::Int8Isa::kAvx512Vnni) simd_isas.push_back(rt::Int8Isa::kAvx512Vnni);
  if (simd_isas.empty()) std::printf("no AVX2 on this CPU: the scalar kernel only\n");
  const auto bias_values = RandomVector(c.rows, 9);
  rt::Weight bias;
  bias.name = "bias";
  bias.rows = c.rows;
  bias.cols = 1;
  bias.f32 = bias_values.data();
  const int64_t ys = c.rows + 3;  // strided output with padding
  double worst_rel = 0;
  for (int64_t tokens : {1, 3, 5, 64, 70}) {
    SCOPED_TRACE("tokens " + std::to_string(tokens));
    const int64_t xs = c.cols + 5;  // strided input
    std::vector<float> x = RandomVector(tokens * xs, 1000 + tokens);
    for (int64_t t = 0; t < tokens; ++t)  // varied token magnitudes
      for (int64_t col = 0; col < c.cols; ++col) x[t * xs + col] *= 0.25f + float(t % 5);
    if (tokens > 2)
      for (int64_t col = 0; col < c.cols; ++col) x[1 * xs + col] = 0.0f;  // a zero token
    const ActQuant aq = MakeActQuant(c, x, xs, tokens);
    ASSERT_EQ(rt::Int8BlockWidth(m.w, aq), c.block);
    std::vector<int8_t> q(tokens * c.cols);
    std::vector<float> rs(tokens);
    rt::QuantizeActivations(aq, x.data(), xs, tokens, c.cols, q.data(), rs.data());
    std::vector<float> xhat = x;
    rt::FakeQuantize(aq, xhat.data(), xs, tokens, c.cols);

    const rt::Weight* const with_and_without[] = {nullptr, &bias};
    for (const rt::Weight* b : with_and_without) {
      SCOPED_TRACE(b ? "with bias" : "no bias");
      std::vector<float> want(tokens * ys, -1.0f);  // the scalar kernel, 1 thread
      rt::Int8MatMulWithIsa(rt::Int8Isa::kScalar, m.w, b, aq, q.data(), rs.data(), tokens,
                            want.data(), ys, 1);
      for (int64_t t = 0; t < tokens; ++t)
        for (int64_t r = c.rows; r < ys; ++r) ASSERT_EQ(want[t * ys + r], -1.0f);  // padding
      auto same_bits = [&](const std::vector<float>& got, const char* what) {
        for (int64_t t = 0; t < tokens; ++t)
          for (int64_t r = 0; r < ys; ++r)
            ASSERT_EQ(std::bit_cast<uint32_t>(got[t * ys + r]),
                      std::bit_cast<uint32_t>(want[t * ys + r]))
                << what << ": t " << t << " r " << r << ": " << got[t * ys + r] << " vs "
                << want[t * ys + r];
      };
      for (int threads : {1, 2}) {
        SCOPED_TRACE(std::to_string(threads) + " threads");
        std::vector<float> y(tokens * ys, -1.0f);
        rt::Int8MatMulWithIsa(rt::Int8Isa::kScalar, m.w, b, aq, q.data(), rs.data(), tokens,
                              y.data(), ys, threads);
        same_bits(y, "scalar");
        for (rt::Int8Isa isa : simd_isas) {
          std::fill(y.begin(), y.end(), -1.0f);
          rt::Int8MatMulWithIsa(isa, m.w, b, aq, q.data(), rs.data(), tokens, y.data(), ys,
                                threads);
          same_bits(y, isa == rt::Int8Isa::kAvx2 ? "avx2" : "avx512-vnni");
        }
        std::fill(y.begin(), y.end(), -1.0f);
        rt::Int8MatMul(m.w, b, aq, q.data(), rs.data(), tokens, y.data(), ys, threads);
        same_bits(y, "Int8MatMul");
        // the runtime's 16-row tile copy (weight_tiles.h), as it makes it for
        // a weight whose decode input is int8 (64-column Q8 included)
        if (rt::TilesApply(m.w, rt::CpuIsa(), /*int8_input=*/true)) {
          rt::Weight tiled = m.w;
          rt::BuildTiles(tiled, nullptr, /*int8_input=*/true);
          ASSERT_TRUE(tiled.has_tiles());
          std::fill(y.begin(), y.end(), -1.0f);
          rt::Int8MatMul(tiled, b, aq, q.data(), rs.data(), tokens, y.data(), ys, threads);
          same_bits(y, "16-row tiles");
          for (rt::Int8Isa isa : simd_isas) {  // every tile kernel this CPU runs
            std::fill(y.begin(), y.end(), -1.0f);
            rt::Int8MatMulWithIsa(isa, tiled, b, aq, q.data(), rs.data(), tokens, y.data(), ys,
                                  threads);
            same_bits(y, isa == rt::Int8Isa::kAvx2 ? "avx2 tiles" : "avx512-vnni tiles");
          }
        }
        rt::Weight summed = m.w;  // the runtime's load-time Q8 block sums (act_quant.h)
        rt::BuildQ8BlockSums(summed, aq);
        if (!summed.q8_block_sums.empty()) {
          std::fill(y.begin(), y.end(), -1.0f);
          rt::Int8MatMul(summed, b, aq, q.data(), rs.data(), tokens, y.data(), ys, threads);
          same_bits(y, "Q8 block sums");
        }
      }
      // The oracle: the scalar float-activation kernel on x̂ (MatMul's Q4
      // decode path rounds activations to 16-bit fixed point, q4_fixed16.h).
      std::vector<float> oracle(tokens * ys, -1.0f);
      rt::QuantKernel(m.w.format, rt::KernelIsa::kScalar)(m.w, 0, c.rows, b ? b->f32 : nullptr,
                                                          xhat.data(), xs, tokens, oracle.data(), ys);
      double err2 = 0, norm2 = 0;
      for (int64_t t = 0; t < tokens; ++t)
        for (int64_t r = 0; r < c.rows; ++r) {
          const double d = double(want[t * ys + r]) - oracle[t * ys + r];
          err2 += d * d;
          norm2 += double(oracle[t * ys + r]) * oracle[t * ys + r];
        }
      ASSERT_GT(norm2, 0.0);
      const double rel = std::sqrt(err2 / norm2);
      worst_rel = std::max(worst_rel, rel);
      EXPECT_LE(rel, 1e-5) << "relative L2 error against FakeQuantize + MatMul";
    }
  }
  std::printf("%s: worst relative L2 error vs oracle %.3g\n", c.name.c_str(), worst_rel);
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, Int8Kernels,
    ::testing::Values(
        // Q8 per channel.
        Int8Case{"q8_chan_dyn_768", 37, 768, false, 0, false, Mode::kDynamicPerToken, 0, 768},
        Int8Case{"q8_chan_tensor_100", 19, 100, false, 0, false, Mode::kStatic, 0, 100},
        Int8Case{"q8_chan_dyn_72", 21, 72, false, 0, false, Mode::kDynamicPerToken, 0, 72},
        Int8Case{"q8_chan_actg32_100", 17, 100, false, 0, false, Mode::kStatic, 32, 32},
        // Whole-row blocks of >= 512 columns: the load-time weight sums
        // (BuildQ8BlockSums); 1000 columns end in a 32-column step and a tail.
        Int8Case{"q8_chan_tensor_1000", 23, 1000, false, 0, false, Mode::kStatic, 0, 1000},
        // The w8a8 decode shape on 16-row tiles (TiledInt8Q8), two tiles and a tail.
        Int8Case{"q8_chan_tensor_2048", 40, 2048, false, 0, false, Mode::kStatic, 0, 2048},
        // w8a8's dt_proj at 370m: 64 columns, tiled for the int8 kernel only
        Int8Case{"q8_chan_tensor_64", 40, 64, false, 0, false, Mode::kStatic, 0, 64},
        Int8Case{"q8_chan_dyn_64", 33, 64, false, 0, false, Mode::kDynamicPerToken, 0, 64},
        // Activation groups that do not divide the row: the last block is short, so
        // the tiles (whole blocks only) give way to the row kernels.
        Int8Case{"q8_chan_actg512_768", 33, 768, false, 0, false, Mode::kStatic, 512, 512},
        // Q8 per group.
        Int8Case{"q8_g32_dyn_48", 18, 48, false, 32, false, Mode::kDynamicPerToken, 0, 32},
        Int8Case{"q8_g128_actg32_768", 33, 768, false, 128, false, Mode::kStatic, 32, 32},
        Int8Case{"q8_g32_actg128_768", 20, 768, false, 32, false, Mode::kStatic, 128, 32},
        Int8Case{"q8_g24_tensor_72", 9, 72, false, 24, false, Mode::kStatic, 0, 24},
        Int8Case{"q8_g64_dyn_100", 23, 100, false, 64, false, Mode::kDynamicPerToken, 0, 64},
        // Q4 without zero points.
        Int8Case{"q4_g128_actg32_768", 33, 768, true, 128, false, Mode::kStatic, 32, 32},
        Int8Case{"q4_g128_dyn_768", 35, 768, true, 128, false, Mode::kDynamicPerToken, 0, 128},
        Int8Case{"q4_g128_tensor_1024", 40, 1024, true, 128, false, Mode::kStatic, 0, 128},
        Int8Case{"q4_g256_actg128_512", 48, 512, true, 256, false, Mode::kStatic, 128, 128},
        Int8Case{"q4_chan_tensor_100", 19, 100, true, 0, false, Mode::kStatic, 0, 100},
        Int8Case{"q4_g24_dyn_72", 21, 72, true, 24, false, Mode::kDynamicPerToken, 0, 24},
        Int8Case{"q4_chan_dyn_1536", 17, 1536, true, 0, false, Mode::kDynamicPerToken, 0, 1536},
        // Q4 with zero points.
        Int8Case{"q4z_g32_actg128_768", 20, 768, true, 32, true, Mode::kStatic, 128, 32},
        Int8Case{"q4z_g16_dyn_48", 16, 48, true, 16, true, Mode::kDynamicPerToken, 0, 16},
        Int8Case{"q4z_chan_dyn_100", 18, 100, true, 0, true, Mode::kDynamicPerToken, 0, 100},
        Int8Case{"q4z_g64_tensor_768", 25, 768, true, 64, true, Mode::kStatic, 0, 64},
        // Blocks of 128 columns take the AVX-512 even/odd split path (int8_matmul.cpp).
        Int8Case{"q4z_g128_tensor_1024", 26, 1024, true, 128, true, Mode::kStatic, 0, 128}),
    [](const ::testing::TestParamInfo<Int8Case>& info) { return info.param.name; });

// Q8 codes are [-127, 127] by the format, but a -128 weight code (a malformed
// file) still multiplies exactly in every kernel tile: the scalar reference,
// the 1 x 4, 4 x 1 and 1 x 1 AVX2 tiles agree bit for bit.
TEST(Int8MatMul, Q8CodeMinus128StillExact) {
  const int64_t rows = 6, cols = 80, tokens = 5;  // 4 + 1 tokens; 4 + 2 rows
  std::vector<uint8_t> codes(rows * cols);
  std::mt19937_64 rng(5);
  for (uint8_t& b : codes) b = static_cast<uint8_t>(rng() % 256);  // includes 0x80 = -128
  for (int64_t r = 0; r < rows; ++r) codes[r * cols + r] = 0x80;
  std::vector<float> scales(rows, 0.01f);
  rt::Weight w;
  w.rows = rows, w.cols = cols, w.format = rt::WeightFormat::kQ8, w.group_size = cols;
  w.codes = codes.data(), w.scales = scales.data();
  std::vector<int8_t> q(tokens * cols);
  for (int8_t& v : q) v = static_cast<int8_t>(static_cast<int>(rng() % 255) - 127);
  std::vector<float> rs(tokens, 0.5f);
  const ActQuant aq = DynamicAq();
  std::vector<float> want(tokens * rows), got(tokens * rows);
  rt::Int8MatMulWithIsa(rt::Int8Isa::kScalar, w, nullptr, aq, q.data(), rs.data(), tokens,
                        want.data(), rows, 1);
  // The exact value: the int32 row sums times 0.01 · 0.5, one block.
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t r = 0; r < rows; ++r) {
      int32_t isum = 0;
      for (int64_t c = 0; c < cols; ++c)
        isum += static_cast<int8_t>(codes[r * cols + c]) * q[t * cols + c];
      ASSERT_EQ(want[t * rows + r], std::fma(std::fma(float(isum), 0.01f, 0.0f), 0.5f, 0.0f));
    }
  if (rt::BestInt8Isa() < rt::Int8Isa::kAvx2) GTEST_SKIP() << "no AVX2";
  for (rt::Int8Isa isa : {rt::Int8Isa::kAvx2, rt::Int8Isa::kAvx512Vnni}) {
    if (isa > rt::BestInt8Isa()) continue;
    rt::Int8MatMulWithIsa(isa, w, nullptr, aq, q.data(), rs.data(), tokens, got.data(), rows, 1);
    for (size_t i = 0; i < want.size(); ++i)
      ASSERT_EQ(std::bit_cast<uint32_t>(got[i]), std::bit_cast<uint32_t>(want[i]))
          << "isa " << static_cast<int>(isa) << " element " << i;
  }
}

// An absent bias Weight is the same as no bias.
TEST(Int8MatMul, AbsentBiasIsNoBias) {
  QuantMatrix m = MakeQuant(8, 64, false, 0, false, 3);
  const int64_t tokens = 2;
  const auto x = RandomVector(tokens * 64, 4);
  std::vector<int8_t> q(tokens * 64);
  std::vector<float> rs(tokens);
  const ActQuant aq = DynamicAq();
  rt::QuantizeActivations(aq, x.data(), 64, tokens, 64, q.data(), rs.data());
  rt::Weight absent;
  std::vector<float> a(tokens * 8), b(tokens * 8);
  rt::Int8MatMul(m.w, nullptr, aq, q.data(), rs.data(), tokens, a.data(), 8, 1);
  rt::Int8MatMul(m.w, &absent, aq, q.data(), rs.data(), tokens, b.data(), 8, 1);
  EXPECT_EQ(a, b);
}

}  // namespace
}  // namespace ssmq
